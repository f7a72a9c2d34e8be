"""One time loop for K members of one cell: a population's layer as a single batched pass.

K compiled cells of the same graph and sizes (each with its own parameters) run their
prologues one by one (once per sequence, not per step), then ONE time loop over stacked
tensors with a leading member dimension: sequences are (K, T, B, features), states
(K, B, H), fused weights (K, out, in). The generated step code indexes features from the end
and the matmul helpers switch to batched matmuls for 3-d weights (``matmuls.py``), so the same
generated ``step``/``step_backward`` and the same ``recurrence.Recurrence`` run both; only the weight
gradients take a batched path (``loop._population_weight_grad``). At search sizes a step is
bound by per-kernel overhead, so K members cost little more than one.

Members never mix: every op is per member (batched matmuls, elementwise work), so each
member's outputs and gradients are those of its own solo run up to floating-point rounding,
and a member whose values are NaN leaves the others alone.
"""

from __future__ import annotations

from typing import Sequence

import torch

from cellsearch.compile.cell import CompiledCell, Prepared
from cellsearch.compile.recurrence import recur
from cellsearch.compile.tokens import look_up
from cellsearch.errors import CellsearchError


def _stack_const(values: Sequence[torch.Tensor], kind: str) -> torch.Tensor:
    """Members' constants stacked along a new leading dimension that broadcasts against (K, B, ·):
    weights (out, in) → (K, out, in); a bias-like (n,) → (K, 1, n); a scalar → (K, 1, 1)."""
    if kind == "weight":
        return torch.stack(list(values))
    return torch.stack([v.reshape((1,) * (2 - v.dim()) + tuple(v.shape)) if v.dim() < 2 else v for v in values])


# On CPU a batched loop pays off while a step is bound by per-kernel overhead; at larger sizes the
# K-fold whole-sequence buffers leave the caches and one batched loop became slower than K loops.
# Measured with `cellsearch bench --population 8` (K = 8, batch 32, Arithmetic, 2 threads): hidden 32
# 2.96x, 64 2.07x, 128 1.51x, 256 0.95x the throughput of solo trainings; so batch up to 128.
CPU_BATCH_MAX_HIDDEN = 128


def can_batch(cells: Sequence[torch.nn.Module]) -> bool:
    """Whether ``population_forward`` runs these cells as one loop (else: one by one, each as it would
    alone): compiled cells of one program with recurrent states, and on CPU a hidden size up to
    ``CPU_BATCH_MAX_HIDDEN``."""
    compiled = [c for c in cells if isinstance(c, CompiledCell)]
    if not cells or len(compiled) != len(cells):
        return False
    first = compiled[0]
    same = all(c.program.source == first.program.source and c.mode == first.mode for c in compiled)
    if not same or not first.program.schedule.recurrent_states or first.graph.memory or first.graph.memory_states:
        return False  # (attention is not batched over members: its helpers are written for one cell)
    on_cpu = all(p.device.type == "cpu" for p in first.params.parameters())
    return not (on_cpu and first.hidden_size > CPU_BATCH_MAX_HIDDEN)


def _look_up_members(prepared: Sequence[Prepared]) -> tuple:
    """The stacked per-step tensors (K, T, B, F) of members whose inputs are table rows (see
    compile/tokens.py): one lookup per tensor in the members' stacked tables, written straight
    into the stacked result."""
    if not prepared[0].ext:  # (a loop that reads nothing from the inputs)
        return ()
    K = len(prepared)
    V = prepared[0].ext[0].shape[0]
    tokens = torch.stack([p.tokens for p in prepared if p.tokens is not None])  # (K, T, B); all have tokens
    if tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) < V:
        # (checked here: in the stacked tables a bad token would read another member's row)
        raise CellsearchError(f"token ids must lie in [0, {V}) (the table's rows), got "
                              f"{int(tokens.min())}..{int(tokens.max())}")
    index = tokens + torch.arange(K, device=tokens.device).view(K, 1, 1) * V  # member k's rows: k·V … k·V + V-1
    return tuple(look_up(torch.cat(rows), index) for rows in zip(*(p.ext for p in prepared)))


def population_forward(cells: Sequence[torch.nn.Module], xs: Sequence, states: Sequence):
    """``[cell(x, state) for cell, x, state in zip(cells, xs, states)]``, with the time loops of
    all members run as one batched loop when ``can_batch(cells)``; inputs must then share their
    length and batch size."""
    if len(cells) != len(xs) or len(cells) != len(states):
        raise CellsearchError(f"a population of {len(cells)} cells needs as many inputs and states, "
                              f"got {len(xs)} and {len(states)}")
    if not can_batch(cells):
        return [cell(x, state) for cell, x, state in zip(cells, xs, states)]
    compiled = [c for c in cells if isinstance(c, CompiledCell)]  # all of them (can_batch)
    prepared = [cell.prepare(x, state) for cell, x, state in zip(compiled, xs, states)]
    T = prepared[0].T
    if any(p.T != T for p in prepared):
        raise CellsearchError(f"the members' sequences differ in length ({sorted({p.T for p in prepared})}); "
                              "pad them to one length")
    program = compiled[0].program
    if all(p.tokens is not None for p in prepared):
        ext = _look_up_members(prepared)
    else:
        prepared = [p.looked_up() for p in prepared]
        ext = tuple(torch.stack(values) for values in zip(*(p.ext for p in prepared)))
    consts = tuple(_stack_const(values, kind)
                   for values, kind in zip(zip(*(p.consts for p in prepared)), program.const_kinds))
    init = tuple(torch.stack(values) for values in zip(*(p.rec_init for p in prepared)))
    out, finals = recur(program, compiled[0].mode, T, ext, consts, init)
    outs = out.unbind(0) if out is not None else [None] * len(cells)
    finals_of = list(zip(*(f.unbind(0) for f in finals))) if finals else [()] * len(cells)
    return [cell.finish(p, o, f) for cell, p, o, f in zip(compiled, prepared, outs, finals_of)]


__all__ = ["CPU_BATCH_MAX_HIDDEN", "can_batch", "population_forward"]
