"""Sequence-level objectives: the reward, MIXER's schedule, REINFORCE's loss against a teacher-forced
recomputation, training from the CLI, resuming, and bad options."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.errors import ConfigError
from cellsearch.library import get_cell
from cellsearch.nn.model import ModelConfig, SeqModel
from cellsearch.objectives import Baseline, edit_distance, sequence_loss, sequence_reward, teacher_forced_prefix
from cellsearch.tasks import make_task
from cellsearch.train import TrainConfig, Trainer

tokens = st.lists(st.integers(0, 3), max_size=8)


@given(a=tokens, b=tokens, c=tokens)
def test_edit_distance_is_a_metric(a, b, c):
    assert edit_distance(a, a) == 0
    assert edit_distance(a, b) == edit_distance(b, a)
    assert edit_distance(a, c) <= edit_distance(a, b) + edit_distance(b, c)
    assert abs(len(a) - len(b)) <= edit_distance(a, b) <= max(len(a), len(b))


def test_reward_is_one_for_an_exact_answer_and_falls_with_errors():
    assert sequence_reward([1, 2, 3], [1, 2, 3]) == 1.0
    assert sequence_reward([1, 2], [1, 2, 3]) == pytest.approx(2 / 3)
    assert sequence_reward([], [1, 2]) == 0.0
    assert sequence_reward([], []) == 1.0
    assert sequence_reward([1, 2], [1, 2, 3], "exact") == 0.0 and sequence_reward([1], [1], "exact") == 1.0


def test_mixer_schedule_anneals_from_teacher_forcing_to_reinforce():
    prefix = [teacher_forced_prefix("mixer", s, 6, xent_steps=10, every=5, delta=2) for s in range(0, 40, 5)]
    assert prefix == [6, 6, 4, 2, 0, 0, 0, 0]
    assert teacher_forced_prefix("xent", 99, 6, 10, 5, 2) == 6 and teacher_forced_prefix("reinforce", 0, 6, 10, 5, 2) == 0


def _setup(seed=0):
    torch.manual_seed(seed)
    task = make_task("reverse", seed=0, max_length=4)
    task.use_layout("seq2seq")
    model = SeqModel(get_cell("attn-gru"), ModelConfig(vocab_size=len(task.vocab), hidden_size=8, encoder="gru"))
    batch = task.encode([("abc=", "cba"), ("ab=", "ba"), ("dcba=", "abcd")])
    return task, model.double(), batch


def test_full_prefix_is_teacher_forcing():
    task, model, batch = _setup()
    loss, recorded, info = sequence_loss(model, batch, model.start(batch), batch.targets.shape[0], Baseline(),
                                         task.vocab.eos)
    logits, _ = model(batch.inputs, model.start(batch))
    nll, n = task.masked_nll(logits, batch.targets, batch.mask)
    assert info["reward"] is None
    torch.testing.assert_close(loss, nll / n)


@pytest.mark.parametrize("prefix", [0, 2])
def test_reinforce_term_is_the_advantage_times_the_log_probability_of_the_sampled_answer(prefix):
    """The log-probabilities summed while sampling step by step equal those of the same tokens
    teacher-forced in one pass, and the loss is xent(prefix) - mean(advantage · log p)."""
    task, model, batch = _setup()
    eos = task.vocab.eos
    baseline = Baseline(value=0.25)
    gen = torch.Generator().manual_seed(3)
    loss, _, info = sequence_loss(model, batch, model.start(batch), prefix, baseline, eos, gen)
    targets = batch.targets.t().tolist()
    xent = torch.zeros((), dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    if prefix:
        logits, _ = model(batch.inputs[:prefix], model.start(batch))
        m = batch.mask[:prefix]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.targets[:prefix].reshape(-1),
                                                reduction="none").view_as(m)
        xent = (nll * m).sum() / m.sum()
    for b, reward in zip(info["sampled"], info["rewards"]):
        ref = targets[b][:prefix]
        gen_b = info["generated"][b]
        gen_b = gen_b[:gen_b.index(eos) + 1] if eos in gen_b else gen_b
        seq = [task.vocab.bos, *ref, *gen_b]
        one = task.encode([("abc=", "cba"), ("ab=", "ba"), ("dcba=", "abcd")])
        state = model.select_state(model.start(one), torch.tensor([b]))
        logits, _ = model(torch.tensor(seq[:-1])[:, None], state)
        logp = torch.log_softmax(logits[:, 0], -1)[torch.arange(len(seq) - 1), torch.tensor(seq[1:])]
        total = total + (reward - 0.25) * logp[prefix:].sum()
        torch.testing.assert_close(info["log_prob"][b], logp[prefix:].sum())
    torch.testing.assert_close(loss, xent - total / len(info["sampled"]))
    assert baseline.value != 0.25  # the baseline moved towards the batch's rewards


def test_reinforce_training_resumes_bit_for_bit(tmp_path):
    def cfg(steps):
        return TrainConfig(cell="attn-gru", task="reverse", task_options={"max_length": 3, "eval_examples": 16},
                           hidden_size=8, steps=steps, objective="mixer", mixer_xent_steps=2, mixer_every=2)

    whole = Trainer(cfg(6))
    whole.run()
    first = Trainer(cfg(3))
    first.run(out_dir=tmp_path)
    resumed = Trainer.from_checkpoint(tmp_path / "checkpoint.pt", steps=6)
    resumed.run()
    assert resumed.losses == whole.losses
    assert resumed.baseline.value == whole.baseline.value


def test_cli_objectives_and_their_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "attn-gru", "--task", "reverse", "--steps", "3", "--hidden", "8", "--json",
                              "--objective", "reinforce", "--out", str(tmp_path / "r"), "-t", "eval_examples=16"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["status"] == "ok"
    for args, message in ((["gru", "--objective", "mixer"], "trains an encoder-decoder model"),
                          (["attn-gru", "--objective", "ppo"], "objective must be one of xent, reinforce, mixer"),
                          (["attn-gru", "--objective", "mixer", "--mixer-every", "0"], "mixer_every and mixer_delta"),
                          (["attn-gru", "--objective", "reinforce", "--reward", "bleu"], "reward must be one of edit, exact")):
        res = runner.invoke(app, ["train", *args, "--task", "reverse", "--steps", "1", "--out", str(tmp_path / "x")])
        assert res.exit_code == 2, res.output
        assert message in res.output and len(res.output.strip().splitlines()) == 1


def test_a_language_model_cannot_take_a_sequence_objective():
    with pytest.raises(ConfigError, match="encoder-decoder"):
        Trainer(TrainConfig(cell="gru", task="reverse", steps=1, objective="reinforce"))
