"""Decoding: greedy, sampling and beam search against independent recomputation with the model."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from cellsearch.nn.decoding import beam_search, greedy, sample
from cellsearch.nn.model import ModelConfig, SeqModel


def make_model(vocab: int = 5, hidden: int = 8, seed: int = 0, dropout: float = 0.0) -> SeqModel:
    """A small GRU language model with weights scaled up so its next-token distributions are peaked."""
    torch.manual_seed(seed)
    model = SeqModel("gru", ModelConfig(vocab_size=vocab, hidden_size=hidden, dropout=dropout))
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.mul_(3.0)
        model.head.weight.mul_(6.0)
        model.embedding.weight.mul_(1.5)
    return model.eval()


def seq_logprob(model: nn.Module, prompt: list[int], tokens: list[int]) -> float:
    """Sum of log p(tokens | prompt), from one full forward pass over prompt + tokens."""
    return float(seq_logprobs(model, prompt, [tokens])[0])


def seq_logprobs(model: nn.Module, prompt: list[int], seqs: list[list[int]]) -> torch.Tensor:
    """Scores of several continuations of the same length, batched, without ``step``."""
    inputs = torch.tensor([prompt + s[:-1] for s in seqs]).T  # (T0 + n - 1, S)
    with torch.no_grad():
        logits, _ = model(inputs, None)  # (T0 + n - 1, S, V)
    logp = logits[len(prompt) - 1:].log_softmax(-1)  # (n, S, V)
    chosen = torch.tensor(seqs).T.unsqueeze(-1)  # (n, S, 1)
    return logp.gather(-1, chosen).squeeze(-1).sum(0)  # (S,)


def truncate_after(seq: list[int], eos: int) -> list[int]:
    return seq[: seq.index(eos) + 1] if eos in seq else seq


class Bigram(nn.Module):
    """A table model with the SeqModel interface: the next-token distribution depends on the last token."""

    def __init__(self, probs: list[list[float]]):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(probs).log(), requires_grad=False)  # (V, V), may hold -inf

    def forward(self, tokens, state=None):
        return self.table[tokens], (tokens[-1:].float().unsqueeze(-1),)  # (T, B, V), ((1, B, 1),)

    def step(self, tokens, state=None):
        logits, state = self.forward(tokens.unsqueeze(0), state)
        return logits[0], state

    @staticmethod
    def select_state(state, index):
        return tuple(s.index_select(1, index) for s in state)


# ---------------------------------------------------------------- 1. beam_size=1 is greedy


@pytest.mark.parametrize("prompt", [[0], [1, 3], [4, 4, 2]])
def test_beam_size_one_is_greedy_without_eos(prompt):
    model = make_model()
    g = greedy(model, torch.tensor(prompt).unsqueeze(1), 7)[:, 0].tolist()
    (tokens, score), = beam_search(model, torch.tensor(prompt), beam_size=1, max_new_tokens=7)
    assert tokens == g
    assert score == pytest.approx(seq_logprob(model, prompt, g), abs=1e-4)


@pytest.mark.parametrize("eos", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("prompt", [[0], [1, 3], [4, 4, 2]])
def test_beam_size_one_is_greedy_with_eos(prompt, eos):
    model = make_model()
    g = greedy(model, torch.tensor(prompt).unsqueeze(1), 8, eos_id=eos)[:, 0].tolist()
    (tokens, score), = beam_search(model, torch.tensor(prompt), beam_size=1, max_new_tokens=8, eos_id=eos)
    assert tokens == truncate_after(g, eos)
    assert score == pytest.approx(seq_logprob(model, prompt, tokens), abs=1e-4)


# ---------------------------------------------------------------- 2. exhaustive search


@pytest.mark.parametrize("vocab,length", [(3, 4), (4, 3)])
def test_wide_beam_equals_exhaustive_search(vocab, length):
    model = make_model(vocab=vocab, seed=1)
    prompt = [1, 0]
    seqs = [list(s) for s in itertools.product(range(vocab), repeat=length)]
    exhaustive = seq_logprobs(model, prompt, seqs).tolist()
    ranked = sorted(zip(seqs, exhaustive), key=lambda h: -h[1])
    by_seq = {tuple(s): v for s, v in ranked}
    assert ranked[0][1] - ranked[1][1] > 1e-4  # the best sequence is well defined

    # beam as wide as the number of sequences: the whole ranked list
    full = beam_search(model, torch.tensor(prompt), beam_size=len(seqs), max_new_tokens=length)
    assert len(full) == len(seqs)
    assert full[0][0] == ranked[0][0]
    assert full[0][1] == pytest.approx(ranked[0][1], abs=1e-4)
    for (tokens, score), (_, ref) in zip(full, ranked):
        assert score == pytest.approx(by_seq[tuple(tokens)], abs=1e-4)
        assert score == pytest.approx(ref, abs=1e-4)  # same order, up to exact ties

    # vocab ** (length - 1) beams hold every prefix, so the top-k list is exact too
    k = vocab ** (length - 1)
    top = beam_search(model, torch.tensor(prompt), beam_size=k, max_new_tokens=length)
    assert [t for t, _ in top] == [s for s, _ in ranked[:k]]
    assert [s for _, s in top] == pytest.approx([s for _, s in ranked[:k]], abs=1e-4)

    # wider than the number of distinct continuations: no duplicates, no -inf
    wide = beam_search(model, torch.tensor(prompt), beam_size=3 * len(seqs), max_new_tokens=length)
    assert len(wide) == len(seqs)
    assert len({tuple(t) for t, _ in wide}) == len(seqs)
    assert all(math.isfinite(s) for _, s in wide)
    assert [s for _, s in wide] == pytest.approx([s for _, s in full], abs=1e-5)


def test_wide_beam_on_first_step_keeps_only_distinct_tokens():
    model = make_model(vocab=3, seed=2)
    res = beam_search(model, torch.tensor([0]), beam_size=10, max_new_tokens=1)
    assert sorted(t for t, _ in res) == [[0], [1], [2]]
    logp = seq_logprobs(model, [0], [[0], [1], [2]]).tolist()
    assert sorted(s for _, s in res) == pytest.approx(sorted(logp), abs=1e-5)


@pytest.mark.parametrize("length_penalty", [0.0, 0.7, 1.0])
def test_wide_beam_with_eos_equals_exhaustive_search(length_penalty):
    model = make_model(vocab=4, seed=3)
    eos, prompt, length = 2, [1, 3], 3
    other = [t for t in range(4) if t != eos]
    hyps = [list(p) + [eos] for n in range(length) for p in itertools.product(other, repeat=n)]
    hyps += [list(p) for p in itertools.product(other, repeat=length)]
    ref = {tuple(h): seq_logprob(model, prompt, h) / (len(h) ** length_penalty) for h in hyps}
    ranked = sorted(ref.items(), key=lambda kv: -kv[1])
    res = beam_search(model, torch.tensor(prompt), beam_size=64, max_new_tokens=length, eos_id=eos,
                      length_penalty=length_penalty)
    assert len(res) == len(hyps)
    assert {tuple(t) for t, _ in res} == set(ref)
    for (tokens, score), (_, expected) in zip(res, ranked):
        assert score == pytest.approx(ref[tuple(tokens)], abs=1e-4)
        assert score == pytest.approx(expected, abs=1e-4)


# ---------------------------------------------------------------- 3. eos and length penalty


def test_finished_hypotheses_carry_eos_and_their_log_prob():
    model = make_model()
    eos, prompt = 2, [1, 3]
    res = beam_search(model, torch.tensor(prompt), beam_size=5, max_new_tokens=8, eos_id=eos)
    assert len(res) == 5
    finished = [t for t, _ in res if t and t[-1] == eos]
    assert finished, "the case must produce finished hypotheses"
    assert len({tuple(t) for t, _ in res}) == len(res)
    scores = [s for _, s in res]
    assert scores == sorted(scores, reverse=True)
    for tokens, score in res:
        assert eos not in tokens[:-1]  # nothing is generated after eos
        assert len(tokens) == 8 or tokens[-1] == eos  # unfinished ones run to max length
        assert score == pytest.approx(seq_logprob(model, prompt, tokens), abs=1e-4)


@pytest.mark.parametrize("length_penalty", [0.5, 1.0, 2.0])
def test_length_penalty_normalises_scores(length_penalty):
    model = make_model()
    eos, prompt = 2, [1, 3]
    res = beam_search(model, torch.tensor(prompt), beam_size=5, max_new_tokens=8, eos_id=eos,
                      length_penalty=length_penalty)
    scores = [s for _, s in res]
    assert scores == sorted(scores, reverse=True)
    for tokens, score in res:
        assert score == pytest.approx(seq_logprob(model, prompt, tokens) / len(tokens) ** length_penalty, abs=1e-4)


def test_length_penalty_changes_the_ranking():
    bos, eos, a = 0, 1, 2  # token 3 exists but is never preferred
    model = Bigram([
        [0.0, 0.4, 0.5, 0.1],  # after bos: eos is the best single token, "bos" impossible (-inf)
        [0.25, 0.25, 0.25, 0.25],  # after eos (never used)
        [0.0, 0.7, 0.2, 0.1],  # after a: eos very likely
        [0.0, 0.1, 0.45, 0.45],
    ])
    prompt = torch.tensor([bos])
    raw = beam_search(model, prompt, beam_size=2, max_new_tokens=4, eos_id=eos)
    assert raw[0][0] == [eos]
    assert raw[0][1] == pytest.approx(math.log(0.4))
    assert raw[1][0] == [a, eos]
    assert raw[1][1] == pytest.approx(math.log(0.5) + math.log(0.7))
    normed = beam_search(model, prompt, beam_size=2, max_new_tokens=4, eos_id=eos, length_penalty=1.0)
    # per token, a longer finished hypothesis now beats [eos] (log 0.4 = -0.92 per token)
    assert [t for t, _ in normed] == [[a, eos], [a, a, eos]]
    assert normed[0][1] == pytest.approx((math.log(0.5) + math.log(0.7)) / 2)
    assert normed[1][1] == pytest.approx((math.log(0.5) + math.log(0.2) + math.log(0.7)) / 3)
    assert normed[1][1] > math.log(0.4)
    for res in (raw, normed):
        assert all(math.isfinite(s) for _, s in res)


def test_beam_search_stops_when_every_extension_is_impossible_or_finished():
    # after bos only eos is possible: a single finished hypothesis, no -inf garbage
    model = Bigram([[0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]])
    res = beam_search(model, torch.tensor([0]), beam_size=4, max_new_tokens=5, eos_id=1)
    assert res == [([1], pytest.approx(0.0))]


def test_beam_search_edge_cases():
    model = make_model()
    assert beam_search(model, torch.tensor([1]), beam_size=3, max_new_tokens=0) == [([], 0.0)]
    with pytest.raises(ValueError):
        beam_search(model, torch.tensor([[1]]), beam_size=3, max_new_tokens=2)
    with pytest.raises(ValueError):
        beam_search(model, torch.tensor([], dtype=torch.long), beam_size=3, max_new_tokens=2)
    with pytest.raises(ValueError):
        beam_search(model, torch.tensor([1]), beam_size=0, max_new_tokens=2)
    with pytest.raises(ValueError):
        beam_search(model, torch.tensor([1]), beam_size=2, max_new_tokens=2, length_penalty=-1.0)


# ---------------------------------------------------------------- 4. greedy batches and eos


def prompts() -> torch.Tensor:
    return torch.tensor([[0, 4, 1], [3, 2, 1], [1, 0, 3]])  # (T0=3, B=3)


def test_greedy_batch_equals_single_prompts():
    model = make_model()
    batch = greedy(model, prompts(), 10)
    assert batch.shape == (10, 3) and batch.dtype == torch.long
    for i in range(3):
        alone = greedy(model, prompts()[:, i: i + 1], 10)
        assert torch.equal(batch[:, i: i + 1], alone)
    # and every token is the argmax of an independent forward pass over prompt + generated tokens
    full = torch.cat([prompts(), batch[:-1]])
    with torch.no_grad():
        logits, _ = model(full, None)
    assert torch.equal(logits[2:].argmax(-1), batch)


def test_greedy_with_eos_pads_and_stops_early(monkeypatch):
    model = make_model()
    free = greedy(model, prompts(), 12)
    rows = [free[:, i].tolist() for i in range(3)]
    eos = next(t for t in range(5) if all(t in r[:6] for r in rows))  # a token every row reaches early
    last = max(r.index(eos) for r in rows)
    calls = []
    step = model.step
    monkeypatch.setattr(model, "step", lambda tok, state: (calls.append(1), step(tok, state))[1])
    out = greedy(model, prompts(), 12, eos_id=eos)
    assert out.shape == (12, 3)
    for i, r in enumerate(rows):
        k = r.index(eos)
        assert out[: k + 1, i].tolist() == r[: k + 1]
        assert (out[k:, i] == eos).all()
    assert len(calls) == last < 11  # no step once every sequence has finished


def test_greedy_edge_cases():
    model = make_model()
    assert greedy(model, prompts(), 0).shape == (0, 3)
    with pytest.raises(ValueError):
        greedy(model, torch.tensor([1, 2]), 3)  # needs (T0, B)
    with pytest.raises(ValueError):
        greedy(model, torch.zeros(0, 2, dtype=torch.long), 3)


# ---------------------------------------------------------------- 5. sampling and modes


def test_sample_is_deterministic_given_the_generator():
    model = make_model()
    a = sample(model, prompts(), 15, generator=torch.Generator().manual_seed(7))
    b = sample(model, prompts(), 15, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert a.shape == (15, 3) and a.min() >= 0 and a.max() < 5
    wide = prompts()[:, :1].repeat(1, 64)
    c = sample(model, wide, 15, temperature=2.0, generator=torch.Generator().manual_seed(7))
    d = sample(model, wide, 15, temperature=2.0, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(c, d)
    torch.manual_seed(123)  # the global RNG plays no part when a generator is given
    e = sample(model, prompts(), 15, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, e)


@pytest.mark.parametrize("eos", [None, 2])
def test_sample_top_k_one_and_cold_temperature_are_greedy(eos):
    model = make_model()
    g = greedy(model, prompts(), 10, eos_id=eos)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(sample(model, prompts(), 10, top_k=1, temperature=5.0, eos_id=eos, generator=gen), g)
    assert torch.equal(sample(model, prompts(), 10, temperature=1e-4, eos_id=eos, generator=gen), g)
    assert torch.equal(sample(model, prompts(), 10, temperature=1e-30, eos_id=eos, generator=gen), g)


def test_sample_follows_the_distribution_and_top_k():
    model = make_model()
    prompt = torch.tensor([[1], [3]]).repeat(1, 4000)  # (2, 4000), all the same prompt
    with torch.no_grad():
        probs = model(prompt[:, :1], None)[0][-1, 0].softmax(-1)  # (V,)
    first = sample(model, prompt, 1, generator=torch.Generator().manual_seed(1))[0]
    freq = torch.bincount(first, minlength=5).float() / first.numel()
    assert torch.allclose(freq, probs, atol=0.03)
    top2 = set(probs.topk(2).indices.tolist())
    first = sample(model, prompt, 1, temperature=3.0, top_k=2, generator=torch.Generator().manual_seed(1))[0]
    assert set(first.tolist()) == top2


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_sample_rejects_non_positive_temperature(temperature):
    with pytest.raises(ValueError):
        sample(make_model(), prompts(), 3, temperature=temperature)


def test_sample_rejects_bad_top_k():
    with pytest.raises(ValueError):
        sample(make_model(), prompts(), 3, top_k=0)


def test_decoding_uses_eval_mode_no_grad_and_restores_training_mode(monkeypatch):
    model = make_model(dropout=0.5)
    reference = greedy(model, prompts(), 8)  # eval mode
    beams = beam_search(model, prompts()[:, 0], 3, 8)
    model.train()
    model.head.eval()  # a mixed setting must come back exactly
    modes = {name: m.training for name, m in model.named_modules()}
    seen = []
    step = model.step

    def spy(tok, state):
        seen.append((model.training, model.drop.training, torch.is_grad_enabled()))
        return step(tok, state)

    monkeypatch.setattr(model, "step", spy)
    assert torch.equal(greedy(model, prompts(), 8), reference)  # dropout is off while decoding
    assert beam_search(model, prompts()[:, 0], 3, 8) == beams
    sample(model, prompts(), 8, generator=torch.Generator().manual_seed(0))
    assert seen and all(s == (False, False, False) for s in seen)
    assert {name: m.training for name, m in model.named_modules()} == modes

    def boom(tok, state):
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "step", boom)
    with pytest.raises(RuntimeError):
        greedy(model, prompts(), 3)
    assert {name: m.training for name, m in model.named_modules()} == modes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = make_model()
    g = greedy(model, prompts(), 8, eos_id=2)
    s = sample(model, prompts(), 8, generator=torch.Generator().manual_seed(3))
    b = beam_search(model, prompts()[:, 0], 4, 8, eos_id=2)
    model.cuda()
    assert torch.equal(greedy(model, prompts(), 8, eos_id=2).cpu(), g)
    # a CPU generator drives sampling on CUDA: same draws as on CPU
    assert torch.equal(sample(model, prompts(), 8, generator=torch.Generator().manual_seed(3)).cpu(), s)
    bc = beam_search(model, prompts()[:, 0].cuda(), 4, 8, eos_id=2)
    assert [t for t, _ in bc] == [t for t, _ in b]
    assert [s for _, s in bc] == pytest.approx([s for _, s in b], abs=1e-4)
