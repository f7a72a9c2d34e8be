"""The analysis package: Greff et al. gate study, search reports, notebooks and `cellsearch analyze`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from cellsearch.analysis import gates, report
from cellsearch.runner import gate_study
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell
from cellsearch.library import builtin_names, get_cell
from cellsearch.storage.store import Store
from tests.support.paths import REPO

pytestmark = pytest.mark.ray  # the gate study's workers and the notebooks' kernels

# Needs the `analysis` extra: scipy, optuna + scikit-learn (fANOVA), papermill, nbclient, ipykernel.

NOTEBOOKS = REPO / "analysis"


# ------------------------------------------------------------------------------------------ synthetic data
def synthetic_study(worse: dict[str, float] | None = None, trials: int = 20, seed: int = 0, noise: float = 0.01,
                    lr_effect: float = 0.0) -> pd.DataFrame:
    """A study DataFrame whose score is 0.8, minus ``worse[variant]``, plus noise (and a learning-rate effect)."""
    rng = np.random.default_rng(seed)
    worse = worse or {}
    rows = []
    for v in gates.VARIANTS:
        for k in range(trials):
            lr = float(10 ** rng.uniform(-3, -1.5))
            hidden = int(round(10 ** rng.uniform(np.log10(16), np.log10(64))))
            score = 0.8 - worse.get(v, 0.0) + lr_effect * np.log10(lr) + noise * rng.normal()
            rows.append({"variant": v, "trial": k, "seed": 0, "lr": lr, "hidden": hidden, "score": score,
                         "status": "ok", "seconds": 1.0})
    return pd.DataFrame(rows)


def test_gate_features_change_one_thing_each():
    vanilla = gates.GATE_FEATURES["vanilla"]
    assert set(vanilla) == set(gates.FEATURES)
    assert vanilla["coupled"] == 0 and vanilla["full_recurrence"] == 0
    assert all(vanilla[f] == 1 for f in gates.FEATURES if f not in ("coupled", "full_recurrence"))
    for v in gates.VARIANTS[1:]:
        diff = {f for f in gates.FEATURES if gates.GATE_FEATURES[v][f] != vanilla[f]}
        assert len(diff) == 1, v
    assert gates.GATE_FEATURES["cifg"]["forget_gate"] == 1 and gates.GATE_FEATURES["cifg"]["coupled"] == 1
    assert gates.GATE_FEATURES["nfg"]["forget_gate"] == 0
    assert set(gates.VARIANTS) <= set(builtin_names())


def test_welch_detects_a_clearly_worse_variant():
    df = synthetic_study({"nfg": 0.3})
    w = gates.welch_tests(df, top_fraction=0.2).set_index("variant")
    assert list(w.index) == list(gates.VARIANTS[1:])
    assert w.loc["nfg", "significant"] and w.loc["nfg", "direction"] == "worse"
    assert w.loc["nfg", "mean"] < w.loc["nfg", "vanilla_mean"]
    assert w.loc["nfg", "p_bonferroni"] == pytest.approx(min(1.0, w.loc["nfg", "p"] * 8))
    assert (w.drop(index="nfg")["direction"] != "worse").all()
    assert (w["n_top"] == 4).all() and (w["n"] == 20).all()


def test_welch_leaves_out_runs_without_a_score_and_needs_two():
    df = synthetic_study(trials=3)
    df.loc[df.variant == "nog", "score"] = np.nan
    df.loc[df.variant == "nog", "status"] = "diverged"
    w = gates.welch_tests(df).set_index("variant")
    assert w.loc["nog", "failed"] == 3 and w.loc["nog", "direction"] == "–"
    assert np.isnan(w.loc["nog", "p"])
    assert (w.drop(index="nog")["n_top"] == 2).all()  # 10% of 3, but at least 2


def test_fanova_ranks_the_deciding_feature_first():
    df = synthetic_study({"noaf": 0.35}, trials=10, noise=0.005)
    imp = gates.gate_importance(df, seed=0, n_trees=32)
    assert imp.iloc[0]["feature"] == "output_activation"
    assert imp.iloc[0]["importance"] > 0.5
    assert set(imp["feature"]) == set(gates.FEATURES) | {"lr", "hidden"}
    assert list(imp["rank"]) == list(range(1, len(imp) + 1))
    assert imp["importance"].sum() == pytest.approx(1.0, abs=1e-6)
    # a hyperparameter that decides the score is found as well
    imp = gates.gate_importance(synthetic_study(trials=10, noise=0.001, lr_effect=0.2), seed=0, n_trees=32)
    assert imp.iloc[0]["feature"] == "lr"


def test_fanova_handles_features_that_do_not_vary():
    df = synthetic_study({"nfg": 0.3}, trials=6)
    df = df[df.variant.isin(["vanilla", "nfg"])]
    imp = gates.gate_importance(df).set_index("feature")
    assert imp.loc["forget_gate", "varies"] and imp.loc["forget_gate", "rank"] == 1
    for f in ("input_gate", "peepholes", "coupled"):
        assert not imp.loc[f, "varies"] and imp.loc[f, "importance"] == 0.0
    same = df.assign(score=0.5)  # no variance at all: nothing to explain
    assert (gates.gate_importance(same)["importance"] == 0).all()


def test_ranking_table_has_the_papers_columns():
    df = synthetic_study({"nfg": 0.3, "noaf": 0.2}, trials=10)
    ranking = gates.ranking_table(gates.gate_importance(df, n_trees=32), gates.welch_tests(df, 0.3))
    frame = ranking.frame
    for col in ("feature", "variant", "importance", "our_rank", "our_welch", "greff_finding", "greff_critical",
                "agrees_with_greff", "jozefowicz_rank"):
        assert col in frame.columns
    assert list(frame["feature"])[:2] == ["forget_gate", "output_activation"]
    assert set(frame.loc[frame.greff_critical, "feature"]) == {"forget_gate", "output_activation"}
    joz = frame.dropna(subset=["jozefowicz_rank"]).sort_values("jozefowicz_rank")
    assert list(joz["feature"]) == ["forget_gate", "input_gate", "output_gate"]
    row = frame.set_index("feature").loc["forget_gate"]
    assert row["our_welch"] == "worse" and row["agrees_with_greff"] == "yes"
    assert "Greff" in ranking.markdown and "Jozefowicz" in ranking.markdown
    assert ranking.markdown.count("\n| ") >= 9  # header + 8 features


def test_write_gate_report_writes_every_file(tmp_path):
    files = gates.write_gate_report(synthetic_study({"nfg": 0.3}, trials=5), tmp_path)
    for key in ("trials_csv", "welch_csv", "welch_md", "importance_csv", "ranking_csv", "ranking_md",
                "distributions_png", "importance_png", "report_md"):
        assert files[key].exists() and files[key].stat().st_size > 0, key
    assert files["distributions_png"].read_bytes()[:4] == b"\x89PNG"


def test_hyperparameter_draws_are_seeded_and_in_range():
    a = gate_study.study_jobs(trials_per_variant=4, variants=["vanilla", "nfg"], seed=3)
    b = gate_study.study_jobs(trials_per_variant=4, variants=["vanilla", "nfg"], seed=3)
    assert [(j["lr"], j["hidden"]) for j in a] == [(j["lr"], j["hidden"]) for j in b]
    assert all(16 <= j["hidden"] <= 64 and 1e-3 <= j["lr"] <= 3e-2 for j in a)
    assert [j["hidden"] for j in a[:4]] == [j["hidden"] for j in a[4:]]  # paired: same settings per variant
    unpaired = gate_study.study_jobs(trials_per_variant=4, variants=["vanilla", "nfg"], seed=3, paired=False)
    assert [j["lr"] for j in unpaired[:4]] != [j["lr"] for j in unpaired[4:]]
    assert a[0]["config"]["task_options"] == gate_study.DEFAULT_TASK_OPTIONS["arith"]


@pytest.mark.slow
def test_tiny_fresh_gate_study_runs_end_to_end(tmp_path):
    seen = []
    df = gate_study.run_gate_study("arith", trials_per_variant=2, steps=3, hidden_range=(8, 12),
                                   task_options={"max_digits": 1, "eval_examples": 16}, variants=["vanilla", "nfg"],
                                   workers=1, progress=lambda i, n, row: seen.append((i, n)))
    assert len(df) == 4 and seen[-1] == (4, 4)
    assert list(df["variant"]) == ["vanilla", "vanilla", "nfg", "nfg"]
    for col in ("variant", "seed", "lr", "hidden", "score", "status", "seconds"):
        assert col in df.columns
    assert (df["status"] == "ok").all() and df["score"].between(0, 1).all()
    files = gates.write_gate_report(df, tmp_path)
    assert all(p.exists() for p in files.values())


def test_bad_study_options_fail_early():
    from cellsearch.errors import ConfigError

    with pytest.raises(ConfigError):
        gate_study.run_gate_study(variants=["lstm"])
    with pytest.raises(ConfigError):
        gate_study.run_gate_study(task_options={"no_such_option": 1}, variants=["vanilla"], trials_per_variant=1)
    with pytest.raises(ConfigError):
        gate_study.run_gate_study(hidden_range=(32, 16))


# ------------------------------------------------------------------------------------------ a fake search run
RUN_CELLS = ["vanilla", "nfg", "noaf", "lstm", "tanh", "mut1", "nig", "cifg"]


def make_run(run_dir: Path, strategy: str = "evolution", seed: int = 0) -> Path:
    """A run directory as `cellsearch search` leaves it, without running a search."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"name": run_dir.name, "space": "mutation", "strategy": strategy, "tasks": ["arith"], "trials": 12,
           "steps": 50, "reference": "gru", "train": {"hidden_size": 64, "batch_size": 32, "lr": 5e-3}}
    (run_dir / "config.json").write_text(json.dumps(cfg))
    with Store(run_dir / "results.db") as store:
        gru = get_cell("gru")
        store.add_trial(hash=canonical_hash(gru), cell_yaml=dumps_cell(gru), cell_name="gru", strategy="reference",
                        origin="reference", status="ok", score=0.6, metrics={"arith": {"char_accuracy": 0.6}})
        ids = {}
        for i, name in enumerate(RUN_CELLS * 2):
            g = get_cell(name)
            h = canonical_hash(g)
            if name == "tanh" and i >= len(RUN_CELLS):
                store.add_trial(hash=h, cell_yaml=dumps_cell(g), strategy=strategy, origin="mutation", status="ok",
                                score=0.3, metrics={}, reused_from=ids[h], seconds=0.0)
                continue
            if name == "nig" and i < len(RUN_CELLS):
                store.add_trial(hash=h, cell_yaml=dumps_cell(g), strategy=strategy, origin="sample",
                                status="diverged", score=None, metrics={"arith": {"status": ["diverged"]}})
                continue
            acc = float(np.clip(0.5 + 0.1 * rng.normal() - (0.2 if name == "nfg" else 0.0), 0, 1))
            hp = {"lr": float(10 ** rng.uniform(-3, -2)), "init_scale": 1.0, "clip": 5.0} if i % 2 else "defaults"
            ids[h] = store.add_trial(hash=h, cell_yaml=dumps_cell(g), cell_name=name, strategy=strategy,
                                     origin="sample", status="ok", score=acc, params=1000 + i, seconds=1.0,
                                     metrics={"arith": {"char_accuracy": acc, "loss": 1.0, "hyperparameters": hp}})
    return run_dir


