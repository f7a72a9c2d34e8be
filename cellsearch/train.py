"""The budgeted trainer shared by the CLI, the search and the analysis.

``train(TrainConfig(cell="lstm", task="arith", steps=300))`` builds the task and a
``SeqModel`` around the cell, trains within a budget of steps and/or seconds, evaluates on
the validation split, and returns a ``TrainResult`` whose ``status`` is ``ok``,
``diverged`` (NaN/Inf or exploding loss), or ``stopped`` (the evaluation callback asked to
stop, e.g. an early-stopping scheduler). Same seed ⇒ same metrics on CPU; a checkpoint
holds everything needed to resume bit for bit (weights, optimizer, RNG and data-stream
state, the carried hidden state).

Randomness comes from the trainer's own generators, not the caller's global RNG (``Trainer._own_rng``);
progress goes to an optional callback as events (it prints nothing). A trainer leaves the process's
state as it found it: torch's threads are ``cfg.threads`` only while it trains (``torch_threads``),
and the C allocator's tuning for training steps (``cellsearch.allocator.keep_freed_memory``) is for
the process's owner to ask for — the command line and the search's workers do.

Any cell the DSL accepts trains without its recurrence running away (docs/results/stability.md):
``state_limit`` bounds a layer whose outputs leave ±limit (``SeqModel``: that layer is computed
again step by step, values outside ±limit set to 0), and AWD-LSTM's activation penalties
``ar``/``tar`` pull the last layer's outputs back towards the range where the cell works. Both are
on by default; the bound changes nothing for a cell whose outputs stay within it. Presets of these
settings: ``cellsearch.recipes``.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from cellsearch.checkpoint import CHECKPOINT_VERSION, load_checkpoint, restore_error
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell, loads_cell
from cellsearch.errors import ConfigError
from cellsearch.fileio import WriteError, atomic_write, check_output_dir
from cellsearch.nn.model import ModelConfig, SeqModel
from cellsearch.records import record_from_dict
from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS
from cellsearch.optim_groups import finite_together
from cellsearch.objectives import OBJECTIVES, REWARDS, Baseline, sampled_tail, sequence_loss
from cellsearch.limits import check_new_path, shown
from cellsearch.tasks import make_task, task_class
from cellsearch.tasks.base import Task


DEFAULT_ENCODER = "gru"  # the encoder of a cell that reads a memory, when none is given
DEFAULT_STEPS = 300  # a training's step budget when neither steps nor seconds is given
CHECKPOINT_FILE = "checkpoint.pt"  # the final checkpoint in a training's output directory
OUTPUT_FILES = (CHECKPOINT_FILE, "metrics.json")  # what a training (and `cellsearch train`) writes there


def use_threads(n: int | None) -> int:
    """Set torch's intra-op CPU threads to ``n`` for the rest of the process (None or 0: leave them
    as they are); returns the count before. The one place cellsearch sets torch's thread count;
    library objects set it only for as long as they work (``torch_threads``)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    return before


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``n`` while the block runs (None or 0: left as they are),
    then put back: a training asked for its threads, not for the rest of its caller's process."""
    before = use_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


@dataclass
class TrainConfig:
    cell: str = "lstm"  # built-in name or YAML path
    task: str = "arith"  # arith | xml | memorize | ptb
    task_options: dict = field(default_factory=dict)  # e.g. {"max_digits": 4}
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
    # sequence-level training (cellsearch/objectives.py; encoder-decoder models): xent (teacher
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
    def from_dict(cls, data: dict, what: str = "training options") -> "TrainConfig":
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


# ---------------------------------------------------------------------- memory a training takes
# What one time step of one layer keeps for the backward pass, in H-sized vectors per linear of
# the cell (its output, the nonlinearity's, the gates' products): generous for the built-in cells.
ACTIVATIONS_PER_LINEAR = 6
GATES_OF_AN_UNKNOWN_CELL = 4  # linears of a cell not resolved yet: an LSTM's four gates


