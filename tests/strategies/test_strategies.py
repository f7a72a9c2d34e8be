"""Search strategies: the shared suite (cellsearch.testing) for each, plus their own behaviour."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest

from cellsearch.errors import ConfigError
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.spaces.base import Candidate, InvalidCandidate
from cellsearch.strategies import STRATEGY_NAMES, make_strategy, strategy_class
from cellsearch.testing import BLOCK, Driver, StrategyTestSuite, ToySpace, check_candidate

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The controller is tiny: intra-op threads only add contention (50x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------- the suite, per strategy
class TestRandomSearch(StrategyTestSuite):
    strategy_name = "random"


class TestRegularizedEvolution(StrategyTestSuite):
    strategy_name = "regularized-evolution"
    strategy_options = {"population_size": 8, "sample_size": 3}  # mutations start within the suite's runs


class TestRegularizedEvolutionDefaults(StrategyTestSuite):
    strategy_name = "regularized-evolution"


class TestRLController(StrategyTestSuite):
    strategy_name = "rl"
    strategy_options = {"batch_size": 4}  # several updates within the suite's runs


class TestRLControllerDefaults(StrategyTestSuite):
    strategy_name = "rl"


class TestTPE(StrategyTestSuite):
    strategy_name = "tpe"
    strategy_options = {"n_startup_trials": 5}  # the suite's runs reach the TPE phase early


class TestTPEDefaults(StrategyTestSuite):
    strategy_name = "tpe"


class TestJozefowiczEvolution(StrategyTestSuite):
    strategy_name = "evolution"
    strategy_options = {"population_size": 8}


def _shipped_spaces() -> list[str]:
    try:
        import cellsearch.spaces as spaces

        spaces.load_space  # noqa: B018
    except (ImportError, AttributeError):
        return []
    return list(getattr(spaces, "SPACE_NAMES", ("nas_rl", "mutation", "dag", "nasbench_nlp", "greff")))


@pytest.fixture(params=_shipped_spaces() or [pytest.param(None, marks=pytest.mark.skip(
    reason="cellsearch.spaces.load_space is not available yet"))])
def shipped_space_factory(request):
    from cellsearch.spaces import load_space

    return lambda: load_space(request.param)


class _OnShippedSpaces(StrategyTestSuite):
    """The same suite on every real space (``cellsearch.spaces.load_space``)."""

    pytestmark = pytest.mark.slow

    @pytest.fixture
    def space_factory(self, shipped_space_factory):
        return shipped_space_factory


class TestRandomSearchOnShippedSpaces(_OnShippedSpaces):
    strategy_name = "random"


class TestRegularizedEvolutionOnShippedSpaces(_OnShippedSpaces):
    strategy_name = "regularized-evolution"
    strategy_options = {"population_size": 8, "sample_size": 3}


class TestRLControllerOnShippedSpaces(_OnShippedSpaces):
    strategy_name = "rl"
    strategy_options = {"batch_size": 4}


class TestJozefowiczEvolutionOnShippedSpaces(_OnShippedSpaces):
    strategy_name = "evolution"
    strategy_options = {"population_size": 8}


class TestTPEOnShippedSpaces(_OnShippedSpaces):
    strategy_name = "tpe"
    strategy_options = {"n_startup_trials": 5}


# ---------------------------------------------------------------------- registry
def test_registry_names_and_errors():
    assert STRATEGY_NAMES[:5] == ("random", "evolution", "regularized-evolution", "rl", "tpe")
    with pytest.raises(ConfigError, match="unknown strategy 'anneal'.*random.*evolution.*tpe"):
        make_strategy("anneal", ToySpace())
    for name in ("random", "regularized-evolution", "rl", "tpe"):
        assert strategy_class(name).name == name
        with pytest.raises(ConfigError, match="no_such_option"):
            make_strategy(name, ToySpace(), no_such_option=1)


@pytest.mark.parametrize("name, options", [
    ("regularized-evolution", {"population_size": 0}),
    ("regularized-evolution", {"population_size": 4, "sample_size": 5}),
    ("regularized-evolution", {"sample_size": "3"}),
    ("rl", {"lr": 0}),
    ("rl", {"batch_size": 0}),
    ("rl", {"reward": "perplexity"}),
    ("rl", {"baseline_decay": 1.5}),
    ("rl", {"entropy_weight": -1.0}),
    ("tpe", {"n_startup_trials": -1}),
    ("tpe", {"multivariate": "yes"}),
])
def test_bad_option_values(name, options):
    with pytest.raises(ConfigError):
        make_strategy(name, ToySpace(), **options)


def test_evolution_name_is_reserved():
    """``evolution`` is registered before its module exists: an error, not a crash, until then."""
    try:
        import cellsearch.strategies.jozefowicz  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="evolution"):
            make_strategy("evolution", ToySpace())


def test_strategies_leave_global_rngs_alone():
    state = random.getstate()
    torch_state = torch.get_rng_state()
    for name in ("random", "regularized-evolution", "rl", "tpe"):
        Driver(make_strategy(name, ToySpace(), seed=0)).run(BLOCK * 2)
    assert random.getstate() == state
    assert torch.equal(torch.get_rng_state(), torch_state)


# ---------------------------------------------------------------------- regularized evolution
def test_regularized_evolution_ages_out_the_oldest_and_mutates_winners():
    space = ToySpace()
    s = make_strategy("regularized-evolution", space, seed=0, population_size=4, sample_size=4)
    first = [s.ask() for _ in range(4)]
    assert all(c.origin == "sample" for c in first)
    scores = [0.1, 0.9, None, 0.3]  # the second is the best; a failed one counts as worst
    for c, score in zip(first, scores):
        s.tell(c, TrialOutcome(score, "ok" if score is not None else "failed"))
    assert [m.candidate.hash for m in s.population] == [c.hash for c in first]
    # sample_size == population_size: the tournament winner is always the best member
    children = [s.ask() for _ in range(5)]
    for child in children:
        assert child.origin == "mutation" and child.parent == first[1].hash and child.hash != first[1].hash
        check_candidate(space, child)
    # telling a child ages out the oldest member, whatever its score
    s.tell(children[0], TrialOutcome(0.0))
    assert [m.candidate.hash for m in s.population] == [c.hash for c in first[1:]] + [children[0].hash]
    s.tell(children[1], TrialOutcome(0.0))
    s.tell(children[2], TrialOutcome(0.0))
    assert len(s.population) == 4 and s.population[0].candidate.hash == first[3].hash
    s.tell(children[3], TrialOutcome(0.0))  # now even the best (first[1]) has aged out
    assert first[1].hash not in [m.candidate.hash for m in s.population]


def test_regularized_evolution_tournament_is_random_subset():
    s = make_strategy("regularized-evolution", ToySpace(), seed=0, population_size=10, sample_size=2)
    asked = [s.ask() for _ in range(10)]
    for i, c in enumerate(asked):
        s.tell(c, TrialOutcome(i / 10))
    winners = {s.tournament().candidate.hash for _ in range(200)}
    # the worst member never wins a tournament of two; most others sometimes do
    assert asked[0].hash not in winners and len(winners) >= 7
    assert asked[9].hash in winners


# ---------------------------------------------------------------------- RL controller
def test_rl_controller_architecture():
    s = make_strategy("rl", ToySpace(), seed=0)
    lstm = s.controller.lstm
    assert (lstm.hidden_size, lstm.num_layers) == (35, 2)
    assert [h.out_features for h in s.controller.heads] == [4, 4, 4, 3, 3, 2]
    for p in s.controller.parameters():
        assert float(p.detach().abs().max()) <= 0.08
    assert s.optimizer.param_groups[0]["lr"] == 5e-4
    # the initial policy is close to uniform
    assert max(abs(p - 0.25) for p in s.probabilities()) < 0.05


def test_rl_controller_learns_a_rewarded_decision():
    s = make_strategy("rl", ToySpace(), seed=0, lr=0.05, batch_size=8)
    before = s.probabilities()[1]

    def reward(c: Candidate) -> TrialOutcome:
        return TrialOutcome(1.0 if c.decisions[0] == 1 else 0.0)

    driver = Driver(s, reward)
    early = driver.run("a" * 8 + "T" * 8)
    driver.run(("a" * 8 + "T" * 8) * 14)
    late = driver.run("a" * 40 + "T" * 40)
    assert s.updates == 20
    after = s.probabilities()[1]
    assert after > before + 0.4 and after > 0.7
    hits = sum(c.decisions[0] == 1 for c in driver_candidates(s, 40))
    assert hits >= 28, f"the controller picks the rewarded choice {hits}/40 times"
    assert len(early) == 8 and len(late) == 40


def driver_candidates(s, n):
    return [s.ask() for _ in range(n)]


def test_rl_baseline_moves_toward_mean_reward():
    s = make_strategy("rl", ToySpace(), seed=0, batch_size=4, baseline_decay=0.9)
    assert s.baseline is None
    driver = Driver(s, lambda c: TrialOutcome(0.0))
    driver.run("aaaaTTTT")
    assert s.baseline == 0.0  # the first batch sets it to that batch's mean
    driver.objective = lambda c: TrialOutcome(2.0)
    previous = []
    for _ in range(6):
        driver.run("aaaaTTTT")
        previous.append(s.baseline)
    assert all(a < b for a, b in zip(previous, previous[1:]))
    assert previous[-1] == pytest.approx(2.0 * (1 - 0.9 ** 24))
    # failed results are reward 0 and pull it down
    driver.objective = lambda c: TrialOutcome(None, "failed")
    driver.run("aaaaTTTT")
    assert s.baseline < previous[-1]


def test_rl_reward_functions():
    score = make_strategy("rl", ToySpace(), seed=0)
    zoph = make_strategy("rl", ToySpace(), seed=0, reward="zoph")
    p = 1 / 112.0  # the PTB score of an LSTM with perplexity 112
    assert score.reward(TrialOutcome(p)) == p
    assert zoph.reward(TrialOutcome(p)) == pytest.approx(80 * p ** 2) == pytest.approx(80 / 112.0 ** 2)
    assert make_strategy("rl", ToySpace(), reward="zoph", reward_c=10.0).reward(TrialOutcome(0.5)) == 2.5
    for failed in (TrialOutcome(None, "failed"), TrialOutcome(math.nan, "diverged"), TrialOutcome(math.inf)):
        assert score.reward(failed) == 0.0 and zoph.reward(failed) == 0.0


def test_rl_update_uses_stored_sequences_in_any_order():
    """Telling a batch in another order gives the same update (log-probs are recomputed)."""
    def run(order):
        s = make_strategy("rl", ToySpace(), seed=0, batch_size=4, lr=0.01)
        asked = [s.ask() for _ in range(4)]
        for i in order:
            s.tell(asked[i], TrialOutcome(asked[i].decisions[0] / 3))
        return s

    a, b = run([0, 1, 2, 3]), run([3, 1, 0, 2])
    assert a.updates == b.updates == 1
    for pa, pb in zip(a.controller.parameters(), b.controller.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_rl_resamples_invalid_sequences_and_ignores_foreign_candidates():
    space = ToySpace()
    s = make_strategy("rl", space, seed=0, batch_size=2)
    for _ in range(60):  # 1 sequence in 16 is invalid in the toy space
        c = s.ask()
        assert len(set(c.decisions[:3])) > 1
    outsider = space.sample(random.Random(5))
    s.tell(Candidate(outsider.graph, decisions=(9, 9, 9, 9, 9, 9)), TrialOutcome(1.0))
    assert s.foreign == 1 and s.buffer == [] and s.updates == 0

    class Hopeless(ToySpace):
        def decode(self, choices):
            raise InvalidCandidate("never")

    with pytest.raises(InvalidCandidate, match="no valid cell"):
        make_strategy("rl", Hopeless(), seed=0, max_tries=3).ask()


def test_rl_state_restores_optimizer_and_generator():
    s = make_strategy("rl", ToySpace(), seed=7, batch_size=2)
    Driver(s).run(BLOCK * 3)
    state = json.loads(json.dumps(s.state_dict()))
    assert state["optimizer"] and state["generator"] and state["updates"] >= 2
    t = make_strategy("rl", ToySpace(), seed=0, batch_size=2)
    t.load_state_dict(state)
    for k, v in s.optimizer.state_dict()["state"].items():
        w = t.optimizer.state_dict()["state"][k]
        assert torch.equal(v["exp_avg_sq"], w["exp_avg_sq"]) and float(v["step"]) == float(w["step"])
    assert torch.equal(s.generator.get_state(), t.generator.get_state())
    with pytest.raises(ConfigError, match="sizes"):
        make_strategy("rl", _SmallerSpace()).load_state_dict(state)


class _SmallerSpace(ToySpace):
    def decisions(self):
        return super().decisions()[:-1]


# ---------------------------------------------------------------------- TPE
def _easy_objective(c: Candidate) -> TrialOutcome:
    """Separable and smooth in the decisions: best is sigmoid, sigmoid, tanh, mul, mul, tanh."""
    target = (1, 1, 0, 1, 1, 0)
    return TrialOutcome(sum(d == t for d, t in zip(c.decisions, target)) / len(target))


def _best_after(name: str, seed: int, budget: int, **options) -> float:
    s = make_strategy(name, ToySpace(), seed=seed, **options)
    best = -math.inf
    for _ in range(budget):
        c = s.ask()
        r = _easy_objective(c)
        best = max(best, r.score)
        s.tell(c, r)
    return best


def test_tpe_beats_random_on_an_easy_objective():
    budget, seeds = 30, range(4)
    tpe = [_best_after("tpe", seed, budget) for seed in seeds]
    rnd = [_best_after("random", seed, budget) for seed in seeds]
    assert statistics.mean(tpe) > statistics.mean(rnd), (tpe, rnd)


def test_tpe_tells_failures_and_invalid_decodes_as_fail():
    from optuna.trial import TrialState

    s = make_strategy("tpe", ToySpace(), seed=0, n_startup_trials=3)
    driver = Driver(s, lambda c: TrialOutcome(None, "failed") if c.decisions[0] == 0 else TrialOutcome(0.5))
    driver.run(BLOCK * 8)
    trials = s.study.get_trials(deepcopy=False)
    invalid = [t for t in trials if t.params["act0"] == t.params["act1"] == t.params["act2"]]
    assert all(t.state == TrialState.FAIL for t in invalid)
    assert len(trials) == 24 + len(invalid)
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.params["act0"] != 0 and t.value == 0.5
    assert {t.state for t in trials} <= {TrialState.FAIL, TrialState.COMPLETE}


def test_tpe_resume_recreates_running_trials():
    from optuna.trial import TrialState

    s = make_strategy("tpe", ToySpace(), seed=0)
    driver = Driver(s)
    driver.run("aaa")
    state = json.loads(json.dumps(s.state_dict()))
    assert [t["state"] for t in state["trials"]].count("RUNNING") == 3
    t = make_strategy("tpe", ToySpace(), seed=0)
    t.load_state_dict(state)
    assert [tr.state for tr in t.study.get_trials()].count(TrialState.RUNNING) == 3
    for c in driver.pending:  # the runner reports the in-flight trials after the restart
        t.tell(c, TrialOutcome(0.25))
    assert [tr.state for tr in t.study.get_trials()].count(TrialState.COMPLETE) == 3
    assert t.pending == {} and t.foreign == 0


def test_tpe_falls_back_to_random_sample_when_proposals_keep_failing():
    class MostlyInvalid(ToySpace):
        def decode(self, choices):
            if tuple(choices) != (0, 1, 2, 0, 0, 0):
                raise InvalidCandidate("not the one")
            return super().decode(choices)

        def sample(self, rng, max_tries=100):
            return Candidate(self.decode((0, 1, 2, 0, 0, 0)), decisions=(0, 1, 2, 0, 0, 0))

    s = make_strategy("tpe", MostlyInvalid(), seed=0, max_tries=3)
    c = s.ask()
    assert c.decisions == (0, 1, 2, 0, 0, 0)
