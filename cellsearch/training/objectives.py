"""Sequence-level training objectives: REINFORCE on a sequence reward, and MIXER's schedule.

Teacher forcing ("xent") trains every answer token on the reference prefix; at test time the
model reads its own outputs instead (exposure bias). The sequence-level objectives train on what
the model generates itself, scored as a whole:

* **reinforce** (Williams 1992; Ranzato et al. 2016): the decoder samples an answer, its reward
  ``r`` is ``1 - edit distance / length`` against the reference (1 for an exact answer; or, with
  ``reward="exact"``, 1 for an exact answer and 0 otherwise), and the
  loss is ``-(r - b) · Σ_t log p(y_t)`` with ``b`` a running average of past rewards (the
  baseline, which keeps the gradient's variance down);
* **mixer** (Ranzato et al. 2016, "MIXER"): teacher forcing on each answer's first tokens and
  REINFORCE on its last Δ tokens, Δ growing from 0 (pure teacher forcing, the first
  ``mixer_xent_steps`` steps) by ``mixer_delta`` tokens every ``mixer_every`` steps until every
  answer is sampled whole (pure REINFORCE).

Both need batches in the seq2seq layout (an encoder-decoder model: every answer starts at the
decoder's first position). ``sequence_loss`` computes one batch's loss; the trainer calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

OBJECTIVES = ("xent", "reinforce", "mixer")
REWARDS = ("edit", "exact")


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions) between two token lists."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def sequence_reward(generated: list[int], reference: list[int], kind: str = "edit") -> float:
    """"edit": 1 - edit distance / the longer length (1 for an exact answer, 0 for nothing in
    common); "exact": 1 for an exact answer, else 0."""
    if kind == "exact":
        return float(generated == reference)
    longest = max(len(generated), len(reference), 1)
    return 1.0 - edit_distance(generated, reference) / longest


def sampled_tail(objective: str, step: int, xent_steps: int, every: int, delta: int) -> int | None:
    """How many of every answer's last tokens (its end included) the decoder samples at ``step``,
    the rest being teacher-forced: 0 for xent, None (all) for reinforce; MIXER's count grows by
    ``delta`` every ``every`` steps after ``xent_steps`` steps of teacher forcing."""
    if objective == "xent":
        return 0
    if objective == "reinforce":
        return None
    if step < xent_steps:
        return 0
    return delta * (1 + (step - xent_steps) // max(every, 1))


@dataclass
class Baseline:
    """The running average of the rewards (REINFORCE's baseline)."""

    value: float | None = None
    momentum: float = 0.9

    def update(self, rewards: list[float]) -> None:
        """Fold the mean of one batch's ``rewards`` into the average (the first batch sets it)."""
        mean = sum(rewards) / len(rewards)
        self.value = mean if self.value is None else self.momentum * self.value + (1 - self.momentum) * mean

    def state_dict(self) -> dict:
        """The average and its momentum, for a checkpoint."""
        return {"value": self.value, "momentum": self.momentum}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""
        self.value, self.momentum = state["value"], state["momentum"]


def _answer(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def sequence_loss(model, batch, state, tail: int | None, baseline: Baseline, eos: int,
                  generator: torch.Generator | None = None, reward: str = "edit") -> tuple[torch.Tensor, float, dict]:
    """One batch's loss: every answer's first tokens teacher-forced and its last ``tail`` tokens
    (None: all of them) sampled and scored with REINFORCE (see the module docstring). ``batch`` is
    in the seq2seq layout and ``state`` its encoded source. Returns the loss to differentiate, the
    value to record (teacher-forced NLL per token + 1 - mean reward: positive, comparable step to
    step) and facts for logging and tests."""
    T, B = batch.targets.shape
    lengths = batch.mask.sum(0)  # (B,) answer tokens + the end of the answer
    prefix = torch.zeros_like(lengths) if tail is None else (lengths - tail).clamp(min=0)  # (B,) teacher-forced
    sampling = prefix < lengths  # (B,) sequences with a sampled tail
    first = int(prefix.min())  # positions before it are teacher-forced for every sequence
    logits, state = model(batch.inputs[: first + 1], state)  # (first + 1, B, V)
    nll_sum = logits.new_zeros(())
    forced = 0

    def xent(step_logits: torch.Tensor, t: int, rows: torch.Tensor) -> None:
        nonlocal nll_sum, forced
        nll = F.cross_entropy(step_logits, batch.targets[t], reduction="none")  # (B,)
        keep = rows & batch.mask[t]
        nll_sum = nll_sum + (nll * keep).sum()
        forced += int(keep.sum())

    everyone = torch.ones(B, dtype=torch.bool, device=lengths.device)
    for t in range(first):
        xent(logits[t], t, everyone)
    last = logits[first]  # (B, V): the distribution of answer token ``first``
    log_prob = logits.new_zeros(B)
    done = ~sampling
    sampled = torch.full((T + 2, B), eos, dtype=torch.long, device=lengths.device)
    for t in range(first, T + 2):  # answers have at most T tokens with their end: room to overshoot
        forcing = t < prefix  # (B,) still teacher-forced at this position
        if bool(forcing.any()):
            xent(last, t, forcing)
        logp = F.log_softmax(last, -1)
        free = ~forcing & ~done  # sampling here
        tok = torch.multinomial(logp.detach().exp(), 1, generator=generator).squeeze(-1)  # (B,)
        log_prob = log_prob + logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1) * free
        tok = torch.where(free, tok, torch.full_like(tok, eos))
        sampled[t] = tok
        done = done | (free & (tok == eos))
        if bool(done.all()) and not bool((t + 1 < prefix).any()):  # nothing left to sample or to force
            break
        reference = batch.inputs[t + 1] if t + 1 < T else torch.full_like(tok, eos)
        last, state = model.step(torch.where(forcing, reference, tok), state)
    references = batch.targets.t().tolist()
    generated = sampled.t().tolist()
    rewards, which = [], []
    for b in range(B):
        if not bool(sampling[b]):
            continue
        ref = _answer(references[b], eos)
        p = int(prefix[b])
        rewards.append(sequence_reward(ref[:p] + _answer(generated[b][p:], eos), ref, reward))
        which.append(b)
    loss = nll_sum / max(forced, 1)
    recorded = float(loss.detach())
    if not which:
        return loss, recorded, {"prefix": prefix.tolist(), "reward": None}
    base = baseline.value if baseline.value is not None else sum(rewards) / len(rewards)
    advantage = torch.zeros(B, dtype=log_prob.dtype, device=log_prob.device)
    advantage[which] = torch.tensor([r - base for r in rewards], dtype=log_prob.dtype, device=log_prob.device)
    loss = loss - (advantage * log_prob).sum() / len(which)
    baseline.update(rewards)
    mean_reward = sum(rewards) / len(rewards)
    return loss, recorded + 1.0 - mean_reward, {"prefix": prefix.tolist(), "reward": mean_reward,
                                               "rewards": rewards, "sampled": which, "generated": generated,
                                               "log_prob": log_prob, "baseline": base}


__all__ = ["Baseline", "OBJECTIVES", "REWARDS", "edit_distance", "sampled_tail", "sequence_loss", "sequence_reward"]
