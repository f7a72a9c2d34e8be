"""Images drawn as PNGs: a grid of digits and a decoder's attention over an image's pixels."""

from __future__ import annotations

import torch

from cellsearch.analysis.images import plot_image_attention, plot_image_grid


def _pixels(path):
    from matplotlib.image import imread

    return imread(path)


def test_grid_draws_the_images_given(tmp_path):
    blank, ink = torch.zeros(3, 8, 8, dtype=torch.long), torch.full((3, 8, 8), 16, dtype=torch.long)
    a = plot_image_grid(blank, tmp_path / "blank.png", columns=3)
    b = plot_image_grid(ink, tmp_path / "ink.png", columns=3)
    assert _pixels(a).shape == _pixels(b).shape
    assert _pixels(b).mean() < _pixels(a).mean()  # black ink drawn where the levels are high
    labelled = plot_image_grid(blank, tmp_path / "rows.png", row_labels=["zero"], columns=3)
    assert labelled.is_file()


def test_attention_is_drawn_on_the_image_grid(tmp_path):
    image = torch.zeros(8, 8, dtype=torch.long)
    image[2:6, 3] = 16
    weights = torch.zeros(3, 1, 64)
    weights[0, 0, 0] = 1.0  # the first output looked at the top-left pixel only
    weights[1, 0] = 1 / 64
    weights[2, 0, 63] = 1.0
    path = plot_image_attention(image, {"c": weights}, ["o", "n", "<eos>"], tmp_path / "a.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"

