"""A population's forward pass: K language models of one cell, each layer's time loops run as one.

``population_forward(models, tokens, states)`` returns what ``[m(t, s) for m, t, s in ...]``
returns, member by member, but runs every layer's K time loops as a single batched loop
(``compile.population``). The per-sequence work around the loops (embedding, dropout, the
output layer) runs member by member with the member's own modules, so every member computes
exactly what its ``SeqModel.forward`` computes; ``scopes[k]`` (a context manager factory) is
entered around member k's random draws (its dropout), so each member draws from its own
generator in the order its solo forward would.

Members' sequences may differ in length (the Arithmetic task pads each batch to its own
longest example): the cell inputs are padded with zeros to the longest, after the member's
embedding and dropout (inputs given as embedding-table rows, ``SeqModel.cell_inputs``: with
token 0), and the outputs cut back before anything else reads them, so each
member's outputs and random draws are those of its solo pass. The final state of a member
shorter than the longest is then the state after the padding: do not carry it on
(``PopulationTrainer`` refuses to).

A member with a ``state_limit`` gets each layer's result through the same ``bounded_layer`` as
its solo forward: a member whose outputs leave the bound has that layer computed again alone,
step by step, from its own inputs and state; the others keep the batched result.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Sequence

import torch

from cellsearch.compile.population import population_forward as population_layer
from cellsearch.compile.tokens import TokenInputs, reference
from cellsearch.errors import CellsearchError
from cellsearch.nn.model import SeqModel, bounded_layer, outside_bounds


def population_forward(models: Sequence[SeqModel], tokens: Sequence[torch.Tensor], states: Sequence,
                       scopes: Sequence[Callable[[], ContextManager]] | None = None) -> list[tuple]:
    """``[(logits, state), ...]`` of every member (see module docstring); ``states[k]`` may be None."""
    K = len(models)
    if len(tokens) != K or len(states) != K:
        raise CellsearchError(f"a population of {K} models needs {K} token batches and states, "
                              f"got {len(tokens)} and {len(states)}")
    if not K:
        return []
    scopes = scopes or [nullcontext] * K
    if models[0].is_seq2seq or models[0].is_conditioned:  # (these members run one by one, each exactly as alone)
        results = []
        for model, tok, state, scope in zip(models, tokens, states, scopes):
            with scope():
                results.append(model(tok, state))
        return results
    num_layers = models[0].rnn.num_layers
    if any(m.rnn.num_layers != num_layers or m.rnn.bidirectional for m in models):
        raise CellsearchError("the members of a population need the same number of unidirectional layers")
    xs = []
    for model, tok, scope in zip(models, tokens, scopes):
        with scope():
            xs.append(model.cell_inputs(tok))
    n_states = len(models[0].graph.states)
    finals: list[list[list[torch.Tensor]]] = [[[] for _ in range(n_states)] for _ in range(K)]
    lengths = [x.shape[0] for x in xs]
    longest = max(lengths)
    for layer in range(num_layers):
        layer_states = [None if st is None else tuple(s[layer] for s in st) for st in states]
        padded = [_padded(x, longest) for x in xs]
        cells = [m.rnn.cells[layer] for m in models]
        results = population_layer(cells, padded, layer_states)
        outside = _outside_bounds(models, [out[:n] for (out, _), n in zip(results, lengths)])
        for k, ((out, final), model, scope) in enumerate(zip(results, models, scopes)):
            if outside[k]:
                out, final = bounded_layer(cells[k], xs[k], _member_state(model, layer_states[k], xs[k]),
                                           (out[:lengths[k]], final), model.config.state_limit)
            for i, f in enumerate(final):
                finals[k][i].append(f)
            with scope():
                xs[k] = model.rnn.between_layers(out[:lengths[k]], layer)
    logits = []
    for model, x, scope in zip(models, xs, scopes):
        assert isinstance(x, torch.Tensor)  # (a layer's output: only the first layer reads token rows)
        with scope():
            logits.append(model.readout(x))
    return [(lg, tuple(torch.stack(f) for f in fin)) for lg, fin in zip(logits, finals)]


def _outside_bounds(models: Sequence[SeqModel], outs: Sequence[torch.Tensor]) -> list[bool]:
    """Which members' layer outputs leave their model's ``state_limit`` (checked for all members
    at once; a member without a limit is never outside)."""
    limits = [m.config.state_limit for m in models]
    outside = [False] * len(models)
    for limit in {x for x in limits if x is not None}:
        chosen = [k for k, x in enumerate(limits) if x == limit]
        for k, out in zip(chosen, outside_bounds([outs[k] for k in chosen], limit)):
            outside[k] = out
    return outside


def _padded(x, length: int):
    """A member's layer inputs extended to ``length`` steps: zeros, or for inputs given as table rows
    (``TokenInputs``) token 0."""
    if isinstance(x, TokenInputs):
        return x.pad_to(length)
    n = x.shape[0]
    return x if n == length else torch.cat((x, x.new_zeros(length - n, *x.shape[1:])))


def _member_state(model: SeqModel, state, x) -> tuple:
    """A member's layer state as its solo forward starts from (zeros when it has none)."""
    if state is not None:
        return state
    return tuple(s[0] for s in model.rnn.initial_state(x.shape[1], reference(x)))


__all__ = ["population_forward"]