def physical_memory_bytes() -> int | None:
    """The machine's physical memory (or the container's memory limit, when lower); None when the
    system does not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # v2 ("max": none), v1
        try:
            with open(cgroup) as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total if total > 0 else None


def estimated_training_bytes(cfg: TrainConfig, graph=None, members: int = 1) -> int:
    """About how many bytes training ``cfg`` takes: the model's weights with their gradients and
    Adam's two moments (fp32), one batch's activations kept for the backward pass and its logits,
    and an evaluation batch's logits; × ``members`` for a population. ``graph``: the cell, when
    known (its linears and memory states); else an LSTM's four gates. An estimate, meant to refuse
    what cannot fit long before torch tries, not to predict the peak."""
    vocab, steps = task_class(cfg.task).sizes(cfg.task_options)
    H, layers, B = cfg.hidden_size, cfg.num_layers, cfg.batch_size
    E = cfg.embed_size or H
    linears, memory_states = GATES_OF_AN_UNKNOWN_CELL, 0
    if graph is not None:
        linears = max(1, sum(1 for n in graph.nodes if n.op == "linear"))
        memory_states = len(getattr(graph, "memory_states", ()) or ())
    cell_weights = linears * H * ((E + H) + (layers - 1) * 2 * H)
    params = vocab * E + cell_weights + (H + 1) * vocab
    if cfg.encoder is not None or memory_states:  # an encoder-decoder model: an encoder of the same size
        params += cell_weights
    per_step = B * layers * (ACTIVATIONS_PER_LINEAR * linears * H + 3 * memory_states * cfg.memory_rows * H)
    logits = 3 * B * steps * vocab + cfg.eval_batch_size * steps * vocab
    return 4 * members * (4 * params + steps * per_step + logits)


def check_training_memory(cfg: TrainConfig, graph=None, members: int = 1) -> None:
    """Refuse a training whose estimated memory (``estimated_training_bytes``) is more than
    ``MAX_TRAINING_MEMORY_SHARE`` of the machine's physical memory."""
    who = f"{members} members" if members > 1 else "one model"
    check_memory(estimated_training_bytes(cfg, graph, members),
                 f"training {who} of hidden_size {cfg.hidden_size}, num_layers {cfg.num_layers}, batch_size "
                 f"{cfg.batch_size} on {cfg.task}", cfg.device)


def device_memory_bytes(device: str) -> tuple[int | None, str]:
    """The memory a training on ``device`` (auto | cpu | cuda[:N]) can use and what it is: the GPU's
    when it trains on one, else the machine's physical memory; (None, ...) when that is unknown
    here (a CUDA device this machine does not have: it is checked where the training runs)."""
    wants_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not wants_gpu:
        return physical_memory_bytes(), "physical memory"
    if not torch.cuda.is_available():
        return None, "GPU memory"
    index = torch.device(device).index if device.startswith("cuda") else None
    return torch.cuda.get_device_properties(index or 0).total_memory, "GPU memory"


def check_memory(need: int, what: str, device: str = "cpu") -> None:
    """Refuse work estimated to take ``need`` bytes when that is more than ``MAX_TRAINING_MEMORY_SHARE``
    of the memory of the device it runs on (``what`` says which work, in the message)."""
    from cellsearch.limits import MAX_TRAINING_MEMORY_SHARE, LimitError

    total, kind = device_memory_bytes(device)
    if total is not None and need > MAX_TRAINING_MEMORY_SHARE * total:
        raise LimitError(f"{what} (make it smaller)", "training memory", f"about {_gib(need)}",
                         f"{MAX_TRAINING_MEMORY_SHARE:.0%} of {_gib(total)} {kind}")


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n < 2**50 else f"{n / 2**40:,.0f} TiB"


