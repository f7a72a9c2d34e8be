"""The reference interpreter: the oracle every optimisation is tested against.

It evaluates the cell node by node, one time step at a time, with one matmul per linear
argument and no fusion at all. It is deliberately plain: if the compiler and this disagree,
the compiler is wrong.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cellsearch.compile.attention import given_memories
from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS, EPS, start_states
from cellsearch.compile.params import CellParameters, attention_name, bias_name, scale_name, weight_name
from cellsearch.dsl.graph import CellGraph, prev_name


def eval_node(node, args: list, params: CellParameters, trace: dict | None = None) -> torch.Tensor:
    """The value of one node given its argument values (tensors, or floats for constants);
    ``trace`` collects the weights over memory rows of attend and address nodes (name → list)."""
    op = node.op
    if op == "linear":
        out = None
        for k, a in enumerate(args):
            term = F.linear(a, getattr(params, weight_name(node.name, k)))
            out = term if out is None else out + term
        if node.attr("bias"):
            out = out + getattr(params, bias_name(node.name))
        return out
    if op == "add":
        return args[0] + args[1]
    if op == "sub":
        return args[0] - args[1]
    if op == "mul":
        return args[0] * args[1]
    if op == "neg":
        return -args[0]
    if op == "one_minus":
        return 1 - args[0]
    if op == "blend":
        z, a, b = args
        return z * a + (1 - z) * b
    if op == "diag":
        return getattr(params, scale_name(node.name)) * args[0]
    if op == "const":
        return node.attr("value")
    if op == "tanh":
        return torch.tanh(args[0])
    if op == "sigmoid":
        return torch.sigmoid(args[0])
    if op == "relu":
        return torch.relu(args[0])
    if op == "leaky_relu":
        return F.leaky_relu(args[0], node.attr("slope"))
    if op == "identity":
        return args[0]
    if op == "attend":
        context, weights = _attend(node, args[0], args[1], params)
        if trace is not None:
            trace.setdefault(node.name, []).append(weights)
        return context
    if op == "address":  # the NTM's content addressing, written out (compile/memory.py is its fast twin)
        k, memory, beta = args
        cos = torch.einsum("bnh,bh->bn", memory, k) / (memory.norm(dim=2) * k.norm(dim=1).unsqueeze(1) + EPS)
        weights = torch.softmax(F.softplus(beta.mean(1)).unsqueeze(1) * cos, 1)
        if trace is not None:
            trace.setdefault(node.name, []).append(weights)
        return weights
    if op == "read":
        return torch.einsum("bn,bnh->bh", args[0], args[1])
    if op == "write":  # (address, read and write work on memory states: plain matrices, no mask)
        memory, w, erase, add = args
        return memory * (1 - torch.einsum("bn,bh->bnh", w, erase)) + torch.einsum("bn,bh->bnh", w, add)
    raise NotImplementedError(op)  # pragma: no cover - the op table and this list move together


def _attend(node, q: torch.Tensor, memory, params: CellParameters) -> tuple[torch.Tensor, torch.Tensor]:
    """attend(q, M), written out plainly (the oracle of compile/attention.py): scores row by row
    with einsum, padding rows set to -inf, softmax, weighted sum: (context, weights)."""
    values, mask = memory  # a given Memory: (B, N, H), (B, N) bool or None
    kind = node.attr("kind")
    if kind == "dot":
        scores = torch.einsum("bh,bnh->bn", q, values)
    elif kind == "general":
        keys = torch.einsum("kh,bnh->bnk", getattr(params, attention_name(node.name, "wk")), values)
        scores = torch.einsum("bk,bnk->bn", q, keys)
    else:
        wq, wk, v = (getattr(params, attention_name(node.name, r)) for r in ("wq", "wk", "v"))
        hidden = torch.tanh(torch.einsum("kh,bh->bk", wq, q).unsqueeze(1) + torch.einsum("kh,bnh->bnk", wk, values))
        scores = torch.einsum("bnk,k->bn", hidden, v)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, -1)
    return torch.einsum("bn,bnh->bh", weights, values), weights


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
        statics = dict(zip(g.static, static or ()))
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
        if trace is not None:
            trace.update({name: torch.stack(ws) for name, ws in steps.items()})
        return torch.stack(outs), tuple(prev[s] for s in g.states)


def _as_tensor(v, like: torch.Tensor, batch: int, hidden: int) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v.expand(batch, hidden) if v.dim() < 2 else v
    return like.new_full((batch, hidden), float(v))
