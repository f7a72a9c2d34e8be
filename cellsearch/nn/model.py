"""SeqModel: embedding → stacked cell layers → linear head over the vocabulary, optionally
conditioned on a source sequence read by an encoder (an encoder-decoder model).

With ``ModelConfig.encoder`` (any cell), the model is an encoder-decoder: ``start(batch)``
(or ``encode(source, mask)``) runs the encoder over the source and returns an ``Encoded`` state:
the decoder's states, its output state starting from the encoder's output at each sequence's
last source token (the others from 0), and the encoder's outputs as the memory (B, S, H) that a
decoder cell with a memory reads through ``attend`` at every step (Bahdanau et al. 2015). The
decoder (``forward``/``step``, decoding) then runs from that state like a language model.

With ``ModelConfig.condition_classes`` (C > 0), a language model is conditioned on a class per
sequence (conditional generation: a digit's image given its class): ``start(batch)`` (or
``condition(classes)``) returns a ``Conditioned`` state holding the class ids, and every step reads
the class's learnt vector, a static input: a cell that declares static inputs reads it through
them (each of its static leaves the same (B, hidden_size) vector), any other cell (lstm, gru) reads
it added to its input at every step (E[token] + C[class], so the class enters every step through
the cell's input weights).

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
from functools import partial
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import nn

from cellsearch.compile.attention import Memory
from cellsearch.compile.cell import CompiledCell
from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS
from cellsearch.compile.tokens import TokenInputs, as_tensor, reference
from cellsearch.dsl.graph import CellGraph
from cellsearch.errors import ConfigError
from cellsearch.nn.layers import CellRNN
from cellsearch.ops.registry import OPS


# A language model's first layer reads its inputs as embedding-table rows (``SeqModel.cell_inputs``)
# when the vocabulary has at most this many rows per sequence of the batch: its prologue then costs
# at most as much as this many time steps do (Arithmetic: 20 rows, batch 32, 50-60 steps).
TABLE_ROWS_PER_SEQUENCE = 4


@dataclass
class ModelConfig:
    """The shape of a ``SeqModel``: vocabulary, sizes, layers, dropout and the optional encoder."""

    vocab_size: int
    hidden_size: int = 128  # size of every cell state
    num_layers: int = 1  # stacked cell layers
    embed_size: int | None = None  # default: hidden_size (MUT1/MUT2 add the input to hidden vectors)
    dropout: float = 0.0  # on embeddings, between layers and before the head
    tie_weights: bool = False  # share embedding and output matrices (needs embed_size == hidden_size)
    state_limit: float | None = None  # bound on a runaway layer (see module docstring; None: no bound)
    encoder: str | None = None  # encoder cell (built-in name or YAML path): an encoder-decoder model
    memory_rows: int = DEFAULT_MEMORY_ROWS  # rows of a memory state (an NTM cell's memory), if the cell has one
    condition_classes: int = 0  # classes of a per-sequence condition (a static input; 0: none)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for checkpoints and JSON)."""
        return asdict(self)


class Encoded(NamedTuple):
    """The state of an encoder-decoder model: the decoder's states and the encoded source."""

    states: tuple[torch.Tensor, ...]  # one (layers, B, H) tensor per decoder cell state
    memory: torch.Tensor  # (B, S, H): the encoder's outputs
    mask: torch.Tensor  # (B, S) bool: real source tokens (not padding)


class Conditioned(NamedTuple):
    """The state of a class-conditioned language model: the cell's states and each sequence's class."""

    states: tuple[torch.Tensor, ...] | None  # one (layers, B, H) tensor per cell state (None: the initial state)
    classes: torch.Tensor  # (B,) long: the class every step of the sequence reads


def check_encoder(graph: CellGraph) -> CellGraph:
    """``graph``, unless it cannot encode: a cell that reads a memory is a decoder (ConfigError)."""
    if graph.memory:
        raise ConfigError(f"the encoder cell '{graph.name}' reads a memory; an encoder reads the source only")
    return graph


