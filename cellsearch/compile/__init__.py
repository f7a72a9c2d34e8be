"""Compilation of cells to PyTorch: parameters, reference interpreter, code generation, runtime."""

from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.compile.params import CellParameters
from cellsearch.compile.cell import CompiledCell, compile_cell

__all__ = ["CellParameters", "CompiledCell", "InterpretedCell", "compile_cell"]
