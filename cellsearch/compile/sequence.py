"""The runtime of a compiled cell: the time loop and its custom autograd Function.

``CompiledCell`` (an ``nn.Module``) runs ``prologue`` once, then the time loop. When a
gradient is needed, the loop runs inside ``_Recurrence``, whose backward walks the steps in
reverse with the generated ``step_backward`` and then computes, once for the whole sequence,
every weight gradient (one matmul per fused weight) and the gradients of the hoisted
tensors (handed back to autograd, which turns them into input-weight gradients, again one
matmul each). Nothing here indexes a sequence tensor inside the loop: sequences are split
with ``unbind`` and rebuilt with ``stack``.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from cellsearch.compile.attention import given_memories, memory_bias
from cellsearch.compile.codegen import CellProgram
from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS, start_states
from cellsearch.compile.fused import FusedProgram, can_fuse
from cellsearch.compile.cuda_graphs import CapturedLoop, GraphCache, Lease
from cellsearch.compile.matmuls import pack_for_backward, pack_for_forward
from cellsearch.compile.params import CellParameters
from cellsearch.compile.tokens import TokenInputs, look_up
from cellsearch.dsl.graph import CellGraph, prev_name
from cellsearch.errors import CellsearchError


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


def _packed(program: CellProgram, consts: Sequence[torch.Tensor], batch: int, backward: bool = False) -> tuple:
    """The constants with every fused weight prepacked for the step's (or backward step's) matmuls.
    Only for code that autograd does not differentiate (see compile/kernels.py)."""
    if not program.pack_weights:
        return tuple(consts)
    pack = pack_for_backward if backward else pack_for_forward
    return tuple(pack(c, batch) if kind == "weight" else c for c, kind in zip(consts, program.const_kinds))


def _run_loop(program: CellProgram, T: int, ext: Sequence[torch.Tensor], consts: Sequence[torch.Tensor],
              init: Sequence[torch.Tensor], keep_saved: bool):
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
    seqs, saved = _run_loop(program, T, ext, _packed(program, consts, batch_shape(program, init)[-1]), init,
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


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, program: CellProgram, T: int, n_ext: int, n_const: int, *tensors):
        outputs, seqs, saved, out = forward_pass(program, T, n_ext, n_const, tensors)
        ctx.program = program
        ctx.T = T
        ctx.seqs = seqs
        ctx.saved_steps = saved
        ctx.n_ext, ctx.n_const = n_ext, n_const
        ctx.save_for_backward(*tensors, *(() if out is None else (out,)))
        return outputs

    @staticmethod
    def backward(ctx, *grads):
        grads_out = backward_pass(ctx.program, ctx.T, ctx.n_ext, ctx.n_const, ctx.saved_tensors, ctx.seqs,
                                  ctx.saved_steps, grads, ctx.needs_input_grad[4:])
        return (None, None, None, None, *grads_out)


def backward_pass(program: CellProgram, T: int, n_ext: int, n_const: int, tensors: Sequence[torch.Tensor],
                  seqs: list, saved: list, grads: Sequence, needs_input_grad: Sequence[bool]) -> list:
    """The gradients of the time loop's inputs (ext, consts, initial states, in ``_Recurrence``'s
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
    step_consts = _packed(program, consts, B, backward=True)
    with _no_gc():
        for t in range(T - 1, -1, -1):
            if d_out_steps is not None:
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


@dataclass
class Prepared:
    """A cell's sequence after its prologue: the time loop's arguments and the hoisted states' sequences."""

    T: int
    ext: tuple  # per-step tensors, (T, ..., B, features)
    consts: tuple  # constants over the steps, in ``program.consts`` order
    rec_init: tuple  # initial values of the recurrent states
    hoisted: dict  # hoisted state -> its whole sequence
    tokens: torch.Tensor | None = None  # set: ``ext`` holds per-table-row values (V, 1, F) to look up (T, B)

    def looked_up(self) -> "Prepared":
        """The same with ``ext`` as per-step tensors (T, B, F) (see compile/tokens.py)."""
        if self.tokens is None:
            return self
        return Prepared(self.T, tuple(look_up(e, self.tokens) for e in self.ext), self.consts, self.rec_init,
                        self.hoisted)


POINTWISE_CHOICES = ("auto", "eager", "fused")


