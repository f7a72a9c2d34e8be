"""``CompiledCell``: a cell compiled for a whole sequence, as a torch module.

``CompiledCell(graph, input_size, hidden_size)`` checks its arguments, runs the generated
``prologue`` once over the sequence, then the time loop (``recurrence.recur``), and gives the
output sequence and the final states. ``compile_cell`` builds one from a graph, a built-in
cell's name or a YAML path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from cellsearch.compile.attention import given_memories, memory_bias
from cellsearch.compile.codegen import CellProgram
from cellsearch.compile.loop import batch_shape
from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS, start_states
from cellsearch.compile.params import CellParameters
from cellsearch.compile.pointwise import POINTWISE_CHOICES
from cellsearch.compile.recurrence import recur
from cellsearch.compile.tokens import TokenInputs, look_up
from cellsearch.dsl.graph import CellGraph
from cellsearch.errors import CellsearchError


# what a cell reads per step: one (T, B, F) tensor, one per per-step input, or token ids with a table
CellInput = torch.Tensor | Sequence[torch.Tensor] | TokenInputs


@dataclass
class Prepared:
    """A cell's sequence after its prologue: the time loop's arguments and the hoisted states' sequences."""

    T: int
    ext: tuple[torch.Tensor, ...]  # per-step tensors, (T, ..., B, features)
    consts: tuple[torch.Tensor, ...]  # constants over the steps, in ``program.consts`` order
    rec_init: tuple[torch.Tensor, ...]  # initial values of the recurrent states
    hoisted: dict[str, torch.Tensor]  # hoisted state -> its whole sequence
    tokens: torch.Tensor | None = None  # set: ``ext`` holds per-table-row values (V, 1, F) to look up (T, B)

    def looked_up(self) -> "Prepared":
        """The same with ``ext`` as per-step tensors (T, B, F) (see compile/tokens.py)."""
        if self.tokens is None:
            return self
        return Prepared(self.T, tuple(look_up(e, self.tokens) for e in self.ext), self.consts, self.rec_init,
                        self.hoisted)


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
    (forward and backward) once per shape and replay it (``cuda_graphs.py``).
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
        def own(ts: Sequence[torch.Tensor | None]) -> tuple[torch.Tensor | None, ...]:
            return tuple(t if t is None or t._base is None else t.clone() for t in ts)

        p.pack_weights = False  # inductor makes its own choices: it traces the plain-tensor paths
        compiled_step = torch.compile(p.step, dynamic=False)

        def step(xt: Any, prev: Any, consts: Any) -> Any:
            return compiled_step(own(xt), own(prev), own(consts))

        p.step = step
        # The generated backward writes into views of the runtime's whole-sequence buffers;
        # compiled code should not mutate its inputs, so it writes into fresh local tensors
        # and the copy into the buffers happens outside.
        widths = [len(grp.members) * p.schedule.hidden_size for grp in p.schedule.groups]
        eager_backward = p.step_backward
        assert eager_backward is not None  # a program with a step has its backward

        def functional_backward(d_new: Any, xt: Any, prev: Any, consts: Any, saved: Any) -> tuple[Any, ...]:
            d_lin = tuple(d_new[0].new_empty(*batch_shape(p, prev), w) for w in widths)
            return (*eager_backward(d_new, xt, prev, consts, saved, d_lin), d_lin)

        compiled_backward = torch.compile(functional_backward, dynamic=False)

        def step_backward(d_new: Any, xt: Any, prev: Any, consts: Any, saved: Any, d_lin: Any) -> tuple[Any, ...]:
            *grads, local = compiled_backward(own(d_new), own(xt), own(prev), own(consts), own(saved))
            for buf, value in zip(d_lin, local):
                buf.copy_(value)
            return tuple(grads)

        p.step_backward = step_backward

    @property
    def code(self) -> str:
        """The Python source the compiler generated for this cell (``cellsearch cells code``)."""
        return self.program.source

    @property
    def reads_token_rows(self) -> bool:
        """Whether ``prepare`` runs the prologue once per table row for ``TokenInputs`` (see
        compile/tokens.py): a cell with one per-step input, no static inputs or memories and no
        hoisted states (a hoisted state's sequence is shifted in time, not a function of one row)."""
        g, schedule = self.graph, self.program.schedule
        return (len(g.inputs) == 1 and not g.static and not g.memory and not g.memory_states
                and not schedule.hoisted_states and bool(schedule.recurrent_states))

    def forward(self, x: CellInput, state: Sequence[torch.Tensor] | None = None,
                static: Sequence[torch.Tensor] | None = None,
                memory: Sequence[Any] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Run the cell over a sequence: ``(output (T, B, hidden_size), final states)`` (shapes in the class docstring)."""
        prepared = self.prepare(x, state, static, memory).looked_up()
        out, finals = recur(self.program, self.mode, prepared.T, prepared.ext, prepared.consts, prepared.rec_init)
        return self.finish(prepared, out, finals)

    def prepare(self, x: CellInput, state: Sequence[torch.Tensor] | None = None,
                static: Sequence[torch.Tensor] | None = None, memory: Sequence[Any] | None = None) -> "Prepared":
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
        states = self._states(state, B, xs[0])
        memories = given_memories(g, memory, B, self.hidden_size)
        statics = (*statics, *(m.values for m in memories), *(memory_bias(m) for m in memories))
        hoisted_init, rec_init = (tuple(states[s] for s in names)
                                  for names in (schedule.hoisted_states, schedule.recurrent_states))
        ext, consts, hoisted_seqs = self.program.prologue(self.params, T, B, xs, statics, hoisted_init)
        return Prepared(T, tuple(ext), tuple(consts), rec_init, dict(zip(schedule.hoisted_states, hoisted_seqs)))

    def _states(self, state: Sequence[torch.Tensor] | None, batch: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The given states (where they start, when None) by name, checked for their number."""
        g = self.graph
        given = tuple(state) if state is not None else start_states(g, batch, self.hidden_size, self.memory_rows,
                                                                       like)
        if len(given) != len(g.states):
            raise CellsearchError(f"cell '{g.name}' has {len(g.states)} states ({', '.join(g.states)}), "
                                  f"got {len(given)}")
        return dict(zip(g.states, given))

    def _prepare_rows(self, x: TokenInputs, state: Sequence[torch.Tensor] | None) -> "Prepared":
        if x.tokens.dim() != 2 or x.table.dim() != 2 or x.table.shape[-1] != self.input_size:
            raise CellsearchError(f"expected tokens (T, B) and a table (V, {self.input_size}), "
                                  f"got {tuple(x.tokens.shape)} and {tuple(x.table.shape)}")
        T, B = x.tokens.shape
        if T == 0:
            raise CellsearchError("the input sequence is empty (T = 0)")
        states = self._states(state, B, x.table)
        rec_init = tuple(states[s] for s in self.program.schedule.recurrent_states)
        rows, consts, _ = self.program.prologue(self.params, x.table.shape[0], 1, (x.table.unsqueeze(1),), (), ())
        return Prepared(T, tuple(rows), tuple(consts), rec_init, {}, x.tokens)

    def finish(self, prepared: "Prepared", out: torch.Tensor | None,
               finals: Sequence[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``forward``'s result from the prologue's hoisted sequences and the loop's results."""
        g = self.graph
        final: dict[str, torch.Tensor] = {s: seq[-1] for s, seq in prepared.hoisted.items()}
        final.update(zip(self.program.schedule.recurrent_states, finals))
        if out is None:  # the loop returns no output when the output is a hoisted state
            out = prepared.hoisted[g.output]
        return out, tuple(final[s] for s in g.states)

    def extra_repr(self) -> str:
        return (f"cell={self.graph.name!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"mode={self.mode!r}")


def compile_cell(graph: CellGraph | str, input_size: int, hidden_size: int, static_size: int | None = None,
                 **kwargs: Any) -> CompiledCell:
    """Compile a cell (a CellGraph, a built-in name or a YAML path) into a sequence module."""
    from cellsearch.library import resolve_cell

    return CompiledCell(resolve_cell(graph), input_size, hidden_size, static_size, **kwargs)
