"""The supernet of a ``dag`` space: one set of shared weights from which every cell of the space runs.

Weights are shared per edge, as in ENAS (Pham et al. 2018): node 0's ``linear(x, h_prev)``
(``n0_x``, ``n0_h``, ``n0_b``) is shared by every cell, and for each node i ≥ 1 and each
possible predecessor j < i the edge j → i has one candidate map (``e{j}_{i}_w``, ``_b``) and one
highway-gate map (``e{j}_{i}_gw``, ``_gb``), used by every cell in which node i reads node j,
whatever activation node i applies. The embedding and the output head are shared by all cells.

Design (the first increment): the supernet does not compile a cell of its own. For a sampled
architecture it builds the ordinary ``SeqModel`` of that architecture's decoded cell — the cell
our compiler compiles, with its generated backward — and binds every parameter of that model to
the shared tensors (``model_for``): the compiled cell reads its weights from ``CellParameters``
on every call, so the bound model computes exactly what the standalone cell computes with those
weights, and autograd accumulates its gradients on the shared tensors. Built models are kept in a
small cache by cell. The mixed op of DARTS (a softmax-weighted sum over the choices) as an op
family of the registry is not here yet; this path is enough for the sampled choice of RS-WS
(and ENAS), which runs only the sampled cell.

A memory component (``spaces/components.py``) has one set of weights per component, shared by every
cell that carries it, and node 0's map of the component's read (``n0_m``) is shared by all of them.

A space qualifies when it is a ``dag`` space without attention (its decisions are the edges and
activations of a fixed-size graph, and its memory components): of the shipped spaces, ``dag``,
``dag4`` and ``memory``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Collection, Sequence

import torch
from torch import nn

from cellsearch.compile.cell import CompiledCell
from cellsearch.dsl.graph import CellGraph
from cellsearch.errors import ConfigError
from cellsearch.nn.model import ModelConfig, SeqModel
from cellsearch.spaces.base import Space
from cellsearch.spaces.components import READ
from cellsearch.spaces.dag import DagSpace

QUALIFYING_SPACES = ("dag", "dag4", "memory")  # the shipped spaces a one-shot search runs on
CACHED_MODELS = 64  # built (compiled) models the supernet keeps, by cell


def check_oneshot_space(space: Space) -> DagSpace:
    """``space`` if a supernet can hold it (a ``dag`` space without attention), else ConfigError."""
    if not isinstance(space, DagSpace) or space.attention:
        raise ConfigError(f"one-shot search needs a space whose decisions are the edges and activations of a "
                          f"fixed-size graph and its memory components (a dag space without attention: "
                          f"{', '.join(QUALIFYING_SPACES)}); "
                          f"'{space.name}' is not one", field="SearchConfig.space")
    return space


class DagSupernet(nn.Module):
    """The shared weights of every cell of a ``dag`` space (see the module docstring).

    ``model_for(choices)`` is the ``SeqModel`` of the cell the choices decode to, its parameters
    the supernet's own tensors. ``config`` is the models' shape (one layer, no encoder)."""

    def __init__(self, space: Space, config: ModelConfig):
        super().__init__()
        self.space = check_oneshot_space(space)
        if config.num_layers != 1 or config.encoder is not None or config.tie_weights:
            raise ConfigError("a supernet holds one cell layer without an encoder or tied weights",
                              field="TrainConfig.num_layers")
        self.config = config
        H = config.hidden_size
        E = config.embed_size or H
        self.embedding = nn.Embedding(config.vocab_size, E)
        self.head = nn.Linear(H, config.vocab_size)
        shapes: dict[str, tuple[int, ...]] = {"n0_x": (H, E), "n0_h": (H, H)}
        if self.space.bias:
            shapes["n0_b"] = (H,)
        for i in range(1, self.space.n):
            for j in range(i):
                shapes[f"e{j}_{i}_w"] = (H, H)
                shapes[f"e{j}_{i}_gw"] = (H, H)
                if self.space.bias:
                    shapes[f"e{j}_{i}_b"] = (H,)
                    shapes[f"e{j}_{i}_gb"] = (H,)
        # a component's parameters: the same names in every cell that carries it (its templates are
        # fixed), found once from one such cell
        self._component_parameters: dict[str, list[str]] = {}
        if self.space.memory:
            shapes["n0_m"] = (H, H)
            for component in self.space.memory:
                found = self._component_shapes(component)
                self._component_parameters[component] = list(found)
                shapes.update({_component_tensor(component, name): shape for name, shape in found.items()})
        self.shared = nn.ParameterDict({k: nn.Parameter(torch.empty(*s)) for k, s in shapes.items()})
        self._models: OrderedDict[tuple[int, ...], SeqModel] = OrderedDict()
        self.reset_parameters()

    def reset_parameters(self, init_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """As ``SeqModel.reset_parameters``: cell weights uniform(±init_scale/√H), embedding and
        head uniform(±0.1), head bias zero."""
        bound = init_scale / math.sqrt(self.config.hidden_size)
        with torch.no_grad():
            for p in self.shared.values():
                p.uniform_(-bound, bound, generator=generator)
            self.embedding.weight.uniform_(-0.1, 0.1, generator=generator)
            self.head.weight.uniform_(-0.1, 0.1, generator=generator)
            self.head.bias.zero_()

    def _component_shapes(self, component: str) -> dict[str, tuple[int, ...]]:
        """The cell parameters of a memory component (name → shape): those of a cell carrying it, beside
        the dag's."""
        dims = self.space.decisions()
        choices = [0] * len(dims)
        choices[-1] = dims[-1].choices.index(component)  # (memory is the last decision)
        graph = self.space.decode(choices)
        dag = self._dag_bindings(graph, choices)
        with torch.random.fork_rng(devices=[]):
            cell = SeqModel(graph, self.config).rnn.cells[0]
        assert isinstance(cell, CompiledCell)  # (CellRNN's default backend)
        return {name: tuple(p.shape) for name, p in cell.params.named_parameters() if name not in dag}

    def bindings(self, graph: CellGraph, choices: Sequence[int]) -> dict[str, str]:
        """The cell's parameter names (``CellParameters``) → the shared tensors' names (``bound_model``
        refuses bindings that are not exactly the cell's parameters)."""
        out = self._dag_bindings(graph, choices)
        component = self.space._component(choices)
        if component is not None:
            out.update({name: _component_tensor(component, name) for name in self._component_parameters[component]})
        return out

    def _dag_bindings(self, graph: CellGraph, choices: Sequence[int]) -> dict[str, str]:
        """The dag part's bindings: node 0's linear and every highway edge's maps."""
        space = self.space
        acts, parents = space._unpack(choices)
        loose = space._loose_ends(acts, parents)
        names = [f"node{i}" for i in range(space.n)]
        if len(loose) == 1:
            names[loose[0]] = "h"
        nm = graph.node_map
        out: dict[str, str] = {}

        def bind(linear: str, weight: str, bias: str) -> None:
            out[f"{linear}__w0"] = weight
            if space.bias:
                out[f"{linear}__b"] = bias

        for node in graph.nodes:
            if node.op == "linear" and "x" in node.args:  # node 0
                for k, a in enumerate(node.args):
                    out[f"{node.name}__w{k}"] = {"x": "n0_x", "h_prev": "n0_h", READ: "n0_m"}[a]
                if space.bias:
                    out[f"{node.name}__b"] = "n0_b"
            elif node.op == "blend":
                gate, cand, src = node.args
                i, j = names.index(node.name), names.index(src)
                bind(nm[gate].args[0], f"e{j}_{i}_gw", f"e{j}_{i}_gb")
                bind(cand if nm[cand].op == "linear" else nm[cand].args[0], f"e{j}_{i}_w", f"e{j}_{i}_b")
        return out

    def model_for(self, choices: Sequence[int]) -> SeqModel:
        """The ``SeqModel`` of the cell ``choices`` decode to, every parameter a shared tensor."""
        key = tuple(int(c) for c in choices)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        graph = self.space.decode(key)
        model = self.bound_model(graph, self.bindings(graph, key))
        self._models[key] = model
        if len(self._models) > CACHED_MODELS:
            self._models.popitem(last=False)
        return model

    def bound_model(self, graph: CellGraph, bindings: dict[str, str], own: Collection[str] = ()) -> SeqModel:
        """The ``SeqModel`` of ``graph`` whose embedding and head are the supernet's and whose cell
        parameters are the shared tensors ``bindings`` names (cell parameter name → shared tensor name),
        except ``own``, the model's own (DARTS's α); AssertionError unless the bindings and ``own``
        are exactly the cell's parameters."""
        with torch.random.fork_rng(devices=[]):  # (its own initial weights are replaced at once)
            model = SeqModel(graph, self.config)
        ref = self.shared["n0_h"]
        model.to(device=ref.device, dtype=ref.dtype)
        model.embedding.weight = self.embedding.weight
        model.head.weight = self.head.weight
        model.head.bias = self.head.bias
        cell = model.rnn.cells[0]
        assert isinstance(cell, CompiledCell)  # (CellRNN's default backend)
        cell_params = cell.params
        names = {name for name, _ in cell_params.named_parameters()}
        if names != set(bindings) | set(own) or set(bindings) & set(own):
            raise AssertionError(f"supernet bindings {sorted(bindings)} and the model's own {sorted(own)} are not "
                                 f"the cell's parameters {sorted(names)}")
        for name, shared in bindings.items():
            setattr(cell_params, name, self.shared[shared])
        return model

    def cell_parameter_count(self, choices: Sequence[int]) -> int:
        """The parameters of the standalone cell ``choices`` decode to (what the leaderboard shows)."""
        return sum(p.numel() for p in self.model_for(choices).rnn.parameters())


def _component_tensor(component: str, parameter: str) -> str:
    """The shared tensor of a memory component's parameter (``ParameterDict`` keys take no dots)."""
    return f"m_{component.replace('-', '_')}__{parameter}"
