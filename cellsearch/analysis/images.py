"""Small grey-level images drawn as PNGs: a grid of sampled digits, and a decoder's attention over an image."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from cellsearch.analysis.plots import pyplot
from cellsearch.fileio import save_figure


def _save(fig, path: str | Path) -> Path:
    plt = pyplot()
    try:  # (whole or not at all: a full disk leaves no broken picture)
        return save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def plot_image_grid(images: torch.Tensor, path: str | Path, row_labels: Sequence[str] | None = None,
                    columns: int = 10, levels: int = 17, title: str = "") -> Path:
    """``images`` (N, H, W) grey levels 0..levels-1 drawn ``columns`` to a row, black on white as
    the digits are written; ``row_labels`` names each row (a conditional model: its class)."""
    plt = pyplot()
    n = images.shape[0]
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(0.6 * columns + (0.5 if row_labels else 0), 0.6 * rows + 0.4),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if k < n:
            ax.imshow(images[k].float().cpu().numpy(), cmap="gray_r", vmin=0, vmax=levels - 1)
    for r, label in enumerate(row_labels or []):
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_image_attention(image: torch.Tensor, maps: dict[str, torch.Tensor], output: list[str], path: str | Path,
                         levels: int = 17, title: str = "") -> Path:
    """Where a decoder looked in an image while it wrote each output token: the image (H, W) and,
    per output token, its attention weights over the H·W pixels (the memory rows, row by row) drawn
    on the image's grid; one row of panels per attend node of ``maps`` (as
    ``SeqModel.attention_maps`` returns them; batch element 0 is drawn)."""
    plt = pyplot()
    height, width = image.shape
    names = list(maps)
    fig, axes = plt.subplots(max(len(names), 1), len(output) + 1, figsize=(1.3 * (len(output) + 1),
                                                                            1.5 * max(len(names), 1) + 0.4),
                             squeeze=False)
    for row, name in enumerate(names):
        ax = axes[row][0]
        ax.imshow(image.float().cpu().numpy(), cmap="gray_r", vmin=0, vmax=levels - 1)
        ax.set_title("image", fontsize=9)
        ax.set_ylabel(name, fontsize=8)
        weights = maps[name][: len(output), 0, : height * width].float().cpu()
        for t, token in enumerate(output):
            ax = axes[row][t + 1]
            # the weights as a heat map (white 0, dark red the largest), the digit's strokes outlined on it
            ax.imshow(weights[t].reshape(height, width).numpy(), cmap="Reds", vmin=0.0,
                      vmax=max(float(weights[t].max()), 2.0 / (height * width)))  # (uniform weights: half-tone)
            ax.contour(image.float().cpu().numpy(), levels=[levels / 2], colors="black", linewidths=0.8)
            ax.set_title(repr(token) if token.strip() == token and len(token) == 1 else token, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["plot_image_grid", "plot_image_attention"]
