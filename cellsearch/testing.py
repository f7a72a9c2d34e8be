"""A reusable pytest suite every search strategy must pass (in the style of
``optuna.testing.pytest_samplers``), plus a tiny toy space and a cheap synthetic objective.

Use it by subclassing ``StrategyTestSuite`` in a test module::

    from cellsearch.testing import StrategyTestSuite

    class TestMyStrategy(StrategyTestSuite):
        strategy_name = "my-strategy"           # built with make_strategy(name, space, seed, **options)
        strategy_options = {"population_size": 8}

or override the ``strategy_factory`` fixture (a callable ``(space, seed) -> Strategy``) and,
to run on another space, the ``space_factory`` fixture (a callable ``() -> Space``; the
default is ``ToySpace``). The suite checks that asks return valid candidates of the space, that
long ask/tell loops with failed results (None, NaN) and parallel asks (several asks, tells in
another order) never crash, that the same seed gives the same candidates, that the state is
JSON-serialisable and a strategy restored from a half-run's state asks exactly what the
uninterrupted one asks, and that telling a candidate the strategy never asked is harmless.

``synthetic_job`` stands in for a training job (``runner.jobs.run_jobs(jobs, fn=...)``) without
training; it is importable, so Ray's workers can run it too.

This module imports pytest: it is for tests only.
"""

from __future__ import annotations

import json
import math
import os
import random
from typing import Any, Callable, Sequence

import pytest

from cellsearch.dsl.graph import CellGraph, Node
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.errors import CellError, ConfigError
from cellsearch.storage.outcome import TrainingOutcome, TrialOutcome
from cellsearch.spaces.base import Candidate, Decision, InvalidCandidate, Space
from cellsearch.strategies.base import Strategy, candidate_from_json, candidate_to_json, load_state, save_state

# ---------------------------------------------------------------------- the toy space
TOY_ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")
TOY_COMBINATIONS = ("add", "mul", "sub")
TOY_OUTPUTS = ("tanh", "identity")


class ToySpace(Space):
    """A fixed-structure cell whose activations and combinations are the decisions::

        a_i = act_i(linear(x, h_prev))  for i = 0, 1, 2       act_i in tanh|sigmoid|relu|identity
        m   = comb0(a0, a1);  n = comb1(m, a2)                 comb_j in add|mul|sub
        h   = out(n)                                           out in tanh|identity

    Decisions of different sizes (4, 4, 4, 3, 3, 2: 1,152 sequences) exercise per-decision
    output heads. Toy rule, so samplers meet ``InvalidCandidate``: a sequence whose three
    branch activations are all the same is rejected (1 in 16). Cells pass
    ``CellGraph.validate`` but, for speed, are not compiled (a real space also compiles them).
    """

    kind = "toy"
    _cache: dict[tuple[int, ...], CellGraph] = {}

    def __init__(self, name: str = "toy"):
        super().__init__(name, "toy space for strategy tests")

    def decisions(self) -> list[Decision]:
        return [Decision("act0", TOY_ACTIVATIONS), Decision("act1", TOY_ACTIVATIONS),
                Decision("act2", TOY_ACTIVATIONS), Decision("comb0", TOY_COMBINATIONS),
                Decision("comb1", TOY_COMBINATIONS), Decision("out", TOY_OUTPUTS)]

    def decode(self, choices: Sequence[int]) -> CellGraph:
        key = tuple(choices)
        dims = self.decisions()
        if len(key) != len(dims) or not all(isinstance(c, int) and 0 <= c < len(d) for c, d in zip(key, dims)):
            raise InvalidCandidate(f"toy space: bad decision sequence {key!r}")
        if key[0] == key[1] == key[2]:
            raise InvalidCandidate("toy space: the three branch activations must not all be the same")
        if key not in self._cache:
            names = [d.choices[c] for d, c in zip(dims, key)]
            nodes = []
            for i in range(3):
                nodes += [Node.make(f"l{i}", "linear", ["x", "h_prev"]), Node.make(f"a{i}", names[i], [f"l{i}"])]
            nodes += [Node.make("m", names[3], ["a0", "a1"]), Node.make("n", names[4], ["m", "a2"]),
                      Node.make("h", names[5], ["n"])]
            graph = CellGraph(f"toy-{''.join(map(str, key))}", ("x",), ("h",), "h", tuple(nodes))
            try:
                graph.validate(warn=False)
            except CellError as exc:  # pragma: no cover - the structure is valid by construction
                raise InvalidCandidate(f"toy space: {exc.reason}") from None
            self._cache[key] = graph
        return self._cache[key]


# ---------------------------------------------------------------------- a cheap objective
def synthetic_score(graph: CellGraph) -> float:
    """Higher for cells with more sigmoids (then tanhs): fraction of live nodes, any space."""
    live = [graph.node_map[n] for n in graph.live]
    if not live:
        return 0.0
    return (sum(n.op == "sigmoid" for n in live) + 0.5 * sum(n.op == "tanh" for n in live)) / len(live)


