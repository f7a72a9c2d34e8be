"""The one interface every evaluation task implements: vocabulary, batches, metrics.

A ``Task`` hands the trainer an endless, resumable ``Stream`` of training ``Batch``es and
scores a model on a fixed split with ``evaluate``. Every task has a ``primary_metric``
where higher is better (the search maximises it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from cellsearch.errors import ConfigError


@dataclass
class Batch:
    """One batch of token sequences (time first): inputs, targets, the mask of scored positions, and
    for the seq2seq layout the source the encoder reads."""

    inputs: torch.Tensor  # (T, B) token ids
    targets: torch.Tensor  # (T, B) token ids, the next token at every position
    mask: torch.Tensor  # (T, B) bool: positions that count in the loss and the metrics
    carry_state: bool = False  # continue from the state the previous batch ended in (truncated BPTT)
    # the seq2seq layout (an encoder-decoder model): the source the encoder reads, padded
    source: torch.Tensor | None = None  # (S, B) token ids
    source_mask: torch.Tensor | None = None  # (S, B) bool: real source tokens
    # the qa layout (a memory network, tasks/babi.py): the story's sentences as word ids
    story: torch.Tensor | None = None  # (B, N, L) token ids, <pad> after each sentence and after the story
    # a class-conditioned language model (``SeqModel.condition``): each sequence's class, read at every step
    condition: torch.Tensor | None = None  # (B,) long class ids

    def to(self, device: torch.device | str) -> "Batch":
        """The batch with every tensor on ``device``."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Batch(self.inputs.to(device), self.targets.to(device), self.mask.to(device), self.carry_state,
                     move(self.source), move(self.source_mask), story=move(self.story),
                     condition=move(self.condition))


class Vocab:
    """Token strings ↔ ids; special tokens come first."""

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = ("<pad>", "<bos>", "<eos>")):
        self.itos: list[str] = list(specials) + [t for t in tokens if t not in specials]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in vocabulary")

    def __len__(self) -> int:
        return len(self.itos)

    def id(self, token: str) -> int:
        """The id of ``token`` (KeyError if it is not in the vocabulary)."""
        return self.stoi[token]

    @property
    def pad(self) -> int:
        """The id of ``<pad>``, or -1 when the vocabulary has none."""
        return self.stoi.get("<pad>", -1)

    @property
    def bos(self) -> int:
        """The id of ``<bos>`` (begin of sequence), or -1 when the vocabulary has none."""
        return self.stoi.get("<bos>", -1)

    @property
    def eos(self) -> int:
        """The id of ``<eos>`` (end of sequence), or -1 when the vocabulary has none."""
        return self.stoi.get("<eos>", -1)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token strings → ids (an unknown token is ``<unk>`` where the vocabulary has it)."""
        unk = self.stoi.get("<unk>")
        try:
            return [self.stoi[t] for t in tokens]
        except KeyError:
            if unk is None:
                raise
            return [self.stoi.get(t, unk) for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Ids → token strings."""
        return [self.itos[i] for i in ids]

    def state_dict(self) -> dict[str, Any]:
        """The vocabulary as plain data (its tokens in id order), for checkpoints."""
        return {"itos": self.itos}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Vocab":
        """The vocabulary ``state_dict`` saved."""
        v = cls.__new__(cls)
        v.itos = list(state["itos"])
        v.stoi = {t: i for i, t in enumerate(v.itos)}
        return v


class Stream(ABC):
    """An endless iterator of training batches whose position can be saved and restored."""

    @abstractmethod
    def __next__(self) -> Batch: ...

    def __iter__(self) -> Iterator[Batch]:
        return self

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands, as plain data: ``load_state_dict`` continues from there exactly."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a ``state_dict``."""


