"""Several objectives in the strategies: the suite for nsga2 and for each strategy with two objectives,
the refusals, and that the multi-objective strategies spread over the score/size front."""

from __future__ import annotations

import random

import pytest

from cellsearch.errors import ConfigError
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.strategies import make_strategy
from cellsearch.testing import Driver, StrategyTestSuite, ToySpace

TWO = ["score", "params"]


class TestNSGA2(StrategyTestSuite):
    strategy_name = "nsga2"
    strategy_options = {"population_size": 6}  # several generations within the suite's runs


class TestNSGA2TwoObjectives(StrategyTestSuite):
    strategy_name = "nsga2"
    strategy_options = {"population_size": 6, "objectives": TWO}


class TestNSGA2Defaults(StrategyTestSuite):
    strategy_name = "nsga2"
    strategy_options = {"objectives": ["score", "params", "macs"]}


class TestTPETwoObjectives(StrategyTestSuite):
    strategy_name = "tpe"
    strategy_options = {"n_startup_trials": 5, "objectives": TWO}


class TestRegularizedEvolutionTwoObjectives(StrategyTestSuite):
    strategy_name = "regularized-evolution"
    strategy_options = {"population_size": 8, "sample_size": 3, "objectives": TWO}


class TestRandomSearchTwoObjectives(StrategyTestSuite):
    strategy_name = "random"
    strategy_options = {"objectives": TWO}


@pytest.mark.parametrize("name", ["rl", "evolution"])
def test_single_objective_strategies_refuse_several(name):
    with pytest.raises(ConfigError, match=f"strategy '{name}' optimises the score alone.*nsga2"):
        make_strategy(name, ToySpace(), objectives=TWO)
    make_strategy(name, ToySpace(), objectives=["score"])  # the score alone is today's search


@pytest.mark.parametrize("objectives, says", [(["score", "flops"], "unknown objective 'flops'"),
                                              (["params"], "must include score"),
                                              (["score", "score"], "given twice")])
def test_bad_objectives_are_refused(objectives, says):
    with pytest.raises(ConfigError, match=says):
        make_strategy("tpe", ToySpace(), objectives=objectives)


@pytest.mark.parametrize("option, value", [("population_size", 1), ("population_size", 10**7), ("crossover_prob", 1.5),
                                           ("mutation_prob", "high"), ("max_tries", 0)])
def test_nsga2_options_are_checked(option, value):
    with pytest.raises(ConfigError, match=f"nsga2 option {option}"):
        make_strategy("nsga2", ToySpace(), **{option: value})


def test_state_of_other_objectives_is_refused():
    state = make_strategy("nsga2", ToySpace(), objectives=TWO).state_dict()
    with pytest.raises(ConfigError, match="objectives score,params"):
        make_strategy("nsga2", ToySpace()).load_state_dict(state)


def test_tpe_tells_optuna_the_values_in_their_directions():
    s = make_strategy("tpe", ToySpace(), objectives=TWO)
    c = s.ask()
    s.tell(c, TrialOutcome(0.5, params=300))
    (trial,) = s.study.trials
    assert trial.values == [0.5, 300.0] and [d.name for d in s.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    c = s.ask()
    s.tell(c, TrialOutcome(0.5))  # no parameter count: no vector, FAIL
    assert s.study.trials[-1].state.name == "FAIL"


def test_regularized_evolution_tournament_is_nsga2s():
    s = make_strategy("regularized-evolution", ToySpace(), objectives=TWO, population_size=4, sample_size=4)
    space = ToySpace()
    cells = [space.sample(random.Random(i)) for i in range(4)]
    # a: best score, big; b: small, worse score; c: dominated by a; d: failed
    for c, outcome in zip(cells, [TrialOutcome(0.9, params=900), TrialOutcome(0.5, params=100),
                                  TrialOutcome(0.8, params=950), TrialOutcome(None, "failed", params=10)]):
        s.tell(c, outcome)
    fitness = s.pareto_fitness()
    assert fitness[0][0] == fitness[1][0] == 0 and fitness[2][0] == -1 and fitness[3][0] == -4
    assert s.tournament() is s.population[0]  # the whole population: front 0, both extremes, the oldest wins


def test_nsga2_breeds_generations_over_both_objectives():
    s = make_strategy("nsga2", ToySpace(), objectives=TWO, population_size=6)
    Driver(s).run("at" * 30)
    generations = [t.system_attrs.get("NSGAIISampler:generation") for t in s.study.trials]
    assert max(g for g in generations if g is not None) >= 2  # it went past the random first generation
    assert [d.name for d in s.study.directions] == ["MAXIMIZE", "MINIMIZE"]
