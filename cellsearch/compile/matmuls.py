"""The matmuls inside the time loop, and the weight packing that makes them fast on CPU.

The generated step functions call these four helpers instead of ``torch.mm``/``addmm``. Every
group weight ``W`` is in ``nn.Linear`` layout (out × in), or (K, out × in) for a population of K
members whose activations are (K, B, features): the helpers then use batched matmuls. The runtime may hand the helpers a
oneDNN *prepacked* weight instead of ``W`` (``pack_for_forward``/``pack_for_backward``): the
per-step GEMMs with large weights then skip re-packing the weight on every call. Each oneDNN
call costs a fixed ~40 µs more than ``addmm``/``mm``, so packing pays only for weights of
``PACK_MIN_ELEMENTS`` or more (see there). Packing happens once per sequence, only on CPU in
float32 and only where the gradient is computed by our own backward (never under autograd, which
cannot differentiate through packed weights); everywhere else (CUDA, float64, small weights,
``mode="autograd"``, ``torch.compile``) the helpers are plain torch ops.
"""

from __future__ import annotations

import torch


def _onednn_ops():
    """oneDNN's linear (plain and with a fused add) and weight reorder, if this build has them and
    they compute right; else None."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        linear = torch.ops.mkldnn._linear_pointwise
        reorder = torch.ops.mkldnn._reorder_linear_weight
        a, w, base = torch.randn(3, 4), torch.randn(5, 4), torch.randn(3, 5)
        packed = reorder(w, 3)
        ok = (torch.allclose(linear.binary(a, base, packed, None, "add"), torch.addmm(base, a, w.t()), atol=1e-5)
              and torch.allclose(linear(a, packed, None, "none", [], ""), a @ w.t(), atol=1e-5))
        return (linear, reorder) if ok else None
    except (AttributeError, RuntimeError):
        return None


_ONEDNN = _onednn_ops()


# Smallest fused weight (out × in elements) worth prepacking: a GRU's 3H × H at hidden 256, so the
# built-in gated cells pack from hidden 256 and nothing packs at the search's sizes (hidden 32-128).
# Below, oneDNN's fixed cost per call loses to addmm/mm: a solo training step at hidden 64 was 20%
# slower packed (1 thread; 44.5 -> 36.0 ms on the 2026-12-01 machine, 10.7 -> 9.0 ms on the
# 2026-12-07 one). Where packing starts to win depends on the CPU. 2026-12-01 (packed oneDNN calls
# 61/64/100 µs against addmm's 10/20/89 µs at H = 32/64/128): from the LSTM's 4H × H at hidden 256
# (1 << 18), the GRU's 3H × H there unclear (bench 1.02-1.08× torch.nn.GRU packed, 1.06-1.14× not).
# 2026-12-07 (an AMD EPYC: the GRU's step matmul at H = 256 took 97 µs in addmm, 47 µs packed,
# 2 threads): training steps even at hidden 160-192, the GRU's at hidden 256 12-16% faster packed
# (1 and 2 threads; bench 1.24× torch.nn.GRU packed, 1.10-1.13× not, one process).
PACK_MIN_ELEMENTS = 3 * 256 * 256


def can_pack(w: torch.Tensor) -> bool:
    """Whether ``w`` is prepacked for the step's matmul: a large enough 2-D float32 weight on CPU
    where oneDNN's packed GEMM is available."""
    return (_ONEDNN is not None and w.device.type == "cpu" and w.dtype == torch.float32 and w.dim() == 2
            and w.numel() >= PACK_MIN_ELEMENTS)


def pack_for_forward(w: torch.Tensor, batch: int) -> torch.Tensor:
    """W prepacked for ``a @ W.T`` (the step's matmul); W itself where packing does not apply.
    Callers must not need autograd through the result."""
    return _ONEDNN[1](w.detach(), batch) if can_pack(w) else w


def pack_for_backward(w: torch.Tensor, batch: int) -> torch.Tensor:
    """W prepacked for ``d @ W`` (the backward step's matmul); W itself where packing does not apply."""
    return _ONEDNN[1](w.detach().t().contiguous(), batch) if can_pack(w) else w


def linear(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """a @ W.T"""
    if w.is_mkldnn:
        return _ONEDNN[0](a, w, None, "none", [], "")
    if w.dim() == 3:  # a population: one matrix per member
        return torch.bmm(a, w.transpose(1, 2))
    return torch.mm(a, w.t())


def linear_add(a: torch.Tensor, w: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """base + a @ W.T (base: (B, out) per step, or a bias-like (out,) constant)"""
    if w.is_mkldnn:
        if base.dim() == 1:
            return _ONEDNN[0](a, w, base, "none", [], "")
        if base.shape == (a.shape[0], w.shape[0]):
            return _ONEDNN[0].binary(a, base, w, None, "add")
        return _ONEDNN[0](a, w, None, "none", [], "") + base
    if w.dim() == 3:
        return torch.baddbmm(base, a, w.transpose(1, 2))
    return torch.addmm(base, a, w.t())


def matmul_w(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """d @ W (w may be W prepacked by pack_for_backward)"""
    if w.is_mkldnn:
        return _ONEDNN[0](d, w, None, "none", [], "")
    if w.dim() == 3:
        return torch.bmm(d, w)
    return torch.mm(d, w)


def add_matmul_w(other: torch.Tensor, d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """other + d @ W (w may be W prepacked by pack_for_backward)"""
    if w.is_mkldnn:
        if other.shape == (d.shape[0], w.shape[0]):
            return _ONEDNN[0].binary(d, other, w, None, "add")
        return _ONEDNN[0](d, w, None, "none", [], "") + other
    if w.dim() == 3:
        return torch.baddbmm(other, d, w)
    return torch.addmm(other, d, w)


HELPERS = {"linear": linear, "linear_add": linear_add, "matmul_w": matmul_w, "add_matmul_w": add_matmul_w}
