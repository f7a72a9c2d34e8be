"""The time loop under autograd: ``recur`` runs it through our own backward, a replayed CUDA graph, or plainly.

When a gradient is needed and the mode is "fused", the loop runs inside ``Recurrence``, a
custom autograd Function whose backward is ``loop.backward_pass`` (on CUDA, where the program
asks for it, as a captured CUDA graph replayed: ``cuda_graphs.py``); in inference, or with
``mode="autograd"``, the steps run plainly (autograd then differentiates every step itself).
"""

from __future__ import annotations

from typing import Sequence

import torch

from cellsearch.compile.codegen import CellProgram
from cellsearch.compile.cuda_graphs import GraphedRecurrence, capture_loop
from cellsearch.compile.loop import backward_pass, batch_shape, forward_pass, packed, run_loop, time_dim
from cellsearch.compile.pointwise import runtime_program, unfusable


class Recurrence(torch.autograd.Function):
    """The time loop as one autograd node: ``loop.forward_pass`` forward, ``loop.backward_pass`` backward."""

    @staticmethod
    def forward(ctx, program: CellProgram, T: int, n_ext: int, n_const: int, *tensors):
        outputs, seqs, saved, out = forward_pass(program, T, n_ext, n_const, tensors)
        ctx.program = program
        ctx.T = T
        ctx.seqs = seqs
        ctx.saved_steps = saved
        ctx.n_ext, ctx.n_const = n_ext, n_const
        ctx.save_for_backward(*tensors, *(() if out is None else (out,)))
        return outputs

    @staticmethod
    def backward(ctx, *grads):
        grads_out = backward_pass(ctx.program, ctx.T, ctx.n_ext, ctx.n_const, ctx.saved_tensors, ctx.seqs,
                                  ctx.saved_steps, grads, ctx.needs_input_grad[4:])
        return (None, None, None, None, *grads_out)


def recur(program: CellProgram, mode: str, T: int, ext: Sequence[torch.Tensor], consts: Sequence[torch.Tensor],
          init: Sequence[torch.Tensor]) -> tuple[torch.Tensor | None, tuple]:
    """The time loop: (the output sequence if the output is a recurrent state, else None; the
    recurrent states' final values). Through ``Recurrence`` when a gradient is needed and
    ``mode`` is "fused" (on CUDA as a replayed CUDA graph where ``program.cuda_graphs``); a
    population's stacked tensors (see ``compile/population.py``) work the same."""
    schedule = program.schedule
    if not schedule.recurrent_states:
        return None, ()
    has_out = schedule.graph.output in schedule.recurrent_states
    tensors = (*ext, *consts, *init)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if need_grad and mode == "fused":
        runtime = runtime_program(program, init[0].device)
        try:
            loop = (capture_loop(runtime, T, len(ext), len(consts), tensors)
                    if program.cuda_graphs and init[0].is_cuda else None)
            if loop is not None:
                res = GraphedRecurrence.apply(loop, len(tensors), *tensors)
            else:
                res = Recurrence.apply(runtime, T, len(ext), len(consts), *tensors)
        except Exception as exc:
            if runtime is program or not unfusable(program, exc):
                raise
            return recur(program, mode, T, ext, consts, init)
        return (res[0], tuple(res[1:])) if has_out else (None, tuple(res))
    # no gradient through this loop (inference), or plain autograd through every step
    runtime = program if need_grad else runtime_program(program, init[0].device, mode)
    loop_consts = consts if need_grad else packed(runtime, consts, batch_shape(program, init)[-1])
    try:
        seqs, _ = run_loop(runtime, T, ext, loop_consts, init, keep_saved=False)
    except Exception as exc:
        if runtime is program or not unfusable(program, exc):
            raise
        return recur(program, mode, T, ext, consts, init)
    out = None
    if has_out:
        k = schedule.recurrent_states.index(schedule.graph.output)
        out = torch.stack([st[k] for st in seqs], time_dim(program, init))
    return out, tuple(seqs[-1])