def runtime_program(program: CellProgram, device: torch.device, mode: str = "fused"):
    """The program whose step functions run the loop on ``device``: the fused Triton kernels
    (``fused.py``) where ``program.pointwise`` asks for them ("auto": on CUDA when Triton is
    there) and the loop's gradient is our own backward, else the eager generated code."""
    choice = program.pointwise
    if choice == "eager" or mode != "fused" or not program.schedule.recurrent_states:
        return program
    if program.graph.memory or program.graph.memory_states:  # the fused kernels are pointwise: memory ops are eager
        if choice == "fused":
            raise CellsearchError(f"pointwise='fused' does not support attend() or memory states "
                                  f"(cell '{program.graph.name}'); use 'auto' or 'eager'")
        return program
    if choice == "auto" and device.type != "cuda":
        return program
    if not can_fuse(device):
        if choice == "fused":
            raise CellsearchError("pointwise='fused' needs Triton on a CUDA device "
                                  "(or TRITON_INTERPRET=1 on the CPU)")
        return program
    if program.fused is None:
        program.fused = FusedProgram(program)
    return program.fused


def _unfusable(program: CellProgram, exc: Exception) -> bool:
    """After Triton failed on ``program``'s fused kernels (a compiler it does not support, say):
    with pointwise "auto", warn once and run this program's eager steps from now on (True)."""
    if program.pointwise != "auto" or not type(exc).__module__.startswith("triton"):
        return False
    warnings.warn(f"fused kernels of cell '{program.graph.name}' failed in Triton ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); running its eager steps", RuntimeWarning,
                  stacklevel=4)
    program.pointwise = "eager"
    return True


class _GraphedRecurrence(torch.autograd.Function):
    """``_Recurrence`` replaying a captured CUDA graph of the loop (``graphs.py``)."""

    @staticmethod
    def forward(ctx, loop: CapturedLoop, n_inputs: int, *tensors):
        outputs = loop.run_forward(tensors)
        ctx.lease = Lease(loop)
        return outputs

    @staticmethod
    def backward(ctx, *grads):
        lease: Lease = ctx.lease
        lease.check()
        grads_out = lease.loop.run_backward(grads, ctx.needs_input_grad[2:])
        lease.release()
        return (None, None, *grads_out)


def _capture(program, T: int, n_ext: int, n_const: int, tensors: Sequence[torch.Tensor]) -> CapturedLoop | None:
    """A leased CUDA-graph capture of the loop at these shapes, or None (run it eagerly)."""
    if program.graph_cache is None:
        program.graph_cache = GraphCache()
    key = (T, n_ext, n_const, tuple((tuple(t.shape), t.dtype, t.device) for t in tensors))

    def make() -> CapturedLoop:
        def forward(inputs):
            outputs, seqs, saved, out = forward_pass(program, T, n_ext, n_const, inputs)
            return outputs, (seqs, saved, out)

        def backward(state, grads, needs):
            seqs, saved, out = state
            inputs = (*loop_inputs, *(() if out is None else (out,)))
            return backward_pass(program, T, n_ext, n_const, inputs, seqs, saved, grads, needs)

        loop = CapturedLoop(forward, backward, tensors)
        loop_inputs = loop.static_in
        return loop

    return program.graph_cache.acquire(key, make)


def recur(program: CellProgram, mode: str, T: int, ext: Sequence[torch.Tensor], consts: Sequence[torch.Tensor],
          init: Sequence[torch.Tensor]) -> tuple[torch.Tensor | None, tuple]:
    """The time loop: (the output sequence if the output is a recurrent state, else None; the
    recurrent states' final values). Through ``_Recurrence`` when a gradient is needed and
    ``mode`` is "fused" (on CUDA as a replayed CUDA graph where ``program.cuda_graphs``); a
    population's stacked tensors (see ``compile/population.py``) work the same."""
    schedule = program.schedule
    if not schedule.recurrent_states:
        return None, ()
    has_out = schedule.graph.output in schedule.recurrent_states
    tensors = (*ext, *consts, *init)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if need_grad and mode == "fused":
        runtime = runtime_program(program, init[0].device)
        try:
            loop = (_capture(runtime, T, len(ext), len(consts), tensors)
                    if program.cuda_graphs and init[0].is_cuda else None)
            if loop is not None:
                res = _GraphedRecurrence.apply(loop, len(tensors), *tensors)
            else:
                res = _Recurrence.apply(runtime, T, len(ext), len(consts), *tensors)
        except Exception as exc:
            if runtime is program or not _unfusable(program, exc):
                raise
            return recur(program, mode, T, ext, consts, init)
        return (res[0], tuple(res[1:])) if has_out else (None, tuple(res))
    # no gradient through this loop (inference), or plain autograd through every step
    runtime = program if need_grad else runtime_program(program, init[0].device, mode)
    loop_consts = consts if need_grad else _packed(runtime, consts, batch_shape(program, init)[-1])
    try:
        seqs, _ = _run_loop(runtime, T, ext, loop_consts, init, keep_saved=False)
    except Exception as exc:
        if runtime is program or not _unfusable(program, exc):
            raise
        return recur(program, mode, T, ext, consts, init)
    out = None
    if has_out:
        k = schedule.recurrent_states.index(schedule.graph.output)
        out = torch.stack([st[k] for st in seqs], time_dim(program, init))
    return out, tuple(seqs[-1])


