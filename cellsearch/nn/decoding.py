"""Sequence generation from a language model: greedy decoding, sampling and beam search.

Works with any model that has the interface of :class:`cellsearch.nn.model.SeqModel`:

* ``logits, state = model(tokens, state)``: tokens (T, B) long → logits (T, B, V); ``state=None``
  starts from the initial state (an encoder-decoder model starts from its encoded source: pass
  ``state=model.encode(source)`` to the functions here);
* ``logits, state = model.step(tokens, state)``: tokens (B,) → logits (B, V);
* ``model.select_state(state, index)``: reorder / repeat the batch dimension of a state (beam search).

Every function runs under ``torch.no_grad()`` with the model temporarily in eval mode (dropout off);
the train/eval flag of every submodule is restored afterwards, also when decoding raises. The prompt is
moved to the device of the model's parameters and the results live there too (CPU or CUDA).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import nn

from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_BEAM, MAX_LENGTH_PENALTY, MAX_NEW_TOKENS, MAX_TEMPERATURE, LimitError, check_number

if TYPE_CHECKING:  # the annotation names the interface; any model with it works (duck-typed)
    from cellsearch.nn.model import SeqModel

__all__ = ["greedy", "sample", "beam_search", "check_decoding", "DecodingError"]


@contextlib.contextmanager
def _decoding(model: nn.Module) -> Iterator[None]:
    """Eval mode and no_grad for the duration; every submodule's training flag is restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def _device(model: nn.Module, fallback: torch.device) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else fallback


def _check_prompt(prompt: torch.Tensor, dims: int, shape: str) -> None:
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != dims:
        got = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise ValueError(f"prompt must be a {dims}-d LongTensor {shape}, got {got}")
    if prompt.shape[0] < 1:
        raise ValueError("prompt must have at least one token")
    if prompt.dtype != torch.long:
        raise ValueError(f"prompt must hold token ids (torch.long), got {prompt.dtype}")


class DecodingError(ConfigError, ValueError):
    """A decoding setting out of its range: a ``ConfigError`` (one line at the command line) and,
    as these functions have always raised, a ``ValueError``."""


def check_decoding(max_new_tokens: int, *, beam_size: int | None = None, temperature: float | None = None,
                   top_k: int | None = None, length_penalty: float = 0.0) -> None:
    """Check decoding settings before any work (``cellsearch generate`` calls it before it loads the
    model; the functions here check theirs): ``DecodingError``, or a ``LimitError`` past a limit."""
    try:
        check_number("check_decoding.max_new_tokens", max_new_tokens, 0, "generated tokens", MAX_NEW_TOKENS)
        if beam_size is not None:
            check_number("check_decoding.beam_size", beam_size, 1, "beam", MAX_BEAM)
        if temperature is not None:  # (NaN and inf mean nothing; a tiny one is fine: greedy is its limit)
            check_number("check_decoding.temperature", temperature, 0, "temperature", MAX_TEMPERATURE, integer=False,
                         low_open=True)
        if top_k is not None:  # (more than the vocabulary keeps all of it)
            check_number("check_decoding.top_k", top_k, 1)
        check_number("check_decoding.length_penalty", length_penalty, 0, "length penalty", MAX_LENGTH_PENALTY,
                     integer=False)
    except LimitError:
        raise
    except ConfigError as exc:
        raise DecodingError(str(exc), field=exc.fields) from None


def _check_length(max_new_tokens: int) -> None:
    check_decoding(max_new_tokens)


def _decode(model: SeqModel, prompt: torch.Tensor, max_new_tokens: int, eos_id: int | None,
            choose: Callable[[torch.Tensor], torch.Tensor], state=None) -> torch.Tensor:
    """Shared loop of greedy and sample: ``choose`` maps logits (B, V) to token ids (B,)."""
    _check_prompt(prompt, 2, "(T0, B)")
    _check_length(max_new_tokens)
    prompt = prompt.to(_device(model, prompt.device))
    B = prompt.shape[1]
    out = prompt.new_full((max_new_tokens, B), eos_id if eos_id is not None else 0)  # (N, B)
    if max_new_tokens == 0:
        return out
    with _decoding(model):
        logits, state = model(prompt, state)  # (T0, B, V)
        last = logits[-1]  # (B, V)
        done = torch.zeros(B, dtype=torch.bool, device=prompt.device)  # (B,)
        for t in range(max_new_tokens):
            tok = choose(last)  # (B,)
            if eos_id is not None:
                tok = tok.masked_fill(done, eos_id)  # finished sequences are padded with eos
                done = done | (tok == eos_id)
            out[t] = tok
            if t + 1 == max_new_tokens or (eos_id is not None and bool(done.all())):
                break  # the rest of ``out`` already holds eos_id
            last, state = model.step(tok, state)  # (B, V)
    return out


