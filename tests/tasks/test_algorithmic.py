"""The algorithmic tasks (copy, reverse, sort, reversed-digit addition, associative recall): data, limits, long evaluation."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.errors import ConfigError
from cellsearch.tasks import TASK_NAMES, make_task, primary_metric
from cellsearch.tasks.algorithmic import MAX_LENGTH

ALGORITHMIC = ("copy", "reverse", "sort", "addition", "recall")
runner = CliRunner()


def sequence_of(task, prompt: str) -> str:
    return prompt[:-1]  # the prompt is the sequence and "="


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), lo=st.integers(1, 5), extra=st.integers(0, 6), symbols=st.integers(2, 26))
def test_answers_are_the_function_of_the_sequence(seed, lo, extra, symbols):
    rng = random.Random(seed)
    for name in ("copy", "reverse", "sort"):
        task = make_task(name, seed=seed, min_length=lo, max_length=lo + extra, symbols=symbols)
        prompt, answer = task.make_example(rng)
        seq = sequence_of(task, prompt)
        assert lo <= len(seq) <= lo + extra and set(seq) <= set(task.letters)
        want = {"copy": seq, "reverse": seq[::-1], "sort": "".join(sorted(seq))}[name]
        assert answer == want
    add = make_task("addition", seed=seed, min_length=lo, max_length=lo + extra)
    prompt, answer = add.make_example(rng)
    a, b = prompt.rstrip("=").split("+")
    assert len(a) == len(b) and lo <= len(a) <= lo + extra
    assert int(answer[::-1]) == int(a[::-1]) + int(b[::-1])  # least significant digit first


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), items=st.integers(2, 8), item_length=st.integers(1, 4))
def test_recall_answers_the_item_after_the_first_match_of_the_query(seed, items, item_length):
    task = make_task("recall", seed=seed, min_length=items, max_length=items, item_length=item_length, symbols=3)
    prompt, answer = task.make_example(random.Random(seed))
    body, query = prompt.rstrip("=").split("?")
    seq = body.split("|")
    assert len(seq) == items and all(len(s) == item_length for s in seq)
    k = seq.index(query)
    assert k < items - 1 and answer == seq[k + 1]


@pytest.mark.parametrize("name", ALGORITHMIC)
def test_long_evaluation_is_beyond_training_lengths_and_fixed_per_seed(name):
    task = make_task(name, seed=3, min_length=2, max_length=5, eval_examples=40)
    long = task.long_split("valid")
    assert len(long) == 40 and long == make_task(name, seed=3, min_length=2, max_length=5,
                                                  eval_examples=40).long_split("valid")
    lengths = {task_length(name, p) for p, _ in long}
    assert min(lengths) > 5 and max(lengths) <= 10
    assert {task_length(name, p) for p, _ in task.split("valid")} <= set(range(2, 6))
    assert long != task.long_split("test")
    assert make_task(name, seed=3, min_length=2, max_length=5, long_factor=1).long_split("valid") == []


def task_length(name: str, prompt: str) -> int:
    body = prompt.rstrip("=")
    if name == "addition":
        return len(body.split("+")[0])
    if name == "recall":
        return len(body.split("?")[0].split("|"))
    return len(body)


def test_the_tasks_are_registered_and_scored_by_accuracy():
    assert set(ALGORITHMIC) <= set(TASK_NAMES)
    assert {primary_metric(n) for n in ALGORITHMIC} == {"accuracy"}


@pytest.mark.parametrize("options, message", [
    ({"max_length": 0}, "max_length must be an integer between"),
    ({"min_length": 4, "max_length": 3}, "max_length must be an integer between 4"),
    ({"symbols": 27}, "symbols must be an integer between 2 and 26"),
    ({"max_length": MAX_LENGTH + 1}, "max_length"),
    ({"long_factor": 0.5}, "long_factor must be a number between 1"),
    ({"long_factor": float("nan")}, "long_factor"),
    ({"max_length": 600, "long_factor": 2}, "long_factor must be a number between 1 and"),
    ({"max_length": 2.5}, "integer"),
    ({"colour": 1}, "bad option for task 'reverse'"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        make_task("reverse", **options)


def test_recall_needs_two_items():
    with pytest.raises(ConfigError, match="min_length must be an integer between 2"):
        make_task("recall", min_length=1)


def test_cli_trains_reverse_and_reports_the_long_exact_match(tmp_path):
    res = runner.invoke(app, ["train", "gru", "--task", "reverse", "--steps", "3", "--hidden", "8", "-t", "max_length=4",
                              "-t", "eval_examples=16", "--json", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)["metrics"]
    assert {"accuracy", "exact_match", "exact_match_long"} <= set(metrics)
    bad = runner.invoke(app, ["train", "gru", "--task", "reverse", "-t", "max_length=0", "--steps", "1"])
    assert bad.exit_code == 2 and "max_length must be an integer" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.output


@pytest.mark.slow
def test_a_gru_learns_to_copy_short_sequences():
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.trainer import train

    res = train(TrainConfig(cell="gru", task="copy", hidden_size=32, steps=150, lr=0.01, seed=0,
                            task_options={"max_length": 3, "symbols": 4, "eval_examples": 128}))
    assert res.status == "ok" and res.metrics["accuracy"] > 0.8  # chance is 1/4 per symbol
