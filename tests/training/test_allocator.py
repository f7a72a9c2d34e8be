"""The C allocator keeps freed memory for reuse (cellsearch/training/allocator.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import resource

import pytest

from cellsearch.training import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _faults_per_step(trainer, steps: int = 6) -> float:
    trainer.train_step(trainer.trainers)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        trainer.train_step(trainer.trainers)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_a_populations_step_buffers_are_reused_not_page_faulted_anew():
    """A population of 4 LSTMs at hidden 64 on Arithmetic (whole-sequence buffers of a few MB whose
    sizes change with every batch's length): with glibc's fixed default thresholds its steps fault
    thousands of pages in again; kept for reuse, few."""
    from cellsearch.training.population import Member, PopulationTrainer
    from cellsearch.training.config import TrainConfig

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    population = PopulationTrainer(TrainConfig(cell="lstm", hidden_size=64, batch_size=32, steps=100),
                                   [Member(seed=k) for k in range(4)])
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()  # (again: nothing changes)
    kept = _faults_per_step(population)
    try:
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD: glibc's defaults
        libc.mallopt(-1, 128 * 1024)
        libc.malloc_trim(0)
        default = _faults_per_step(population)
    finally:
        allocator._done = None
        allocator.keep_freed_memory()
    assert kept < default / 5, (kept, default)


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda *a, **k: ("musl", "1.2"))
    assert allocator.keep_freed_memory() is False