@dataclass
class TrainResult:
    status: str  # ok | diverged | stopped
    steps: int
    seconds: float
    metrics: dict[str, float | None]  # validation metrics
    history: list[dict] = field(default_factory=list)  # periodic evaluations {"step", "seconds", **metrics}
    params: int = 0
    cell: str = ""
    hash: str = ""
    task: str = ""
    losses: list[float] = field(default_factory=list)  # training loss of every step
    checkpoint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "cell": self.cell, "hash": self.hash, "params": self.params,
                "steps": self.steps, "seconds": round(self.seconds, 3), "status": self.status,
                "metrics": self.metrics, "checkpoint": self.checkpoint}


@dataclass(frozen=True)
class TrainingStarted:
    """``Trainer.run`` starts (or resumes) training: what a progress display needs to begin."""

    cell: str  # the configured cell (name or file)
    task: str
    steps: int | None  # the step budget (None: a time budget only)
    step: int  # the step it starts from (after a checkpoint: the checkpoint's)


@dataclass(frozen=True)
class StepDone:
    """One optimizer step finished."""

    step: int
    loss: float
    seconds: float  # training time so far (the run's, resumed runs included)


@dataclass(frozen=True)
class TrainingStopped:
    """The training loop ended (budget spent, diverged or stopped); the final evaluation follows."""

    step: int


def teacher_forcing_probability(cfg: TrainConfig, step: int) -> float:
    """Probability of feeding the reference token (Bengio et al. 2015 decay schedules)."""
    if cfg.scheduled_sampling is None:
        return 1.0
    if cfg.scheduled_sampling == "linear":
        return max(cfg.ss_min, 1.0 - step / max(cfg.ss_k, 1.0))
    if cfg.scheduled_sampling == "exponential":
        return (1.0 - 1.0 / max(cfg.ss_k, 1.0)) ** step
    return cfg.ss_k / (cfg.ss_k + math.exp(min(step / cfg.ss_k, 700.0)))


def _lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if cfg.lr_schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 1.0


def activation_penalty(out: torch.Tensor, dropped: torch.Tensor, mask: torch.Tensor, ar: float,
                       tar: float) -> torch.Tensor:
    """AWD-LSTM's activation regularisation: ``ar`` × the mean square of the last layer's dropped
    outputs plus ``tar`` × the mean square of the change between consecutive (undropped) outputs,
    over the positions ``mask`` (T, B) counts (padding left out; on PTB: every position)."""
    m = mask.to(out.dtype)
    penalty = ar * (dropped.pow(2).mean(-1) * m).sum() / m.sum().clamp(min=1.0)
    if tar and out.shape[0] > 1:
        pairs = m[1:] * m[:-1]
        penalty = penalty + tar * ((out[1:] - out[:-1]).pow(2).mean(-1) * pairs).sum() / pairs.sum().clamp(min=1.0)
    return penalty


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    return torch.device(name)


def set_gate_bias(model: SeqModel, gate: str, value: float) -> int:
    """Set the bias of the linear that feeds node ``gate`` in every layer; returns how many."""
    from cellsearch.compile.params import bias_name

    node = model.graph.node_map.get(gate)
    if node is None:
        return 0
    lin = node.name if node.op == "linear" else next(
        (a for a in node.args if a in model.graph.node_map and model.graph.node_map[a].op == "linear"), None)
    if lin is None or not model.graph.node_map[lin].attr("bias"):
        return 0
    n = 0
    with torch.no_grad():
        for cell in model.rnn.cells:
            getattr(cell.params, bias_name(lin)).fill_(value)
            n += 1
    return n


