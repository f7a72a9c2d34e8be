"""Joulin & Mikolov's formal-language tasks: the languages, the scored (deterministic) part, the
long evaluation beyond the training bound, the metrics on known models, options and the CLI."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.errors import ConfigError
from cellsearch.limits import LimitError
from cellsearch.tasks import TASK_NAMES, make_task, primary_metric
from cellsearch.tasks.algorithmic import MAX_LENGTH

FORMAL = ("anbn", "anbncn", "anbmcnm", "string-memorization", "binary-addition")
runner = CliRunner()


def n_of(name: str, text: str) -> int:
    """The n of a whole sequence (prompt + answer); checks that it is in the language."""
    if name == "anbn":
        m = re.fullmatch(r"(a+)(b+)", text)
        assert m and len(m[1]) == len(m[2])
        return len(m[1])
    if name == "anbncn":
        m = re.fullmatch(r"(a+)(b+)(c+)", text)
        assert m and len(m[1]) == len(m[2]) == len(m[3])
        return len(m[1])
    if name == "anbmcnm":
        m = re.fullmatch(r"(a+)(b+)(c+)", text)
        assert m and len(m[1]) + len(m[2]) == len(m[3])
        return max(len(m[1]), len(m[2]))
    if name == "string-memorization":
        m = re.fullmatch(r"([ab]+)c([ab]+)", text)
        assert m and m[2] == m[1][::-1]
        return len(m[1])
    m = re.fullmatch(r"([01]+)\+([01]+)=([01]+)", text)
    assert m and len(m[1]) == len(m[2]) and int(m[3][::-1], 2) == int(m[1], 2) + int(m[2], 2)
    return len(m[1])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), lo=st.integers(1, 4), extra=st.integers(0, 5))
def test_examples_are_in_the_language_and_the_prompt_ends_where_the_rest_is_determined(seed, lo, extra):
    rng = random.Random(seed)
    for name in FORMAL:
        task = make_task(name, seed=seed, min_n=lo, max_n=lo + extra)
        prompt, answer = task.make_example(rng)
        assert lo <= n_of(name, prompt + answer) <= lo + extra
        # the last symbol of the prompt is the last one not determined by what came before
        last = {"anbn": "b", "anbncn": "b", "anbmcnm": "c", "string-memorization": "c", "binary-addition": "="}[name]
        assert prompt.endswith(last) and prompt.count(last) == 1 and set(prompt + answer) <= set(task.alphabet)


@pytest.mark.parametrize("name", FORMAL)
def test_long_evaluation_is_beyond_the_training_bound_and_fixed_per_seed(name):
    task = make_task(name, seed=3, min_n=2, max_n=5, eval_examples=40)
    long = task.long_split("valid")
    assert len(long) == 40 and long == make_task(name, seed=3, min_n=2, max_n=5, eval_examples=40).long_split("valid")
    ns = [n_of(name, p + a) for p, a in long]
    assert min(ns) > 5 and max(ns) <= 10
    assert {n_of(name, p + a) for p, a in task.split("valid")} <= set(range(2, 6))
    assert long != task.long_split("test")
    assert make_task(name, max_n=5, long_factor=1).long_split("valid") == []


def test_the_tasks_are_registered_and_scored_by_accuracy():
    assert set(FORMAL) <= set(TASK_NAMES) and {primary_metric(n) for n in FORMAL} == {"accuracy"}


class AnbnOracle(torch.nn.Module):
    """Predicts aⁿbⁿ's next symbol by counting (right at every deterministic position); with
    ``endless`` it never predicts the end."""

    def __init__(self, task, endless: bool = False):
        super().__init__()
        self.v, self.endless = task.vocab, endless
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens, state=None):
        a = (tokens == self.v.id("a")).long().cumsum(0)
        b = (tokens == self.v.id("b")).long().cumsum(0)
        want = torch.where(b < a, self.v.id("b"), self.v.eos)
        if self.endless:
            want = torch.full_like(want, self.v.id("b"))
        return torch.nn.functional.one_hot(want, len(self.v)).double() * 10, None


def test_metrics_of_known_models():
    task = make_task("anbn", seed=0, max_n=6, eval_examples=50)
    perfect = task.evaluate(AnbnOracle(task))
    assert perfect["accuracy"] == perfect["sequence_accuracy"] == 1.0
    assert perfect["accuracy_long"] == perfect["sequence_accuracy_long"] == 1.0
    endless = task.evaluate(AnbnOracle(task, endless=True))
    assert endless["sequence_accuracy"] == endless["sequence_accuracy_long"] == 0.0
    # right on the n − 1 b's, wrong on the end: Σ(n − 1) / Σ n over the split
    ns = [len(p) - 1 for p, _ in task.split("valid")]
    assert endless["accuracy"] == pytest.approx(sum(n - 1 for n in ns) / sum(ns))


@pytest.mark.parametrize("options, error, message", [
    ({"max_n": 0}, ConfigError, "task option max_n must be an integer between 1"),
    ({"min_n": 4, "max_n": 3}, ConfigError, "max_n must be an integer between 4"),
    ({"min_n": 0}, ConfigError, "task option min_n must be an integer between 1"),
    ({"max_n": MAX_LENGTH + 1}, LimitError, "max_n"),
    ({"max_n": 2.5}, ConfigError, "integer"),
    ({"max_n": True}, ConfigError, "integer"),
    ({"long_factor": 0.5}, ConfigError, "long_factor must be a number between 1"),
    ({"max_n": 600, "long_factor": 2}, ConfigError, "long_factor must be a number between 1 and"),
    ({"eval_examples": 0}, ConfigError, "eval_examples"),
    ({"symbols": 3}, ConfigError, "bad option for task 'anbn': it has no option 'symbols'"),
])
def test_bad_options_are_one_line_errors(options, error, message):
    with pytest.raises(error) as exc:
        make_task("anbn", **options)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_cli_trains_a_stack_rnn_and_refuses_bad_options_in_one_line(tmp_path):
    res = runner.invoke(app, ["train", "stack-rnn", "--task", "anbncn", "--steps", "3", "--hidden", "8",
                              "--memory-rows", "5", "-t", "max_n=4", "-t", "eval_examples=16", "--json",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)["metrics"]
    assert set(metrics) == {"loss", "accuracy", "sequence_accuracy", "accuracy_long", "sequence_accuracy_long"}
    for args, message in ((["-t", "max_n=0"], "max_n must be an integer"), (["-t", "long_factor=x"], "long_factor"),
                          (["-t", "max_n=5000"], "max_n")):
        bad = runner.invoke(app, ["train", "stack-rnn", "--task", "anbn", "--steps", "1", *args])
        assert bad.exit_code == 2 and message in bad.stderr, bad.output
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.output


@pytest.mark.slow
def test_the_contract_command_runs(tmp_path, monkeypatch):
    """``cellsearch train stack-rnn --task anbn --json`` exactly as the issue writes it (about a minute)."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "stack-rnn", "--task", "anbn", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cell"] == "stack-rnn" and out["task"] == "anbn" and out["status"] == "ok"
    assert out["metrics"]["accuracy"] > 0.9  # (1.0 measured; chance on the b's and the end is about 1/2)