def synthetic_result(candidate: Candidate) -> TrialOutcome:
    """``synthetic_score`` as a TrialOutcome; about 1 cell in 5 fails (deterministically, by hash):
    no score (``failed``) or a NaN score (``diverged``). A made-up parameter count (100 to 999, by
    hash) and ``macs`` (ten times it) serve strategies built with several objectives."""
    r = int(candidate.hash[:8], 16) % 10
    params = 100 + int(candidate.hash[8:12], 16) % 900
    if r == 0:
        return TrialOutcome(None, "failed", params=params)
    if r == 1:
        return TrialOutcome(float("nan"), "diverged", params=params)
    return TrialOutcome(synthetic_score(candidate.graph), params=params, objectives={"macs": 10.0 * params})


def check_candidate(space: Space, candidate: Candidate, decode: bool = True) -> None:
    """Assert that ``candidate`` is a valid candidate of ``space``."""
    assert isinstance(candidate, Candidate), f"ask() returned {type(candidate).__name__}, not a Candidate"
    assert isinstance(candidate.graph, CellGraph)
    candidate.graph.validate(warn=False)
    if candidate.decisions is not None:
        dims = space.decisions()
        assert len(candidate.decisions) == len(dims)
        for c, d in zip(candidate.decisions, dims):
            assert isinstance(c, int) and 0 <= c < len(d), f"choice {c!r} out of range for decision {d.name}"
        if decode:
            assert canonical_hash(space.decode(candidate.decisions)) == candidate.hash, \
                "the candidate's decisions do not decode to its graph"
    json.dumps(candidate_to_json(candidate))  # the runner persists candidates


class Driver:
    """Runs a schedule of asks and tells on a strategy, keeping the asked-not-told candidates.

    Schedule letters: ``a`` ask; ``t`` tell the most recently asked pending candidate (LIFO);
    ``T`` tell the oldest pending one (FIFO). Results come from ``objective``.
    """

    def __init__(self, strategy: Strategy, objective: Callable[[Candidate], TrialOutcome] = synthetic_result,
                 check: Callable[[Candidate], None] | None = None):
        self.strategy = strategy
        self.objective = objective
        self.check = check
        self.pending: list[Candidate] = []
        self.hashes: list[str] = []

    def run(self, schedule: str) -> list[str]:
        """Run ``schedule`` (see the class docstring; a tell with nothing pending is skipped) and return
        the hashes of the candidates it asked, in order."""
        asked = []
        for op in schedule:
            if op == "a":
                c = self.strategy.ask()
                if self.check is not None:
                    self.check(c)
                self.pending.append(c)
                asked.append(c.hash)
            elif op in "tT" and self.pending:
                c = self.pending.pop() if op == "t" else self.pending.pop(0)
                self.strategy.tell(c, self.objective(c))
        self.hashes += asked
        return asked


# 3 asks, then the last, first and remaining one told: interleaved asks and tells
BLOCK = "aaatTt"


# ---------------------------------------------------------------------- a training job that trains nothing
def synthetic_job(job: dict[str, Any]) -> TrainingOutcome:
    """A job function for ``run_jobs`` with ``runner.final.retrain``'s outcome: scores a job by the
    length of its ``name`` (÷ 10, on validation and test); its validation metrics say which
    process ran it (``pid``) and the threads the queue gave it."""
    score = len(str(job.get("name", ""))) / 10
    return TrainingOutcome("ok", "score", score, {"valid": {"score": score, "pid": os.getpid(),
                                                            "threads": job.get("threads")},
                                                  "test": {"score": score}}, params=0)


