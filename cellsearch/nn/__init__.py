"""Layers built from cells (stacking, bidirectional) and interoperability with torch's RNNs."""

from cellsearch.nn.equivalence import from_torch, load_torch_rnn
from cellsearch.nn.layers import CellRNN

__all__ = ["CellRNN", "from_torch", "load_torch_rnn"]