class SeqModel(nn.Module):
    """A language model over token ids built around any cell.

    ``logits, state = model(tokens, state)``: tokens (T, B) long → logits (T, B, V); ``state``
    is the CellRNN state tuple (one (layers, B, H) tensor per cell state), carried between
    calls for truncated BPTT and for decoding with ``step``.
    """

    def __init__(self, cell: CellGraph | str, config: ModelConfig, encoder: CellGraph | str | None = None):
        super().__init__()
        from cellsearch.library import resolve_cell

        self.graph = resolve_cell(cell)
        self.config = config
        embed = config.embed_size or config.hidden_size
        self.embedding = nn.Embedding(config.vocab_size, embed)
        self.rnn = CellRNN(self.graph, embed, config.hidden_size, config.num_layers, dropout=config.dropout,
                           memory_rows=config.memory_rows)
        if len(self.graph.memory) > 1:
            raise ConfigError(f"cell '{self.graph.name}' reads {len(self.graph.memory)} memories; "
                              "a decoder has one (the encoder's outputs)")
        self.encoder: CellRNN | None = None
        if encoder is None and config.encoder is not None:
            encoder = config.encoder
        if encoder is not None:
            enc_graph = check_encoder(resolve_cell(encoder))
            self.encoder = CellRNN(enc_graph, embed, config.hidden_size, config.num_layers, dropout=config.dropout,
                                   memory_rows=config.memory_rows)
        elif self.graph.memory:
            raise ConfigError(f"cell '{self.graph.name}' reads a memory ({self.graph.memory[0]}): it decodes "
                              "from an encoder; set encoder (e.g. gru)", field="ModelConfig.encoder")
        self.conditioning: nn.Embedding | None = None
        if config.condition_classes:
            if self.encoder is not None:
                raise ConfigError("a class condition is for a language model, not an encoder-decoder model",
                                  field="ModelConfig.condition_classes")
            # a cell with static inputs reads the class's vector there (their size: hidden_size), any other
            # cell added to its input embedding
            self.conditioning = nn.Embedding(config.condition_classes,
                                             config.hidden_size if self.graph.static else embed)
        elif self.graph.static:
            raise ConfigError(f"cell '{self.graph.name}' has static inputs ({', '.join(self.graph.static)}): "
                              "train it on a task with a class condition (e.g. digits with conditional=true)",
                              field="ModelConfig.condition_classes")
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            if embed != config.hidden_size:
                raise ValueError("tie_weights needs embed_size == hidden_size")
            self.head.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """tokens (T, B) → logits (T, B, V) and the state to carry on (an ``Encoded`` for a seq2seq model)."""
        if self.encoder is not None:
            return self._decode(tokens, state)
        if self.conditioning is not None:
            return self._conditioned(tokens, state)
        if self.config.state_limit is None:
            out, state = self.rnn(self.cell_inputs(tokens), state)  # (T, B, H)
        else:
            out, state = self.bounded_rnn(self.cell_inputs(tokens), state)
        return self.readout(out), state  # (T, B, V)

    # ------------------------------------------------------------------ encoder-decoder
    @property
    def is_seq2seq(self) -> bool:
        """Whether this is an encoder-decoder model (``ModelConfig.encoder``)."""
        return self.encoder is not None

    @property
    def is_conditioned(self) -> bool:
        """Whether this language model reads a class condition (``ModelConfig.condition_classes``)."""
        return self.conditioning is not None

    @property
    def carries_state(self) -> bool:
        """Whether the state a batch ends in goes on to the next batch (truncated BPTT): a plain
        language model's does; an encoder-decoder's state is its batch's source and a conditioned
        model's its batch's classes, never the next batch's."""
        return not (self.is_seq2seq or self.is_conditioned)

    def start(self, batch: Any) -> Encoded | Conditioned | None:
        """The state a batch starts from: None for a language model; an encoder-decoder's
        encoded source (``batch.source``, ``batch.source_mask``); a conditioned model's classes
        (``batch.condition``)."""
        if self.conditioning is not None:
            if getattr(batch, "condition", None) is None:
                raise ConfigError("a class-conditioned model needs batches with a condition (a task with "
                                  "conditional=true)")
            return self.condition(batch.condition)
        if self.encoder is None:
            return None
        if getattr(batch, "source", None) is None:
            raise ConfigError("an encoder-decoder model needs batches with a source (the task's seq2seq layout)")
        return self.encode(batch.source, batch.source_mask)

    def encode(self, source: torch.Tensor, mask: torch.Tensor | None = None) -> Encoded:
        """source (S, B) token ids, mask (S, B) bool (None: no padding) → the decoder's start state."""
        if self.encoder is None:
            raise ConfigError("encode() needs an encoder-decoder model (ModelConfig.encoder)")
        S, B = source.shape
        if mask is None:
            mask = torch.ones(S, B, dtype=torch.bool, device=source.device)
        x = self.embed(source)
        if self.config.state_limit is None:
            out, _ = self.encoder(x)  # (S, B, H)
        else:  # an encoder that runs away is bounded like the decoder (see the module docstring)
            out, _ = self.bounded_rnn(x, None, rnn=self.encoder)
        # padding rows: 0, whatever the encoder made of the pad tokens (their attention weight is 0,
        # but 0 * inf would still be NaN)
        out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
        last = (mask.sum(0) - 1).clamp(min=0)  # each sequence's last real token
        final = out[last, torch.arange(B, device=out.device)]  # (B, H)
        states = []
        for name, init in zip(self.graph.states, self.rnn.initial_state(B, out)):
            if name == self.graph.output:
                init = init + final.unsqueeze(0)
            states.append(init)
        return Encoded(tuple(states), out.transpose(0, 1), mask.t())

    @torch.no_grad()
    def attention_maps(self, tokens: torch.Tensor, state: Any) -> dict[str, torch.Tensor]:
        """The decoder's weights over the encoded source while it reads ``tokens`` (T, B) from ``state``:
        name of each attend node → (T, B, N), N the source length (``layerK.`` before
        the name for layers after the first). Runs the decoder's cells in the reference
        interpreter, with this model's weights, in eval mode (no dropout)."""
        from cellsearch.compile.interpreter import InterpretedCell

        if not isinstance(state, Encoded):
            raise ConfigError("attention maps need an encoder-decoder model and its encoded source")
        memory = self._memory(state)
        was_training = self.training
        self.eval()
        try:
            x = self.embed(tokens)
            maps: dict[str, torch.Tensor] = {}
            for layer, cell in enumerate(self.rnn.cells):
                assert isinstance(cell, (CompiledCell, InterpretedCell))  # what CellRNN builds
                oracle = InterpretedCell(self.graph, cell.input_size, cell.hidden_size, params=cell.params,
                                         memory_rows=self.config.memory_rows)
                trace: dict[str, torch.Tensor] = {}
                x, _ = oracle(x, tuple(s[layer] for s in state.states), None, memory, trace=trace)
                # (only weights over the source: a memory state's address/location nodes trace too)
                maps.update({(f"layer{layer}." if layer else "") + k: v for k, v in trace.items()
                             if OPS[self.graph.node_map[k].op].reads_given_memory})
            return maps
        finally:
            self.train(was_training)

    def condition(self, classes: torch.Tensor) -> Conditioned:
        """The start state of sequences of class ``classes`` (B,) long (a conditioned model)."""
        if self.conditioning is None:
            raise ConfigError("condition() needs a class-conditioned model (ModelConfig.condition_classes)")
        n = self.conditioning.num_embeddings
        if classes.dim() != 1 or classes.dtype != torch.long or bool(((classes < 0) | (classes >= n)).any()):
            raise ConfigError(f"the condition must be a 1-d tensor of class ids in 0..{n - 1}")
        return Conditioned(None, classes)

    def _conditioned(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Conditioned]:
        if not isinstance(state, Conditioned):
            raise ConfigError("a class-conditioned model reads from model.start(batch) or model.condition(classes)")
        assert self.conditioning is not None
        vector = self.conditioning(state.classes)  # (B, E) or (B, H)
        x = self.embed(tokens)
        static: tuple[torch.Tensor, ...] | None = None
        if self.graph.static:
            static = (vector,) * len(self.graph.static)
        else:
            x = x + vector.unsqueeze(0)
        if self.config.state_limit is None:
            out, states = self.rnn(x, state.states, static=static)
        else:
            out, states = self.bounded_rnn(x, state.states, static=static)
        return self.readout(out), Conditioned(states, state.classes)

    def _memory(self, state: Encoded) -> tuple[Memory, ...] | None:
        """What the decoder cell attends to: the encoded source, if the cell reads a memory."""
        return (Memory(state.memory, state.mask),) if self.graph.memory else None

    def _decode(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Encoded]:
        if not isinstance(state, Encoded):
            raise ConfigError("an encoder-decoder model decodes from model.start(batch) or model.encode(source)")
        memory = self._memory(state)
        x = self.embed(tokens)
        if self.config.state_limit is None:
            out, states = self.rnn(x, state.states, memory=memory)
        else:
            out, states = self.bounded_rnn(x, state.states, memory=memory)
        return self.readout(out), Encoded(states, state.memory, state.mask)

    # the phases of ``forward``, also run member by member by a population (``nn/population.py``)
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (T, B) → the cell's inputs (T, B, E), dropout applied."""
        inputs: torch.Tensor = self.drop(self.embedding(tokens))
        return inputs

    def cell_inputs(self, tokens: torch.Tensor) -> torch.Tensor | TokenInputs:
        """``embed(tokens)``, or the same as ``TokenInputs`` (rows of the embedding table, see
        compile/tokens.py) where the first layer computes its prologue per table row instead of per
        token: no dropout to draw, and a vocabulary of at most ``TABLE_ROWS_PER_SEQUENCE`` × B rows
        (so the table costs no more than a few steps of the batch) and no more rows than ``tokens``
        has (one decoding step of a small batch keeps the tensor)."""
        if (self.training and self.drop.p > 0) \
                or self.config.vocab_size > min(TABLE_ROWS_PER_SEQUENCE * tokens.shape[-1], tokens.numel()) \
                or not getattr(self.rnn.cells[0], "reads_token_rows", False):
            return self.embed(tokens)
        return TokenInputs(self.embedding.weight, tokens)

    def bounded_rnn(self, x: torch.Tensor | TokenInputs, state: Any = None, memory: Sequence[Memory] | None = None,
                    rnn: CellRNN | None = None, static: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``self.rnn(x, state)`` under ``state_limit`` (see module docstring): the same calls, in
        the same order, as ``CellRNN.forward`` (so exactly its result while no output leaves the
        bound), then ``bounded_layer`` on each layer's result."""
        rnn = rnn if rnn is not None else self.rnn
        if state is None:
            state = rnn.initial_state(x.shape[1], reference(x))
        state = (state,) if isinstance(state, torch.Tensor) else tuple(state)
        finals: list[list[torch.Tensor]] = [[] for _ in state]
        for layer, cell in enumerate(rnn.cells):
            layer_state = tuple(s[layer] for s in state)
            run: Callable[..., Any] = cell if memory is None and static is None \
                else partial(cell, static=static, memory=memory)
            out, final = bounded_layer(run, x, layer_state, run(x, layer_state), self.config.state_limit)
            for i, f in enumerate(final):
                finals[i].append(f)
            x = rnn.between_layers(out, layer)
        assert isinstance(x, torch.Tensor)  # a layer's output (CellRNN has at least one layer)
        return x, tuple(torch.stack(f) for f in finals)

    def readout(self, out: torch.Tensor) -> torch.Tensor:
        """The last layer's outputs (T, B, H) → logits (T, B, V), dropout applied.

        While training (with autograd on), the outputs before and after the dropout are kept in
        ``last_outputs`` for the trainer's activation penalties (``Trainer.step_loss``): the solo
        forward and a population's forward (``nn/population.py``) both end here, member by member,
        so both give the penalties the same tensors without a second return value."""
        dropped = self.drop(out)
        self.last_outputs = (out, dropped) if self.training and torch.is_grad_enabled() else None
        logits: torch.Tensor = self.head(dropped)
        return logits

    def take_outputs(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The (outputs, dropped outputs) of the last training forward, once (None: there was none)."""
        outputs: tuple[torch.Tensor, torch.Tensor] | None = getattr(self, "last_outputs", None)
        self.last_outputs = None
        return outputs

    def step(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """One decoding step: tokens (B,) → logits (B, V) and the new state."""
        logits, state = self.forward(tokens.unsqueeze(0), state)
        return logits[0], state

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """A language model's start state for ``batch_size`` sequences (``CellRNN.initial_state``)."""
        return self.rnn.initial_state(batch_size, self.head.weight)

    @staticmethod
    def select_state(state: Any, index: torch.Tensor) -> Any:
        """Reorder the batch dimension of a state (beam search keeps the surviving beams)."""
        if isinstance(state, Encoded):
            return Encoded(tuple(s.index_select(1, index) for s in state.states),
                           state.memory.index_select(0, index), state.mask.index_select(0, index))
        if isinstance(state, Conditioned):
            return Conditioned(None if state.states is None else tuple(s.index_select(1, index) for s in state.states),
                               state.classes.index_select(0, index))
        return tuple(s.index_select(1, index) for s in state)

    @staticmethod
    def detach_state(state: Any) -> Any:
        """The state cut off from the autograd graph (truncated BPTT carries it into the next batch)."""
        if isinstance(state, Encoded):  # (never carried to another batch: a new source starts anew)
            return Encoded(tuple(s.detach() for s in state.states), state.memory.detach(), state.mask)
        if isinstance(state, Conditioned):
            return Conditioned(None if state.states is None else tuple(s.detach() for s in state.states), state.classes)
        return tuple(s.detach() for s in state) if state is not None else None

    def reset_parameters(self, init_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """Cell weights uniform(±init_scale/√H) (then the cell's own init attributes); embedding and
        head uniform(±0.1), head bias zero."""
        self.rnn.reset_parameters(init_scale, generator)
        if self.conditioning is not None:
            with torch.no_grad():
                self.conditioning.weight.uniform_(-0.1, 0.1, generator=generator)
        if self.encoder is not None:
            self.encoder.reset_parameters(init_scale, generator)
        with torch.no_grad():
            self.embedding.weight.uniform_(-0.1, 0.1, generator=generator)
            if not self.config.tie_weights:
                self.head.weight.uniform_(-0.1, 0.1, generator=generator)
            self.head.bias.zero_()


def out_of_bounds(v: torch.Tensor, limit: float) -> bool:
    """Whether any value leaves ±limit or is not finite."""
    return outside_bounds([v], limit)[0]


def outside_bounds(values: Sequence[torch.Tensor], limit: float) -> list[bool]:
    """``out_of_bounds`` of each tensor, with one max-abs kernel for all of them and one sync."""
    if not any(v.numel() for v in values):
        return [False] * len(values)
    # (NaN propagates through the max-abs and compares False: out; an empty tensor's max-abs is 0)
    largest = torch.stack(torch._foreach_norm([v if v.numel() else v.new_zeros(1) for v in values],
                                              float("inf")))
    return (~(largest <= limit)).tolist()


def _bound(v: torch.Tensor, limit: float) -> torch.Tensor:
    # to 0 rather than to ±limit: a clamped unit of a runaway cell maps back onto the bound every
    # step and, with a zero gradient there, never leaves it (the previous helper measured the loss
    # sticking near 20); 0 is the state every sequence starts from, inside any cell's working range
    return torch.where(v.abs() <= limit, v, torch.zeros((), dtype=v.dtype, device=v.device))


def bounded_layer(cell: Callable[..., Any], x: Any, state: tuple[Any, ...], result: tuple[Any, ...],
                  limit: float | None) -> tuple[Any, ...]:
    """One layer's (outputs, final states) under ``limit``: ``result`` (what ``cell(x, state)``
    returned) when its outputs stay within ±limit, else the layer computed again one step at a
    time, state and output values outside ±limit set to 0 after every step (see the module
    docstring). Shared by ``SeqModel`` and the population forward, so both decide and recompute
    alike."""
    out, final = result
    if limit is None or not out_of_bounds(out, limit):
        return out, final
    x = as_tensor(x)
    outs = []
    for t in range(x.shape[0]):
        step_out, state = cell(x[t:t + 1], state)
        state = tuple(_bound(s, limit) for s in state)
        outs.append(_bound(step_out, limit))
    return torch.cat(outs), state
