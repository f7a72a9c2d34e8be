"""Attention over a memory: the math of the ``attend(q, M)`` op in the generated code.

A memory is a (B, N, H) matrix per sequence (an encoder's outputs, say), given to a cell with
a padding mask; ``attend`` scores every row against a query ``q`` (B, H), takes the softmax
over the real rows and returns their weighted sum (B, H). The score of a row m is

* ``dot``: q · m (Luong et al. 2015);
* ``general``: q · (W m) (Luong's "general"); the keys ``W m`` are computed once per sequence;
* ``additive``: v · tanh(Wq q + U m) (Bahdanau et al. 2015); the keys ``U m`` once per sequence.

The forward functions take any leading dimensions on the query ((T, B, H) when the compiler
hoists the node out of the time loop, (B, H) inside it); the backward functions are those of
one step, where the generated ``step_backward`` calls them. Padding rows get a score bias of
-inf (``memory_bias``), so their weight is exactly 0 and so is their gradient. The reference
interpreter writes the same math out on its own (``interpreter.py``), as the oracle of these.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from cellsearch.errors import CellsearchError


class Memory(NamedTuple):
    """A memory given to a cell: its rows and which of them are real (not padding)."""

    values: torch.Tensor  # (B, N, H)
    mask: torch.Tensor | None = None  # (B, N) bool, True for a real row; None: every row is real


def as_memory(m) -> Memory:
    """``m`` as a ``Memory``: a Memory as it is, a (values, mask) tuple unpacked, a tensor with
    every row real."""
    return m if isinstance(m, Memory) else Memory(*m) if isinstance(m, tuple) else Memory(m)


def check_memory(memory: Memory, name: str, batch: int, hidden: int) -> None:
    """Raise CellsearchError (one line) unless ``memory`` fits a batch of ``batch`` and hidden size ``hidden``."""
    v = memory.values
    if not isinstance(v, torch.Tensor) or v.dim() != 3 or v.shape[0] != batch or v.shape[2] != hidden:
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise CellsearchError(f"memory '{name}' must have shape (B={batch}, N, H={hidden}), got {shape}")
    if v.shape[1] == 0:
        raise CellsearchError(f"memory '{name}' has no rows (N = 0)")
    m = memory.mask
    if m is not None:
        if m.dtype != torch.bool or tuple(m.shape) != tuple(v.shape[:2]):
            raise CellsearchError(f"the mask of memory '{name}' must be a bool tensor of shape {tuple(v.shape[:2])}, "
                                  f"got {m.dtype} {tuple(m.shape)}")
        if not bool(m.any(-1).all()):
            raise CellsearchError(f"the mask of memory '{name}' leaves a sequence without any row")


def given_memories(graph, memory, batch: int, hidden: int) -> tuple[Memory, ...]:
    """The memories given to a cell of ``graph`` (one ``Memory``, a (values, mask) tuple or a
    tensor per memory leaf), checked; CellsearchError (one line) if they do not fit."""
    memories = tuple(as_memory(m) for m in (memory or ()))
    if len(memories) != len(graph.memory):
        raise CellsearchError(f"cell '{graph.name}' reads {len(graph.memory)} memory(s)"
                              f"{' (' + ', '.join(graph.memory) + ')' if graph.memory else ''}, got {len(memories)}")
    for name, m in zip(graph.memory, memories):
        check_memory(m, name, batch, hidden)
    return memories


def memory_bias(memory: Memory) -> torch.Tensor:
    """The score bias of every row (B, N): 0 for a real row, -inf for padding."""
    v = memory.values
    bias = v.new_zeros(v.shape[:2])
    return bias if memory.mask is None else bias.masked_fill(~memory.mask, float("-inf"))


# ---------------------------------------------------------------------- forward
def _weights(scores: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.softmax(scores + bias, -1)


def _context(w: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.matmul(w.unsqueeze(-2), values).squeeze(-2)  # (..., B, 1, N) @ (B, N, H) -> (..., B, H)


def attend_dot(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor):
    """Context and weights for dot and general scores (keys = values, or W m): (ctx (..., B, H), w (..., B, N))."""
    scores = torch.matmul(q.unsqueeze(-2), keys.transpose(-1, -2)).squeeze(-2)  # (..., B, N)
    w = _weights(scores, bias)
    return _context(w, values), w


def attend_additive(q: torch.Tensor, wq: torch.Tensor, keys: torch.Tensor, v: torch.Tensor, values: torch.Tensor,
                    bias: torch.Tensor):
    """Context, weights and the tanh layer e (..., B, N, H) of additive scores."""
    e = torch.tanh(keys + F.linear(q, wq).unsqueeze(-2))  # (..., B, N, H)
    w = _weights(torch.matmul(e, v), bias)
    return _context(w, values), w, e


# ---------------------------------------------------------------------- backward of one step
def _score_grad(d_ctx: torch.Tensor, values: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """d(scores) (B, N) from d(ctx) (B, H): through the weighted sum, then the softmax."""
    d_w = torch.matmul(values, d_ctx.unsqueeze(-1)).squeeze(-1)  # (B, N)
    return w * (d_w - (w * d_w).sum(-1, keepdim=True))


def _values_grad(d_ctx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return w.unsqueeze(-1) * d_ctx.unsqueeze(-2)  # (B, N, H)


def attend_dot_backward(d_ctx: torch.Tensor, q: torch.Tensor, memory: torch.Tensor, w: torch.Tensor):
    """(d_q, d_memory) of a dot attention (the memory is both the keys and the values)."""
    d_s = _score_grad(d_ctx, memory, w)
    d_q = torch.matmul(d_s.unsqueeze(-2), memory).squeeze(-2)
    return d_q, _values_grad(d_ctx, w) + d_s.unsqueeze(-1) * q.unsqueeze(-2)


def attend_general_backward(d_ctx: torch.Tensor, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                            w: torch.Tensor):
    """(d_q, d_keys, d_values) of a general attention."""
    d_s = _score_grad(d_ctx, values, w)
    d_q = torch.matmul(d_s.unsqueeze(-2), keys).squeeze(-2)
    return d_q, d_s.unsqueeze(-1) * q.unsqueeze(-2), _values_grad(d_ctx, w)


def attend_additive_backward(d_ctx: torch.Tensor, q: torch.Tensor, wq: torch.Tensor, v: torch.Tensor,
                             values: torch.Tensor, w: torch.Tensor, e: torch.Tensor):
    """(d_q, d_wq, d_keys, d_v, d_values) of an additive attention."""
    d_s = _score_grad(d_ctx, values, w)
    d_e = d_s.unsqueeze(-1) * (1 - e * e) * v  # (B, N, H), the gradient of the keys as well
    d_qp = d_e.sum(-2)  # (B, H)
    d_v = (d_s.unsqueeze(-1) * e).reshape(-1, e.shape[-1]).sum(0)
    return torch.mm(d_qp, wq), torch.mm(d_qp.t(), q), d_e, d_v, _values_grad(d_ctx, w)


# What the generated code calls (``codegen.py`` puts these in its namespace).
ATTENTION_HELPERS = {f.__name__: f for f in (attend_dot, attend_additive, attend_dot_backward,
                                             attend_general_backward, attend_additive_backward)}

__all__ = ["ATTENTION_HELPERS", "Memory", "as_memory", "attend_additive", "attend_additive_backward", "attend_dot",
           "attend_dot_backward", "attend_general_backward", "check_memory", "given_memories", "memory_bias"]
