"""The dag supernet: a sampled cell's path computes what that cell's standalone compiled model
computes with the same weights, and an edge's weights are one tensor shared by every cell using it."""

from __future__ import annotations

import random

import pytest
import torch

from cellsearch.errors import ConfigError
from cellsearch.nn.model import ModelConfig, SeqModel
from cellsearch.oneshot.supernet import DagSupernet, check_oneshot_space
from cellsearch.spaces import load_space
from cellsearch.spaces.components import COMPONENT_NAMES
from cellsearch.spaces.dag import DagSpace

V, H, E = 11, 6, 5


def supernet(space="dag", dtype=torch.float64) -> DagSupernet:
    net = DagSupernet(load_space(space) if isinstance(space, str) else space,
                      ModelConfig(vocab_size=V, hidden_size=H, embed_size=E))
    net.reset_parameters(generator=torch.Generator().manual_seed(3))
    return net.to(dtype)


MEMORY = DagSpace("mem", nodes=3, activations=["tanh", "sigmoid"], memory=list(COMPONENT_NAMES))


@pytest.mark.parametrize("space", ["dag", "dag4", MEMORY], ids=["dag", "dag4", "memory-components"])
def test_sampled_path_matches_standalone_cell(space):
    net = supernet(space)
    rng = random.Random(1)
    tokens = torch.randint(0, V, (9, 4), generator=torch.Generator().manual_seed(0))
    for _ in range(8):
        choices = net.space.random_decisions(rng)
        model = net.model_for(choices)
        out, state = model(tokens)
        # the standalone model of the same cell, its weights copied from the supernet's
        alone = SeqModel(net.space.decode(choices), net.config).to(torch.float64)
        alone.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
        want, want_state = alone(tokens)
        torch.testing.assert_close(out, want, rtol=0, atol=0)
        torch.testing.assert_close(state, want_state, rtol=0, atol=0)
        # and the gradients the path leaves on the shared tensors are the standalone cell's
        out.square().sum().backward()
        want.square().sum().backward()
        grads = dict(alone.named_parameters())
        for name, p in model.named_parameters():
            torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-12, atol=1e-12)
        net.zero_grad(set_to_none=True)


def test_every_parameter_of_a_bound_model_is_a_shared_tensor():
    net = supernet()
    shared = {id(p) for p in net.parameters()}
    for choices in (net.space.random_decisions(random.Random(s)) for s in range(5)):
        assert {id(p) for p in net.model_for(choices).parameters()} <= shared


def test_bindings_that_do_not_cover_every_cell_parameter_are_refused():
    """``bound_model`` (``model_for``'s and DARTS's relaxed model's) binds every cell parameter or refuses."""
    net = supernet()
    choices = net.space.random_decisions(random.Random(0))
    graph = net.space.decode(choices)
    bindings = net.bindings(graph, choices)
    left_out = dict(list(bindings.items())[1:])
    with pytest.raises(AssertionError, match="are not the cell's parameters"):
        net.bound_model(graph, left_out)
    with pytest.raises(AssertionError, match="are not the cell's parameters"):
        net.bound_model(graph, bindings, own={"node9__alpha"})
    assert net.bound_model(graph, left_out, own={next(iter(bindings))}) is not None  # (the model's own)


def _dag(**kw) -> DagSpace:
    return DagSpace("d", nodes=3, activations=kw.get("activations", ["tanh", "relu"]), bias=kw.get("bias", True))


@pytest.mark.parametrize("bias", [True, False])
def test_an_edge_used_by_two_cells_is_one_tensor_whose_gradient_accumulates(bias):
    net = supernet(_dag(bias=bias))
    # decisions: node0.activation, node1.input, node1.activation, node2.input, node2.activation
    a = (0, 0, 0, 0, 1)  # node2 reads node0, relu: edge 0->2
    b = (1, 0, 1, 0, 0)  # node2 reads node0, tanh: edge 0->2 again, other activations
    c = (0, 0, 0, 1, 0)  # node2 reads node1: edge 1->2, not 0->2
    tokens = torch.randint(0, V, (5, 3), generator=torch.Generator().manual_seed(1))
    w = net.shared["e0_2_w"]

    def grad_of(choices):
        net.zero_grad(set_to_none=True)
        net.model_for(choices)(tokens)[0].sum().backward()
        return None if w.grad is None else w.grad.clone()

    ga, gb, gc = grad_of(a), grad_of(b), grad_of(c)
    assert ga is not None and gb is not None and gc is None  # c does not use the edge
    assert ga.abs().sum() > 0 and gb.abs().sum() > 0
    ids = [{id(p) for p in net.model_for(ch).parameters()} for ch in (a, b, c)]
    assert id(w) in ids[0] and id(w) in ids[1] and id(w) not in ids[2]
    net.zero_grad(set_to_none=True)
    (net.model_for(a)(tokens)[0].sum() + net.model_for(b)(tokens)[0].sum()).backward()
    torch.testing.assert_close(w.grad, ga + gb)


