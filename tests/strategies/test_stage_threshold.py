"""The bar a candidate must reach at a stage of its evaluation plan (``stage_threshold``)."""

import pytest

from cellsearch.errors import ConfigError
from cellsearch.spaces import load_space
from cellsearch.strategies import make_strategy
from cellsearch.strategies.base import Stage, stage_threshold


def test_an_absolute_bar_holds_while_the_reference_reaches_it():
    stage = Stage("memorize", min_score=0.95, fallback=0.9, scoring=False)
    assert stage_threshold(stage, {"memorize": 0.97}) == 0.95
    assert stage_threshold(stage, {"memorize": 0.95}) == 0.95
    assert stage_threshold(stage, None) == 0.95  # no reference yet (a single-task plan): the bar as given


def test_a_bar_the_reference_misses_falls_to_a_fraction_of_its_score():
    stage = Stage("memorize", min_score=0.95, fallback=0.9, scoring=False)
    assert stage_threshold(stage, {"memorize": 0.5}) == pytest.approx(0.45)
    assert stage_threshold(stage, {"arith": 0.5}) == 0.95  # the reference has no score on this task


def test_without_a_fallback_the_absolute_bar_stays():
    stage = Stage("memorize", min_score=0.95, scoring=False)
    assert stage_threshold(stage, {"memorize": 0.5}) == 0.95


def test_relative_bars_and_stages_without_a_bar():
    assert stage_threshold(Stage("arith", relative=0.9), {"arith": 0.4}) == pytest.approx(0.36)
    assert stage_threshold(Stage("arith", relative=0.9), None) is None  # nothing to be relative to
    assert stage_threshold(Stage("arith"), {"arith": 0.4}) is None
    both = Stage("arith", min_score=0.3, relative=0.9)
    assert stage_threshold(both, {"arith": 0.4}) == pytest.approx(0.36)  # the higher bar counts
    assert stage_threshold(both, {"arith": 0.2}) == 0.3


def test_the_evolutions_memorisation_bar_falls_back_and_says_which_option_sets_it():
    space = load_space("mutation")
    memorize, arith = make_strategy("evolution", space).plan(["arith"])
    assert (memorize.min_score, memorize.fallback, memorize.option) == (0.95, 0.9, "memorize_threshold")
    assert arith.relative == 0.9 and arith.option == "relative_threshold"
    strict, _ = make_strategy("evolution", space, memorize_fallback=None).plan(["arith"])
    assert strict.fallback is None


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, "high", True])
def test_a_bad_fallback_is_refused(bad):
    with pytest.raises(ConfigError, match="memorize_fallback must be a fraction in"):
        make_strategy("evolution", load_space("mutation"), memorize_fallback=bad)
