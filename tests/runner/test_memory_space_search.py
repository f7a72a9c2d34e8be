"""The memory space searched from the CLI on a stack task: every strategy runs end to end (on Ray for
one), the leaderboard holds cells that carry each kind of memory, and the best cell exports as py and
TorchScript and runs standalone; darts refuses the memory decision in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.oneshot.strategies import ONESHOT_STRATEGIES
from cellsearch.storage.store import read_results
from cellsearch.strategies import STRATEGY_NAMES

pytestmark = pytest.mark.ray  # the Ray search starts a local Ray

runner = CliRunner()
TINY = ["--space", "memory", "--tasks", "anbn", "--budget", "2", "--hidden", "8", "--no-progress", "--seed", "3"]


def _search(tmp_path, name: str, *args: str):
    res = runner.invoke(app, ["search", *TINY, "--name", name, "--runs", str(tmp_path / "runs"), *args])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["leaderboard", str(tmp_path / "runs" / name), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", [*STRATEGY_NAMES, *(s for s in ONESHOT_STRATEGIES if s != "darts")])
def test_every_strategy_searches_the_memory_space(tmp_path, strategy):
    extra = ["-o", "candidates=6"] if strategy in ONESHOT_STRATEGIES else []
    rows = _search(tmp_path, "mem", "--strategy", strategy, "--trials", "4", "--backend", "local", *extra)
    assert rows and rows[0]["status"] == "ok"
    assert all(r["status"] in ("ok", "rejected", "stopped-early") for r in rows)


def test_darts_refuses_the_memory_decision_in_one_line(tmp_path):
    res = runner.invoke(app, ["search", *TINY, "--strategy", "darts", "--trials", "2", "--backend", "local",
                              "--runs", str(tmp_path)])
    assert res.exit_code == 2
    assert "darts cannot relax the memory decision" in res.output and len(res.output.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing started


@pytest.mark.slow
def test_a_ray_search_of_the_memory_space_and_its_best_cell_exported(tmp_path):
    rows = _search(tmp_path, "ray", "--strategy", "random", "--trials", "12", "--backend", "ray",
                   "--parallel", "2", "--cpus-per-trial", "1")
    trained = read_results(tmp_path / "runs" / "ray")
    assert len(trained) == 12 and trained[trained.reused_from.isna()].node.notna().all()  # on Ray nodes
    text = json.dumps([r["equations"] for r in rows])
    assert "top(" in text or "address(" in text  # sampled cells carry memories
    run = tmp_path / "runs" / "ray"
    rank = next(r["rank"] for r in rows if r["status"] == "ok" and any(op in json.dumps(r["equations"])
                                                                        for op in ("top(", "read(")))
    for fmt, out in (("py", tmp_path / "best.py"), ("torchscript", tmp_path / "scripted.pt")):
        res = runner.invoke(app, ["export", str(run), "--rank", str(rank), "-f", fmt, "-o", str(out),
                                  "-I", "8", "-H", "8"])
        assert res.exit_code == 0, res.output
        assert out.exists()
    script = ("import torch, best\n"
              "m = best.load()\n"
              "out, states = m(torch.randn(5, 2, 8))\n"
              "ts = torch.jit.load('scripted.pt')\n"
              "ts_out = ts(torch.randn(5, 2, 8))[0]\n"
              "assert out.shape == (5, 2, 8) and torch.isfinite(out).all() and ts_out.shape == (5, 2, 8)\n"
              "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
