"""The differential check of population training: each member trains as it would alone.

``assert_members_match_solo`` trains a population and each member's settings solo and compares
losses and metrics to a relative tolerance; ``SMALL`` is a training small enough for tests.
"""

from __future__ import annotations

import math

from cellsearch.training.population import Member, train_population
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import train

SMALL = dict(task="arith", hidden_size=8, batch_size=4, steps=20, threads=1, eval_batch_size=64,
             task_options={"eval_examples": 8})
FLOAT64_RTOL = 1e-10
FLOAT32_RTOL = 2e-4  # float32: bmm and mm may round differently; 20 steps of Adam keep it this close


def rel_err(a: list[float], b: list[float]) -> float:
    """Largest relative difference of two loss curves (a NaN matches only a NaN)."""
    assert len(a) == len(b)
    return max((0.0 if (math.isnan(x) and math.isnan(y)) or x == y else abs(x - y) / max(abs(y), 1e-12)
                for x, y in zip(a, b)), default=0.0)


def assert_members_match_solo(cfg: TrainConfig, members: list[Member], rtol: float, graph=None) -> list:
    """Train ``members`` of ``cfg`` as one population and each alone; their statuses, steps, losses
    (to ``rtol`` relative) and metrics must agree. Returns the population's results."""
    results = train_population(cfg, members, graph=graph)
    assert len(results) == len(members)
    for member, got in zip(members, results):
        want = train(member.apply(cfg), graph=graph)
        assert got.status == want.status, member
        assert got.steps == want.steps, member
        assert rel_err(got.losses, want.losses) <= rtol, (member, got.losses, want.losses)
        for key, value in want.metrics.items():
            if value is None or got.metrics[key] is None:
                assert value is None and got.metrics[key] is None, key
            else:
                assert math.isclose(got.metrics[key], value, rel_tol=max(rtol, 1e-9), abs_tol=1e-9), key
    return results
