"""The stack ops in the generated code: ``stack``, ``top`` and ``below`` with their backward.

A stack state is a (B, N, H) matrix, H stacks of depth N with row 0 on top (see
``cellsearch/ops/stack.py`` for the update). The forward functions take any leading dimensions;
each ``<op>_backward(d, args)`` returns the gradients of the arguments in order (a tuple), by
their formulas. The reference interpreter writes the ops out on its own.
"""

from __future__ import annotations

import torch


def _actions(a_push: torch.Tensor, a_pop: torch.Tensor, a_noop: torch.Tensor) -> torch.Tensor:
    """softmax over the three actions per unit, (3, ..., B, 1, H) to broadcast over the rows."""
    return torch.softmax(torch.stack([a_push, a_pop, a_noop], 0), 0).unsqueeze(-2)


def _shifted(s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(after a push: v on top, the rest one row down; after a pop: the rest one row up, 0 below)."""
    down = torch.cat([v.unsqueeze(-2), s[..., :-1, :]], -2)
    up = torch.cat([s[..., 1:, :], torch.zeros_like(s[..., :1, :])], -2)
    return down, up


def stack(s: torch.Tensor, a_push: torch.Tensor, a_pop: torch.Tensor, a_noop: torch.Tensor,
          v: torch.Tensor) -> torch.Tensor:
    """The next stack: push ``v``, pop or keep, mixed per unit by softmax(a_push, a_pop, a_noop)."""
    p = _actions(a_push, a_pop, a_noop)
    down, up = _shifted(s, v)
    return p[0] * down + p[1] * up + p[2] * s


def top(s: torch.Tensor) -> torch.Tensor:
    """The top element of every stack (..., B, H)."""
    return s[..., 0, :]


def below(s: torch.Tensor) -> torch.Tensor:
    """The element under the top of every stack (..., B, H); 0 when the stacks have depth 1."""
    return s[..., 1, :] if s.shape[-2] > 1 else torch.zeros_like(s[..., 0, :])


def stack_backward(d_new: torch.Tensor, s: torch.Tensor, a_push: torch.Tensor, a_pop: torch.Tensor,
                   a_noop: torch.Tensor, v: torch.Tensor):
    """(d_s, d_a_push, d_a_pop, d_a_noop, d_v) of ``stack``."""
    p = _actions(a_push, a_pop, a_noop)
    down, up = _shifted(s, v)
    d_p = torch.stack([(d_new * down).sum(-2), (d_new * up).sum(-2), (d_new * s).sum(-2)], 0)  # (3, B, H)
    q = p.squeeze(-2)
    d_a = q * (d_p - (q * d_p).sum(0, keepdim=True))  # through the softmax
    d_s = p[2] * d_new
    d_s[..., :-1, :] += p[0] * d_new[..., 1:, :]  # row n went to row n + 1 on a push
    d_s[..., 1:, :] += p[1] * d_new[..., :-1, :]  # and to row n − 1 on a pop
    d_v = p[0].squeeze(-2) * d_new[..., 0, :]
    return d_s, d_a[0], d_a[1], d_a[2], d_v


def top_backward(d: torch.Tensor, s: torch.Tensor):
    """(d_s,) of ``top``: ``d`` in row 0, zeros below."""
    d_s = torch.zeros_like(s)
    d_s[..., 0, :] = d
    return (d_s,)


def below_backward(d: torch.Tensor, s: torch.Tensor):
    """(d_s,) of ``below``: ``d`` in row 1, zeros elsewhere."""
    d_s = torch.zeros_like(s)
    if s.shape[-2] > 1:
        d_s[..., 1, :] = d
    return (d_s,)


STACK_HELPERS = {f.__name__: f for f in (stack, top, below, stack_backward, top_backward, below_backward)}

__all__ = ["STACK_HELPERS", "below", "below_backward", "stack", "stack_backward", "top", "top_backward"]
