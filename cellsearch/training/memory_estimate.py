"""The memory a training takes, estimated before anything is built, and the check that refuses too much.

``check_training_memory(cfg)`` refuses a training whose estimate (``estimated_training_bytes``:
weights, gradients, Adam's moments, a batch's activations and logits) is more than
``MAX_TRAINING_MEMORY_SHARE`` of the memory of the device it trains on (a GPU's, or the
machine's physical memory), long before torch would fail to allocate it.
"""

from __future__ import annotations

import os

import torch

from cellsearch.tasks import task_class
from cellsearch.training.config import TrainConfig

# What one time step of one layer keeps for the backward pass, in H-sized vectors per linear of
# the cell (its output, the nonlinearity's, the gates' products): generous for the built-in cells.
ACTIVATIONS_PER_LINEAR = 6
GATES_OF_AN_UNKNOWN_CELL = 4  # linears of a cell not resolved yet: an LSTM's four gates


def physical_memory_bytes() -> int | None:
    """The machine's physical memory (or the container's memory limit, when lower); None when the
    system does not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # v2 ("max": none), v1
        try:
            with open(cgroup) as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total if total > 0 else None


def estimated_training_bytes(cfg: TrainConfig, graph=None, members: int = 1) -> int:
    """About how many bytes training ``cfg`` takes: the model's weights with their gradients and
    Adam's two moments (fp32), one batch's activations kept for the backward pass and its logits,
    and an evaluation batch's logits; × ``members`` for a population. ``graph``: the cell, when
    known (its linears and memory states); else an LSTM's four gates. An estimate, meant to refuse
    what cannot fit long before torch tries, not to predict the peak."""
    vocab, steps = task_class(cfg.task).sizes(cfg.task_options)
    H, layers, B = cfg.hidden_size, cfg.num_layers, cfg.batch_size
    E = cfg.embed_size or H
    linears, memory_states = GATES_OF_AN_UNKNOWN_CELL, 0
    if graph is not None:
        linears = max(1, sum(1 for n in graph.nodes if n.op == "linear"))
        memory_states = len(getattr(graph, "memory_states", ()) or ())
    cell_weights = linears * H * ((E + H) + (layers - 1) * 2 * H)
    params = vocab * E + cell_weights + (H + 1) * vocab
    if cfg.encoder is not None or memory_states:  # an encoder-decoder model: an encoder of the same size
        params += cell_weights
    per_step = B * layers * (ACTIVATIONS_PER_LINEAR * linears * H + 3 * memory_states * cfg.memory_rows * H)
    logits = 3 * B * steps * vocab + cfg.eval_batch_size * steps * vocab
    return 4 * members * (4 * params + steps * per_step + logits)


def check_training_memory(cfg: TrainConfig, graph=None, members: int = 1) -> None:
    """Refuse a training whose estimated memory (``estimated_training_bytes``) is more than
    ``MAX_TRAINING_MEMORY_SHARE`` of the machine's physical memory."""
    who = f"{members} members" if members > 1 else "one model"
    check_memory(estimated_training_bytes(cfg, graph, members),
                 f"training {who} of hidden_size {cfg.hidden_size}, num_layers {cfg.num_layers}, batch_size "
                 f"{cfg.batch_size} on {cfg.task}", cfg.device)


def device_memory_bytes(device: str) -> tuple[int | None, str]:
    """The memory a training on ``device`` (auto | cpu | cuda[:N]) can use and what it is: the GPU's
    when it trains on one, else the machine's physical memory; (None, ...) when that is unknown
    here (a CUDA device this machine does not have: it is checked where the training runs)."""
    wants_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not wants_gpu:
        return physical_memory_bytes(), "physical memory"
    if not torch.cuda.is_available():
        return None, "GPU memory"
    index = torch.device(device).index if device.startswith("cuda") else None
    return torch.cuda.get_device_properties(index or 0).total_memory, "GPU memory"


def check_memory(need: int, what: str, device: str = "cpu") -> None:
    """Refuse work estimated to take ``need`` bytes when that is more than ``MAX_TRAINING_MEMORY_SHARE``
    of the memory of the device it runs on (``what`` says which work, in the message)."""
    from cellsearch.limits import MAX_TRAINING_MEMORY_SHARE, LimitError

    total, kind = device_memory_bytes(device)
    if total is not None and need > MAX_TRAINING_MEMORY_SHARE * total:
        raise LimitError(f"{what} (make it smaller)", "training memory", f"about {_gib(need)}",
                         f"{MAX_TRAINING_MEMORY_SHARE:.0%} of {_gib(total)} {kind}")


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n < 2**50 else f"{n / 2**40:,.0f} TiB"
