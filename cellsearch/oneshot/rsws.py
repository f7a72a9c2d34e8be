"""Random search with weight sharing (RS-WS, Li & Talwalkar 2019) over a ``dag`` space's supernet.

The one-shot machinery (``cellsearch.oneshot.search``) with uniform sampling: (1) the supernet's
shared weights train on the task's training data, a uniformly random cell per batch (only that
cell's path runs and learns), for the search's budget; (2) ``candidates`` distinct random cells
(strategy option ``candidates``, default 10 × ``trials``) are scored with the shared weights on the
validation data; (3) the best ``trials`` are recorded (strategy ``rsws``). Checkpoints and exact
resume as ``cellsearch.oneshot.search`` describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cellsearch.dsl.graph import CellGraph
from cellsearch.oneshot.search import (CHECKPOINT, ORIGIN, STAGE, OneShotSearch, ProgressHandler, check_oneshot_config,
                                       draw, resume_oneshot, run_oneshot)
from cellsearch.spaces.base import Space
from cellsearch.storage.settings import SearchConfig

__all__ = ["CHECKPOINT", "ORIGIN", "STAGE", "STRATEGY", "RSWS", "check_rsws_config", "run_rsws", "resume_rsws"]

STRATEGY = "rsws"


class RSWS(OneShotSearch):
    """One RS-WS search in progress: a uniformly random cell per training batch, random cells scored."""

    name = STRATEGY

    def train_cell(self) -> tuple[int, ...]:
        """A uniformly random cell's decisions."""
        return draw(self.space, self.rng)[0]

    def score_cell(self) -> tuple[tuple[int, ...], CellGraph]:
        """A uniformly random cell."""
        return draw(self.space, self.rng)


def check_rsws_config(cfg: SearchConfig, space: Space) -> int:
    """Refuse settings RS-WS cannot run (ConfigError, one line); return the number of cells to score."""
    return check_oneshot_config(cfg, space, RSWS)


def run_rsws(cfg: SearchConfig, runs_dir: str | Path = "runs", *, space: Space | None = None,
             on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """RS-WS end to end: train, score, record the top ``cfg.trials``; returns the run's summary."""
    return run_oneshot(RSWS, cfg, runs_dir, space=space, on_progress=on_progress)


def resume_rsws(run_dir: str | Path, *, on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """Continue an interrupted RS-WS run from its checkpoint (a finished one: its summary again)."""
    return resume_oneshot(RSWS, run_dir, on_progress=on_progress)
