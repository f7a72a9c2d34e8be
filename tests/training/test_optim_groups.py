"""Optimizer steps taken together equal each model's own step, bit for bit."""

from __future__ import annotations

import copy

import pytest
import torch

from cellsearch.training.optim_groups import clip_together, finite_together, step_together


def _models(k: int, seed: int = 0, dtype=torch.float64) -> list[torch.nn.Module]:
    torch.manual_seed(seed)
    return [torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).to(dtype)
            for _ in range(k)]


def _backward(models, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for i, m in enumerate(models):
        x = torch.randn(4, 5, generator=gen, dtype=next(m.parameters()).dtype) * (1 + 10 * i)
        m.zero_grad(set_to_none=True)
        m(x).pow(2).sum().backward()


def _make(kind: str, model, i: int):
    params = model.parameters()
    if kind == "adam":
        return torch.optim.Adam(params, lr=1e-2 * (1 + i % 2), weight_decay=1e-3 * (i % 3), fused=True)
    if kind == "amsgrad":
        return torch.optim.Adam(params, lr=3e-3, amsgrad=True, fused=True)
    if kind == "plain-adam":
        return torch.optim.Adam(params, lr=3e-3)
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("kinds", [["adam"] * 4, ["amsgrad", "adam", "amsgrad"], ["adam", "sgd", "plain-adam", "adam"]])
def test_stepping_together_equals_each_optimizer_step(kinds):
    together = _models(len(kinds))
    alone = copy.deepcopy(together)
    opts_t = [_make(k, m, i) for i, (k, m) in enumerate(zip(kinds, together))]
    opts_a = [_make(k, m, i) for i, (k, m) in enumerate(zip(kinds, alone))]
    for step in range(6):
        _backward(together, step)
        _backward(alone, step)
        if step == 3:  # a learning-rate change between steps
            for o in (opts_t[0], opts_a[0]):
                o.param_groups[0]["lr"] = 0.05
        step_together(opts_t)
        for o in opts_a:
            o.step()
    for mt, ma in zip(together, alone):
        for pt, pa in zip(mt.parameters(), ma.parameters()):
            assert torch.equal(pt, pa)
    for ot, oa in zip(opts_t, opts_a):
        st, sa = ot.state_dict()["state"], oa.state_dict()["state"]
        for i in sa:
            for key in sa[i]:
                assert torch.equal(torch.as_tensor(st[i][key]), torch.as_tensor(sa[i][key])), key


def test_an_optimizer_with_a_hook_takes_its_own_step():
    models = _models(2)
    opts = [_make("adam", m, i) for i, m in enumerate(models)]
    calls = []
    opts[1].register_step_post_hook(lambda opt, args, kwargs: calls.append(1))
    for step in range(3):
        _backward(models, step)
        step_together(opts)
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("limits", [[0.5, 0.5, 0.5], [None, 1.0, 0.0, 50.0], [1e-3, 1e3]])
def test_clipping_together_equals_each_models_clip(limits):
    together = _models(len(limits))
    alone = copy.deepcopy(together)
    _backward(together, 1)
    _backward(alone, 1)
    clip_together([list(m.parameters()) for m in together], limits)
    for m, limit in zip(alone, limits):
        if limit:
            torch.nn.utils.clip_grad_norm_(m.parameters(), limit, foreach=True)
    for mt, ma in zip(together, alone):
        for pt, pa in zip(mt.parameters(), ma.parameters()):
            assert torch.equal(pt.grad, pa.grad)  # to the bit: chaotic runs amplify the last bit


def test_clipping_models_of_different_shapes_still_clips_each_alone():
    a, = _models(1)
    b = torch.nn.Linear(5, 2).double()
    _backward([a], 0)
    b(torch.ones(3, 5, dtype=torch.float64)).sum().backward()
    clip_together([list(a.parameters()), list(b.parameters())], [1e-3, 1e-3])
    for m in (a, b):
        total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in m.parameters()]))
        assert total == pytest.approx(1e-3, rel=1e-3)


def test_finite_together_names_the_broken_model():
    models = _models(3)
    with torch.no_grad():
        next(models[1].parameters())[0, 0] = float("nan")
        list(models[2].parameters())[-1][0] = float("inf")
    assert finite_together([list(m.parameters()) for m in models]) == [True, False, False]
    assert finite_together([list(models[0].parameters()), [torch.ones(2)]]) == [True, True]
    mixed = [torch.ones(2), torch.tensor([float("nan")], dtype=torch.float64)]  # (one model, two dtypes)
    assert finite_together([mixed, mixed[:1]]) == [False, True]


def _assert_clipped_as_torch_clips(models: list[list[torch.nn.Parameter]], limits: list[float]) -> None:
    """clip_together on ``models`` gives every gradient bit for bit what clip_grad_norm_ gives each alone."""
    alone = [[torch.nn.Parameter(p.detach().clone()) for p in params] for params in models]
    for params, copies in zip(models, alone):
        for p, c in zip(params, copies):
            c.grad = p.grad.clone()
    clip_together(models, limits)
    for copies, limit in zip(alone, limits):
        torch.nn.utils.clip_grad_norm_(copies, limit, foreach=True)
    for params, copies in zip(models, alone):
        for p, c in zip(params, copies):
            assert torch.equal(p.grad, c.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_factors_are_torchs_to_the_bit(dtype):
    """Many models whose norms are far above their limits: every clipped gradient equals
    ``clip_grad_norm_``'s bit for bit (its factor is reciprocal(norm) * limit, not limit / norm)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(31, 8), (8, 8), (8,), (3, 8)]
    models = [[torch.nn.Parameter(torch.zeros(s, dtype=dtype)) for s in shapes] for _ in range(40)]
    for i, params in enumerate(models):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype) * 10 ** (i % 5)
    limits = [0.1 + 0.37 * i for i in range(40)]
    _assert_clipped_as_torch_clips(models, limits)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_gradients_are_clipped_as_torch_clips_them(dtype):
    gen = torch.Generator().manual_seed(1)
    models = [[torch.nn.Parameter(torch.zeros(7, dtype=dtype)) for _ in range(3)] for _ in range(6)]
    for i, params in enumerate(models):
        for p in params:
            p.grad = (torch.randn(7, generator=gen) * 10 ** (i % 3)).to(dtype)
    limits = [3.9411 + 0.1 * i for i in range(6)]
    _assert_clipped_as_torch_clips(models, limits)
