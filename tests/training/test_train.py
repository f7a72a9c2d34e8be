"""The budgeted trainer: learning, determinism, divergence, callbacks, exact resume, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.errors import ConfigError
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import Trainer, train
from cellsearch.training.schedules import teacher_forcing_probability
from tests.support.paths import SHARED

SMALL = dict(hidden_size=16, batch_size=8, task_options={"max_digits": 2, "eval_examples": 64})


@pytest.mark.slow
def test_training_learns_memorization():
    res = train(TrainConfig(cell="gru", task="memorize", steps=400, hidden_size=48, lr=1e-2, batch_size=32,
                            task_options={"length": 3, "symbols": 4, "eval_examples": 128}))
    assert res.status == "ok" and res.steps == 400
    assert res.metrics["accuracy"] > 0.9
    assert sum(res.losses[-20:]) < sum(res.losses[:20])


def test_same_seed_same_metrics_different_seed_different():
    a = train(TrainConfig(cell="lstm", task="arith", steps=30, seed=1, **SMALL))
    b = train(TrainConfig(cell="lstm", task="arith", steps=30, seed=1, **SMALL))
    c = train(TrainConfig(cell="lstm", task="arith", steps=30, seed=2, **SMALL))
    assert a.metrics == b.metrics and a.losses == b.losses
    assert a.losses != c.losses


def test_nan_producing_setup_ends_as_diverged():
    res = train(TrainConfig(cell="tanh", task="arith", steps=50, lr=1e6, optimizer="sgd", clip=None,
                            init_scale=50.0, **SMALL))
    assert res.status == "diverged"
    assert res.steps < 50


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    cfg = TrainConfig(cell="lstm", task="arith", steps=20, checkpoint_every=10, dropout=0.2, num_layers=2,
                      scheduled_sampling="linear", ss_k=30, **SMALL)
    full = Trainer(cfg).run(out_dir=tmp_path / "full")
    resumed = Trainer.from_checkpoint(tmp_path / "full" / "checkpoint-10.pt").run(out_dir=tmp_path / "resumed")
    assert resumed.steps == 20
    assert resumed.losses == full.losses
    assert resumed.metrics == full.metrics
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not (SHARED / "data/ptb").exists(), reason="needs ../shared/data/ptb")
def test_resume_carries_the_ptb_state(tmp_path):
    cfg = TrainConfig(cell="gru", task="ptb", steps=6, checkpoint_every=3, hidden_size=16, batch_size=4,
                      data_dir=str(SHARED / "data/ptb"), task_options={"bptt": 5, "eval_tokens": 400})
    full = Trainer(cfg).run(out_dir=tmp_path / "full")
    resumed = Trainer.from_checkpoint(tmp_path / "full" / "checkpoint-3.pt").run()
    assert resumed.losses == full.losses


def test_callback_receives_periodic_metrics_and_can_stop():
    seen = []

    def cb(step, metrics):
        seen.append((step, metrics["char_accuracy"]))
        return step < 20

    res = train(TrainConfig(cell="gru", task="arith", steps=100, eval_every=10, **SMALL), callback=cb)
    assert res.status == "stopped" and res.steps == 20
    assert [s for s, _ in seen] == [10, 20]
    assert [h["step"] for h in res.history] == [10, 20]


def test_evaluating_along_the_way_leaves_the_training_unchanged():
    # what lets a learning curve stand for shorter trainings (replay tables, ASHA's rungs): with a
    # constant learning rate, the evaluation after s of N steps is an s-step training's score
    plain = train(TrainConfig(cell="gru", task="arith", steps=40, dropout=0.1, **SMALL))
    seen = {}
    watched = train(TrainConfig(cell="gru", task="arith", steps=40, eval_every=10, dropout=0.1, **SMALL),
                    callback=lambda step, m: seen.setdefault(step, m["char_accuracy"]) and None)
    assert watched.losses == plain.losses and watched.metrics == plain.metrics
    short = train(TrainConfig(cell="gru", task="arith", steps=20, dropout=0.1, **SMALL))
    assert seen[20] == short.metrics["char_accuracy"]


def test_time_budget_ends_the_run():
    res = train(TrainConfig(cell="gru", task="arith", steps=None, seconds=1.0, **SMALL))
    assert res.status == "ok" and 0 < res.steps and res.seconds >= 1.0  # it stopped, having spent the budget


def test_forget_bias_and_config_errors():
    t = Trainer(TrainConfig(cell="lstm", task="arith", steps=1, forget_bias=1.0, **SMALL))
    f_lin = t.graph.node_map["f"].args[0]
    assert torch.all(getattr(t.model.rnn.cells[0].params, f"{f_lin}__b") == 1.0)
    with pytest.raises(ConfigError, match="no gate 'f'"):
        Trainer(TrainConfig(cell="gru", task="arith", steps=1, forget_bias=1.0, **SMALL))
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop").validate()
    cfg = TrainConfig(steps=None, seconds=None)  # no budget given: the default one, as `cellsearch train` has
    assert (cfg.steps, cfg.seconds) == (300, None)
    cfg.steps = None
    with pytest.raises(ConfigError, match="budget"):
        cfg.validate()


def test_scheduled_sampling_schedules_decay():
    for kind in ("linear", "exponential", "inverse_sigmoid"):
        cfg = TrainConfig(scheduled_sampling=kind, ss_k=50)
        probs = [teacher_forcing_probability(cfg, s) for s in (0, 10, 100, 1000)]
        assert probs == sorted(probs, reverse=True) and probs[0] > probs[-1]
        assert 0 <= probs[-1] <= 1 and probs[0] <= 1
    assert teacher_forcing_probability(TrainConfig(), 10_000) == 1.0


runner = CliRunner()


@pytest.mark.parametrize("task, extra", [
    ("arith", ["-t", "max_digits=3", "-t", "eval_examples=128"]),
    ("xml", ["-t", "eval_chars=3000"]),
    ("memorize", []),
])
def test_cli_train_json(tmp_path, task, extra):
    res = runner.invoke(app, ["train", "lstm", "--task", task, "--steps", "40", "--hidden", "32", "--json",
                              "--out", str(tmp_path), *extra])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("task", "cell", "hash", "params", "steps", "seconds", "status", "metrics"):
        assert key in out
    assert out["status"] == "ok" and out["steps"] == 40
    want = {"arith": {"char_accuracy", "exact_match"}, "xml": {"accuracy", "bpc"}, "memorize": {"accuracy"}}
    assert want[task] <= set(out["metrics"])
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "metrics.json").exists()


@pytest.mark.skipif(not (SHARED / "data/ptb").exists(), reason="needs ../shared/data/ptb")
def test_cli_train_ptb_and_generate(tmp_path):
    res = runner.invoke(app, ["train", "gru", "--task", "ptb", "--steps", "5", "--hidden", "16", "--json",
                              "--data-dir", str(SHARED / "data/ptb"), "--out", str(tmp_path), "-t", "eval_tokens=2000"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["metrics"]
    assert m["perplexity"] > 1 and m["word_prob"] == pytest.approx(1 / m["perplexity"])
    res = runner.invoke(app, ["generate", str(tmp_path), "--prompt", "the market", "--length", "5"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("the market")


def test_cli_generate_arith_greedy_and_beam(tmp_path):
    res = runner.invoke(app, ["train", "gru", "--task", "arith", "--steps", "20", "--hidden", "16", "--json",
                              "--out", str(tmp_path), "-t", "max_digits=2", "-t", "eval_examples=32"])
    assert res.exit_code == 0, res.output
    greedy = runner.invoke(app, ["generate", str(tmp_path), "--prompt", "12+3=", "--length", "4"])
    beam = runner.invoke(app, ["generate", str(tmp_path), "--prompt", "12+3=", "--length", "4", "--beam", "1"])
    assert greedy.exit_code == 0 and beam.exit_code == 0
    assert beam.stdout.split("\t")[1] == greedy.stdout  # beam of width 1 is greedy
    bad = runner.invoke(app, ["generate", str(tmp_path), "--prompt", "12+3=", "--beam", "2", "--temperature", "1"])
    assert bad.exit_code == 2 and "either --beam or --temperature" in bad.stderr


def test_cli_missing_ptb_data_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["train", "lstm", "--task", "ptb", "--steps", "1", "--data-dir", str(tmp_path / "none")])
    assert res.exit_code == 2
    assert "cellsearch data download ptb" in res.stderr


def test_training_draws_from_its_own_generators_not_the_global_rng():
    cfg = dict(cell="lstm", task="arith", steps=4, dropout=0.3, num_layers=2, scheduled_sampling="linear", ss_k=5,
               **SMALL)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    events = []
    a = train(TrainConfig(**cfg), progress=events.append)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is as it was
    torch.manual_seed(2)
    assert train(TrainConfig(**cfg)).losses == a.losses  # and plays no part
    assert [type(e).__name__ for e in events] == ["TrainingStarted"] + ["StepDone"] * 4 + ["TrainingStopped"]
