"""One typed trial: a TrialSpec and its TrialOutcome across the process boundary (runner.wire), and what the
worker refuses; the candidate's derived values computed once; a run's files as before."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell, loads_cell
from cellsearch.errors import ConfigError
from cellsearch.library import builtin_names, resolve_cell
from cellsearch.storage.outcome import TRAINING_STATUSES, SeedOutcome, TrainingOutcome, TrialOutcome
from cellsearch.runner import wire
from cellsearch.runner.trial import TrialSpec, trial_spec
from cellsearch.spaces.base import Candidate
from cellsearch.storage.store import FINAL_STATUSES
from cellsearch.strategies.base import Stage

CELLS = sorted(builtin_names())
TASKS = ("arith", "memorize", "xml", "ptb")

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
names = st.text("abcdefghij_", min_size=1, max_size=8)
plain = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | finite | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
                     max_leaves=8)
stages = st.builds(Stage, task=st.sampled_from(TASKS), min_score=st.none() | finite, relative=st.none() | finite,
                   settings=st.integers(1, 4), scoring=st.booleans(), steps=st.none() | st.integers(1, 10**6),
                   task_options=st.dictionaries(names, plain, max_size=3))


@st.composite
def specs(draw) -> TrialSpec:
    graph = resolve_cell(draw(st.sampled_from(CELLS)))
    return trial_spec(Candidate(graph), draw(st.lists(stages, min_size=1, max_size=3)),
                      steps=draw(st.none() | st.integers(1, 10**6)), seconds=draw(st.none() | finite),
                      train=draw(st.dictionaries(names, plain, max_size=4)),
                      task_options=draw(st.dictionaries(st.sampled_from(TASKS), st.dictionaries(names, plain,
                                                                                                  max_size=3))),
                      reference=draw(st.none() | st.dictionaries(st.sampled_from(TASKS), finite, max_size=3)),
                      is_reference=draw(st.booleans()), seed=draw(st.integers(0, 2**31)),
                      seeds=draw(st.integers(1, 8)), threads=draw(st.none() | st.integers(1, 64)),
                      data_dir=draw(st.none() | st.text(max_size=12)))


def across(data):
    """What the other process reads: the wire form through JSON, as Tune carries it."""
    return json.loads(json.dumps(data))


@settings(max_examples=60, deadline=None)
@given(specs())
def test_a_spec_crosses_the_boundary_unchanged(spec):
    back = wire.spec_from_wire(across(wire.spec_to_wire(spec)))
    assert back == spec  # every field (the graph: rebuilt from its YAML, equal to the driver's)
    assert back.cell_yaml == dumps_cell(back.graph) and back.hash == canonical_hash(back.graph)
    assert all(isinstance(s, Stage) for s in back.plan)


outcomes = st.builds(TrialOutcome, score=st.none() | st.floats(width=32), status=st.sampled_from(FINAL_STATUSES),
                     metrics=st.dictionaries(st.sampled_from(TASKS), st.dictionaries(names, plain, max_size=3)),
                     stage=st.none() | st.sampled_from(TASKS + ("passed",)),
                     params=st.none() | st.integers(0, 10**9), seconds=st.none() | finite,
                     error=st.none() | st.text(max_size=40))


@settings(max_examples=100, deadline=None)
@given(outcomes)
def test_an_outcome_crosses_the_boundary_unchanged(outcome):
    back = wire.outcome_from_wire(wire.outcome_to_wire(outcome))
    if outcome.score is not None and math.isnan(outcome.score):  # (NaN is never equal to itself)
        assert math.isnan(back.score) and back.failed
        outcome = TrialOutcome(back.score, **{k: getattr(outcome, k) for k in
                                              ("status", "metrics", "stage", "params", "seconds", "error")})
    assert back == outcome


def gru_spec(**settings) -> TrialSpec:
    return trial_spec(Candidate(resolve_cell("gru")), [Stage("arith")], steps=2, **settings)


def test_a_spec_whose_hash_is_not_its_cells_is_refused():
    data = across(wire.spec_to_wire(gru_spec()))
    lstm = resolve_cell("lstm")
    for tampered in (dict(data, hash=canonical_hash(lstm)),  # another cell's hash
                     dict(data, cell_yaml=dumps_cell(lstm)),  # another cell under the hash
                     dict(data, hash="0" * 16)):
        with pytest.raises(ConfigError, match="is not the hash of its cell"):
            wire.spec_from_wire(tampered)


@pytest.mark.parametrize("change, says", [
    ({"cell_yaml": "name: x\nnodes: {h: 'h_prev +'}\n"}, "h"),  # a cell that fails to load
    ({"seeds": "many"}, "seeds"),
    ({"plan": [{"task": "arith", "settings": "two"}]}, "settings"),
    ({"train": ["hidden_size", 8]}, "train"),
    ({"steal": 1}, "steal"),
])
def test_the_worker_refuses_a_damaged_spec_and_trains_nothing(change, says):
    from cellsearch.runner.tune import run_received, search_trials

    trials = search_trials()
    ran = []
    kind = type(trials)(**{**trials.__dict__, "run": lambda spec, report=None: ran.append(spec)})
    out = run_received(kind, dict(across(trials.send(gru_spec())), **change))
    assert out.status == "failed" and out.score is None and "refused by the worker" in out.error
    assert says in out.error and ran == []


def test_the_worker_refuses_a_tampered_hash_and_trains_an_honest_spec():
    from cellsearch.runner.tune import run_received, search_trials

    trials = search_trials()
    ran = []
    kind = type(trials)(**{**trials.__dict__, "run": lambda spec, report=None: ran.append(spec) or TrialOutcome(1.0)})
    honest = across(trials.send(gru_spec()))
    out = run_received(kind, dict(honest, hash=canonical_hash(resolve_cell("lstm"))))
    assert out.status == "failed" and "is not the hash of its cell" in out.error and ran == []
    assert run_received(kind, honest) == TrialOutcome(1.0) and ran == [gru_spec()]


@pytest.mark.parametrize("text, says", [
    ('{"score": 1.0, "status": "great"}', "unknown status"),
    ('{"score": "high", "status": "ok"}', "score"),
    ('{"status": "ok"}', "score"),
    ('{"score": 1.0, "status": "ok", "bonus": 2}', "bonus"),
    ("not json", "not JSON"),
    ('[1, 2]', "mapping"),
])
def test_the_driver_refuses_a_damaged_outcome(text, says):
    with pytest.raises(ConfigError, match=says):
        wire.outcome_from_wire(text)


def test_a_candidates_hash_and_yaml_are_computed_once(monkeypatch):
    import cellsearch.spaces.base as base

    calls = []
    real = base.canonical_hash
    monkeypatch.setattr(base, "canonical_hash", lambda g: calls.append(g) or real(g))
    c = Candidate(resolve_cell("lstm"))
    assert c.hash == c.hash == real(c.graph) and len(calls) == 1
    assert c.yaml is c.yaml and loads_cell(c.yaml, warn=False) == c.graph
    spec = trial_spec(c, [Stage("arith")])
    assert (spec.hash, spec.cell_yaml) == (c.hash, c.yaml) and len(calls) == 1


def test_an_old_state_with_candidate_plans_resumes(tmp_path):
    """A run saved before candidates lost their (always empty) ``plan``: its state still resumes."""
    from cellsearch.runner.search import SearchRun
    from cellsearch.storage.settings import SearchConfig
    from cellsearch.storage.benchmark_tables import make_frame, write_table

    members = [n for n in CELLS if n != "np"]  # (np is lstm's structure: one table row per hash)
    space = tmp_path / "all_cells.yaml"
    space.write_text("kind: finite\nname: all_cells\ncells: [" + ", ".join(members) + "]\n")
    rows = [{"hash": canonical_hash(g), "score": i / len(members), "status": "ok", "cell_name": g.name,
             "cell_yaml": dumps_cell(g), "params": 100, "seconds": 1.0, "metrics": {"arith": {"char_accuracy": 0.5}},
             "source": "synthetic"} for i, g in enumerate(resolve_cell(n) for n in members)]
    table = write_table(make_frame(rows), tmp_path / "t.csv")
    cfg = SearchConfig(name="r", space=str(space), strategy="regularized-evolution", trials=12,
                       benchmark=str(table), strategy_options={"population_size": 4, "sample_size": 2})
    SearchRun(cfg, tmp_path).run()
    run = tmp_path / "r"
    state = json.loads((run / "state.json").read_text())
    population = state["strategy"]["population"]
    assert population and all("plan" not in m["candidate"] for m in population)
    for m in population:
        m["candidate"]["plan"] = None  # as every state written before had it
    (run / "state.json").write_text(json.dumps(state))
    summary = SearchRun.resume(run, trials=40).run()
    assert summary["trials"] == 40 and not summary["interrupted"]
    from cellsearch.storage.store import Store

    with Store(run / "results.db", readonly=True) as store:
        row = store.best()
    assert (run / "best.yaml").read_text() == row["cell_yaml"]  # the stored text, as it is


trainings = st.builds(TrainingOutcome, status=st.sampled_from(TRAINING_STATUSES), metric=st.none() | names,
                      score=st.none() | finite,
                      metrics=st.dictionaries(st.sampled_from(("valid", "test")), st.dictionaries(names, plain,
                                                                                                  max_size=3)),
                      params=st.none() | st.integers(0, 10**9), steps=st.integers(0, 10**6), seconds=finite,
                      error=st.none() | st.text(max_size=30), traceback=st.none() | st.text(max_size=30))


@settings(max_examples=60, deadline=None)
@given(trainings | st.lists(trainings, min_size=1, max_size=4))
def test_a_training_jobs_outcome_crosses_the_boundary_unchanged(outcome):
    assert wire.training_from_wire(wire.training_to_wire(outcome)) == outcome


@pytest.mark.parametrize("text, says", [
    ('{"status": "fine"}', "unknown status"),
    ('[{"status": "ok"}, {"status": "ok", "steps": "many"}]', "steps"),
    ('{"status": "ok", "valid": 0.5}', "valid"),  # (a retrain outcome of the old dict shape)
])
def test_the_driver_refuses_a_damaged_training_outcome(text, says):
    with pytest.raises(ConfigError, match=says):
        wire.training_from_wire(text)


SEED_RESULT = {"seed": 3, "top": [{"choices": [0, 1, 2], "hash": "ab" * 8, "score": 0.25,
                                   "metrics": {"char_accuracy": 0.25, "loss": None}, "params": 120}],
               "scored": 6, "steps": 12, "train_seconds": 1.5}


@pytest.mark.parametrize("outcome", [
    SeedOutcome("running", 3, "train", 4, 12, 3.5),
    SeedOutcome("running", 3, "score", 2, 6, None),
    SeedOutcome("ok", 3, result=SEED_RESULT),
    SeedOutcome("failed", 3, error="device cuda requested but CUDA is not available"),
])
def test_a_one_shot_seeds_outcome_crosses_the_boundary_unchanged(outcome):
    assert wire.seed_outcome_from_wire(wire.seed_outcome_to_wire(outcome)) == outcome


@pytest.mark.parametrize("change, says", [
    ({"status": "done"}, "unknown status"),
    ({"seed": "three"}, "seed"),
    ({"result": {**SEED_RESULT, "top": [{"choices": ["x"], "hash": "h", "score": 1.0, "metrics": {}}]}}, "choices"),
    ({"result": {**SEED_RESULT, "extra": 1}}, "unknown setting"),
])
def test_the_driver_refuses_a_damaged_seed_outcome(change, says):
    from dataclasses import asdict

    text = json.dumps({**asdict(SeedOutcome("ok", 3, result=SEED_RESULT)), **change})
    with pytest.raises(ConfigError, match=says):
        wire.seed_outcome_from_wire(text)


def test_a_seed_job_crosses_and_a_damaged_one_is_refused():
    data = dict(wire.seed_job_to_wire({"name": "x"}, 4, "/runs/x"), threads=2)
    assert wire.seed_job_from_wire(data) == wire.SeedJob({"name": "x"}, 4, "/runs/x", 2)
    with pytest.raises(ConfigError, match="seed"):
        wire.seed_job_from_wire({**data, "seed": [4]})
