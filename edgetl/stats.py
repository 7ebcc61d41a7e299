"""Small statistics every figure of a report leans on."""

from __future__ import annotations

import math

# An accuracy whose 95 % interval is wider than this (in 0..1) is called noisy wherever it is printed.
NOISY_CI_WIDTH = 0.10


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default), in 0..1.

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0/n, n/n and tiny n, which is
    where few-shot and small evaluation splits live. ``total == 0`` gives the uninformative (0, 1).
    """
    if total <= 0:
        return 0.0, 1.0
    if not 0 <= correct <= total:
        raise ValueError(f"correct ({correct}) must lie in 0..total ({total})")
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy: float, total: int) -> tuple[float, float]:
    """``wilson_interval`` of an accuracy measured on ``total`` samples."""
    return wilson_interval(round(accuracy * total), total)


def is_noisy(accuracy: float, total: int) -> bool:
    lo, hi = accuracy_interval(accuracy, total)
    return hi - lo > NOISY_CI_WIDTH
