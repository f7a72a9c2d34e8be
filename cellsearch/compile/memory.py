"""The Neural Turing Machine's memory ops in the generated code: address, read and write.

A memory state is a (B, N, H) matrix a cell carries from step to step (Graves et al. 2014):

* ``address(k, M, beta)``: content addressing, weights (B, N) = softmax_n(b · cos(k, M_n)) with
  the key strength b = softplus(mean_h beta) (one number per sequence; ``EPS`` keeps the cosine
  finite for a zero row or key);
* ``read(w, M)``: Σ_n w_n M_n, a (B, H) vector;
* ``write(M, w, erase, add)``: M ⊙ (1 − w ⊗ erase) + w ⊗ add.

The forward functions take any leading dimensions; the backward functions are those of one step
(the generated ``step_backward`` calls them), by their formulas. The
reference interpreter writes the ops out on its own (``interpreter.py``). ``initial_memory`` is
where a memory state starts: rows that differ (small sinusoids over the row index), so that
content addressing can tell them apart; all-equal rows would stay equal under any write. A memory
state written by an op that ``starts_empty`` (``stack``) starts at 0 instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cellsearch.ops.memory import DEFAULT_MEMORY_ROWS, EPS, INITIAL_SCALE
from cellsearch.ops.registry import OPS


def initial_memory(batch: int, rows: int, hidden: int, like: torch.Tensor) -> torch.Tensor:
    """The start value of a memory state (B, N, H): row n is 0.1 · sin/cos(n · frequency_h)."""
    n = torch.arange(rows, dtype=like.dtype, device=like.device).unsqueeze(1)  # (N, 1)
    h = torch.arange(hidden, dtype=like.dtype, device=like.device)
    freq = torch.exp(-(h - h % 2) * (math.log(1000.0) / max(hidden, 1)))  # (H,)
    angle = n * freq + (h % 2) * (math.pi / 2)  # cos on odd features
    return (INITIAL_SCALE * torch.sin(angle)).expand(batch, rows, hidden).clone()


def starts_empty(graph, state: str) -> bool:
    """Whether memory state ``state`` starts at 0: the op that writes it says so (a stack starts empty)."""
    return bool(OPS[graph.node_map[state].op].starts_empty)


def start_states(graph, batch: int, hidden: int, rows: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Where a cell's states start when none are given: zeros (B, H), and ``initial_memory`` for
    its memory states (zeros (B, N, H) for one whose op ``starts_empty``: a stack)."""
    def start(s: str) -> torch.Tensor:
        if s not in graph.memory_states:
            return like.new_zeros(batch, hidden)
        if starts_empty(graph, s):
            return like.new_zeros(batch, rows, hidden)
        return initial_memory(batch, rows, hidden, like)

    return tuple(start(s) for s in graph.states)


def address(k: torch.Tensor, memory: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Content weights (..., B, N) over the rows of ``memory`` (B, N, H) for key ``k`` (..., B, H)."""
    dots = torch.matmul(memory, k.unsqueeze(-1)).squeeze(-1)  # (..., B, N)
    norms = memory.norm(dim=-1) * k.norm(dim=-1, keepdim=True) + EPS
    strength = F.softplus(beta.mean(-1, keepdim=True))  # (..., B, 1)
    return torch.softmax(strength * dots / norms, -1)


def read(w: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """What a read with weights ``w`` (…, B, N) gets from ``memory`` (…, B, N, H): the weighted sum of rows."""
    return torch.matmul(w.unsqueeze(-2), memory).squeeze(-2)  # (..., B, H)


def write(memory: torch.Tensor, w: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """``memory`` after a write with weights ``w``: each row erased by ``w · erase``, then ``w · add`` added."""
    wt = w.unsqueeze(-1)  # (B, N, 1)
    return memory * (1 - wt * erase.unsqueeze(-2)) + wt * add.unsqueeze(-2)


def address_backward(d_w: torch.Tensor, k: torch.Tensor, memory: torch.Tensor, beta: torch.Tensor):
    """(d_k, d_memory, d_beta) of ``address`` at one step (k, beta (B, H); memory (B, N, H))."""
    dots = torch.matmul(memory, k.unsqueeze(-1)).squeeze(-1)  # (B, N)
    row_norms = memory.norm(dim=-1)  # (B, N)
    key_norm = k.norm(dim=-1, keepdim=True)  # (B, 1)
    norms = row_norms * key_norm + EPS
    cos = dots / norms
    mean_beta = beta.mean(-1, keepdim=True)  # (B, 1)
    strength = F.softplus(mean_beta)
    w = torch.softmax(strength * cos, -1)
    d_z = w * (d_w - (w * d_w).sum(-1, keepdim=True))  # through the softmax
    d_beta = ((d_z * cos).sum(-1, keepdim=True) * torch.sigmoid(mean_beta) / beta.shape[-1]).expand_as(beta)
    d_cos = d_z * strength
    d_dots = d_cos / norms
    d_norms = -d_cos * cos / norms  # d(dots / norms) / d norms = -dots / norms² = -cos / norms
    # the gradient of a norm is x / |x| (0 at x = 0, as torch's norm gives)
    unit_rows = memory / torch.where(row_norms > 0, row_norms, torch.ones_like(row_norms)).unsqueeze(-1)
    unit_key = k / torch.where(key_norm > 0, key_norm, torch.ones_like(key_norm))
    d_k = torch.matmul(d_dots.unsqueeze(-2), memory).squeeze(-2) + (d_norms * row_norms).sum(-1, keepdim=True) * unit_key
    d_memory = d_dots.unsqueeze(-1) * k.unsqueeze(-2) + (d_norms * key_norm).unsqueeze(-1) * unit_rows
    return d_k, d_memory, d_beta


def read_backward(d_r: torch.Tensor, w: torch.Tensor, memory: torch.Tensor):
    """(d_w, d_memory) of ``read``."""
    return torch.matmul(memory, d_r.unsqueeze(-1)).squeeze(-1), w.unsqueeze(-1) * d_r.unsqueeze(-2)


def write_backward(d_new: torch.Tensor, memory: torch.Tensor, w: torch.Tensor, erase: torch.Tensor,
                   add: torch.Tensor):
    """(d_memory, d_w, d_erase, d_add) of ``write``."""
    wt = w.unsqueeze(-1)
    d_memory = d_new * (1 - wt * erase.unsqueeze(-2))
    d_w = (d_new * (add.unsqueeze(-2) - memory * erase.unsqueeze(-2))).sum(-1)
    d_erase = -(d_new * memory * wt).sum(-2)
    d_add = (d_new * wt).sum(-2)
    return d_memory, d_w, d_erase, d_add


MEMORY_HELPERS = {f.__name__: f for f in (address, read, write, address_backward, read_backward, write_backward)}

__all__ = ["DEFAULT_MEMORY_ROWS", "EPS", "INITIAL_SCALE", "MEMORY_HELPERS", "address", "address_backward",
           "initial_memory", "read", "read_backward", "start_states", "starts_empty", "write", "write_backward"]
