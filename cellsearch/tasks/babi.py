"""bAbI-style question answering: stories, a question, a one-word answer (generated from a seed).

The bAbI tasks (Weston et al. 2015, "Towards AI-complete question answering") cannot be
downloaded here, so this module generates five of them with the original vocabulary and
generation rules: a small world simulation (actors moving between locations, picking up and
dropping objects) for tasks 1–3, and sets of facts for tasks 15 and 16. Every question comes
with its supporting facts (the sentences its answer follows from). Words are lower case; a
sentence's full stop and the question mark are dropped.

* **task 1**, single supporting fact (two statements, then a question, five times a story)::

      mary moved to the bathroom / john went to the hallway / where is mary  →  bathroom

* **task 2**, two supporting facts (the object's holder and where the holder went)::

      john moved to the bedroom / john got the football / ... / where is the football  →  bedroom

* **task 3**, three supporting facts (the object's trajectory)::

      john went to the garden / john picked up the football / john travelled to the kitchen /
      where was the football before the kitchen  →  garden

* **task 15**, basic deduction::

      sheep are afraid of wolves / gertrude is a sheep / ... / what is gertrude afraid of  →  wolf

* **task 16**, basic induction::

      lily is a swan / lily is white / bernhard is green / greg is a swan / what color is greg  →  white

The protocol of Sukhbaatar et al. (2015): a FIXED training set of ``train_examples`` questions
(1,000 or 10,000 in the paper), of which 10% are held out for validation; training goes through
the rest in epochs, each shuffled from the seed (the stream's state, epoch and position, resumes
exactly); the test set is 1,000 further questions. A question sees the ``memory_size`` most
recent sentences of its story (50 in the paper; at least its supporting facts for tasks 1-3,
the whole story, 8 and 9 sentences, for tasks 15 and 16: ``min_memory``).

Layouts: ``lm`` (the whole story then the question as one word sequence, ``<bos> s1 . s2 . q ?
answer``; only the answer is scored: the plain-LSTM baseline), and ``qa`` (the story's sentences
as the rows of a memory, ``Batch.story`` (B, N, L) word ids, the question as the inputs (Lq, B),
the answer the one target: the memory network's layout, ``nn/memory_qa.py``). Metrics:
``accuracy`` of the answer word (the primary metric), ``error`` (100 × (1 − accuracy), the
paper's figure) and ``loss`` (mean NLL of the answer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_BABI_MEMORY, MAX_BABI_TRAIN_EXAMPLES, MAX_EVAL_EXAMPLES, check_number
from cellsearch.tasks.base import Batch, Stream, Task, Vocab, start_state

BABI_TASKS = (1, 2, 3, 15, 16)

# the original vocabulary
ACTORS = ("mary", "john", "sandra", "daniel")
LOCATIONS = ("bathroom", "hallway", "garden", "office", "bedroom", "kitchen")
OBJECTS = ("football", "apple", "milk")
MOVES = (("moved", "to"), ("went", "to"), ("journeyed", "to"), ("travelled", "to"), ("went", "back", "to"))
GETS = (("got",), ("grabbed",), ("picked", "up"), ("took",))
DROPS = (("dropped",), ("discarded",), ("put", "down"), ("left",))
SPECIES = {"mouse": "mice", "sheep": "sheep", "wolf": "wolves", "cat": "cats"}  # task 15: singular -> plural
NAMES_15 = ("gertrude", "winona", "jessica", "emily")
NAMES_16 = ("lily", "bernhard", "greg", "julius", "brian")
ANIMALS_16 = ("swan", "lion", "frog", "rhino")
COLORS = ("white", "gray", "yellow", "green")
QUESTION_WORDS = ("where", "is", "was", "the", "before", "what", "afraid", "of", "color", "are", "a")

SPLIT_SEEDS = {"train": 11, "test": 29}  # the training set (train + valid) and the test set come from different draws
TEST_EXAMPLES = 1000


@dataclass(frozen=True)
class Question:
    """One question: its story (the sentences before it, oldest first, as words), the question's
    words, the one-word answer, and the indices in ``story`` of its supporting facts."""

    story: tuple[tuple[str, ...], ...]
    question: tuple[str, ...]
    answer: str
    supports: tuple[int, ...]


def vocabulary() -> list[str]:
    """Every word the generators use (the same for every task: a model's vocabulary does not
    depend on the task or the seed)."""
    words: list[str] = ["."]
    for group in (ACTORS, LOCATIONS, OBJECTS, *MOVES, *GETS, *DROPS, tuple(SPECIES), tuple(SPECIES.values()),
                  NAMES_15, NAMES_16, ANIMALS_16, COLORS, QUESTION_WORDS, ("?",)):
        words += [w for w in group if w not in words]
    return words


# ---------------------------------------------------------------------- tasks 1-3: the world
class _World:
    """Actors moving between locations and carrying objects; each sentence told is recorded."""

    def __init__(self, rng: random.Random, actors: int, objects: int):
        self.rng = rng
        self.actors = list(rng.sample(ACTORS, actors))
        self.objects = list(rng.sample(OBJECTS, objects)) if objects else []
        self.location: dict[str, str] = {}  # actor -> where
        self.last_move: dict[str, int] = {}  # actor -> index of its latest move sentence
        self.holder: dict[str, str] = {}  # object -> actor carrying it
        self.got: dict[str, int] = {}  # object -> its holder's latest pick-up sentence
        self.placed: dict[str, tuple[str, int, int]] = {}  # dropped object -> (where, drop sentence, move before it)
        self.trajectory: dict[str, list[tuple[str, tuple[int, ...]]]] = {o: [] for o in self.objects}
        self.sentences: list[tuple[str, ...]] = []

    def carried(self, actor: str) -> list[str]:
        return [o for o, a in self.holder.items() if a == actor]

    def act(self, carry: bool) -> None:
        """One event: a move, or (with ``carry``) a pick-up or a drop where one is possible."""
        rng, i = self.rng, len(self.sentences)
        options = ["move"] * 3
        located = [a for a in self.actors if a in self.location]
        if carry and located:
            options += ["get", "drop"]
        kind = rng.choice(options)
        if kind == "get":
            actor = rng.choice(located)
            free = [o for o in self.objects if o not in self.holder
                    and (o not in self.placed or self.placed[o][0] == self.location[actor])]
            if free:
                obj = rng.choice(free)
                self.holder[obj], self.got[obj] = actor, i
                self.placed.pop(obj, None)
                self.sentences.append((actor, *rng.choice(GETS), "the", obj))
                if not self.trajectory[obj]:
                    self.trajectory[obj].append((self.location[actor], (self.last_move[actor], i)))
                return
        if kind == "drop":
            holding = [a for a in located if self.carried(a)]
            if holding:
                actor = rng.choice(holding)
                obj = rng.choice(self.carried(actor))
                del self.holder[obj]
                self.placed[obj] = (self.location[actor], i, self.last_move[actor])
                self.sentences.append((actor, *rng.choice(DROPS), "the", obj))
                return
        actor = rng.choice(self.actors)
        where = rng.choice([loc for loc in LOCATIONS if loc != self.location.get(actor)])
        before = self.last_move.get(actor)
        self.location[actor], self.last_move[actor] = where, i
        self.sentences.append((actor, *rng.choice(MOVES), "the", where))
        for obj in self.carried(actor):  # (carried objects are located: their holder got them located)
            assert before is not None
            self.trajectory[obj].append((where, (before, self.got[obj], i)))

    def where_is_actor(self) -> tuple[tuple[str, ...], str, tuple[int, ...]] | None:
        located = [a for a in self.actors if a in self.location]
        if not located:
            return None
        actor = self.rng.choice(located)
        return ("where", "is", actor), self.location[actor], (self.last_move[actor],)

    def where_is_object(self) -> tuple[tuple[str, ...], str, tuple[int, ...]] | None:
        known = [o for o in self.objects if o in self.holder or o in self.placed]
        if not known:
            return None
        obj = self.rng.choice(known)
        if obj in self.holder:
            actor = self.holder[obj]
            return ("where", "is", "the", obj), self.location[actor], tuple(sorted((self.last_move[actor],
                                                                                    self.got[obj])))
        where, drop, move = self.placed[obj]
        return ("where", "is", "the", obj), where, (move, drop)

    def where_was_object(self) -> tuple[tuple[str, ...], str, tuple[int, ...]] | None:
        asks = []
        for obj, path in self.trajectory.items():
            places = [p for p, _ in path]
            for j in range(1, len(path)):
                if places.count(places[j]) == 1:  # "before the kitchen" names one visit
                    asks.append((obj, j))
        if not asks:
            return None
        obj, j = self.rng.choice(asks)
        place, supports = self.trajectory[obj][j]
        return ("where", "was", "the", obj, "before", "the", place), self.trajectory[obj][j - 1][0], supports


def _world_story(rng: random.Random, task: int, memory: int) -> list[Question]:
    """One story of tasks 1-3 and its questions (five, as bAbI's stories)."""
    world = _World(rng, actors=rng.randint(2, 4), objects=0 if task == 1 else rng.randint(1, 3))
    ask = {1: world.where_is_actor, 2: world.where_is_object, 3: world.where_was_object}[task]
    per_question = {1: (2, 2), 2: (2, 6), 3: (3, 10)}[task]
    questions: list[Question] = []
    tries = 0
    while len(questions) < 5 and tries < 20:
        tries += 1
        for _ in range(rng.randint(*per_question)):
            world.act(carry=task != 1)
        asked = ask()
        if asked is None:
            continue
        words, answer, supports = asked
        first = max(0, len(world.sentences) - memory)  # the memory keeps the latest sentences
        if min(supports) < first:
            continue
        story = tuple(world.sentences[first:])
        questions.append(Question(story, words, answer, tuple(s - first for s in supports)))
    return questions


# ---------------------------------------------------------------------- tasks 15 and 16: facts
def _deduction_story(rng: random.Random) -> list[Question]:
    """Task 15: which species fears which, who is of which species; what is X afraid of?"""
    kinds = list(SPECIES)
    sentences: list[tuple[tuple[str, ...], tuple[str, str]]] = []  # (words, (what it is about, fact))
    fears = {s: rng.choice([t for t in kinds if t != s]) for s in kinds}
    for s in kinds:
        sentences.append(((SPECIES[s], "are", "afraid", "of", SPECIES[fears[s]]), ("fear", s)))
    who = {n: rng.choice(kinds) for n in NAMES_15}
    for n in NAMES_15:
        sentences.append(((n, "is", "a", who[n]), ("is", n)))
    rng.shuffle(sentences)
    story = tuple(w for w, _ in sentences)
    index = {fact: i for i, (_, fact) in enumerate(sentences)}
    questions = []
    for name in rng.sample(NAMES_15, 3):
        supports = tuple(sorted((index[("is", name)], index[("fear", who[name])])))
        questions.append(Question(story, ("what", "is", name, "afraid", "of"), fears[who[name]], supports))
    return questions


def _induction_story(rng: random.Random) -> list[Question]:
    """Task 16: four people with a species and a colour each, a fifth with a species; its colour?"""
    color = {a: rng.choice(COLORS) for a in ANIMALS_16}  # one colour per species in a story
    names = list(NAMES_16)
    rng.shuffle(names)
    asked, known = names[-1], names[:-1]
    kind = {n: rng.choice(ANIMALS_16) for n in known}
    target = rng.choice(ANIMALS_16)
    if target not in kind.values():  # the answer must follow from someone of the same species
        kind[rng.choice(known)] = target
    sentences: list[tuple[str, ...]] = []
    supports: list[int] = []
    for n in known:
        if kind[n] == target and not supports:
            supports = [len(sentences), len(sentences) + 1]
        sentences += [(n, "is", "a", kind[n]), (n, "is", color[kind[n]])]
    supports.append(len(sentences))
    sentences.append((asked, "is", "a", target))
    return [Question(tuple(sentences), ("what", "color", "is", asked), color[target], tuple(supports))]


# the fewest sentences a question's memory must hold: tasks 1-3 their supporting facts (else no question fits),
# tasks 15 and 16 their whole stories (always this long: four fears and four names; four people of two facts
# each and the one asked about)
MIN_MEMORY = {1: 1, 2: 2, 3: 3, 15: len(SPECIES) + len(NAMES_15), 16: 2 * (len(NAMES_16) - 1) + 1}
STORIES_PER_QUESTION = 100  # generate gives up when fewer than one question in this many stories fits the memory


def min_memory(task: int) -> int:
    """The smallest ``memory_size`` with which task ``task`` can ask questions (see ``MIN_MEMORY``)."""
    return MIN_MEMORY.get(task, 1)


def generate(task: int, rng: random.Random, count: int, memory: int = 50) -> list[Question]:
    """``count`` questions of bAbI task ``task`` drawn from ``rng`` (stories in order, every
    question of a story kept, the last story cut at ``count``); a story shows at most the
    ``memory`` latest sentences. ConfigError for a memory below ``min_memory(task)``, or when the
    questions that fit the memory come too rarely (fewer than one in ``STORIES_PER_QUESTION``
    stories, after the first 1,000)."""
    if memory < min_memory(task):
        raise ConfigError(f"bAbI task {task} needs a memory of at least {min_memory(task)} sentences, not {memory}")
    out: list[Question] = []
    stories = 0
    while len(out) < count:
        if stories > 1000 + STORIES_PER_QUESTION * len(out):
            raise ConfigError(f"bAbI task {task}: only {len(out)} questions in {stories} stories fit a memory of "
                              f"{memory} sentences; use a larger memory_size")
        stories += 1
        if task in (1, 2, 3):
            out += _world_story(rng, task, memory)
        elif task == 15:
            out += _deduction_story(rng)
        elif task == 16:
            out += _induction_story(rng)
        else:
            raise ConfigError(f"unknown bAbI task {task}")
    return out[:count]


# ---------------------------------------------------------------------- the task
class BabiTask(Task):
    """bAbI-style question answering (see the module docstring)."""

    name = "babi"
    primary_metric = "accuracy"
    layouts = ("lm", "qa")
    vocab_bound = 80
    longest_words = 7  # words of the longest sentence or question (task 3's question)

    def __init__(self, seed: int = 0, task: int = 1, train_examples: int = 1000, memory_size: int = 50,
                 test_examples: int = TEST_EXAMPLES):
        self.check_values({"task": task, "train_examples": train_examples, "memory_size": memory_size,
                           "test_examples": test_examples})
        self.seed, self.task, self.train_examples = seed, task, train_examples
        self.memory_size, self.test_examples = memory_size, test_examples
        self.vocab = Vocab(vocabulary())
        rng = random.Random(seed * 7919 + SPLIT_SEEDS["train"] + 1000 * task)
        data = generate(task, rng, train_examples, memory_size)
        held = max(1, train_examples // 10)  # 10% for validation, as the paper
        self.train_set, self.valid_set = data[:-held], data[-held:]
        self._test: list[Question] | None = None

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        task = values.get("task")
        if isinstance(task, bool) or task not in BABI_TASKS:
            raise ConfigError(f"{cls.option('task')} must be one of {', '.join(map(str, BABI_TASKS))}, "
                              f"not {task!r:.40}")
        check_number(cls.option("train_examples"), values.get("train_examples"), 10, "bAbI training questions",
                     MAX_BABI_TRAIN_EXAMPLES)
        check_number(cls.option("memory_size"), values.get("memory_size"), 1, "bAbI memory size", MAX_BABI_MEMORY)
        memory = values["memory_size"]
        if memory < min_memory(task):
            raise ConfigError(f"{cls.option('memory_size')} must be at least {min_memory(task)} for task {task} "
                              f"(the sentences a question needs{', its whole story' if task >= 15 else ''}), "
                              f"not {memory}")
        check_number(cls.option("test_examples"), values.get("test_examples"), 1, "evaluation examples",
                     MAX_EVAL_EXAMPLES)

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        # the lm layout: every sentence with its full stop, the question and "?", <bos> and the answer
        return values["memory_size"] * (cls.longest_words + 1) + cls.longest_words + 3

    def split(self, name: str) -> list[Question]:
        """The questions of split ``name`` (train, valid or test); ValueError for another name."""
        if name == "train":
            return self.train_set
        if name == "valid":
            return self.valid_set
        if name == "test":
            if self._test is None:
                rng = random.Random(self.seed * 7919 + SPLIT_SEEDS["test"] + 1000 * self.task)
                self._test = generate(self.task, rng, self.test_examples, self.memory_size)
            return self._test
        raise ValueError(f"unknown split {name!r} (train, valid or test)")

    # ------------------------------------------------------------------ batches
    def encode(self, questions: list[Question]) -> Batch:
        """The questions as one batch in the task's layout (see the module docstring)."""
        v = self.vocab
        if self.layout == "qa":
            return qa_batch(v, questions)
        seqs = [[v.bos] + [v.id(w) for s in q.story for w in (*s, ".")] + [v.id(w) for w in (*q.question, "?")]
                + [v.id(q.answer)] for q in questions]
        T = max(map(len, seqs)) - 1
        inputs = torch.full((T, len(seqs)), v.pad, dtype=torch.long)
        targets = torch.full((T, len(seqs)), v.pad, dtype=torch.long)
        mask = torch.zeros(T, len(seqs), dtype=torch.bool)
        for b, s in enumerate(seqs):
            inputs[:len(s) - 1, b] = torch.tensor(s[:-1])
            targets[:len(s) - 1, b] = torch.tensor(s[1:])
            mask[len(s) - 2, b] = True  # the answer only
        return Batch(inputs, targets, mask)

    def train_stream(self, batch_size: int, seed: int) -> Stream:
        return _EpochStream(self, batch_size, seed)

    # ------------------------------------------------------------------ metrics
    @torch.no_grad()
    def predict(self, model: Any, questions: list[Question], batch_size: int = 128) -> tuple[list[int], float]:
        """The model's answer (a word id) to every question, and the summed NLL of the right answers."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        answers: list[int] = []
        nll_sum = 0.0
        try:
            for i in range(0, len(questions), batch_size):
                batch = self.encode(questions[i:i + batch_size]).to(device)
                logits, _ = model(batch.inputs, start_state(model, batch))
                nll, _ = self.masked_nll(logits, batch.targets, batch.mask)
                nll_sum += float(nll)
                answers += logits.argmax(-1)[batch.mask.nonzero(as_tuple=True)].tolist() \
                    if logits.shape[0] == 1 else _column_picks(logits.argmax(-1), batch.mask)
        finally:
            model.train(was_training)
        return answers, nll_sum

    def evaluate(self, model: Any, split: str = "valid", batch_size: int = 128) -> dict[str, float]:
        questions = self.split(split)
        answers, nll = self.predict(model, questions, batch_size)
        accuracy = sum(a == self.vocab.id(q.answer) for a, q in zip(answers, questions)) / len(questions)
        return {"accuracy": accuracy, "error": 100.0 * (1.0 - accuracy), "loss": nll / len(questions)}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "task": self.task, "train_examples": self.train_examples,
                "memory_size": self.memory_size, "test_examples": self.test_examples}


def _column_picks(pred: torch.Tensor, mask: torch.Tensor) -> list[int]:
    """The prediction at each column's one scored position (the lm layout's answer)."""
    rows = mask.float().argmax(0)
    return pred[rows, torch.arange(pred.shape[1])].tolist()


def qa_batch(vocab: Vocab, questions: list[Question]) -> Batch:
    """The qa layout: ``story`` (B, N, L) the sentences' word ids (padding: ``<pad>``; a story's
    sentences first, oldest first), ``inputs`` (Lq, B) the question's words, ``targets`` and
    ``mask`` (1, B) the answer."""
    pad = vocab.pad
    B = len(questions)
    N = max(len(q.story) for q in questions)
    L = max(len(s) for q in questions for s in q.story)
    story = torch.full((B, N, L), pad, dtype=torch.long)
    for b, q in enumerate(questions):
        for n, s in enumerate(q.story):
            story[b, n, :len(s)] = torch.tensor(vocab.encode(s))
    Lq = max(len(q.question) for q in questions)
    inputs = torch.full((Lq, B), pad, dtype=torch.long)
    for b, q in enumerate(questions):
        inputs[:len(q.question), b] = torch.tensor(vocab.encode(q.question))
    targets = torch.tensor([[vocab.id(q.answer) for q in questions]], dtype=torch.long)
    return Batch(inputs, targets, torch.ones(1, B, dtype=torch.bool), story=story)


class _EpochStream(Stream):
    """The fixed training set in epochs, each in an order shuffled from (seed, epoch)."""

    def __init__(self, task: BabiTask, batch_size: int, seed: int):
        self.task, self.batch_size, self.seed = task, batch_size, seed
        self.epoch, self.position = 0, 0
        self._order = self._shuffled()

    def _shuffled(self) -> list[int]:
        order = list(range(len(self.task.train_set)))
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return order

    def __next__(self) -> Batch:
        picked: list[int] = []
        while len(picked) < self.batch_size:
            if self.position >= len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._shuffled()
            take = self._order[self.position:self.position + self.batch_size - len(picked)]
            picked += take
            self.position += len(take)
        return self.task.encode([self.task.train_set[i] for i in picked])

    def state_dict(self) -> dict[str, Any]:
        """The stream's epoch and position and the settings it was made with, for a checkpoint."""
        return {"epoch": self.epoch, "position": self.position, "batch_size": self.batch_size, "seed": self.seed,
                "examples": len(self.task.train_set)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the epoch and position ``state_dict`` saved; ConfigError if the stream's settings
        (batch size, seed, training questions) differ from the saved ones or the position lies outside
        the training set."""
        mine = {"batch_size": self.batch_size, "seed": self.seed, "examples": len(self.task.train_set)}
        for key, value in mine.items():
            if key in state and state[key] != value:
                raise ConfigError(f"cannot resume the bAbI stream: it was saved with {key}={state[key]!r:.40}, "
                                  f"this one has {key}={value}; use the same settings")
        epoch, position = state.get("epoch"), state.get("position")
        for name, count in (("epoch", epoch), ("position", position)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ConfigError(f"cannot resume the bAbI stream: its {name} {count!r:.40} is not a count")
        assert isinstance(epoch, int) and isinstance(position, int)
        if position > len(self.task.train_set):
            raise ConfigError(f"cannot resume the bAbI stream: position {position} is out of range "
                              f"(the training set has {len(self.task.train_set)} questions)")
        self.epoch, self.position = epoch, position
        self._order = self._shuffled()
