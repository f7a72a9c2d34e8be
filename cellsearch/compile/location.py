"""The Neural Turing Machine's location addressing in the generated code: interpolate, shift, sharpen.

Graves, Wayne & Danihelka (2014, section 3.3) turn a head's content weights w_c (B, N) into its
weights at this step in three moves, each an op over weights (``cellsearch/ops/location.py``):

* ``interpolate(w_c, w_prev, g)``: g · w_c + (1 − g) · w_prev with the gate g = sigmoid(mean_h g)
  (one number per sequence, as ``address``'s key strength is softplus(mean_h beta));
* ``shift(w, s)``: the circular convolution of w with a distribution over the shifts −1, 0, +1,
  softmax(s_0, s_1, s_2) (the first three features of s, so the hidden size must be at least 3):
  out_i = p(−1) w_{i+1} + p(0) w_i + p(+1) w_{i−1}, a shift by +1 moves weight to the next row;
* ``sharpen(w, gamma)``: u / Σ_n u_n with u = (w + ``EPS``)^γ and γ = 1 + softplus(mean_h gamma) ≥ 1
  (``EPS`` keeps the gradient of 0^γ finite).

The forward functions take any leading dimensions; the backward functions are those of one step
(the generated ``step_backward`` calls them) and return the gradients of the arguments in order.
The reference interpreter writes the same math with autograd (``ops/location.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cellsearch.ops.location import EPS, SHIFTS


def _gate(g: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(g.mean(-1, keepdim=True))  # (..., B, 1)


def interpolate(w_c: torch.Tensor, w_prev: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g · w_c + (1 − g) · w_prev with g = sigmoid(mean(g)), (..., B, N)."""
    gate = _gate(g)
    return gate * w_c + (1 - gate) * w_prev


def interpolate_backward(d: torch.Tensor, w_c: torch.Tensor, w_prev: torch.Tensor, g: torch.Tensor):
    """(d_w_c, d_w_prev, d_g) of ``interpolate``."""
    gate = _gate(g)
    d_gate = (d * (w_c - w_prev)).sum(-1, keepdim=True)  # (B, 1)
    d_g = (d_gate * gate * (1 - gate) / g.shape[-1]).expand_as(g)
    return d * gate, d * (1 - gate), d_g


def _rolled(w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """w rolled by each shift of ``SHIFTS``: w_{i−k} at row i for shift k."""
    return tuple(torch.roll(w, k, -1) for k in SHIFTS)


def shift(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The circular convolution of w (..., B, N) with softmax(s[..., :3]) over the shifts −1, 0, +1."""
    p = torch.softmax(s[..., :len(SHIFTS)], -1)  # (..., B, 3)
    out = torch.zeros_like(w)
    for k, rolled in enumerate(_rolled(w)):
        out = out + p[..., k:k + 1] * rolled
    return out


def shift_backward(d: torch.Tensor, w: torch.Tensor, s: torch.Tensor):
    """(d_w, d_s) of ``shift``."""
    p = torch.softmax(s[..., :len(SHIFTS)], -1)
    d_w = torch.zeros_like(w)
    d_p = []
    for k, (shift_by, rolled) in enumerate(zip(SHIFTS, _rolled(w))):
        d_w = d_w + p[..., k:k + 1] * torch.roll(d, -shift_by, -1)  # (roll's adjoint rolls back)
        d_p.append((d * rolled).sum(-1, keepdim=True))
    dp = torch.cat(d_p, -1)  # (B, 3)
    d_logits = p * (dp - (p * dp).sum(-1, keepdim=True))
    return d_w, F.pad(d_logits, (0, s.shape[-1] - len(SHIFTS)))


def _sharpened(w: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m = gamma.mean(-1, keepdim=True)
    exponent = 1 + F.softplus(m)  # (..., B, 1)
    u = (w + EPS) ** exponent
    return u, exponent, m


def sharpen(w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """(w + EPS)^γ normalised over the rows, γ = 1 + softplus(mean(gamma)), (..., B, N)."""
    u, _, _ = _sharpened(w, gamma)
    return u / u.sum(-1, keepdim=True)


def sharpen_backward(d: torch.Tensor, w: torch.Tensor, gamma: torch.Tensor):
    """(d_w, d_gamma) of ``sharpen``."""
    u, exponent, m = _sharpened(w, gamma)
    z = u.sum(-1, keepdim=True)
    out = u / z
    d_u = (d - (d * out).sum(-1, keepdim=True)) / z
    d_w = d_u * exponent * u / (w + EPS)
    d_exponent = (d_u * u * torch.log(w + EPS)).sum(-1, keepdim=True)
    d_gamma = (d_exponent * torch.sigmoid(m) / gamma.shape[-1]).expand_as(gamma)
    return d_w, d_gamma


LOCATION_HELPERS = {f.__name__: f for f in (interpolate, shift, sharpen, interpolate_backward, shift_backward,
                                            sharpen_backward)}

__all__ = ["LOCATION_HELPERS", "interpolate", "interpolate_backward", "sharpen", "sharpen_backward", "shift",
           "shift_backward"]
