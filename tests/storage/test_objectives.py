"""A search's objectives: the checks, the values of an outcome, their orientation, the size objectives of a cell."""

from __future__ import annotations

import math

import pytest

from cellsearch.errors import ConfigError
from cellsearch.library import resolve_cell
from cellsearch.storage.objectives import check_objectives, directions, measured, oriented, parse_objectives, values
from cellsearch.storage.outcome import TrialOutcome


def test_parse_and_check():
    assert parse_objectives("score, params") == ["score", "params"]
    assert parse_objectives("macs,score") == ["macs", "score"]
    for bad, says in (("score,flops", "unknown objective 'flops'"), ("score,params,score", "given twice"),
                      ("params", "must include score"), ("", "must include score")):
        with pytest.raises(ConfigError, match=says):
            parse_objectives(bad)
    with pytest.raises(ConfigError, match="list of names"):
        check_objectives("score")
    assert directions(["score", "params"]) == ["maximize", "minimize"]


def test_values_and_orientation():
    ok = TrialOutcome(0.5, params=120, objectives={"macs": 900.0})
    assert values(ok, ["score", "params", "macs"]) == [0.5, 120.0, 900.0]
    assert oriented([0.5, 120.0], ["score", "params"]) == (0.5, -120.0)
    assert values(TrialOutcome(None, "failed", params=3), ["score", "params"]) is None
    assert values(TrialOutcome(math.nan, "diverged", params=3), ["score", "params"]) is None
    assert values(TrialOutcome(0.5), ["score", "params"]) is None  # no parameter count: no vector
    assert values(TrialOutcome(0.5, params=10, objectives={"params": 7.0}), ["params"]) == [7.0]


def test_measured_sizes():
    lstm, gru = resolve_cell("lstm"), resolve_cell("gru")
    m = measured(lstm, {"hidden_size": 8}, None)
    assert m["params"] == lstm.param_count(8, 8) and m["macs"] == lstm.multiply_adds(8, 8)
    assert measured(gru, {"hidden_size": 8}, None)["macs"] < m["macs"]  # a GRU does 3/4 of an LSTM's products
    assert measured(lstm, {"hidden_size": 8}, 5)["params"] == 5  # the trial's count wins
    assert measured(lstm, {"hidden_size": 8, "embed_size": 4}, None)["macs"] == lstm.multiply_adds(4, 8)


def test_latency_comes_from_the_trials_metrics():
    from cellsearch.nn.latency import step_latency

    lstm = resolve_cell("lstm")
    m = measured(lstm, {"hidden_size": 8}, None, {"arith": {"char_accuracy": 0.5, "step_latency_ms": 0.25}})
    assert m["latency"] == 0.25
    assert "latency" not in measured(lstm, {"hidden_size": 8}, None, {"arith": {"char_accuracy": 0.5}})
    assert values(TrialOutcome(0.5, objectives=m), ["score", "latency"]) == [0.5, 0.25]
    ms = step_latency(lstm, 4, 8, steps=4, repeats=3)
    assert ms is not None and 0 < ms < 1000
    assert step_latency(resolve_cell("attn-gru"), 4, 8) is None  # reads a memory: not measured
