"""TPE: Optuna's Tree-structured Parzen Estimator sampler over the space's decisions.

Every decision becomes a categorical parameter (``suggest_categorical(name, [0..n-1])``,
define-by-run) of one maximising Optuna study, driven with Optuna's ask/tell interface:

* ``ask``: ``study.ask()``, one suggestion per decision, ``space.decode``. A sequence the
  space rejects (``InvalidCandidate``) is told to Optuna as FAIL and the study is asked again;
  after ``max_tries`` rejections in a row a random valid sample of the space is enqueued
  (``study.enqueue_trial``) so ``ask`` always returns. The candidate carries its trial number
  in ``info["tpe_trial"]``.
* ``tell``: ``study.tell(trial, score)``, or ``state=TrialState.FAIL`` when the result failed
  (Optuna's TPE then ignores the trial; it does not count towards the startup trials either).
  A candidate this strategy never asked (matched by trial number, then by decisions) is added
  as a finished trial when its decisions fit the space, and ignored otherwise.

Several objectives (``objectives=["score", "params"]``, say): the study has one direction per
objective (``storage.objectives.directions``) and Optuna's TPE is its multi-objective form
(MOTPE, Ozaki et al. 2020); a trial is told its vector of values, and a failed trial (or one
without every value) FAIL.

Options: ``n_startup_trials`` (default 10, Optuna's: random trials before TPE starts),
``multivariate`` (default True: one joint Parzen estimator over all decisions, which models
interactions between them -- in a cell, which activation goes with which combination),
``constant_liar`` (default True, Optuna 5's default: trials asked but not yet told count as
bad, so parallel asks spread out), ``n_ei_candidates`` (default 24, Optuna's), ``max_tries``
(default 100).

Determinism and resume: Optuna's sampler keeps a random state that cannot be serialised, so
a fresh ``TPESampler`` is created before every ``study.ask()``, seeded from ``(seed, number
of trials so far)``. TPE has no other state than the trials, so a study rebuilt from the
saved trials (``study.add_trials``, trial numbers and order preserved, trials still running
re-created as RUNNING) asks exactly what the uninterrupted one would have asked.
"""

from __future__ import annotations

import math
import random
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from cellsearch.errors import ConfigError
from cellsearch.storage.objectives import directions, values
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.spaces.base import Candidate, InvalidCandidate, Space
from cellsearch.strategies.base import Strategy

DEFAULTS: dict[str, Any] = {
    "n_startup_trials": 10,
    "multivariate": True,
    "constant_liar": True,
    "n_ei_candidates": 24,
    "max_tries": 100,
}

_STATES = {"COMPLETE": TrialState.COMPLETE, "FAIL": TrialState.FAIL, "RUNNING": TrialState.RUNNING,
           "PRUNED": TrialState.PRUNED}


def _check_options(o: dict[str, Any]) -> dict[str, Any]:
    for name, low in (("n_startup_trials", 0), ("n_ei_candidates", 1), ("max_tries", 1)):
        v = o[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"tpe option {name} must be an integer >= {low}, got {v!r}")
    for name in ("multivariate", "constant_liar"):
        if not isinstance(o[name], bool):
            raise ConfigError(f"tpe option {name} must be true or false, got {o[name]!r}")
    return o


