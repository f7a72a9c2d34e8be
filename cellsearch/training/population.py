"""Population training: K variants of one cell trained in lock step, as one batched model.

``train_population(TrainConfig(cell="lstm", hidden_size=64), [Member(seed=0), Member(seed=1, lr=3e-3)])``
trains one member per ``Member`` and returns one ``TrainResult`` per member, each what
``train(member.apply(cfg))`` returns: every member keeps its own ``Trainer`` (model, optimizer
and learning rate, data stream, RNG, carried state, task), and only the work of a step is
shared: the members' recurrent layers run as one batched time loop (``nn/population.py``), one
backward pass serves all (the loss is the sum of the members' losses, whose gradients never
mix), then each member clips its own gradient and takes its own optimizer step (all members' in a
few multi-tensor kernels: ``optim_groups.py``). A member that
diverges is frozen (it leaves the batch, its weights stay as they were) and reported
``diverged``; the others go on. Evaluation is per member, on the member's own task.

Members share every shape (cell, hidden size, layers, batch, task) and differ in any of
``Member``'s fields. Batches of different lengths (the Arithmetic task's) run padded to one
length inside the recurrent layers only (``nn/population.py``): losses are each member's own.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from cellsearch.training.checkpoint import CHECKPOINT_VERSION, load_population_checkpoint, restore_error
from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import ConfigError
from cellsearch.fileio import atomic_write, check_output_dir
from cellsearch.limits import MAX_POPULATION, check_limit, check_new_path, shown
from cellsearch.nn.model import SeqModel
from cellsearch.nn.population import population_forward
from cellsearch.training.optim_groups import clip_together, finite_together, step_together
from cellsearch.records import record_from_dict
from cellsearch.tasks import make_task
from cellsearch.tasks.base import Task
from cellsearch.training.saved_model import CHECKPOINT_FILE, OUTPUT_FILES, checkpoint_encoder, save_checkpoint
from cellsearch.training.events import StepDone, TrainingStarted, TrainingStopped
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import Trainer
from cellsearch.training.result import TrainResult
from cellsearch.training.memory_estimate import check_training_memory
from cellsearch.training.parallelism import torch_threads

MEMBER_FIELDS = ("seed", "lr", "init_scale", "forget_bias", "weight_decay", "clip")


@dataclass(frozen=True)
class Member:
    """How one member differs from the population's base settings (None: as the base)."""

    seed: int | None = None  # initialisation, dropout and data order
    lr: float | None = None
    init_scale: float | None = None
    forget_bias: float | None = None
    weight_decay: float | None = None
    clip: float | None = None  # 0: no clipping

    def apply(self, cfg: TrainConfig) -> TrainConfig:
        """The member's own training settings."""
        changes = self.to_json()
        if "clip" in changes:
            changes["clip"] = changes["clip"] or None
        return dataclasses.replace(cfg, **changes)

    def to_json(self) -> dict[str, Any]:
        """The fields this member sets (the ``member`` object of ``train --json``)."""
        return {k: getattr(self, k) for k in MEMBER_FIELDS if getattr(self, k) is not None}


