"""Which step functions run a cell's loop on a device: the eager generated code or the fused Triton kernels.

``CompiledCell(pointwise=...)``: "auto" (the fused kernels on CUDA where Triton is installed,
the eager code elsewhere), "fused" (always; on CPU only under ``TRITON_INTERPRET=1``) or
"eager". A program whose fused kernels Triton cannot build runs its eager steps from then on
(with "auto"). Cells that read a memory, or run an op without Triton rules (``mixed``) in
their time loop, run eagerly ("fused" refuses them in one line).
"""

from __future__ import annotations

import warnings

import torch

from cellsearch.compile.codegen import CellProgram
from cellsearch.compile.fused import FusedProgram, can_fuse
from cellsearch.errors import CellsearchError
from cellsearch.ops.registry import OPS


POINTWISE_CHOICES = ("auto", "eager", "fused")


def runtime_program(program: CellProgram, device: torch.device, mode: str = "fused"):
    """The program whose step functions run the loop on ``device``: the fused Triton kernels
    (``fused.py``) where ``program.pointwise`` asks for them ("auto": on CUDA when Triton is
    there) and the loop's gradient is our own backward, else the eager generated code."""
    choice = program.pointwise
    if choice == "eager" or mode != "fused" or not program.schedule.recurrent_states:
        return program
    if program.graph.memory or program.graph.memory_states:  # the fused kernels are pointwise: memory ops are eager
        if choice == "fused":
            raise CellsearchError(f"pointwise='fused' does not support attend() or memory states "
                                  f"(cell '{program.graph.name}'); use 'auto' or 'eager'")
        return program
    eager_only = _eager_only_ops(program)
    if eager_only:  # an op without Triton rules in the loop (mixed: its α gradient is a reduction)
        if choice == "fused":
            raise CellsearchError(f"pointwise='fused' does not support {', '.join(eager_only)}() in the time loop "
                                  f"(cell '{program.graph.name}'); use 'auto' or 'eager'")
        return program
    if choice == "auto" and device.type != "cuda":
        return program
    if not can_fuse(device):
        if choice == "fused":
            raise CellsearchError("pointwise='fused' needs Triton on a CUDA device "
                                  "(or TRITON_INTERPRET=1 on the CPU)")
        return program
    if program.fused is None:
        program.fused = FusedProgram(program)
    return program.fused


def _eager_only_ops(program: CellProgram) -> list[str]:
    """The ops of ``program``'s time loop without Triton rules (found once per program: every forward asks)."""
    if program.eager_only_ops is None:
        ops = (OPS[program.graph.node_map[n].op] for n in program.schedule.loop_nodes)
        program.eager_only_ops = sorted({op.name for op in ops if not (op.triton or op.is_matmul or op.is_literal)})
    return program.eager_only_ops


def unfusable(program: CellProgram, exc: Exception) -> bool:
    """After Triton failed on ``program``'s fused kernels (a compiler it does not support, say):
    with pointwise "auto", warn once and run this program's eager steps from now on (True)."""
    if program.pointwise != "auto" or not type(exc).__module__.startswith("triton"):
        return False
    warnings.warn(f"fused kernels of cell '{program.graph.name}' failed in Triton ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); running its eager steps", RuntimeWarning,
                  stacklevel=4)
    program.pointwise = "eager"
    return True
