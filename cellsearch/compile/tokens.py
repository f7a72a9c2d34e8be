"""Cell inputs given as rows of a table (an embedding's output): x = table[tokens].

A language model's first layer reads ``embedding(tokens)``: every input row is one of the V rows
of the embedding table. Everything a compiled cell's prologue computes from its input (the input
projections, and whatever else does not depend on a previous state) is a function of that row
alone, so the prologue can run once per table row, V rows, and the loop's per-step tensors are
then looked up by token (``CompiledCell.prepare``; a population looks up all its members at once,
``compile/population.py``). With a small vocabulary (Arithmetic, XML: tens of symbols) against
T × B tokens per batch (thousands) this replaces the whole-sequence input matmuls, forward and
backward, by lookups; their gradients are summed per table row by the lookup's backward.

``TokenInputs`` is handed to ``CellRNN``/``CompiledCell`` in place of the input tensor; any
module that cannot use it asks for the tensor (``materialize``), which is exactly
``embedding(tokens)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class TokenInputs(NamedTuple):
    """The inputs (T, B, E) as ``table[tokens]``: ``table`` (V, E), ``tokens`` (T, B) int64."""

    table: torch.Tensor
    tokens: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        """The shape of the materialized inputs, (T, B, E)."""
        return torch.Size((*self.tokens.shape, self.table.shape[-1]))

    def materialize(self) -> torch.Tensor:
        """The inputs as a tensor (T, B, E)."""
        return F.embedding(self.tokens, self.table)

    def pad_to(self, length: int, pad: int = 0) -> "TokenInputs":
        """The same inputs, the sequence extended to ``length`` steps with token ``pad``."""
        T = self.tokens.shape[0]
        if T == length:
            return self
        padding = self.tokens.new_full((length - T, *self.tokens.shape[1:]), pad)
        return TokenInputs(self.table, torch.cat((self.tokens, padding)))


def as_tensor(x):
    """``x`` itself, or a ``TokenInputs``' tensor."""
    return x.materialize() if isinstance(x, TokenInputs) else x


def reference(x) -> torch.Tensor:
    """A tensor of the inputs' dtype and device (where states start): ``x``, or a ``TokenInputs``' table."""
    return x.table if isinstance(x, TokenInputs) else x


def look_up(rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """A per-step tensor from its per-row values: rows (V, 1, F) (the prologue run over the table as
    a sequence of V steps of batch 1), tokens (T, B) → (T, B, F)."""
    return F.embedding(tokens, rows.reshape(rows.shape[0], -1))


__all__ = ["TokenInputs", "as_tensor", "look_up", "reference"]
