"""Verification: an exported artifact must compute what ``CompiledCell`` computes.

Before an export returns, every artifact that runs (py, torchscript, onnx) is run on a random
input (``example``: a seeded generator, so the check is repeatable) and compared with
``CompiledCell`` on the same weights (``reference``), to ``CHECK_TOLERANCE``; a mismatch is an
``ExportError`` naming the output and the largest difference.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cellsearch.compile.attention import Memory
from cellsearch.compile.params import CellParameters
from cellsearch.dsl.graph import CellGraph
from cellsearch.export.base import ExportError
from cellsearch.export.pysource import imported

CHECK_TOLERANCE = 1e-4  # how close an exported artifact must follow CompiledCell (absolute and relative)


def example(g: CellGraph, params: CellParameters, T: int, B: int, seed: int = 1234):
    """A random input, initial states and static inputs (T steps, batch B), the same for a seed."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, params.input_size, generator=gen)
    states = tuple(torch.rand(B, 4, generator=gen) if s in g.weight_states else
                   torch.randn(*((B, 4) if s in g.memory_states else (B,)), params.hidden_size, generator=gen) * 0.5
                   for s in g.states)  # (a memory state: 4 rows; weights over them in [0, 1))
    statics = tuple(torch.randn(B, params.static_size, generator=gen) for _ in g.static)
    return x, states, statics


def example_memory(g: CellGraph, params: CellParameters, B: int, rows: int = 5, seed: int = 4321) -> tuple:
    """A random memory per memory leaf of ``g`` (B, rows, hidden), the first sequence's last two rows padding."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, rows, dtype=torch.bool)
    mask[0, -2:] = False
    return tuple(Memory(torch.randn(B, rows, params.hidden_size, generator=gen), mask) for _ in g.memory)


def reference(g: CellGraph, params: CellParameters, x, states, statics, memory: tuple = ()):
    """What CompiledCell computes on that input: [out, *final states]."""
    from cellsearch.compile.cell import CompiledCell

    with torch.no_grad():
        out, final = CompiledCell(g, params.input_size, params.hidden_size,
                                  params.static_size if g.static else None, params=params)(x, states, statics,
                                                                                           memory)
    return [out, *final]


def compare(what: str, got, expected) -> None:
    """Raise ExportError unless ``got`` matches ``expected`` output by output."""
    for name, a, b in zip(["out", *("final state " + str(i) for i in range(len(expected) - 1))], got, expected):
        a = torch.as_tensor(a)
        if tuple(a.shape) != tuple(b.shape) or not torch.allclose(a, b, rtol=CHECK_TOLERANCE, atol=CHECK_TOLERANCE):
            diff = (a - b).abs().max().item() if a.shape == b.shape else f"shape {tuple(a.shape)} ≠ {tuple(b.shape)}"
            raise ExportError(f"{what} does not match the compiled cell ({name}: max difference {diff})")


def run_module(g: CellGraph, model, x, states, statics, memory: tuple = ()):
    """Run an exported module (or its TorchScript) the way a user would: [out, *final states]."""
    with torch.no_grad():
        if g.memory:
            kw = {"static": statics} if g.static else {}
            out, final = model(x, states, **kw, memory=tuple(m.values for m in memory),
                               memory_mask=tuple(m.mask for m in memory))
        else:
            out, final = model(x, states, statics) if g.static else model(x, states)
    return [out, *final]


def check_python(g: CellGraph, path: Path, params: CellParameters, seq_len: int) -> None:
    """Import the written module, ``load()`` its weights and compare it with the compiled cell."""
    x, states, statics = example(g, params, min(seq_len, 8), 2)
    memory = example_memory(g, params, 2)
    expected = reference(g, params, x, states, statics, memory)
    with imported(path) as module:
        model = module.load()
        compare(f"the exported module {path}", run_module(g, model, x, states, statics, memory), expected)


__all__ = ["CHECK_TOLERANCE", "check_python", "compare", "example", "example_memory", "reference", "run_module"]
