"""Two parts of a training step, the way they were against the way they are, timed in one process.

- ``batch``: a batch of 32 Arithmetic examples, drawn with ``randint``/``choice`` and encoded from
  nested lists (the earlier code, kept as the tests' reference) against ``_randbelow`` and one
  byte string (``tasks/arithmetic.py``, ``tasks/synthetic.py``); both give the same tensors.
- ``gates``: the backward of an LSTM's gate activations in one step, written into column slices of
  the whole-sequence buffer in place (the earlier generated code) against fresh tensors and one
  ``cat`` into the buffer (``compile/emit_backward.py``), for one member and for 8.

    python benchmarks/step_micro.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_tasks import _reference_arithmetic_example  # noqa: E402

from cellsearch.tasks import make_task  # noqa: E402

aten = torch.ops.aten


def _median_us(fns: dict[str, Callable[[], object]], rounds: int = 30, calls: int = 20) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls * 1e6)
    return {name: round(statistics.median(v), 1) for name, v in times.items()}


def batches() -> dict[str, float]:
    task = make_task("arith", seed=0)
    v = task.vocab
    rngs = {"before": random.Random(0), "now": random.Random(0)}

    def before():
        examples = [_reference_arithmetic_example(task, rngs["before"]) for _ in range(32)]
        seqs = [[v.bos, *v.encode(p), *v.encode(a), v.eos] for p, a in examples]
        return task._next_tokens(seqs, [len(p) for p, _ in examples])

    def now():
        return task.encode([task.make_example(rngs["now"]) for _ in range(32)])

    return _median_us({"before": before, "now": now})


def gates(k: int, B: int = 32, H: int = 64, T: int = 60) -> dict[str, float]:
    lead = (k,) if k > 1 else ()
    i, f, o, g, d_g = (torch.rand(*lead, B, H) for _ in range(5))
    sig = torch.rand(*lead, B, 3 * H)
    d_lin = torch.zeros(*lead, T, B, 4 * H)
    step = d_lin[:, 5] if k > 1 else d_lin[5]

    def before():
        gates = step[..., 0:3 * H]
        torch.cat((i, f, o), -1, out=gates)
        aten.sigmoid_backward(gates, sig, grad_input=gates)
        aten.tanh_backward(d_g, g, grad_input=step[..., 3 * H:])

    def now():
        gates = aten.sigmoid_backward(torch.cat((i, f, o), -1), sig)
        torch.cat((gates, aten.tanh_backward(d_g, g)), -1, out=step)

    return _median_us({"before": before, "now": now}, calls=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps({"threads": torch.get_num_threads(), "arith batch of 32 (us)": batches(),
                      "LSTM gate backward, one step, alone (us)": gates(1),
                      "LSTM gate backward, one step, 8 members (us)": gates(8)}, indent=1))


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    main()
