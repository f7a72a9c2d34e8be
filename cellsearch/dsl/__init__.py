"""The cell language: the ``CellGraph`` IR, equation parsing, YAML I/O, hashing and graph tools."""

from cellsearch.dsl.graph import CellGraph, Node, prev_name
from cellsearch.dsl.io import cell_from_dict, cell_to_dict, dumps_cell, load_cell, loads_cell, save_cell

__all__ = ["CellGraph", "Node", "prev_name", "cell_from_dict", "cell_to_dict", "dumps_cell", "load_cell",
           "loads_cell", "save_cell"]
