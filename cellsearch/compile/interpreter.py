"""The reference interpreter: the oracle every optimisation is tested against.

It evaluates the cell node by node, one time step at a time, with one matmul per linear
argument and no fusion at all. It is deliberately plain: if the compiler and this disagree,
the compiler is wrong.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from cellsearch.compile.attention import given_memories
from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS, start_states
from cellsearch.compile.params import CellParameters
from cellsearch.dsl.graph import CellGraph, prev_name
from cellsearch.ops.registry import OPS


def eval_node(node, args: list, params: CellParameters, trace: dict | None = None) -> torch.Tensor:
    """The value of one node given its argument values (tensors, or floats for constants);
    ``trace`` collects the weights over memory rows of attend and address nodes (name → list).
    Each op's rule is its ``interpret`` (``cellsearch.ops``)."""
    return OPS[node.op].interpret(node, args, params, trace)


class InterpretedCell(nn.Module):
    """Runs a cell over a sequence step by step: ``out, state = cell(x, state, static)``.

    ``x`` is (T, B, input_size) (or a tuple of such tensors, one per per-step input),
    ``state`` a tuple of (B, hidden) tensors in ``graph.states`` order (zeros if omitted),
    ``static`` a tuple of (B, static_size) tensors, ``memory`` a tuple with one ``Memory``
    (values (B, N, hidden), mask (B, N) or None) per memory of the cell. Returns the output state at every step
    (T, B, hidden) and the tuple of final states.
    """

    def __init__(self, graph: CellGraph, input_size: int, hidden_size: int, static_size: int | None = None,
                 params: CellParameters | None = None, memory_rows: int = DEFAULT_MEMORY_ROWS):
        super().__init__()
        self.graph = graph
        self.memory_rows = memory_rows
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.params = params if params is not None else CellParameters(graph, input_size, hidden_size, static_size)

    def forward(self, x, state: Sequence[torch.Tensor] | None = None, static: Sequence[torch.Tensor] | None = None,
                memory: Sequence | None = None, trace: dict | None = None):
        """``trace`` (a dict) receives, per attend and address node, its weights over the memory
        rows at every step, (T, B, N): what attention maps plot."""
        g = self.graph
        xs = (x,) if isinstance(x, torch.Tensor) else tuple(x)
        T, B = xs[0].shape[:2]
        if state is None:
            state = start_states(g, B, self.hidden_size, self.memory_rows, xs[0])
        prev = dict(zip(g.states, state))
        statics: dict[str, Any] = dict(zip(g.static, static or ()))
        statics.update(zip(g.memory, given_memories(g, memory, B, self.hidden_size)))
        outs = []
        steps: dict | None = {} if trace is not None else None
        for t in range(T):
            values: dict = {name: xi[t] for name, xi in zip(g.inputs, xs)}
            values.update(statics)
            values.update({prev_name(s): v for s, v in prev.items()})
            for name in g.order:
                if name in g.live:
                    node = g.node_map[name]
                    values[name] = eval_node(node, [values[a] for a in node.args], self.params, steps)
            prev = {s: _as_tensor(values[s], xs[0], B, self.hidden_size) for s in g.states}
            outs.append(prev[g.output])
        if trace is not None and steps is not None:  # steps is a dict exactly when trace is
            trace.update({name: torch.stack(ws) for name, ws in steps.items()})
        return torch.stack(outs), tuple(prev[s] for s in g.states)


def _as_tensor(v, like: torch.Tensor, batch: int, hidden: int) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v.expand(batch, hidden) if v.dim() < 2 else v
    return like.new_full((batch, hidden), float(v))
