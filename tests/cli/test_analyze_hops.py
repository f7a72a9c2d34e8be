"""``cellsearch analyze hops``: a memory network's attention over one story as a picture."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cellsearch.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("memn2n")
    res = runner.invoke(app, ["train", "memn2n", "--task", "babi", "-t", "task=16", "-t", "train_examples=100",
                              "--steps", "5", "--hidden", "8", "--threads", "1", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_hops_draws_the_story_and_prints_the_weights(trained, tmp_path):
    png = tmp_path / "hops.png"
    res = runner.invoke(app, ["analyze", "hops", str(trained), "-o", str(png), "--question", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(out["weights"]) == 3 and all(len(hop) == len(out["story"]) == 9 for hop in out["weights"])
    assert all(abs(sum(hop) - 1) < 1e-3 for hop in out["weights"])
    assert out["question"].startswith("what color is") and len(out["supports"]) == 3


@pytest.mark.parametrize("args,message", [
    (["--question", "5000"], "--question 5000 is out of range"),
    (["--split", "train"], "--split must be valid or test"),
    (["--question", "-1"], "--question must be at least 0"),
])
def test_bad_input_is_one_line(trained, tmp_path, args, message):
    res = runner.invoke(app, ["analyze", "hops", str(trained), "-o", str(tmp_path / "h.png"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and res.stderr.strip().count("\n") == 0


def test_bad_output_and_a_model_that_is_no_memory_network_are_refused(trained, tmp_path):
    res = runner.invoke(app, ["analyze", "hops", str(trained), "-o", str(tmp_path / "h.txt")])
    assert res.exit_code == 2 and "should end in .png, .pdf or .svg" in res.stderr
    lm = tmp_path / "lstm"
    res = runner.invoke(app, ["train", "lstm", "--task", "babi", "-t", "train_examples=100", "--steps", "1",
                              "--hidden", "8", "--threads", "1", "--json", "--out", str(lm)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["analyze", "hops", str(lm), "-o", str(tmp_path / "h.png")])
    assert res.exit_code == 2 and "not a memory network on babi" in res.stderr


def test_generate_points_a_memory_network_to_analyze_hops(trained):
    res = runner.invoke(app, ["generate", str(trained)])
    assert res.exit_code == 2, res.output
    assert "cellsearch analyze hops" in res.stderr and res.stderr.strip().count("\n") == 0


def test_hops_runs_where_cuda_is_available(trained, tmp_path, monkeypatch):
    """On a CUDA machine the model must not land on the GPU while the story's batch stays on the CPU:
    CUDA is made to look available (this machine has none, so anything that goes there fails)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    png = tmp_path / "hops.png"
    res = runner.invoke(app, ["analyze", "hops", str(trained), "-o", str(png), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["output"] == str(png) and png.exists()


def test_one_picture_check_serves_analyze_and_generate(trained, tmp_path, monkeypatch):
    import cellsearch.cli as cli
    import cellsearch.cli.analyze as analyze
    import cellsearch.cli.train as train
    from cellsearch.errors import ConfigError

    assert analyze.check_picture is cli.check_picture and train.check_picture is cli.check_picture

    def refuse(path, option):
        raise ConfigError(f"{option}: refused by the shared check")

    monkeypatch.setattr(analyze, "check_picture", refuse)
    res = runner.invoke(app, ["analyze", "hops", str(trained), "-o", str(tmp_path / "h.png")])
    assert res.exit_code == 2 and "--output: refused by the shared check" in res.stderr
    assert not (tmp_path / "h.png").exists()
