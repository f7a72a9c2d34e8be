"""A memory network's hop attention over one story, drawn as the lecture draws it.

The story's sentences are the rows, one column per hop, each cell shaded by the weight that hop
gave the sentence (Sukhbaatar et al. 2015, Table 1's right side and Fig. 2); the question, the
right answer and the model's answer are the title.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from cellsearch.analysis.plots import pyplot
from cellsearch.fileio import save_figure


def plot_hops(weights: torch.Tensor, sentences: Sequence[str], question: str, answer: str, predicted: str,
              path: str | Path, supports: Sequence[int] = ()) -> Path:
    """Draw ``weights`` (hops, N) over the ``sentences`` (N) into ``path`` (PNG, PDF or SVG);
    ``supports``: the indices of the supporting facts, marked with a star."""
    plt = pyplot()
    hops, n = weights.shape
    fig, ax = plt.subplots(figsize=(1.6 + 0.18 * max(len(s) for s in sentences) * 0.55 + 0.9 * hops, 0.9 + 0.32 * n))
    values = weights.float().cpu().numpy().T  # (N, hops)
    ax.imshow(values, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(n):
        for k in range(hops):
            ax.text(k, i, f"{values[i, k]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if values[i, k] > 0.5 else "black")
    ax.set_xticks(range(hops), [f"hop {k + 1}" for k in range(hops)])
    ax.set_yticks(range(n), [("* " if i in supports else "") + s for i, s in enumerate(sentences)])
    ax.xaxis.tick_top()
    ax.set_title(f"{question}?  answer: {answer}  (model: {predicted})", fontsize=9, pad=22)
    fig.tight_layout()
    try:  # (whole or not at all: a full disk leaves no broken picture)
        return save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


__all__ = ["plot_hops"]
