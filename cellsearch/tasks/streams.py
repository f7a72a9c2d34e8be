"""Token streams read with truncated BPTT: batchify, chunking, and evaluation with carried state.

Shared by PTB (a fixed corpus) and XML (documents generated from a seed and concatenated).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cellsearch.errors import ConfigError


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) → (N // batch_size, batch_size): column b is the b-th contiguous slice of the stream."""
    rows = ids.numel() // batch_size
    return ids[: rows * batch_size].view(batch_size, rows).t().contiguous()


def chunk(data: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs data[i:i+t] and targets data[i+1:i+1+t], t ≤ bptt."""
    t = min(bptt, data.shape[0] - 1 - i)
    return data[i:i + t], data[i + 1:i + 1 + t]


@torch.no_grad()
def evaluate_stream(model, ids: torch.Tensor, batch_size: int, bptt: int,
                    flags: torch.Tensor | None = None) -> dict[str, float]:
    """Mean NLL (nats) and next-token accuracy over a stream, the state carried from chunk to chunk.

    ``flags`` (same shape as ``ids``, bool) marks a subset of target tokens whose accuracy is
    reported separately as ``flagged_accuracy``. Tokens that do not fill the last row of the
    batched stream (fewer than ``batch_size``) are left out. The model's mode is restored.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    data = batchify(ids, batch_size)
    if data.shape[0] < 2:
        raise ConfigError(f"{ids.numel()} evaluation tokens are too few for batch_size {batch_size}; "
                          "evaluate on more tokens or lower the batch size")
    fdata = batchify(flags, batch_size) if flags is not None else None
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = correct = flagged = flagged_correct = 0
    state = None
    try:
        for i in range(0, data.shape[0] - 1, bptt):
            inputs, targets = chunk(data, i, bptt)
            inputs, targets = inputs.to(device), targets.to(device)
            logits, state = model(inputs, state)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                     reduction="sum").double()
            hit = logits.argmax(-1) == targets
            count += targets.numel()
            correct += int(hit.sum())
            if fdata is not None:
                f = chunk(fdata, i, bptt)[1].to(device)
                flagged += int(f.sum())
                flagged_correct += int((hit & f).sum())
    finally:
        model.train(was_training)
    out = {"loss": total.item() / count, "accuracy": correct / count}
    if fdata is not None:
        out["flagged_accuracy"] = flagged_correct / flagged if flagged else math.nan
    return out
