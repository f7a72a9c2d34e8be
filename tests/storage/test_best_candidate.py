"""What a run says of its best *candidate* (the reference cell left out) and of stages that rejected all."""

import json

from cellsearch.storage import rundir
from cellsearch.storage.results import best_candidate, stage_warnings
from cellsearch.storage.store import Store


def _run(tmp_path, rows, warnings=None):
    (tmp_path / rundir.CONFIG).write_text(json.dumps({"name": "r"}))
    with Store(tmp_path / rundir.RESULTS) as store:
        for r in rows:
            store.add_trial(cell_yaml="name: x", strategy="evolution", **r)
        if warnings is not None:
            store.set_meta("stage_warnings", warnings)
    return tmp_path


REF = dict(hash="g", cell_name="gru", origin="reference", status="ok", score=1.0,
           metrics={"memorize": {"accuracy": 0.5}, "arith": {"char_accuracy": 0.3}}, stage="passed")


def test_the_best_candidate_is_the_best_scored_one_not_the_reference(tmp_path):
    run = _run(tmp_path, [REF,
                          dict(hash="a", cell_name="a", origin="mutation", status="ok", score=0.8, stage="passed"),
                          dict(hash="b", cell_name="b", origin="mutation", status="ok", score=0.9, stage="passed"),
                          dict(hash="b", cell_name="b", origin="seed", status="ok", score=2.0, reused_from=3)])
    best = best_candidate(run)
    assert (best["hash"], best["cell"], best["score"], best["value"]) == ("b", "b", 0.9, None)


def test_the_reference_cell_evaluated_again_by_the_strategy_is_no_candidate(tmp_path):
    run = _run(tmp_path, [REF,
                          dict(hash="g", cell_name="gru", origin="reevaluate", status="ok", score=1.1, stage="passed"),
                          dict(hash="a", cell_name="a", origin="mutation", status="ok", score=0.8, stage="passed")])
    assert best_candidate(run)["hash"] == "a"


def test_when_every_candidate_was_rejected_the_closest_is_named_with_what_it_reached(tmp_path):
    run = _run(tmp_path, [REF,
                          dict(hash="a", cell_name="a", origin="seed", status="rejected", score=None,
                               stage="memorize", metrics={"memorize": {"accuracy": 0.48}}),
                          dict(hash="b", cell_name="b", origin="mutation", status="rejected", score=None,
                               stage="memorize", metrics={"memorize": {"accuracy": 0.57}}),
                          dict(hash="c", cell_name="c", origin="mutation", status="failed", score=None)])
    best = best_candidate(run)
    assert (best["hash"], best["score"], best["stage"], best["status"]) == ("b", None, "memorize", "rejected")
    assert best["value"] == 0.57


def test_a_run_without_candidates_has_no_best_candidate_and_old_runs_no_warnings(tmp_path):
    run = _run(tmp_path, [REF])
    assert best_candidate(run) is None
    assert stage_warnings(run) == {}  # (a run written before the warnings has no such meta)


def test_stage_warnings_are_read_back(tmp_path):
    run = _run(tmp_path, [REF], warnings={"memorize": "stage 'memorize' has rejected all 3 candidates"})
    assert stage_warnings(run) == {"memorize": "stage 'memorize' has rejected all 3 candidates"}
