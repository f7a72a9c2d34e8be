"""Schedules over a training's steps: the learning rate's (warm-up, decay) and scheduled sampling's."""

from __future__ import annotations

import math

from cellsearch.training.config import TrainConfig


def teacher_forcing_probability(cfg: TrainConfig, step: int) -> float:
    """Probability of feeding the reference token (Bengio et al. 2015 decay schedules)."""
    if cfg.scheduled_sampling is None:
        return 1.0
    if cfg.scheduled_sampling == "linear":
        return max(cfg.ss_min, 1.0 - step / max(cfg.ss_k, 1.0))
    if cfg.scheduled_sampling == "exponential":
        return (1.0 - 1.0 / max(cfg.ss_k, 1.0)) ** step
    return cfg.ss_k / (cfg.ss_k + math.exp(min(step / cfg.ss_k, 700.0)))


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """The learning rate at ``step`` as a fraction of ``cfg.lr``: linear warm-up over ``warmup_steps``,
    then the schedule (constant, cosine or linear decay to 0) at ``progress`` (0 → 1) through the budget."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if cfg.lr_schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 1.0
