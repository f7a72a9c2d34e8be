"""AWD-LSTM's activation regularisation (AR and TAR): the penalty a training step adds to its gradient."""

from __future__ import annotations

import torch


def activation_penalty(out: torch.Tensor, dropped: torch.Tensor, mask: torch.Tensor, ar: float,
                       tar: float) -> torch.Tensor:
    """AWD-LSTM's activation regularisation: ``ar`` × the mean square of the last layer's dropped
    outputs plus ``tar`` × the mean square of the change between consecutive (undropped) outputs,
    over the positions ``mask`` (T, B) counts (padding left out; on PTB: every position)."""
    m = mask.to(out.dtype)
    penalty = ar * (dropped.pow(2).mean(-1) * m).sum() / m.sum().clamp(min=1.0)
    if tar and out.shape[0] > 1:
        pairs = m[1:] * m[:-1]
        penalty = penalty + tar * ((out[1:] - out[:-1]).pow(2).mean(-1) * pairs).sum() / pairs.sum().clamp(min=1.0)
    return penalty
