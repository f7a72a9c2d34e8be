"""Character tasks built from (prompt, answer) examples generated from a seed.

Each example is ``<bos> prompt answer <eos>``; the model reads it character by character
and predicts the next one. In the seq2seq layout (``use_layout("seq2seq")``, for an
encoder-decoder model) the prompt is the source an encoder reads, and the decoder reads
``<bos> answer`` and predicts ``answer <eos>``. The loss and metrics count only the answer (and its ``<eos>``),
except for tasks whose prompt is empty (XML), where every character counts. Validation and
test sets are fixed per seed; training examples are drawn on the fly from a
``random.Random`` whose state is the stream's whole state, so resuming is exact.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections import defaultdict
from typing import Any

import torch

from cellsearch.limits import MAX_EVAL_EXAMPLES, check_number
from cellsearch.tasks.base import Batch, Stream, Task, Vocab, bits, start_state

SPLIT_OFFSETS = {"valid": 1_000_003, "test": 2_000_003}
LONG_OFFSETS = {"valid": 3_000_017, "test": 4_000_037}  # the long evaluation's examples (``long_split``)


class ExampleTask(Task):
    """A task whose data is independent (prompt, answer) string pairs."""

    alphabet: str = ""
    exact_match: bool = True  # score free-running (greedy) decoding of the answer
    eval_examples: int = 1000
    exact_match_examples: int = 256  # greedy decoding is slower: score a prefix of the split
    layouts = ("lm", "seq2seq")

    def __init__(self, seed: int = 0, eval_examples: int | None = None):
        self.seed = seed
        self.check_eval_examples(eval_examples)
        if eval_examples is not None:
            self.eval_examples = eval_examples
        self.vocab = Vocab(list(self.alphabet))
        self._splits: dict[str, list[tuple[str, str]]] = {}
        self._long: dict[str, list[tuple[str, str]]] = {}

    # ------------------------------------------------------------------ the long evaluation
    # A task scored beyond its training lengths (algorithmic.py, formal.py) gives the lengths of its
    # long evaluation and draws one of its examples; ``long_split`` keeps a fixed list per split.
    @property
    def long_lengths(self) -> range:
        """The lengths of the long evaluation, all beyond training (none by default)."""
        return range(0)

    def long_example(self, rng: random.Random) -> tuple[str, str]:
        """One (prompt, answer) pair of the long evaluation, from ``rng``."""
        raise NotImplementedError(self.name)

    long_examples = 0  # the examples of each split's long evaluation (a task's own number)

    def long_split(self, name: str) -> list[tuple[str, str]]:
        """The split ``name``'s long examples (fixed per seed; empty when there are no longer lengths)."""
        if name not in LONG_OFFSETS:
            raise ValueError(f"unknown split {name!r} (valid or test)")
        if name not in self._long:
            rng = random.Random(self.seed * 7919 + LONG_OFFSETS[name])
            self._long[name] = [self.long_example(rng) for _ in range(self.long_examples)] if self.long_lengths else []
        return self._long[name]

    @abstractmethod
    def make_example(self, rng: random.Random) -> tuple[str, str]:
        """One (prompt, answer) pair."""

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        cls.check_eval_examples(values.get("eval_examples"))

    @classmethod
    def check_eval_examples(cls, value: int | None) -> None:
        """Raise ConfigError unless ``value`` (None: the task's own number) is a usable count of
        evaluation examples."""
        # (none: the class's own number; 0 would score every model 0.0, an average over nothing)
        if value is not None:
            check_number(cls.option("eval_examples"), value, 1, "evaluation examples", MAX_EVAL_EXAMPLES)

    # ------------------------------------------------------------------ data
    def split(self, name: str) -> list[tuple[str, str]]:
        """The fixed (prompt, answer) examples of split ``name`` (valid or test), drawn once from a seed
        that depends only on the task's seed and the split; ValueError for another name."""
        if name not in SPLIT_OFFSETS:
            raise ValueError(f"unknown split {name!r} (valid or test)")
        if name not in self._splits:
            rng = random.Random(self.seed * 7919 + SPLIT_OFFSETS[name])
            self._splits[name] = [self.make_example(rng) for _ in range(self.eval_examples)]
        return self._splits[name]


    def encode(self, examples: list[tuple[str, str]]) -> Batch:
        """Pad a list of examples into one (T, B) batch with the answer mask (in the seq2seq
        layout, with the prompts as the source)."""
        v = self.vocab
        if self.layout == "seq2seq":  # the decoder reads <bos> answer; the prompts are the source
            batch = self._next_tokens([[v.bos, *v.encode(a), v.eos] for _, a in examples], [0] * len(examples))
            sources = [v.encode(p) for p, _ in examples]
            batch.source, batch.source_mask = _columns(sources, max(map(len, sources)), v.pad)
            return batch
        starts = [len(prompt) for prompt, _ in examples]  # first target of each answer
        fast = _char_batch(v, [prompt + answer for prompt, answer in examples], starts)
        if fast is not None:
            return fast
        seqs = [[v.bos, *v.encode(prompt), *v.encode(answer), v.eos] for prompt, answer in examples]
        return self._next_tokens(seqs, starts)

    def _next_tokens(self, seqs: list[list[int]], starts: list[int]) -> Batch:
        """Sequences as (T, B) inputs and next-token targets, scored from position ``starts[b]`` on."""
        T = max(len(s) for s in seqs) - 1
        inputs, _ = _columns([ids[:-1] for ids in seqs], T, self.vocab.pad)
        targets, real = _columns([ids[1:] for ids in seqs], T, self.vocab.pad)
        mask = real & (torch.arange(T).unsqueeze(1) >= torch.tensor(starts))
        return Batch(inputs, targets, mask)

    def train_stream(self, batch_size: int, seed: int) -> Stream:
        return _ExampleStream(self, batch_size, seed)

    # ------------------------------------------------------------------ metrics
    def extra_metrics(self, examples, batch: Batch, predictions: torch.Tensor, correct: torch.Tensor) -> dict:
        """Task-specific teacher-forced metrics (XML's predictable characters)."""
        return {}

    @torch.no_grad()
    def evaluate(self, model, split: str = "valid", batch_size: int = 128) -> dict[str, float]:
        examples = self.split(split)
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            nll_sum, count, correct_sum = 0.0, 0, 0
            extra: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for i in range(0, len(examples), batch_size):
                chunk = examples[i:i + batch_size]
                batch = self.encode(chunk).to(device)
                logits, _ = model(batch.inputs, start_state(model, batch))
                nll, n = self.masked_nll(logits, batch.targets, batch.mask)
                pred = logits.argmax(-1)
                correct = (pred == batch.targets) & batch.mask
                nll_sum += float(nll)
                count += n
                correct_sum += int(correct.sum())
                for k, (num, den) in self.extra_metrics(chunk, batch, pred, correct).items():
                    extra[k][0] += num
                    extra[k][1] += den
            metrics = self.summarise(nll_sum / max(count, 1), correct_sum / max(count, 1))
            for k, (num, den) in extra.items():
                metrics[k] = num / den if den else float("nan")
            if self.exact_match:
                metrics["exact_match"] = self.exact_match_rate(model, examples[: self.exact_match_examples])
            metrics.update(self.decoding_metrics(model, split))
            return metrics
        finally:
            model.train(was_training)

    def decoding_metrics(self, model, split: str) -> dict[str, float]:
        """Task-specific metrics of free-running decoding (the model already in eval mode)."""
        return {}

    def summarise(self, mean_nll: float, accuracy: float) -> dict[str, float]:
        """The metrics reported for an evaluation, from the mean NLL per answer token and the accuracy."""
        return {"loss": mean_nll, "accuracy": accuracy, "bpc": bits(mean_nll)}

    @torch.no_grad()
    def exact_match_rate(self, model, examples: list[tuple[str, str]]) -> float:
        """Fraction of answers reproduced exactly by greedy decoding from the prompt alone."""
        from cellsearch.nn.decoding import greedy

        if not examples:
            return float("nan")
        device = next(model.parameters()).device
        by_length: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for ex in examples:
            by_length[len(ex[0])].append(ex)  # same prompt length -> one batch
        hits = 0
        for plen, group in by_length.items():
            state = None
            if self.layout == "seq2seq":  # the decoder starts from <bos> and the encoded prompts
                batch = self.encode(group).to(device)
                prompt, state = batch.inputs[:1], start_state(model, batch)
            else:
                prompt = torch.tensor([[self.vocab.bos, *self.vocab.encode(p)] for p, _ in group],
                                      dtype=torch.long, device=device).t()  # (T0, B)
            longest = max(len(a) for _, a in group) + 1
            out = greedy(model, prompt, longest, eos_id=self.vocab.eos, state=state)  # (longest, B)
            for b, (_, answer) in enumerate(group):
                want = [*self.vocab.encode(answer), self.vocab.eos]
                hits += out[: len(want), b].tolist() == want
        return hits / len(examples)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "eval_examples": self.eval_examples}


