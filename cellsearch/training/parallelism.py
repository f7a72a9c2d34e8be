"""How trainings use the machine's CPUs: torch's threads in a process, independent jobs in worker processes."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch


def use_threads(n: int | None) -> int:
    """Set torch's intra-op CPU threads to ``n`` for the rest of the process (None or 0: leave them
    as they are); returns the count before. The one place cellsearch sets torch's thread count;
    library objects set it only for as long as they work (``torch_threads``)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    return before


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``n`` while the block runs (None or 0: left as they are),
    then put back: a training asked for its threads, not for the rest of its caller's process."""
    before = use_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def map_in_workers(fn: Callable[[Any], Any], jobs: list, workers: int = 1,
                   on_result: Callable[[int, int, Any], None] | None = None) -> list:
    """``fn(job)`` for every job — in ``workers`` processes, or in this one when ``workers <= 1`` —
    calling ``on_result(i, n, result)`` as results arrive; returns them in completion order.
    ``fn`` must be importable (a module-level function) and should pin its own torch threads."""
    from cellsearch.limits import MAX_PARALLEL, check_limit

    check_limit("workers", "parallel", workers, MAX_PARALLEL)  # (each one a process)
    results: list = []
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from cellsearch.training.allocator import keep_freed_memory

        # (the workers are processes of their own, tuned for training steps as the command line is)
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=keep_freed_memory) as pool:
            for fut in as_completed([pool.submit(fn, job) for job in jobs]):
                results.append(fut.result())
                if on_result:
                    on_result(len(results), len(jobs), results[-1])
    else:
        for job in jobs:
            results.append(fn(job))
            if on_result:
                on_result(len(results), len(jobs), results[-1])
    return results
