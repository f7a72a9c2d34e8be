"""The digits-caption task: an image's pixels as the prompt, the digit's name as the answer, the
held-out splits, the seq2seq layout an attending decoder trains on, and its metrics."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("sklearn")

from cellsearch.cli import app  # noqa: E402
from cellsearch.tasks import make_task  # noqa: E402
from cellsearch.tasks.digits import NAMES, digit_splits  # noqa: E402
from cellsearch.tasks.digits_caption import image_text  # noqa: E402
from cellsearch.training.config import TrainConfig  # noqa: E402
from cellsearch.training.trainer import Trainer  # noqa: E402

runner = CliRunner()


def test_an_example_is_the_image_row_by_row_and_the_name():
    task = make_task("digits-caption")
    pixels, classes = digit_splits()["test"]
    prompt, answer = task.split("test")[0]
    assert prompt == image_text(pixels[0]) and len(prompt) == 64
    assert prompt[8 * 2 + 3] == "ABCDEFGHIJKLMNOPQ"[int(pixels[0].reshape(8, 8)[2, 3])]
    assert answer == NAMES[int(classes[0])]
    assert len(task.split("valid")) == 250 and len(make_task("digits-caption", eval_examples=7).split("test")) == 7
    with pytest.raises(ValueError):
        task.split("train")


def test_the_seq2seq_layout_puts_the_pixels_in_the_memory():
    task = make_task("digits-caption")
    task.use_layout("seq2seq")
    batch = task.encode(task.split("valid")[:2])
    assert batch.source.shape == (64, 2) and batch.source_mask.all()
    v = task.vocab
    name = task.split("valid")[0][1]
    assert batch.targets[: len(name) + 1, 0].tolist() == [*v.encode(name), v.eos]


def test_attention_training_learns_to_name_digits():
    cfg = TrainConfig(cell="attn-gru", task="digits-caption", steps=60, hidden_size=32, batch_size=32, lr=1e-2,
                      threads=1)
    trainer = Trainer(cfg)
    result = trainer.run()
    assert result.status == "ok" and trainer.model.is_seq2seq
    assert set(result.metrics) == {"accuracy", "exact_match", "loss", "bpc"}
    assert result.metrics["accuracy"] > 0.5  # (the untrained model: about 1/35 a character)


def test_the_issue_command_with_a_small_budget(tmp_path):
    res = runner.invoke(app, ["train", "attn-gru", "--task", "digits-caption", "--json", "--steps", "2",
                              "--hidden", "16", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["task"] == "digits-caption"


@pytest.mark.slow
def test_the_issue_command_runs_exactly_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "attn-gru", "--task", "digits-caption", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["metrics"]["exact_match"] > 0.5


def test_bad_option_is_one_line():
    res = runner.invoke(app, ["train", "attn-gru", "--task", "digits-caption", "-t", "eval_examples=0"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "eval_examples" in res.stderr