def test_search_report_functions(tmp_path):
    run = make_run(tmp_path / "evo")
    df = report.load_run(run)
    curves = report.best_so_far(df)
    assert len(curves) == 2 * len(RUN_CELLS)  # the reference is not a trial; the reused one is
    assert (curves["best"].dropna().diff().dropna() >= 0).all()
    assert curves["best"].iloc[-1] == pytest.approx(df[df.origin != "reference"]["score"].max())
    dist = report.score_distribution(df).iloc[0]
    assert dist["trials"] == 2 * len(RUN_CELLS) - 1 and dist["diverged"] == 1
    tops = report.top_cells_table(run, 3)
    assert list(tops["rank"]) == [1, 2, 3] and tops["score"].is_monotonic_decreasing
    freq = report.op_frequencies(run, 3).set_index("op")
    assert freq.loc["tanh", "all_cells"] == len(RUN_CELLS)  # every cell here has a tanh
    assert freq.loc["linear", "top_share"] == 1.0 and freq["lift"].notna().all()
    assert set(freq["kind"]) <= {"linear", "elementwise", "activation", "scale", "const"}


def test_write_search_report_produces_every_file(tmp_path):
    run = make_run(tmp_path / "evo")
    files = report.write_search_report(run, tmp_path / "out", top=3)
    for key in ("trials_csv", "best_so_far_csv", "best_so_far_png", "score_distribution_csv", "score_distribution_md",
                "score_histogram_png", "top_cells_csv", "top_cells_md", "op_frequencies_csv", "op_frequencies_md",
                "report_md", "cell_1", "cell_2", "cell_3"):
        assert files[key].exists() and files[key].stat().st_size > 0, key
    text = files["report_md"].read_text()
    assert "best_so_far.png" in text and "cells/rank1_" in text


