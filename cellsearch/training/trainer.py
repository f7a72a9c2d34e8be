"""The training loop: ``Trainer`` trains one model to a budget of steps and/or seconds.

``train(TrainConfig(cell="lstm", task="arith", steps=300))`` builds the task and a
``SeqModel`` around the cell, trains within a budget of steps and/or seconds, evaluates on
the validation split, and returns a ``TrainResult`` whose ``status`` is ``ok``,
``diverged`` (NaN/Inf or exploding loss), or ``stopped`` (the evaluation callback asked to
stop, e.g. an early-stopping scheduler). Same seed ⇒ same metrics on CPU; a checkpoint
holds everything needed to resume bit for bit (weights, optimizer, RNG and data-stream
state, the carried hidden state).

Randomness comes from the trainer's own generators, not the caller's global RNG (``Trainer._own_rng``);
progress goes to an optional callback as events (``cellsearch.training.events``; it prints nothing).
A trainer leaves the process's state as it found it: torch's threads are ``cfg.threads`` only while
it trains (``torch_threads``), and the C allocator's tuning for training steps
(``cellsearch.training.allocator.keep_freed_memory``) is for the process's owner to ask for — the
command line and the search's workers do.

Any cell the DSL accepts trains without its recurrence running away (docs/results/stability.md):
``state_limit`` bounds a layer whose outputs leave ±limit (``SeqModel``: that layer is computed
again step by step, values outside ±limit set to 0), and AWD-LSTM's activation penalties
``ar``/``tar`` pull the last layer's outputs back towards the range where the cell works. Both are
on by default; the bound changes nothing for a cell whose outputs stay within it. Presets of these
settings: ``cellsearch.training.recipes``.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import torch

from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell, loads_cell
from cellsearch.errors import ConfigError
from cellsearch.fileio import atomic_write, check_output_dir
from cellsearch.limits import check_new_path
from cellsearch.nn.model import ModelConfig, SeqModel
from cellsearch.tasks import make_task
from cellsearch.dsl.graph import CellGraph
from cellsearch.tasks.base import Batch, Task
from cellsearch.training.checkpoint import CHECKPOINT_VERSION, load_checkpoint, restore_error
from cellsearch.training.config import DEFAULT_ENCODER, TrainConfig
from cellsearch.training.events import StepDone, TrainingStarted, TrainingStopped
from cellsearch.training.memory_estimate import check_training_memory
from cellsearch.training.objectives import Baseline, sampled_tail, sequence_loss
from cellsearch.training.optim_groups import finite_together
from cellsearch.training.parallelism import torch_threads
from cellsearch.training.regularization import activation_penalty
from cellsearch.training.result import TrainResult
from cellsearch.training.saved_model import CHECKPOINT_FILE, OUTPUT_FILES, checkpoint_encoder, save_checkpoint
from cellsearch.training.schedules import lr_factor, teacher_forcing_probability


def resolve_device(name: str) -> torch.device:
    """The torch device a ``TrainConfig.device`` names: ``auto`` is CUDA where available, else the CPU;
    ConfigError (one line) for ``cuda`` on a machine without it."""
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

    def __init__(self, cfg: TrainConfig, *, task: Task | None = None, graph: CellGraph | None = None,
                 encoder_graph: CellGraph | None = None):
        from cellsearch.library import resolve_cell

        cfg.validate()
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.graph = graph if graph is not None else resolve_cell(cfg.cell)
        check_training_memory(cfg, self.graph)  # (validate guessed the cell's size; this counts its linears)
        self.task = task if task is not None else make_task(cfg.task, seed=cfg.seed, data_dir=cfg.data_dir,
                                                            **cfg.task_options)
        # the training's own randomness (dropout, scheduled sampling), on the device it trains on
        self.rng = torch.Generator(device=self.device).manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)  # the initial weights
        # (torch's modules draw default weights from the global RNG as they are built; those are
        # replaced below, and the caller's global RNG is left as it was)
        # a cell that reads memories, on a task with stories (babi): a memory network (nn/memory_qa.py)
        qa = bool(self.graph.memory) and cfg.encoder is None and "qa" in self.task.layouts
        encoder = cfg.encoder or (DEFAULT_ENCODER if self.graph.memory and not qa else None)
        if encoder is not None:
            self.task.use_layout("seq2seq")
        self.model: Any
        if qa:
            self.task.use_layout("qa")
            self.model = memory_qa_model(self.graph, self.task, cfg)
        else:
            with torch.random.fork_rng(devices=[]):
                self.model = SeqModel(self.graph, ModelConfig(vocab_size=len(self.task.vocab),
                                                              hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                                                              embed_size=cfg.embed_size, dropout=cfg.dropout,
                                                              state_limit=cfg.state_limit, encoder=encoder,
                                                              memory_rows=cfg.memory_rows,
                                                              condition_classes=self.task.condition_classes),
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
        self.opt: torch.optim.Optimizer
        if cfg.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        else:
            self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                       foreach=True)
        self.stream = self.task.train_stream(cfg.batch_size, cfg.seed)
        self.step = 0
        self.elapsed = 0.0
        self.state: Any = None  # carried hidden state (truncated BPTT)
        self.first_loss: float | None = None
        self.history: list[dict[str, Any]] = []
        self.losses: list[float] = []
        self.status = "ok"
        self.final_metrics: dict[str, float | None] = {}  # set by final_evaluation

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds to resume this training exactly (weights, optimizer, RNGs, stream, history)."""
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
        """Resume from a ``state_dict`` (ConfigError for a checkpoint of another version or training)."""
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

    def _mixed_inputs(self, batch: Batch) -> torch.Tensor:
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

    def rng_scope(self) -> ContextManager[None]:
        """The context the trainer's random draws run in: its own generator when a step draws
        (dropout, scheduled sampling, REINFORCE's samples), else nothing to set up."""
        draws = self.cfg.dropout or self.cfg.scheduled_sampling or self.cfg.objective != "xent"
        return self._own_rng() if draws else nullcontext()

    def train_step(self, batch: Batch) -> float:
        """One optimizer step on ``batch``; returns its loss (the recorded one: the mean NLL, or a
        sequence objective's)."""
        with self.rng_scope():
            return self._train_step(batch)

    def _train_step(self, batch: Batch) -> float:
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

    # the phases of a training step, also run member by member by a population (``training/population.py``)
    def step_inputs(self, batch: Batch) -> tuple[Batch, torch.Tensor, Any]:
        """(the batch on the device, the model's input tokens, the state to start from)."""
        self.model.train()
        batch = batch.to(self.device)
        state = self.state if batch.carry_state else self.model.start(batch)
        inputs = self._mixed_inputs(batch) if self.cfg.scheduled_sampling else batch.inputs
        return batch, inputs, state

    def step_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The step's mean NLL, whose gradient also carries the activation penalties (``ar``, ``tar``)
        of the outputs the forward that made ``logits`` left in ``SeqModel.last_outputs``."""
        nll, n = self.task.masked_nll(logits, batch.targets, batch.mask)
        loss = nll / max(n, 1)
        outputs: tuple[torch.Tensor, torch.Tensor] | None = self.model.take_outputs()
        if (self.cfg.ar or self.cfg.tar) and outputs is not None:
            penalty = activation_penalty(*outputs, batch.mask, self.cfg.ar, self.cfg.tar)
            # penalty - penalty.detach() is 0 in value and the penalty in gradient: the loss recorded
            # (and checked for divergence) stays the NLL, comparable with the validation loss and with
            # runs without the penalties, as AWD-LSTM reports its raw loss
            loss = loss + (penalty - penalty.detach())
        return loss

    def apply_gradients(self, new_state: Any) -> None:
        """Clip this model's gradient (its own norm), take the optimizer step, carry the state on."""
        if self.cfg.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip, foreach=True)
        self.opt.step()
        self.keep_state(new_state)

    def keep_state(self, new_state: Any) -> None:
        """Carry the state the step ended in on to the next batch (truncated BPTT)."""
        self.state = self.model.detach_state(new_state) if self.model.carries_state else None

    def evaluate(self, split: str = "valid") -> dict[str, float | None]:
        """The task's metrics of the model on ``split`` ("valid" or "test"); None for a value that is not finite."""
        with torch_threads(self.cfg.threads):
            metrics = self.task.evaluate(self.model, split, self.cfg.eval_batch_size)
        return {k: (None if (v is None or not math.isfinite(v)) else float(v)) for k, v in metrics.items()}

    def run(self, callback: Callable[[int, dict[str, Any]], bool | None] | None = None,
            progress: Callable[[object], None] | None = None, out_dir: str | Path | None = None) -> TrainResult:
        """Train until the budget is spent; ``callback(step, metrics)`` is called after every periodic
        evaluation and may return False to stop. ``progress(event)`` hears ``TrainingStarted``, a
        ``StepDone`` per step and ``TrainingStopped`` (a progress bar: ``cellsearch.cli.progress``).
        Writes ``checkpoint.pt`` into ``out_dir``. Trains on ``cfg.threads`` torch threads (the
        caller's count comes back after)."""
        with torch_threads(self.cfg.threads):
            return self._run(callback, progress, out_dir)

    def _run(self, callback: Callable[[int, dict[str, Any]], bool | None] | None,
             progress: Callable[[object], None] | None, out_dir: str | Path | None) -> TrainResult:
        cfg = self.cfg
        if out_dir:  # before training: an output that cannot be written would lose the training at the save
            check_new_path("the output directory", out_dir)
            check_output_dir(out_dir, "Trainer.out_dir", OUTPUT_FILES)
        start = time.perf_counter()
        if progress is True:  # type: ignore[comparison-overlap]  # (an untyped caller may pass it; it used to build a progress bar here; rendering is the caller's now)
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
            group["lr"] = self.cfg.lr * lr_factor(self.cfg, self.step, self._progress_fraction(start))

    def record_step(self, loss: float, start: float, callback: Callable[[int, dict[str, Any]], bool | None] | None = None,
                    tell: Callable[[object], None] | None = None, finite: bool | None = None) -> bool:
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

    def final_evaluation(self, callback: Callable[[int, dict[str, Any]], bool | None] | None = None) -> None:
        """Evaluate the trained model (unless its weights are not finite) into ``final_metrics``
        and the history; the callback hears it when training ended normally."""
        metrics: dict[str, float | None] = \
            self.evaluate() if self.weights_finite() else {self.task.primary_metric: None}
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
        """The training's result so far (``checkpoint``: the file it was saved to, if any)."""
        return TrainResult(status=self.status, steps=self.step, seconds=self.elapsed, metrics=self.final_metrics,
                           history=self.history, params=self.cell_parameter_count(),
                           cell=self.graph.name, hash=canonical_hash(self.graph), task=self.task.name,
                           losses=self.losses, checkpoint=str(checkpoint) if checkpoint else None)


