"""The bAbI-style generators (tasks/babi.py): answers follow from the supporting facts, seeds
fix the data, the training set is fixed and streamed in resumable epochs, both layouts batch."""

from __future__ import annotations

import random

import pytest
import torch

from cellsearch.errors import ConfigError
from cellsearch.limits import LimitError
from cellsearch.tasks import make_task
from cellsearch.tasks.babi import BABI_TASKS, DROPS, GETS, MOVES, SPECIES, BabiTask, Question, generate

PLURAL = {p: s for s, p in SPECIES.items()}


def solve(facts: list[tuple[str, ...]], question: tuple[str, ...]) -> str | None:
    """A reference reasoner written from the sentence templates alone: it reads ``facts`` in order
    and answers ``question`` (None: they do not say)."""
    verbs = {" ".join(v): k for k, vs in (("move", MOVES), ("get", GETS), ("drop", DROPS)) for v in vs}
    where: dict[str, str] = {}
    holder: dict[str, str] = {}
    placed: dict[str, str] = {}
    path: dict[str, list[str]] = {}
    fears: dict[str, str] = {}
    kind: dict[str, str] = {}
    color: dict[str, str] = {}

    def located(obj: str) -> str | None:
        return where.get(holder[obj]) if obj in holder else placed.get(obj)

    for s in facts:
        if s[1:3] == ("are", "afraid"):
            fears[PLURAL[s[0]]] = PLURAL[s[4]]
        elif s[1:3] == ("is", "a"):
            kind[s[0]] = s[3]
        elif s[1] == "is":
            color[s[0]] = s[2]
        else:
            what = verbs[" ".join(s[1:-2])]
            actor, thing = s[0], s[-1]
            if what == "move":
                where[actor] = thing
            elif what == "get":
                holder[thing] = actor
                placed.pop(thing, None)
            else:
                holder.pop(thing, None)
                if actor in where:
                    placed[thing] = where[actor]
            for obj in list(holder) + list(placed):
                here = located(obj)
                if here is not None and (not path.get(obj) or path[obj][-1] != here):
                    path.setdefault(obj, []).append(here)
    if question[:2] == ("where", "is"):
        return where.get(question[2]) if len(question) == 3 else located(question[3])
    if question[:2] == ("where", "was"):
        trail = path.get(question[3], [])
        return trail[trail.index(question[6]) - 1] if question[6] in trail[1:] else None
    if question[0] == "what" and question[1] == "is":
        return fears.get(kind.get(question[2], ""))
    # what color is X: someone else of X's kind whose colour is known
    return next((color[n] for n, k in kind.items() if k == kind.get(question[3]) and n in color), None)


@pytest.mark.parametrize("task", BABI_TASKS)
def test_answers_follow_from_the_supporting_facts_and_the_whole_story(task):
    for q in generate(task, random.Random(3), 300):
        assert all(0 <= i < len(q.story) for i in q.supports)
        assert solve([q.story[i] for i in q.supports], q.question) == q.answer, q
        assert solve(list(q.story), q.question) == q.answer, q


@pytest.mark.parametrize("task,supports", [(1, 1), (2, 2), (3, 3), (15, 2), (16, 3)])
def test_the_number_of_supporting_facts_names_the_task(task, supports):
    assert {len(q.supports) for q in generate(task, random.Random(0), 200)} == {supports}


def test_a_seed_fixes_the_data_and_another_changes_it():
    a, b, c = (BabiTask(seed=s, task=2, train_examples=200) for s in (1, 1, 2))
    assert a.train_set == b.train_set and a.split("test") == b.split("test")
    assert a.train_set != c.train_set
    assert a.split("test")[:20] != a.train_set[:20]  # the test set is another draw


