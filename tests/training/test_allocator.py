"""The C allocator keeps freed memory for reuse (cellsearch/training/allocator.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from cellsearch.training import allocator
from tests.support.paths import REPO

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


# Measured in a fresh interpreter: page faults are counted for the whole process (RUSAGE_SELF), and a
# test worker's process carries threads and heaps of the tests before (Ray's client, torch's pools)
# whose faults would be counted with the population's.
_MEASURE = """
import ctypes, ctypes.util, resource
from cellsearch.training import allocator
from tests.support.paths import REPO
from cellsearch.training.config import TrainConfig
from cellsearch.training.population import Member, PopulationTrainer

def faults_per_step(trainer, steps=6):
    trainer.train_step(trainer.trainers)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        trainer.train_step(trainer.trainers)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
population = PopulationTrainer(TrainConfig(cell="lstm", hidden_size=64, batch_size=32, steps=100),
                               [Member(seed=k) for k in range(4)])
assert allocator.keep_freed_memory() and allocator.keep_freed_memory()  # (again: nothing changes)
kept = faults_per_step(population)
libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD: glibc's defaults
libc.mallopt(-1, 128 * 1024)
libc.malloc_trim(0)
print(kept, faults_per_step(population))
"""


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_a_populations_step_buffers_are_reused_not_page_faulted_anew():
    """A population of 4 LSTMs at hidden 64 on Arithmetic (whole-sequence buffers of a few MB whose
    sizes change with every batch's length): with glibc's fixed default thresholds its steps fault
    thousands of pages in again; kept for reuse, few."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    kept, default = map(float, out.stdout.split())
    assert kept < default / 5, (kept, default)


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda *a, **k: ("musl", "1.2"))
    assert allocator.keep_freed_memory() is False
