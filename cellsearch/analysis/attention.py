"""Attention maps of an encoder-decoder model: where the decoder looked while it answered, plotted."""

from __future__ import annotations

from pathlib import Path

import torch

from cellsearch.analysis.plots import pyplot
from cellsearch.fileio import save_figure


def plot_attention(maps: dict[str, torch.Tensor], source: list[str], output: list[str], path: str | Path,
                   title: str = "") -> Path:
    """One heat map per attend/address node: rows the output tokens, columns the source tokens;
    ``maps`` as ``SeqModel.attention_maps`` returns them (batch element 0 is drawn)."""
    plt = pyplot()
    names = list(maps)
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(1.0 + 0.45 * len(source) * max(len(names), 1),
                                                             1.2 + 0.4 * len(output)), squeeze=False)
    for ax, name in zip(axes[0], names):
        weights = maps[name][: len(output), 0, : len(source)].float().cpu().numpy()
        ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(source)), source)
        ax.set_yticks(range(len(output)), output)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:  # (whole or not at all: a full disk leaves no broken picture)
        return save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


__all__ = ["plot_attention"]
