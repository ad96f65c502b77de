"""How long a training stage may run: steps that fit a budget, and the stop the UI asks for.

Shared by the U-Net stages (:mod:`labelassist.training.tablet_round`) and the prompt stage
(:mod:`labelassist.training.prompt_adapt`). Pure Python, no torch.
"""

from __future__ import annotations

import math

__all__ = ["RoundStopped", "plan_steps"]


class RoundStopped(Exception):
    """The UI asked the round to stop (``stop`` on the child's stdin)."""


def plan_steps(seconds_left: float, seconds_per_step: float, min_steps: int = 30, max_steps: int = 2000) -> int:
    """How many optimiser steps fit into ``seconds_left``.

    Returns
    -------
    int
        ``seconds_left // seconds_per_step``, at most ``max_steps``; 0 when fewer than
        ``min_steps`` fit (not worth a schedule).
    """
    if not (seconds_per_step > 0 and seconds_left > 0):
        return 0
    steps = int(min(max_steps, math.floor(seconds_left / seconds_per_step + 1e-9)))
    return steps if steps >= min_steps else 0
