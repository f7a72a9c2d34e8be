"""Training that does not throw good cells away (issue 13): the state bound and the activation
penalties (training recipes, ``--recipe``, are in test_recipes.py).

NAS-Bench-NLP recipes whose recurrence runs away (recipes_example_7: a sum of unbounded linear
nodes that multiplies its state by about 1.2 a step; _8: a product of them, squaring it)
diverged within 3 and 5 steps on PTB before; with the default settings they train. The bound
changes nothing for a cell whose outputs stay within it, keeps populations exact, and
checkpoints resume bit for bit. Measurements: docs/results/stability.md.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from cellsearch.dsl.io import loads_cell
from cellsearch.errors import ConfigError
from cellsearch.nn import model as model_module
from cellsearch.nn.model import ModelConfig, SeqModel
from cellsearch.training.population import Member
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import Trainer, train
from tests.support.hostile import cli, refused
from tests.support.paths import SHARED
from tests.support.population import FLOAT64_RTOL, SMALL, assert_members_match_solo

DATA = SHARED / "data"
RECIPES = DATA / "nasbench_nlp" / "recipes_example.json"
PTB = DATA / "ptb"
needs_data = pytest.mark.skipif(not (RECIPES.is_file() and (PTB / "ptb.train.txt").is_file()),
                                reason=f"needs the NAS-Bench-NLP recipes and PTB under {DATA}")
OFF = {"ar": 0.0, "tar": 0.0, "state_limit": None}  # the trainer before issue 13

# recipes_example_7's shape: the new state is a sum of unbounded linear nodes (runs away at init)
RUNAWAY = """
name: runaway
inputs: [x]
states: [h]
output: h
nodes:
  a: linear(h_prev, x)
  b: leaky_relu(a)
  c: linear(b, h_prev)
  h: a + b + c
"""


def bound_resets(monkeypatch) -> list:
    """Count the values the bound sets to 0 (``cellsearch.nn.model._bound`` calls that change something)."""
    seen = [0]
    original = model_module._bound

    def counting(v, limit):
        seen[0] += int((~(v.abs() <= limit)).sum())
        return original(v, limit)

    monkeypatch.setattr(model_module, "_bound", counting)
    return seen


# Steps per recipe in the acceptance test. The criterion is 400 steps, but 10 recipes ×
# 400 steps take about 45 minutes on this project's 2-core machine, so the test trains each
# recipe 12 steps (about 100 s in all on a loaded 2-core machine): the old trainer lost _7 and
# _8 at steps 3 and 5, well inside 12 (the test checks that it still does), and the
# 400-step runs of every recipe with the defaults are in docs/results/stability.md
# (`python benchmarks/stability.py --variants after --cells '' --steps 400`).
ACCEPTANCE_STEPS = 12


@pytest.mark.slow
@needs_data
def test_no_recipe_diverges_at_the_default_ptb_settings(tmp_path):
    """The acceptance test (issue 13), shortened (see ACCEPTANCE_STEPS): every recipe of
    recipes_example.json, imported as a user would, trains under the default `cellsearch train
    --task ptb` without diverging; with the trainer's old settings _7 and _8 diverge in the same steps."""
    from cellsearch.dsl.nasbench import load_recipes

    assert cli("cells", "import", str(RECIPES), "-o", str(tmp_path / "cells")).exit_code == 0
    paths = sorted((tmp_path / "cells").glob("*.yaml"))
    assert len(paths) == len(load_recipes(RECIPES))
    failed = {}
    for path in paths:
        res = cli("train", str(path), "--task", "ptb", "--steps", str(ACCEPTANCE_STEPS), "--data-dir", str(PTB),
                  "-t", "eval_tokens=2000", "--threads", "1", "--out", str(tmp_path / path.stem), "--json",
                  "--no-progress")
        assert res.exit_code == 0, res.stderr
        payload = json.loads(res.stdout)
        if (payload["status"] != "ok" or payload["steps"] != ACCEPTANCE_STEPS
                or payload["metrics"]["perplexity"] is None):
            failed[path.stem] = payload
    assert not failed, failed
    # the test can fail: the old trainer (no penalties, no bound) loses _7 and _8 within these steps
    cells = load_recipes(RECIPES)
    for index in (7, 8):
        old = train(TrainConfig(cell=cells[index].name, task="ptb", data_dir=str(PTB), steps=ACCEPTANCE_STEPS,
                                task_options={"eval_tokens": 2000}, threads=1, **OFF), graph=cells[index])
        assert old.status == "diverged", (index, old.steps)


