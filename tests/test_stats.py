"""The Wilson interval against hand-computed values and its edge cases."""

from __future__ import annotations

import pytest

from edgetl.stats import accuracy_interval, is_noisy, wilson_interval


def test_wilson_matches_hand_computed_values() -> None:
    # 8/10 -> 0.490-0.943, 0/10 -> 0-0.278 (Newcombe 1998, Stat Med 17:857, method 3)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)


def test_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert accuracy_interval(0.5, 2) == wilson_interval(1, 2)
    assert is_noisy(1.0, 3) and not is_noisy(0.95, 5000)
