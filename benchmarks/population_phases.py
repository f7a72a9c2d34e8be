"""Where a training step's time goes, phase by phase, for a population of K and for one member alone.

Times the phases of ``PopulationTrainer.train_step`` (and of a solo ``Trainer``'s step, which the
same code runs with one member) by wrapping the functions that make them, in one process,
alternating population and solo steps so a drift of the machine hits both:

    python benchmarks/population_phases.py --threads 1
    python benchmarks/population_phases.py --threads 2 --hidden 128 --k 8 --steps 20

Phases (milliseconds per step): ``data`` (the task's next batch), ``recurrence forward`` and
``recurrence backward`` (the batched time loop and its generated backward, the latter including
``weight gradients``), ``lookup`` (first-layer inputs looked up per token), ``output layer``,
``loss``, ``optimizer`` (clipping, Adam and the finite-weights check) and ``other`` (everything
else: autograd of the output layer and the embedding, padding, Python).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from contextlib import contextmanager
from typing import Iterator

import torch

import cellsearch.compile.population as compile_population
import cellsearch.compile.loop as loop
import cellsearch.compile.recurrence as recurrence
import cellsearch.training.optim_groups as optim_groups
import cellsearch.training.population as population
from cellsearch.nn.model import SeqModel
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import Trainer
from cellsearch.training.parallelism import use_threads

PHASES = {  # (owner, attribute) -> phase
    # (patched where they are called: Recurrence calls the passes, the backward pass the weight gradients)
    (recurrence, "forward_pass"): "recurrence forward",
    (recurrence, "backward_pass"): "recurrence backward",
    (loop, "_population_weight_grad"): "weight gradients",
    (loop, "_weight_grad"): "weight gradients",
    (compile_population, "_look_up_members"): "lookup",
    (SeqModel, "readout"): "output layer",
    (Trainer, "step_loss"): "loss",
    (population, "clip_together"): "optimizer",
    (population, "step_together"): "optimizer",
    (population, "finite_together"): "optimizer",
    (Trainer, "apply_gradients"): "optimizer",
    (Trainer, "weights_finite"): "optimizer",
}


@contextmanager
def timed_phases(totals: dict[str, float]) -> Iterator[None]:
    """Wrap every phase's function so its time adds to ``totals[phase]`` (outermost call only)."""
    originals = []
    active: set[str] = set()
    for (owner, name), phase in PHASES.items():
        fn = getattr(owner, name)

        def wrapper(*args, _fn=fn, _phase=phase, **kwargs):
            if _phase in active:  # (nested: counted by the outer call)
                return _fn(*args, **kwargs)
            active.add(_phase)
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                totals[_phase] = totals.get(_phase, 0.0) + time.perf_counter() - t0
                active.discard(_phase)

        originals.append((owner, name, fn))
        setattr(owner, name, functools.wraps(fn)(wrapper))
    try:
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


class _TimedStream:
    def __init__(self, stream, totals: dict[str, float]):
        self.stream, self.totals = stream, totals

    def __next__(self):
        t0 = time.perf_counter()
        try:
            return next(self.stream)
        finally:
            self.totals["data"] = self.totals.get("data", 0.0) + time.perf_counter() - t0


def measure(k: int, hidden: int, batch: int, steps: int, cell: str, threads: int | None) -> dict:
    use_threads(threads)
    base = TrainConfig(cell=cell, task="arith", hidden_size=hidden, batch_size=batch, steps=None, seconds=1e9)
    members = [population.Member(seed=s) for s in range(k)]
    pop = population.PopulationTrainer(base, members)
    solo = Trainer(members[0].apply(base))
    totals: dict[str, dict[str, float]] = {"population": {}, "solo": {}}
    for t in pop.trainers:
        t.stream = _TimedStream(t.stream, totals["population"])
    solo.stream = _TimedStream(solo.stream, totals["solo"])

    def pop_step() -> None:
        losses = pop.train_step(pop.trainers)
        optim_groups.finite_together([list(t.model.parameters()) for t in pop.trainers])
        assert len(losses) == k

    def solo_step() -> None:
        solo.train_step(next(solo.stream))
        solo.weights_finite()

    for _ in range(3):  # warm up
        pop_step(), solo_step()
    for side in totals.values():
        side.clear()
    wall = {"population": 0.0, "solo": 0.0}
    for _ in range(steps):
        for name, step in (("population", pop_step), ("solo", solo_step)):
            with timed_phases(totals[name]):
                t0 = time.perf_counter()
                step()
                wall[name] += time.perf_counter() - t0
    out = {"k": k, "hidden": hidden, "batch": batch, "cell": cell, "threads": torch.get_num_threads()}
    for name, phases in totals.items():
        ms = {p: round(1e3 * v / steps, 2) for p, v in phases.items()}
        ms["recurrence backward"] = round(ms.get("recurrence backward", 0.0) - ms.get("weight gradients", 0.0), 2)
        ms["step"] = round(1e3 * wall[name] / steps, 2)
        ms["other"] = round(ms["step"] - sum(v for p, v in ms.items() if p != "step"), 2)
        out[name] = ms
    out["speedup"] = round(k * out["solo"]["step"] / out["population"]["step"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(measure(args.k, args.hidden, args.batch, args.steps, args.cell, args.threads), indent=1))


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    main()
