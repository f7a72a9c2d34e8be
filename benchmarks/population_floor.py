"""The arithmetic floor of a population's training step: its kernels alone, no Python, no copies.

A population of K LSTMs (T steps, batch B, hidden H, Arithmetic's input rows looked up, see
cellsearch/compile/tokens.py) must at least run, per training step: the recurrent matmuls
forward (K × T batched ``baddbmm``) and backward (K × T ``bmm``), the recurrent weight gradient
(one ``bmm`` over the sequence), the gates' activations (T × sigmoid over 3H, 2T × tanh over H),
and each member's input projections unless its inputs are table rows. This script times exactly
those kernels on random tensors, in one process, and prints them next to the same kernels for one
member alone, so a measured population step can be read against what cannot be batched away:

    python benchmarks/population_floor.py --threads 1
    python benchmarks/population_floor.py --threads 2 --hidden 64 --k 8
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import torch


def _ms(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1e3


def floor(k: int, T: int, B: int, H: int, repeat: int = 20) -> dict:
    """Milliseconds per training step of each kernel family, for the population (``k`` members)
    and for one member alone."""
    W = torch.randn(k, 4 * H, H)
    h = torch.randn(k, B, H)
    base = torch.randn(k, T, B, 4 * H)
    d = torch.randn(k, B, 4 * H)
    d_seq = torch.randn(k, 4 * H, T * B)
    h_seq = torch.randn(k, T * B, H)
    x = torch.randn(k, T * B, H)
    gate = torch.randn(k, T, B, H)

    def recurrent_forward(members):
        for t in range(T):
            torch.baddbmm(base[:members, t], h[:members], W[:members].transpose(1, 2))

    def recurrent_backward(members):
        for t in range(T):
            torch.bmm(d[:members], W[:members])

    def activations(members):
        for t in range(T):
            torch.sigmoid(base[:members, t, :, :3 * H])
            torch.tanh(gate[:members, t])
            torch.tanh(gate[:members, t])

    def projections(members):  # forward, input gradient and weight gradient of x @ W_ih^T
        for m in range(members):
            torch.mm(x[m], W[m].t())
            torch.mm(d_seq[m].t(), W[m])
            torch.mm(d_seq[m], x[m])

    parts = {
        "recurrent_forward": recurrent_forward,
        "recurrent_backward": recurrent_backward,
        "weight_gradient": lambda members: torch.bmm(d_seq[:members], h_seq[:members]),
        "activations": activations,
        "input_projections": projections,
    }
    out = {"k": k, "T": T, "batch": B, "hidden": H, "threads": torch.get_num_threads()}
    for name, fn in parts.items():
        out[name] = {"population_ms": round(_ms(lambda: fn(k), repeat), 2),
                     "one_member_ms": round(_ms(lambda: fn(1), repeat), 2)}
    looked_up = [n for n in parts if n != "input_projections"]
    out["floor_ms"] = {"population": round(sum(out[n]["population_ms"] for n in looked_up), 1),
                       "one_member": round(sum(out[n]["one_member_ms"] for n in looked_up), 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=60, help="Arithmetic's padded batches: 50-62 steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(floor(args.k, args.seq_len, args.batch, args.hidden, args.repeat), indent=1))


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    main()