def greedy(model: SeqModel, prompt: torch.Tensor, max_new_tokens: int, eos_id: int | None = None,
           state=None) -> torch.Tensor:
    """Greedy (argmax) decoding of a batch of prompts.

    Args:
        model: a model with the ``SeqModel`` interface (see the module docstring).
        prompt: LongTensor (T0, B), T0 >= 1; every prompt in the batch has the same length. It is fed
            in one call; its last position predicts the first new token.
        max_new_tokens: number of tokens to generate (>= 0).
        eos_id: end-of-sequence id. A sequence that has emitted it is finished: its later positions
            are ``eos_id``; decoding stops as soon as every sequence is finished (the output keeps its
            full shape, padded with ``eos_id``).
        state: the state the prompt starts from (None: the model's initial state; an
            encoder-decoder model's ``encode(source)``).

    Returns:
        LongTensor (max_new_tokens, B) of generated ids (without the prompt), on the model's device.
    """
    return _decode(model, prompt, max_new_tokens, eos_id, lambda logits: logits.argmax(-1), state)


def sample(model: SeqModel, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, eos_id: int | None = None,
           generator: torch.Generator | None = None, state=None) -> torch.Tensor:
    """Ancestral sampling from ``softmax(logits / temperature)``, optionally restricted to the top k.

    Shapes, ``prompt``, ``max_new_tokens`` and ``eos_id`` as in :func:`greedy`.

    Args:
        temperature: > 0 (``ValueError`` otherwise); small values approach greedy decoding.
        top_k: keep only the k most likely tokens at every step (``None``: the whole vocabulary;
            k >= 1, clipped to the vocabulary size). ``top_k=1`` is greedy decoding.
        generator: the only source of randomness (``torch.multinomial(..., generator=generator)``);
            the same generator state gives the same samples. ``None`` uses torch's global RNG. A
            generator on another device than the model (e.g. a CPU generator with a CUDA model) is
            supported: the probabilities are moved to the generator's device for drawing.

    Returns:
        LongTensor (max_new_tokens, B) of sampled ids, on the model's device.
    """
    check_decoding(max_new_tokens, temperature=temperature, top_k=top_k)

    def choose(logits: torch.Tensor) -> torch.Tensor:  # (B, V) → (B,)
        logits = logits.float()
        # subtract the max first: with a tiny temperature the scaled logits stay <= 0 (no inf - inf)
        shifted = logits - logits.amax(-1, keepdim=True)  # (B, V)
        if temperature < torch.finfo(torch.float32).tiny:  # (it would become 0 in float32: 0 / 0 at the max)
            scaled = torch.where(shifted == 0, 0.0, float("-inf"))  # the limit: the argmax (ties share)
        else:
            scaled = shifted / temperature  # (B, V)
        if top_k is not None and top_k < scaled.shape[-1]:
            idx = scaled.topk(top_k, dim=-1).indices  # (B, k)
            kept = torch.full_like(scaled, float("-inf")).scatter(-1, idx, scaled.gather(-1, idx))
            scaled = kept  # (B, V), exactly k finite entries per row
        probs = scaled.softmax(-1)  # (B, V)
        if generator is not None and probs.device != generator.device:
            return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1).to(logits.device)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)

    return _decode(model, prompt, max_new_tokens, eos_id, choose, state)