class Trainer:
    """One training run; ``run()`` trains to the budget. Use ``train()`` for the common case."""

    def __init__(self, cfg: TrainConfig, *, task: Task | None = None, graph=None, encoder_graph=None):
        from cellsearch.library import resolve_cell

        cfg.validate()
        self.cfg = cfg
        self.device = _device(cfg.device)
        self.graph = graph if graph is not None else resolve_cell(cfg.cell)
        check_training_memory(cfg, self.graph)  # (validate guessed the cell's size; this counts its linears)
        self.task = task if task is not None else make_task(cfg.task, seed=cfg.seed, data_dir=cfg.data_dir,
                                                            **cfg.task_options)
        # the training's own randomness (dropout, scheduled sampling), on the device it trains on
        self.rng = torch.Generator(device=self.device).manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)  # the initial weights
        # (torch's modules draw default weights from the global RNG as they are built; those are
        # replaced below, and the caller's global RNG is left as it was)
        encoder = cfg.encoder or (DEFAULT_ENCODER if self.graph.memory else None)
        if encoder is not None:
            self.task.use_layout("seq2seq")
        with torch.random.fork_rng(devices=[]):
            self.model = SeqModel(self.graph, ModelConfig(vocab_size=len(self.task.vocab),
                                                          hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                                                          embed_size=cfg.embed_size, dropout=cfg.dropout,
                                                          state_limit=cfg.state_limit, encoder=encoder,
                                                          memory_rows=cfg.memory_rows),
                                  encoder=encoder_graph)
        if cfg.objective != "xent" and not self.model.is_seq2seq:
            raise ConfigError(f"objective {cfg.objective} trains an encoder-decoder model: set encoder "
                              "(e.g. gru) or train a cell that attends (attn-gru), on a task of prompts and answers",
                              field=("TrainConfig.objective", "TrainConfig.encoder"))
        self.baseline = Baseline()  # REINFORCE's running average reward
        self.model.reset_parameters(cfg.init_scale, gen)
        if cfg.forget_bias is not None and not set_gate_bias(self.model, "f", cfg.forget_bias):
            raise ConfigError(f"forget_bias: cell '{self.graph.name}' has no gate 'f' fed by a linear with bias",
                              field="TrainConfig.forget_bias")
        self.model.to(self.device)
        params = list(self.model.parameters())
        # Adam fused (one kernel for all parameters) and SGD foreach: instead of ~10 small ops per parameter,
        # which at search sizes cost more than the arithmetic (and a population pays them once per member)
        if cfg.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        else:
            self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                       foreach=True)
        self.stream = self.task.train_stream(cfg.batch_size, cfg.seed)
        self.step = 0
        self.elapsed = 0.0
        self.state = None  # carried hidden state (truncated BPTT)
        self.first_loss: float | None = None
        self.history: list[dict] = []
        self.losses: list[float] = []
        self.status = "ok"
        self.final_metrics: dict[str, float | None] = {}  # set by final_evaluation

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "config": asdict(self.cfg),
            "cell_yaml": dumps_cell(self.graph),
            **({"encoder_yaml": dumps_cell(self.model.encoder.graph)} if self.model.encoder is not None else {}),
            "vocab": self.task.vocab.state_dict(),
            "task": self.task.config(),
            "model_config": self.model.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "stream": self.stream.state_dict(),
            # the trainer's rng (on CUDA: in cuda_rng, as torch's per-device list; torch_rng unused)
            "torch_rng": self.rng.get_state() if self.device.type == "cpu" else torch.get_rng_state(),
            "cuda_rng": [self.rng.get_state()] if self.device.type == "cuda" else None,
            "step": self.step,
            "elapsed": self.elapsed,
            "carried_state": self.state,
            "first_loss": self.first_loss,
            "history": self.history,
            "losses": self.losses,
            "status": self.status,
            "baseline": self.baseline.state_dict(),
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"checkpoint version {ckpt.get('version')} is not supported "
                              f"(this cellsearch writes {CHECKPOINT_VERSION})")
        self.model.load_state_dict(ckpt["model"])
        # The optimizer's hyperparameters come back from the file and are what trains: each must be
        # the one the settings give (a crafted file could train at one weight decay and report
        # another). The learning rate aside: set_lr sets it from the settings every step.
        built = [dict(g) for g in self.opt.param_groups]
        self.opt.load_state_dict(ckpt["optimizer"])
        for mine, group in zip(built, self.opt.param_groups):
            for key, value in mine.items():
                if key not in ("params", "lr", "initial_lr", "foreach", "fused", "capturable", "differentiable") \
                        and group.get(key) != value:
                    raise ValueError(f"its optimizer state has {key} {group.get(key)!r:.40} where its training "
                                     f"settings give {value!r}")
        self.stream.load_state_dict(ckpt["stream"])
        if self.device.type == "cpu":
            self.rng.set_state(ckpt["torch_rng"])
        elif ckpt.get("cuda_rng"):  # one state per device; a checkpoint of this trainer holds its own only
            states = ckpt["cuda_rng"]
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.rng.set_state(states[index] if len(states) > index else states[0])
        self.step = ckpt["step"]
        self.elapsed = ckpt["elapsed"]
        st = ckpt.get("carried_state")
        self.state = tuple(s.to(self.device) for s in st) if st is not None else None
        self.first_loss = ckpt["first_loss"]
        self.history = list(ckpt["history"])
        self.losses = list(ckpt["losses"])
        self.status = ckpt["status"]
        if "baseline" in ckpt:
            self.baseline.load_state_dict(ckpt["baseline"])

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint whole or not at all (``fileio.atomic_write``): a failed save keeps the old file."""
        state = self.state_dict()
        return atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def from_checkpoint(cls, path: str | Path, **overrides: Any) -> "Trainer":
        """Rebuild a trainer from a checkpoint (``overrides`` change config fields, e.g. steps)."""
        ckpt = load_checkpoint(path)
        cfg = TrainConfig.from_dict({**ckpt["config"], **overrides}, f"{path}: training settings")
        trainer = cls(cfg, graph=loads_cell(ckpt["cell_yaml"], source=f"{path}:cell"),
                      encoder_graph=checkpoint_encoder(ckpt, path))
        try:
            trainer.load_state_dict(ckpt)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise restore_error(path, exc) from None
        return trainer

    # ------------------------------------------------------------------ training
    def _budget_left(self, start: float) -> bool:
        if self.cfg.steps is not None and self.step >= self.cfg.steps:
            return False
        if self.cfg.seconds is not None and self.elapsed + (time.perf_counter() - start) >= self.cfg.seconds:
            return False
        return True

    def _progress_fraction(self, start: float) -> float:
        if self.cfg.steps:
            return self.step / self.cfg.steps
        if self.cfg.seconds:
            return (self.elapsed + time.perf_counter() - start) / self.cfg.seconds
        return 0.0

    def _mixed_inputs(self, batch) -> torch.Tensor:
        """Scheduled sampling: replace reference inputs inside the scored region by the model's own
        predictions with probability 1 - teacher_forcing_probability (two-pass, "parallel"
        scheduled sampling: the predictions come from a teacher-forced pass)."""
        p_ref = teacher_forcing_probability(self.cfg, self.step)
        if p_ref >= 1.0:
            return batch.inputs
        with torch.no_grad():
            logits, _ = self.model(batch.inputs, self.state if batch.carry_state else self.model.start(batch))
            pred = logits.argmax(-1)  # (T, B): prediction for targets[t] = inputs[t + 1]
        inputs = batch.inputs.clone()
        swap = (torch.rand(inputs[1:].shape, device=inputs.device) >= p_ref) & batch.mask[:-1]
        inputs[1:] = torch.where(swap, pred[:-1], inputs[1:])
        return inputs

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Draw from the trainer's ``rng`` inside the block through torch's global RNG. Dropout modules
        take no generator, so for the step the global RNG (of the training device) is set to the
        trainer's state, which is read back afterwards; ``fork_rng`` gives the caller's global state
        back however the block ends."""
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else [], device_type="cuda" if cuda else None):
            if cuda:
                torch.cuda.set_rng_state(self.rng.get_state(), self.device)
            else:
                torch.set_rng_state(self.rng.get_state())
            yield
            self.rng.set_state(torch.cuda.get_rng_state(self.device) if cuda else torch.get_rng_state())

    def rng_scope(self):
        """The context the trainer's random draws run in: its own generator when a step draws
        (dropout, scheduled sampling, REINFORCE's samples), else nothing to set up."""
        draws = self.cfg.dropout or self.cfg.scheduled_sampling or self.cfg.objective != "xent"
        return self._own_rng() if draws else nullcontext()

    def train_step(self, batch) -> float:
        with self.rng_scope():
            return self._train_step(batch)

    def _train_step(self, batch) -> float:
        batch, inputs, state = self.step_inputs(batch)
        cfg = self.cfg
        tail = sampled_tail(cfg.objective, self.step, cfg.mixer_xent_steps, cfg.mixer_every, cfg.mixer_delta)
        if tail != 0:  # a sequence-level objective samples (part of) the answers
            loss, recorded, _ = sequence_loss(self.model, batch, state, tail, self.baseline, self.task.vocab.eos,
                                              None, cfg.reward)  # (the global RNG is self.rng's: rng_scope)
            self.model.take_outputs()  # (no activation penalties on sampled sequences)
            new_state = None
        else:
            logits, new_state = self.model(inputs, state)
            loss = self.step_loss(logits, batch)
            recorded = None
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.apply_gradients(new_state)
        return float(loss.detach()) if recorded is None else recorded

    # the phases of a training step, also run member by member by a population (``population.py``)
    def step_inputs(self, batch):
        """(the batch on the device, the model's input tokens, the state to start from)."""
        self.model.train()
        batch = batch.to(self.device)
        state = self.state if batch.carry_state else self.model.start(batch)
        inputs = self._mixed_inputs(batch) if self.cfg.scheduled_sampling else batch.inputs
        return batch, inputs, state

    def step_loss(self, logits: torch.Tensor, batch) -> torch.Tensor:
        """The step's mean NLL, whose gradient also carries the activation penalties (``ar``, ``tar``)
        of the outputs the forward that made ``logits`` left in ``SeqModel.last_outputs``."""
        nll, n = self.task.masked_nll(logits, batch.targets, batch.mask)
        loss = nll / max(n, 1)
        outputs = self.model.take_outputs()
        if (self.cfg.ar or self.cfg.tar) and outputs is not None:
            penalty = activation_penalty(*outputs, batch.mask, self.cfg.ar, self.cfg.tar)
            # penalty - penalty.detach() is 0 in value and the penalty in gradient: the loss recorded
            # (and checked for divergence) stays the NLL, comparable with the validation loss and with
            # runs without the penalties, as AWD-LSTM reports its raw loss
            loss = loss + (penalty - penalty.detach())
        return loss

    def apply_gradients(self, new_state) -> None:
        """Clip this model's gradient (its own norm), take the optimizer step, carry the state on."""
        if self.cfg.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip, foreach=True)
        self.opt.step()
        self.keep_state(new_state)

    def keep_state(self, new_state) -> None:
        """Carry the state the step ended in on to the next batch (truncated BPTT)."""
        # (an encoder-decoder's state is its batch's source: it is never carried to the next batch)
        self.state = None if self.model.is_seq2seq else self.model.detach_state(new_state)

    def evaluate(self, split: str = "valid") -> dict[str, float | None]:
        with torch_threads(self.cfg.threads):
            metrics = self.task.evaluate(self.model, split, self.cfg.eval_batch_size)
        return {k: (None if (v is None or not math.isfinite(v)) else float(v)) for k, v in metrics.items()}

    def run(self, callback: Callable[[int, dict], bool | None] | None = None,
            progress: Callable[[object], None] | None = None, out_dir: str | Path | None = None) -> TrainResult:
        """Train until the budget is spent; ``callback(step, metrics)`` is called after every periodic
        evaluation and may return False to stop. ``progress(event)`` hears ``TrainingStarted``, a
        ``StepDone`` per step and ``TrainingStopped`` (a progress bar: ``cellsearch.cli.progress``).
        Writes ``checkpoint.pt`` into ``out_dir``. Trains on ``cfg.threads`` torch threads (the
        caller's count comes back after)."""
        with torch_threads(self.cfg.threads):
            return self._run(callback, progress, out_dir)

    def _run(self, callback, progress, out_dir) -> TrainResult:
        cfg = self.cfg
        if out_dir:  # before training: an output that cannot be written would lose the training at the save
            check_new_path("the output directory", out_dir)
            check_output_dir(out_dir, "Trainer.out_dir", OUTPUT_FILES)
        start = time.perf_counter()
        if progress is True:  # (it used to build a progress bar here; rendering is the caller's now)
            raise TypeError("progress takes a callable that receives the training events, not True")
        tell = progress or None
        if tell:
            tell(TrainingStarted(cfg.cell, cfg.task, cfg.steps, self.step))
        last_ckpt = None
        try:
            while self.status == "ok" and self._budget_left(start):
                self.set_lr(start)
                loss = self.train_step(next(self.stream))
                if not self.record_step(loss, start, callback, tell):
                    break
                if out_dir and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.elapsed += time.perf_counter() - start
                    start = time.perf_counter()
                    last_ckpt = save_checkpoint(self.save, Path(out_dir) / f"checkpoint-{self.step}.pt", last_ckpt)
        finally:
            if tell:
                tell(TrainingStopped(self.step))
        self.elapsed += time.perf_counter() - start
        self.final_evaluation(callback)
        if out_dir:
            last_ckpt = save_checkpoint(self.save, Path(out_dir) / CHECKPOINT_FILE, last_ckpt)
        return self.result(last_ckpt)

    # the phases of ``run``, also driven member by member by a population
    def set_lr(self, start: float) -> None:
        """This step's learning rate (warm-up, then the schedule over the budget)."""
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * _lr_factor(self.cfg, self.step, self._progress_fraction(start))

    def record_step(self, loss: float, start: float, callback=None, tell=None, finite: bool | None = None) -> bool:
        """Book a finished step: its loss, divergence, progress, the periodic evaluation; False when
        training ends here (diverged, or the callback asked to stop). ``finite``: whether the weights
        are all finite, if the caller knows (a population checks all members at once)."""
        cfg = self.cfg
        self.step += 1
        self.losses.append(loss)
        if self.first_loss is None:
            self.first_loss = loss
        if not math.isfinite(loss) or loss > cfg.diverge_factor * max(self.first_loss, 1e-3) \
                or not (self.weights_finite() if finite is None else finite):
            self.status = "diverged"
            return False
        if tell:
            tell(StepDone(self.step, loss, self.elapsed + time.perf_counter() - start))
        if cfg.eval_every and self.step % cfg.eval_every == 0 and self._budget_left(start):
            metrics = self.evaluate()
            self.history.append({"step": self.step, "seconds": self.elapsed + time.perf_counter() - start, **metrics})
            if callback is not None and callback(self.step, metrics) is False:
                self.status = "stopped"
                return False
        return True

    def weights_finite(self) -> bool:
        """Whether every weight is finite. Checked after every step: with ``state_limit`` a cell whose
        weights went NaN or infinite has its outputs set to 0 and can show a finite loss (the head
        alone), so the loss by itself no longer tells that training broke."""
        # one multi-tensor max-abs and one sync, not a reduction and a sync per parameter
        return finite_together([list(self.model.parameters())])[0]

    def final_evaluation(self, callback=None) -> None:
        """Evaluate the trained model (unless its weights are not finite) into ``final_metrics``
        and the history; the callback hears it when training ended normally."""
        metrics = self.evaluate() if self.weights_finite() else {self.task.primary_metric: None}
        if self.status != "stopped" and (not self.history or self.history[-1]["step"] != self.step):
            self.history.append({"step": self.step, "seconds": self.elapsed, **metrics})
            if callback is not None and self.status == "ok":
                callback(self.step, metrics)
        self.final_metrics = metrics

    def cell_parameter_count(self) -> int:
        """The parameters of the model's cells: its layers', and an encoder-decoder's encoder's too
        (not the embedding and output layer, as the papers count)."""
        modules = [self.model.rnn] + ([self.model.encoder] if self.model.encoder is not None else [])
        return sum(p.numel() for m in modules for p in m.parameters())

    def result(self, checkpoint: Path | None = None) -> TrainResult:
        return TrainResult(status=self.status, steps=self.step, seconds=self.elapsed, metrics=self.final_metrics,
                           history=self.history, params=self.cell_parameter_count(),
                           cell=self.graph.name, hash=canonical_hash(self.graph), task=self.task.name,
                           losses=self.losses, checkpoint=str(checkpoint) if checkpoint else None)


