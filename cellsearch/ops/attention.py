"""The attend op: attention of a query over a given memory (dot, general or additive scores).

``attend(q, M)`` is the softmax(score(q, M_n))-weighted sum of the rows of a memory M (an
encoder's outputs, with a padding mask). ``attend(q, K, V)`` scores the rows of the keys memory K
and sums the rows of the values memory V (same rows; K's padding mask): the separate input and
output memories of an end-to-end memory network (Sukhbaatar et al. 2015, ``library/memn2n.yaml``). The generated code calls the helpers of
``compile/attention.py`` (``attend_dot``, ``attend_additive`` and their backward); the
interpreter writes the math out plainly as their oracle; the exported module carries its own
two TorchScript-clean helpers (``PRELUDE``).
"""

from __future__ import annotations

import torch

from cellsearch.ops.base import AttrSpec, Op, Prelude

ATTENTION_KINDS = ("dot", "general", "additive")
# The parameters of each kind: wk (W of general, U of additive), wq and v (additive)
ATTENTION_ROLES = {"dot": (), "general": ("wk",), "additive": ("wq", "wk", "v")}


def attention_name(node: str, role: str) -> str:
    """An attend() node's parameter: ``wk`` (W of general, U of additive), ``wq`` and ``v`` (additive)."""
    return f"{node}__{role}"


PRELUDE = Prelude({"attend", "attend_additive"}, '''def attend(q: Tensor, keys: Tensor, values: Tensor, bias: Tensor) -> Tensor:
    """attend(q, M): the softmax(q · key_n + bias_n)-weighted sum of the memory rows (B, H);
    padding rows have bias -inf, so their weight is 0."""
    scores = torch.matmul(keys, q.unsqueeze(-1)).squeeze(-1) + bias  # (B, N)
    weights = torch.softmax(scores, -1)
    return torch.matmul(weights.unsqueeze(1), values).squeeze(1)


def attend_additive(q: Tensor, wq: Tensor, keys: Tensor, v: Tensor, values: Tensor, bias: Tensor) -> Tensor:
    """attend(q, M, kind=additive): scores v · tanh(Wq q + U m_n) (Bahdanau); keys = U M."""
    hidden = torch.tanh(keys + F.linear(q, wq).unsqueeze(1))  # (B, N, H)
    weights = torch.softmax(torch.matmul(hidden, v) + bias, -1)
    return torch.matmul(weights.unsqueeze(1), values).squeeze(1)''', lambda g: bool(g.memory))


