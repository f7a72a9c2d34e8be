"""The repeat-copy task (Graves et al. 2014): data, options and their one-line errors, long evaluation, CLI."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_REPEATS, LimitError
from cellsearch.tasks import TASK_NAMES, make_task, primary_metric, task_class

runner = CliRunner()


def parts(prompt: str) -> tuple[str, int]:
    seq, rest = prompt.split("#")
    assert rest.endswith("=") and len(rest) == 2
    return seq, int(rest[0])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), lo=st.integers(1, 5), extra=st.integers(0, 6), symbols=st.integers(2, 26),
       r_lo=st.integers(1, 4), r_extra=st.integers(0, 5))
def test_the_answer_is_the_sequence_repeated(seed, lo, extra, symbols, r_lo, r_extra):
    task = make_task("repeat-copy", seed=seed, min_length=lo, max_length=lo + extra, symbols=symbols,
                     min_repeats=r_lo, max_repeats=r_lo + r_extra)
    prompt, answer = task.make_example(random.Random(seed))
    seq, repeats = parts(prompt)
    assert lo <= len(seq) <= lo + extra and set(seq) <= set(task.letters)
    assert r_lo <= repeats <= r_lo + r_extra and answer == seq * repeats
    task.vocab.encode(prompt + answer)  # every character is in the vocabulary


def test_repeats_are_drawn_over_their_whole_range_and_long_sequences_are_longer():
    task = make_task("repeat-copy", seed=1, min_length=2, max_length=4, max_repeats=4, eval_examples=200)
    assert {parts(p)[1] for p, _ in task.split("valid")} == {1, 2, 3, 4}
    assert {len(parts(p)[0]) for p, _ in task.split("valid")} == {2, 3, 4}
    long = task.long_split("valid")
    assert {len(parts(p)[0]) for p, _ in long} == {5, 6, 7, 8}
    assert long == make_task("repeat-copy", seed=1, min_length=2, max_length=4, max_repeats=4,
                             eval_examples=200).long_split("valid")
    assert task.config()["max_repeats"] == 4 and task.config()["min_repeats"] == 1


def test_it_is_registered_and_its_training_sequences_are_bounded():
    assert "repeat-copy" in TASK_NAMES and primary_metric("repeat-copy") == "accuracy"
    cls = task_class("repeat-copy")
    _, longest = cls.sizes({"max_length": 5, "max_repeats": 3})
    task = make_task("repeat-copy", max_length=5, min_length=5, min_repeats=3, max_repeats=3)
    prompt, answer = task.make_example(random.Random(0))
    assert longest >= len(prompt) + len(answer) + 2  # <bos> and <eos>


@pytest.mark.parametrize("options, error, message", [
    ({"min_repeats": 0}, ConfigError, "min_repeats must be an integer between 1 and 9"),
    ({"min_repeats": 3, "max_repeats": 2}, ConfigError, "max_repeats must be an integer between 3 and 9"),
    ({"max_repeats": 2.5}, ConfigError, "max_repeats must be an integer"),
    ({"max_repeats": MAX_REPEATS + 1}, LimitError, "max_repeats"),
    ({"max_length": 200, "max_repeats": 5}, ConfigError, "the longest answer .* = 2000 symbols\\) must be at most 1000"),
    ({"max_length": 0}, ConfigError, "max_length must be an integer between"),
    ({"repeats": 2}, ConfigError, "it has no option 'repeats'"),
])
def test_bad_options_are_one_line_errors(options, error, message):
    with pytest.raises(error, match=message) as exc:
        make_task("repeat-copy", **options)
    assert "\n" not in str(exc.value)


def test_the_cli_trains_it_and_refuses_bad_options_in_one_line(tmp_path):
    res = runner.invoke(app, ["train", "lstm", "--task", "repeat-copy", "--steps", "2", "--hidden", "8",
                              "-t", "max_length=3", "-t", "max_repeats=2", "-t", "eval_examples=8", "--json",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert {"accuracy", "exact_match", "exact_match_long"} <= set(json.loads(res.stdout)["metrics"])
    for option, message in (("max_repeats=10", "max_repeats"), ("min_repeats=0", "min_repeats must be an integer")):
        bad = runner.invoke(app, ["train", "lstm", "--task", "repeat-copy", "-t", option, "--steps", "1"])
        assert bad.exit_code == 2 and message in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.output
