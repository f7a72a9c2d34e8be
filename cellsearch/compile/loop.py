"""The time loop of a compiled cell, run forward and in reverse: the steps, then every weight gradient.

``forward_pass`` runs ``prologue``'s per-step tensors through the generated ``step`` for every
time step and keeps what the backward needs; ``backward_pass`` walks the steps in reverse with
the generated ``step_backward`` and then computes, once for the whole sequence, every weight
gradient (one matmul per fused weight) and the gradients of the hoisted tensors (handed back
to autograd, which turns them into input-weight gradients, again one matmul each). Nothing
here indexes a sequence tensor inside the loop: sequences are split with ``unbind`` and
rebuilt with ``stack``. How the loop runs under autograd: ``recurrence.py``.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator, Sequence

import torch

from cellsearch.compile.codegen import CellProgram
from cellsearch.compile.matmuls import pack_for_backward, pack_for_forward


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Keep Python's cyclic garbage collector out of the time loops: they create thousands of
    tensors and tuples (no cycles), which would trigger it again and again (~2% of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def packed(program: CellProgram, consts: Sequence[torch.Tensor], batch: int, backward: bool = False) -> tuple:
    """The constants with every fused weight prepacked for the step's (or backward step's) matmuls.
    Only for code that autograd does not differentiate (see compile/kernels.py)."""
    if not program.pack_weights:
        return tuple(consts)
    pack = pack_for_backward if backward else pack_for_forward
    return tuple(pack(c, batch) if kind == "weight" else c for c, kind in zip(consts, program.const_kinds))


def run_loop(program: CellProgram, T: int, ext: Sequence[torch.Tensor], consts: Sequence[torch.Tensor],
              init: Sequence[torch.Tensor], keep_saved: bool):
    """Run the step over ``T`` steps with the garbage collector paused; returns the outputs, the
    state sequences, what each step saved for the backward (if ``keep_saved``) and the output
    sequence."""
    with _no_gc():
        return _loop(program, T, ext, consts, init, keep_saved)


def batch_shape(program: CellProgram, init: Sequence[torch.Tensor]) -> torch.Size:
    """The leading dimensions of the loop's states up to the batch: (B,) for one cell, (K, B) for a
    population (a vector state is (…, B, H), a memory state (…, B, N, H))."""
    memory_states = program.graph.memory_states
    for name, state in zip(program.schedule.recurrent_states, init):
        if name not in memory_states:
            return state.shape[:-1]
    return init[0].shape[:-2]


def time_dim(program: CellProgram, init: Sequence[torch.Tensor]) -> int:
    """Where the time dimension of a sequence is: (T, B, ·) for one cell, members first (K, T, B, ·)
    for a population."""
    return len(batch_shape(program, init)) - 1


def _loop(program: CellProgram, T: int, ext, consts, init, keep_saved: bool):
    step = program.step
    assert step is not None, "the loop runs only for a cell with a recurrent state"
    td = time_dim(program, init)
    per_step = list(zip(*[e.unbind(td) for e in ext])) if ext else [()] * T  # step t -> tuple of views
    prev = tuple(init)
    seqs: list[tuple] = []
    saved: list[tuple] = []
    consts = tuple(consts)
    for t in range(T):
        prev, s = step(per_step[t], prev, consts)
        seqs.append(prev)
        if keep_saved:
            saved.append(s)
    return seqs, saved


def forward_pass(program: CellProgram, T: int, n_ext: int, n_const: int, tensors: Sequence[torch.Tensor]):
    """The time loop with what its backward needs: (outputs, seqs, saved steps, output sequence or None).
    ``outputs`` are the output sequence (if the output is a recurrent state) and the final states."""
    ext = tensors[:n_ext]
    consts = tensors[n_ext:n_ext + n_const]
    init = tensors[n_ext + n_const:]
    seqs, saved = run_loop(program, T, ext, packed(program, consts, batch_shape(program, init)[-1]), init,
                            keep_saved=True)
    rs = program.schedule.recurrent_states
    outputs = []
    out = None
    if program.schedule.graph.output in rs:
        k = rs.index(program.schedule.graph.output)
        out = torch.stack([st[k] for st in seqs], time_dim(program, init))
        outputs.append(out)
    # Clones: an output that ctx also holds (through seqs or saved) would form a reference
    # cycle through its grad_fn and live until the garbage collector runs.
    outputs.extend(v.clone() for v in seqs[-1])
    return tuple(outputs), seqs, saved, out


def backward_pass(program: CellProgram, T: int, n_ext: int, n_const: int, tensors: Sequence[torch.Tensor],
                  seqs: list, saved: list, grads: Sequence, needs_input_grad: Sequence[bool]) -> list:
    """The gradients of the time loop's inputs (ext, consts, initial states, in ``recurrence.Recurrence``'s
    order) given those of its outputs: the steps in reverse, then every weight gradient as one
    matmul per fused weight. ``tensors`` are the loop's inputs (and the output sequence, if the
    output is a recurrent state); ``needs_input_grad`` says which inputs need a gradient."""
    schedule = program.schedule
    ext = tensors[:n_ext]
    consts = tensors[n_ext:n_ext + n_const]
    init = tensors[n_ext + n_const:n_ext + n_const + len(schedule.recurrent_states)]
    out = tensors[-1] if schedule.graph.output in schedule.recurrent_states else None
    rs = schedule.recurrent_states
    out_k = rs.index(schedule.graph.output) if out is not None else None
    td = time_dim(program, init)
    if out_k is not None:
        d_out, d_final = grads[0], grads[1:]
        d_out_steps = d_out.unbind(td) if d_out is not None else None
    else:
        d_out_steps, d_final = None, grads
    d_state = [d if d is not None else torch.zeros_like(v) for d, v in zip(d_final, init)]
    per_step = list(zip(*[e.unbind(td) for e in ext])) if ext else [()] * T
    *members, B = batch_shape(program, init)  # members: [], or [K] for a population
    ref = init[0]
    # Pre-activation gradients of every fused matmul for the whole sequence: the step writes
    # into views of these, and dW = d_lin^T @ argument is then one matmul. Zeroed (not empty)
    # so the pages are touched once here rather than page-faulted step by step in the loop.
    d_lin = [ref.new_zeros(*members, T, B, len(grp.members) * program.schedule.hidden_size)
             for grp in schedule.groups]
    d_lin_steps = list(zip(*[buf.unbind(td) for buf in d_lin])) if d_lin else [()] * T
    d_ext_steps: list[list] = [[None] * T for _ in ext]
    d_const_acc: list = [None] * n_const
    d_diag_steps: list[list] = [[None] * T for _ in program.loop_diags]
    step_backward = program.step_backward
    assert step_backward is not None, "the loop runs only for a cell with a recurrent state"
    step_consts = packed(program, consts, B, backward=True)
    with _no_gc():
        for t in range(T - 1, -1, -1):
            if d_out_steps is not None and out_k is not None:  # both set exactly when the output is a state
                d_state[out_k] = d_state[out_k] + d_out_steps[t]
            prev = seqs[t - 1] if t > 0 else init
            d_prev, d_ext, d_const, d_diag = step_backward(tuple(d_state), per_step[t], prev, step_consts,
                                                           saved[t], d_lin_steps[t])
            for i, d in enumerate(d_ext):
                d_ext_steps[i][t] = d
            for i, d in enumerate(d_const):
                if d is not None:
                    d_const_acc[i] = d if d_const_acc[i] is None else d_const_acc[i] + d
            for i, d in enumerate(d_diag):
                d_diag_steps[i][t] = d
            d_state = [d if d is not None else torch.zeros_like(v) for d, v in zip(d_prev, init)]

    base_grad = {grp.base: d_lin[grp.index] for grp in schedule.groups if grp.base}
    grads_out: list = []
    for i, (name, e) in enumerate(zip(program.ext, ext)):
        if name in base_grad:
            grads_out.append(base_grad[name])
        elif any(d is None for d in d_ext_steps[i]):
            grads_out.append(None)
        else:
            grads_out.append(torch.stack(d_ext_steps[i], td).sum_to_size(e.shape))
    weight_i = diag_i = 0
    for i, (name, c, kind) in enumerate(zip(program.consts, consts, program.const_kinds)):
        if kind == "value":
            d = base_grad[name].sum(td) if name in base_grad else d_const_acc[i]
            grads_out.append(None if d is None else d.sum_to_size(c.shape))
        elif kind == "weight":
            grp = schedule.groups[weight_i]
            weight_i += 1
            grads_out.append(_weight_grad(program, grp, d_lin[grp.index], seqs, init, out, saved)
                             if needs_input_grad[n_ext + i] else None)
        else:  # the scale of a diag node
            steps = d_diag_steps[diag_i]
            diag_i += 1
            grads_out.append(torch.stack(steps).sum(0).sum_to_size(c.shape))
    grads_out.extend(d_state)
    return grads_out


def _weight_grad(program: CellProgram, grp, d_lin: torch.Tensor, seqs, init, out, saved) -> torch.Tensor:
    """dW of one fused matmul for the whole sequence: d_lin^T @ argument, block by block."""
    if d_lin.dim() == 4:  # a population's, members first
        return _population_weight_grad(program, grp, d_lin, seqs, init, out, saved)
    schedule = program.schedule
    rs = schedule.recurrent_states
    T = d_lin.shape[0]
    flat = d_lin.reshape(-1, d_lin.shape[-1]).t()  # (k*H, T*B)
    blocks = []
    for a in grp.args:
        if a in schedule.loop_nodes:  # an in-step value, saved at every step
            k = program.saved.index(program.names[a])
            arg = torch.stack([s[k] for s in saved])
            blocks.append(torch.mm(flat, arg.reshape(-1, arg.shape[-1])))
            continue
        # previous value of a recurrent state: the initial state, then the state's own sequence
        k = rs.index(schedule.graph.state_of_prev(a))
        first = torch.mm(d_lin[0].t(), init[k])
        if T == 1:
            blocks.append(first)
            continue
        rest = out[:-1] if (out is not None and rs[k] == schedule.graph.output) \
            else torch.stack([st[k] for st in seqs[:-1]])
        tail = d_lin[1:].reshape(-1, d_lin.shape[-1]).t()
        blocks.append(torch.addmm(first, tail, rest.reshape(-1, rest.shape[-1])))
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, 1)


def _members_first(seq: torch.Tensor) -> torch.Tensor:
    """(K, T, B, n) → (K, T·B, n): a population's whole-sequence values, one matrix per member."""
    return seq.reshape(seq.shape[0], -1, seq.shape[-1])


