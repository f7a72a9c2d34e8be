"""SeqModel: embedding → stacked cell layers → linear head over the vocabulary."""

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
        out, state = self.rnn(self.embed(tokens), state)  # (T, B, H)
        return self.readout(out), state  # (T, B, V)

    # the phases of ``forward``, also run member by member by a population (``nn/population.py``)
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (T, B) → the cell's inputs (T, B, E), dropout applied."""
        return self.drop(self.embedding(tokens))

    def readout(self, out: torch.Tensor) -> torch.Tensor:
        """The last layer's outputs (T, B, H) → logits (T, B, V), dropout applied."""
        return self.head(self.drop(out))

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
