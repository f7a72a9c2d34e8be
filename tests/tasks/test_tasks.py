"""Synthetic tasks: the data is right, metrics mean what they say, streams resume exactly."""

from __future__ import annotations

import random
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cellsearch.errors import ConfigError
from cellsearch.nn.model import ModelConfig, SeqModel
from cellsearch.tasks import make_task
from cellsearch.tasks.arithmetic import DISTRACTORS, ArithmeticTask, solve
from cellsearch.tasks.memorize import MemorizeTask
from cellsearch.tasks.xml import XMLTask, make_document, predictable_positions


def test_every_arithmetic_answer_is_correct():
    task = ArithmeticTask(seed=3, max_digits=8)
    rng = random.Random(0)
    for _ in range(2000):
        prompt, answer = task.make_example(rng)
        assert prompt.endswith("=")
        assert int(answer) == solve(prompt)
        plain = "".join(c for c in prompt if c not in DISTRACTORS)
        m = re.fullmatch(r"(\d{1,8})([+-])(\d{1,8})=", plain)
        assert m, plain
        a, op, b = int(m[1]), m[2], int(m[3])
        assert int(answer) == (a + b if op == "+" else a - b)
        assert not m[1].startswith("0") or m[1] == "0"


def test_arithmetic_has_distractors_negative_answers_and_both_ops():
    task = ArithmeticTask(seed=0, max_digits=4)
    examples = task.split("valid")
    assert any(any(c in DISTRACTORS for c in p) for p, _ in examples)
    assert any(a.startswith("-") for _, a in examples)
    assert {"+", "-"} <= {c for p, _ in examples for c in p}
    assert max(len(str(abs(int(a)))) for _, a in examples) <= 5


def test_splits_are_fixed_per_seed_and_differ_between_seeds():
    assert ArithmeticTask(seed=1).split("valid") == ArithmeticTask(seed=1).split("valid")
    assert ArithmeticTask(seed=1).split("valid") != ArithmeticTask(seed=2).split("valid")
    assert ArithmeticTask(seed=1).split("valid") != ArithmeticTask(seed=1).split("test")


def test_answer_mask_covers_only_the_answer_and_eos():
    task = ArithmeticTask(seed=0, max_digits=3)
    batch = task.encode([("1+2=", "3"), ("10-20=", "-10")])
    v = task.vocab
    for b, answer in enumerate(["3", "-10"]):
        scored = batch.targets[batch.mask[:, b], b].tolist()
        assert scored == v.encode(answer) + [v.eos]
    assert batch.inputs[0].tolist() == [v.bos, v.bos]


def test_every_xml_document_is_well_nested():
    rng = random.Random(5)
    for _ in range(500):
        doc = make_document(rng, max_steps=50)
        stack = []
        for line in doc.splitlines():
            depth = (len(line) - len(line.lstrip(" "))) // 2
            tag = line.strip()
            m = re.fullmatch(r"<(/?)([a-z]{2,10})>", tag)
            assert m, line
            if m[1]:
                assert stack and stack[-1] == m[2]
                stack.pop()
                assert depth == len(stack)
            else:
                assert depth == len(stack)
                stack.append(m[2])
        assert not stack


def test_xml_predictable_positions_are_closing_tag_names():
    doc = "<ab>\n  <cde>\n  </cde>\n</ab>\n"
    flags = predictable_positions(doc)
    marked = "".join(c for c, f in zip(doc, flags) if f)
    assert marked == "cde>ab>"


def test_memorize_answer_repeats_the_prompt():
    task = MemorizeTask(seed=0, length=5, symbols=26)
    for prompt, answer in task.split("valid")[:100]:
        assert prompt == answer + "=" and len(answer) == 5


def test_untrained_model_scores_near_chance_and_metrics_are_consistent():
    task = ArithmeticTask(seed=0, max_digits=3, eval_examples=64)
    torch.manual_seed(0)
    model = SeqModel("lstm", ModelConfig(vocab_size=len(task.vocab), hidden_size=16))
    m = task.evaluate(model)
    assert set(m) >= {"loss", "char_accuracy", "exact_match"}
    assert 0.0 <= m["char_accuracy"] < 0.3 and m["exact_match"] == 0.0
    assert m["loss"] > 2.0


@pytest.mark.parametrize("name, options", [("arith", {"max_digits": 3}), ("memorize", {}), ("xml", {})])
def test_streams_are_deterministic_and_resume_exactly(name, options):
    task = make_task(name, seed=0, **options)
    a = task.train_stream(4, seed=7)
    b = task.train_stream(4, seed=7)
    for _ in range(3):
        x, y = next(a), next(b)
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.mask, y.mask)
    saved = a.state_dict()
    expected = [next(a) for _ in range(2)]
    c = task.train_stream(4, seed=123)
    c.load_state_dict(saved)
    for e in expected:
        assert torch.equal(next(c).inputs, e.inputs)


