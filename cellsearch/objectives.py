"""Sequence-level training objectives: REINFORCE on a sequence reward, and MIXER's schedule.

Teacher forcing ("xent") trains every answer token on the reference prefix; at test time the
model reads its own outputs instead (exposure bias). The sequence-level objectives train on what
the model generates itself, scored as a whole:

* **reinforce** (Williams 1992; Ranzato et al. 2016): the decoder samples an answer, its reward
  ``r`` is ``1 - edit distance / length`` against the reference (1 for an exact answer; or, with
  ``reward="exact"``, 1 for an exact answer and 0 otherwise), and the
  loss is ``-(r - b) · Σ_t log p(y_t)`` with ``b`` a running average of past rewards (the
  baseline, which keeps the gradient's variance down);
* **mixer** (Ranzato et al. 2016, "MIXER"): teacher forcing on the first ``P`` answer tokens and
  REINFORCE on the rest, ``P`` annealed from the whole answer (pure teacher forcing, the first
  ``mixer_xent_steps`` steps) down by ``mixer_delta`` tokens every ``mixer_every`` steps to 0
  (pure REINFORCE).

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


def teacher_forced_prefix(objective: str, step: int, longest: int, xent_steps: int, every: int, delta: int) -> int:
    """How many answer tokens (the end-of-answer token included) are teacher-forced at ``step``:
    all (``longest``) for xent, 0 for reinforce, MIXER's annealed count in between."""
    if objective == "xent":
        return longest
    if objective == "reinforce":
        return 0
    if step < xent_steps:
        return longest
    return max(0, longest - delta * (1 + (step - xent_steps) // max(every, 1)))


@dataclass
class Baseline:
    """The running average of the rewards (REINFORCE's baseline)."""

    value: float | None = None
    momentum: float = 0.9

    def update(self, rewards: list[float]) -> None:
        mean = sum(rewards) / len(rewards)
        self.value = mean if self.value is None else self.momentum * self.value + (1 - self.momentum) * mean

    def state_dict(self) -> dict:
        return {"value": self.value, "momentum": self.momentum}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.momentum = state["value"], state["momentum"]


def _answer(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def sequence_loss(model, batch, state, prefix: int, baseline: Baseline, eos: int,
                  generator: torch.Generator | None = None, reward: str = "edit") -> tuple[torch.Tensor, float, dict]:
    """One batch's loss under a teacher-forced prefix of ``prefix`` answer tokens and REINFORCE on
    the rest (see the module docstring). ``batch`` is in the seq2seq layout and ``state`` its
    encoded source. Returns the loss to differentiate, the value to record (teacher-forced NLL
    per token + 1 - mean reward: positive, comparable step to step) and facts for logging."""
    T, B = batch.targets.shape
    P = min(prefix, T)
    logits, state = model(batch.inputs[: P + 1] if P < T else batch.inputs, state)  # (P+1, B, V) or (T, B, V)
    loss = logits.new_zeros(())
    recorded = 0.0
    if P > 0:
        mask = batch.mask[:P]
        nll = F.cross_entropy(logits[:P].reshape(-1, logits.shape[-1]), batch.targets[:P].reshape(-1),
                              reduction="none").view(P, B)
        n = int(mask.sum())
        xent = (nll * mask).sum() / max(n, 1)
        loss = loss + xent
        recorded += float(xent.detach())
    # sequences whose whole answer (and its end) was teacher-forced sample nothing
    lengths = batch.mask.sum(0)  # answer tokens + end of answer
    sampling = lengths > P  # (B,)
    if P >= T or not bool(sampling.any()):
        return loss, recorded, {"prefix": P, "reward": None}
    last = logits[P]  # (B, V): the distribution of answer token P
    log_prob = logits.new_zeros(B)
    done = ~sampling
    sampled: list[torch.Tensor] = []
    for t in range(P, T + 2):  # answers of the batch have at most T - 1 tokens: room to overshoot
        logp = F.log_softmax(last, -1)
        tok = torch.multinomial(logp.detach().exp(), 1, generator=generator).squeeze(-1)  # (B,)
        log_prob = log_prob + logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1) * (~done)
        tok = tok.masked_fill(done, eos)
        sampled.append(tok)
        done = done | (tok == eos)
        if bool(done.all()):
            break
        last, state = model.step(tok, state)
    generated = torch.stack(sampled).t().tolist()  # (B, steps)
    references = batch.targets.t().tolist()
    rewards, which = [], []
    for b in range(B):
        if not bool(sampling[b]):
            continue
        ref = _answer(references[b], eos)
        rewards.append(sequence_reward(ref[:P] + _answer(generated[b], eos), ref, reward))
        which.append(b)
    base = baseline.value if baseline.value is not None else sum(rewards) / len(rewards)
    advantage = torch.zeros(B, dtype=log_prob.dtype, device=log_prob.device)
    advantage[which] = torch.tensor([r - base for r in rewards], dtype=log_prob.dtype, device=log_prob.device)
    loss = loss - (advantage * log_prob).sum() / len(which)
    baseline.update(rewards)
    mean_reward = sum(rewards) / len(rewards)
    return loss, recorded + 1.0 - mean_reward, {"prefix": P, "reward": mean_reward, "rewards": rewards,
                                               "sampled": which, "generated": generated, "log_prob": log_prob,
                                               "baseline": base}


__all__ = ["Baseline", "OBJECTIVES", "REWARDS", "edit_distance", "sequence_loss", "sequence_reward", "teacher_forced_prefix"]