class Task(ABC):
    name: str = "task"
    primary_metric: str = "accuracy"  # higher is better
    vocab: Vocab

    @abstractmethod
    def train_stream(self, batch_size: int, seed: int) -> Stream:
        """Training batches, deterministic given the seed."""

    @abstractmethod
    def evaluate(self, model: Any, split: str = "valid", batch_size: int = 64) -> dict[str, float]:
        """Metrics on a fixed split ("valid" or "test"); must include ``primary_metric``."""

    def config(self) -> dict[str, Any]:
        """The task's settings, stored with results and checkpoints."""
        return {"name": self.name}

    # ------------------------------------------------------------------ options, checked before the task is built
    # The options (keyword arguments of ``__init__`` but the seed and the data folder) are checked
    # by ``check_options`` without building the task, so a training's settings can be refused
    # before anything is generated, read or written (``TrainConfig.validate``); ``__init__``
    # checks its arguments through the same ``check_values``.
    vocab_bound: int = 64  # at most this many tokens in the vocabulary (for the memory estimate)
    NOT_OPTIONS = ("self", "seed", "data_dir")

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Every option of the task (``options`` over the defaults), after checking that each is one
        the task has and in its range: a one-line ``ConfigError`` (``LimitError`` past a limit)."""
        import inspect

        from cellsearch.limits import shown

        params = inspect.signature(cls.__init__).parameters
        known = [p for p in params if p not in cls.NOT_OPTIONS]
        for key in options:
            if key not in known:
                raise ConfigError(f"bad option for task '{cls.name}': it has no option {shown(key)} "
                                  f"(options: {', '.join(known)})")
        values = {p: params[p].default for p in known if params[p].default is not inspect.Parameter.empty}
        values.update(options)
        cls.check_values(values)
        return values

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        """Check the task's options (all of them, defaults filled in); see ``check_options``."""

    @classmethod
    def option(cls, key: str) -> str:
        """How an error names option ``key`` of this task."""
        return f"bad option for task '{cls.name}': {key}"

    @classmethod
    def sizes(cls, options: dict[str, Any]) -> tuple[int, int]:
        """(at most how many tokens the vocabulary has, at most how many time steps a training
        sequence has) with these options: what the memory estimate of a training needs."""
        return cls.vocab_bound, cls.longest_sequence(cls.check_options(options))

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        """The most time steps a training sequence has with the options ``values``."""
        raise NotImplementedError

    # classes of the per-sequence condition the task's batches carry (``Batch.condition``; a model built
    # for the task reads it as a static input, ``ModelConfig.condition_classes``); 0: none
    condition_classes: int = 0

    layout: str = "lm"  # "lm": one sequence a model reads and continues; "seq2seq": source → target
    layouts: tuple[str, ...] = ("lm",)  # the layouts this task can make

    def use_layout(self, layout: str) -> None:
        """Make batches in ``layout``: "lm" (every task) or "seq2seq" (tasks of (prompt, answer)
        pairs: the prompt becomes the source an encoder reads, the answer the decoder's target)."""
        if layout not in self.layouts:
            raise ConfigError(no_layout(self.name, layout))
        self.layout = layout

    @staticmethod
    def masked_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Sum of the negative log-likelihood over masked positions, and their number."""
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                reduction="none").view_as(targets)
        m = mask.to(nll.dtype)
        return (nll * m).sum(), int(mask.sum())


# The tasks with a seq2seq layout, for the error below (tests/tasks/test_task_sizes.py checks the list
# against every task's ``layouts``; this module cannot import the task table, which imports it)
SEQ2SEQ_TASKS = ("arith", "memorize", "copy", "repeat-copy", "reverse", "sort", "addition", "recall", "anbn", "anbncn",
                 "anbmcnm", "string-memorization", "binary-addition", "digits-caption")


def no_layout(task: str, layout: str) -> str:
    """The one-line error of a task asked for a layout it cannot make."""
    if layout != "seq2seq":
        return f"task {task} has no {layout} layout"
    return (f"task {task} has no {layout} layout (an encoder-decoder model needs a task of prompts and answers: "
            f"{', '.join(SEQ2SEQ_TASKS)})")


def start_state(model: Any, batch: Batch) -> Any:
    """The state ``model`` starts ``batch`` from: an encoder-decoder's encoded source, else None."""
    start = getattr(model, "start", None)
    return start(batch) if start is not None else None


def bits(nats: float) -> float:
    """A quantity in nats converted to bits."""
    return nats / math.log(2)