def shape_groups(settings: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Indices of training settings (``TrainConfig`` fields as dicts) grouped so that each group
    differs only in ``MEMBER_FIELDS``: each group can train as one population. Groups come in the
    order of their first member; members keep their order."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(settings):
        shape = {k: v for k, v in s.items() if k not in MEMBER_FIELDS}
        groups.setdefault(repr(sorted(shape.items())), []).append(i)
    return list(groups.values())


def members_product(**lists: Sequence[Any] | None) -> list[Member]:
    """Every combination of the given lists (``seed=[0, 1], lr=[1e-3, 3e-3]`` → 4 members), seeds
    varying fastest; a list that is None or empty is left out."""
    given = [(k, list(v)) for k, v in lists.items() if v]
    for k, _ in given:
        if k not in MEMBER_FIELDS:
            raise ConfigError(f"a population member has no field {k!r} (fields: {', '.join(MEMBER_FIELDS)})")
    # (the count before the members: 1,024 values in each of three lists would be 2^30 members)
    check_limit(f"members ({' × '.join(f'{len(v)} {k}s' for k, v in given)})", "population size",
                math.prod(len(v) for _, v in given), MAX_POPULATION)
    members = [Member()]
    for key, values in reversed(given):
        members = [dataclasses.replace(m, **{key: v}) for m in members for v in values]
    # reversed + outer loop over the existing members makes the first list vary fastest
    return members


class PopulationTrainer:
    """K ``Trainer``s of one cell trained in lock step (see module docstring)."""

    def __init__(self, cfg: TrainConfig, members: Sequence[Member], *, task: Task | None = None,
                 graph: CellGraph | None = None,
                 trainers: Sequence[Trainer] | None = None):
        """``task``: one task for every member (default: each member's own, built for its seed, as
        ``train`` builds it); ``trainers``: restored members (``from_checkpoint``)."""
        from cellsearch.library import resolve_cell

        if trainers is not None:  # restored from a checkpoint
            self.trainers = list(trainers)
            self.members = list(members)
            return
        if not members:
            raise ConfigError("a population needs at least one member")
        check_limit("members of a population", "population size", len(members), MAX_POPULATION)
        configs = [m.apply(cfg) for m in members]  # (each checked as it is made: TrainConfig validates itself)
        graph = graph if graph is not None else resolve_cell(cfg.cell)
        check_training_memory(cfg, graph, members=len(members))  # (all of them, before the first is built)
        tasks: dict[int, Task] = {}
        self.trainers = []
        for c in configs:
            member_task = task if task is not None else _task_for(c, tasks)
            self.trainers.append(Trainer(c, task=member_task, graph=graph))
            if not isinstance(self.trainers[-1].model, SeqModel):  # (a memory network: nn/memory_qa.py)
                raise ConfigError(f"cell '{graph.name}' answers {c.task} questions as a memory network, which trains "
                                  "one model at a time: train each seed on its own (no --seeds/--lrs population)")
        self.members = list(members)

    @property
    def cfg(self) -> TrainConfig:
        """The settings the members share (the first member's, whose own fields each member overrides)."""
        return self.trainers[0].cfg

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The population's checkpoint: every member's trainer state and the members' settings."""
        return {"version": CHECKPOINT_VERSION, "population": [t.state_dict() for t in self.trainers],
                "members": [m.to_json() for m in self.members]}

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint whole or not at all (``fileio.atomic_write``): a failed save keeps the old file."""
        state = self.state_dict()
        return atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def from_checkpoint(cls, path: str | Path, **overrides: Any) -> "PopulationTrainer":
        """The population saved at ``path`` (``overrides`` change every member's settings, e.g. steps)."""
        ckpt = load_population_checkpoint(path)
        members = _checked_members(ckpt, path)
        trainers = []
        tasks: dict[int, Task] = {}
        for i, member in enumerate(ckpt["population"]):
            cfg = TrainConfig.from_dict({**member["config"], **overrides}, f"{path}: member {i}'s training settings")
            trainer = Trainer(cfg, graph=loads_cell(member["cell_yaml"], source=f"{path}:cell"),
                              task=_task_for(cfg, tasks), encoder_graph=checkpoint_encoder(member, path))
            try:
                trainer.load_state_dict(member)
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
                raise restore_error(path, exc) from None
            trainers.append(trainer)
        return cls(trainers[0].cfg, members, trainers=trainers)

    # ------------------------------------------------------------------ training
    def train_step(self, trainers: Sequence[Trainer]) -> list[float]:
        """One optimizer step of every given member, their recurrent layers batched; their losses."""
        if self.cfg.objective != "xent":  # sequence-level objectives sample step by step: member by member
            return [t.train_step(next(t.stream)) for t in trainers]
        prepared = []
        for t in trainers:
            with t.rng_scope():
                prepared.append(t.step_inputs(next(t.stream)))
        if len({inputs.shape[0] for _, inputs, _ in prepared}) > 1 \
                and any(b.carry_state and s is not None for b, _, s in prepared):
            raise ConfigError("the members' batches differ in length while carrying their state; "
                              "a population needs one length per step for such a task")
        results = population_forward([t.model for t in trainers], [i for _, i, _ in prepared],
                                     [s for _, _, s in prepared], [t.rng_scope for t in trainers])
        losses = [t.step_loss(logits, batch) for t, (logits, _), (batch, _, _) in zip(trainers, results, prepared)]
        params = [list(t.model.parameters()) for t in trainers]
        for p in (p for ps in params for p in ps):
            p.grad = None
        torch.stack(losses).sum().backward()  # each member's gradient is that of its own loss
        # each member's own clipping and optimizer step, all members' in a few kernels (optim_groups.py)
        clip_together(params, [t.cfg.clip for t in trainers])
        step_together([t.opt for t in trainers])
        for t, (_, new_state) in zip(trainers, results):
            t.keep_state(new_state)
        return torch.stack(losses).detach().tolist()

    def run(self, callback: Callable[[int, int, dict[str, Any]], bool | None] | None = None,
            progress: Callable[[object], None] | None = None, out_dir: str | Path | None = None) -> list[TrainResult]:
        """Train every member to the budget; one ``TrainResult`` per member, in order.

        ``callback(member, step, metrics)`` hears each member's periodic evaluations and may return
        False to stop that member. ``progress`` hears the population's events (``StepDone`` with the
        mean loss of the members still training). Writes ``checkpoint.pt`` (all members) into ``out_dir``.
        Trains on ``cfg.threads`` torch threads (the caller's count comes back after).
        """
        with torch_threads(self.cfg.threads):
            return self._run(callback, progress, out_dir)

    def _run(self, callback: Callable[[int, int, dict[str, Any]], bool | None] | None,
             progress: Callable[[object], None] | None, out_dir: str | Path | None) -> list[TrainResult]:
        cfg = self.cfg
        if out_dir:  # (before training: a name the file system refuses would lose the training at the save)
            check_new_path("the output directory", out_dir)
        start = time.perf_counter()
        tell = progress or None
        if tell:
            tell(TrainingStarted(cfg.cell, cfg.task, cfg.steps, min(t.step for t in self.trainers)))
        member_callbacks = [None if callback is None else (lambda step, m, k=k: callback(k, step, m))
                            for k in range(len(self.trainers))]
        if out_dir:  # before training: an output that cannot be written would lose it at the end
            check_output_dir(out_dir, "Trainer.out_dir", OUTPUT_FILES)
        last_ckpt = None
        step = min(t.step for t in self.trainers)
        try:
            while True:
                active = [k for k, t in enumerate(self.trainers) if t.status == "ok" and t._budget_left(start)]
                if not active:
                    break
                for k in active:
                    self.trainers[k].set_lr(start)
                losses = self.train_step([self.trainers[k] for k in active])
                finite = finite_together([list(self.trainers[k].model.parameters()) for k in active])
                for k, loss, ok in zip(active, losses, finite):
                    self.trainers[k].record_step(loss, start, member_callbacks[k], finite=ok)
                step = max(self.trainers[k].step for k in active)
                if tell:
                    live = [loss for loss in losses if math.isfinite(loss)]
                    tell(StepDone(step, sum(live) / max(len(live), 1),
                                  self.trainers[active[0]].elapsed + time.perf_counter() - start))
                if out_dir and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    now = time.perf_counter()
                    for t in self.trainers:
                        t.elapsed += now - start
                    start = now
                    last_ckpt = save_checkpoint(self.save, Path(out_dir) / f"checkpoint-{step}.pt", last_ckpt)
        finally:
            if tell:
                tell(TrainingStopped(step))
        now = time.perf_counter()
        for k, t in enumerate(self.trainers):
            t.elapsed += now - start
            t.final_evaluation(member_callbacks[k])
        if out_dir:
            last_ckpt = save_checkpoint(self.save, Path(out_dir) / CHECKPOINT_FILE, last_ckpt)
        return [t.result(last_ckpt) for t in self.trainers]


def _checked_members(ckpt: dict[str, Any], path: str | Path) -> list[Member]:
    """The members of a checked population checkpoint (``load_population_checkpoint``), after
    checking that it is one population as ``PopulationTrainer.save`` writes it: one cell, one set of
    shared settings, and each member's label (``members``) what the member trains with (its
    settings): a crafted file could otherwise mix cells, or train at one learning rate and report
    another. ConfigError naming the member and the setting."""
    entries = ckpt["population"]
    members = [record_from_dict(Member, m, f"{path}: member {i}'s settings") for i, m in enumerate(ckpt["members"])]
    first = entries[0]
    for i, entry in enumerate(entries[1:], 1):
        if entry["cell_yaml"] != first["cell_yaml"] or entry.get("encoder_yaml") != first.get("encoder_yaml"):
            raise ConfigError(f"{path}: member {i} is another cell than member 0; a population trains one cell "
                              "(not a checkpoint a population's training wrote)")
        differ = sorted(str(k) for k in {*entry["config"], *first["config"]} - set(MEMBER_FIELDS)
                        if entry["config"].get(k) != first["config"].get(k))
        if differ:
            raise ConfigError(f"{path}: member {i}'s training settings differ from member 0's in "
                              f"{shown(', '.join(differ))}; a population's members differ only in "
                              f"{', '.join(MEMBER_FIELDS)}")
    for i, (entry, member) in enumerate(zip(entries, members)):
        for key, label in member.to_json().items():
            trained = entry["config"].get(key)
            if key == "clip":  # a label's 0 is no clipping, the settings' None
                label, trained = label or None, trained or None
            if trained != label:
                raise ConfigError(f"{path}: member {i} is labelled {key}={shown(label)} but trains with "
                                  f"{key}={shown(trained)}; the checkpoint contradicts itself")
    for key in MEMBER_FIELDS:  # the members without a label for a field train with one (the base) value
        unlabelled = {i: entry["config"].get(key) for i, (entry, member) in enumerate(zip(entries, members))
                      if getattr(member, key) is None}
        if len({repr(v) for v in unlabelled.values()}) > 1:
            i = sorted(unlabelled)[1]
            raise ConfigError(f"{path}: members {sorted(unlabelled)[0]} and {i} carry no {key} label but train "
                              f"with different {key} values; the checkpoint contradicts itself")
    return members


def _task_for(cfg: TrainConfig, built: dict[int, Task]) -> Task:
    """The member's task: built for its seed, shared with the members whose task does not depend on
    the seed (a fixed corpus: its settings name no seed)."""
    if built:
        first = next(iter(built.values()))
        if "seed" not in first.config():
            return first
    if cfg.seed not in built:
        built[cfg.seed] = make_task(cfg.task, seed=cfg.seed, data_dir=cfg.data_dir, **cfg.task_options)
    return built[cfg.seed]


def train_population(cfg: TrainConfig, members: Sequence[Member], *,
                     callback: Callable[[int, int, dict[str, Any]], bool | None] | None = None,
                     progress: Callable[[object], None] | None = None, out_dir: str | Path | None = None,
                     task: Task | None = None, graph: CellGraph | None = None) -> list[TrainResult]:
    """Train ``members`` of ``cfg``'s cell as one population (see module docstring)."""
    return PopulationTrainer(cfg, members, task=task, graph=graph).run(callback=callback, progress=progress,
                                                                       out_dir=out_dir)


__all__ = ["shape_groups", "Member", "PopulationTrainer", "members_product", "train_population"]
