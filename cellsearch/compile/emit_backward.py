"""Symbolic backward: the source of ``step_backward``, derived node by node from the step.

``step_backward(d_new, xt, prev, consts, saved, d_lin)`` walks the step's nodes in reverse,
sums the gradient terms each value receives (a value read once passes its gradient on as an
alias, with no op), and returns the gradients of the previous states, the per-step tensors,
the constants and the diag scales. It leaves the weight gradients out: it writes each fused
matmul's pre-activation gradient into ``d_lin`` (views of whole-sequence buffers), and the
runtime (``loop.py``) computes dW for the whole sequence as one matmul after the loop,
which is where most of the speed comes from. What the backward reads of the forward step
becomes the step's ``saved`` tuple.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellsearch.compile.schedule import Group
from cellsearch.compile.variables import Variables, columns, unpack
from cellsearch.dsl.graph import prev_name
from cellsearch.ops.registry import OPS


@dataclass
class _Term:
    sign: int  # +1 / -1
    expr: str  # an expression, or for matmul terms the left factor
    mm: str | None = None  # right factor of a matmul term (expr @ mm)
    simple: bool = False  # expr is a plain variable


def emit_backward(v: Variables) -> tuple[str, list[str]]:
    """The source of ``step_backward`` and the variables it needs saved from ``step``, in order."""
    return _Backward(v).emit()


class _Backward:
    """The state of one backward derivation: pending gradient terms and the body written so far."""

    def __init__(self, v: Variables):
        self.v = v
        self.loop_set = set(v.schedule.loop_nodes)
        self.needed: list[str] = []  # forward variables the backward reads (the step saves them)
        self.terms: dict[str, list[_Term]] = {}  # value -> gradient terms not summed yet
        self.grad_var: dict[str, str] = {}  # value -> the variable (or alias) holding its gradient
        self.body: list[str] = []
        self.defined_at: dict[str, tuple[int, str, str]] = {}  # gradient variable -> (body line, expression, node)
        self.dbuf: list[str] = []  # the d_lin buffer of each group

    # ------------------------------------------------------------------ bookkeeping
    def use(self, value: str) -> str:
        """Reference a forward value inside the backward (saving loop nodes for it)."""
        nm = self.v.names
        if value in self.loop_set and not self.v.is_const(value) and nm[value] not in self.needed:
            self.needed.append(nm[value])
        return self.v.ref(value)

    def use_var(self, var: str) -> str:
        if var not in self.needed:
            self.needed.append(var)
        return var

    def add(self, target: str, term: _Term) -> None:
        if self.v.is_const(target):
            return
        self.terms.setdefault(target, []).append(term)

    def finalize(self, value: str) -> str | None:
        """Sum the terms of ``value``'s gradient into a variable (or alias); None if it has none."""
        ts = self.terms.pop(value, [])
        if not ts:
            return None
        mms = [t for t in ts if t.mm is not None and t.sign > 0]
        rest = [t for t in ts if not (t.mm is not None and t.sign > 0)]
        if len(ts) == 1 and ts[0].sign > 0 and ts[0].simple:
            self.grad_var[value] = ts[0].expr  # alias: no op
            return self.grad_var[value]
        name = self.v.names.fresh(f"d_{value}")
        expr = _sum_expr(rest) if rest else None
        if mms:
            first = mms[0]
            if expr is None:
                expr = f"matmul_w({first.expr}, {first.mm})"
            else:
                expr = f"add_matmul_w({expr}, {first.expr}, {first.mm})"
            for t in mms[1:]:
                expr = f"add_matmul_w({expr}, {t.expr}, {t.mm})"
        assert expr is not None  # ts is not empty: rest or mms gave it a term
        self.body.append(f"    {name} = {expr}")
        self.grad_var[value] = name
        self.defined_at[name] = (len(self.body) - 1, expr, value)
        return name

    # ------------------------------------------------------------------ the function
    def emit(self) -> tuple[str, list[str]]:
        v = self.v
        g, schedule, nm = v.graph, v.schedule, v.names
        prevs = {prev_name(s) for s in schedule.recurrent_states}
        d_new = [nm.fresh(f"dn_{s}") for s in schedule.recurrent_states]
        for s, dn in zip(schedule.recurrent_states, d_new):
            self.add(s, _Term(1, dn, simple=True))
        self.dbuf = [nm.fresh(f"d_lin{grp.index}") for grp in schedule.groups]
        diag_terms: dict[str, str] = {}
        earliest_member = {grp.index: min(grp.members, key=schedule.loop_nodes.index) for grp in schedule.groups}

        for n in reversed(schedule.loop_nodes):
            node = g.node_map[n]
            if OPS[node.op].is_literal:
                continue
            d = self.finalize(n)
            if d is not None and n not in v.fused_acts:
                self.grad_rule(n, d, diag_terms)
            for grp in schedule.groups:
                if earliest_member[grp.index] == n:
                    self.group_backward(grp)
        # Gradients that leave the step: previous states, per-step and constant inputs.
        d_prev = [self.finalize(prev_name(s)) or "None" for s in schedule.recurrent_states]
        for value in list(self.terms):
            if value not in prevs:
                self.finalize(value)
        rev = {var: value for value, var in nm.names.items()}
        bases = {grp.base for grp in schedule.groups if grp.base}
        grad_var = self.grad_var
        d_ext = ["None" if e in bases else (grad_var.get(rev[e]) or "None") for e in v.ext]
        d_const = ["None" if (kind != "value" or c in bases) else (grad_var.get(rev[c]) or "None")
                   for c, kind in zip(v.consts, v.const_kinds)]
        d_diags = [diag_terms.get(n, "None") for n in v.loop_diags]
        saved = self.needed

        lines = v.step_header("step_backward", "d_new, ", ", saved, d_lin")
        lines.insert(1, '    """Gradients of one step. The pre-activation gradients of each fused matmul '
                        'go into d_lin\n    (views of whole-sequence buffers); weight gradients are left '
                        'to the runtime."""')
        lines += unpack(saved, "saved")
        lines += unpack(d_new, "d_new")
        lines += unpack(self.dbuf, "d_lin")
        lines += self.body

        def tup(xs: list[str]) -> str:
            return "(" + ", ".join(xs) + ("," if len(xs) == 1 else "") + ")"

        lines.append(f"    return {tup(d_prev)}, {tup(d_ext)}, {tup(d_const)}, {tup(d_diags)}")
        return "\n".join(lines), saved

    def grad_rule(self, n: str, d: str, diag_terms: dict[str, str]) -> None:
        """Add the gradient contributions of node ``n`` (gradient ``d``) to its arguments: its
        op's ``backward`` rule, through the methods below."""
        node = self.v.graph.node_map[n]
        self.diag_terms = diag_terms
        OPS[node.op].backward(self, node, d)

    # ------------------------------------------------------------------ what an op's rule calls
    def grad(self, target: str, expr: str, sign: int = 1, simple: bool = False) -> None:
        """Add the term ``sign * expr`` to ``target``'s gradient (``simple``: expr is a plain variable)."""
        self.add(target, _Term(sign, expr, simple=simple))

    def line(self, text: str) -> None:
        """Append a statement to the body."""
        self.body.append(f"    {text}")

    def fresh(self, name: str) -> str:
        return self.v.names.fresh(name)

    def is_const(self, value: str) -> bool:
        return self.v.is_const(value)

    def scale_var(self, node: str) -> str:
        """The step's variable holding node ``node``'s scale."""
        return self.v.diag_param_var[node]

    def scale_grad(self, node: str, expr: str) -> None:
        """The gradient of node ``node``'s scale at this step."""
        self.diag_terms[node] = expr

    def group_backward(self, grp: Group) -> None:
        """Write the group's pre-activation gradient into its buffer and pass it to its argument."""
        v, use, body, grad_var = self.v, self.use, self.body, self.grad_var
        nm = v.names
        dl = self.dbuf[grp.index]
        if len(grp.members) == 1 and grp.members[0] not in grp.act_of:
            self._plain_member(grp, dl)
            self._pass_on(grp, dl)
            return
        # Each run's gradient is computed into a fresh tensor and all of them then go into the
        # buffer with one cat: writing into column slices of the buffer (``out=``, in place)
        # made every op take a strided path, 2-3x slower at search sizes (LSTM gates, batch 32,
        # hidden 64: 85 -> 27 us a step alone, 111 -> 73 us for 8 members; benchmarks/step_micro.py).
        # A run over every column is written straight into the buffer.
        pieces: list[tuple[int, str]] = []  # (first column, gradient)
        for ri, (i, j, op) in enumerate(grp.runs):
            acts = [grp.act_of[L] for L in grp.members[i:j]]
            grads = [grad_var.get(a) or f"torch.zeros_like({use(a)})" for a in acts]
            if j - i == 1:
                grad, run = grads[0], use(acts[0])
            else:
                grad, run = f"torch.cat(({', '.join(grads)}), -1)", self.use_var(v.run_names[(grp.index, ri)])
            if j - i == len(grp.members):
                body.append(f"    {OPS[op].act_backward(grad, run, out=dl)}")
                break
            piece = nm.fresh(f"{dl}_{ri}")
            body.append(f"    {piece} = {OPS[op].act_backward(grad, run)}")
            pieces.append((i, piece))
        else:
            for k, L in enumerate(grp.members):
                if L not in grp.act_of:
                    gv = grad_var.get(L)
                    pieces.append((k, gv or f"torch.zeros_like({columns(dl, k, k + 1)})"))
            body.append(f"    torch.cat(({', '.join(p for _, p in sorted(pieces))}), -1, out={dl})")
        self._pass_on(grp, dl)

    def _pass_on(self, grp: Group, dl: str) -> None:
        """Pass the group's pre-activation gradient (in ``dl``) on to its arguments."""
        v, add, use, body, nm = self.v, self.add, self.use, self.body, self.v.names
        if len(grp.args) == 1:
            add(grp.args[0], _Term(1, dl, mm=grp.weight))
        else:
            da = nm.fresh(f"d_a{grp.index}")
            body.append(f"    {da} = matmul_w({dl}, {grp.weight})")
            pieces = [nm.fresh(f"d_{a}_g{grp.index}") for a in grp.args]
            body.append(f"    {', '.join(pieces)} = {da}.split(H, -1)")
            for a, p in zip(grp.args, pieces):
                add(a, _Term(1, p, simple=True))
        for a in grp.args:
            if a in v.schedule.loop_nodes:
                use(a)  # the runtime needs the argument of every step for dW

    def _plain_member(self, grp: Group, dl: str) -> None:
        """The pre-activation gradient of a group whose one member has no activation, into its buffer."""
        v, body = self.v, self.body
        L = grp.members[0]
        gv = self.grad_var.get(L)
        # only when the variable is L's own gradient (not an alias another node also reads)
        # and no other group reads it too
        line = self.defined_at.get(gv) if gv and len(v.schedule.member_groups[L]) == 1 else None
        if line is not None and line[2] != L:
            line = None
        factors = line[1].split(" * ") if line else []
        if line is not None and len(factors) == 2 and all(f.isidentifier() for f in factors):
            # `d_L = a * b` read only here: compute it straight into the buffer
            body[line[0]] = f"    torch.mul({factors[0]}, {factors[1]}, out={dl})"
        else:
            body.append(f"    {dl}.copy_({gv})" if gv else f"    {dl}.zero_()")


def _sum_expr(ts: list[_Term]) -> str:
    pos = [t for t in ts if t.sign > 0]
    neg = [t for t in ts if t.sign < 0]
    if pos:
        out = pos[0].expr
        rest = pos[1:]
    else:
        first = neg.pop(0)
        out = f"-{first.expr}" if first.simple else f"-({first.expr})"
        rest = []
    for t in rest:
        out += f" + {t.expr}"
    for t in neg:
        out += f" - {t.expr}" if t.simple or " " not in t.expr else f" - ({t.expr})"
    return out


__all__ = ["emit_backward"]
