"""Learning-rate schedules of ``respsep train``, defined per optimiser step.

Every schedule is a multiplier of the configured learning rate as a function of the global step,
so a resumed run continues it exactly (the scheduler state is one step counter).

``constant``
    1 throughout (the published recipe).
``cosine``
    Half a cosine from 1 to ``min_frac`` over ``total_steps``.
``step``
    Multiplied by ``gamma`` every ``step_every`` steps (the authors' follow-up uses step decay).
``onecycle``
    Linear warm-up from ``min_frac`` to 1 over the first ``warmup_frac`` of the steps, then a
    cosine down to ``min_frac`` / 100 (a one-cycle policy; no momentum cycling, Adam keeps its betas).
"""

from __future__ import annotations

import math

import torch

from resp_sep.errors import RespSepError

SCHEDULES = ("constant", "cosine", "step", "onecycle")


def lr_factor(step: int, name: str, total_steps: int, *, gamma: float = 0.5, step_every: int = 1000,
              warmup_frac: float = 0.1, min_frac: float = 0.0) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based).

    Parameters
    ----------
    step : int
    name : {"constant", "cosine", "step", "onecycle"}
    total_steps : int
        Length of the schedule (steps); later steps keep the final value.
    gamma, step_every : float, int
        ``step`` schedule: factor and period (steps).
    warmup_frac : float
        ``onecycle``: fraction of ``total_steps`` spent warming up.
    min_frac : float
        ``cosine``: final multiplier; ``onecycle``: starting multiplier (final = min_frac / 100).
    """
    total = max(1, int(total_steps))
    t = min(step, total) / total
    if name == "constant":
        return 1.0
    if name == "cosine":
        return min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * t))
    if name == "step":
        return gamma ** (step // max(1, int(step_every)))
    if name == "onecycle":
        start = min_frac if min_frac > 0 else 0.04
        if warmup_frac > 0 and t < warmup_frac:
            return start + (1.0 - start) * t / warmup_frac
        u = (t - warmup_frac) / max(1e-12, 1.0 - warmup_frac)
        end = start / 100
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * u))
    raise RespSepError(f"unknown lr_schedule '{name}' ({', '.join(SCHEDULES)})", exit_code=2)


def build_scheduler(opt: torch.optim.Optimizer, name: str, total_steps: int, **params) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`lr_factor` (its state dict is the step counter: resumable).

    Raises
    ------
    RespSepError
        Unknown schedule name (exit code 2).
    """
    lr_factor(0, name, total_steps, **params)  # validates the name before training starts
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, name, total_steps, **params))
