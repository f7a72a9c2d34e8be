"""ENAS (Pham et al. 2018) over a ``dag`` space's supernet: the RL controller samples the cells.

The one-shot machinery (``cellsearch.oneshot.search``) with the LSTM controller of
``cellsearch.strategies.rl`` (Zoph & Le's, trained with REINFORCE against a moving-average
baseline, with an entropy bonus) choosing the cells, alternating two phases:

(a) the shared weights train on the task's training data, one cell per batch sampled from the
    controller (instead of uniformly, as RS-WS does);
(b) every ``controller_every`` supernet steps, the controller takes ``controller_steps`` REINFORCE
    steps; each step samples ``controller_batch`` cells, rewards each with its primary metric on the
    validation data under the shared weights (higher is better), and moves its policy towards the
    cells rewarded above the baseline (``baseline_decay``; ``entropy_weight`` keeps it exploring).

At the end, ``candidates`` distinct cells sampled from the trained controller are scored with the
shared weights, and the best ``trials`` are recorded (strategy ``enas``). The controller's weights,
its Adam state, its random generator and its baseline are in the checkpoint, so resume is exact.

Options (``-o KEY=VALUE``) and defaults: ``controller_every`` 10, ``controller_steps`` 1,
``controller_batch`` 4, ``controller_lr`` 3.5e-4 (ENAS's), ``entropy_weight`` 1e-4 (ENAS's),
``baseline_decay`` 0.95, ``candidates`` 10 × ``trials``.

What differs from the paper: the reward is the metric on the whole validation split (the split the
final scoring uses), not on one validation minibatch; the controller does not reuse ENAS's
tanh-constant and temperature on its logits; a controller that has converged may yield fewer than
``candidates`` distinct cells (scoring stops after 1000 samples in a row without a new one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cellsearch.dsl.graph import CellGraph
from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_BATCH_SIZE, MAX_STEPS, check_number
from cellsearch.oneshot.search import OneShotSearch, ProgressHandler, check_oneshot_config, resume_oneshot, run_oneshot
from cellsearch.spaces.base import Space
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.storage.settings import SearchConfig
from cellsearch.strategies.rl import RLController
from cellsearch.tasks import primary_metric
from cellsearch.tasks.base import Task
from cellsearch.training.config import TrainConfig

STRATEGY = "enas"
DEFAULTS: dict[str, Any] = {
    "controller_every": 10,  # supernet steps between the controller's training phases
    "controller_steps": 1,  # REINFORCE steps per phase
    "controller_batch": 4,  # cells sampled and rewarded per REINFORCE step
    "controller_lr": 3.5e-4,  # the controller's Adam learning rate (ENAS's)
    "entropy_weight": 1e-4,  # the entropy bonus, in reward units (ENAS's)
    "baseline_decay": 0.95,  # the moving-average baseline's decay per reward
}


class ENAS(OneShotSearch):
    """One ENAS search in progress: the shared weights and the controller that samples their cells."""

    name = STRATEGY
    option_defaults = DEFAULTS

    def __init__(self, space: Space, task: Task, tc: TrainConfig, count: int, seed: int, checkpoint: Path | None = None,
                 on_progress: ProgressHandler | None = None, options: dict[str, Any] | None = None):
        super().__init__(space, task, tc, count, seed, checkpoint, on_progress, options)
        o = self.options
        self.rl = RLController(space, seed=seed * 1_000_003 + 31, lr=o["controller_lr"],
                               batch_size=o["controller_batch"], entropy_weight=o["entropy_weight"],
                               baseline_decay=o["baseline_decay"])
        self.metric = primary_metric(tc.task)
        self.rewards: list[float] = []  # the controller's rewards, latest last (for progress and tests)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The controller options checked (ConfigError or LimitError, one line naming the option)."""
        for key in ("controller_every", "controller_steps"):
            if key in options:
                check_number(key, options[key], 1, "steps", MAX_STEPS)
        if "controller_batch" in options:
            check_number("controller_batch", options["controller_batch"], 1, "batch size", MAX_BATCH_SIZE)
        if "controller_lr" in options:
            check_number("controller_lr", options["controller_lr"], 0, integer=False, low_open=True)
        if "entropy_weight" in options:
            check_number("entropy_weight", options["entropy_weight"], 0, integer=False)
        if "baseline_decay" in options:
            check_number("baseline_decay", options["baseline_decay"], 0, integer=False)
            if options["baseline_decay"] > 1:
                raise ConfigError(f"baseline_decay must be at most 1, not {options['baseline_decay']!r}",
                                  field="SearchConfig.strategy_options")
        return {k: (float(v) if isinstance(DEFAULTS[k], float) else int(v)) for k, v in options.items()}

    def train_cell(self) -> tuple[int, ...]:
        """A cell sampled from the controller's current policy."""
        return self.rl.controller.sample(self.rl.generator)

    def after_step(self) -> None:
        """Every ``controller_every`` steps: ``controller_steps`` REINFORCE steps on validation rewards."""
        o = self.options
        if self.step % o["controller_every"]:
            return
        for _ in range(o["controller_steps"] * o["controller_batch"]):  # the controller updates per batch told
            candidate = self.rl.ask()
            choices = tuple(candidate.decisions or ())
            score = self.evaluate(choices).get(self.metric)
            self.rl.tell(candidate, TrialOutcome(score))
            self.rewards.append(self.rl.reward(TrialOutcome(score)))
        self.rewards = self.rewards[-1000:]

    def score_cell(self) -> tuple[tuple[int, ...], CellGraph]:
        """A cell sampled from the trained controller."""
        choices = self.rl.controller.sample(self.rl.generator)
        return choices, self.space.decode(choices)

    def probabilities(self, prefix: tuple[int, ...] = ()) -> list[float]:
        """The controller's distribution over decision ``len(prefix)`` given the choices ``prefix``."""
        return self.rl.probabilities(prefix)

    def extra_state(self) -> Any:
        """The controller (weights, Adam, generator, baseline, buffers) and the recent rewards."""
        return {"controller": self.rl.state_dict(), "rewards": list(self.rewards)}

    def load_extra_state(self, state: Any) -> None:
        """Restore the controller exactly."""
        self.rl.load_state_dict(state["controller"])
        self.rewards = [float(r) for r in state["rewards"]]


def check_enas_config(cfg: SearchConfig, space: Space) -> int:
    """Refuse settings ENAS cannot run (ConfigError, one line); return the number of cells to score."""
    return check_oneshot_config(cfg, space, ENAS)


def run_enas(cfg: SearchConfig, runs_dir: str | Path = "runs", *, space: Space | None = None,
             on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """ENAS end to end: train shared weights and controller, score sampled cells, record the top ``cfg.trials``."""
    return run_oneshot(ENAS, cfg, runs_dir, space=space, on_progress=on_progress)


def resume_enas(run_dir: str | Path, *, on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """Continue an interrupted ENAS run from its checkpoint (a finished one: its summary again)."""
    return resume_oneshot(ENAS, run_dir, on_progress=on_progress)
