"""The kill -9 check of a one-shot search: killed at its first checkpoint, resumed, compared with an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from cellsearch.storage.store import Store
from tests.support.hostile import cli
from tests.support.paths import REPO


def kill_resume_and_rerun(runs: Path, strategy: str, flags: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start ``cellsearch search --strategy STRATEGY FLAGS`` as run ``k``, kill -9 it once its first
    checkpoint exists, resume it, and run the same search uninterrupted as run ``u``. Asserts both
    recorded the same cells with the same scores (three of them); returns both final checkpoints."""
    cmd = [sys.executable, "-m", "cellsearch", "search", "--strategy", strategy, *flags, "--no-progress",
           "--runs", str(runs)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([*cmd, "--name", "k"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = runs / "k" / "oneshot.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the search ended before it could be killed"
    out = cli("resume", str(runs / "k"), "--no-progress")
    assert out.exit_code == 0, (out.stdout, out.stderr, out.exception)
    subprocess.run([*cmd, "--name", "u"], env=env, check=True, stdout=subprocess.DEVNULL)
    rows = [[(r["hash"], r["score"]) for r in Store(runs / d / "results.db", readonly=True).rows()]
            for d in ("k", "u")]
    assert rows[0] == rows[1] and len(rows[0]) == 3
    killed, uninterrupted = (torch.load(runs / d / "oneshot.pt", weights_only=True) for d in ("k", "u"))
    return killed, uninterrupted
