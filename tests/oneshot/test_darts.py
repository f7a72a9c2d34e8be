"""DARTS from the command line: the relaxed cell (every choice mixed by softmax(α), the supernet's shared
weights) trains the shared weights on training batches and α on validation batches; the most probable
derived cells are scored with the shared weights and the top K recorded as candidates that
``leaderboard``, ``export`` and ``evaluate`` read; an interrupted run resumes exactly; bad inputs are
refused in one line."""

from __future__ import annotations

import math

import pytest
import torch

from cellsearch.oneshot.darts import DARTS, choice_pairs, ranked_choices, relaxed_cell, resume_darts, run_darts
from cellsearch.spaces import load_space
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store
from cellsearch.tasks import make_task
from tests.support.hostile import cli
from tests.support.oneshot import OneShotSuite, finished_run, kill_resume_and_rerun

TINY = ("--space", "dag4", "--tasks", "arith", "--budget", "12", "--trials", "3", "-o", "candidates=6",
        "--hidden", "16", "--backend", "local")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return finished_run("darts", (), tmp_path_factory)  # (the small search TestDARTSSuite reads too)


def _search(n_steps: int = 1, **options) -> DARTS:
    cfg = SearchConfig(space="dag4", tasks=["arith"], steps=n_steps, train={"hidden_size": 8}).resolved()
    tc = cfg.train_config("arith")
    return DARTS(load_space("dag4"), make_task("arith", seed=0, **tc.task_options), tc, 6, seed=0, options=options)


def test_the_architecture_weights_were_trained(run):
    # (the recorded cells themselves: OneShotSuite.test_records_trials_cells_with_one_shot_scores)
    ckpt = torch.load(run / "oneshot.pt", weights_only=True)
    extra = ckpt["extra"]
    assert ckpt["strategy"] == "darts" and len(extra["arch_losses"]) == 12  # one α step per weight step
    assert [a.shape[0] for a in extra["alphas"]] == [3, 3, 6, 9]  # dag4: 3 activations, i predecessors each
    assert all(a.abs().max() > 1e-2 for a in extra["alphas"])  # α moved from its 1e-3 start
    # leaderboard and export on these cells: OneShotSuite.test_leaderboard_and_export_read_the_cells


def test_the_relaxed_cell_binds_every_linear_to_the_supernets_shared_weights():
    search = _search()
    params = search.relaxed.rnn.cells[0].params
    shared = {id(p) for p in search.net.shared.values()}
    for name, p in params.named_parameters():
        assert (id(p) in shared) != name.endswith("__alpha"), name
    graph, bindings = relaxed_cell(load_space("dag4"))
    assert set(bindings.values()) == set(search.net.shared)  # every shared tensor is used
    assert [len(graph.node_map[f"node{i}"].args) for i in range(4)] == [len(choice_pairs(search.dag, i))
                                                                         for i in range(4)]
    assert search.relaxed.embedding.weight is search.net.embedding.weight


def test_a_weight_step_moves_only_the_shared_weights_and_an_alpha_step_only_alpha():
    search = _search(n_steps=1, arch_lr=0.1)
    alphas = [a.detach().clone() for a in search.alphas]
    net = {k: v.detach().clone() for k, v in search.net.state_dict().items()}
    search.after_step()  # an α step alone
    assert all(not torch.equal(a, b) for a, b in zip(alphas, search.alphas))
    assert all(torch.equal(net[k], v) for k, v in search.net.state_dict().items())
    alphas = [a.detach().clone() for a in search.alphas]
    search.train_cell = lambda: (_ for _ in ()).throw(AssertionError("DARTS trains the relaxed cell"))  # type: ignore
    search.after_step = lambda: None  # type: ignore[method-assign]
    search.train()  # a weight step alone
    assert all(torch.equal(a, b) for a, b in zip(alphas, search.alphas))
    assert any(not torch.equal(net[k], v) for k, v in search.net.state_dict().items())


def test_alphas_gradient_is_the_same_without_the_weights_gradients():
    """The α step turns the supernet's weights' gradients off (only α's is computed): α's is unchanged."""
    search = _search(arch_lr=0.1)
    batch = next(search.val_stream)
    model = search.relaxed
    torch.manual_seed(0)  # (the same dropout masks in both)
    logits, _ = model(batch.inputs, model.start(batch))
    model.take_outputs()
    nll, n = search.task.masked_nll(logits, batch.targets, batch.mask)
    want = torch.autograd.grad(nll / max(n, 1), search.alphas)
    torch.manual_seed(0)
    got, loss, _ = search.alpha_gradients(batch, model.start(batch))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-9)
    assert all(p.requires_grad for p in search.net.parameters()) and float(loss) > 0


def test_the_derived_cell_follows_alpha():
    """With the validation loss replaced by one that only node 0's tanh lowers, α's steps must make tanh
    node 0's most probable choice and the derived cell take it."""
    search = _search(arch_lr=0.05)
    space = search.dag
    tanh = space.activations.index("tanh")
    alpha0 = search.alphas[0]

    def after_step():
        loss = -torch.log_softmax(alpha0, -1)[tanh]
        (g,) = torch.autograd.grad(loss, [alpha0])
        search.arch_opt.zero_grad(set_to_none=True)
        alpha0.grad = g
        for a in search.alphas[1:]:
            a.grad = torch.zeros_like(a)
        search.arch_opt.step()

    before = search.weights()[0][tanh]
    for _ in range(50):
        after_step()
    assert search.weights()[0][tanh] > 0.9 > before
    assert search.derived()[0] == tanh


