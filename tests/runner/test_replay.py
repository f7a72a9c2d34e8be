"""Replaying searches on tables of trained cells: tables, lookups, every strategy, NAS-Bench-NLP logs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell
from cellsearch.errors import ConfigError
from cellsearch.library import builtin_names, resolve_cell
from cellsearch.storage.results import stage_counts
from cellsearch.runner.search import SearchRun
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import read_results
from cellsearch.strategies import STRATEGY_NAMES
from cellsearch.storage.benchmark_tables import BenchmarkTable, import_nasbench_logs, make_frame, read_table, write_table
from tests.support.paths import REPO, SHARED

runner = CliRunner()
SAMPLE = SHARED / "data" / "nasbench_nlp" / "recipes_example.json"
MEMBERS = [n for n in builtin_names() if n != "np"]  # np is the same structure as lstm


def synthetic_table(path: Path, seed: int = 0) -> tuple[Path, str]:
    """A table scoring every member of a finite space at random; returns (path, best hash)."""
    rng = random.Random(seed)
    rows = []
    for name in MEMBERS:
        g = resolve_cell(name)
        rows.append({"hash": canonical_hash(g), "score": rng.random(), "status": "ok", "cell_name": g.name,
                     "cell_yaml": dumps_cell(g), "params": rng.randint(100, 1000), "seconds": 1.0 + rng.random(),
                     "metrics": {"arith": {"char_accuracy": 0.5}}, "source": "synthetic"})
    write_table(make_frame(rows), path)
    return path, max(rows, key=lambda r: r["score"])["hash"]


@pytest.fixture
def finite_space(tmp_path) -> Path:
    p = tmp_path / "all_cells.yaml"
    p.write_text("kind: finite\nname: all_cells\ncells: [" + ", ".join(MEMBERS) + "]\n")
    return p


@pytest.fixture
def no_training(monkeypatch):
    """Any attempt to train a model fails the test."""
    import cellsearch.runner.trial as trial
    import cellsearch.training.trainer as train

    def refuse(*a, **k):
        raise AssertionError("a replayed search trained a model")

    monkeypatch.setattr(train.Trainer, "run", refuse)
    monkeypatch.setattr(trial, "_evaluate", refuse)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_tables_round_trip_in_every_format(tmp_path, suffix):
    path, best = synthetic_table(tmp_path / f"t{suffix}")
    table = BenchmarkTable(path)
    assert len(table) == len(MEMBERS)
    assert table.best().hash == best
    entry = table.lookup(best)
    assert entry.metrics == {"arith": {"char_accuracy": 0.5}} and entry.cell_yaml.startswith("name:") or entry.cell_yaml
    assert isinstance(entry.params, int) and entry.outcome().status == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_every_strategy_replays_and_finds_the_tables_best_cell(tmp_path, finite_space, no_training, strategy):
    table, best = synthetic_table(tmp_path / "t.parquet", seed=3)
    cfg = SearchConfig(name="r", space=str(finite_space), strategy=strategy, trials=120, seed=1,
                       benchmark=str(table), tasks=["arith", "memorize"])  # a plan that would need a reference
    summary = SearchRun(cfg, tmp_path / "runs").run()
    assert summary["best_hash"] == best
    assert summary["missing"] == 0 and summary["benchmark"] == str(table)
    df = read_results(tmp_path / "runs" / "r")
    assert len(df) == 120 and set(df["node"].dropna()) == {"replay"}
    assert "reference" not in set(df["origin"])  # scores come from the table as they are
    assert (tmp_path / "runs" / "r" / "best.yaml").exists()


def test_replayed_scores_and_costs_are_the_tables(tmp_path, finite_space, no_training):
    table_path, _ = synthetic_table(tmp_path / "t.csv")
    table = BenchmarkTable(table_path)
    SearchRun(SearchConfig(name="r", space=str(finite_space), strategy="random", trials=10,
                           benchmark=str(table_path)), tmp_path).run()
    df = read_results(tmp_path / "r")
    for row in df[df["reused_from"].isna()].itertuples():
        entry = table.lookup(row.hash)
        assert row.score == pytest.approx(entry.score) and row.params == entry.params
        assert row.seconds == pytest.approx(entry.seconds)


def test_missing_cells_are_skipped_or_fail_as_configured(tmp_path, finite_space, no_training):
    table_path = tmp_path / "partial.json"
    g = resolve_cell("gru")
    write_table(make_frame([{"hash": canonical_hash(g), "score": 0.9, "cell_name": "gru"}]), table_path)
    summary = SearchRun(SearchConfig(name="skip", space=str(finite_space), strategy="random", trials=12,
                                     benchmark=str(table_path)), tmp_path).run()
    counts = stage_counts(tmp_path / "skip")
    assert summary["missing"] == counts["missing"] > 0
    df = read_results(tmp_path / "skip")
    missing = df[(df["status"] == "missing") & df["reused_from"].isna()]
    assert len(missing) and missing["score"].isna().all()
    assert missing["error"].str.contains("not in the benchmark table").all()
    with pytest.raises(ConfigError, match=r"is not in the benchmark table .*missing set to skip"):
        SearchRun(SearchConfig(name="fail", space=str(finite_space), strategy="random", trials=12, seed=5,
                               benchmark=str(table_path), missing="fail"), tmp_path).run()


def test_replay_on_an_open_space_records_what_the_table_lacks(tmp_path, no_training):
    """A generative space proposes cells no small table holds: the replay still runs and says so."""
    table_path, _ = synthetic_table(tmp_path / "t.parquet")
    summary = SearchRun(SearchConfig(name="m", space="mutation", strategy="evolution", trials=15,
                                     benchmark=str(table_path)), tmp_path).run()
    df = read_results(tmp_path / "m")
    assert len(df) == 15 and summary["missing"] == (df["status"] == "missing").sum() > 0


def test_cli_replay_export_and_reimport(tmp_path, finite_space, no_training):
    table, best = synthetic_table(tmp_path / "t.parquet")
    res = runner.invoke(app, ["search", "--space", str(finite_space), "--strategy", "regularized-evolution",
                              "--trials", "60", "--benchmark", str(table), "--name", "rep", "--runs",
                              str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # (rich wraps long lines)
    assert "no model was trained" in text and best in text
    out = tmp_path / "again.csv"
    res = runner.invoke(app, ["runs", "export", str(tmp_path / "rep"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    again = BenchmarkTable(out)
    assert again.best().hash == best and len(again) <= len(MEMBERS)


def test_a_relative_data_dir_is_stored_absolute(tmp_path, finite_space, no_training, monkeypatch):
    # trials run in Ray workers whose working directory is not the caller's
    table, _ = synthetic_table(tmp_path / "t.parquet")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["search", "--space", str(finite_space), "--trials", "2", "--benchmark", str(table),
                              "--name", "rel", "--runs", str(tmp_path), "--no-progress", "--data-dir", "data"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "rel" / "config.json").read_text())["data_dir"] == str(tmp_path / "data")


@pytest.mark.parametrize("content, message", [
    ("hash,status\nabc,ok\n", "has no column(s) score"),
    ("hash,score,status\nabc,0.5,great\n", "unknown status(es) great"),
    ("hash,score\nabc,0.1\n,0.5\n", "row 2 has no hash"),
])
def test_bad_tables_are_one_line_errors(tmp_path, content, message):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(ConfigError) as exc:
        read_table(p)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_table_format_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown table format '.xlsx'"):
        read_table(tmp_path / "t.xlsx")
    with pytest.raises(ConfigError, match="no benchmark table at"):
        read_table(tmp_path / "t.csv")
    res = runner.invoke(app, ["search", "--benchmark", str(tmp_path / "none.csv"), "--runs", str(tmp_path),
                              "--no-progress"])
    assert res.exit_code == 2 and "no benchmark table at" in res.output


# ---------------------------------------------------------------------- NAS-Bench-NLP logs
LSTM_LIKE = {"i": {"op": "linear", "input": ["x", "h_prev_0"]},
             "i_act": {"op": "activation_sigm", "input": ["i"]},
             "j": {"op": "linear", "input": ["x", "h_prev_0"]},
             "j_act": {"op": "activation_tanh", "input": ["j"]},
             "f": {"op": "linear", "input": ["x", "h_prev_0"]},
             "f_act": {"op": "activation_sigm", "input": ["f"]},
             "keep": {"op": "elementwise_prod", "input": ["f_act", "h_prev_1"]},
             "write": {"op": "elementwise_prod", "input": ["i_act", "j_act"]},
             "h_new_1": {"op": "elementwise_sum", "input": ["keep", "write"]},
             "c_act": {"op": "activation_tanh", "input": ["h_new_1"]},
             "o": {"op": "linear", "input": ["x", "h_prev_0"]},
             "o_act": {"op": "activation_sigm", "input": ["o"]},
             "h_new_0": {"op": "elementwise_prod", "input": ["o_act", "c_act"]}}
TANH_RNN = {"f": {"op": "linear", "input": ["x", "h_prev_0"]}, "h_new_0": {"op": "activation_tanh", "input": ["f"]}}


def nasbench_log(recipe: dict, val: list, status: str = "OK", recipe_id: int = 0) -> dict:
    """A training log in NAS-Bench-NLP's published format (train_logs_single_run/*.json)."""
    n = len(val)
    return {"recepie_id": recipe_id, "recepie": json.dumps(recipe), "num_params": 2_000_000 + recipe_id,
            "status": status, "train_losses": [v + 0.2 if v == v else v for v in val], "val_losses": val,
            "test_losses": [v - 0.05 if v == v else v for v in val], "wall_times": [10.0] * n, "epochs": n}


