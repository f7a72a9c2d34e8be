"""MemoryQAModel: a memory network's question answering (the ``qa`` layout) around a cell that reads memories.

End-to-end memory networks (Sukhbaatar et al. 2015): a cell with memories m_0..m_K (e.g. the
built-in ``memn2n``) answers a question about a story. The story's sentences become the rows of
every memory: sentence i embedded with matrix E_k as a bag of words with position encoding,
m_k[i] = Σ_j l_j ∘ E_k[w_ij] + T_k[i], where l_kj = (1 − j/J) − (k/d)(1 − 2j/J) (j the word's
position, J the sentence's length, k the dimension, d the embedding size) and T_k a temporal
encoding per memory slot counted from the most recent sentence. The question is embedded the
same way with E_0 (B = A^1) and is the cell's input x = u^1; the cell runs ONE step with the
memories and its output goes through the answer head, tied to E_K (W^T = C^K). A memory shared by
two hops (m_k as hop k's output and hop k+1's input memory) is the paper's adjacent weight tying.

The trainer builds this model for a cell that reads memories on a task with a ``qa`` layout
(``training/trainer.py``); ``start(batch)`` embeds the story, ``forward(question, state)``
answers: logits (1, B, V).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from cellsearch.compile.attention import Memory
from cellsearch.dsl.graph import CellGraph
from cellsearch.errors import ConfigError
from cellsearch.nn.layers import CellRNN
from cellsearch.nn.model import ModelConfig


class Story(NamedTuple):
    """A batch's story embedded: one (B, N, d) memory per memory of the cell, and the real rows."""

    memories: tuple[torch.Tensor, ...]
    mask: torch.Tensor  # (B, N) bool


def position_encoding(lengths: torch.Tensor, width: int, d: int) -> torch.Tensor:
    """l (…, width, d) for sentences of ``lengths`` (…): l_kj = (1 − j/J) − (k/d)(1 − 2j/J) for
    word j ≤ J (1-based), 0 on padding."""
    j = torch.arange(1, width + 1, dtype=torch.float32, device=lengths.device)
    k = torch.arange(1, d + 1, dtype=torch.float32, device=lengths.device)
    J = lengths.clamp(min=1).unsqueeze(-1).float()  # (…, 1)
    jj = (j / J).unsqueeze(-1)  # (…, width, 1)
    enc = (1 - jj) - (k / d) * (1 - 2 * jj)
    return enc * (j <= J).unsqueeze(-1).float()


