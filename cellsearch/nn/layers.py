"""Recurrent layers built from any cell, with the API of ``torch.nn.LSTM``.

``CellRNN("gru", input_size=32, hidden_size=64, num_layers=2, bidirectional=True)``
stacks compiled cells: ``out, state = rnn(x, state)`` (``rnn(x, state, static, memory)`` for a
cell with static inputs or a memory: every layer reads the same). ``state`` is a tuple with one
tensor per cell state (``graph.states`` order; (h, c) for lstm, like torch), each of shape
(num_layers * num_directions, B, hidden_size), indexed ``layer * num_directions + direction``
as in torch. A single-state cell also accepts a bare tensor. ``x`` may be ``TokenInputs``
(``compile/tokens.py``, an embedding's output as table rows): a first layer whose cell reads them
so runs its prologue once per table row; anywhere else they are made a tensor.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS, start_states
from cellsearch.compile.cell import CompiledCell
from cellsearch.compile.tokens import TokenInputs
from cellsearch.dsl.graph import CellGraph
from cellsearch.errors import CellsearchError


class CellRNN(nn.Module):
    """Multi-layer, optionally bidirectional recurrent network of one cell type.

    Args:
        cell: a CellGraph, a built-in name (``"lstm"``) or the path of a YAML cell.
        input_size: features of ``x``; hidden_size: size of every state.
        num_layers: stacked layers; layer k > 0 reads layer k-1's output.
        bidirectional: add a second cell per layer that reads the sequence backwards; the
            output concatenates both directions (2 * hidden_size features).
        dropout: dropout on the outputs of every layer but the last (as torch.nn.LSTM).
        batch_first: x and out are (B, T, features) instead of (T, B, features).
        static_size: size of the cell's static inputs (default: hidden_size).
        backend: "compiled" (generated code, default), "autograd" (the generated step under
            plain autograd) or "interpreter" (the reference interpreter; slow, for checking).
        compile: wrap the generated step functions in ``torch.compile``.
        memory_rows: rows N of the cell's memory states (an NTM's memory, (layers, B, N, H) in
            ``state``), if it has any.
    """

    def __init__(self, cell: CellGraph | str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, batch_first: bool = False,
                 static_size: int | None = None, backend: str = "compiled", compile: bool = False,
                 memory_rows: int = DEFAULT_MEMORY_ROWS):
        super().__init__()
        from cellsearch.library import resolve_cell

        graph = resolve_cell(cell)
        if num_layers < 1:
            raise CellsearchError(f"num_layers must be at least 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise CellsearchError(f"dropout must be in [0, 1), got {dropout}")
        if backend not in ("compiled", "autograd", "interpreter"):
            raise CellsearchError(f"backend must be compiled, autograd or interpreter, not {backend!r}")
        if len(graph.inputs) != 1 and (num_layers > 1 or bidirectional):
            raise CellsearchError(f"cell '{graph.name}' has {len(graph.inputs)} per-step inputs; stacking and "
                                  "bidirectional layers need exactly one")
        self.graph = graph
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = dropout
        self.batch_first = batch_first
        self.static_size = static_size
        self.backend = backend
        if memory_rows < 1:
            raise CellsearchError(f"memory_rows must be at least 1, got {memory_rows}")
        self.memory_rows = memory_rows
        cells: list[CompiledCell | InterpretedCell] = []
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * self.num_directions
            for _ in range(self.num_directions):
                if backend == "interpreter":
                    cells.append(InterpretedCell(graph, in_size, hidden_size, static_size, memory_rows=memory_rows))
                else:
                    mode = "fused" if backend == "compiled" else "autograd"
                    cells.append(CompiledCell(graph, in_size, hidden_size, static_size, mode=mode, compile=compile,
                                              memory_rows=memory_rows))
        self.cells = nn.ModuleList(cells)

    @property
    def state_names(self) -> tuple[str, ...]:
        """The cell's states, in the order of the state tuple."""
        return self.graph.states

    def reset_parameters(self, init_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """Draw every cell's parameters afresh (``init_scale`` scales the initial weights)."""
        for cell in self.cells:
            assert isinstance(cell, (CompiledCell, InterpretedCell))  # what __init__ puts there
            cell.params.reset_parameters(init_scale, generator)

    def initial_state(self, batch_size: int, like: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The state tuple a sequence starts from (each state as the cell starts it, usually zeros),
        on the device and dtype of ``like`` (default: the parameters')."""
        p = next(self.parameters(), None)
        ref = like if like is not None else (p if p is not None else torch.zeros(()))
        n = self.num_layers * self.num_directions
        # every layer and direction starts as one cell does
        return tuple(s.expand(n, *s.shape).clone()
                     for s in start_states(self.graph, batch_size, self.hidden_size, self.memory_rows, ref))

    def state_shape(self, state: str, batch_size: int) -> tuple[int, ...]:
        """The shape of ``state`` in the state tuple: (layers·directions, B, H), or (…, B, N, H) for a memory
        state, (…, B, N) for a weights state."""
        n = self.num_layers * self.num_directions
        if state in self.graph.memory_states:
            return (n, batch_size, self.memory_rows, self.hidden_size)
        if state in self.graph.weight_states:
            return (n, batch_size, self.memory_rows)
        return (n, batch_size, self.hidden_size)

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor] | TokenInputs,
                state: Sequence[torch.Tensor] | torch.Tensor | None = None,
                static: Sequence[torch.Tensor] | torch.Tensor | None = None,
                memory: Sequence[Any] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Run the layers over a sequence: ``(output, final state tuple)`` (shapes in the module docstring)."""
        rows = None  # the first layer's inputs as table rows (compile/tokens.py), where its cell reads them so
        if isinstance(x, TokenInputs):
            if (not self.batch_first and self.num_directions == 1 and static is None and memory is None
                    and getattr(self.cells[0], "reads_token_rows", False)):
                rows = x
                x = x.table.new_zeros(()).expand(x.shape)  # stands in for the inputs in the checks below
            else:
                x = x.materialize()
        xs = x if isinstance(x, (tuple, list)) else (x,)
        if self.batch_first:
            xs = tuple(xi.transpose(0, 1) for xi in xs)
        for xi in xs:
            if xi.dim() != 3:
                raise CellsearchError(f"expected a 3-d input ({'B, T' if self.batch_first else 'T, B'}, features), "
                                      f"got shape {tuple(xi.shape)}")
        B = xs[0].shape[1]
        if isinstance(state, torch.Tensor):
            state = (state,)
        if state is None:
            state = self.initial_state(B, xs[0])
        state = tuple(state)
        if len(state) != len(self.graph.states) or any(tuple(s.shape) != self.state_shape(name, B)
                                                       for s, name in zip(state, self.graph.states)):
            shapes = [tuple(s.shape) for s in state]
            wanted = list(dict.fromkeys(self.state_shape(name, B) for name in self.graph.states))
            shape_text = f"of shape {wanted[0]}" if len(wanted) == 1 else \
                "of shapes " + ", ".join(str(self.state_shape(name, B)) for name in self.graph.states)
            raise CellsearchError(f"state must be {len(self.graph.states)} tensor(s) ({', '.join(self.graph.states)}) "
                                  f"{shape_text}, got {shapes}")
        if isinstance(static, torch.Tensor):
            static = (static,)
        finals: list[list[torch.Tensor]] = [[] for _ in self.graph.states]
        layer_in = xs
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                cell_state = tuple(s[k] for s in state)
                inp = layer_in if d == 0 else tuple(xi.flip(0) for xi in layer_in)
                arg = rows if (rows is not None and layer == 0) else (inp[0] if len(inp) == 1 else inp)
                out, fin = self.cells[k](arg, cell_state, static, memory)
                outs.append(out if d == 0 else out.flip(0))
                for i, f in enumerate(fin):
                    finals[i].append(f)
            out = outs[0] if len(outs) == 1 else torch.cat(outs, -1)  # (T, B, D*H)
            layer_in = (self.between_layers(out, layer),)
        out = layer_in[0]
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, tuple(torch.stack(f) for f in finals)

    def between_layers(self, out: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer``'s output as the next layer reads it (dropout while training, not after the last)."""
        if self.dropout and layer < self.num_layers - 1 and self.training:
            return nn.functional.dropout(out, self.dropout, training=True)
        return out

    def extra_repr(self) -> str:
        return (f"cell={self.graph.name!r}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, dropout={self.dropout}, batch_first={self.batch_first}, "
                f"backend={self.backend!r}")