def train(cfg: TrainConfig, *, callback=None, progress: Callable[[object], None] | None = None,
          out_dir: str | Path | None = None, task: Task | None = None, graph=None) -> TrainResult:
    """Train one model to the budget (see module docstring)."""
    return Trainer(cfg, task=task, graph=graph).run(callback=callback, progress=progress, out_dir=out_dir)


def map_in_workers(fn: Callable[[Any], Any], jobs: list, workers: int = 1,
                   on_result: Callable[[int, int, Any], None] | None = None) -> list:
    """``fn(job)`` for every job — in ``workers`` processes, or in this one when ``workers <= 1`` —
    calling ``on_result(i, n, result)`` as results arrive; returns them in completion order.
    ``fn`` must be importable (a module-level function) and should pin its own torch threads."""
    from cellsearch.limits import MAX_PARALLEL, check_limit

    check_limit("workers", "parallel", workers, MAX_PARALLEL)  # (each one a process)
    results: list = []
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from cellsearch.allocator import keep_freed_memory

        # (the workers are processes of their own, tuned for training steps as the command line is)
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=keep_freed_memory) as pool:
            for fut in as_completed([pool.submit(fn, job) for job in jobs]):
                results.append(fut.result())
                if on_result:
                    on_result(len(results), len(jobs), results[-1])
    else:
        for job in jobs:
            results.append(fn(job))
            if on_result:
                on_result(len(results), len(jobs), results[-1])
    return results


