"""Forward emission: the source of ``prologue`` and ``step``.

* ``prologue(P, T, B, inputs, statics, inits)`` runs once per sequence: every hoisted node for
  all T steps at once (a linear term that reads an input is one matmul over the whole
  sequence, stored in the layout of the in-loop matmul it feeds, as cuDNN does), and the fused
  recurrent weight matrices. It returns the per-step tensors, the constants and the sequences
  of the hoisted states.
* ``step(xt, prev, consts)`` is one time step: one matmul per group (see ``schedule``), then
  the elementwise work. It returns the new states and the values ``step_backward`` needs.
"""

from __future__ import annotations

from cellsearch.compile.params import bias_name, weight_name
from cellsearch.compile.schedule import Group
from cellsearch.compile.variables import Variables, columns, unpack
from cellsearch.ops.registry import OPS


def _expr(v: Variables, name: str, param=None) -> str:
    """Forward expression of a non-linear node (its op's ``forward_expr``; ``param``: a diag's scale)."""
    node = v.graph.node_map[name]
    return OPS[node.op].forward_expr(v, node, [v.ref(x) for x in node.args], param)


def _weight_sum(v: Variables, node_name: str, arg: str) -> str:
    node = v.graph.node_map[node_name]
    ws = [f"P.{weight_name(node_name, k)}" for k, a in enumerate(node.args) if a == arg]
    return " + ".join(ws) if len(ws) == 1 else "(" + " + ".join(ws) + ")"


def _size_expr(v: Variables, name: str) -> str:
    kind = v.graph.leaf_kinds.get(name, "")
    return {"input": "I", "static": "S"}.get(kind, "H")


def emit_prologue(v: Variables) -> str:
    """``prologue``: inputs, hoisted nodes and the fused weights and bases, for all steps at once."""
    g, schedule, nm = v.graph, v.schedule, v.names
    lines = ["def prologue(P, T, B, inputs, statics, inits):",
             '    """Everything that does not depend on a previous state, for all steps at once."""']
    lines += unpack([nm[x] for x in g.inputs], "inputs")
    # statics: the static inputs, then every memory, then every memory's score bias
    lines += unpack([nm[x] for x in g.static] + [nm[m] for m in g.memory]
                    + [v.ref(v.memory_bias[m]) for m in g.memory], "statics")
    init_names = [nm.fresh(f"{s}_init") for s in schedule.hoisted_states]
    lines += unpack(init_names, "inits")
    init_of = dict(zip(schedule.hoisted_states, init_names))
    for val in schedule.hoisted_order:
        if val in g.node_map:
            node = g.node_map[val]
            op = OPS[node.op]
            if op.is_literal:
                continue
            if op.is_matmul:
                terms: list[str] = []
                for k, a in enumerate(node.args):
                    if a in node.args[:k]:
                        continue
                    w = _weight_sum(v, val, a)
                    b = f", P.{bias_name(val)}" if (not terms and node.attr("bias")) else ""
                    terms.append(f"F.linear({v.ref(a)}, {w}{b})")
                lines.append(f"    {nm[val]} = {' + '.join(terms)}")
            elif op.has_scale:
                lines.append(f"    {nm[val]} = {_expr(v, val, f'P.{op.param_name(val)}')}")
            else:
                lines.append(f"    {nm[val]} = {_expr(v, val)}")
        else:  # the prev of a hoisted state: its sequence shifted by one step
            s = g.state_of_prev(val)
            seq = nm[s] if s in schedule.time_varying else f"{nm[s]}.expand(T, B, H)"
            lines.append(f"    {nm[val]} = torch.cat(({init_of[s]}.unsqueeze(0), {seq}[:-1]), 0)")
    for n, roles in v.attend_aux.items():
        node = g.node_map[n]
        memory = v.ref(node.args[OPS[node.op].memory_arg])
        for role, value in roles.items():
            if role != "bias":
                lines.append(f"    {v.ref(value)} = {OPS[node.op].aux_expr(n, role, memory)}")
    for grp in schedule.groups:
        lines += _group_weights(v, grp)
    ext = ", ".join(v.ext) + ("," if len(v.ext) == 1 else "")
    consts = []
    for name, kind in zip(v.consts, v.const_kinds):
        if kind == "scale":
            scaled = next(n for n, var in v.diag_param_var.items() if var == name)
            consts.append(f"P.{OPS[g.node_map[scaled].op].param_name(scaled)}")
        else:
            consts.append(name)
    const_txt = ", ".join(consts) + ("," if len(consts) == 1 else "")
    seqs = []
    for s in schedule.hoisted_states:
        seqs.append(nm[s] if s in schedule.time_varying else f"{nm[s]}.expand(T, B, H)")
    seq_txt = ", ".join(seqs) + ("," if len(seqs) == 1 else "")
    lines.append(f"    return ({ext}), ({const_txt}), ({seq_txt})")
    return "\n".join(lines)


