"""The learned parameters of one cell, shared by the interpreter and the compiled layer.

Parameters belong to nodes, not to a backend: ``<node>__w<k>`` is the weight that a
``linear`` node applies to its k-th argument (shape ``(hidden, size of that argument)``,
the ``torch.nn.Linear`` layout), ``<node>__b`` its bias, ``<node>__p`` the scale of a
``diag`` node and ``<node>__wk``/``__wq``/``__v`` those of an ``attend`` node (see
``attention.py``). Backends read the same tensors, so a differential test only has to share
one ``CellParameters`` between them; the compiler concatenates them into fused matrices
on every call, and autograd routes the gradients back to these.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cellsearch.dsl.graph import CellGraph
from cellsearch.ops.attention import ATTENTION_ROLES, attention_name
from cellsearch.ops.linear import bias_name, weight_name
from cellsearch.ops.registry import OPS
from cellsearch.ops.scale import scale_name

# (The parameter names belong to their ops: re-exported here for the backends that read them.)
__all__ = ["ATTENTION_ROLES", "CellParameters", "attention_name", "bias_name", "scale_name", "weight_name"]


class CellParameters(nn.Module):
    """Holds ``<node>__w<k>``, ``<node>__b`` and ``<node>__p`` for every live node."""

    def __init__(self, graph: CellGraph, input_size: int, hidden_size: int, static_size: int | None = None,
                 *, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        graph.check_sizes(input_size, hidden_size, static_size)
        self.graph = graph
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.static_size = static_size if static_size is not None else hidden_size
        sizes = graph.leaf_sizes(input_size, hidden_size, static_size)
        for n in graph.nodes:
            if n.name not in graph.live:
                continue
            for name, shape in OPS[n.op].parameters(n, sizes, hidden_size):
                self.register_parameter(name, nn.Parameter(torch.empty(*shape, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self, init_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """Uniform(±init_scale/√hidden) like torch's RNNs, then the cell's own init attributes.

        ``bias_init`` sets a bias to a constant (e.g. 1.0 for a forget gate), ``diag_init=a``
        makes a weight small plus ``a`` on its diagonal (Jozefowicz's Linear(a, x)), and a
        ``diag`` node's ``init`` sets its scales.
        """
        bound = init_scale / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound, generator=generator)
            for n in self.graph.nodes:
                if n.name in self.graph.live:
                    OPS[n.op].init_parameters(n, lambda name: getattr(self, name))

    def extra_repr(self) -> str:
        return (f"cell={self.graph.name!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"params={sum(p.numel() for p in self.parameters())}")
