"""The digits task: the fixed split, the pixel-by-pixel layout, bits per pixel, the class condition
(a static input every step reads), training from the command line, and bad options."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("sklearn")

from cellsearch.cli import app  # noqa: E402
from cellsearch.dsl.io import loads_cell  # noqa: E402
from cellsearch.errors import ConfigError  # noqa: E402
from cellsearch.nn.model import Conditioned, ModelConfig, SeqModel  # noqa: E402
from cellsearch.tasks import make_task, primary_metric  # noqa: E402
from cellsearch.tasks import digits as digits_module  # noqa: E402
from cellsearch.training.config import TrainConfig  # noqa: E402
from cellsearch.training.saved_model import load_model  # noqa: E402
from cellsearch.training.trainer import Trainer  # noqa: E402

runner = CliRunner()

STATIC_CELL = """
name: conditioned-tanh
inputs: [x]
static: [cond]
states: [h]
nodes:
  h: tanh(linear(x, h_prev, cond))
"""


def test_the_split_is_fixed_disjoint_and_covers_all_images():
    splits = digits_module.digit_splits()
    assert {k: len(v[1]) for k, v in splits.items()} == {"train": 1297, "valid": 250, "test": 250}
    rows = {k: {tuple(p.tolist()) + (int(c),) for p, c in zip(*v)} for k, v in splits.items()}
    assert not rows["valid"] & rows["test"]
    for pixels, classes in splits.values():
        assert pixels.shape[1] == 64 and pixels.dtype == torch.long
        assert 0 <= int(pixels.min()) and int(pixels.max()) <= 16
        assert set(classes.tolist()) == set(range(10))
    # the same images for every seed of the task (the split does not depend on it)
    a, b = make_task("digits", seed=0), make_task("digits", seed=5)
    assert torch.equal(a.data["test"][0], b.data["test"][0])


def test_an_image_is_read_row_by_row_and_every_pixel_is_scored():
    task = make_task("digits")
    pixels, classes = task.data["train"]
    batch = task.batch(pixels[:3], classes[:3])
    first = [task.vocab.itos[i] for i in batch.targets[:, 0].tolist()]
    assert first == [str(v) for v in pixels[0].tolist()]
    assert batch.inputs[0].tolist() == [task.vocab.bos] * 3
    assert torch.equal(batch.inputs[1:], batch.targets[:-1])
    assert batch.mask.all() and batch.inputs.shape == (64, 3)
    assert batch.condition is None
    conditional = make_task("digits", conditional=True)
    assert conditional.batch(pixels[:3], classes[:3]).condition.tolist() == classes[:3].tolist()
    assert conditional.condition_classes == 10 and task.condition_classes == 0


def test_bits_per_pixel_of_an_untrained_model_and_the_primary_metric():
    task = make_task("digits")
    model = SeqModel("lstm", ModelConfig(vocab_size=len(task.vocab), hidden_size=16))
    with torch.no_grad():  # a head of zeros: every token equally likely
        model.head.weight.zero_()
        model.head.bias.zero_()
    metrics = task.evaluate(model, "test")
    assert primary_metric("digits") == "pixel_prob"
    assert metrics["bits_per_pixel"] == pytest.approx(math.log2(len(task.vocab)), rel=1e-5)
    assert metrics["pixel_prob"] == pytest.approx(2 ** -metrics["bits_per_pixel"])


def test_the_stream_resumes_exactly():
    task = make_task("digits", conditional=True)
    stream = task.train_stream(4, seed=3)
    next(stream)
    saved = stream.state_dict()
    a = next(stream)
    again = task.train_stream(4, seed=99)
    again.load_state_dict(saved)
    b = next(again)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.condition, b.condition)


@pytest.mark.parametrize("cell", ["lstm", STATIC_CELL])
def test_the_class_enters_every_step(cell):
    graph = loads_cell(cell) if "\n" in cell else cell
    model = SeqModel(graph, ModelConfig(vocab_size=18, hidden_size=8, condition_classes=10))
    model.reset_parameters(1.0, torch.Generator().manual_seed(0))
    tokens = torch.zeros(5, 2, dtype=torch.long)
    a, state = model(tokens, model.condition(torch.tensor([1, 1])))
    b, _ = model(tokens, model.condition(torch.tensor([1, 7])))
    assert isinstance(state, Conditioned) and state.classes.tolist() == [1, 1]
    assert torch.equal(a[:, 0], b[:, 0])
    assert all(not torch.allclose(a[t, 1], b[t, 1]) for t in range(5))  # the first step and every later one
    # stepping one token at a time from the carried state gives the whole sequence's logits
    step_state = model.condition(torch.tensor([1, 7]))
    stepped = []
    for t in range(5):
        logits, step_state = model.step(tokens[t], step_state)
        stepped.append(logits)
    assert torch.allclose(torch.stack(stepped), b, atol=1e-6)


def test_conditioned_model_refusals():
    with pytest.raises(ConfigError, match="static inputs"):
        SeqModel(loads_cell(STATIC_CELL), ModelConfig(vocab_size=18, hidden_size=8))
    model = SeqModel("lstm", ModelConfig(vocab_size=18, hidden_size=8, condition_classes=10))
    with pytest.raises(ConfigError, match="class ids in 0..9"):
        model.condition(torch.tensor([10]))
    with pytest.raises(ConfigError, match="reads from model.start"):
        model(torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ConfigError, match="not an encoder-decoder"):
        SeqModel("attn-gru", ModelConfig(vocab_size=18, hidden_size=8, encoder="gru", condition_classes=10))


def test_conditional_training_learns_and_its_checkpoint_keeps_the_condition(tmp_path):
    cfg = TrainConfig(cell="gru", task="digits", task_options={"conditional": True}, steps=40, hidden_size=32,
                      batch_size=32, lr=1e-2, threads=1)
    trainer = Trainer(cfg)
    result = trainer.run(out_dir=tmp_path / "run")
    assert result.status == "ok"
    assert result.metrics["bits_per_pixel"] < 3.0 < math.log2(18)  # below uniform over the vocabulary
    model, vocab, ckpt = load_model(tmp_path / "run" / "checkpoint.pt")
    assert model.is_conditioned and ckpt["task"]["conditional"] is True
    images = trainer.task.sample_images(model, 3, torch.tensor([0, 1, 2]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 8, 8) and 0 <= int(images.min()) and int(images.max()) <= 16
    assert trainer.task.evaluate(model, "test")["bits_per_pixel"] == pytest.approx(
        Trainer(cfg).task.evaluate(model, "test")["bits_per_pixel"])


def test_train_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "lstm", "--task", "digits", "-t", "conditional=true", "--steps", "3",
                              "--hidden", "16", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout.strip().splitlines()[-1])
    assert record["task"] == "digits" and set(record["metrics"]) == {"pixel_prob", "bits_per_pixel", "loss"}


@pytest.mark.slow
def test_the_issue_command_runs_exactly_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "lstm", "--task", "digits", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["metrics"]["bits_per_pixel"] < 2.5


@pytest.mark.parametrize("args, message", [
    (["-t", "conditional=maybe"], "bad option for task 'digits': conditional must be true or false, not 'maybe'"),
    (["-t", "classes=3"], "bad option for task 'digits': it has no option 'classes'"),
    (["--encoder", "gru"], "task digits has no seq2seq layout"),
])
def test_bad_options_are_one_line(args, message):
    res = runner.invoke(app, ["train", "lstm", "--task", "digits", "--steps", "1", *args])
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_without_scikit_learn_one_line_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    digits_module.digit_splits.cache_clear()
    try:
        with pytest.raises(ConfigError, match="pip install scikit-learn"):
            make_task("digits")
    finally:
        digits_module.digit_splits.cache_clear()


def test_a_conditional_training_resumes_exactly(tmp_path):
    cfg = TrainConfig(cell="lstm", task="digits", task_options={"conditional": True}, steps=6, hidden_size=16,
                      batch_size=8, threads=1)
    straight = Trainer(cfg).run()
    first = Trainer(TrainConfig(**{**cfg.__dict__, "steps": 3})).run(out_dir=tmp_path / "run")
    assert first.steps == 3
    resumed = Trainer.from_checkpoint(tmp_path / "run" / "checkpoint.pt", steps=6).run()
    assert resumed.losses == straight.losses
    assert resumed.metrics == straight.metrics


def test_a_conditional_population_member_trains_as_alone():
    from cellsearch.training.population import Member, PopulationTrainer

    cfg = TrainConfig(cell="gru", task="digits", task_options={"conditional": True}, steps=4, hidden_size=8,
                      batch_size=8, threads=1)
    together = PopulationTrainer(cfg, [Member(seed=0), Member(seed=1)]).run()
    alone = Trainer(TrainConfig(**{**cfg.__dict__, "seed": 1})).run()
    assert together[1].losses == alone.losses and together[1].metrics == alone.metrics
