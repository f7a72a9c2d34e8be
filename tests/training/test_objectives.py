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
from cellsearch.training.objectives import Baseline, edit_distance, sampled_tail, sequence_loss, sequence_reward
from cellsearch.tasks import make_task
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import Trainer

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
    tails = [sampled_tail("mixer", s, xent_steps=10, every=5, delta=2) for s in range(0, 40, 5)]
    assert tails == [0, 0, 2, 4, 6, 8, 10, 12]
    assert sampled_tail("xent", 99, 10, 5, 2) == 0 and sampled_tail("reinforce", 0, 10, 5, 2) is None


def _setup(seed=0):
    torch.manual_seed(seed)
    task = make_task("reverse", seed=0, max_length=4)
    task.use_layout("seq2seq")
    model = SeqModel(get_cell("attn-gru"), ModelConfig(vocab_size=len(task.vocab), hidden_size=8, encoder="gru"))
    batch = task.encode([("abc=", "cba"), ("ab=", "ba"), ("dcba=", "abcd")])
    return task, model.double(), batch


def test_no_tail_is_teacher_forcing():
    task, model, batch = _setup()
    loss, recorded, info = sequence_loss(model, batch, model.start(batch), 0, Baseline(), task.vocab.eos)
    logits, _ = model(batch.inputs, model.start(batch))
    nll, n = task.masked_nll(logits, batch.targets, batch.mask)
    assert info["reward"] is None
    torch.testing.assert_close(loss, nll / n)


@pytest.mark.parametrize("tail", [None, 1, 2, 4])
def test_reinforce_term_is_the_advantage_times_the_log_probability_of_the_sampled_answer(tail):
    """Each answer's last ``tail`` tokens sampled (per sequence: the answers have 3, 2 and 4 tokens
    plus their end), the rest teacher-forced: the log-probabilities summed while sampling step by
    step equal those of the same tokens teacher-forced in one pass, and the loss is the xent of
    the forced tokens - mean(advantage · log p)."""
    task, model, batch = _setup()
    eos = task.vocab.eos
    baseline = Baseline(value=0.25)
    gen = torch.Generator().manual_seed(3)
    loss, _, info = sequence_loss(model, batch, model.start(batch), tail, baseline, eos, gen)
    lengths = batch.mask.sum(0).tolist()
    prefix = [0 if tail is None else max(0, n - tail) for n in lengths]
    assert info["prefix"] == prefix
    targets = batch.targets.t().tolist()
    nll_sum = torch.zeros((), dtype=torch.float64)
    forced = sum(prefix)
    total = torch.zeros((), dtype=torch.float64)
    rewards = dict(zip(info["sampled"], info["rewards"]))
    for b, p in enumerate(prefix):
        ref = targets[b][:p]
        gen_b = info["generated"][b][p:] if b in rewards else []
        gen_b = gen_b[:gen_b.index(eos) + 1] if eos in gen_b else gen_b
        seq = [task.vocab.bos, *ref, *gen_b]
        state = model.select_state(model.start(batch), torch.tensor([b]))
        logits, _ = model(torch.tensor(seq[:-1])[:, None], state)
        logp = torch.log_softmax(logits[:, 0], -1)[torch.arange(len(seq) - 1), torch.tensor(seq[1:])]
        nll_sum = nll_sum - logp[:p].sum()
        if b in rewards:
            total = total + (rewards[b] - 0.25) * logp[p:].sum()
            torch.testing.assert_close(info["log_prob"][b], logp[p:].sum())
    expected = nll_sum / max(forced, 1) - (total / len(rewards) if rewards else 0)
    torch.testing.assert_close(loss, expected)
    if rewards:
        assert baseline.value != 0.25  # the baseline moved towards the batch's rewards


@pytest.mark.slow
def test_reinforce_training_resumes_bit_for_bit(tmp_path):
    def cfg(steps):
        return TrainConfig(cell="attn-gru", task="reverse", task_options={"max_length": 3, "eval_examples": 16},
                           hidden_size=8, steps=steps, objective="mixer", mixer_xent_steps=2, mixer_every=2,
                           dropout=0.2)  # (dropout and the samples draw from the trainer's one RNG)

    whole = Trainer(cfg(6))
    whole.run()
    first = Trainer(cfg(3))
    first.run(out_dir=tmp_path)
    resumed = Trainer.from_checkpoint(tmp_path / "checkpoint.pt", steps=6)
    resumed.run()
    assert resumed.losses == whole.losses
    assert resumed.baseline.value == whole.baseline.value


@pytest.mark.slow
def test_cli_objectives_and_their_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "attn-gru", "--task", "reverse", "--steps", "3", "--hidden", "8", "--json",
                              "--objective", "reinforce", "--out", str(tmp_path / "r"), "-t", "eval_examples=16"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["status"] == "ok"
    for args, message in ((["gru", "--objective", "mixer"], "trains an encoder-decoder model"),
                          (["attn-gru", "--objective", "ppo"], "objective must be one of xent, reinforce, mixer"),
                          (["attn-gru", "--objective", "mixer", "--mixer-every", "0"], "--mixer-every must be at least 1"),
                          (["attn-gru", "--objective", "reinforce", "--reward", "bleu"], "reward must be one of edit, exact")):
        res = runner.invoke(app, ["train", *args, "--task", "reverse", "--steps", "1", "--out", str(tmp_path / "x")])
        assert res.exit_code == 2, res.output
        assert message in res.output and len(res.output.strip().splitlines()) == 1


def test_a_language_model_cannot_take_a_sequence_objective():
    with pytest.raises(ConfigError, match="encoder-decoder"):
        Trainer(TrainConfig(cell="gru", task="reverse", steps=1, objective="reinforce"))