def write_logs(root: Path, logs: dict[str, dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, log in logs.items():
        (root / name).write_text(json.dumps(log))  # json writes NaN as NaN, as their logs do
    return root


def test_nasbench_logs_import_with_scores_params_and_statuses(tmp_path):
    logs = write_logs(tmp_path / "logs", {
        "lstm.json": nasbench_log(LSTM_LIKE, [6.0, 5.0, 4.6, 4.7], recipe_id=7),
        "tanh.json": nasbench_log(TANH_RNN, [6.5, 5.9], recipe_id=8),
        "nan.json": nasbench_log(TANH_RNN | {"g": {"op": "linear", "input": ["x"]},
                                             "h_new_0": {"op": "elementwise_sum", "input": ["f", "g"]}},
                                 [7.0, float("nan")], status="Nan", recipe_id=9)})
    df, skipped = import_nasbench_logs(logs)
    assert skipped == [] and len(df) == 3
    row = df.set_index("cell_name").loc["nb_7"]
    assert row["score"] == pytest.approx(math.exp(-4.6))  # best epoch's validation word probability
    assert row["params"] == 2_000_007 and row["seconds"] == pytest.approx(40.0)
    m = json.loads(row["metrics"])["ptb"]
    assert m["best_epoch"] == 2 and m["perplexity"] == pytest.approx(math.exp(4.6))
    assert m["test_loss"] == pytest.approx(4.55)
    from cellsearch.dsl.nasbench import recipe_to_cell

    assert row["hash"] == canonical_hash(recipe_to_cell(LSTM_LIKE, "other_name"))
    nan_row = df.set_index("cell_name").loc["nb_9"]
    assert nan_row["status"] == "diverged" and nan_row["score"] == pytest.approx(math.exp(-7.0))


def test_nasbench_import_cli_and_replay_on_the_nasbench_space(tmp_path, no_training):
    recipes = json.loads(SAMPLE.read_text()) if SAMPLE.exists() else [TANH_RNN, LSTM_LIKE]
    logs = {f"log_{i}.json": nasbench_log(r, [6.0 - 0.1 * i, 5.5 - 0.1 * i], recipe_id=i)
            for i, r in enumerate(recipes)}
    write_logs(tmp_path / "logs" / "train_logs_single_run", logs)
    out = tmp_path / "nb.parquet"
    res = runner.invoke(app, ["runs", "import-nasbench", str(tmp_path / "logs"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{len(recipes)} rows" in " ".join(res.output.split())  # rich wraps long paths over lines
    table = BenchmarkTable(out)
    summary = SearchRun(SearchConfig(name="nb", space="nasbench_nlp", strategy="random", trials=5,
                                     benchmark=str(out), tasks=["ptb"]), tmp_path).run()
    assert summary["trials"] == 5  # PTB data is not needed: nothing is trained
    assert len(table) == len({canonical_hash(resolve_cell_from_recipe(r)) for r in recipes})


def resolve_cell_from_recipe(recipe: dict):
    from cellsearch.dsl.nasbench import recipe_to_cell

    return recipe_to_cell(recipe, "r")


@pytest.mark.parametrize("log, message", [
    ({"val_losses": [1.0]}, "not a NAS-Bench-NLP log (no 'recepie' field"),
    ({"recepie": "{not json"}, "the recipe is not valid JSON"),
    ({"recepie": json.dumps({"h_new_0": {"op": "conv", "input": ["x"]}})}, "conv"),
    ({"recepie": json.dumps(TANH_RNN), "val_losses": 3}, "'val_losses' must be a list"),
])
def test_bad_nasbench_logs_name_the_file_and_the_problem(tmp_path, log, message):
    logs = write_logs(tmp_path / "logs", {"bad.json": log, "good.json": nasbench_log(TANH_RNN, [5.0])})
    with pytest.raises(ConfigError) as exc:
        import_nasbench_logs(logs)
    assert "bad.json" in str(exc.value) and message in str(exc.value)
    df, skipped = import_nasbench_logs(logs, on_error="skip")
    assert len(df) == 1 and len(skipped) == 1 and skipped[0][0].endswith("bad.json")
    res = runner.invoke(app, ["runs", "import-nasbench", str(logs), "-o", str(tmp_path / "t.csv")])
    assert res.exit_code == 2 and "bad.json" in res.output


# ---------------------------------------------------------------------- the benchmark scripts
def _script(name: str):
    import importlib.util

    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_table_trains_every_distinct_cell_and_resumes(tmp_path):
    make_table = _script("make_table")
    from cellsearch.spaces import load_space

    space = load_space({"kind": "dag", "nodes": 2, "activations": ["tanh", "relu"]})
    cells = make_table.enumerate_cells(space)
    assert len(cells) == len({canonical_hash(g) for _, g in cells}) == 4
    out = tmp_path / "t.csv"
    args = ["--space", "dag4", "--budget", "2", "--hidden", "4", "--workers", "1", "-t", "max_digits=1",
            "-t", "eval_examples=8", "-o", str(out)]
    assert make_table.main(args + ["--limit", "2"]) == 0
    assert len(BenchmarkTable(out)) == 2
    assert make_table.main(args + ["--limit", "3"]) == 0  # continues: only the third cell is trained
    table = read_table(out)
    assert len(table) == 3 and table["score"].notna().all() and (table["status"] == "ok").all()


def test_strategies_benchmark_replays_every_strategy(tmp_path, finite_space):
    strategies = _script("strategies")
    table, best = synthetic_table(tmp_path / "t.parquet")
    out = tmp_path / "report"
    assert strategies.main(["--table", str(table), "--space", str(finite_space), "--seeds", "2",
                            "--evaluations", "12", "--workers", "1", "--out", str(out)]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert set(summary["strategies"]) == set(STRATEGY_NAMES)
    for s, d in summary["strategies"].items():
        assert len(d["curve_mean"]) == 12 and d["curve_mean"] == sorted(d["curve_mean"])  # best-so-far rises
        assert d["at"]["12"]["mean"] <= summary["table_best"]
    assert out.with_suffix(".png").stat().st_size > 0 and "| random |" in out.with_suffix(".md").read_text()
    land = summary["landscape"]  # one decision (the member), every cell its own group: it explains everything
    assert land["cells"] == len(MEMBERS) and land["eta_squared"] == {"cell": pytest.approx(1.0)}
    assert land["mutant_pairs"] == 4 * len(MEMBERS) and -1 <= land["mutant_correlation"] <= 1
    assert "](report.png)" in out.with_suffix(".md").read_text()


def test_a_replay_resumes_as_a_replay(tmp_path, finite_space, no_training):
    table, best = synthetic_table(tmp_path / "t.csv", seed=4)
    SearchRun(SearchConfig(name="r", space=str(finite_space), strategy="tpe", trials=10, benchmark=str(table)),
              tmp_path).run()
    summary = SearchRun.resume(tmp_path / "r", trials=80).run()
    assert summary["trials"] == 80 and summary["benchmark"] == str(table) and summary["best_hash"] == best


def curve_table(path: Path, cells: int = 40, seed: int = 0) -> Path:
    """A table of learning curves (every 100 steps up to 800) whose early scores rank like the final ones, plus noise."""
    rng = random.Random(seed)
    rows = []
    for i in range(cells):
        quality = rng.random()
        steps = list(range(100, 900, 100))
        members = [[quality * s / 800 + rng.gauss(0, 0.02) for s in steps] for _ in range(2)]
        mean = [(a + b) / 2 for a, b in zip(*members)]
        diverged = i == 3
        if diverged:
            mean[-3:] = [None] * 3
        rows.append({"hash": f"{i:016x}", "score": None if diverged else mean[-1],
                     "status": "diverged" if diverged else "ok", "cell_name": f"c{i}", "seeds": 2,
                     "curve": {"steps": steps, "mean": mean, "members": members}})
    write_table(make_frame(rows), path)
    return path


def test_asha_rule_is_rays_bracket():
    from ray.tune.schedulers.async_hyperband import _Bracket

    asha = _script("asha_replay")

    class T:
        def __init__(self, i):
            self.trial_id = str(i)

    rng = random.Random(3)
    for rf in (2, 3, 4):
        bracket = _Bracket(min_t=1, max_t=8, reduction_factor=rf, s=0)
        milestones = [m for m, _ in bracket._rungs]
        recorded = {m: [] for m in milestones}
        for i in range(60):
            for it in range(1, 9):
                score = rng.random()
                ours = False
                if it in recorded:
                    ours = asha.asha_stops(recorded[it], score, rf)
                    recorded[it].append(score)
                assert (bracket.on_result(T(i), it, score) == "STOP") == ours
                if ours:
                    break


def test_asha_replay_reports_fidelity_and_compute_saved(tmp_path):
    asha = _script("asha_replay")
    table = curve_table(tmp_path / "curves.parquet")
    steps, curves, finals, names = asha.load_curves(table)
    assert steps == list(range(100, 900, 100)) and curves.shape == (40, 8) and not math.isfinite(finals[3])
    out = tmp_path / "asha"
    assert asha.main(["--table", str(table), "--repeats", "20", "--trials", "8,16", "--out", str(out)]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    fid = {f["steps"]: f for f in summary["fidelity"]}
    assert fid[800]["kendall"] == pytest.approx(1.0) and fid[100]["kendall"] < 1.0 and fid[800]["cells"] == 39
    by_name = {r["schedule"]: r for r in summary["schedules"]}
    assert by_name["fifo"]["at"]["16"]["saved"] == pytest.approx(1.0)
    assert by_name["fifo"]["at"]["16"]["compute_runs"] == pytest.approx(16)
    eta2 = by_name["asha η=2 rungs 100,200,400"]["at"]["16"]
    assert eta2["compute_runs"] < 16 and eta2["saved"] > 1  # curves that rank early: stopping pays
    assert "| fifo |" in out.with_suffix(".md").read_text() and out.with_suffix(".png").stat().st_size > 0
    spread = summary["spread"]
    assert spread["cells"] == 39 and spread["seeds"] == 2 and 0.5 < spread["icc"] <= 1
    assert spread["seed_std"] == pytest.approx(0.02, rel=0.5)  # the noise put in: σ 0.02 per seed
    assert "How much the cells differ" in out.with_suffix(".md").read_text()


def test_asha_replay_needs_curves(tmp_path):
    asha = _script("asha_replay")
    table, _ = synthetic_table(tmp_path / "t.csv")
    with pytest.raises(ConfigError, match="no learning curves"):
        asha.load_curves(table)


def test_make_table_with_seeds_records_each_seeds_curve(tmp_path):
    make_table = _script("make_table")
    out = tmp_path / "t.parquet"
    args = ["--space", "dag4", "--budget", "4", "--hidden", "4", "--workers", "1", "-t", "max_digits=1",
            "-t", "eval_examples=8", "--seeds", "2", "--curve-every", "2", "--limit", "1", "-o", str(out)]
    assert make_table.main(args) == 0
    row = read_table(out).iloc[0]
    curve = json.loads(row["curve"])
    assert curve["steps"] == [2, 4] and len(curve["members"]) == 2 and row["seeds"] == 2
    assert curve["mean"] == pytest.approx([sum(c) / 2 for c in zip(*curve["members"])])
    assert row["score"] == pytest.approx(curve["mean"][-1])  # the final evaluation is the last point


def test_the_mutation1_table_covers_its_space():
    make_table = _script("make_table")
    from cellsearch.spaces import load_space

    table = REPO / "benchmarks" / "tables" / "mutation1-arith.parquet"
    space = load_space("mutation1")
    hashes = {h for h, _ in make_table.enumerate_cells(space)} | {canonical_hash(g) for g in space.seeds()}
    loaded = BenchmarkTable(table)
    assert len(loaded) == len(hashes) and all(h in loaded for h in hashes)
    assert set(read_table(table)["seeds"]) == {3}