def test_xml_stream_carries_state_after_the_first_batch():
    task = XMLTask(seed=0, bptt=10)
    s = task.train_stream(3, seed=0)
    first, second = next(s), next(s)
    assert not first.carry_state and second.carry_state
    assert first.inputs.shape == (10, 3)
    assert torch.equal(first.targets[-1], second.inputs[0])  # the stream continues where it stopped


def test_xml_metrics_are_in_range():
    task = XMLTask(seed=0, eval_chars=2000)
    model = SeqModel("gru", ModelConfig(vocab_size=len(task.vocab), hidden_size=8))
    m = task.evaluate(model)
    assert 0 <= m["accuracy"] <= 1 and 0 <= m["predictable_accuracy"] <= 1
    assert m["bpc"] == pytest.approx(m["loss"] / 0.6931471805599453)


def test_unknown_task_and_bad_options_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        make_task("nope")
    with pytest.raises(ConfigError, match="bad option for task 'arith'"):
        make_task("arith", digits=3)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40))
def test_encode_pads_like_one_example_at_a_time(seed, n):
    """The batched encoding equals writing each example into a padded batch on its own."""
    task = make_task("arith", seed=0)
    rng = random.Random(seed)
    examples = [task.make_example(rng) for _ in range(n)]
    batch = task.encode(examples)
    v = task.vocab
    seqs = [[v.bos, *v.encode(p), *v.encode(a), v.eos] for p, a in examples]
    T = max(len(s) for s in seqs) - 1
    inputs = torch.full((T, n), v.pad, dtype=torch.long)
    targets = inputs.clone()
    mask = torch.zeros((T, n), dtype=torch.bool)
    for b, (ids, (prompt, _)) in enumerate(zip(seqs, examples)):
        inputs[:len(ids) - 1, b] = torch.tensor(ids[:-1])
        targets[:len(ids) - 1, b] = torch.tensor(ids[1:])
        mask[len(prompt):len(ids) - 1, b] = True
    assert torch.equal(batch.inputs, inputs) and torch.equal(batch.targets, targets)
    assert torch.equal(batch.mask, mask)


def _reference_arithmetic_example(task: ArithmeticTask, rng: random.Random) -> tuple[str, str]:
    """The generator as first written, with ``randint``/``choice``: the stream every earlier run drew."""
    def number() -> int:
        digits = rng.randint(1, task.max_digits)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits - 1)

    a, b = number(), number()
    op = rng.choice("+-")
    plain = f"{a}{op}{b}="
    prompt = []
    for i, ch in enumerate(plain):
        if i > 0:
            prompt.append("".join(rng.choice(DISTRACTORS) for _ in range(rng.randint(0, task.max_distractors))))
        prompt.append(ch)
    return "".join(prompt), str(a + b if op == "+" else a - b)


@pytest.mark.parametrize("max_digits,max_distractors", [(8, 3), (1, 0), (3, 5)])
def test_arithmetic_draws_the_stream_of_randint_and_choice(max_digits, max_distractors):
    task = ArithmeticTask(seed=0, max_digits=max_digits, max_distractors=max_distractors)
    fast, reference = random.Random(11), random.Random(11)
    for _ in range(3000):
        assert task.make_example(fast) == _reference_arithmetic_example(task, reference)
    assert fast.getstate() == reference.getstate()


def test_arithmetic_refuses_negative_distractors():
    with pytest.raises(ConfigError, match="max_distractors"):
        ArithmeticTask(max_distractors=-1)


@pytest.mark.parametrize("name", ["arith", "memorize", "copy", "reverse", "sort", "addition", "recall"])
def test_character_batches_equal_the_general_encoding(name):
    """The byte-string batch of a character task is the one the token lists give."""
    task = make_task(name, seed=4)
    stream = task.train_stream(16, 4)
    v = task.vocab
    for _ in range(5):
        examples = [task.make_example(stream.rng) for _ in range(16)]
        fast = task.encode(examples)
        seqs = [[v.bos, *v.encode(p), *v.encode(a), v.eos] for p, a in examples]
        general = task._next_tokens(seqs, [len(p) for p, _ in examples])
        for field in ("inputs", "targets", "mask"):
            assert torch.equal(getattr(fast, field), getattr(general, field)), field
        assert fast.inputs.dtype == torch.long and fast.inputs.is_contiguous()


def test_a_character_outside_the_vocabulary_is_refused_as_before():
    task = ArithmeticTask(seed=0)
    with pytest.raises(KeyError):
        task.encode([("1+2=", "3"), ("1*2=", "2")])


def test_arithmetic_takes_integer_options_only():
    import numpy as np

    assert ArithmeticTask(max_digits=np.int64(3), max_distractors=np.int32(2)).make_example(random.Random(0))
    with pytest.raises(ConfigError, match="bad option for task 'arith': max_digits and max_distractors must be "
                                          "integers, got 3.0"):
        make_task("arith", max_digits=3.0)
