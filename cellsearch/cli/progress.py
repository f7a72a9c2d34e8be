"""Progress on the terminal: the one renderer of the library's progress events as rich bars.

The runner and the trainer print nothing; they tell an ``on_event``/``progress`` callback what
happens (``cellsearch.runner.events``, ``cellsearch.training.events``: ``TrainingStarted``/``StepDone``/
``TrainingStopped``, ``cellsearch.tasks.data``'s ``FileDownload``). ``ProgressBars`` is that
callback for the commands: the search's bar (trials done, running, best score, ETA) with a
warning line above it when a stage rejects every candidate (``StageRejectedAll``), a bar per
batch of retraining jobs (the last job's result, ETA), the training bar (loss, steps per second)
and a bar per downloaded file (bytes, speed, ETA). ``progress_bars(enabled)`` gives
it as a context manager (``None`` when progress is off: the library stays quiet).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

from cellsearch.runner.events import (JobFinished, JobsEnded, JobsStarted, SearchEnded, SearchStarted, StageRejectedAll,
                                      TrialFinished)
from cellsearch.tasks.data import FileDownload
from cellsearch.training.events import StepDone, TrainingStarted, TrainingStopped


def _score(best: float | None) -> str:
    return "–" if best is None else f"{best:.4f}"


class ProgressBars:
    """Draws progress events as rich progress bars on ``console`` (None: rich's default, stdout);
    one bar at a time, each started by its start event and stopped by its end event or ``close``."""

    def __init__(self, console: Console | None = None):
        self.console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None  # set with _bar
        self._start_step = 0
        self._started = 0.0

    def __call__(self, event: object) -> None:
        if isinstance(event, SearchStarted):
            self._begin(Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("running {task.fields[running]}"), TextColumn("best {task.fields[best]}"),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console),
                        "search", total=event.total, completed=min(event.done, event.total), running=0,
                        best=_score(event.best))
        elif isinstance(event, TrialFinished):
            self._update(completed=min(event.done, event.total), running=event.running, best=_score(event.best))
        elif isinstance(event, StageRejectedAll):
            self.warn(event.message)
        elif isinstance(event, JobsStarted):
            self._begin(Progress(TextColumn(f"[bold]{event.label}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[last]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=self.console),
                        event.label, total=event.total, last="")
        elif isinstance(event, JobFinished):
            last = f"{event.cell} {event.task} lr {event.lr:.3g} seed {event.seed}: " + (
                f"{event.test:.4f}" if event.test is not None else event.status)
            self._update(advance=1, last=last)
        elif isinstance(event, TrainingStarted):
            steps = "{task.completed}/{task.total} steps" if event.steps else "{task.completed} steps"
            self._begin(Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(steps),
                                 TextColumn("loss {task.fields[loss]:.4f}"),
                                 TextColumn("{task.fields[speed]:.1f} steps/s"), TimeElapsedColumn(),
                                 transient=False, console=self.console),
                        f"{event.cell} on {event.task}", total=event.steps, completed=event.step, loss=math.nan,
                        speed=0.0)
            self._start_step, self._started = event.step, time.perf_counter()
        elif isinstance(event, StepDone):
            dt = time.perf_counter() - self._started
            self._update(completed=event.step, loss=event.loss, speed=(event.step - self._start_step) / max(dt, 1e-9))
        elif isinstance(event, FileDownload):
            if event.done == 0:  # a new file: its own bar, the last one's stays on the screen
                self._begin(Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(), transient=False,
                                     console=self.console), event.name, total=event.total)
            else:
                self._update(completed=event.done)
        elif isinstance(event, (SearchEnded, JobsEnded, TrainingStopped)):
            self.close()

    def warn(self, message: str) -> None:
        """One warning line, above the bar being drawn (if any)."""
        console = self._bar.console if self._bar is not None else (self.console or Console())
        console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    def _begin(self, bar: Progress, description: str, **fields) -> None:
        self.close()
        self._bar = bar
        bar.start()
        self._task = bar.add_task(description, **fields)

    def _update(self, **fields) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, **fields)

    def close(self) -> None:
        """Stop the bar being drawn (if any)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def progress_bars(enabled: bool = True, console: Console | None = None) -> Iterator[ProgressBars | None]:
    """``ProgressBars`` on ``console`` while the block runs (stopped however it ends), or None when
    ``enabled`` is false (``--no-progress``: nothing is drawn)."""
    if not enabled:
        yield None
        return
    bars = ProgressBars(console)
    try:
        yield bars
    finally:
        bars.close()
