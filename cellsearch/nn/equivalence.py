"""Load the weights of ``torch.nn.LSTM`` / ``torch.nn.GRU`` into the built-in ``lstm`` / ``gru``.

torch keeps two biases per gate (b_ih + b_hh); our ``linear`` has one, so they are summed —
except for the GRU's candidate, whose recurrent bias sits inside the reset gate
(n = tanh(W_in x + b_in + r * (W_hn h + b_hn))), which is why our ``gru`` has separate
``n_x`` and ``n_h`` linears. After loading, outputs and final states match torch's.
"""

from __future__ import annotations

import torch
from torch import nn

from cellsearch.compile.params import CellParameters, bias_name, weight_name
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.errors import CellsearchError


def _gate_linear(params: CellParameters, gate: str) -> str:
    """The linear node feeding a gate node (``i`` in ``i: sigmoid(linear(x, h_prev))``)."""
    g = params.graph
    node = g.node_map[gate]
    return node.args[0] if node.op != "linear" else gate


def _arg_index(params: CellParameters, node: str, leaf: str) -> int:
    return params.graph.node_map[node].args.index(leaf)


@torch.no_grad()
def _copy(params: CellParameters, node: str, w_ih, w_hh, bias) -> None:
    if w_ih is not None:
        getattr(params, weight_name(node, _arg_index(params, node, "x"))).copy_(w_ih)
    if w_hh is not None:
        getattr(params, weight_name(node, _arg_index(params, node, "h_prev"))).copy_(w_hh)
    if bias is not None:
        getattr(params, bias_name(node)).copy_(bias)


def load_torch_rnn(layer, module: nn.LSTM | nn.GRU) -> None:
    """Copy ``module``'s weights into ``layer`` (a CellRNN of the built-in lstm or gru)."""
    from cellsearch.library import get_cell

    kind = "lstm" if isinstance(module, nn.LSTM) else "gru" if isinstance(module, nn.GRU) else None
    if kind is None:
        raise CellsearchError(f"can only load torch.nn.LSTM or torch.nn.GRU, not {type(module).__name__}")
    if canonical_hash(layer.graph) != canonical_hash(get_cell(kind)):
        raise CellsearchError(f"the layer's cell '{layer.graph.name}' is not the built-in {kind}")
    needed = ("i", "f", "g", "o") if kind == "lstm" else ("r", "z", "n_x", "n_h")
    if not all(n in layer.graph.node_map for n in needed):
        raise CellsearchError(f"the layer's cell must use the node names of the built-in {kind} ({', '.join(needed)})")
    if getattr(module, "proj_size", 0):
        raise CellsearchError("LSTMs with proj_size are not supported")
    for attr in ("input_size", "hidden_size", "num_layers", "bidirectional"):
        if getattr(module, attr) != getattr(layer, attr):
            raise CellsearchError(f"{attr} differs: torch module has {getattr(module, attr)}, "
                                  f"layer has {getattr(layer, attr)}")
    H = module.hidden_size
    D = 2 if module.bidirectional else 1
    for lay in range(module.num_layers):
        for d in range(D):
            sfx = f"_l{lay}" + ("_reverse" if d else "")
            w_ih = getattr(module, "weight_ih" + sfx)
            w_hh = getattr(module, "weight_hh" + sfx)
            b_ih = getattr(module, "bias_ih" + sfx, None) if module.bias else None
            b_hh = getattr(module, "bias_hh" + sfx, None) if module.bias else None
            params = layer.cells[lay * D + d].params
            if kind == "lstm":
                for k, gate in enumerate(("i", "f", "g", "o")):
                    rows = slice(k * H, (k + 1) * H)
                    b = b_ih[rows] + b_hh[rows] if b_ih is not None and b_hh is not None else torch.zeros(H)
                    _copy(params, _gate_linear(params, gate), w_ih[rows], w_hh[rows], b)
            else:
                for k, gate in enumerate(("r", "z")):
                    rows = slice(k * H, (k + 1) * H)
                    b = b_ih[rows] + b_hh[rows] if b_ih is not None and b_hh is not None else torch.zeros(H)
                    _copy(params, _gate_linear(params, gate), w_ih[rows], w_hh[rows], b)
                rows = slice(2 * H, 3 * H)
                zero = torch.zeros(H)
                _copy(params, "n_x", w_ih[rows], None, b_ih[rows] if b_ih is not None else zero)
                _copy(params, "n_h", None, w_hh[rows], b_hh[rows] if b_hh is not None else zero)


def from_torch(module: nn.LSTM | nn.GRU, backend: str = "compiled"):
    """A CellRNN with the same configuration and weights as a torch LSTM/GRU."""
    from cellsearch.nn.layers import CellRNN

    kind = "lstm" if isinstance(module, nn.LSTM) else "gru"
    dropout = module.dropout if module.num_layers > 1 else 0.0
    layer = CellRNN(kind, module.input_size, module.hidden_size, module.num_layers, module.bidirectional,
                    dropout, module.batch_first, backend=backend)
    p = next(module.parameters())
    layer.to(device=p.device, dtype=p.dtype)
    load_torch_rnn(layer, module)
    return layer