def memory_qa_model(graph: CellGraph, task: Task, cfg: TrainConfig) -> Any:
    """The memory network of a cell that reads memories on a task of stories (the qa layout)."""
    from cellsearch.nn.memory_qa import MemoryQAModel

    if cfg.num_layers != 1 or cfg.dropout or cfg.scheduled_sampling:
        raise ConfigError(f"cell '{graph.name}' answers questions as a memory network (the {task.name} task's qa "
                          "layout): one layer, no dropout, no scheduled sampling (its hops are the depth; it "
                          "reads no answer tokens)",
                          field=("TrainConfig.num_layers", "TrainConfig.dropout", "TrainConfig.scheduled_sampling"))
    with torch.random.fork_rng(devices=[]):
        return MemoryQAModel(graph, ModelConfig(vocab_size=len(task.vocab), hidden_size=cfg.hidden_size,
                                                embed_size=cfg.embed_size),
                             slots=getattr(task, "memory_size"), pad=task.vocab.pad)


def train(cfg: TrainConfig, *, callback: Callable[[int, dict[str, Any]], bool | None] | None = None,
          progress: Callable[[object], None] | None = None, out_dir: str | Path | None = None,
          task: Task | None = None, graph: CellGraph | None = None) -> TrainResult:
    """Train one model to the budget (see module docstring)."""
    return Trainer(cfg, task=task, graph=graph).run(callback=callback, progress=progress, out_dir=out_dir)
