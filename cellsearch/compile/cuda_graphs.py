"""CUDA graphs of a cell's time loop: its forward and backward captured once per shape, then replayed.

On a GPU a compiled cell's time loop is launch-bound: every step launches a matmul and a few
small kernels, each costing Python and driver time while the GPU waits. A CUDA graph records
the whole loop's launches once and replays them as one. ``CapturedLoop`` owns static input
buffers, the forward graph and, captured at the first backward, one backward graph per pattern
of given gradients; replaying copies the inputs in and clones the outputs out, so what callers
hold is never overwritten by a later replay.

The values a forward leaves for its backward live in the capture's memory, so a capture is
*leased* from its forward until its backward has run (or the autograd graph holding it is
freed); a second forward of the same shape meanwhile gets a second capture, and past
``PER_SHAPE`` captures, or ``MAX_SHAPES`` shapes, or if capturing fails, the caller runs the
loop eagerly: shapes that keep changing (random BPTT lengths) fall back transparently.
``capture_loop`` captures a program's loop (``loop.py``) and ``GraphedRecurrence`` replays it
under autograd.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Callable, Hashable, Sequence

import torch

from cellsearch.compile.loop import backward_pass, forward_pass


MAX_SHAPES = 8  # distinct input shapes captured per program
PER_SHAPE = 2  # captures per shape: forwards whose backward has not run yet


class CapturedLoop:
    """One captured forward (and its backward graphs) at fixed input shapes.

    ``forward(inputs) -> (outputs, state)`` and ``backward(state, grads, needs) -> grads`` are
    plain functions of tensors; ``state`` is what the forward leaves for the backward."""

    def __init__(self, forward: Callable, backward: Callable, inputs: Sequence[torch.Tensor]):
        self.backward_fn = backward
        self.pool = torch.cuda.graph_pool_handle()
        self.static_in = [t.detach().clone() for t in inputs]
        self.busy = False
        self.generation = 0
        self._backward_graphs: dict = {}
        with torch.no_grad():
            _on_side_stream(lambda: forward(self.static_in))  # warm-up: compiles kernels, allocates workspaces
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=self.pool):
                self.static_out, self.state = forward(self.static_in)

    def run_forward(self, inputs: Sequence[torch.Tensor]) -> tuple:
        """Copy ``inputs`` into the capture, replay it and return copies of its outputs."""
        for static, t in zip(self.static_in, inputs):
            static.copy_(t)
        self.graph.replay()
        self.generation += 1
        return tuple(o.clone() for o in self.static_out)

    def run_backward(self, grads: Sequence[torch.Tensor | None], needs: Sequence[bool]) -> list:
        """The input gradients of the last forward: replays the backward graph captured for this
        pattern of given ``grads`` and wanted ``needs`` (captured on first use); copies, None where not needed."""
        key = (tuple(g is not None for g in grads), tuple(needs))
        entry = self._backward_graphs.get(key)
        with torch.no_grad():
            if entry is None:
                static_grads = [None if g is None else g.detach().clone() for g in grads]
                _on_side_stream(lambda: self.backward_fn(self.state, static_grads, needs))
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=self.pool):
                    static_out = self.backward_fn(self.state, static_grads, needs)
                entry = self._backward_graphs[key] = (graph, static_grads, static_out)
            graph, static_grads, static_out = entry
            for static, g in zip(static_grads, grads):
                if static is not None:
                    static.copy_(g)
            graph.replay()
            return [None if o is None else o.clone() for o in static_out]

    def release(self) -> None:
        """Mark the capture free for the next forward."""
        self.busy = False


def _on_side_stream(fn: Callable) -> None:
    """Run ``fn`` once on a side stream, as CUDA graph capture wants before capturing."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)


class Lease:
    """Holds a capture busy; frees it when released or garbage-collected (e.g. the autograd graph
    that held it was dropped without a backward)."""

    def __init__(self, loop: CapturedLoop):
        self.loop = loop
        self.generation = loop.generation
        self._finalizer = weakref.finalize(self, loop.release)

    def check(self) -> None:
        """Raise RuntimeError if the capture ran another forward since this lease was taken (its
        saved state is then another forward's)."""
        if self.loop.generation != self.generation:
            raise RuntimeError("a captured time loop was replayed again before this backward ran "
                               "(a second backward through one graph?); disable CUDA graphs for it")

    def release(self) -> None:
        """Free the capture now (at most once; garbage collection would do it otherwise)."""
        self._finalizer()


class GraphCache:
    """The captures of one program, by input shapes (see the module docstring)."""

    def __init__(self) -> None:
        self.loops: dict[Hashable, list[CapturedLoop]] = {}
        self.disabled = False

    def acquire(self, key: Hashable, make: Callable[[], CapturedLoop]) -> CapturedLoop | None:
        """A free capture for ``key`` (made if allowed), marked busy; None: run eagerly."""
        if self.disabled or torch.cuda.is_current_stream_capturing():
            return None
        loops = self.loops.get(key)
        if loops is None:
            if len(self.loops) >= MAX_SHAPES:
                return None
            loops = self.loops[key] = []
        for loop in loops:
            if not loop.busy:
                loop.busy = True
                return loop
        if len(loops) >= PER_SHAPE:
            return None
        try:
            loop = make()
        except Exception as exc:  # an op that cannot be captured: keep this program eager
            self.disabled = True
            warnings.warn(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); running eagerly",
                          RuntimeWarning, stacklevel=3)
            return None
        loop.busy = True
        loops.append(loop)
        return loop


class GraphedRecurrence(torch.autograd.Function):
    """``recurrence.Recurrence`` as a replay: the forward and backward of a captured loop (``capture_loop``)."""

    @staticmethod
    def forward(ctx, loop: CapturedLoop, n_inputs: int, *tensors):
        outputs = loop.run_forward(tensors)
        ctx.lease = Lease(loop)
        return outputs

    @staticmethod
    def backward(ctx, *grads):
        lease: Lease = ctx.lease
        lease.check()
        grads_out = lease.loop.run_backward(grads, ctx.needs_input_grad[2:])
        lease.release()
        return (None, None, *grads_out)


def capture_loop(program, T: int, n_ext: int, n_const: int, tensors: Sequence[torch.Tensor]) -> CapturedLoop | None:
    """A leased CUDA-graph capture of the loop at these shapes, or None (run it eagerly)."""
    if program.cuda_graph_cache is None:
        program.cuda_graph_cache = GraphCache()
    key = (T, n_ext, n_const, tuple((tuple(t.shape), t.dtype, t.device) for t in tensors))

    def make() -> CapturedLoop:
        def forward(inputs):
            outputs, seqs, saved, out = forward_pass(program, T, n_ext, n_const, inputs)
            return outputs, (seqs, saved, out)

        def backward(state, grads, needs):
            seqs, saved, out = state
            inputs = (*loop_inputs, *(() if out is None else (out,)))
            return backward_pass(program, T, n_ext, n_const, inputs, seqs, saved, grads, needs)

        loop = CapturedLoop(forward, backward, tensors)
        loop_inputs = loop.static_in
        return loop

    return program.cuda_graph_cache.acquire(key, make)


__all__ = ["CapturedLoop", "GraphCache", "GraphedRecurrence", "Lease", "MAX_SHAPES", "PER_SHAPE", "capture_loop"]