def test_cells_are_ranked_by_the_product_of_their_choices_weights():
    space = load_space("dag4")
    gen = torch.Generator().manual_seed(0)
    weights = [torch.softmax(torch.randn(len(choice_pairs(space, i)), generator=gen), -1).tolist() for i in range(4)]
    ranked = list(ranked_choices(space, weights))
    assert len(ranked) == len(set(ranked)) == math.prod(len(w) for w in weights)

    def prob(choices):
        p = weights[0][choices[0]]
        for i in range(1, 4):
            p *= weights[i][choice_pairs(space, i).index((choices[2 * i - 1], choices[2 * i]))]
        return p

    probs = [prob(c) for c in ranked]
    assert all(a >= b - 1e-15 for a, b in zip(probs, probs[1:]))
    assert ranked[0] == (max(range(3), key=lambda a: weights[0][a]),
                         *[x for i in range(1, 4) for x in choice_pairs(space, i)[max(range(len(weights[i])),
                                                                                          key=weights[i].__getitem__)]])


class Killed(Exception):
    """Stands for a kill: the process state is lost, what the run wrote to disk stays."""


def _same_checkpoints(a, b) -> None:
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])
    x, y = a["extra"], b["extra"]
    assert all(torch.equal(p, q) for p, q in zip(x["alphas"], y["alphas"], strict=True))
    assert all(torch.equal(p["exp_avg_sq"], q["exp_avg_sq"])
               for p, q in zip(x["arch_opt"]["state"].values(), y["arch_opt"]["state"].values(), strict=True))
    assert (x["arch_losses"], x["derived"], x["val_stream"]) == (y["arch_losses"], y["derived"], y["val_stream"])


@pytest.mark.parametrize("phase, at", [("train", 7), ("score", 4)])
def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_result(run, tmp_path, phase, at):
    cfg = SearchConfig(name="k", space="dag4", strategy="darts", tasks=["arith"], steps=12, trials=3,
                       strategy_options={"candidates": 6}, train={"hidden_size": 16}, backend="local")

    def kill(event):
        if event["phase"] == phase and event["done"] == at:
            raise Killed

    with pytest.raises(Killed):
        run_darts(cfg, tmp_path, on_progress=kill)
    assert not list(Store(tmp_path / "k" / "results.db").rows())
    out = cli("resume", str(tmp_path / "k"), "--no-progress")
    assert out.exit_code == 0, (out.stdout, out.stderr, out.exception)
    rows = [[(r["hash"], r["score"], r["decisions"]) for r in Store(d / "results.db", readonly=True).rows()]
            for d in (run, tmp_path / "k")]
    assert rows[0] == rows[1]
    _same_checkpoints(*(torch.load(d / "oneshot.pt", weights_only=True) for d in (run, tmp_path / "k")))


def test_a_run_resumed_while_scoring_goes_on_down_the_ranking(run, tmp_path, monkeypatch):
    """The cells already drawn are not drawn again (each would count as a miss: with MISSES of them the
    resumed run would stop scoring at once)."""
    import cellsearch.oneshot.search as oneshot_search

    monkeypatch.setattr(oneshot_search, "MISSES", 2)
    cfg = SearchConfig(name="k", space="dag4", strategy="darts", tasks=["arith"], steps=12, trials=3,
                       strategy_options={"candidates": 6}, train={"hidden_size": 16}, backend="local")

    def kill(event):
        if event["phase"] == "score" and event["done"] == 4:
            raise Killed

    with pytest.raises(Killed):
        run_darts(cfg, tmp_path, on_progress=kill)
    assert torch.load(tmp_path / "k" / "oneshot.pt", weights_only=True)["extra"]["ranked"] >= 4  # (misses too)
    resume_darts(tmp_path / "k")
    scored = [[r["hash"] for r in torch.load(d / "oneshot.pt", weights_only=True)["scored"]]
              for d in (run, tmp_path / "k")]
    assert scored[0] == scored[1] and len(scored[1]) == 6


@pytest.mark.slow
def test_kill_9_during_training_then_resume_gives_the_uninterrupted_result(tmp_path):
    flags = [a if a != "12" else "60" for a in TINY]  # a budget long enough to be killed in
    _same_checkpoints(*kill_resume_and_rerun(tmp_path, "darts", flags))


# (evaluate on the derived cells: OneShotSuite.test_evaluate_retrains_the_top_cell)


class TestDARTSSuite(OneShotSuite):
    """The one-shot strategies' shared tests, for darts."""

    strategy = "darts"
    refusals = ((("-o", "arch_lr=0"), "arch_lr must be a positive number"),
                (("-o", "arch_weight_decay=-1"), "arch_weight_decay must be a number >= 0"),
                (("-o", "order=2"), "no option 'order'"))