@pytest.mark.parametrize("option, value, says", [
    ("--ar", "-1", "--ar must be a number >= 0"),
    ("--tar", "nan", "--tar must be a number >= 0"),
    ("--ar", "inf", "--ar must be a number >= 0"),
    ("--state-limit", "-5", "--state-limit must be a positive number"),
    ("--state-limit", "inf", "--state-limit must be a positive number"),
    ("--state-limit", "nan", "--state-limit must be a positive number"),
])
def test_bad_options_are_one_line_refusals(option, value, says):
    refused("train", "lstm", "--steps", "1", option, value, "--no-progress", says=says)


def test_new_settings_are_validated():
    for bad in ({"ar": -0.1}, {"tar": math.inf}, {"state_limit": 0.0}, {"state_limit": -1.0},
                {"state_limit": math.nan}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad).validate()
    with pytest.raises(ConfigError, match="state_limit"):
        TrainConfig.from_dict({"state_limit": "big"}, "settings")
    TrainConfig(ar=0.0, tar=0.0, state_limit=None).validate()  # all off is fine


def test_the_bound_changes_nothing_while_values_stay_within_it():
    """Same weights with and without a limit: bit-identical logits and states (the fused loop runs)."""
    torch.manual_seed(0)
    free = SeqModel("lstm", ModelConfig(vocab_size=11, hidden_size=8, num_layers=2))
    bounded = SeqModel("lstm", ModelConfig(vocab_size=11, hidden_size=8, num_layers=2, state_limit=10.0))
    bounded.load_state_dict(free.state_dict())
    tokens = torch.randint(0, 11, (7, 3))
    a_logits, a_state = free(tokens)
    b_logits, b_state = bounded(tokens, None)
    assert torch.equal(a_logits, b_logits) and all(torch.equal(x, y) for x, y in zip(a_state, b_state))
    a2, _ = free(tokens, a_state)
    b2, _ = bounded(tokens, b_state)
    assert torch.equal(a2, b2)


def test_an_lstm_memory_beyond_the_limit_is_carried_as_it_is():
    """The bound reads the outputs: an LSTM's memory c may exceed the limit (its output
    o·tanh(c) cannot), and is neither reset at the batch boundary nor inside the call."""
    torch.manual_seed(0)
    free = SeqModel("lstm", ModelConfig(vocab_size=11, hidden_size=8))
    bounded = SeqModel("lstm", ModelConfig(vocab_size=11, hidden_size=8, state_limit=2.0))
    bounded.load_state_dict(free.state_dict())
    tokens = torch.randint(0, 11, (5, 3))
    carried = (torch.zeros(1, 3, 8), torch.full((1, 3, 8), 50.0))  # (h, c): c far outside ±2
    a_logits, a_state = free(tokens, carried)
    b_logits, b_state = bounded(tokens, carried)
    assert torch.equal(a_logits, b_logits) and all(torch.equal(x, y) for x, y in zip(a_state, b_state))
    assert b_state[1].abs().max() > 2.0


def test_a_runaway_cell_stays_finite_and_resets_to_zero(monkeypatch):
    graph = loads_cell(RUNAWAY)
    torch.manual_seed(0)
    free = SeqModel(graph, ModelConfig(vocab_size=11, hidden_size=16))
    free.reset_parameters(3.0, torch.Generator().manual_seed(0))  # a gain well above 1
    bounded = SeqModel(graph, ModelConfig(vocab_size=11, hidden_size=16, state_limit=10.0))
    bounded.load_state_dict(free.state_dict())
    tokens = torch.randint(0, 11, (200, 2))
    with torch.no_grad():
        _, runaway = free(tokens)
        resets = bound_resets(monkeypatch)
        logits, state = bounded(tokens)
    assert not torch.isfinite(runaway[0]).all()  # without the bound it overflows
    assert resets[0] > 0 and torch.isfinite(logits).all()
    assert state[0].abs().max() <= 10.0


def test_recorded_loss_is_the_nll_and_the_penalties_change_the_gradient():
    small = dict(cell="gru", task="arith", steps=3, hidden_size=16, batch_size=8,
                 task_options={"max_digits": 2, "eval_examples": 32})
    plain = train(TrainConfig(**small, ar=0.0, tar=0.0))
    penalised = train(TrainConfig(**small, ar=2.0, tar=1.0))
    assert plain.losses[0] == penalised.losses[0]  # same weights, same batch: the same NLL
    assert plain.losses[1:] != penalised.losses[1:]  # the first step's gradient differed