class Attend(Op):
    """Hoisted (query independent of the previous states) it runs for all steps at once in the
    prologue; in the loop its step call also returns what its backward needs (``step_outputs``),
    and its keys and parameters are per-step constants (``step_aux_roles``)."""

    reads_given_memory = True
    memory_arg = 1  # the argument that is the memory
    export_param_phase = 1
    export_prelude = PRELUDE

    # ---- the interpreter: the math written out (the oracle of compile/attention.py)
    def interpret(self, node, args, params, trace):
        q, (memory, mask) = args[:2]  # a given Memory: (B, N, H), (B, N) bool or None
        values = args[2][0] if len(args) == 3 else memory  # attend(q, K, V): V's rows are summed
        kind = node.attr("kind")
        if kind == "dot":
            scores = torch.einsum("bh,bnh->bn", q, memory)
        elif kind == "general":
            keys = torch.einsum("kh,bnh->bnk", getattr(params, attention_name(node.name, "wk")), memory)
            scores = torch.einsum("bk,bnk->bn", q, keys)
        else:
            wq, wk, v = (getattr(params, attention_name(node.name, r)) for r in ("wq", "wk", "v"))
            hidden = torch.tanh(torch.einsum("kh,bh->bk", wq, q).unsqueeze(1)
                                + torch.einsum("kh,bnh->bnk", wk, memory))
            scores = torch.einsum("bnk,k->bn", hidden, v)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, -1)
        if trace is not None:
            trace.setdefault(node.name, []).append(weights)
        return torch.einsum("bn,bnh->bh", weights, values)

    # ---- generated code
    def step_aux_roles(self, node) -> list[str]:
        """The per-step constants of an in-loop node besides the memory's bias: its parameters
        read in the step, and the keys (its memory through W, once per sequence)."""
        kind = node.attr("kind")
        return [r for r in ATTENTION_ROLES[kind] if r != "wk"] + (["keys"] if kind != "dot" else [])

    def step_outputs(self, node) -> tuple[str, ...]:
        """What the step call returns besides the context, for the backward: weights (and e)."""
        return ("w", "e") if node.attr("kind") == "additive" else ("w",)

    def aux_expr(self, name: str, role: str, memory: str) -> str:
        """An attend node's keys (its memory through W, once per sequence) or one of its parameters."""
        if role == "keys":
            return f"F.linear({memory}, P.{attention_name(name, 'wk')})"
        return f"P.{attention_name(name, role)}"

    def call(self, v, node, query: str, hoisted: bool) -> str:
        """The helper call (compile/attention.py); in the prologue (``hoisted``) its keys and
        parameters are read from ``P`` directly, in the step from the step's constants."""
        name = node.name
        memory = v.ref(node.args[1])
        values = v.ref(node.args[2]) if len(node.args) == 3 else memory
        bias = v.ref(v.memory_bias[node.args[1]])
        kind = node.attr("kind")

        def part(role: str) -> str:
            if hoisted:
                return self.aux_expr(name, role, memory)
            return v.ref(v.attend_aux[name][role])

        if kind == "dot":
            return f"attend_dot({query}, {memory}, {values}, {bias})"
        if kind == "general":
            return f"attend_dot({query}, {part('keys')}, {values}, {bias})"
        return f"attend_additive({query}, {part('wq')}, {part('keys')}, {part('v')}, {values}, {bias})"

    def forward_expr(self, v, node, a, param=None):  # hoisted: for all steps at once
        return self.call(v, node, a[0], hoisted=True) + "[0]"

    def backward(self, bw, node, d):
        """Gradients of the query, the memory and (through the aux values) of the keys and
        parameters, from the weights the step saved (compile/attention.py)."""
        v, n = bw.v, node.name
        q, memory = node.args[:2]
        values = node.args[2] if len(node.args) == 3 else memory  # attend(q, K, V): the rows summed
        kind = node.attr("kind")
        aux = v.attend_aux[n]
        saved = [bw.use_var(o) for o in v.attend_out[n]]
        fresh = bw.fresh
        if kind == "dot" and values == memory:
            outs = {"q": fresh(f"d_{n}_q"), "memory": fresh(f"d_{n}_m")}
            call = f"attend_dot_backward({d}, {bw.use(q)}, {v.ref(memory)}, {saved[0]})"
        elif kind == "dot":  # the keys are K itself: a general attention's backward without W
            outs = {"q": fresh(f"d_{n}_q"), "key_memory": fresh(f"d_{n}_k"), "memory": fresh(f"d_{n}_m")}
            call = f"attend_general_backward({d}, {bw.use(q)}, {v.ref(memory)}, {v.ref(values)}, {saved[0]})"
        elif kind == "general":
            outs = {"q": fresh(f"d_{n}_q"), "keys": fresh(f"d_{n}_k"), "memory": fresh(f"d_{n}_m")}
            call = f"attend_general_backward({d}, {bw.use(q)}, {v.ref(aux['keys'])}, {v.ref(values)}, {saved[0]})"
        else:
            outs = {"q": fresh(f"d_{n}_q"), "wq": fresh(f"d_{n}_wq"), "keys": fresh(f"d_{n}_k"),
                    "v": fresh(f"d_{n}_v"), "memory": fresh(f"d_{n}_m")}
            call = (f"attend_additive_backward({d}, {bw.use(q)}, {v.ref(aux['wq'])}, {v.ref(aux['v'])}, "
                    f"{v.ref(values)}, {saved[0]}, {saved[1]})")
        bw.line(f"{', '.join(outs.values())} = {call}")
        bw.grad(q, outs.pop("q"), simple=True)
        bw.grad(values, outs.pop("memory"), simple=True)  # (the values' gradient; K's where K = V)
        if "key_memory" in outs:
            bw.grad(memory, outs.pop("key_memory"), simple=True)
        for role, var in outs.items():
            bw.grad(aux[role], var, simple=True)

    # ---- the exported module
    def export_expr(self, w, node, args):
        name = node.name
        q, memory = args[0][0], w.names.bind(node.args[1])
        values = w.names.bind(node.args[2]) if len(node.args) == 3 else memory
        bias = w.bias_var[node.args[1]]
        kind = node.attr("kind")
        if kind == "dot":
            return f"attend({q}, {memory}, {values}, {bias})", 9
        keys = f"F.linear({memory}, self.{attention_name(name, 'wk')})"
        if kind == "general":
            return f"attend({q}, {keys}, {values}, {bias})", 9
        return (f"attend_additive({q}, self.{attention_name(name, 'wq')}, {keys}, "
                f"self.{attention_name(name, 'v')}, {values}, {bias})"), 9

    # ---- parameters
    def parameters(self, node, sizes, hidden):
        return [(attention_name(node.name, role), (hidden,) if role == "v" else (hidden, hidden))
                for role in ATTENTION_ROLES[node.attr("kind")]]

    def export_param_lines(self, node, size_expr):
        lines = []
        for role in ATTENTION_ROLES[node.attr("kind")]:
            shape = "hidden_size" if role == "v" else "hidden_size, hidden_size"
            lines.append(f"self.{attention_name(node.name, role)} = nn.Parameter(torch.empty({shape}))")
        return lines


ATTEND = Attend("attend", "attention", 2, 3, attrs={
    "kind": AttrSpec(str, "dot", "the score of a memory row m given the query q: dot (q·m, Luong), "
                     "general (q·W m, Luong) or additive (v·tanh(W q + U m), Bahdanau)",
                     choices=ATTENTION_KINDS),
}, doc="attend(q, M): the softmax(score(q, M_n))-weighted sum of the rows of memory M "
       "(padding rows masked out), a hidden-sized context vector; attend(q, K, V) scores the rows of K and "
       "sums those of V (a memory network's input and output memories; same rows, K's padding)",
   signature=(("vector", "matrix", "matrix"), "vector"))

OPS = (ATTEND,)