def test_compare_runs_shares_one_plot(tmp_path):
    a = make_run(tmp_path / "evo", "evolution", 0)
    b = make_run(tmp_path / "rand", "random", 1)
    curves = report.compare_runs([a, b], tmp_path / "compare.png")
    assert set(curves["run"]) == {"evo", "rand"}
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_load_gate_study_from_a_run(tmp_path):
    run = make_run(tmp_path / "evo")
    df = gates.load_gate_study(run)
    # tanh and mut1 are not Greff's; torch's LSTM (no peepholes) is structurally NP and counts as np
    assert set(df["variant"]) == {"vanilla", "nfg", "noaf", "nig", "cifg", "np"}
    assert (df.loc[df.status == "ok", "lr"] > 0).all()  # from the metrics JSON, or config.json for "defaults"
    assert (df.loc[df.status == "ok", "hidden"] == 64).all()
    assert df.loc[df.status == "diverged", "score"].isna().all()
    assert len(gates.welch_tests(df)) == 5
    from cellsearch.errors import ConfigError

    empty = tmp_path / "empty"
    empty.mkdir()
    Store(empty / "results.db").close()
    with pytest.raises(ConfigError):
        gates.load_gate_study(empty)


def test_jozefowicz_agreement_and_plot(tmp_path):
    from cellsearch.reproduce import PAPER, summarise

    runs = pd.DataFrame([{"cell": c, "task": "arith", "seed": s, "char_accuracy": PAPER[c][0] + 0.01 * s,
                          "status": "ok"} for c in ("lstm", "gru", "tanh", "lstm-f") for s in range(2)])
    table = summarise(runs)
    agree = report.jozefowicz_agreement(table).set_index("task")
    assert agree.loc["arith", "spearman"] == pytest.approx(1.0)
    assert agree.loc["arith", "ours_best"] == agree.loc["arith", "paper_best"] == "gru"
    assert report.plot_jozefowicz(table, tmp_path / "j.png").exists()


