"""Layers: equivalence with torch.nn.LSTM/GRU, stacking, bidirectional, batch_first, states."""

from __future__ import annotations

import pytest
import torch

from cellsearch.errors import CellsearchError
from cellsearch.library import builtin_names
from cellsearch.nn import CellRNN, from_torch, load_torch_rnn

CONFIGS = [  # (input, hidden, layers, bidirectional, batch_first)
    (5, 7, 1, False, False),
    (8, 8, 2, False, True),
    (6, 4, 2, True, False),
    (3, 16, 3, True, True),
]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_matches_torch_forward_and_backward(cls, cfg, device, monkeypatch):
    """On CUDA the reference is cuDNN's fused RNN (TF32 off: both sides in full fp32)."""
    if device == "cuda":
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    I, H, layers, bi, bf = cfg
    torch.manual_seed(sum(cfg))
    ref = cls(I, H, num_layers=layers, bidirectional=bi, batch_first=bf).to(device)
    ours = from_torch(ref)
    x = torch.randn(*((3, 6) if bf else (6, 3)), I, device=device)
    D = 2 if bi else 1
    h0 = torch.randn(layers * D, 3, H, device=device)
    c0 = torch.randn(layers * D, 3, H, device=device)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    if cls is torch.nn.LSTM:
        out_r, (h_r, c_r) = ref(x1, (h0, c0))
        out_o, (h_o, c_o) = ours(x2, (h0, c0))
        finals = [(h_r, h_o), (c_r, c_o)]
    else:
        out_r, h_r = ref(x1, h0)
        out_o, (h_o,) = ours(x2, h0)
        finals = [(h_r, h_o)]
    torch.testing.assert_close(out_o, out_r, atol=1e-5, rtol=1e-5)
    for a, b in finals:
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    w = torch.randn_like(out_r)
    loss_r = (out_r * w).sum() + sum((a * a).sum() for a, _ in finals)
    loss_o = (out_o * w).sum() + sum((b * b).sum() for _, b in finals)
    loss_r.backward()
    loss_o.backward()
    torch.testing.assert_close(x2.grad, x1.grad, atol=1e-5, rtol=1e-5)
    # weight gradients: load torch's gradients as if they were weights, through the same
    # mapping, and compare with our gradients parameter by parameter
    grads_as_params = cls(I, H, num_layers=layers, bidirectional=bi, batch_first=bf).to(device)
    with torch.no_grad():
        for (_, dst), (_, src) in zip(grads_as_params.named_parameters(), ref.named_parameters()):
            dst.copy_(src.grad)
    expected = from_torch(grads_as_params)
    for name, p in ours.named_parameters():
        if name.endswith("__b"):
            continue  # our one bias per gate has the gradient of torch's b_ih (and of b_hh)
        torch.testing.assert_close(p.grad, dict(expected.named_parameters())[name].detach(), atol=1e-4, rtol=1e-4)


def test_rejects_other_cells_and_mismatched_sizes():
    ref = torch.nn.LSTM(4, 5)
    with pytest.raises(CellsearchError, match="not the built-in lstm"):
        load_torch_rnn(CellRNN("gru", 4, 5), ref)
    with pytest.raises(CellsearchError, match="hidden_size differs"):
        load_torch_rnn(CellRNN("lstm", 4, 6), ref)


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_trains_a_few_steps(name):
    torch.manual_seed(0)
    rnn = CellRNN(name, 8, 8, num_layers=2, dropout=0.1)
    head = torch.nn.Linear(8, 1)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-2)
    x = torch.randn(12, 4, 8)
    memory = tuple(torch.randn(4, 5, 8) for _ in rnn.graph.memory)  # what an attention decoder reads
    y = x.sum(-1, keepdim=True).cumsum(0) * 0.1
    losses = []
    for _ in range(8):
        opt.zero_grad()
        out, _ = rnn(x, memory=memory)
        loss = torch.nn.functional.mse_loss(head(out), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_backends_agree_on_a_stacked_bidirectional_layer():
    torch.manual_seed(1)
    compiled = CellRNN("vanilla", 5, 6, num_layers=2, bidirectional=True)
    interp = CellRNN("vanilla", 5, 6, num_layers=2, bidirectional=True, backend="interpreter")
    interp.load_state_dict(compiled.state_dict())
    x = torch.randn(7, 3, 5)
    out_c, st_c = compiled(x)
    out_i, st_i = interp(x)
    torch.testing.assert_close(out_c, out_i, atol=1e-5, rtol=1e-5)
    for a, b in zip(st_c, st_i):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert out_c.shape == (7, 3, 12) and st_c[0].shape == (4, 3, 6)


def test_state_shape_errors_are_clear():
    rnn = CellRNN("lstm", 4, 5, num_layers=2)
    with pytest.raises(CellsearchError, match=r"state must be 2 tensor\(s\) \(h, c\) of shape \(2, 3, 5\)"):
        rnn(torch.randn(6, 3, 4), (torch.zeros(1, 3, 5), torch.zeros(1, 3, 5)))
    with pytest.raises(CellsearchError, match="3-d input"):
        rnn(torch.randn(6, 4))
    with pytest.raises(CellsearchError, match="num_layers"):
        CellRNN("lstm", 4, 5, num_layers=0)


def test_static_inputs_reach_every_layer():
    from cellsearch.dsl.io import loads_cell

    g = loads_cell("""
name: conditioned
inputs: [x]
static: [cond]
states: [h]
nodes:
  h: tanh(linear(x, h_prev, cond))
""")
    rnn = CellRNN(g, 4, 6, num_layers=2, static_size=3)
    x = torch.randn(5, 2, 4)
    a, _ = rnn(x, static=torch.zeros(2, 3))
    b, _ = rnn(x, static=torch.ones(2, 3))
    assert not torch.allclose(a, b)
