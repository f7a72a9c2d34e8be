"""Stack ops (Joulin & Mikolov 2015): ``stack``, ``top`` and ``below`` on a stack state.

A stack state S is a (B, N, H) matrix state (``memory_states:`` in a cell's YAML, like an NTM's
memory): H stacks of depth N, one per hidden unit, each holding scalars, row 0 the top. Every
stack has its own soft action, so S is Joulin & Mikolov's "several stacks, each with its own
action" with one stack per unit (they use a handful of stacks beside a larger hidden layer; here
the number of stacks is the hidden size, and a cell that wants fewer leaves the others unused).

* ``stack(S, a_push, a_pop, a_noop, v)`` (a matrix): the next stack. Per unit h the action
  weights are p = softmax(a_push_h, a_pop_h, a_noop_h); then
  S'_0 = p_push v + p_pop S_1 + p_noop S_0 and, for n ≥ 1,
  S'_n = p_push S_{n−1} + p_pop S_{n+1} + p_noop S_n, with S_N = 0 (a pop shifts in an empty
  cell at the bottom, a push drops the bottom element). Their update (their eq. for s_t[0] and
  s_t[i]) with the no-op action of their extension.
* ``top(S)`` (a vector): S_0, the top of every stack; ``below(S)``: S_1, the element under it
  (their model reads the top k = 2 elements: ``top`` and ``below``).

A stack starts empty: its state starts at 0 (``starts_empty``; the empty value is 0, where their
implementation marks empty cells with −1), unlike an NTM memory. The generated code calls the
helpers of ``compile/stack.py`` (``<op>`` and ``<op>_backward``); the interpreter writes the math
out plainly as their oracle; the exported module carries its own TorchScript-clean helpers.
"""

from __future__ import annotations

import torch

from cellsearch.ops.base import HelperOp, Prelude

STACK_OPS = ("stack", "top", "below")

PRELUDE = Prelude(set(STACK_OPS), '''def stack(s: Tensor, a_push: Tensor, a_pop: Tensor, a_noop: Tensor, v: Tensor) -> Tensor:
    """The next stack (B, N, H): push v, pop or keep, by softmax(a_push, a_pop, a_noop) per unit."""
    p = torch.softmax(torch.stack([a_push, a_pop, a_noop], 0), 0).unsqueeze(-2)  # (3, B, 1, H)
    down = torch.cat([v.unsqueeze(-2), s[..., :-1, :]], -2)
    up = torch.cat([s[..., 1:, :], torch.zeros_like(s[..., :1, :])], -2)
    return p[0] * down + p[1] * up + p[2] * s


def top(s: Tensor) -> Tensor:
    """The top element of every stack (B, H)."""
    return s[..., 0, :]


def below(s: Tensor) -> Tensor:
    """The element under the top of every stack (B, H); 0 for a stack of depth 1."""
    if s.shape[-2] < 2:
        return torch.zeros_like(s[..., 0, :])
    return s[..., 1, :]''', lambda g: any(n.op in STACK_OPS for n in g.nodes if n.name in g.live))


class StackOp(HelperOp):
    """A stack op: the generated code calls ``<name>(args)`` and ``<name>_backward(d, args)``."""

    export_prelude = PRELUDE

    def __init__(self, name: str, signature: tuple, doc: str, interpret, starts_empty: bool = False):
        arity = len(signature[0])
        super().__init__(name, "stack", arity, arity, doc=doc, signature=signature)
        self._interpret = interpret
        self.starts_empty = starts_empty

    def interpret(self, node, args, params, trace):
        return self._interpret(*args)


def _stack(s, a_push, a_pop, a_noop, v):  # the oracle: the update written out row by row
    p = torch.softmax(torch.stack([a_push, a_pop, a_noop]), 0)  # (3, B, H)
    rows = s.shape[1]
    out = []
    for n in range(rows):
        above = v if n == 0 else s[:, n - 1]
        under = s[:, n + 1] if n + 1 < rows else torch.zeros_like(v)
        out.append(p[0] * above + p[1] * under + p[2] * s[:, n])
    return torch.stack(out, 1)


def _below(s):
    return s[:, 1] if s.shape[1] > 1 else torch.zeros_like(s[:, 0])


STACK = StackOp("stack", (("matrix", "vector", "vector", "vector", "vector"), "matrix"),
                "stack(S, a_push, a_pop, a_noop, v): the next stack state (Joulin & Mikolov): per unit, "
                "with p = softmax(a_push, a_pop, a_noop), push v on top (rest shift down), pop (rest shift up, "
                "0 enters at the bottom) or keep, mixed by p; a state it writes starts empty (0)",
                _stack, starts_empty=True)
TOP = StackOp("top", (("matrix",), "vector"), "top(S): the top element of each of the H stacks of S (a vector)",
              lambda s: s[:, 0])
BELOW = StackOp("below", (("matrix",), "vector"),
                "below(S): the element under the top of each stack of S (a vector; 0 if S has one row)", _below)

OPS = (STACK, TOP, BELOW)
