"""Zoph & Le 2017's controller: an LSTM that writes the space's decisions, trained with REINFORCE.

The controller
    A 2-layer LSTM (``torch.nn.LSTM``, 35 units, every parameter initialised uniformly in
    ±0.08) emits the space's decisions one token at a time. The input at step 0 is a learned
    start embedding; the input at step t is the embedding of the choice made at step t-1 (one
    embedding row per (decision, choice) pair, so decisions with the same labels do not share
    rows). Decision t has its own linear output head with ``len(decision)`` logits, so
    decisions of different sizes are fine. Sampling uses the strategy's own ``torch.Generator``
    (seeded from ``seed``), never torch's global RNG.

Training
    ``tell`` turns the result into a reward and stores (decisions, reward). Every
    ``batch_size`` told results (a batch of children evaluated in parallel) the controller
    takes one Adam step on the REINFORCE loss::

        loss = -mean_i[(R_i - b) * log p(a_i)] - entropy_weight * mean_i[H_i]

    where log p(a_i) is recomputed at update time from the *stored decision sequences* under
    the current weights (so the order of asks and tells, and a resume in between, do not
    matter), H_i is the sum over steps of the entropy of the output distributions along
    sequence i, and b is the baseline *before* the batch. Then b is updated once per reward:
    ``b <- baseline_decay * b + (1 - baseline_decay) * R``. The batch is sorted (by decisions,
    then reward) first, so the order in which its results were told does not change the step
    even in floating point (Adam's first steps amplify rounding noise of near-zero gradients). Before the first
    update b is undefined; the first batch initialises it to that batch's mean reward (so the
    first step is not a blind push towards whatever was sampled first).

Rewards (option ``reward``)
    ``"score"`` (default): R = score, higher is better. ``"zoph"``: R = reward_c * score**2
    with reward_c = 80: for the PTB score (per-word probability = 1 / perplexity) this is
    exactly Zoph & Le's 80 / perplexity². A failed result (no finite score) gets R = 0, the
    worst possible reward for non-negative scores (scores in cellsearch are accuracies or
    probabilities).

Defaults
    lr 5e-4 (Zoph & Le's PTB controller), baseline_decay 0.95, batch_size 8, entropy_weight
    1e-4 (ENAS's controller value; the bonus is in reward units, and PTB rewards are ~0.01 with
    differences ~0.001 between children, so 1e-3 per decision would swamp the signal and keep
    the controller uniform; set 0 for Zoph's plain REINFORCE).

Only candidates this controller asked (matched by their decision sequence) train it: a told
candidate it never sampled (a seed, or a cell with other decisions) is off-policy for
REINFORCE and is ignored (counted in ``foreign``). A decision sequence the space cannot decode
(``InvalidCandidate``) is drawn again, up to ``max_tries`` times per ask.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch
from torch import nn

from cellsearch.errors import ConfigError
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.spaces.base import Candidate, InvalidCandidate, Space
from cellsearch.strategies.base import Strategy

REWARDS = ("score", "zoph")

DEFAULTS: dict[str, Any] = {
    "lr": 5e-4,
    "baseline_decay": 0.95,
    "entropy_weight": 1e-4,
    "batch_size": 8,
    "reward": "score",
    "reward_c": 80.0,
    "hidden_size": 35,
    "num_layers": 2,
    "init_range": 0.08,
    "max_tries": 100,
}


def _check_options(o: dict[str, Any]) -> dict[str, Any]:
    def number(name: str, low: float, high: float = math.inf, low_open: bool = False) -> None:
        v = o[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v < low or v > high or (low_open and v == low):
            bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high != math.inf else "")
            raise ConfigError(f"rl option {name} must be a number {bound}, got {v!r}")

    def integer(name: str, low: int) -> None:
        v = o[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"rl option {name} must be an integer >= {low}, got {v!r}")

    number("lr", 0.0, low_open=True)
    number("baseline_decay", 0.0, 1.0)
    number("entropy_weight", 0.0)
    number("reward_c", 0.0, low_open=True)
    number("init_range", 0.0)
    for name in ("batch_size", "hidden_size", "num_layers", "max_tries"):
        integer(name, 1)
    if o["reward"] not in REWARDS:
        raise ConfigError(f"rl option reward must be one of {', '.join(REWARDS)}, got {o['reward']!r}")
    return {k: (float(v) if isinstance(DEFAULTS[k], float) else v) for k, v in o.items()}


class Controller(nn.Module):
    """The decision-writing LSTM (see module docstring). ``sizes[t]`` = choices of decision t."""

    def __init__(self, sizes: list[int], hidden_size: int, num_layers: int):
        super().__init__()
        self.sizes = list(sizes)
        offsets = [1]
        for n in self.sizes[:-1]:
            offsets.append(offsets[-1] + n)
        self.offsets = offsets  # token of (decision t, choice c) = offsets[t] + c; token 0 = start
        self.embedding = nn.Embedding(1 + sum(self.sizes), hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in self.sizes)

    @torch.no_grad()
    def sample(self, generator: torch.Generator) -> tuple[int, ...]:
        """One choice per decision, each drawn from the controller's softmax given the choices before it."""
        token = torch.zeros(1, 1, dtype=torch.long)
        state = None
        choices = []
        for t, head in enumerate(self.heads):
            out, state = self.lstm(self.embedding(token), state)
            probs = torch.softmax(head(out[0, 0]), dim=-1)
            c = int(torch.multinomial(probs, 1, generator=generator))
            choices.append(c)
            token = torch.full((1, 1), self.offsets[t] + c, dtype=torch.long)
        return tuple(choices)

    def log_prob_entropy(self, sequences: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sequence: log-probability of the whole sequence and the summed step entropies."""
        choices = torch.tensor(sequences, dtype=torch.long)  # (B, T)
        b = choices.shape[0]
        tokens = choices + torch.tensor(self.offsets, dtype=torch.long)
        inputs = torch.cat([torch.zeros(b, 1, dtype=torch.long), tokens[:, :-1]], dim=1).t()  # (T, B)
        out, _ = self.lstm(self.embedding(inputs))  # (T, B, H)
        log_prob = torch.zeros(b)
        entropy = torch.zeros(b)
        for t, head in enumerate(self.heads):
            logp = torch.log_softmax(head(out[t]), dim=-1)  # (B, n_t)
            log_prob = log_prob + logp.gather(1, choices[:, t:t + 1]).squeeze(1)
            entropy = entropy - (logp.exp() * logp).sum(dim=1)
        return log_prob, entropy

    @torch.no_grad()
    def probabilities(self, prefix: tuple[int, ...] = ()) -> torch.Tensor:
        """The output distribution of decision ``len(prefix)`` after the choices ``prefix``."""
        token = torch.zeros(1, 1, dtype=torch.long)
        state = None
        for t in range(len(prefix) + 1):
            out, state = self.lstm(self.embedding(token), state)
            if t < len(prefix):
                token = torch.full((1, 1), self.offsets[t] + prefix[t], dtype=torch.long)
        return torch.softmax(self.heads[len(prefix)](out[0, 0]), dim=-1)


def _tensor_to_json(t: torch.Tensor) -> dict[str, Any]:
    return {"dtype": str(t.dtype).removeprefix("torch."), "data": t.tolist()}


def _tensor_from_json(d: dict[str, Any]) -> torch.Tensor:
    return torch.tensor(d["data"], dtype=getattr(torch, d["dtype"]))


class RLController(Strategy):
    name = "rl"

    def __init__(self, space: Space, seed: int = 0, **options: Any):
        own = {k: options.pop(k) for k in list(options) if k in DEFAULTS}
        super().__init__(space, seed, **options)
        self.sizes = [len(d) for d in space.decisions()]
        if not self.sizes or min(self.sizes) < 1:
            raise ConfigError(f"space '{space.name}' has no decisions for the rl controller to make")
        self.options = _check_options({**DEFAULTS, **own})
        self.generator = torch.Generator()
        self.generator.manual_seed(seed % 2**63)
        self._build()
        self.baseline: float | None = None
        self.buffer: list[tuple[tuple[int, ...], float]] = []  # told, waiting for the next update
        self.pending: Counter[tuple[int, ...]] = Counter()  # asked, not yet told
        self.updates = 0
        self.foreign = 0

    def _build(self) -> None:
        o = self.options
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
            self.controller = Controller(self.sizes, o["hidden_size"], o["num_layers"])
        with torch.no_grad():
            for p in self.controller.parameters():
                p.uniform_(-o["init_range"], o["init_range"], generator=self.generator)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=o["lr"])

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Candidate:
        last = None
        for _ in range(self.options["max_tries"]):
            choices = self.controller.sample(self.generator)
            try:
                graph = self.space.decode(choices)
            except InvalidCandidate as exc:
                last = exc
                continue
            self.asked += 1
            self.pending[choices] += 1
            return Candidate(graph, decisions=choices, origin="sample")
        raise InvalidCandidate(f"rl controller: no valid cell of space '{self.space.name}' in "
                               f"{self.options['max_tries']} samples ({last})")

    def reward(self, result: TrialOutcome) -> float:
        """The REINFORCE reward of a result (see module docstring)."""
        if result.failed or result.score is None:  # (failed covers None; said again for the type)
            return 0.0
        score = float(result.score)
        if self.options["reward"] == "zoph":
            return self.options["reward_c"] * score ** 2
        return score

    def abandon_pending(self) -> None:
        self.pending.clear()

    def tell(self, candidate: Candidate, result: TrialOutcome) -> None:
        self.told += 1
        key = tuple(candidate.decisions) if candidate.decisions is not None else None
        if key is None or self.pending[key] <= 0:
            self.foreign += 1
            return
        self.pending[key] -= 1
        if self.pending[key] == 0:
            del self.pending[key]
        self.buffer.append((key, self.reward(result)))
        if len(self.buffer) >= self.options["batch_size"]:
            self.update()

    def update(self) -> None:
        """One REINFORCE step on the buffered results, then clear the buffer."""
        if not self.buffer:
            return
        batch = sorted(self.buffer)  # canonical order: the update does not depend on tell order
        sequences = [s for s, _ in batch]
        rewards = [r for _, r in batch]
        if self.baseline is None:
            self.baseline = sum(rewards) / len(rewards)
        advantages = torch.tensor([r - self.baseline for r in rewards], dtype=torch.float32)
        log_prob, entropy = self.controller.log_prob_entropy(sequences)
        loss = -(advantages * log_prob).mean() - self.options["entropy_weight"] * entropy.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        decay = self.options["baseline_decay"]
        for r in rewards:
            self.baseline = decay * self.baseline + (1.0 - decay) * r
        self.buffer = []
        self.updates += 1

    def probabilities(self, prefix: tuple[int, ...] = ()) -> list[float]:
        """The controller's current distribution over decision ``len(prefix)`` given ``prefix``."""
        return self.controller.probabilities(tuple(prefix)).tolist()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The base state (JSON) plus the options, the controller's weights, Adam's state, the random
        generator, the baseline, the reward buffer and the pending samples."""
        state = super().state_dict()
        opt = self.optimizer.state_dict()
        state.update({
            "options": dict(self.options),
            "sizes": list(self.sizes),
            "controller": {k: v.tolist() for k, v in self.controller.state_dict().items()},
            "optimizer": {str(i): {k: _tensor_to_json(v) if torch.is_tensor(v) else v for k, v in s.items()}
                          for i, s in opt["state"].items()},
            "generator": self.generator.get_state().tolist(),
            "baseline": self.baseline,
            "buffer": [[list(s), r] for s, r in self.buffer],
            "pending": [[list(s), n] for s, n in self.pending.items()],
            "updates": self.updates,
            "foreign": self.foreign,
        })
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume exactly from what ``state_dict`` returned; ConfigError if it was made for another
        strategy or a space with other decisions."""
        super().load_state_dict(state)
        if list(state["sizes"]) != self.sizes:
            raise ConfigError(f"rl state was made for decisions of sizes {state['sizes']}, but space "
                              f"'{self.space.name}' has {self.sizes}")
        self.options = _check_options({**DEFAULTS, **state["options"]})
        self._build()
        self.controller.load_state_dict({k: torch.tensor(v, dtype=torch.float32)
                                         for k, v in state["controller"].items()})
        opt = self.optimizer.state_dict()
        opt["state"] = {int(i): {k: _tensor_from_json(v) if isinstance(v, dict) else v for k, v in s.items()}
                        for i, s in state["optimizer"].items()}
        self.optimizer.load_state_dict(opt)
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        self.baseline = state["baseline"]
        self.buffer = [(tuple(s), float(r)) for s, r in state["buffer"]]
        self.pending = Counter({tuple(s): int(n) for s, n in state["pending"]})
        self.updates = state["updates"]
        self.foreign = state["foreign"]