@pytest.mark.parametrize("n", [10, 1000, 1234])
def test_sizes_follow_the_papers_protocol(n):
    task = BabiTask(task=1, train_examples=n)
    assert len(task.train_set) + len(task.valid_set) == n and len(task.valid_set) == max(1, n // 10)
    assert len(task.split("test")) == 1000
    assert all(len(q.story) <= 50 for q in task.train_set)


def test_the_memory_keeps_the_latest_sentences():
    qs = generate(3, random.Random(0), 200, memory=10)
    assert max(len(q.story) for q in qs) == 10


def test_the_stream_goes_through_the_fixed_set_in_shuffled_epochs_and_resumes_exactly():
    task = BabiTask(task=16, train_examples=100)  # 90 training questions
    stream = task.train_stream(30, seed=5)
    seen = [tuple(next(stream).targets[-1].tolist()) for _ in range(3)]  # one epoch
    answers = sorted(task.vocab.id(q.answer) for q in task.train_set)
    assert sorted(sum(seen, ())) == answers
    state = stream.state_dict()
    ahead = [next(stream).inputs for _ in range(4)]
    again = task.train_stream(30, seed=5)
    again.load_state_dict(state)
    assert all(torch.equal(x, next(again).inputs) for x in ahead)
    assert not torch.equal(ahead[0], task.train_stream(30, seed=5).__next__().inputs)  # epoch 2 is reshuffled


def test_lm_layout_scores_only_the_answer():
    task = BabiTask(task=1, train_examples=50)
    qs = task.train_set[:4]
    batch = task.encode(qs)
    assert batch.mask.sum(0).tolist() == [1] * 4
    for b, q in enumerate(qs):
        t = int(batch.mask[:, b].nonzero())
        assert task.vocab.itos[int(batch.targets[t, b])] == q.answer
        assert task.vocab.itos[int(batch.inputs[t, b])] == "?"
        words = task.vocab.decode(batch.inputs[1:t + 1, b].tolist())
        assert words == [w for s in q.story for w in (*s, ".")] + [*q.question, "?"]


def test_qa_layout_makes_the_story_a_memory_of_sentences():
    task = BabiTask(task=16, train_examples=50)
    task.use_layout("qa")
    qs = task.train_set[:3]
    batch = task.encode(qs)
    assert batch.story is not None and batch.story.shape[:2] == (3, 9)
    for b, q in enumerate(qs):
        row = [w for w in task.vocab.decode(batch.story[b, 0].tolist()) if w != "<pad>"]
        assert tuple(row) == q.story[0]
        assert tuple(w for w in task.vocab.decode(batch.inputs[:, b].tolist()) if w != "<pad>") == q.question
    assert batch.targets.shape == (1, 3) and batch.mask.all()


@pytest.mark.parametrize("options,message", [
    ({"task": 4}, "option for task 'babi': task must be one of 1, 2, 3, 15, 16, not 4"),
    ({"task": "16"}, "task must be one of"),
    ({"train_examples": 5}, "train_examples must be at least 10"),
    ({"train_examples": 10**6}, "bAbI training questions"),
    ({"memory_size": 0}, "memory_size must be at least 1"),
    ({"memory_size": 10**4}, "bAbI memory size"),
    ({"test_examples": 0}, "test_examples must be at least 1"),
    ({"stories": 3}, "has no option"),
])
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError) as info:
        make_task("babi", **options)
    assert message in str(info.value) and "\n" not in str(info.value)
    if "bAbI" in message:
        assert isinstance(info.value, LimitError)


def test_a_question_is_plain_data():
    q = generate(15, random.Random(0), 1)[0]
    assert isinstance(q, Question) and q.answer in SPECIES


@pytest.mark.parametrize("task,memory", [(2, 1), (3, 1), (3, 2)])
def test_a_memory_too_small_for_the_supporting_facts_is_refused_not_looped_on(task, memory):
    with pytest.raises(ConfigError) as info:
        generate(task, random.Random(0), 3, memory=memory)
    assert f"needs a memory of at least {task} sentences" in str(info.value)
    with pytest.raises(ConfigError) as info:
        make_task("babi", task=task, memory_size=memory)
    assert f"memory_size must be at least {task} for task {task}" in str(info.value)
    assert "\n" not in str(info.value)
    assert len(generate(task, random.Random(0), 3, memory=task)) == 3  # the smallest memory that works


def test_generate_gives_up_when_questions_stop_fitting_the_memory(monkeypatch):
    import cellsearch.tasks.babi as babi

    monkeypatch.setitem(babi.MIN_MEMORY, 2, 1)  # (as before the check: no question of task 2 fits one sentence)
    with pytest.raises(ConfigError) as info:
        generate(2, random.Random(0), 3, memory=1)
    assert "only 0 questions in 1001 stories fit a memory of 1 sentences" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("task", [15, 16])
def test_tasks_15_and_16_need_a_memory_of_their_whole_story(task):
    least = {len(q.story) for q in generate(task, random.Random(0), 50)}
    assert len(least) == 1
    (length,) = least
    BabiTask(task=task, train_examples=10, memory_size=length, test_examples=1)
    with pytest.raises(ConfigError) as info:
        BabiTask(task=task, train_examples=10, memory_size=length - 1)
    assert f"memory_size must be at least {length} for task {task}" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change,message", [
    ({"batch_size": 20}, "it was saved with batch_size=20, this one has batch_size=30"),
    ({"seed": 99}, "it was saved with seed=99, this one has seed=5"),
    ({"examples": 900}, "it was saved with examples=900, this one has examples=90"),
    ({"position": 91}, "position 91 is out of range (the training set has 90 questions)"),
    ({"position": -1}, "its position -1 is not a count"),
    ({"epoch": "2"}, "its epoch '2' is not a count"),
])
def test_the_stream_refuses_a_saved_state_that_does_not_fit_it(change, message):
    task = BabiTask(task=16, train_examples=100, test_examples=1)
    stream = task.train_stream(30, seed=5)
    next(stream)
    state = {**stream.state_dict(), **change}
    with pytest.raises(ConfigError) as info:
        task.train_stream(30, seed=5).load_state_dict(state)
    assert message in str(info.value) and "\n" not in str(info.value)
    resumed = task.train_stream(30, seed=5)
    resumed.load_state_dict({**stream.state_dict(), "position": 90})  # the end of an epoch: the next one starts
    next(resumed)
    assert (resumed.epoch, resumed.position) == (1, 30)