class CompiledCell(nn.Module):
    """A cell compiled for a whole sequence: ``out, state = cell(x, state, static)``.

    Shapes: ``x`` (T, B, input_size) (a tuple for several per-step inputs), ``state`` a tuple
    of (B, hidden_size) in ``graph.states`` order (zeros when omitted), ``static`` a tuple of
    (B, static_size), ``memory`` one ``Memory`` (values (B, N, hidden_size), mask (B, N) or
    None) per memory of the cell. Returns (T, B, hidden_size) and the tuple of final states. The device
    and dtype are those of the parameters; nothing here is CPU-specific.

    ``mode``: "fused" (default) uses the generated backward; "autograd" runs the same
    generated step under plain autograd (slower, a second opinion for tests);
    ``compile=True`` wraps the step functions in ``torch.compile`` (not the unrolled loop).
    ``pointwise``: "auto" (default: fused Triton kernels per stage on CUDA where Triton is
    installed, the eager generated code elsewhere), "fused" (always; on CPU only under
    ``TRITON_INTERPRET=1``) or "eager". ``cuda_graphs``: on CUDA, capture the training loop
    (forward and backward) once per shape and replay it (``graphs.py``).
    """

    def __init__(self, graph: CellGraph, input_size: int, hidden_size: int, static_size: int | None = None,
                 params: CellParameters | None = None, mode: str = "fused", compile: bool = False,
                 pointwise: str = "auto", cuda_graphs: bool = True, memory_rows: int = DEFAULT_MEMORY_ROWS):
        super().__init__()
        if mode not in ("fused", "autograd"):
            raise ValueError(f"mode must be 'fused' or 'autograd', not {mode!r}")
        if pointwise not in POINTWISE_CHOICES:
            raise ValueError(f"pointwise must be one of {', '.join(POINTWISE_CHOICES)}, not {pointwise!r}")
        self.graph = graph
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.static_size = static_size if static_size is not None else hidden_size
        self.memory_rows = memory_rows  # rows of a memory state (memory_states)
        self.params = params if params is not None else CellParameters(graph, input_size, hidden_size, static_size)
        self.program = CellProgram(graph, input_size, hidden_size, static_size).load()
        self.program.pointwise = "eager" if compile else pointwise  # torch.compile replaces the eager steps
        self.program.cuda_graphs = cuda_graphs
        self.mode = mode
        if compile:
            self._compile_steps()

    def _compile_steps(self) -> None:
        p = self.program
        if p.step is None:
            return
        # Compiled graphs specialise on aliasing between their inputs, and the runtime passes
        # views (unbind, chunk) of shared buffers; give them standalone tensors instead.
        def own(ts):
            return tuple(t if t is None or t._base is None else t.clone() for t in ts)

        p.pack_weights = False  # inductor makes its own choices: it traces the plain-tensor paths
        compiled_step = torch.compile(p.step, dynamic=False)

        def step(xt, prev, consts):
            return compiled_step(own(xt), own(prev), own(consts))

        p.step = step
        # The generated backward writes into views of the runtime's whole-sequence buffers;
        # compiled code should not mutate its inputs, so it writes into fresh local tensors
        # and the copy into the buffers happens outside.
        widths = [len(grp.members) * p.schedule.hidden_size for grp in p.schedule.groups]
        eager_backward = p.step_backward

        def functional_backward(d_new, xt, prev, consts, saved):
            d_lin = tuple(d_new[0].new_empty(*batch_shape(p, prev), w) for w in widths)
            return (*eager_backward(d_new, xt, prev, consts, saved, d_lin), d_lin)

        compiled_backward = torch.compile(functional_backward, dynamic=False)

        def step_backward(d_new, xt, prev, consts, saved, d_lin):
            *grads, local = compiled_backward(own(d_new), own(xt), own(prev), own(consts), own(saved))
            for buf, value in zip(d_lin, local):
                buf.copy_(value)
            return tuple(grads)

        p.step_backward = step_backward

    @property
    def code(self) -> str:
        return self.program.source

    @property
    def reads_token_rows(self) -> bool:
        """Whether ``prepare`` runs the prologue once per table row for ``TokenInputs`` (see
        compile/tokens.py): a cell with one per-step input, no static inputs or memories and no
        hoisted states (a hoisted state's sequence is shifted in time, not a function of one row)."""
        g, schedule = self.graph, self.program.schedule
        return (len(g.inputs) == 1 and not g.static and not g.memory and not g.memory_states
                and not schedule.hoisted_states and bool(schedule.recurrent_states))

    def forward(self, x, state: Sequence[torch.Tensor] | None = None, static: Sequence[torch.Tensor] | None = None,
                memory: Sequence | None = None):
        prepared = self.prepare(x, state, static, memory).looked_up()
        out, finals = recur(self.program, self.mode, prepared.T, prepared.ext, prepared.consts, prepared.rec_init)
        return self.finish(prepared, out, finals)

    def prepare(self, x, state: Sequence[torch.Tensor] | None = None,
                static: Sequence[torch.Tensor] | None = None, memory: Sequence | None = None) -> "Prepared":
        """Check the arguments and run the prologue: what the time loop (``recur``) needs. For
        ``TokenInputs`` that this cell reads by table row (``reads_token_rows``) the prologue runs
        over the table and the result still has to be looked up (``Prepared.looked_up``)."""
        g = self.graph
        schedule = self.program.schedule
        if isinstance(x, TokenInputs):
            if self.reads_token_rows and not static and not memory:
                return self._prepare_rows(x, state)
            x = x.materialize()
        xs = (x,) if isinstance(x, torch.Tensor) else tuple(x)
        if len(xs) != len(g.inputs):
            raise CellsearchError(f"cell '{g.name}' has {len(g.inputs)} per-step input(s) "
                                  f"({', '.join(g.inputs)}), got {len(xs)}")
        if not xs:
            raise CellsearchError("a cell without per-step inputs needs a sequence length")  # pragma: no cover
        for xi in xs:
            if xi.dim() != 3 or xi.shape[-1] != self.input_size:
                raise CellsearchError(f"expected input of shape (T, B, {self.input_size}), got {tuple(xi.shape)}")
        T, B = xs[0].shape[:2]
        if T == 0:
            raise CellsearchError("the input sequence is empty (T = 0)")
        statics = tuple(static or ())
        if len(statics) != len(g.static):
            raise CellsearchError(f"cell '{g.name}' has {len(g.static)} static input(s), got {len(statics)}")
        state = self._states(state, B, xs[0])
        memories = given_memories(g, memory, B, self.hidden_size)
        statics = (*statics, *(m.values for m in memories), *(memory_bias(m) for m in memories))
        hoisted_init, rec_init = (tuple(state[s] for s in names)
                                  for names in (schedule.hoisted_states, schedule.recurrent_states))
        ext, consts, hoisted_seqs = self.program.prologue(self.params, T, B, xs, statics, hoisted_init)
        return Prepared(T, tuple(ext), tuple(consts), rec_init, dict(zip(schedule.hoisted_states, hoisted_seqs)))

    def _states(self, state, batch: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The given states (where they start, when None) by name, checked for their number."""
        g = self.graph
        state = tuple(state) if state is not None else start_states(g, batch, self.hidden_size, self.memory_rows,
                                                                       like)
        if len(state) != len(g.states):
            raise CellsearchError(f"cell '{g.name}' has {len(g.states)} states ({', '.join(g.states)}), "
                                  f"got {len(state)}")
        return dict(zip(g.states, state))

    def _prepare_rows(self, x: TokenInputs, state) -> "Prepared":
        if x.tokens.dim() != 2 or x.table.dim() != 2 or x.table.shape[-1] != self.input_size:
            raise CellsearchError(f"expected tokens (T, B) and a table (V, {self.input_size}), "
                                  f"got {tuple(x.tokens.shape)} and {tuple(x.table.shape)}")
        T, B = x.tokens.shape
        if T == 0:
            raise CellsearchError("the input sequence is empty (T = 0)")
        state = self._states(state, B, x.table)
        rec_init = tuple(state[s] for s in self.program.schedule.recurrent_states)
        rows, consts, _ = self.program.prologue(self.params, x.table.shape[0], 1, (x.table.unsqueeze(1),), (), ())
        return Prepared(T, tuple(rows), tuple(consts), rec_init, {}, x.tokens)

    def finish(self, prepared: "Prepared", out: torch.Tensor | None, finals: Sequence[torch.Tensor]):
        """``forward``'s result from the prologue's hoisted sequences and the loop's results."""
        g = self.graph
        final: dict[str, torch.Tensor] = {s: seq[-1] for s, seq in prepared.hoisted.items()}
        final.update(zip(self.program.schedule.recurrent_states, finals))
        if out is None:
            out = prepared.hoisted.get(g.output)
        return out, tuple(final[s] for s in g.states)

    def extra_repr(self) -> str:
        return (f"cell={self.graph.name!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"mode={self.mode!r}")


def compile_cell(graph: CellGraph | str, input_size: int, hidden_size: int, static_size: int | None = None,
                 **kwargs) -> CompiledCell:
    """Compile a cell (a CellGraph, a built-in name or a YAML path) into a sequence module."""
    from cellsearch.library import resolve_cell

    return CompiledCell(resolve_cell(graph), input_size, hidden_size, static_size, **kwargs)


__all__ = ["CompiledCell", "POINTWISE_CHOICES", "Prepared", "backward_pass", "compile_cell", "forward_pass", "prev_name",
           "recur", "runtime_program"]
