"""Checkpoints never run code: a crafted pickle is refused by every command that reads one, and
what `cellsearch train` writes loads as data only (torch.load with weights_only).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.support.hostile import cli, refused, tree_digest
from tests.support.paths import REPO


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "t"
    res = cli("train", "lstm", "--steps", "2", "--hidden", "8", "--batch-size", "4", "--out", str(out),
              "--no-progress", "--json")
    assert res.exit_code == 0, res.stderr
    return out / "checkpoint.pt"


# ---------------------------------------------------------------------- checkpoints never run code
class _RunsCommand:
    """Pickles as a call to os.system: what a crafted checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _checkpoint_commands(ckpt: Path, tmp_path: Path) -> list[list[str]]:
    # every CLI path that takes a checkpoint: the file or its directory
    return [["generate", str(ckpt)], ["generate", str(ckpt.parent)],
            ["train", "lstm", "--resume", str(ckpt), "--steps", "3", "--out", str(tmp_path / "o"), "--no-progress"],
            ["train", "lstm", "--resume", str(ckpt.parent), "--steps", "3", "--out", str(tmp_path / "o"),
             "--no-progress"]]


@pytest.mark.parametrize("where", ["top", "nested"])
def test_a_crafted_pickle_in_a_checkpoint_runs_no_code(checkpoint, tmp_path, where):
    marker = tmp_path / "PWNED"
    ckpt = torch.load(checkpoint, weights_only=True)
    evil = _RunsCommand(marker) if where == "top" else dict(ckpt, history=[{"step": _RunsCommand(marker)}])
    path = tmp_path / "evil" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save(evil, path)
    before = tree_digest(tmp_path / "evil")
    for args in _checkpoint_commands(path, tmp_path):
        refused(*args, says=("refused", "posix.system"))
    assert not marker.exists(), "the checkpoint ran code"
    assert tree_digest(tmp_path / "evil") == before
    from cellsearch.errors import ConfigError
    from cellsearch.training.trainer import Trainer
    from cellsearch.training.saved_model import load_model

    with pytest.raises(ConfigError):
        Trainer.from_checkpoint(path)
    with pytest.raises(ConfigError):
        load_model(path)
    assert not marker.exists()


def _damaged_checkpoints(ckpt: dict, good: Path) -> dict[str, object]:
    data = good.read_bytes()
    shapes = dict(ckpt, model={k: v[:1] for k, v in ckpt["model"].items()})
    return {"tensor": torch.zeros(3), "no-cell": {k: v for k, v in ckpt.items() if k != "cell_yaml"},
            "wrong-type": dict(ckpt, step="many"), "shapes": shapes, "version": dict(ckpt, version=99),
            "bad-vocab": dict(ckpt, vocab={"itos": [1, 2]}), "bad-cell": dict(ckpt, cell_yaml="nodes: [[["),
            "garbage": os.urandom(2000), "truncated": data[: len(data) // 2], "empty": b""}


def test_a_checkpoint_that_is_not_ours_is_one_line(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    for name, content in _damaged_checkpoints(ckpt, checkpoint).items():
        path = tmp_path / name / "checkpoint.pt"
        path.parent.mkdir()
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        before = tree_digest(path.parent)
        for args in _checkpoint_commands(path, tmp_path)[::2]:
            refused(*args, says=str(path.parent.name))
        assert tree_digest(path.parent) == before, name


def test_a_missing_checkpoint_is_one_line(tmp_path):
    refused("generate", str(tmp_path / "nothing.pt"), says="no checkpoint")


def test_checkpoints_load_as_data_only(checkpoint):
    from cellsearch.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)  # what `cellsearch train` writes loads under weights_only
    assert ckpt["step"] == 2 and isinstance(ckpt["cell_yaml"], str)


def test_no_module_deserializes_unsafely():
    """The audit as a test: no torch.load without weights_only=True, no pickle, no unsafe YAML."""
    import re

    root = REPO / "cellsearch"
    unsafe = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|yaml\.load\(|yaml\.unsafe_load|yaml\.full_load")

    def bad(line: str) -> bool:
        return bool(unsafe.search(line)) or ("torch.load(" in line and "weights_only=True" not in line)

    found = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if bad(line)]
    assert not found, found
