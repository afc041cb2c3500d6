"""Learning-rate schedules over rounds: the server sends each round's lr in the round record.

The formulas are torch's, stepped once per round (round 1 trains at the base lr):
``cosine`` is ``CosineAnnealingLR(T_max=rounds, eta_min=lr_min)`` and ``step`` is
``StepLR(step_size=step_rounds, gamma=gamma)``. They are written out rather than driven
through a torch scheduler because the server needs the lr of any round directly (a resumed
run starts mid-schedule) without an optimizer to step.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine", "step")


def round_lr(schedule: str, lr: float, server_round: int, *, rounds: int, lr_min: float = 0.0,
             step_rounds: int = 10, gamma: float = 0.1) -> float:
    """The learning rate of ``server_round`` (1-based) of ``rounds``."""
    if server_round < 1:
        raise ValueError(f"rounds count from 1 (got {server_round})")
    t = server_round - 1  # scheduler steps taken before this round
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * t / rounds)) / 2
    if schedule == "step":
        return lr * gamma ** (t // step_rounds)
    raise ValueError(f"unknown lr schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
