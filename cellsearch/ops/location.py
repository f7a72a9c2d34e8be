"""The Neural Turing Machine's location-addressing ops: interpolate, shift and sharpen, on weights.

Graves, Wayne & Danihelka (2014, section 3.3): a head's content weights (``address``) are
interpolated with its weights at the last step (a weights state, ``weight_states``), shifted by a
learned distribution over −1, 0, +1 and sharpened. Each op reads weights over memory rows (B, N)
and vectors (B, H) and gives weights; the vector arguments are reduced to what the op needs the
way ``address`` reduces its key strength (softplus(mean_h beta)):

* ``interpolate(w_c, w_prev, g)``: gate = sigmoid(mean_h g); gate · w_c + (1 − gate) · w_prev;
* ``shift(w, s)``: circular convolution with softmax(s_0, s_1, s_2), the probabilities of the
  shifts −1, 0, +1 (the first three features of s: the hidden size must be at least 3);
* ``sharpen(w, gamma)``: (w + ε)^γ / Σ_n (w + ε)^γ with γ = 1 + softplus(mean_h gamma) ≥ 1.

The generated code calls the helpers of ``compile/location.py``; the interpreter writes the math
out plainly (with autograd) as their oracle; the exported module carries its own
TorchScript-clean helpers (``PRELUDE``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cellsearch.ops.base import Prelude
from cellsearch.ops.memory import MemoryOp

EPS = 1e-6  # added to the weights before sharpening, so 0^γ has a finite gradient
SHIFTS = (-1, 0, 1)  # the shifts a shift() distribution ranges over, in the order of s's features
LOCATION_OPS = ("interpolate", "shift", "sharpen")

PRELUDE = Prelude(set(LOCATION_OPS), f'''def interpolate(w_c: Tensor, w_prev: Tensor, g: Tensor) -> Tensor:
    """gate * w_c + (1 - gate) * w_prev with gate = sigmoid(mean(g)), weights (B, N)."""
    gate = torch.sigmoid(g.mean(-1, keepdim=True))
    return gate * w_c + (1 - gate) * w_prev


def shift(w: Tensor, s: Tensor) -> Tensor:
    """w circularly convolved with softmax(s[:, :3]), the probabilities of the shifts -1, 0, +1."""
    p = torch.softmax(s[:, :3], -1)
    return p[:, 0:1] * torch.roll(w, -1, -1) + p[:, 1:2] * w + p[:, 2:3] * torch.roll(w, 1, -1)


def sharpen(w: Tensor, gamma: Tensor) -> Tensor:
    """(w + eps)^g / sum_n (w + eps)^g with g = 1 + softplus(mean(gamma))."""
    u = torch.pow(w + {EPS!r}, 1 + F.softplus(gamma.mean(-1, keepdim=True)))
    return u / u.sum(-1, keepdim=True)''', lambda g: any(n.op in LOCATION_OPS for n in g.nodes if n.name in g.live))


class LocationOp(MemoryOp):
    """A location-addressing op: a memory op (generated calls ``<name>`` / ``<name>_backward``)
    with its own export helpers; ``min_hidden``: the hidden size it needs."""

    export_prelude = PRELUDE

    def __init__(self, name: str, arity: int, signature: tuple, doc: str, interpret, min_hidden: int = 1):
        super().__init__(name, arity, signature, doc, interpret)
        self.min_hidden = min_hidden


def _interpolate(w_c, w_prev, g):
    gate = torch.sigmoid(g.mean(1)).unsqueeze(1)  # (B, 1)
    return gate * w_c + (1 - gate) * w_prev


def _shift(w, s):
    p = torch.softmax(s[:, :len(SHIFTS)], 1)  # (B, 3)
    n = w.shape[1]
    rows = torch.arange(n, device=w.device)
    # out[b, i] = sum_k p[b, k] * w[b, (i - shift_k) mod N]
    taken = torch.stack([w[:, (rows - k) % n] for k in SHIFTS], 2)  # (B, N, 3)
    return torch.einsum("bnk,bk->bn", taken, p)


def _sharpen(w, gamma):
    exponent = 1 + F.softplus(gamma.mean(1)).unsqueeze(1)
    u = torch.exp(exponent * torch.log(w + EPS))
    return u / u.sum(1, keepdim=True)


INTERPOLATE = LocationOp("interpolate", 3, (("weights", "weights", "vector"), "weights"),
                         "interpolate(w_c, w_prev, g): the NTM's interpolation gate, g·w_c + (1 − g)·w_prev with "
                         "g = sigmoid(mean(g)) (one number per sequence)", _interpolate)
SHIFT = LocationOp("shift", 2, (("weights", "vector"), "weights"),
                   "shift(w, s): the NTM's rotation, w circularly convolved with softmax(s_0, s_1, s_2), the "
                   "probabilities of the shifts −1, 0, +1 (the first three features of s; hidden size ≥ 3)", _shift,
                   min_hidden=len(SHIFTS))
SHARPEN = LocationOp("sharpen", 2, (("weights", "vector"), "weights"),
                     "sharpen(w, gamma): the NTM's sharpening, (w + ε)^γ normalised over the rows with "
                     "γ = 1 + softplus(mean(gamma)) ≥ 1", _sharpen)

OPS = (INTERPOLATE, SHIFT, SHARPEN)
