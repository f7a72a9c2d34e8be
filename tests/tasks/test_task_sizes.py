"""Every task's promised sizes (``Task.sizes``: vocabulary and longest training sequence, what the memory
estimate of a training reads) bound the batches it really makes, in every layout it has."""

from __future__ import annotations

import pytest

from cellsearch.tasks import TASK_NAMES, make_task, task_class

SMALL = {"babi": {"train_examples": 200, "test_examples": 20}, "memorize": {}, "digits": {}}


@pytest.mark.parametrize("name", [t for t in TASK_NAMES if t != "ptb"])  # (ptb: a corpus on disk)
def test_the_batches_fit_the_promised_sizes(name):
    options = SMALL.get(name, {})
    vocab_bound, longest = task_class(name).sizes(options)
    task = make_task(name, seed=3, **options)
    for layout in task.layouts:
        task.use_layout(layout)
        assert len(task.vocab) <= vocab_bound, f"{name}: vocabulary {len(task.vocab)} > {vocab_bound}"
        stream = task.train_stream(batch_size=32, seed=1)
        for _ in range(25):
            batch = next(stream)
            assert batch.inputs.shape[0] <= longest, f"{name} ({layout}): {batch.inputs.shape[0]} steps > {longest}"
            if batch.source is not None:
                assert batch.source.shape[0] <= longest


def test_the_seq2seq_error_names_exactly_the_tasks_with_that_layout():
    from cellsearch.tasks.base import SEQ2SEQ_TASKS

    assert set(SEQ2SEQ_TASKS) == {t for t in TASK_NAMES if "seq2seq" in task_class(t).layouts}