def _char_codes(vocab: Vocab) -> tuple[dict, frozenset] | None:
    """A vocabulary of at most 256 tokens whose specials are the only tokens longer than one character:
    (``str.translate`` table char → chr(id), the single characters), else None. Cached on the vocab."""
    cached = vocab.__dict__.get("_char_codes", False)
    if cached is not False:
        return cached
    chars = [t for t in vocab.itos if len(t) == 1]
    ok = (len(vocab) <= 256 and all(t.startswith("<") for t in vocab.itos if len(t) != 1)
          and "<unk>" not in vocab.stoi and min(vocab.bos, vocab.eos, vocab.pad) >= 0)
    codes = ({ord(c): chr(vocab.stoi[c]) for c in chars}, frozenset(chars)) if ok else None
    vocab.__dict__["_char_codes"] = codes
    return codes


def _char_batch(vocab: Vocab, texts: list[str], starts: list[int]) -> Batch | None:
    """``ExampleTask.encode``'s LM batch of ``<bos> text <eos>`` sequences, built as one byte string
    (a character vocabulary's ids fit a byte) instead of nested lists: the Python lists and
    ``torch.tensor`` of them cost more than the model's step at search sizes. None when the
    vocabulary is not one of characters or a text holds a character outside it (the caller's
    general path then maps or refuses it)."""
    codes = _char_codes(vocab)
    if codes is None or not texts:
        return None
    table, chars = codes
    if not set().union(*texts) <= chars:
        return None
    T = max(map(len, texts)) + 1  # inputs <bos> text, targets text <eos>
    bos, eos, pad = chr(vocab.bos), chr(vocab.eos), chr(vocab.pad)
    coded = [t.translate(table) for t in texts]
    rows = "".join(f"{bos}{c}".ljust(T, pad) for c in coded) + "".join(f"{c}{eos}".ljust(T, pad) for c in coded)
    ids = torch.frombuffer(bytearray(rows.encode("latin-1")), dtype=torch.uint8).view(2, len(texts), T)
    ids = ids.transpose(1, 2).contiguous().long()  # (2, T, B): inputs, targets
    real = torch.arange(T).unsqueeze(1) < torch.tensor([len(t) + 1 for t in texts])
    mask = real & (torch.arange(T).unsqueeze(1) >= torch.tensor(starts))
    return Batch(ids[0], ids[1], mask)


def _columns(rows: list[list[int]], length: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists as one (length, B) tensor padded with ``pad``, and the (length, B) mask of the
    real tokens. Padded in Python, then one tensor: a tensor per example costs more than the
    population's whole batched time step at search sizes."""
    ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], dtype=torch.long).t().contiguous()
    real = torch.arange(length).unsqueeze(1) < torch.tensor([len(r) for r in rows])
    return ids, real


class _ExampleStream(Stream):
    def __init__(self, task: ExampleTask, batch_size: int, seed: int):
        self.task = task
        self.batch_size = batch_size
        self.rng = random.Random(seed)

    def __next__(self) -> Batch:
        return self.task.encode([self.task.make_example(self.rng) for _ in range(self.batch_size)])

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.batch_size = state["batch_size"]