# ------------------------------------------------------------------------------------------ CLI
def cli_app() -> typer.Typer:
    from cellsearch.cli import analyze

    app = typer.Typer()
    app.add_typer(analyze.app, name="analyze")

    @app.callback()
    def _root() -> None:  # keeps `analyze` a sub-command
        pass

    return app


def test_cli_analyze_report_and_gates_from_a_run(tmp_path):
    runner = CliRunner()
    a = make_run(tmp_path / "evo", "evolution", 0)
    b = make_run(tmp_path / "rand", "random", 1)
    res = runner.invoke(cli_app(), ["analyze", "report", str(a), str(b), "-o", str(tmp_path / "rep"), "--top", "2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "evo" / "report.md").exists() and (tmp_path / "rep" / "rand" / "report.md").exists()
    assert (tmp_path / "rep" / "compare_best_so_far.png").exists()
    res = runner.invoke(cli_app(), ["analyze", "gates", str(a), "-o", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    assert "forget_gate" in res.stdout and (tmp_path / "g" / "ranking.md").exists()


@pytest.mark.slow
def test_cli_analyze_gates_fresh_and_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli_app(), ["analyze", "gates", "--fresh", "--variants", "vanilla,noaf", "--trials", "2",
                                    "--steps", "3", "--hidden-min", "8", "--hidden-max", "12", "--workers", "1",
                                    "-o", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    assert "Greff" in res.stdout and (tmp_path / "g" / "distributions.png").exists()
    res = runner.invoke(cli_app(), ["analyze", "gates"])
    assert res.exit_code == 2 and "error:" in res.output
    res = runner.invoke(cli_app(), ["analyze", "report", str(tmp_path / "nope"), "-o", str(tmp_path / "r")])
    assert res.exit_code == 2 and "no such run directory" in res.output
    res = runner.invoke(cli_app(), ["analyze", "gates", "--fresh", "--variants", "lstm", "--trials", "1"])
    assert res.exit_code == 2 and "Greff" in res.output


# ------------------------------------------------------------------------------------------ notebooks
@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A `python3` kernelspec whose python is this interpreter (found first through JUPYTER_PATH), so the
    notebooks run in this environment whatever else is installed for the user."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (cellsearch tests)", "language": "python"}))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(root))
    mp.setenv("MPLBACKEND", "Agg")
    yield "python3"
    mp.undo()


def execute(name: str, out: Path, kernel: str, **parameters):
    import nbformat
    import papermill

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out / f"{name}.out.ipynb"),
                               parameters=parameters, kernel_name=kernel, cwd=str(out), progress_bar=False,
                               execution_timeout=300)
    done = nbformat.read(out / f"{name}.out.ipynb", as_version=4)
    outputs = [o for c in done.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    return done, outputs


def _has_image(outputs) -> bool:
    return any("image/png" in o.get("data", {}) for o in outputs)


@pytest.mark.slow
def test_gate_importance_notebook_executes(tmp_path, kernel):
    _, outputs = execute("gate_importance", tmp_path, kernel, trials_per_variant=2, steps=3, seeds=1,
                         variants=["vanilla", "nfg"], hidden_range=[8, 12], workers=1,
                         out_dir=str(tmp_path / "gates"))
    assert _has_image(outputs)
    assert (tmp_path / "gates" / "ranking.md").exists() and (tmp_path / "gates" / "distributions.png").exists()


@pytest.mark.slow
def test_gate_importance_notebook_reads_a_run(tmp_path, kernel):
    run = make_run(tmp_path / "evo")
    execute("gate_importance", tmp_path, kernel, run_dir=str(run), out_dir=str(tmp_path / "gates"))
    assert (tmp_path / "gates" / "welch.csv").exists()


@pytest.mark.slow
def test_jozefowicz_notebook_executes(tmp_path, kernel):
    from cellsearch.reproduce import PAPER

    _, outputs = execute("jozefowicz_table", tmp_path, kernel, budget="smoke", seeds=1, cells=["lstm", "tanh"],
                         tasks=["arith"], workers=1, out_dir=str(tmp_path / "joz"))
    assert (tmp_path / "joz" / "results.csv").exists() and (tmp_path / "joz" / "jozefowicz.png").exists()
    assert _has_image(outputs)
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "paper" in text and f"{PAPER['lstm'][0]:.3f}" in text
    csv = tmp_path / "given.csv"
    pd.DataFrame([{"cell": c, "task": "arith", "seed": 0, "char_accuracy": PAPER[c][0]} for c in PAPER]).to_csv(
        csv, index=False)
    execute("jozefowicz_table", tmp_path, kernel, results_csv=str(csv), out_dir=str(tmp_path / "joz2"))
    assert (tmp_path / "joz2" / "jozefowicz.png").exists()


@pytest.mark.slow
def test_search_report_notebook_executes(tmp_path, kernel, monkeypatch):
    import cellsearch.runner.final as final
    from cellsearch.analysis.fidelity import fidelity_run
    from cellsearch.storage.outcome import TrainingOutcome
    from cellsearch.runner.jobs import JobSettings
    from cellsearch.runner.protocol import protocol_for_run

    a = make_run(tmp_path / "evo", "evolution", 0)
    b = make_run(tmp_path / "rand", "random", 1)
    # run a has a fidelity report (from a stand-in trainer), run b has none
    monkeypatch.setattr(final, "retrain", lambda job: TrainingOutcome(
        "ok", "char_accuracy", 0.5, {"valid": {"char_accuracy": 0.5}, "test": {"char_accuracy": len(job["name"]) / 10}},
        params=1))
    fidelity_run(a, protocol_for_run(a, seeds=1, lr_factors=(1.0,)), JobSettings(backend="local", population=False),
                 sample=3, min_tau=-1.0)
    _, outputs = execute("search_report", tmp_path, kernel, run_dirs=[str(a), str(b)],
                         out_dir=str(tmp_path / "rep"), top=2)
    assert _has_image(outputs)
    texts = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "Search fidelity" in texts and "Kendall" in texts
    assert "no evaluation yet (`cellsearch evaluate" in texts and "rand: no fidelity yet" in texts
    assert (tmp_path / "rep" / "evo" / "report.md").exists() and (tmp_path / "rep" / "rand" / "report.md").exists()
    assert (tmp_path / "rep" / "compare_best_so_far.png").exists()
