"""Measured forward time of a cell per time step: the ``latency`` objective of a search.

``step_latency(graph, input_size, hidden_size)`` builds the cell as one ``CellRNN`` layer (fresh
weights: the time does not depend on them), runs it over ``steps`` time steps of a batch of
``batch`` zeros without gradients, ``repeats`` times after one warm-up run, and returns the
median wall time divided by ``steps``, in milliseconds. It measures this machine, its load and
its threads at that moment: compare latencies measured on one machine in one run, not across
machines. A cell that reads a memory or static inputs (attention) is not measured (None).
"""

from __future__ import annotations

import statistics
import time

import torch

from cellsearch.dsl.graph import CellGraph

LATENCY_STEPS = 32  # time steps per timed run
LATENCY_BATCH = 1  # sequences per timed run (one: the latency of a deployed step)
LATENCY_REPEATS = 5  # timed runs (the median is kept)


def step_latency(graph: CellGraph, input_size: int, hidden_size: int, *, steps: int = LATENCY_STEPS,
                 batch: int = LATENCY_BATCH, repeats: int = LATENCY_REPEATS, device: str = "cpu") -> float | None:
    """The median forward time of one time step of ``graph``, in milliseconds (see the module docstring)."""
    from cellsearch.nn.layers import CellRNN

    if graph.memory or graph.static:
        return None
    layer = CellRNN(graph, input_size, hidden_size).to(device).eval()
    x = torch.zeros(steps, batch, input_size, device=device)  # (T, B, I)
    times = []
    with torch.no_grad():
        for k in range(repeats + 1):
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            layer(x)
            if device != "cpu":
                torch.cuda.synchronize()
            if k:  # (the first run warms up: allocations, generated code)
                times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / steps