def _group_weights(v: Variables, grp: Group) -> list[str]:
    """The prologue lines assembling a group's fused weight (and its base from the hoisted terms)."""
    g = v.graph
    lines = [f"    # group {grp.index}: {' + '.join(v.ref(a) for a in grp.args)} -> "
             f"[{', '.join(grp.members)}]"]
    ref_w = f"P.{weight_name(grp.members[0], 0)}"
    rows = []
    for L in grp.members:
        node = g.node_map[L]
        cols = []
        for a in grp.args:
            if a in node.args:
                cols.append(_weight_sum(v, L, a))
            else:
                cols.append(f"{ref_w}.new_zeros(H, {_size_expr(v, a)})")
        rows.append(cols[0] if len(cols) == 1 else f"torch.cat(({', '.join(cols)}), 1)")
    w = rows[0] if len(rows) == 1 else f"torch.cat(({', '.join(rows)}), 0)"
    lines.append(f"    {grp.weight} = {w}")
    if grp.base_kind:
        hoisted_args: list[str] = []
        for L, c in zip(grp.members, grp.carried):
            if c:
                for a in g.node_map[L].args:
                    if a not in v.schedule.loop_values and a not in hoisted_args:
                        hoisted_args.append(a)
        biases = []
        any_bias = False
        for L, c in zip(grp.members, grp.carried):
            if c and g.node_map[L].attr("bias"):
                biases.append(f"P.{bias_name(L)}")
                any_bias = True
            else:
                biases.append(f"{ref_w}.new_zeros(H)")
        bias = (biases[0] if len(biases) == 1 else f"torch.cat(({', '.join(biases)}), 0)") if any_bias else None
        terms: list[str] = []
        for a in hoisted_args:
            blocks = []
            for L, c in zip(grp.members, grp.carried):
                if c and a in g.node_map[L].args:
                    blocks.append(_weight_sum(v, L, a))
                else:
                    blocks.append(f"{ref_w}.new_zeros(H, {_size_expr(v, a)})")
            wa = blocks[0] if len(blocks) == 1 else f"torch.cat(({', '.join(blocks)}), 0)"
            b = f", {bias}" if (bias and not terms) else ""
            terms.append(f"F.linear({v.ref(a)}, {wa}{b})")
        lines.append(f"    {grp.base} = {' + '.join(terms) if terms else bias}")
    return lines


def emit_step(v: Variables) -> str:
    """``step``: the in-loop nodes of one time step."""
    g, schedule, nm = v.graph, v.schedule, v.names
    lines = v.step_header("step")
    lines.insert(1, '    """One time step: new states, and the values step_backward needs."""')
    emitted: set[int] = set()
    fold_into = {n: m for m, n in v.folded_mul.items()}
    for n in schedule.loop_nodes:
        node = g.node_map[n]
        op = OPS[node.op]
        if op.is_literal or n in v.fused_acts or n in v.folded_mul:
            continue
        if op.is_matmul:
            for gi in schedule.member_groups[n]:
                if gi not in emitted:
                    emitted.add(gi)
                    lines += _emit_group(v, schedule.groups[gi])
            parts = [v.part_names[(n, gi)] for gi in schedule.member_groups[n]]
            if len(parts) > 1:
                lines.append(f"    {nm[n]} = {' + '.join(parts)}")
        elif op.has_scale:
            lines.append(f"    {nm[n]} = {_expr(v, n, v.diag_param_var[n])}")
        elif op.reads_given_memory:
            lines.append(f"    {', '.join([nm[n], *v.attend_out[n]])} = {op.call(v, node, v.ref(node.args[0]), False)}")
        elif n in fold_into:
            m = fold_into[n]
            other = node.args[0] if node.args[1] == m else node.args[1]
            b, c = (v.ref(a) for a in g.node_map[m].args)
            lines.append(f"    {nm[n]} = torch.addcmul({v.ref(other)}, {b}, {c})")
        else:
            lines.append(f"    {nm[n]} = {_expr(v, n)}")
    new = ", ".join(nm[s] for s in schedule.recurrent_states) + ("," if len(schedule.recurrent_states) == 1 else "")
    saved = ", ".join(v.saved) + ("," if len(v.saved) == 1 else "")
    lines.append(f"    return ({new}), ({saved})")
    return "\n".join(lines)


def _emit_group(v: Variables, grp: Group) -> list[str]:
    """One fused matmul of the step, split into its members (and their activations)."""
    nm = v.names
    lines = [f"    # group {grp.index}: [{', '.join(grp.members)}] from {', '.join(grp.args)}"]
    if len(grp.args) == 1:
        a = v.ref(grp.args[0])
    else:
        a = nm.fresh(f"a{grp.index}")
        lines.append(f"    {a} = torch.cat(({', '.join(v.ref(x) for x in grp.args)}), -1)")
    if grp.base_kind:
        mm = f"linear_add({a}, {grp.weight}, {grp.base})"
    else:
        mm = f"linear({a}, {grp.weight})"
    parts = [v.part_names[(L, grp.index)] for L in grp.members]
    if len(parts) == 1:
        out = parts[0]
        lines.append(f"    {out} = {mm}")
    else:
        out = nm.fresh(f"lin{grp.index}")
        lines.append(f"    {out} = {mm}")
        if not grp.runs:
            lines.append(f"    {', '.join(parts)} = {out}.chunk({len(parts)}, -1)")
            return lines
    for ri, (i, j, op) in enumerate(grp.runs):
        acts = [nm[grp.act_of[L]] for L in grp.members[i:j]]
        cols = out if len(parts) == 1 else columns(out, i, j)
        if j - i == 1:
            lines.append(f"    {acts[0]} = {OPS[op].run_expr(cols)}")
        else:
            run = v.run_names[(grp.index, ri)]
            lines.append(f"    {run} = {OPS[op].run_expr(cols)}")
            lines.append(f"    {', '.join(acts)} = {run}.chunk({j - i}, -1)")
    if len(parts) > 1:
        for k, L in enumerate(grp.members):
            if L not in grp.act_of:
                lines.append(f"    {parts[k]} = {columns(out, k, k + 1)}")
    return lines


__all__ = ["emit_prologue", "emit_step"]