def _population_weight_grad(program: CellProgram, grp, d_lin: torch.Tensor, seqs, init, out, saved) -> torch.Tensor:
    """``_weight_grad`` of a population (d_lin (K, T, B, k*H)): one batched matmul per block."""
    schedule = program.schedule
    rs = schedule.recurrent_states
    flat = _members_first(d_lin).transpose(1, 2)  # (K, k*H, T*B)
    blocks = []
    for a in grp.args:
        if a in schedule.loop_nodes:
            k = program.saved.index(program.names[a])
            arg = torch.stack([s[k] for s in saved], 1)
        else:  # the previous values of a state: its initial value, then its own sequence
            k = rs.index(schedule.graph.state_of_prev(a))
            if out is not None and rs[k] == schedule.graph.output and d_lin.shape[1] > 1:
                # the output sequence as it is (no copy with the initial value in front): the first
                # step's term, plus the others against the output shifted by one step
                first = torch.bmm(d_lin[:, 0].transpose(1, 2), init[k])
                tail = _members_first(d_lin[:, 1:]).transpose(1, 2)
                blocks.append(torch.baddbmm(first, tail, _members_first(out[:, :-1])))
                continue
            arg = torch.stack([init[k], *(st[k] for st in seqs[:-1])], 1)
        blocks.append(torch.bmm(flat, _members_first(arg)))
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, -1)
