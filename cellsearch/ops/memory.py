"""The Neural Turing Machine's memory ops: address, read and write, on a memory state.

A memory state is a (B, N, H) matrix a cell carries from step to step (Graves et al. 2014);
``address(k, M, beta)`` gives weights over its rows (B, N), ``read(w, M)`` a vector and
``write(M, w, erase, add)`` the next memory. The generated code calls the helpers of
``compile/memory.py`` (``<op>`` and ``<op>_backward``, which returns the gradients of the
arguments in order); the interpreter writes the math out plainly as their oracle; the exported
module carries its own TorchScript-clean helpers (``PRELUDE``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cellsearch.ops.base import HelperOp, Prelude

EPS = 1e-6  # in the cosine's denominator
DEFAULT_MEMORY_ROWS = 16  # rows N of a memory state unless a layer is given another number
INITIAL_SCALE = 0.1  # amplitude of the initial memory pattern

PRELUDE = Prelude({"address", "read", "write", "initial_memory", "initial_weights"}, f'''def initial_weights(batch: int, rows: int, like: Tensor) -> Tensor:
    """Where a weights state starts: all weight on row 0, (B, N)."""
    w = torch.zeros(batch, rows, dtype=like.dtype, device=like.device)
    w[:, 0] = 1.0
    return w


def initial_memory(batch: int, rows: int, hidden: int, like: Tensor) -> Tensor:
    """Where a memory state starts: row n is {INITIAL_SCALE} * sin/cos(n * frequency_h), rows distinct."""
    n = torch.arange(rows, dtype=like.dtype, device=like.device).unsqueeze(1)
    h = torch.arange(hidden, dtype=like.dtype, device=like.device)
    freq = torch.exp(-(h - h % 2) * (math.log(1000.0) / max(hidden, 1)))
    angle = n * freq + (h % 2) * (math.pi / 2)
    return ({INITIAL_SCALE!r} * torch.sin(angle)).expand(batch, rows, hidden).clone()


def address(k: Tensor, memory: Tensor, beta: Tensor) -> Tensor:
    """Content addressing: softmax_n(softplus(mean(beta)) * cos(k, M_n)), weights (B, N)."""
    dots = torch.matmul(memory, k.unsqueeze(-1)).squeeze(-1)
    norms = torch.linalg.vector_norm(memory, 2, [-1]) * torch.linalg.vector_norm(k, 2, [-1], True) + {EPS!r}
    return torch.softmax(F.softplus(beta.mean(-1, keepdim=True)) * dots / norms, -1)


def read(w: Tensor, memory: Tensor) -> Tensor:
    """The w-weighted sum of the memory rows (B, H)."""
    return torch.matmul(w.unsqueeze(-2), memory).squeeze(-2)


def write(memory: Tensor, w: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """M * (1 - w erase^T) + w add^T."""
    wt = w.unsqueeze(-1)
    return memory * (1 - wt * erase.unsqueeze(-2)) + wt * add.unsqueeze(-2)''', lambda g: bool(g.memory_states))


class MemoryOp(HelperOp):
    """A memory op: the generated code calls ``<name>(args)`` and ``<name>_backward(d, args)``."""

    export_prelude = PRELUDE

    def __init__(self, name: str, arity: int, signature: tuple, doc: str, interpret):
        super().__init__(name, "memory", arity, arity, doc=doc, signature=signature)
        self._interpret = interpret

    def interpret(self, node, args, params, trace):
        out = self._interpret(*args)
        if trace is not None and self.signature[1] == "weights":
            trace.setdefault(node.name, []).append(out)
        return out


def _address(k, memory, beta):  # (the helpers work on memory states: plain matrices, no mask)
    cos = torch.einsum("bnh,bh->bn", memory, k) / (memory.norm(dim=2) * k.norm(dim=1).unsqueeze(1) + EPS)
    return torch.softmax(F.softplus(beta.mean(1)).unsqueeze(1) * cos, 1)


def _write(memory, w, erase, add):
    return memory * (1 - torch.einsum("bn,bh->bnh", w, erase)) + torch.einsum("bn,bh->bnh", w, add)


ADDRESS = MemoryOp("address", 3, (("vector", "matrix", "vector"), "weights"),
                   "address(k, M, beta): content addressing of the Neural Turing "
                   "Machine, weights softmax_n(b · cos(k, M_n)) over the rows of M with the key strength "
                   "b = softplus(mean(beta))", _address)
READ = MemoryOp("read", 2, (("weights", "matrix"), "vector"),
                "read(w, M): the w-weighted sum of the rows of M (a vector)",
                lambda w, memory: torch.einsum("bn,bnh->bh", w, memory))
WRITE = MemoryOp("write", 4, (("matrix", "weights", "vector", "vector"), "matrix"),
                 "write(M, w, erase, add): M ⊙ (1 − w ⊗ erase) + w ⊗ add, the "
                 "NTM's write (erase and add vectors in [0, 1] and any, e.g. sigmoid(...) and tanh(...))", _write)

OPS = (ADDRESS, READ, WRITE)
