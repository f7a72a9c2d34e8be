"""Symbolic backward: the source of ``step_backward``, derived node by node from the step.

``step_backward(d_new, xt, prev, consts, saved, d_lin)`` walks the step's nodes in reverse,
sums the gradient terms each value receives (a value read once passes its gradient on as an
alias, with no op), and returns the gradients of the previous states, the per-step tensors,
the constants and the diag scales. It leaves the weight gradients out: it writes each fused
matmul's pre-activation gradient into ``d_lin`` (views of whole-sequence buffers), and the
runtime (``sequence.py``) computes dW for the whole sequence as one matmul after the loop,
which is where most of the speed comes from. What the backward reads of the forward step
becomes the step's ``saved`` tuple.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellsearch.compile.schedule import Group
from cellsearch.compile.variables import Variables, columns, unpack
from cellsearch.dsl.graph import prev_name


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
            if node.op == "const":
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
        """Add the gradient contributions of node ``n`` (gradient ``d``) to its arguments."""
        v, add, use = self.v, self.add, self.use
        node = v.graph.node_map[n]
        args, op = node.args, node.op
        if op in ("add", "identity"):
            for a in args:
                add(a, _Term(1, d, simple=True))
        elif op == "sub":
            add(args[0], _Term(1, d, simple=True))
            add(args[1], _Term(-1, d, simple=True))
        elif op in ("neg", "one_minus"):
            add(args[0], _Term(-1, d, simple=True))
        elif op == "mul":
            add(args[0], _Term(1, f"{d} * {use(args[1])}"))
            add(args[1], _Term(1, f"{d} * {use(args[0])}"))
        elif op == "blend":
            z, a, b = args
            if not v.is_const(z):
                add(z, _Term(1, f"{d} * ({use(a)} - {use(b)})"))
            t = v.names.fresh(f"d_{n}_z")
            self.body.append(f"    {t} = {d} * {use(z)}")
            add(a, _Term(1, t, simple=True))
            add(b, _Term(1, f"{d} - {t}"))
        elif op == "diag":
            add(args[0], _Term(1, f"{d} * {v.diag_param_var[n]}"))
            diag_terms[n] = f"{d} * {use(args[0])}"
        elif op in ("tanh", "sigmoid", "relu"):
            add(args[0], _Term(1, _act_backward(op, d, use(n))))
        elif op == "leaky_relu":
            add(args[0], _Term(1, f"aten.leaky_relu_backward({d}, {use(args[0])}, {node.attr('slope')!r}, False)"))
        elif op == "attend":
            self.attend_rule(n, d)
        elif op in ("address", "read", "write"):
            # (the helpers of compile/memory.py return the gradients of the arguments in order)
            grads = [v.names.fresh(f"d_{n}_{k}") for k in range(len(args))]
            self.body.append(f"    {', '.join(grads)} = {op}_backward({d}, {', '.join(use(a) for a in args)})")
            for a, g in zip(args, grads):
                add(a, _Term(1, g, simple=True))
        elif op == "linear":
            pass  # gradients of linear nodes are gathered per group
        else:  # pragma: no cover
            raise NotImplementedError(op)

    def attend_rule(self, n: str, d: str) -> None:
        """attend(q, M): gradients of the query, the memory and (through the aux values) of the
        keys and parameters, from the weights the step saved (compile/attention.py)."""
        v, add, use = self.v, self.add, self.use
        node = v.graph.node_map[n]
        q, memory = node.args
        kind = node.attr("kind")
        aux = v.attend_aux[n]
        saved = [self.use_var(o) for o in v.attend_out[n]]
        fresh = v.names.fresh
        if kind == "dot":
            outs = {"q": fresh(f"d_{n}_q"), "memory": fresh(f"d_{n}_m")}
            call = f"attend_dot_backward({d}, {use(q)}, {v.ref(memory)}, {saved[0]})"
        elif kind == "general":
            outs = {"q": fresh(f"d_{n}_q"), "keys": fresh(f"d_{n}_k"), "memory": fresh(f"d_{n}_m")}
            call = f"attend_general_backward({d}, {use(q)}, {v.ref(aux['keys'])}, {v.ref(memory)}, {saved[0]})"
        else:
            outs = {"q": fresh(f"d_{n}_q"), "wq": fresh(f"d_{n}_wq"), "keys": fresh(f"d_{n}_k"),
                    "v": fresh(f"d_{n}_v"), "memory": fresh(f"d_{n}_m")}
            call = (f"attend_additive_backward({d}, {use(q)}, {v.ref(aux['wq'])}, {v.ref(aux['v'])}, "
                    f"{v.ref(memory)}, {saved[0]}, {saved[1]})")
        self.body.append(f"    {', '.join(outs.values())} = {call}")
        add(q, _Term(1, outs.pop("q"), simple=True))
        add(memory, _Term(1, outs.pop("memory"), simple=True))
        for role, var in outs.items():
            add(aux[role], _Term(1, var, simple=True))

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
                body.append(f"    {_act_backward(op, grad, run, out=dl)}")
                break
            piece = nm.fresh(f"{dl}_{ri}")
            body.append(f"    {piece} = {_act_backward(op, grad, run)}")
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
        if len(factors) == 2 and all(f.isidentifier() for f in factors):
            # `d_L = a * b` read only here: compute it straight into the buffer
            body[line[0]] = f"    torch.mul({factors[0]}, {factors[1]}, out={dl})"
        else:
            body.append(f"    {dl}.copy_({gv})" if gv else f"    {dl}.zero_()")


def _act_backward(op: str, grad: str, out_value: str, out: str | None = None) -> str:
    """Backward of an activation from its output value (optionally written into ``out``)."""
    dest = f", grad_input={out}" if out else ""
    if op == "relu":
        return f"aten.threshold_backward({grad}, {out_value}, 0{dest})"
    return f"aten.{op}_backward({grad}, {out_value}{dest})"


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