def test_a_gradient_step_on_one_cell_changes_what_another_sharing_it_computes():
    net = supernet(_dag())
    a, b = (0, 0, 0, 0, 1), (1, 0, 1, 0, 0)
    tokens = torch.randint(0, V, (5, 3), generator=torch.Generator().manual_seed(2))
    before = net.model_for(b)(tokens)[0].detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.model_for(a)(tokens)[0].square().sum().backward()
    opt.step()
    assert not torch.equal(net.model_for(b)(tokens)[0].detach(), before)


@pytest.mark.parametrize("space", ["mutation", "nas_rl", "attention"])
def test_spaces_that_are_not_fixed_size_graphs_are_refused(space):
    with pytest.raises(ConfigError, match="dag, dag4"):
        check_oneshot_space(load_space(space))


def _by_hand(net: DagSupernet, choices, tokens):
    """The ENAS cell written out from the shared weights (Pham et al. 2018, the dag space's docstring)."""
    s, sp = net.shared, net.space
    acts = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda v: v}
    act = [sp.activations[choices[0]]] + [sp.activations[choices[2 * i]] for i in range(1, sp.n)]
    parent = [-1] + [choices[2 * i - 1] for i in range(1, sp.n)]
    loose = [i for i in range(sp.n) if i not in parent]
    x = net.embedding(tokens)
    h = torch.zeros(tokens.shape[1], H, dtype=x.dtype)
    outs = []
    for t in range(tokens.shape[0]):
        n = [acts[act[0]](x[t] @ s["n0_x"].T + h @ s["n0_h"].T + s["n0_b"])]
        for i in range(1, sp.n):
            j = parent[i]
            c = torch.sigmoid(n[j] @ s[f"e{j}_{i}_gw"].T + s[f"e{j}_{i}_gb"])
            n.append(c * acts[act[i]](n[j] @ s[f"e{j}_{i}_w"].T + s[f"e{j}_{i}_b"]) + (1 - c) * n[j])
        h = sum(n[i] for i in loose) / len(loose)
        outs.append(h)
    return net.head(torch.stack(outs))


@pytest.mark.parametrize("space", ["dag", "dag4"])
def test_the_sampled_path_is_the_enas_cell_on_the_shared_edge_weights(space):
    net = supernet(space)
    rng = random.Random(4)
    tokens = torch.randint(0, V, (6, 3), generator=torch.Generator().manual_seed(5))
    for _ in range(6):
        choices = net.space.random_decisions(rng)
        logits, _ = net.model_for(choices)(tokens)
        torch.testing.assert_close(logits, _by_hand(net, choices, tokens), rtol=1e-10, atol=1e-10)


def test_a_memory_component_is_one_set_of_weights_shared_by_every_cell_that_carries_it():
    net = supernet(MEMORY)
    dims = len(MEMORY.decisions())
    rng = random.Random(5)
    carrying = []
    while len(carrying) < 2:
        choices = list(MEMORY.random_decisions(rng))
        choices[dims - 1] = 1  # the first component
        if MEMORY.decode(choices).name not in {MEMORY.decode(c).name for c in carrying}:
            carrying.append(choices)
    component = MEMORY.decisions()[-1].choices[1]
    tensors = [{id(p) for n, p in net.model_for(c).rnn.named_parameters()} for c in carrying]
    own = {id(p) for k, p in net.shared.items() if k.startswith(f"m_{component.replace('-', '_')}__")}
    assert own and own <= tensors[0] and own <= tensors[1]
    plain = list(carrying[0])
    plain[dims - 1] = 0  # no component: none of its weights
    assert not own & {id(p) for p in net.model_for(plain).parameters()}


def test_a_class_conditioned_task_is_refused_and_memory_rows_reach_the_supernet():
    from cellsearch.oneshot.search import build_supernet
    from cellsearch.tasks import make_task
    from cellsearch.training.config import TrainConfig

    tc = TrainConfig(cell="lstm", task="digits", hidden_size=8, memory_rows=7)
    with pytest.raises(ConfigError, match="conditioned on its class"):
        build_supernet(load_space("dag4"), make_task("digits", conditional=True), tc)
    net = build_supernet(load_space("memory"), make_task("anbn"), tc)
    assert net.config.memory_rows == 7