def save_checkpoint(save: Callable[[Path], Path], path: Path, last: Path | None) -> Path:
    """``save(path)``; when the file system refuses it (a full disk), the one-line error says which
    checkpoint is kept: ``last`` (the last one this training wrote), else the file at ``path``
    from before (an atomic write leaves it as it was)."""
    try:
        return save(path)
    except WriteError as exc:
        kept = last if last is not None else (path if path.is_file() else None)
        if kept is None:
            raise exc.advised("no checkpoint of this training was written; free space and train again") from None
        raise exc.advised(f"the last good checkpoint, {kept}, is kept: free space and continue from it "
                          f"(Trainer.from_checkpoint, `cellsearch train ... --resume {kept}`)") from None


def checkpoint_encoder(ckpt: dict, path: str | Path):
    """The encoder cell a checkpoint stored (not the file its settings name: that may have changed
    or gone), or None for a language model."""
    return loads_cell(ckpt["encoder_yaml"], source=f"{path}:encoder") if "encoder_yaml" in ckpt else None


def load_model(path: str | Path) -> tuple[SeqModel, Any, dict]:
    """A trained model from a checkpoint, with its vocabulary and the checkpoint dict."""
    from cellsearch.tasks.base import Vocab

    ckpt = load_checkpoint(path)
    graph = loads_cell(ckpt["cell_yaml"], source=f"{path}:cell")
    config = record_from_dict(ModelConfig, ckpt["model_config"], f"{path}: model settings")
    encoder = checkpoint_encoder(ckpt, path)
    if config.encoder is not None and encoder is None:
        raise ConfigError(f"{path}: damaged checkpoint: an encoder-decoder model without its encoder cell")
    try:
        model = SeqModel(graph, config, encoder=encoder)
        model.load_state_dict(ckpt["model"])
        vocab = Vocab.from_state(ckpt["vocab"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise restore_error(path, exc) from None
    if len(vocab) != config.vocab_size:
        raise ConfigError(f"{path}: damaged checkpoint: {len(vocab)} tokens, but the model has "
                          f"{config.vocab_size} outputs")
    model.eval()
    return model, vocab, ckpt
