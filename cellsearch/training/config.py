"""A training's settings: ``TrainConfig``, every field checked as it is made.

``TrainConfig(cell="lstm", task="arith", steps=300)`` holds what ``Trainer`` needs (model size,
budget, optimizer, schedules, regularisation, objective, device); it checks itself when made (by a
caller, ``from_dict`` or ``dataclasses.replace``), so a wrong value stops where it is written with
one line naming the setting. Presets of these settings: ``cellsearch.training.recipes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS
from cellsearch.errors import ConfigError
from cellsearch.limits import shown
from cellsearch.records import record_from_dict
from cellsearch.tasks import task_class
from cellsearch.training.objectives import OBJECTIVES, REWARDS


DEFAULT_ENCODER = "gru"  # the encoder of a cell that reads a memory, when none is given
DEFAULT_STEPS = 300  # a training's step budget when neither steps nor seconds is given


@dataclass
class TrainConfig:
    """The settings of one training (``train``, ``Trainer``): cell, task, model size, budget, optimizer,
    schedules, regularisation, objective and device, each checked when the config is made."""

    cell: str = "lstm"  # built-in name or YAML path
    task: str = "arith"  # arith | xml | memorize | ptb
    task_options: dict[Any, Any] = field(default_factory=dict)  # e.g. {"max_digits": 4}
    data_dir: str | None = None  # PTB data (default: $CELLSEARCH_DATA or the user cache)
    hidden_size: int = 128
    num_layers: int = 1
    embed_size: int | None = None  # default: hidden_size
    dropout: float = 0.0
    batch_size: int = 32
    steps: int | None = None  # budget in optimizer steps (DEFAULT_STEPS unless seconds alone are given)
    seconds: float | None = None  # budget in wall-clock seconds (with steps: whichever ends first)
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3
    momentum: float = 0.0  # SGD only
    weight_decay: float = 0.0
    clip: float | None = 5.0  # max global gradient norm (None: no clipping)
    lr_schedule: str = "constant"  # constant | cosine | linear (decay to 0 over the step budget)
    warmup_steps: int = 0
    init_scale: float = 1.0  # cell weights uniform(±init_scale/√H)
    forget_bias: float | None = None  # initial bias of the linear feeding a gate node named "f"
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: leave as is)
    device: str = "auto"  # auto | cpu | cuda
    eval_every: int = 0  # steps between validation runs reported to the callback (0: end only)
    eval_batch_size: int = 128
    scheduled_sampling: str | None = None  # None | linear | exponential | inverse_sigmoid
    ss_k: float = 1000.0  # schedule speed: linear → steps to reach ss_min; exponential → k**step with
    #                       k = 1 - 1/ss_k; inverse_sigmoid → ss_k / (ss_k + exp(step / ss_k))
    ss_min: float = 0.0  # lowest teacher-forcing probability (linear schedule)
    diverge_factor: float = 100.0  # loss above this × the first loss counts as divergence
    # activation regularisation (AWD-LSTM's alpha): ar × mean square of the last layer's (dropped)
    # outputs, and temporal AR (beta): tar × mean square of the change between consecutive outputs;
    # both add to the gradient only, the loss recorded and checked for divergence is the NLL
    ar: float = 2.0
    tar: float = 1.0
    state_limit: float | None = 10.0  # bound on a runaway layer's values (SeqModel; None: no bound)
    checkpoint_every: int = 0  # steps between checkpoints in out_dir (0: only at the end)
    # encoder cell of an encoder-decoder model, the trained cell decoding (built-in name or YAML path;
    # None: a language model, or "gru" for a cell that reads a memory, i.e. attends to an encoder)
    encoder: str | None = None
    memory_rows: int = DEFAULT_MEMORY_ROWS  # rows of a memory state (an NTM cell's memory), for cells that have one
    # sequence-level training (cellsearch/training/objectives.py; encoder-decoder models): xent (teacher
    # forcing) | reinforce | mixer (teacher forcing for mixer_xent_steps steps, then mixer_delta more
    # sampled answer tokens every mixer_every steps, REINFORCE on them)
    objective: str = "xent"
    reward: str = "edit"  # REINFORCE's sequence reward: edit (1 - edit distance / length) | exact (0 or 1)
    mixer_xent_steps: int = 200
    mixer_every: int = 100
    mixer_delta: int = 1

    def __post_init__(self) -> None:
        if self.steps is None and self.seconds is None:  # (a time budget alone replaces the default steps)
            self.steps = DEFAULT_STEPS
        # checked when made (by a caller, ``from_dict`` or ``dataclasses.replace``), so a Python user
        # meets a bad setting where it is written, as the command line does
        self.validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str = "training options") -> "TrainConfig":
        """From plain data (a checkpoint's or a search's settings), every field type-checked."""
        return record_from_dict(cls, data, what)

    def validate(self) -> None:
        """Check every setting (types, ranges, the limits of ``cellsearch.limits``), the task's options
        and the training's estimated memory, before anything is built: a ``ConfigError`` (a
        ``LimitError`` past a limit) naming the setting."""
        from cellsearch import limits as L
        from cellsearch.limits import check_number

        if self.steps is None and self.seconds is None:
            raise ConfigError("give a budget: steps or seconds", field=("TrainConfig.steps", "TrainConfig.seconds"))
        if self.steps is not None:
            check_number("TrainConfig.steps", self.steps, 0, "steps", L.MAX_STEPS)
        if self.seconds is not None:
            check_number("TrainConfig.seconds", self.seconds, 0, "training time", L.MAX_TRAINING_SECONDS,
                         integer=False, low_open=True)
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be adam or sgd, not {shown(self.optimizer)}", field="TrainConfig.optimizer")
        if self.lr_schedule not in ("constant", "cosine", "linear"):
            raise ConfigError(f"lr_schedule must be constant, cosine or linear, not {shown(self.lr_schedule)}", field="TrainConfig.lr_schedule")
        if self.scheduled_sampling not in (None, "linear", "exponential", "inverse_sigmoid"):
            raise ConfigError("scheduled_sampling must be linear, exponential or inverse_sigmoid", field="TrainConfig.scheduled_sampling")
        check_number("TrainConfig.hidden_size", self.hidden_size, 1, "hidden size", L.MAX_HIDDEN_SIZE)
        check_number("TrainConfig.num_layers", self.num_layers, 1, "layers", L.MAX_LAYERS)
        check_number("TrainConfig.batch_size", self.batch_size, 1, "batch size", L.MAX_BATCH_SIZE)
        check_number("TrainConfig.eval_batch_size", self.eval_batch_size, 1, "batch size", L.MAX_BATCH_SIZE)
        if self.embed_size is not None:
            check_number("TrainConfig.embed_size", self.embed_size, 1, "hidden size", L.MAX_HIDDEN_SIZE)
        check_number("TrainConfig.lr", self.lr, 0, integer=False, low_open=True)
        for name in ("momentum", "weight_decay", "init_scale", "ss_k", "ss_min", "diverge_factor", "ar", "tar"):
            check_number(f"TrainConfig.{name}", getattr(self, name), 0, integer=False)
        if self.momentum >= 1:  # (a momentum of 1 or more never forgets a gradient: the steps grow without end)
            raise ConfigError(f"momentum must be below 1, not {shown(self.momentum)}", field="TrainConfig.momentum")
        if self.ss_min > 1:
            raise ConfigError(f"ss_min is a probability: at most 1, not {shown(self.ss_min)}", field="TrainConfig.ss_min")
        check_number("TrainConfig.dropout", self.dropout, 0, integer=False)
        if not self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), not {shown(self.dropout)}", field="TrainConfig.dropout")
        if self.clip is not None:
            check_number("TrainConfig.clip", self.clip, 0, integer=False)
        if self.state_limit is not None:
            check_number("TrainConfig.state_limit", self.state_limit, 0, integer=False, low_open=True)
        if self.forget_bias is not None:
            check_number("TrainConfig.forget_bias", self.forget_bias, -math.inf, integer=False)
        check_number("TrainConfig.seed", self.seed, 0, "seed", L.MAX_SEED)
        if self.threads is not None:
            check_number("TrainConfig.threads", self.threads, 1, "threads", L.MAX_THREADS)
        if self.reward not in REWARDS:
            raise ConfigError(f"reward must be one of {', '.join(REWARDS)}, not {shown(self.reward)}", field="TrainConfig.reward")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, not {shown(self.objective)}", field="TrainConfig.objective")
        check_number("TrainConfig.memory_rows", self.memory_rows, 1, "memory rows", L.MAX_MEMORY_ROWS)
        if self.objective != "xent" and self.scheduled_sampling is not None:
            raise ConfigError(f"scheduled_sampling is for teacher-forced training; objective {self.objective} "
                              "feeds the model its own samples already: leave out scheduled_sampling",
                              field=("TrainConfig.scheduled_sampling", "TrainConfig.objective"))
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "mixer_xent_steps"):
            check_number(f"TrainConfig.{name}", getattr(self, name), 0, "steps", L.MAX_STEPS)
        check_number("TrainConfig.mixer_every", self.mixer_every, 1, "steps", L.MAX_STEPS)
        check_number("TrainConfig.mixer_delta", self.mixer_delta, 1, "sequence length", L.MAX_SEQUENCE_LENGTH)
        if not isinstance(self.task_options, dict):
            raise ConfigError(f"task_options must be a mapping of option names to values, "
                              f"not {shown(self.task_options)}", field="TrainConfig.task_options")
        task_class(self.task).check_options(self.task_options)
        # (the memory a training takes is checked where it will run, not here: by the Trainer before
        # it builds anything, and by SearchConfig/Protocol/populations for all their members at once)
