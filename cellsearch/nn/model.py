"""SeqModel: embedding → stacked cell layers → linear head over the vocabulary.

``ModelConfig.state_limit`` keeps any cell's recurrence finite. Each layer runs its ordinary
fused loop; when an output of that call leaves ±limit (or is not finite), the layer is computed
again one step at a time from the same inputs and state, every state and output value outside
±limit set to 0 after each step (``bounded_layer``). A cell whose outputs stay within the bound
gives exactly what it gives without a limit, its other states (an LSTM's memory c, which may
legitimately exceed the limit) included; one whose recurrence runs away (NAS-Bench-NLP's
recipes_example_7 multiplies its state by about 1.2 a step, _8 squares it) stays finite, its
runaway units starting again from 0, the value every sequence starts from. The decision reads
the outputs only, not the final states, so that a population member (padded to a longer
sequence, ``nn/population.py``) decides exactly as its solo forward. See docs/results/stability.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from cellsearch.dsl.graph import CellGraph
from cellsearch.nn.layers import CellRNN


@dataclass
class ModelConfig:
    vocab_size: int
    hidden_size: int = 128  # size of every cell state
    num_layers: int = 1  # stacked cell layers
    embed_size: int | None = None  # default: hidden_size (MUT1/MUT2 add the input to hidden vectors)
    dropout: float = 0.0  # on embeddings, between layers and before the head
    tie_weights: bool = False  # share embedding and output matrices (needs embed_size == hidden_size)
    state_limit: float | None = None  # bound on a runaway layer (see module docstring; None: no bound)

    def to_dict(self) -> dict:
        return asdict(self)


class SeqModel(nn.Module):
    """A language model over token ids built around any cell.

    ``logits, state = model(tokens, state)``: tokens (T, B) long → logits (T, B, V); ``state``
    is the CellRNN state tuple (one (layers, B, H) tensor per cell state), carried between
    calls for truncated BPTT and for decoding with ``step``.
    """

    def __init__(self, cell: CellGraph | str, config: ModelConfig):
        super().__init__()
        from cellsearch.library import resolve_cell

        self.graph = resolve_cell(cell)
        self.config = config
        embed = config.embed_size or config.hidden_size
        self.embedding = nn.Embedding(config.vocab_size, embed)
        self.rnn = CellRNN(self.graph, embed, config.hidden_size, config.num_layers, dropout=config.dropout)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            if embed != config.hidden_size:
                raise ValueError("tie_weights needs embed_size == hidden_size")
            self.head.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor, state=None):
        if self.config.state_limit is None:
            out, state = self.rnn(self.embed(tokens), state)  # (T, B, H)
        else:
            out, state = self.bounded_rnn(self.embed(tokens), state)
        return self.readout(out), state  # (T, B, V)

    # the phases of ``forward``, also run member by member by a population (``nn/population.py``)
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (T, B) → the cell's inputs (T, B, E), dropout applied."""
        return self.drop(self.embedding(tokens))

    def bounded_rnn(self, x: torch.Tensor, state=None):
        """``self.rnn(x, state)`` under ``state_limit`` (see module docstring): the same calls, in
        the same order, as ``CellRNN.forward`` (so exactly its result while no output leaves the
        bound), then ``bounded_layer`` on each layer's result."""
        rnn = self.rnn
        if state is None:
            state = rnn.initial_state(x.shape[1], x)
        state = (state,) if isinstance(state, torch.Tensor) else tuple(state)
        finals: list[list[torch.Tensor]] = [[] for _ in state]
        for layer, cell in enumerate(rnn.cells):
            layer_state = tuple(s[layer] for s in state)
            out, final = bounded_layer(cell, x, layer_state, cell(x, layer_state), self.config.state_limit)
            for i, f in enumerate(final):
                finals[i].append(f)
            x = rnn.between_layers(out, layer)
        return x, tuple(torch.stack(f) for f in finals)

    def readout(self, out: torch.Tensor) -> torch.Tensor:
        """The last layer's outputs (T, B, H) → logits (T, B, V), dropout applied.

        While training (with autograd on), the outputs before and after the dropout are kept in
        ``last_outputs`` for the trainer's activation penalties (``Trainer.step_loss``): the solo
        forward and a population's forward (``nn/population.py``) both end here, member by member,
        so both give the penalties the same tensors without a second return value."""
        dropped = self.drop(out)
        self.last_outputs = (out, dropped) if self.training and torch.is_grad_enabled() else None
        return self.head(dropped)

    def take_outputs(self):
        """The (outputs, dropped outputs) of the last training forward, once (None: there was none)."""
        outputs, self.last_outputs = getattr(self, "last_outputs", None), None
        return outputs

    def step(self, tokens: torch.Tensor, state=None):
        """One decoding step: tokens (B,) → logits (B, V) and the new state."""
        logits, state = self.forward(tokens.unsqueeze(0), state)
        return logits[0], state

    def initial_state(self, batch_size: int):
        return self.rnn.initial_state(batch_size, self.head.weight)

    @staticmethod
    def select_state(state, index: torch.Tensor):
        """Reorder the batch dimension of a state (beam search keeps the surviving beams)."""
        return tuple(s.index_select(1, index) for s in state)

    @staticmethod
    def detach_state(state):
        return tuple(s.detach() for s in state) if state is not None else None

    def reset_parameters(self, init_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """Cell weights uniform(±init_scale/√H) (then the cell's own init attributes); embedding and
        head uniform(±0.1), head bias zero."""
        self.rnn.reset_parameters(init_scale, generator)
        with torch.no_grad():
            self.embedding.weight.uniform_(-0.1, 0.1, generator=generator)
            if not self.config.tie_weights:
                self.head.weight.uniform_(-0.1, 0.1, generator=generator)
            self.head.bias.zero_()


def out_of_bounds(v: torch.Tensor, limit: float) -> bool:
    """Whether any value leaves ±limit or is not finite."""
    return not bool((v.abs() <= limit).all())  # NaN compares False: out


def _bound(v: torch.Tensor, limit: float) -> torch.Tensor:
    # to 0 rather than to ±limit: a clamped unit of a runaway cell maps back onto the bound every
    # step and, with a zero gradient there, never leaves it (the previous helper measured the loss
    # sticking near 20); 0 is the state every sequence starts from, inside any cell's working range
    return torch.where(v.abs() <= limit, v, torch.zeros((), dtype=v.dtype, device=v.device))


def bounded_layer(cell, x: torch.Tensor, state: tuple, result: tuple, limit: float | None) -> tuple:
    """One layer's (outputs, final states) under ``limit``: ``result`` (what ``cell(x, state)``
    returned) when its outputs stay within ±limit, else the layer computed again one step at a
    time, state and output values outside ±limit set to 0 after every step (see the module
    docstring). Shared by ``SeqModel`` and the population forward, so both decide and recompute
    alike."""
    out, final = result
    if limit is None or not out_of_bounds(out, limit):
        return out, final
    outs = []
    for t in range(x.shape[0]):
        step_out, state = cell(x[t:t + 1], state)
        state = tuple(_bound(s, limit) for s in state)
        outs.append(_bound(step_out, limit))
    return torch.cat(outs), state