class TPE(Strategy):
    name = "tpe"
    multi_objective = True
    defaults: dict[str, Any] = DEFAULTS  # a subclass's own options (nsga2)

    def __init__(self, space: Space, seed: int = 0, **options: Any):
        own = {k: options.pop(k) for k in list(options) if k in self.defaults}
        super().__init__(space, seed, **options)
        self.options = self._check_options({**self.defaults, **own})
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.decision_list = space.decisions()
        self.names = [d.name for d in self.decision_list]
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"space '{space.name}' has duplicate decision names; tpe needs unique ones")
        self.distributions = {d.name: CategoricalDistribution(list(range(len(d)))) for d in self.decision_list}
        self.pending: dict[int, tuple[int, ...]] = {}  # trial number -> decisions, asked but not told
        self.foreign = 0
        self.study = self._new_study()

    def _check_options(self, o: dict[str, Any]) -> dict[str, Any]:
        return _check_options(o)

    def _new_study(self) -> optuna.Study:
        if self.several:
            return optuna.create_study(directions=directions(self.objectives), sampler=self._sampler(0))
        return optuna.create_study(direction="maximize", sampler=self._sampler(0))

    def _sampler(self, n_trials: int) -> optuna.samplers.BaseSampler:
        sub_seed = random.Random(f"cellsearch-tpe:{self.seed}:{n_trials}").randrange(2**32)
        o = self.options
        return optuna.samplers.TPESampler(seed=sub_seed, n_startup_trials=o["n_startup_trials"],
                                          multivariate=o["multivariate"], constant_liar=o["constant_liar"],
                                          n_ei_candidates=o["n_ei_candidates"])

    def _ask_trial(self) -> optuna.Trial:
        self.study.sampler = self._sampler(len(self.study.get_trials(deepcopy=False)))
        return self.study.ask()

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Candidate:
        for attempt in range(self.options["max_tries"] + 1):
            if attempt == self.options["max_tries"]:
                # TPE keeps proposing rejected sequences: make progress with a valid random one
                sample = self.space.sample(self.rng)
                assert sample.decisions is not None  # a space's sample carries its decisions
                self.study.enqueue_trial(dict(zip(self.names, sample.decisions)))
            trial = self._ask_trial()
            choices = tuple(trial.suggest_categorical(d.name, list(range(len(d)))) for d in self.decision_list)
            try:
                graph = self.space.decode(choices)
            except InvalidCandidate:
                self.study.tell(trial, state=TrialState.FAIL)
                continue
            self.asked += 1
            self.pending[trial.number] = choices
            return Candidate(graph, decisions=choices, origin="sample", info={"tpe_trial": trial.number})
        raise AssertionError("unreachable")  # pragma: no cover - the enqueued sample always decodes

    def abandon_pending(self) -> None:
        """Trials that were running when the search was killed count as failed (not as running forever)."""
        for number in list(self.pending):
            self.study.tell(number, state=TrialState.FAIL)
        self.pending.clear()

    def tell(self, candidate: Candidate, result: TrialOutcome) -> None:
        self.told += 1
        decisions = tuple(candidate.decisions) if candidate.decisions is not None else None
        number = (candidate.info or {}).get("tpe_trial")
        if number not in self.pending or self.pending[number] != decisions:
            number = next((n for n, d in self.pending.items() if d == decisions), None)
        told = self._told_values(result)
        if number is not None:
            del self.pending[number]
            if told is None:
                self.study.tell(number, state=TrialState.FAIL)
            else:
                self.study.tell(number, told)
            return
        self.foreign += 1
        if decisions is None or len(decisions) != len(self.decision_list) \
                or not all(isinstance(c, int) and 0 <= c < len(d) for c, d in zip(decisions, self.decision_list)):
            return  # nothing TPE could learn from
        self.study.add_trial(self._frozen(list(decisions), told, "FAIL" if told is None else "COMPLETE"))

    def _told_values(self, result: TrialOutcome) -> float | list[float] | None:
        """What Optuna is told: the score, or (several objectives) the raw values in the study's
        directions; None for a failed trial."""
        if self.several:
            return values(result, self.objectives)
        return None if result.failed or result.score is None else float(result.score)

    def _frozen(self, choices: list[int], value: float | list[float] | None, state: str,
                system_attrs: dict[str, Any] | None = None) -> optuna.trial.FrozenTrial:
        one = value if not isinstance(value, list) else None
        many = value if isinstance(value, list) else None
        return create_trial(state=_STATES[state], value=one, values=many,
                            params=dict(zip(self.names, choices)), distributions=dict(self.distributions),
                            system_attrs=system_attrs)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The base state (JSON) plus the options and every trial of the study (its choices, value and
        state) but the waiting ones, and the pending asks."""
        state = super().state_dict()
        trials = []
        for t in self.study.get_trials(deepcopy=False):
            if t.state == TrialState.WAITING:
                continue  # never left behind by ask(); nothing to resume
            complete = t.state == TrialState.COMPLETE
            value = (list(t.values) if self.several else t.value) if complete else None
            trial: dict[str, Any] = {"params": [t.params.get(n) for n in self.names], "value": value,
                                     "state": t.state.name}
            if t.system_attrs:  # (a genetic sampler's generation of the trial)
                trial["system_attrs"] = dict(t.system_attrs)
            trials.append(trial)
        state.update({
            "options": dict(self.options),
            "decisions": list(self.names),
            "n_trials": len(trials),
            "trials": trials,
            "pending": [[n, list(d)] for n, d in self.pending.items()],
            "foreign": self.foreign,
        })
        study_attrs = self.study._storage.get_study_system_attrs(self.study._study_id)
        if study_attrs:  # (a genetic sampler's parent populations, per generation)
            state["study_system_attrs"] = dict(study_attrs)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the study from what ``state_dict`` returned; ConfigError if it was made for another
        strategy or a space with other decisions."""
        super().load_state_dict(state)
        if list(state["decisions"]) != self.names:
            raise ConfigError(f"tpe state was made for other decisions than those of space '{self.space.name}'")
        self.options = self._check_options({**self.defaults, **state["options"]})
        self.study = self._new_study()
        frozen = []
        for t in state["trials"]:
            value = t["value"]
            finite = (isinstance(value, list) and len(value) == len(self.objectives) and all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in value)) if self.several else (
                isinstance(value, (int, float)) and math.isfinite(value))
            if t["state"] == "COMPLETE" and not finite:
                raise ConfigError(f"{self.name} state is corrupted: a complete trial without finite values")
            frozen.append(self._frozen(t["params"], value, t["state"], t.get("system_attrs")))
        self.study.add_trials(frozen)
        for key, attr in (state.get("study_system_attrs") or {}).items():
            self.study._storage.set_study_system_attr(self.study._study_id, key, attr)
        self.pending = {int(n): tuple(d) for n, d in state["pending"]}
        self.foreign = state["foreign"]
