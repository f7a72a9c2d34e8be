"""``cellsearch generate --image`` (a grid of sampled digits) and ``--test-image`` (caption a test
image, its attention drawn over the image): the files written and every refusal, one line, exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

pytest.importorskip("sklearn")

from cellsearch.cli import app  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    for name, args in {"cond": ["gru", "--task", "digits", "-t", "conditional=true"],
                       "plain": ["lstm", "--task", "digits"],
                       "cap": ["attn-gru", "--task", "digits-caption"]}.items():
        res = runner.invoke(app, ["train", *args, "--steps", "2", "--hidden", "16", "--json",
                                  "--out", str(root / name)])
        assert res.exit_code == 0, res.output
    return root


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("model", ["cond", "plain"])
def test_image_writes_a_grid_of_samples(checkpoints, tmp_path, model):
    out = tmp_path / "grid.png"
    res = runner.invoke(app, ["generate", str(checkpoints / model), "--image", str(out), "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert _png(out) and "image:" in res.stderr


def test_same_seed_same_samples(checkpoints, tmp_path):
    outs = []
    for k in range(2):
        outs.append(tmp_path / f"g{k}.png")
        res = runner.invoke(app, ["generate", str(checkpoints / "cond"), "--image", str(outs[-1]),
                                  "--temperature", "0.7", "--top-k", "5"])
        assert res.exit_code == 0, res.output
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_test_image_captions_and_draws_attention_over_the_image(checkpoints, tmp_path):
    out = tmp_path / "attention.png"
    res = runner.invoke(app, ["generate", str(checkpoints / "cap"), "--test-image", "4", "--attention-map", str(out)])
    assert res.exit_code == 0, res.output
    assert _png(out)
    assert set(res.stdout.strip()) <= set("efghinorstuvwxz")  # a name's letters, not the pixels


@pytest.mark.parametrize("model, args, message", [
    ("cond", ["--image", "{tmp}/g.jpg"], "--image: {tmp}/g.jpg should end in .png, .pdf or .svg"),
    ("cond", ["--image", "{tmp}/none/g.png"], "--image: no directory {tmp}/none"),
    ("cap", ["--image", "{tmp}/g.png"], "--image needs a model trained on the digits task (this one: digits-caption)"),
    ("cond", ["--image", "{tmp}/g.png", "--beam", "2"], "--image samples images: use --temperature"),
    ("cond", ["--image", "{tmp}/g.png", "--prompt", "1"], "--image samples whole images: leave out --prompt"),
    ("cap", ["--image", "{tmp}/g.png", "--test-image", "1"], "use one or the other"),
    ("cond", ["--test-image", "3"], "--test-image needs a model trained on the digits-caption task (this one: digits)"),
    ("cap", ["--test-image", "250"], "--test-image must be at most 249 (the digits test set has 250 images), not 250"),
    ("cap", ["--test-image", "-1"], "--test-image must be at least 0, not -1"),
    ("cap", ["--test-image", "2", "--prompt", "AB"], "use either --prompt or --test-image, not both"),
    ("cond", ["--attention-map", "{tmp}/a.png"], "--attention-map needs an encoder-decoder model"),
    ("cond", ["--image", "{tmp}/" + "名" * 100 + ".png"], "exceeds limit 'file name length'"),
    ("cap", ["--test-image", str(10 ** 20)], "--test-image must be at most 249"),
])
def test_refusals_are_one_line(checkpoints, tmp_path, model, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    res = runner.invoke(app, ["generate", str(checkpoints / model), *args])
    assert res.exit_code == 2, res.output
    assert message.format(tmp=tmp_path) in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