def beam_search(model: SeqModel, prompt: torch.Tensor, beam_size: int, max_new_tokens: int,
                eos_id: int | None = None, length_penalty: float = 0.0, state=None) -> list[tuple[list[int], float]]:
    """Beam search continuation of a single prompt.

    The live hypotheses are batched along the batch dimension: one ``model.step`` call per position
    for all of them, their states reordered with ``model.select_state``. At every position the best
    ``2 * beam_size`` one-token extensions (by raw score) are considered in order: one that ends in
    ``eos_id`` and ranks among the first ``beam_size`` becomes a finished hypothesis (eos included in
    its tokens); the first ``beam_size`` that do not end in eos stay live. Fewer than ``beam_size``
    live hypotheses are kept when fewer distinct continuations exist (tiny vocabulary, first steps),
    so no hypothesis is ever duplicated. The search stops at ``max_new_tokens``, when no live
    hypothesis is left, or as soon as ``beam_size`` finished hypotheses are at least as good as any
    live one could still become (an exact bound: log-probabilities are <= 0).

    Args:
        model: a model with the ``SeqModel`` interface (see the module docstring).
        prompt: LongTensor (T0,), T0 >= 1.
        beam_size: number of hypotheses kept (>= 1).
        max_new_tokens: maximum number of generated tokens (>= 0).
        eos_id: end-of-sequence id, or ``None`` (every hypothesis runs to ``max_new_tokens``).
        length_penalty: alpha >= 0. Hypotheses are ranked by ``score / len ** alpha``, where
            ``score`` is the sum of the log-probabilities of the generated tokens and ``len`` their
            number (eos included); 0 ranks by the raw sum (GNMT-style normalisation otherwise).

    Returns:
        At most ``beam_size`` ``(tokens, score)`` pairs, best first: the finished hypotheses plus the
        live ones at ``max_new_tokens``. ``tokens`` are the generated ids (prompt excluded) and
        ``score`` the normalised score ``sum_logprob / len ** length_penalty`` (the raw sum of
        log-probabilities when ``length_penalty`` is 0). ``max_new_tokens=0`` gives ``[([], 0.0)]``.
    """
    _check_prompt(prompt, 1, "(T0,)")
    check_decoding(max_new_tokens, beam_size=beam_size, length_penalty=length_penalty)
    if max_new_tokens == 0:
        return [([], 0.0)]
    device = _device(model, prompt.device)
    prompt = prompt.to(device)

    def normalise(score: float, length: int) -> float:
        return score / length ** length_penalty if length_penalty > 0 and length > 0 else score

    finished: list[tuple[list[int], float]] = []  # (tokens, normalised score), kept sorted, <= beam_size
    with _decoding(model):
        logits, state = model(prompt.unsqueeze(1), state)  # (T0, 1, V); state: batch 1
        logp = logits[-1].float().log_softmax(-1)  # (n=1, V)
        scores = logp.new_zeros(1)  # (n,) raw sums of log-probs of the live hypotheses
        tokens = prompt.new_empty(1, 0)  # (n, t) generated ids of the live hypotheses
        for t in range(max_new_tokens):
            n, V = logp.shape
            cand = (scores.unsqueeze(1) + logp).view(-1)  # (n * V,)
            k = min(2 * beam_size, cand.numel())
            top_scores, top_idx = cand.topk(k)  # (k,), sorted best first
            parents = top_idx // V  # (k,)
            next_tok = top_idx % V  # (k,)
            keep: list[int] = []
            for rank, (s, tok) in enumerate(zip(top_scores.tolist(), next_tok.tolist())):
                if s == float("-inf") or len(keep) == beam_size:
                    break  # impossible continuations, or the beam is full
                if eos_id is not None and tok == eos_id:
                    if rank < beam_size:
                        hyp = tokens[parents[rank]].tolist() + [tok]
                        finished.append((hyp, normalise(s, t + 1)))
                    continue
                keep.append(rank)
            finished.sort(key=lambda h: -h[1])
            del finished[beam_size:]
            if not keep:
                scores, tokens = scores[:0], tokens[:0]  # every extension finished (or was impossible)
                break
            sel = torch.tensor(keep, device=device)  # (n',)
            parent = parents[sel]  # (n',)
            tok = next_tok[sel]  # (n',)
            scores = top_scores[sel]  # (n',)
            tokens = torch.cat([tokens[parent], tok.unsqueeze(1)], 1)  # (n', t + 1)
            if t + 1 == max_new_tokens:
                break
            if len(finished) == beam_size:
                # a live hypothesis' raw score only decreases; s / L**alpha with s <= 0 is largest at
                # the largest length, so this bounds every future normalised score
                bound = normalise(float(scores.max()), max_new_tokens)
                if finished[-1][1] >= bound:
                    scores, tokens = scores[:0], tokens[:0]  # no live hypothesis can make the list
                    break
            state = model.select_state(state, parent)
            logits, state = model.step(tok, state)  # (n', V)
            logp = logits.float().log_softmax(-1)  # (n', V)
        length = tokens.shape[1]
        live = [(hyp, normalise(s, length)) for hyp, s in zip(tokens.tolist(), scores.tolist())]
    results = sorted(finished + live, key=lambda h: -h[1])  # stable: finished first on ties
    return results[:beam_size]
