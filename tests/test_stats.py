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


def test_two_proportion_test_matches_hand_computed_values() -> None:
    from edgetl.stats import two_proportion_test

    # 90/100 vs 75/100: pooled 0.825, se = sqrt(0.825 * 0.175 * 0.02) = 0.05373, z = 2.7917, p = 0.00524
    z, p = two_proportion_test(90, 100, 75, 100)
    assert z == pytest.approx(2.7917, abs=1e-3) and p == pytest.approx(0.00524, abs=1e-4)
    z2, p2 = two_proportion_test(75, 100, 90, 100)
    assert z2 == pytest.approx(-z) and p2 == pytest.approx(p)
    assert two_proportion_test(10, 10, 5, 5) == (0.0, 1.0)  # no spread: nothing to tell apart
    assert two_proportion_test(3, 4, 0, 0) == (0.0, 1.0)


def test_split_disagreement_flags_a_shift_and_not_noise() -> None:
    from edgetl.stats import split_disagreement

    # the figures: 97.6 % val against 73.3 % test is far beyond noise
    shifted = split_disagreement(0.976, 250, 0.733, 300)
    assert shifted["disagree"] and shifted["p_value"] < 1e-6 and shifted["z"] > 0
    # 2 points on 150 images each is noise
    assert not split_disagreement(0.95, 150, 0.93, 150)["disagree"]
    # the measured clean-split case: the z-test says p = 0.039, the intervals overlap (val is optimistic by selection)
    clean = split_disagreement(0.96, 100, 0.8833, 120)
    assert clean["p_value"] == pytest.approx(0.039, abs=2e-3) and not clean["disagree"]
    assert clean["val_ci95"][0] < clean["test_ci95"][1]


def test_format_interval() -> None:
    from edgetl.stats import format_interval

    assert format_interval(0.8, 10) == "80.00% (95% CI 49.0-94.3)"
    assert format_interval(None, 10) == "-" and format_interval(0.5, None) == "50.00%"
