"""The memory network's question answering (nn/memory_qa.py): position encoding, the story as
memories, a short training that learns bAbI task 1, and the command line."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.nn.memory_qa import MemoryQAModel, position_encoding
from cellsearch.nn.model import ModelConfig
from cellsearch.tasks.babi import BabiTask
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import Trainer

runner = CliRunner()


def test_position_encoding_is_the_papers():
    d, J = 4, 3
    pe = position_encoding(torch.tensor([J]), 5, d)[0]
    for j in range(1, 6):
        for k in range(1, d + 1):
            want = (1 - j / J) - (k / d) * (1 - 2 * j / J) if j <= J else 0.0
            assert pe[j - 1, k - 1].item() == pytest.approx(want)


def _model(task: BabiTask, hidden: int = 8) -> MemoryQAModel:
    model = MemoryQAModel("memn2n", ModelConfig(vocab_size=len(task.vocab), hidden_size=hidden), slots=50,
                          pad=task.vocab.pad)
    model.reset_parameters(generator=torch.Generator().manual_seed(0))
    return model


def test_the_story_becomes_one_memory_per_hop_and_padding_is_not_attended():
    task = BabiTask(task=1, train_examples=50)
    task.use_layout("qa")
    model = _model(task)
    batch = task.encode(task.train_set[:5])
    state = model.start(batch)
    assert len(state.memories) == 4 and state.memories[0].shape == (*batch.story.shape[:2], 8)
    logits, _ = model(batch.inputs, state)
    assert logits.shape == (1, 5, len(task.vocab))
    weights = model.hop_weights(batch)  # (hops, B, N)
    assert weights.shape == (3, *batch.story.shape[:2])
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    assert (weights[:, ~state.mask] == 0).all()


def test_a_short_training_learns_task_1_far_above_chance():
    cfg = TrainConfig(cell="memn2n", task="babi", task_options={"task": 1}, hidden_size=20, steps=300, lr=0.01,
                      threads=1)
    trainer = Trainer(cfg)
    result = trainer.run()
    assert result.metrics["accuracy"] > 0.6  # six locations: chance is 1/6
    assert result.metrics["error"] == pytest.approx(100 * (1 - result.metrics["accuracy"]))


def test_training_resumes_exactly_from_a_checkpoint(tmp_path):
    cfg = TrainConfig(cell="memn2n", task="babi", task_options={"task": 16, "train_examples": 100}, hidden_size=8,
                      steps=6, threads=1)
    whole = Trainer(cfg).run()
    half = Trainer(TrainConfig(**{**cfg.__dict__, "steps": 3}))
    half.run()
    half.save(tmp_path / "c.pt")
    resumed = Trainer.from_checkpoint(tmp_path / "c.pt", steps=6).run()
    assert resumed.losses == whole.losses


def test_cli_trains_memn2n_on_babi_with_json(tmp_path):
    res = runner.invoke(app, ["train", "memn2n", "--task", "babi", "-t", "task=16", "-t", "train_examples=100",
                              "--steps", "5", "--hidden", "8", "--threads", "1", "--json", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cell"] == "memn2n" and 0 <= out["metrics"]["accuracy"] <= 1 and "error" in out["metrics"]


@pytest.mark.parametrize("args,message", [
    (["-t", "task=4"], "task must be one of 1, 2, 3, 15, 16"),
    (["-t", "train_examples=1000000"], "bAbI training questions"),
    (["--layers", "2"], "answers questions as a memory network"),
    (["--dropout", "0.1"], "answers questions as a memory network"),
    (["--scheduled-sampling", "linear"], "answers questions as a memory network"),
])
def test_cli_bad_input_is_one_line(args, message):
    res = runner.invoke(app, ["train", "memn2n", "--task", "babi", "--steps", "1", "--json", *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and res.stderr.strip().count("\n") == 0


def test_a_population_of_memory_networks_is_refused_in_one_line(tmp_path):
    res = runner.invoke(app, ["train", "memn2n", "--task", "babi", "-t", "train_examples=100", "--seeds", "0,1",
                              "--steps", "1", "--hidden", "8", "--json", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "trains one model at a time" in res.stderr and res.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("cell", ["memn2n", "lstm"])  # the qa layout and the lm one
@pytest.mark.parametrize("task,memory,least", [(15, 5, 8), (16, 8, 9)])
def test_a_memory_shorter_than_the_story_is_refused_at_setup(tmp_path, cell, task, memory, least):
    res = runner.invoke(app, ["train", cell, "--task", "babi", "-t", f"task={task}", "-t", f"memory_size={memory}",
                              "-t", "train_examples=100", "--steps", "1", "--hidden", "8", "--threads", "1", "--json",
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert f"memory_size must be at least {least} for task {task}" in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()  # (before any training)
