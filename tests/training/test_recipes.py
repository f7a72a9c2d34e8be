"""Training recipes (``--recipe``): the shipped ones state what they claim, a recipe sets the
training and explicit options override it, bad recipes are one-line refusals (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cellsearch.training.config import TrainConfig
from tests.support.hostile import cli, refused


def test_the_default_recipe_states_the_trainers_defaults():
    """default.yaml writes TrainConfig's defaults out; the two must not drift apart."""
    from dataclasses import fields

    from cellsearch.training.recipes import load_recipe, recipe_names

    assert recipe_names()[:1] == ["default"] and "nasbench-nlp" in recipe_names()
    defaults = {f.name: getattr(TrainConfig(), f.name) for f in fields(TrainConfig)}  # (as made: the budget is set then)
    recipe = load_recipe("default")
    assert recipe.train and recipe.task_options == {}
    for key, value in recipe.train.items():
        assert value == defaults[key], key
    # the settings of issue 13 are among those it states
    assert {"ar", "tar", "state_limit", "clip", "init_scale", "lr"} <= set(recipe.train)


def test_the_nasbench_nlp_recipe_is_their_protocol():
    from cellsearch.training.recipes import load_recipe

    recipe = load_recipe("nasbench-nlp")
    expected = {"num_layers": 3, "embed_size": 400, "hidden_size": 600, "batch_size": 20, "optimizer": "adam",
                "lr": 1e-3, "weight_decay": 1.2e-6, "clip": 0.25, "init_scale": 1.0, "ar": 2.0, "tar": 1.0}
    assert {k: recipe.train[k] for k in expected} == expected
    assert recipe.settings("ptb")["task_options"] == {"bptt": 70}
    assert "task_options" not in recipe.settings("arith")  # PTB's options only on PTB
    cfg = TrainConfig(**{**recipe.settings("ptb"), "task": "ptb"})
    cfg.validate()


@pytest.mark.parametrize("text, says", [
    ("hidden_size: 8\nlearning_rate: 0.1\n", "unknown setting(s) 'learning_rate'"),
    ("cell: lstm\n", "unknown setting(s) 'cell'"),  # what to train is not a recipe's
    ("seed: 3\n", "unknown setting(s) 'seed'"),
    ("lr: fast\n", "setting 'lr'"),
    ("hidden_size: -8\n", "hidden_size must be at least 1"),
    ("clip: .nan\n", "clip must be a number"),
    ("ar: -1\n", "ar must be a number >= 0"),
    ("- lr: 0.1\n", "a recipe is a mapping"),
    ("lr: [0.1\n", "YAML syntax error"),
    ("task_options: {ptb: 70}\n", "task_options must map task names"),
    ("task_options: {wiki: {bptt: 70}}\n", "unknown task 'wiki'"),
    ("description: [a]\n", "description must be text"),
    ("lr: !!python/object/apply:os.system ['echo hi']\n", "bad.yaml"),  # data never executes
])
def test_bad_recipe_files_are_one_line_refusals(tmp_path, text, says):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = refused("train", "lstm", "--steps", "1", "--recipe", str(path), "--no-progress", says=says)
    assert str(path) in line


def test_unknown_recipe_names_are_refused():
    refused("train", "lstm", "--recipe", "nasbench", "--no-progress",
            says=("unknown recipe 'nasbench'", "did you mean 'nasbench-nlp'"))
    refused("train", "lstm", "--recipe", "missing.yaml", "--no-progress", says="missing.yaml: no such file")
    refused("search", "--recipe", "fast", "--backend", "local", "--trials", "1", says="unknown recipe 'fast'")


def _trained_config(out_dir: Path) -> dict:
    return torch.load(out_dir / "checkpoint.pt", weights_only=True)["config"]


def test_a_recipe_sets_the_training_and_explicit_options_override_it(tmp_path):
    recipe = tmp_path / "small.yaml"
    recipe.write_text("hidden_size: 8\nlr: 0.01\nsteps: 2\nar: 0.5\nstate_limit: 7.0\n"
                      "task_options: {arith: {max_digits: 2, eval_examples: 16}, ptb: {bptt: 70}}\n")
    common = ("--task", "arith", "--batch-size", "4", "--no-progress", "--json")
    assert cli("train", "gru", "--recipe", str(recipe), "--out", str(tmp_path / "a"), *common).exit_code == 0
    cfg = _trained_config(tmp_path / "a")
    assert (cfg["hidden_size"], cfg["lr"], cfg["steps"], cfg["ar"], cfg["state_limit"]) == (8, 0.01, 2, 0.5, 7.0)
    assert cfg["task_options"] == {"max_digits": 2, "eval_examples": 16} and cfg["batch_size"] == 4
    res = cli("train", "gru", "--recipe", str(recipe), "--out", str(tmp_path / "b"), "--hidden", "12",
              "--steps", "3", "--lr", "0.002", "--ar", "0", "-t", "eval_examples=8", *common)
    assert res.exit_code == 0, res.stderr
    cfg = _trained_config(tmp_path / "b")
    assert (cfg["hidden_size"], cfg["lr"], cfg["steps"], cfg["ar"], cfg["state_limit"]) == (12, 0.002, 3, 0.0, 7.0)
    assert cfg["task_options"] == {"max_digits": 2, "eval_examples": 8}  # -t over the recipe's option


def test_without_a_recipe_training_is_as_with_the_default_recipe(tmp_path):
    common = ("gru", "--task", "arith", "--steps", "2", "--hidden", "8", "-t", "max_digits=2",
              "-t", "eval_examples=16", "--no-progress", "--json")
    assert cli("train", *common, "--out", str(tmp_path / "plain")).exit_code == 0
    assert cli("train", *common, "--recipe", "default", "--out", str(tmp_path / "default")).exit_code == 0
    assert _trained_config(tmp_path / "plain") == _trained_config(tmp_path / "default")


def test_a_resumed_training_takes_no_recipe(tmp_path):
    refused("train", "lstm", "--recipe", "default", "--resume", str(tmp_path / "checkpoint.pt"), "--no-progress",
            says="leave out --recipe")


@pytest.mark.parametrize("name, hidden, batch, weight_decay", [("darts-search", 300, 256, 5e-7),
                                                                ("darts-final", 850, 64, 8e-7)])
def test_the_darts_recipes_are_their_protocol(name, hidden, batch, weight_decay):
    from cellsearch.training.recipes import load_recipe

    recipe = load_recipe(name)
    expected = {"num_layers": 1, "embed_size": hidden, "hidden_size": hidden, "batch_size": batch, "optimizer": "sgd",
                "lr": 20.0, "weight_decay": weight_decay, "clip": 0.25}
    assert {k: recipe.train[k] for k in expected} == expected
    assert recipe.settings("ptb")["task_options"] == {"bptt": 35}
    TrainConfig(**{**recipe.settings("ptb"), "task": "ptb"}).validate()