# ---------------------------------------------------------------------- the suite
class StrategyTestSuite:
    """Tests every strategy must pass; subclass it (see the module docstring)."""

    strategy_name: str = ""
    strategy_options: dict[str, Any] = {}
    steps: int = 40  # asks in the long loop

    @pytest.fixture(autouse=True)
    def _one_torch_thread(self):
        """Strategies' torch models are tiny: intra-op threads only add contention in tests."""
        from cellsearch.training.parallelism import use_threads

        threads = use_threads(1)
        yield
        use_threads(threads)

    @pytest.fixture
    def space_factory(self) -> Callable[[], Space]:
        return ToySpace

    @pytest.fixture
    def strategy_factory(self) -> Callable[..., Strategy]:
        if not self.strategy_name:
            pytest.skip("set strategy_name or override the strategy_factory fixture")
        from cellsearch.strategies import make_strategy

        return lambda space, seed=0: make_strategy(self.strategy_name, space, seed, **self.strategy_options)

    # ------------------------------------------------------------------ tests
    def test_asks_are_valid_candidates(self, strategy_factory, space_factory):
        """Every asked candidate is a valid cell of the space, and ``asked`` counts the asks."""
        space = space_factory()
        strategy = strategy_factory(space, seed=0)
        for _ in range(5):
            check_candidate(space, strategy.ask())
        assert strategy.asked == 5

    def test_ask_tell_loop_with_failures(self, strategy_factory, space_factory):
        """A long ask/tell loop survives failed (None) and diverged (NaN) results."""
        space = space_factory()
        strategy = strategy_factory(space, seed=1)
        for i in range(self.steps):
            c = strategy.ask()
            check_candidate(space, c, decode=i % 4 == 0)
            # besides the hash-based failures, every 7th result is explicitly None / NaN
            strategy.tell(c, TrialOutcome(None, "failed") if i % 7 == 3 else
                          TrialOutcome(math.nan, "diverged") if i % 7 == 5 else synthetic_result(c))
        assert strategy.told == self.steps

    def test_parallel_asks_told_in_reverse(self, strategy_factory, space_factory):
        """Several asks in flight, told in reverse order, and asks left in flight at the end are fine."""
        space = space_factory()
        strategy = strategy_factory(space, seed=2)
        driver = Driver(strategy, check=lambda c: check_candidate(space, c, decode=False))
        driver.run("aaaatttt" * 5)
        assert strategy.asked == 20 and strategy.told == 20
        # asks with several candidates still in flight when the runner stops
        driver.run("aaaa")
        assert strategy.asked == 24

    def test_same_seed_same_candidates(self, strategy_factory, space_factory):
        """The same seed gives the same candidates under the same schedule; another seed others."""
        schedule = BLOCK * 5 + "aaaatttt" * 2
        a = Driver(strategy_factory(space_factory(), seed=3)).run(schedule)
        b = Driver(strategy_factory(space_factory(), seed=3)).run(schedule)
        assert a == b
        c = Driver(strategy_factory(space_factory(), seed=4)).run(schedule)
        assert c != a, "a different seed should give a different sequence of candidates"

    def test_state_is_json_and_resume_is_exact(self, strategy_factory, space_factory, tmp_path):
        """The state is JSON, and a fresh strategy restored from it (with candidates in flight) asks
        exactly what the original asks from there on."""
        space = space_factory()
        first = Driver(strategy_factory(space, seed=5))
        first.run(BLOCK * 6 + "aa")  # split with two candidates in flight
        state = first.strategy.state_dict()
        text = json.dumps(state)  # must not raise
        assert state["version"] and state["strategy"] == first.strategy.name
        path = save_state(state, tmp_path / "state.json")
        assert load_state(path) == json.loads(text)

        # a fresh strategy (other seed: the state's seed wins) restored from the JSON round trip;
        # the runner's in-flight candidates come back from JSON too
        restored = Driver(strategy_factory(space_factory(), seed=99))
        restored.strategy.load_state_dict(load_state(path))
        restored.pending = [candidate_from_json(candidate_to_json(c)) for c in first.pending]
        assert json.dumps(restored.strategy.state_dict()) == text, "state_dict(load_state_dict(s)) != s"

        rest = "tT" + BLOCK * 6
        assert first.run(rest) == restored.run(rest)
        a, b = first.strategy.state_dict(), restored.strategy.state_dict()
        assert (a["asked"], a["told"]) == (b["asked"], b["told"])

    def test_state_of_other_strategy_is_rejected(self, strategy_factory, space_factory):
        """Loading another strategy's state, or another state version, raises ConfigError."""
        strategy = strategy_factory(space_factory(), seed=0)
        state = json.loads(json.dumps(strategy.state_dict()))
        with pytest.raises(ConfigError):
            strategy.load_state_dict({**state, "strategy": "no-such-strategy"})
        with pytest.raises(ConfigError):
            strategy.load_state_dict({**state, "version": -1})

    def test_foreign_tell_does_not_crash(self, strategy_factory, space_factory):
        """Results for candidates the strategy never asked (other origins, no decisions, failed ones) are
        accepted, also while its own asks are in flight, and its state stays JSON."""
        space = space_factory()
        strategy = strategy_factory(space, seed=6)
        outsider = space.sample(random.Random(123))
        strategy.tell(outsider, TrialOutcome(0.5))  # before any ask
        strategy.tell(Candidate(outsider.graph, decisions=None, origin="seed"), TrialOutcome(0.7))
        strategy.tell(Candidate(outsider.graph, decisions=None, origin="seed"), TrialOutcome(None, "failed"))
        driver = Driver(strategy, check=lambda c: check_candidate(space, c, decode=False))
        driver.run("aa")
        strategy.tell(outsider, TrialOutcome(math.nan, "diverged"))  # while others are in flight
        driver.run("tt" + BLOCK * 3)
        assert strategy.told == 4 + 2 + 9
        json.dumps(strategy.state_dict())
