"""Optimizer steps of many models taken together: each model's own clipping and Adam update, in a few kernels.

A population (``population.py``) trains K models of one shape; each has its own ``torch.optim``
optimizer and gradient-norm limit, and must step exactly as it would alone. Taken one model at a
time, a step at search sizes is mostly fixed costs (the optimizer's Python, a norm and a
multiply per model, a kernel launch per model), paid K times. Here:

- ``clip_together``: every model's gradient norm from one multi-tensor norm kernel, then each
  model's gradients scaled by its own factor (``clip_grad_norm_``'s formula: never a norm across
  models);
- ``step_together``: the Adam updates of every model whose hyperparameters at this step are equal
  in one call of torch's fused Adam (the update is elementwise per tensor, so which tensors share
  a call changes nothing; each tensor keeps its own state and step count in its model's
  optimizer, so checkpoints and later solo steps are unaffected);
- ``finite_together``: whether each model's weights are all finite, with one reduction and one sync.

Anything else (SGD, Adam that is not fused, an optimizer with step hooks or state not yet made,
models whose gradients differ in count, device or dtype) takes its own ordinary step.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

# The Adam hyperparameters of a param group that must be equal for two groups to share a fused call
_ADAM_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay")


def _grads(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def _uniform(lists: Sequence[Sequence[torch.Tensor]]) -> bool:
    """Whether every list has as many tensors, all on one device in one dtype (one kernel can take them)."""
    if not lists or not lists[0] or len({len(x) for x in lists}) != 1:
        return False
    first = lists[0][0]
    return all(t.device == first.device and t.dtype == first.dtype for x in lists for t in x)


@torch.no_grad()
def clip_together(param_lists: Sequence[Sequence[torch.Tensor]], max_norms: Sequence[float | None]) -> None:
    """``clip_grad_norm_(params, max_norm)`` for each model with a ``max_norm`` (None or 0: not clipped)."""
    chosen = [(params, m) for params, m in zip(param_lists, max_norms) if m]
    grads = [_grads(params) for params, _ in chosen]
    # (float32/64 only: torch scales low-precision gradients by the Python limit, in a way a tensor of
    # limits in their dtype does not reproduce to the bit)
    if not _uniform(grads) or grads[0][0].dtype not in (torch.float32, torch.float64):
        for params, max_norm in chosen:
            torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        return
    flat = [g for model_grads in grads for g in model_grads]
    norms = torch._foreach_norm(flat, 2.0)
    n = len(grads[0])
    # each model's own norm, and its factor, computed as clip_grad_norm_ computes them, to the bit (a
    # reduction over the rows of one matrix, or max_norm / x instead of torch's reciprocal(x) * max_norm,
    # may round differently, and a run whose bound resets values amplifies the last bit within steps)
    totals = torch.stack([torch.linalg.vector_norm(torch.stack(norms[k * n:(k + 1) * n]), 2.0)
                          for k in range(len(grads))])
    limits = torch.tensor([m for _, m in chosen], dtype=totals.dtype, device=totals.device)
    factors = torch.clamp(torch.reciprocal(totals + 1e-6) * limits, max=1.0)
    for model_grads, factor in zip(grads, factors.unbind()):
        torch._foreach_mul_(model_grads, factor)


def _joinable(opt: torch.optim.Optimizer) -> bool:
    """A fused Adam with nothing that its own ``step`` would do besides the update."""
    return (type(opt) is torch.optim.Adam and not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
            and getattr(opt, "grad_scale", None) is None and getattr(opt, "found_inf", None) is None
            and all(g["fused"] and not g["differentiable"] and not g["capturable"] for g in opt.param_groups))


@torch.no_grad()
def step_together(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """``opt.step()`` of every optimizer (see module docstring)."""
    from torch.optim.adam import adam
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

    shared: dict[tuple, list[list[torch.Tensor]]] = {}
    hooks = _global_optimizer_pre_hooks or _global_optimizer_post_hooks
    for opt in optimizers:
        groups: list[tuple[dict[str, Any], list[torch.Tensor]]] = []
        first_step = False
        for group in opt.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if any("step" not in opt.state.get(p, {}) for p in params):
                first_step = True  # its first step makes its state: the optimizer's own
                break
            groups.append((group, params))
        if hooks or first_step or not _joinable(opt):
            opt.step()
            continue
        for group, params in groups:
            # (keys an older torch's Adam lacks are left out, and so from the call)
            key = tuple((k, group[k]) for k in _ADAM_KEYS if k in group)
            lists = shared.setdefault((params[0].device if params else None, key), [[], [], [], [], [], []])
            for p in params:
                state = opt.state[p]
                lists[0].append(p)
                assert p.grad is not None  # params holds only those with a gradient
                lists[1].append(p.grad)
                lists[2].append(state["exp_avg"])
                lists[3].append(state["exp_avg_sq"])
                if group["amsgrad"]:
                    lists[4].append(state["max_exp_avg_sq"])
                lists[5].append(state["step"])
    for (_, group_settings), lists in shared.items():
        settings: dict[str, Any] = dict(group_settings)
        beta1, beta2 = settings.pop("betas")
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = lists
        adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, fused=True,
             has_complex=any(torch.is_complex(p) for p in params), beta1=beta1, beta2=beta2, **settings)


@torch.no_grad()
def finite_together(param_lists: Sequence[Sequence[torch.Tensor]]) -> list[bool]:
    """For each model, whether all its weights are finite (NaN and inf propagate through the max-abs)."""
    if not _uniform(param_lists):  # (tensor counts, devices or dtypes differ: one kernel per model)
        return [bool(torch.isfinite(torch.stack(torch._foreach_norm([p.detach() for p in ps], float("inf")))).all())
                if ps else True for ps in param_lists]
    flat = [p.detach() for params in param_lists for p in params]
    largest = torch.stack(torch._foreach_norm(flat, float("inf"))).view(len(param_lists), -1)
    return torch.isfinite(largest).all(1).tolist()


__all__ = ["clip_together", "finite_together", "step_together"]
