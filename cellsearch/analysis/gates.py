"""Which parts of the LSTM matter? The statistics of the Greff et al. 2017 gate study ("LSTM: A
Search Space Odyssey") on our tasks, beside the papers' findings.

The study's runs — nine variants trained with random hyperparameters — come from
``cellsearch.runner.gate_study.run_gate_study`` (fresh trainings) or from a search run whose
trials include the variants (``load_gate_study``). They are compared in two ways:

* ``welch_tests``: every variant against ``vanilla`` with Welch's t-test on the best
  ``top_fraction`` of each variant's trials, Bonferroni-corrected over the comparisons made
  (8 with all variants), as in Section V of the paper;
* ``gate_importance``: fANOVA (Hutter et al. 2014, Optuna's random-forest implementation) of
  the score over the 0/1 gate features of ``GATE_FEATURES`` together with the
  hyperparameters.

``ranking_table`` puts the result beside the papers' findings (Greff: forget gate and output
activation critical; Jozefowicz et al. 2015: forget > input > output gate);
``write_gate_report`` writes it all with plots.

**Diverged or failed trials** (no score) are kept in the DataFrame but take no part in the
tests or the fANOVA; ``welch_tests`` reports how many each variant had. (The study design's
choices — CIFG's features, paired draws, seeds — are documented in ``runner.gate_study``.)
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, NamedTuple

from cellsearch.analysis.plots import markdown_table, pyplot
from cellsearch.errors import ConfigError
from cellsearch.runner.gate_study import (
    COLUMNS,
    FEATURE_VARIANT,
    FEATURES,
    GATE_FEATURES,
    HYPERPARAMETERS,
    VARIANTS,
    sorted_runs,
)
from cellsearch.tasks import primary_metric
from cellsearch.fileio import atomic_write, save_figure, write_csv

# What the papers found, per feature (see shared/PAPERS.md).
GREFF_FINDING = {
    "forget_gate": "critical: NFG hurts on all three datasets",
    "output_activation": "critical: NOAF hurts on all three datasets",
    "input_gate": "NIG hurts on TIMIT and IAM, not on JSB",
    "output_gate": "NOG hurts on TIMIT and IAM, not on JSB",
    "input_activation": "NIAF hurts on TIMIT and IAM, not on JSB",
    "peepholes": "NP: no significant change",
    "coupled": "CIFG: no significant change",
    "full_recurrence": "FGR: worse on JSB only",
}
# Majority outcome over the paper's three datasets: what our Welch test is compared with.
GREFF_EXPECTED = {"forget_gate": "worse", "output_activation": "worse", "input_gate": "worse",
                  "output_gate": "worse", "input_activation": "worse", "peepholes": "n.s.", "coupled": "n.s.",
                  "full_recurrence": "n.s."}
GREFF_CRITICAL = ("forget_gate", "output_activation")
# Jozefowicz et al. 2015: removing the forget gate hurts most, then the input gate, then the output gate
# (Table 1, Arithmetic: LSTM .892, LSTM-f .293, LSTM-i .751, LSTM-o .867).
JOZEFOWICZ_RANK = {"forget_gate": 1, "input_gate": 2, "output_gate": 3}
JOZEFOWICZ_ARITH = {"forget_gate": 0.293, "input_gate": 0.751, "output_gate": 0.867}
JOZEFOWICZ_LSTM_ARITH = 0.892


def add_features(df):
    """``df`` with one 0/1 column per gate feature, from its ``variant`` column."""
    out = df.copy()
    for f in FEATURES:
        out[f] = [GATE_FEATURES[v][f] for v in out["variant"]]
    return out


# ---------------------------------------------------------------------------------------- a search run
def load_gate_study(run_dir: str | Path, task: str | None = None):
    """The study's DataFrame from an existing search run, keeping the rows whose cell is a Greff variant.

    Cells are matched by canonical hash, so renamed copies count. ``task`` (default: the run's first
    task) selects the metrics: the score is that task's primary metric when the metrics JSON has it,
    else the row's score. Hyperparameters: ``lr``/``hidden`` from the metrics JSON (``{task: {...,
    "hyperparameters": {...}}}`` as the search writes it, or top-level keys ``lr``, ``hidden_size``);
    a trial trained with the run's defaults takes them from ``config.json`` (``train``); NaN when
    neither says. Deduplicated (reused) rows are left out; the seed is not stored by a search (NaN).
    Note that the built-in ``lstm`` (torch's LSTM, no peepholes) is structurally ``np`` and counts as np.
    """

    import pandas as pd

    from cellsearch.dsl.hashing import canonical_hash
    from cellsearch.library import get_cell
    from cellsearch.storage.results import run_config
    from cellsearch.storage.store import read_results

    path = Path(run_dir)
    config = run_config(path)
    task = task or (config.get("tasks") or ["arith"])[0]
    metric = primary_metric(task)
    defaults = config.get("train") or {}
    by_hash = {canonical_hash(get_cell(v)): v for v in VARIANTS}
    df = read_results(path)
    rows = []
    for r in df.itertuples(index=False):
        if r.hash not in by_hash or (r.reused_from is not None and r.reused_from == r.reused_from):
            continue
        m = r.metrics.get(task) if isinstance(r.metrics, dict) else None
        m = m if isinstance(m, dict) else {}
        hp = m.get("hyperparameters")
        lr: Any = float("nan")  # (then whatever the run recorded)
        hidden: Any = float("nan")
        if isinstance(hp, dict):
            lr = hp.get("lr", defaults.get("lr", float("nan")))
            hidden = hp.get("hidden_size", hp.get("hidden", defaults.get("hidden_size", float("nan"))))
        elif hp == "defaults":
            lr, hidden = defaults.get("lr", float("nan")), defaults.get("hidden_size", float("nan"))
        lr = m.get("lr", lr)
        hidden = m.get("hidden_size", m.get("hidden", hidden))
        value = m.get(metric)
        score = value if value is not None else r.score
        rows.append({"variant": by_hash[r.hash], "trial": int(r.id), "seed": float("nan"),
                     "lr": float(lr) if lr is not None else float("nan"),
                     "hidden": float(hidden) if hidden is not None else float("nan"),
                     "score": float(score) if score is not None and r.status in ("ok", "rejected") else float("nan"),
                     "status": r.status, "seconds": r.seconds, "steps": float("nan"), "params": r.params,
                     "error": r.error})
    if not rows:
        raise ConfigError(f"{path}: no trial of this run is one of the Greff et al. variants "
                          f"({', '.join(VARIANTS)})")
    return sorted_runs(pd.DataFrame(rows, columns=list(COLUMNS)))


# ---------------------------------------------------------------------------------------- statistics
def _valid(df):
    return df[df["score"].notna() & df["score"].map(lambda v: math.isfinite(float(v)))]


def welch_tests(df, top_fraction: float = 0.1, alpha: float = 0.05, baseline: str = "vanilla"):
    """Each variant against ``baseline`` on the best ``top_fraction`` of its scored trials (at least 2).

    Welch's t-test (``cellsearch.analysis.stats.welch``), Bonferroni over the comparisons made.
    Returns one row per variant: variant, n (scored trials), n_top, failed (runs without a score),
    mean, vanilla_mean, t, p, p_bonferroni, significant, direction (``worse``/``better`` when
    significant, else ``n.s.``; ``–`` when there is nothing to test).
    """
    import pandas as pd

    from cellsearch.analysis.stats import welch

    if not 0 < top_fraction <= 1:
        raise ConfigError("top_fraction must be in (0, 1]")
    valid = _valid(df)

    def top(variant: str):
        s = valid.loc[valid["variant"] == variant, "score"].astype(float).sort_values(ascending=False)
        n_top = max(2, math.ceil(top_fraction * len(s)))
        return s.iloc[:n_top].to_numpy(), len(s)

    base, _ = top(baseline)
    base_mean = float(base.mean()) if len(base) else float("nan")
    present = [v for v in VARIANTS if v in set(df["variant"]) and v != baseline]
    present += sorted(set(df["variant"]) - set(VARIANTS) - {baseline})
    records = []
    for variant in present:
        vals, n = top(variant)
        rec = {"variant": variant, "n": n, "n_top": len(vals),
               "failed": int(((df["variant"] == variant) & ~df.index.isin(valid.index)).sum()),
               "mean": float(vals.mean()) if len(vals) else float("nan"), "vanilla_mean": base_mean,
               "t": float("nan"), "p": float("nan")}
        if len(vals) >= 2 and len(base) >= 2:
            rec["t"], rec["p"] = welch(vals, base)
        records.append(rec)
    out = pd.DataFrame(records, columns=["variant", "n", "n_top", "failed", "mean", "vanilla_mean", "t", "p"])
    m = int(out["p"].notna().sum())
    out["p_bonferroni"] = (out["p"] * m).clip(upper=1.0)
    out["significant"] = out["p_bonferroni"].notna() & (out["p_bonferroni"] < alpha)

    def direction(r) -> str:
        if r["p"] != r["p"]:
            return "–"
        if not r["significant"]:
            return "n.s."
        return "worse" if r["mean"] < r["vanilla_mean"] else "better"

    out["direction"] = out.apply(direction, axis=1) if len(out) else pd.Series(dtype=str)
    return out


def gate_importance(df, seed: int = 0, n_trees: int = 64, log_transform: bool = False):
    """fANOVA importance of the gate features and the hyperparameters for the score.

    Builds an Optuna study from the scored runs (0/1 features as categorical distributions, ``lr``
    log-float, ``hidden`` int-log) and runs ``FanovaImportanceEvaluator(seed=seed)``. Optuna's fANOVA
    integrates the marginals over the raw parameter values; ``log_transform=True`` hands it log10(lr)
    and log10(hidden) as plain floats instead (uniform on the log scale, as the draws were). Features
    or hyperparameters that take one value only get importance 0 and ``varies = False``. Returns the
    ranking: feature, kind (gate / hyperparameter), importance (sums to 1 over what varies, unless the
    score itself does not vary), rank, varies.
    """
    import optuna
    import pandas as pd
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    valid = add_features(_valid(df))
    params: dict[str, Any] = {}
    for f in FEATURES:
        if valid[f].nunique() > 1:
            params[f] = CategoricalDistribution((0, 1))
    for h in HYPERPARAMETERS:
        col = valid[h].astype(float) if h in valid else pd.Series(dtype=float)
        if col.isna().any() or col.nunique() < 2 or (col <= 0).any():
            continue
        lo, hi = float(col.min()), float(col.max())
        if log_transform:
            params[h] = FloatDistribution(math.log10(lo), math.log10(hi))
        elif h == "lr":
            params[h] = FloatDistribution(lo, hi, log=True)
        else:
            params[h] = IntDistribution(int(lo), int(hi), log=True)
    importances = {k: 0.0 for k in (*FEATURES, *HYPERPARAMETERS)}
    scores = valid["score"].astype(float)
    if params and len(valid) >= 2 and scores.std() > 0:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(direction="maximize")
            trials = []
            for (_, r), score in zip(valid.iterrows(), scores):
                values: dict[str, float] = {}
                for name in params:
                    if name in FEATURES:
                        values[name] = int(r[name])
                    elif log_transform:
                        values[name] = math.log10(float(r[name]))
                    else:
                        values[name] = float(r[name]) if name == "lr" else int(r[name])
                trials.append(optuna.trial.create_trial(params=values, distributions=params, value=float(score)))
            study.add_trials(trials)
            evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=n_trees, seed=seed)
            got = optuna.importance.get_param_importances(study, evaluator=evaluator, params=list(params))
        finally:
            optuna.logging.set_verbosity(verbosity)
        importances.update({k: float(v) for k, v in got.items()})
    out = pd.DataFrame({"feature": list(importances), "importance": list(importances.values())})
    out["kind"] = ["hyperparameter" if f in HYPERPARAMETERS else "gate" for f in out["feature"]]
    out["varies"] = out["feature"].isin(list(params))
    out = out.sort_values(["importance", "varies"], ascending=[False, False], kind="stable").reset_index(drop=True)
    out["rank"] = range(1, len(out) + 1)
    return out[["feature", "kind", "importance", "rank", "varies"]]


# ---------------------------------------------------------------------------------------- papers
class Ranking(NamedTuple):
    frame: Any  # pandas DataFrame
    markdown: str


def ranking_table(importances, welch) -> Ranking:
    """Our ranking of the gate features beside the papers'.

    One row per gate feature, ours first (by fANOVA importance): the variant that changes it, our
    importance and rank among the gate features, our Welch result (variant mean vs vanilla, corrected
    p, direction), Greff et al.'s finding and expected direction, whether we agree, and Jozefowicz et
    al.'s rank and Arithmetic accuracy without that gate. Returns ``Ranking(frame, markdown)``.
    """
    import pandas as pd

    imp = importances[importances["kind"] == "gate"] if "kind" in importances else importances
    imp = imp[imp["feature"].isin(FEATURES)].sort_values("importance", ascending=False, kind="stable")
    w = welch.set_index("variant") if len(welch) else pd.DataFrame()
    records = []
    for rank, r in enumerate(imp.itertuples(index=False), 1):
        variant = FEATURE_VARIANT[r.feature]
        wr = w.loc[variant] if variant in w.index else None
        ours = wr["direction"] if wr is not None else "–"
        expected = GREFF_EXPECTED[r.feature]
        agree = "–" if ours == "–" else ("yes" if ours == expected else "no")
        records.append({
            "feature": r.feature, "variant": variant, "importance": float(r.importance),
            "our_rank": rank if getattr(r, "varies", True) else None,
            "variant_mean": float(wr["mean"]) if wr is not None else float("nan"),
            "vanilla_mean": float(wr["vanilla_mean"]) if wr is not None else float("nan"),
            "p_bonferroni": float(wr["p_bonferroni"]) if wr is not None else float("nan"),
            "our_welch": ours, "greff_finding": GREFF_FINDING[r.feature], "greff_expected": expected,
            "greff_critical": r.feature in GREFF_CRITICAL, "agrees_with_greff": agree,
            "jozefowicz_rank": JOZEFOWICZ_RANK.get(r.feature),
            "jozefowicz_arith_without": JOZEFOWICZ_ARITH.get(r.feature),
        })
    frame = pd.DataFrame(records, columns=["feature", "variant", "importance", "our_rank", "variant_mean",
                                           "vanilla_mean", "p_bonferroni", "our_welch", "greff_finding",
                                           "greff_expected", "greff_critical", "agrees_with_greff",
                                           "jozefowicz_rank", "jozefowicz_arith_without"])
    lines = ["Gate features: our fANOVA ranking and Welch tests vs the papers", "",
             "| our rank | feature | variant | importance | variant vs vanilla (top trials) | p (Bonferroni) | "
             "ours | Greff et al. 2017 | agrees | Jozefowicz rank (Arith w/o gate; LSTM .892) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in frame.itertuples(index=False):
        jz = "–" if r.jozefowicz_rank is None or r.jozefowicz_rank != r.jozefowicz_rank else \
            f"{int(r.jozefowicz_rank)} ({r.jozefowicz_arith_without:.3f})"
        means = "–" if r.variant_mean != r.variant_mean else f"{r.variant_mean:.3f} vs {r.vanilla_mean:.3f}"
        p = "–" if r.p_bonferroni != r.p_bonferroni else f"{r.p_bonferroni:.3g}"
        rank_text = "–" if r.our_rank is None or r.our_rank != r.our_rank else str(int(r.our_rank))
        lines.append(f"| {rank_text} | {r.feature} | {r.variant} | {r.importance:.3g} | {means} | {p} | {r.our_welch} | "
                     f"{r.greff_finding} | {r.agrees_with_greff} | {jz} |")
    lines += ["", "Greff et al.: forget gate and output activation critical; Jozefowicz et al.: forget > input > "
              "output gate."]
    return Ranking(frame, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------- output
def plot_distributions(df, path: str | Path, title: str | None = None) -> Path:
    """Box plots of the scores per variant (scored runs, each run a dot); PNG (or any matplotlib suffix)."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    valid = _valid(df)
    present = [v for v in VARIANTS if v in set(df["variant"])] + sorted(set(df["variant"]) - set(VARIANTS))
    data = [valid.loc[valid["variant"] == v, "score"].astype(float).to_numpy() for v in present]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(present) + 2), 4.5))
    positions = list(range(1, len(present) + 1))
    nonempty = [(p, d) for p, d in zip(positions, data) if len(d)]
    if nonempty:
        ax.boxplot([d for _, d in nonempty], positions=[p for p, _ in nonempty], widths=0.6, showfliers=False)
    rng = random.Random(0)
    for p, d in zip(positions, data):
        ax.scatter([p + rng.uniform(-0.12, 0.12) for _ in d], d, s=14, alpha=0.6, color="tab:blue", zorder=3)
    labels = []
    for v in present:
        n_bad = int(((df["variant"] == v) & ~df.index.isin(valid.index)).sum())
        labels.append(v + (f"\n({n_bad} failed)" if n_bad else ""))
    ax.set_xticks(positions)
    ax.set_xticklabels(labels)
    if "vanilla" in present and len(data[present.index("vanilla")]):
        ax.axhline(float(data[present.index("vanilla")].mean()), color="grey", ls="--", lw=0.8,
                   label="vanilla mean")
        ax.legend(loc="best", fontsize=8)
    ax.set_ylabel("score")
    ax.set_title(title or "Greff et al. variants: score per run")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_importance(importances, path: str | Path) -> Path:
    """Horizontal bars of the fANOVA importances."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imp = importances.iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(imp) + 1.2))
    colors = ["tab:orange" if k == "hyperparameter" else "tab:blue" for k in imp["kind"]]
    ax.barh(imp["feature"], imp["importance"], color=colors)
    ax.set_xlabel("fANOVA importance")
    ax.set_title("importance (blue: gate features, orange: hyperparameters)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def write_gate_report(df, out_dir: str | Path, top_fraction: float = 0.1, alpha: float = 0.05,
                      seed: int = 0) -> dict[str, Path]:
    """Write the study's tables and plots into ``out_dir`` and return them by name.

    ``trials.csv`` (every run), ``welch.csv``/``.md``, ``importance.csv``/``.md``, ``ranking.csv``/``.md``,
    ``distributions.png``, ``importance.png`` and ``report.md`` (all of it on one page).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    welch = welch_tests(df, top_fraction, alpha)
    imp = gate_importance(df, seed=seed)
    ranking = ranking_table(imp, welch)
    files: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        atomic_write(out / name, text)
        files[name.replace(".", "_")] = out / name

    write_csv(out / "trials.csv", df, index=False)
    files["trials_csv"] = out / "trials.csv"
    write_csv(out / "welch.csv", welch, index=False)
    files["welch_csv"] = out / "welch.csv"
    put("welch.md", markdown_table(welch))
    write_csv(out / "importance.csv", imp, index=False)
    files["importance_csv"] = out / "importance.csv"
    put("importance.md", markdown_table(imp))
    write_csv(out / "ranking.csv", ranking.frame, index=False)
    files["ranking_csv"] = out / "ranking.csv"
    put("ranking.md", ranking.markdown)
    files["distributions_png"] = plot_distributions(df, out / "distributions.png")
    files["importance_png"] = plot_importance(imp, out / "importance.png")
    n_ok = len(_valid(df))
    report = [f"# Gate importance (Greff et al. 2017) — {n_ok} scored runs of {len(df)}", "",
              ranking.markdown, f"## Welch's t-test vs vanilla (top {top_fraction:.0%} per variant, Bonferroni, "
              f"alpha {alpha})", "", markdown_table(welch), "## fANOVA importance", "", markdown_table(imp),
              "![score distributions](distributions.png)", "", "![importance](importance.png)", ""]
    put("report.md", "\n".join(report))
    return files