class MemoryQAModel(nn.Module):
    """Question answering over a story with a cell that reads K + 1 memories (see the module docstring)."""

    def __init__(self, cell: CellGraph | str, config: ModelConfig, slots: int, pad: int = 0):
        super().__init__()
        from cellsearch.library import resolve_cell

        self.graph = resolve_cell(cell)
        self.config = config
        self.slots, self.pad = slots, pad
        if not self.graph.memory:
            raise ConfigError(f"cell '{self.graph.name}' reads no memory: the qa layout needs one (e.g. memn2n)")
        if len(self.graph.inputs) != 1 or self.graph.static:
            raise ConfigError(f"cell '{self.graph.name}' must read one input (the question) and no static input "
                              "to answer questions over memories")
        if config.embed_size not in (None, config.hidden_size):
            raise ConfigError("the qa layout embeds words at the hidden size: leave embed_size unset")
        d = config.hidden_size
        hops = len(self.graph.memory)
        self.embeddings = nn.ModuleList(nn.Embedding(config.vocab_size, d) for _ in range(hops))
        self.temporal = nn.Parameter(torch.zeros(hops, slots, d))
        self.rnn = CellRNN(self.graph, d, d, 1, dropout=0.0)
        self.encoder = None  # (the trainer's checkpoint and parameter count look for one)
        self.head_bias = nn.Parameter(torch.zeros(config.vocab_size))

    is_seq2seq = False  # (the trainer asks a model both: a memory network reads no source and no class)
    is_conditioned = False
    carries_state = False  # (every question starts from its own story)

    def embed_sentences(self, ids: torch.Tensor, k: int) -> torch.Tensor:
        """Word ids (…, L) → bag-of-words with position encoding (…, d) through E_k."""
        lengths = (ids != self.pad).sum(-1)
        pe = position_encoding(lengths, ids.shape[-1], self.config.hidden_size)
        table: nn.Embedding = self.embeddings[k]  # type: ignore[assignment]  # (ModuleList indexing is untyped)
        return (table(ids) * pe).sum(-2)

    def start(self, batch: Any) -> Story:
        """The story of ``batch`` (``Batch.story``, (B, N, L)) as the cell's memories."""
        story = getattr(batch, "story", None)
        if story is None:
            raise ConfigError("a memory network needs batches with a story (the task's qa layout)")
        mask = (story != self.pad).any(-1)  # (B, N)
        N = story.shape[1]
        if N > self.slots:
            raise ConfigError(f"a story of {N} sentences is longer than the memory ({self.slots})")
        # slot i of the temporal encoding: the i-th most recent sentence (the last real row is slot 0)
        count = mask.sum(-1, keepdim=True)  # (B, 1)
        age = (count - 1 - torch.arange(N, device=story.device)).clamp(min=0)  # (B, N)
        memories = tuple(self.embed_sentences(story, k) + self.temporal[k][age] for k in range(len(self.graph.memory)))
        return Story(memories, mask)

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Story]:
        """question (Lq, B) → logits (1, B, V) for the answer; ``state`` is ``start(batch)``."""
        if not isinstance(state, Story):
            raise ConfigError("a memory network answers from model.start(batch) (the story)")
        u = self.embed_sentences(tokens.t(), 0).unsqueeze(0)  # (1, B, d): u^1, through E_0 (B = A^1)
        memory = tuple(Memory(m, state.mask) for m in state.memories)
        out, _ = self.rnn(u, None, memory=memory)
        self.last_outputs = None  # (no activation penalties: one step, no recurrence)
        answer: nn.Embedding = self.embeddings[-1]  # type: ignore[assignment]  # (ModuleList indexing is untyped)
        return torch.nn.functional.linear(out, answer.weight, self.head_bias), state  # W^T = C^K

    @torch.no_grad()
    def hop_weights(self, batch: Any) -> torch.Tensor:
        """The attention weights of every hop over the story's sentences: (hops, B, N), computed by
        the reference interpreter with this model's weights, in the order the cell's attend nodes
        run."""
        from cellsearch.compile.interpreter import InterpretedCell

        state = self.start(batch)
        cell: Any = self.rnn.cells[0]
        oracle = InterpretedCell(self.graph, cell.input_size, cell.hidden_size, params=cell.params)
        trace: dict[str, list[torch.Tensor]] = {}
        u = self.embed_sentences(batch.inputs.t(), 0).unsqueeze(0)
        zeros = tuple(u.new_zeros(u.shape[1], cell.hidden_size) for _ in self.graph.states)
        oracle(u, zeros, None, tuple(Memory(m, state.mask) for m in state.memories), trace=trace)
        order = [n.name for n in self.graph.nodes if n.op == "attend"]
        return torch.stack([trace[n][0] for n in order])

    def take_outputs(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """No activation penalties for a memory network (the trainer asks every model): None."""
        self.last_outputs = None
        return None

    @staticmethod
    def detach_state(state: Any) -> None:
        """A story is never carried to the next batch."""
        return None

    def reset_parameters(self, init_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """Embeddings and temporal encodings N(0, 0.1²) as the paper; the cell's own init."""
        self.rnn.reset_parameters(init_scale, generator)
        with torch.no_grad():
            for table in self.embeddings.parameters():
                table.normal_(0, 0.1, generator=generator)
            self.temporal.normal_(0, 0.1, generator=generator)
            self.head_bias.zero_()