def test_population_with_the_bound_equals_solo_training_float64(float64, monkeypatch):
    """Carried state (XML streams), a cell that leaves the bound, the penalties on: every member
    trains as it trains alone, loss by loss."""
    resets = bound_resets(monkeypatch)
    cfg = TrainConfig(cell="runaway", **{**SMALL, "task": "xml", "hidden_size": 8, "steps": 12,
                                         "task_options": {"eval_chars": 400, "bptt": 12},
                                         "init_scale": 2.5, "state_limit": 3.0, "ar": 2.0, "tar": 1.0})
    results = assert_members_match_solo(cfg, [Member(seed=0), Member(seed=1, lr=1e-2), Member(seed=2, clip=0.1)],
                                        FLOAT64_RTOL, graph=loads_cell(RUNAWAY))
    assert resets[0] > 0  # the bound did reset values, in the population and solo runs alike
    assert all(r.status == "ok" for r in results)


def test_resume_is_exact_while_the_bound_acts(tmp_path, monkeypatch):
    resets = bound_resets(monkeypatch)
    graph = loads_cell(RUNAWAY)
    cfg = TrainConfig(cell="runaway", task="xml", steps=10, checkpoint_every=5, hidden_size=8, batch_size=4,
                      init_scale=2.5, state_limit=3.0, task_options={"eval_chars": 400, "bptt": 12})
    full = Trainer(cfg, graph=graph).run(out_dir=tmp_path / "full")
    assert resets[0] > 0
    resumed = Trainer.from_checkpoint(tmp_path / "full" / "checkpoint-5.pt").run(out_dir=tmp_path / "resumed")
    assert resumed.losses == full.losses and resumed.metrics == full.metrics


def test_a_checkpoint_from_before_resumes_as_it_trained(tmp_path):
    """A checkpoint written before these settings existed lacks them: it resumes without them."""
    cfg = TrainConfig(cell="gru", task="arith", steps=4, checkpoint_every=2, hidden_size=8, batch_size=4,
                      task_options={"max_digits": 2, "eval_examples": 16}, **OFF)
    full = Trainer(cfg).run(out_dir=tmp_path / "full")
    ckpt = torch.load(tmp_path / "full" / "checkpoint-2.pt", weights_only=True)
    for key in OFF:
        del ckpt["config"][key]
    del ckpt["model_config"]["state_limit"]
    torch.save(ckpt, tmp_path / "old.pt")
    resumed = Trainer.from_checkpoint(tmp_path / "old.pt")
    assert (resumed.cfg.ar, resumed.cfg.tar, resumed.cfg.state_limit) == (0.0, 0.0, None)
    assert resumed.run().losses == full.losses


# ---------------------------------------------------------------- the activation penalties

def test_activation_penalty_values():
    """AR: α × mean over positions of the mean square of the dropped outputs; TAR: β × the same of
    the change between consecutive undropped outputs; padded positions count in neither."""
    from cellsearch.training.regularization import activation_penalty

    out = torch.tensor([[[1.0, 3.0]], [[2.0, 5.0]], [[0.0, 0.0]]])  # (T=3, B=1, H=2)
    dropped = 2 * out  # as if dropout doubled the kept values
    mask = torch.tensor([[True], [True], [False]])  # the last position is padding
    ar = (4 * (1 + 9) / 2 + 4 * (4 + 25) / 2) / 2  # mean square of dropped, over the 2 real positions
    tar = ((2 - 1) ** 2 + (5 - 3) ** 2) / 2  # one pair of real positions
    assert activation_penalty(out, dropped, mask, 2.0, 0.0).item() == pytest.approx(2.0 * ar)
    assert activation_penalty(out, dropped, mask, 0.0, 1.0).item() == pytest.approx(tar)
    assert activation_penalty(out, dropped, mask, 2.0, 1.0).item() == pytest.approx(2.0 * ar + tar)


def test_the_bound_check_names_every_tensor_outside_it():
    """One max-abs kernel for many tensors: NaN, ±inf and values past the limit are outside; an
    empty tensor and values on the limit are inside."""
    inside = torch.tensor([[-3.0, 3.0], [0.5, 1.0]])
    cases = [inside, torch.tensor([1.0, float("nan")]), torch.tensor([float("-inf")]), torch.tensor([3.0001]),
             torch.empty(0, 4), inside.double()]
    assert model_module.outside_bounds(cases, 3.0) == [False, True, True, True, False, False]
    assert model_module.outside_bounds([torch.empty(0)], 3.0) == [False]
    assert [model_module.out_of_bounds(v, 3.0) for v in cases] == [False, True, True, True, False, False]
