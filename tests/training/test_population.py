"""Population training: every member trains to the result of its own solo training.

Differential tests: ``train_population`` against ``train`` of each member's settings, loss by loss
over 20 steps (float64: to 1e-10 relative; float32: within a stated tolerance), on every built-in
cell, on random cells, with dropout, with carried state, with a diverging member; the batched
layer against the reference interpreter run member by member; checkpoints resume bit for bit.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.compile.population import population_forward as population_layer
from cellsearch.compile.cell import CompiledCell
from cellsearch.errors import ConfigError
from cellsearch.library import builtin_names, get_cell
from cellsearch.training.population import Member, PopulationTrainer, members_product, train_population
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import train
from tests.support.generators import cells
from tests.support.hostile import cli, refused
from tests.support.paths import SHARED
from tests.support.population import FLOAT32_RTOL, FLOAT64_RTOL, SMALL, assert_members_match_solo


# (the attention decoders need an encoder: nn/test_seq2seq.py checks their populations; ntm is a language model)
@pytest.mark.slow
@pytest.mark.parametrize("name", [*builtin_names(memory=False), "ntm"])
def test_every_builtin_cell_float64(name, float64):
    cfg = TrainConfig(cell=name, **SMALL)
    assert_members_match_solo(cfg, [Member(seed=0), Member(seed=1, lr=5e-3), Member(seed=2, clip=0.1,
                                                                                  init_scale=0.5)], FLOAT64_RTOL)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=cells(static=False, max_nodes=8), seed=st.integers(0, 3))
def test_random_cells_float64(graph, seed):
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        cfg = TrainConfig(cell="lstm", **{**SMALL, "steps": 8})
        assert_members_match_solo(cfg, [Member(seed=seed), Member(seed=seed + 1, lr=1e-2)], FLOAT64_RTOL,
                                  graph=graph)
    finally:
        torch.set_default_dtype(before)


def test_dropout_and_layers_float64(float64):
    """Each member draws its dropout masks from its own generator, in its solo order."""
    cfg = TrainConfig(cell="gru", **{**SMALL, "dropout": 0.3, "num_layers": 2})
    assert_members_match_solo(cfg, [Member(seed=0), Member(seed=1), Member(seed=5, weight_decay=1e-3)],
                              FLOAT64_RTOL)


def test_carried_state_float64(float64):
    """XML streams carry the hidden state across batches (truncated BPTT), as PTB does."""
    cfg = TrainConfig(cell="lstm", **{**SMALL, "task": "xml", "task_options": {"eval_chars": 400, "bptt": 12}})
    assert_members_match_solo(cfg, [Member(seed=0), Member(seed=1, lr=1e-2)], FLOAT64_RTOL)


PTB = SHARED / "data" / "ptb"


@pytest.mark.skipif(not (PTB / "ptb.train.txt").is_file(), reason="needs ../shared/data/ptb")
def test_ptb_stream_float64(float64):
    cfg = TrainConfig(cell="gru", **{**SMALL, "task": "ptb", "data_dir": str(PTB), "steps": 6,
                                     "task_options": {"bptt": 10, "eval_tokens": 300}})
    assert_members_match_solo(cfg, [Member(seed=0, lr=1e-3), Member(seed=0, lr=3e-3)], FLOAT64_RTOL)


def test_a_diverging_member_is_frozen_and_the_others_go_on(float64):
    cfg = TrainConfig(cell="tanh", **{**SMALL, "optimizer": "sgd", "clip": None, "diverge_factor": 3.0})
    members = [Member(seed=0, lr=0.05), Member(seed=1, lr=500.0), Member(seed=2, lr=0.1)]
    results = assert_members_match_solo(cfg, members, FLOAT64_RTOL)
    assert [r.status for r in results] == ["ok", "diverged", "ok"]
    assert results[1].steps < cfg.steps and results[0].steps == results[2].steps == cfg.steps


def test_float32_within_tolerance():
    cfg = TrainConfig(cell="lstm", **{**SMALL, "hidden_size": 32})
    assert_members_match_solo(cfg, [Member(seed=0), Member(seed=1, lr=3e-3)], FLOAT32_RTOL)


def test_one_member_equals_train(float64):
    cfg = TrainConfig(cell="gru", **SMALL)
    assert_members_match_solo(cfg, [Member(seed=3)], 0.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=cells(), K=st.integers(1, 3), T=st.integers(1, 4), seed=st.integers(0, 3))
def test_batched_layer_matches_the_interpreter_member_by_member(graph, K, T, seed):
    """The compiled population layer against the reference interpreter, one member at a time
    (outputs, final states, gradients of inputs and of every parameter; float64)."""
    torch.manual_seed(seed)
    size, B = 4, 2
    if graph.static:
        return  # a population's layers read only per-step inputs (SeqModel's cells)
    compiled = [CompiledCell(graph, size, size).double() for _ in range(K)]
    oracle = [InterpretedCell(graph, size, size, params=c.params) for c in compiled]
    xs = [torch.randn(T, B, size, dtype=torch.float64, requires_grad=True) for _ in range(K)]
    states = [tuple(torch.randn(B, size, dtype=torch.float64) * 0.5 for _ in graph.states) for _ in range(K)]

    def run(layer_cells):
        for x in xs:
            x.grad = None
        for c in compiled:
            c.zero_grad(set_to_none=True)
        results = population_layer(layer_cells, [x if len(graph.inputs) == 1 else (x,) for x in xs], states)
        total = sum((out.tanh() * 1.3).sum() + sum((s * s).sum() for s in fin) for out, fin in results)
        if total.requires_grad:  # (a cell may read neither its input nor any parameter)
            total.backward()
        grads = [[None if p.grad is None else p.grad.clone() for p in c.parameters()] for c in compiled]
        return ([(out.detach(), [s.detach() for s in fin]) for out, fin in results],
                [None if x.grad is None else x.grad.clone() for x in xs], grads)

    got, want = run(compiled), run(oracle)
    for (o1, f1), (o2, f2) in zip(got[0], want[0]):
        torch.testing.assert_close(o1, o2, rtol=1e-7, atol=1e-9)
        for a, b in zip(f1, f2):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    for a, b in zip(got[1], want[1]):
        assert (a is None) == (b is None) or (a is None and b.abs().max() == 0) or (b is None and a.abs().max() == 0)
        if a is not None and b is not None:
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    for member_a, member_b in zip(got[2], want[2]):
        for a, b in zip(member_a, member_b):
            if a is not None and b is not None:
                torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_checkpoint_resumes_bit_for_bit(tmp_path):
    cfg = TrainConfig(cell="lstm", **{**SMALL, "dropout": 0.2})
    members = [Member(seed=0), Member(seed=1, lr=3e-3)]
    straight = train_population(cfg, members)
    first = PopulationTrainer(TrainConfig(cell="lstm", **{**SMALL, "dropout": 0.2, "steps": 9}), members)
    first.run(out_dir=tmp_path)
    resumed = PopulationTrainer.from_checkpoint(tmp_path / "checkpoint.pt", steps=20).run()
    for a, b in zip(straight, resumed):
        assert a.losses == b.losses
        assert a.metrics == b.metrics


def test_members_product_varies_seeds_fastest():
    members = members_product(seed=[0, 1], lr=[1e-3, 3e-3])
    assert [(m.seed, m.lr) for m in members] == [(0, 1e-3), (1, 1e-3), (0, 3e-3), (1, 3e-3)]
    assert members_product(seed=[4], lr=None) == [Member(seed=4)]
    with pytest.raises(ConfigError, match="no field"):
        members_product(hidden=[1])


def test_members_share_a_fixed_corpus_task_but_not_a_seeded_one():
    population = PopulationTrainer(TrainConfig(cell="tanh", **SMALL), [Member(seed=0), Member(seed=1)])
    first, second = (t.task for t in population.trainers)
    assert first is not second and first.split("valid") != second.split("valid")


# ---------------------------------------------------------------------------- command line
def test_cli_train_seeds_lrs_json(tmp_path):
    r = cli("train", "tanh", "--task", "arith", "--hidden", "8", "--batch-size", "4", "--steps", "3",
            "--seeds", "0,1", "--lrs", "1e-3,3e-3", "-t", "eval_examples=16", "--json", "--out", str(tmp_path / "p"))
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["member"] for row in rows] == [{"seed": 0, "lr": 1e-3}, {"seed": 1, "lr": 1e-3},
                                               {"seed": 0, "lr": 3e-3}, {"seed": 1, "lr": 3e-3}]
    for row in rows:
        assert {"task", "cell", "hash", "params", "steps", "seconds", "status", "metrics", "checkpoint"} <= set(row)
        assert row["steps"] == 3 and row["status"] == "ok"
    assert json.loads((tmp_path / "p" / "metrics.json").read_text()) == rows
    again = cli("train", "tanh", "--resume", str(tmp_path / "p"), "--steps", "5", "--json", "-t", "eval_examples=16")
    assert again.exit_code == 0, again.stderr
    assert [row["steps"] for row in json.loads(again.stdout)] == [5, 5, 5, 5]


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0,x"], "--seeds"),
    (["--lrs", "1e-3,-1"], "lr must be a positive number"),
    (["--seeds", ",".join(str(i) for i in range(40)), "--lrs", ",".join(["1e-3"] * 30)], "population size"),
    (["--seeds", ""], "--seeds"),
])
def test_cli_bad_population_options(tmp_path, args, message):
    refused("train", "tanh", "--steps", "2", "--out", str(tmp_path / "x"), *args, says=message)
    assert not (tmp_path / "x").exists()


def test_a_population_checkpoint_is_not_a_model(tmp_path):
    r = cli("train", "tanh", "--hidden", "8", "--batch-size", "4", "--steps", "2", "--seeds", "0,1",
            "-t", "eval_examples=8", "--out", str(tmp_path / "p"), "--json")
    assert r.exit_code == 0, r.stderr
    refused("generate", str(tmp_path / "p"), says="population of 2 members")


# ---------------------------------------------------------------------------- a search's candidates
def candidate_config(**extra):
    from cellsearch.library import get_cell
    from cellsearch.runner.trial import trial_spec
    from cellsearch.spaces.base import Candidate
    from cellsearch.strategies.base import Stage

    return trial_spec(Candidate(get_cell("gru")), [Stage("arith", **extra.pop("stage", {}))], steps=4,
                      train={"hidden_size": 8, "batch_size": 4, "lr": 5e-3, "device": "cpu"},
                      task_options={"arith": {"eval_examples": 16}}, seed=3, **extra)


def test_a_candidate_with_one_setting_and_seed_scores_its_solo_training():
    from cellsearch.runner.trial import evaluate_candidate

    out = evaluate_candidate(candidate_config())
    solo = train(TrainConfig(cell="gru", task="arith", hidden_size=8, batch_size=4, lr=5e-3, steps=4, seed=3,
                             device="cpu", task_options={"eval_examples": 16}))
    assert out.status == "ok" and out.score == solo.metrics["char_accuracy"]


def test_a_candidates_seeds_and_settings_train_as_one_population():
    from cellsearch.runner.trial import evaluate_candidate

    out = evaluate_candidate(candidate_config(seeds=3, stage={"settings": 2}))
    assert out.status == "ok", out.error
    m = out.metrics["arith"]
    assert m["seeds"] == 3 and m["std"] >= 0 and out.score == m["char_accuracy"]
    # setting 0's seeds are 3, 5, 7 (seed + k + K·j); its score is their mean
    solos = [train(TrainConfig(cell="gru", task="arith", hidden_size=8, batch_size=4, lr=5e-3, steps=4, seed=s,
                               device="cpu", task_options={"eval_examples": 16})).metrics["char_accuracy"]
             for s in (3, 5, 7)]
    if m["hyperparameters"] == "defaults":
        assert m["char_accuracy"] == pytest.approx(sum(solos) / 3, rel=1e-4)


def test_a_candidate_reports_once_per_evaluation_however_many_members_it_trains():
    # the early-stopping scheduler's rungs count reports: 4 per run for one member or for six
    from cellsearch.runner.trial import evaluate_candidate

    for extra in ({}, {"seeds": 3, "stage": {"settings": 2}}):
        reports = []
        out = evaluate_candidate(candidate_config(**extra), report=reports.append)
        assert out.status == "ok", out.error
        assert len(reports) == 4 and all(r.status == "stopped-early" for r in reports)
        scores = [r.score for r in reports]
        assert scores == sorted(scores)  # the best so far
    # the reports follow the final score's rule (best setting's mean over its seeds), as a best so far
    assert reports[-1].score >= out.score - 1e-12


def test_search_seeds_option_end_to_end(tmp_path):
    r = cli("search", "--space", "mutation", "--strategy", "random", "--trials", "2", "--budget", "3",
            "--seeds", "2", "--backend", "local", "--hidden", "8", "--runs", str(tmp_path), "--name", "s",
            "--no-progress")
    assert r.exit_code == 0, r.stderr
    board = cli("leaderboard", str(tmp_path / "s"), "--json")
    rows = [row for row in json.loads(board.stdout) if row["status"] == "ok"]
    assert rows and all(row["metrics"]["arith"]["seeds"] >= 1 for row in rows)
    assert " ± " in cli("leaderboard", str(tmp_path / "s")).stdout
    refused("search", "--seeds", "0", "--runs", str(tmp_path), "--name", "bad", says="--seeds")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------- other users of populations
def test_shape_groups_gather_settings_that_differ_only_in_member_fields():
    from cellsearch.training.population import shape_groups

    a = {"cell": "gru", "hidden_size": 8, "seed": 0, "lr": 1e-3, "task_options": {"x": 1}}
    settings = [a, {**a, "seed": 1}, {**a, "hidden_size": 16}, {**a, "lr": 3e-3, "clip": 1.0},
                {**a, "task_options": {"x": 2}}]
    assert shape_groups(settings) == [[0, 1, 3], [2], [4]]


def test_reproduce_trains_each_cells_seeds_as_one_population_with_solo_results(tmp_path):
    from cellsearch.reproduce import BUDGETS, reproduce_jozefowicz

    runs, _ = reproduce_jozefowicz("smoke", seeds=2, out_dir=tmp_path, workers=1, cells=("tanh", "gru"),
                                   tasks=("arith",))
    assert len(runs) == 4
    for row in runs.to_dict("records"):
        solo = train(TrainConfig(cell=row["cell"], task="arith", seed=row["seed"], threads=1,
                                 **BUDGETS["smoke"]["arith"]))
        assert row["status"] == solo.status
        assert row["char_accuracy"] == pytest.approx(solo.metrics["char_accuracy"], abs=1e-6)


def test_above_the_cpu_size_limit_members_run_one_by_one_with_the_same_results(monkeypatch, float64):
    import cellsearch.compile.population as compiled_population

    monkeypatch.setattr(compiled_population, "CPU_BATCH_MAX_HIDDEN", 4)
    assert not compiled_population.can_batch([CompiledCell(get_cell("gru"), 8, 8) for _ in range(2)])
    assert compiled_population.can_batch([CompiledCell(get_cell("gru"), 8, 4) for _ in range(2)])
    assert_members_match_solo(TrainConfig(cell="gru", **SMALL), [Member(seed=0), Member(seed=1, lr=1e-2)], 0.0)
