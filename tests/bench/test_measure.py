"""Measurement: timing in interleaved rounds (turn order, shares, the round summary), and the accuracy figures from
the logits (one-vs-rest ROC AUC and average precision per class, the calibration error)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from edgetl.bench.measure import (
    ECE_BINS,
    TimingPlan,
    accuracy_metrics,
    reliability,
    rounds_from_medians,
    softmax,
    summarize_rounds,
    timed_rounds,
)


def test_rows_take_turns_round_by_round_with_a_full_warm_up_first() -> None:
    calls: list[str] = []
    plan = TimingPlan(warmup=4, min_iterations=6, min_time_s=0.0, rounds=3)
    samples, failures = timed_rounds([lambda: calls.append("A"), lambda: calls.append("B")], plan)
    # round 0: A warm 4 + 2 timed, B the same; rounds 1, 2: re-warm ceil(4/3) = 2 + 2 timed each
    assert calls == ["A"] * 6 + ["B"] * 6 + (["A"] * 4 + ["B"] * 4) * 2
    assert not failures and [len(r) for r in samples[0]] == [2, 2, 2] and len(samples[1]) == 3


def test_the_per_round_share_keeps_the_total_runs_and_time() -> None:
    share = TimingPlan(warmup=10, min_iterations=50, min_time_s=1.0, rounds=5).per_round()
    assert (share.warmup, share.min_iterations, share.min_time_s) == (2, 10, pytest.approx(0.2))
    single = TimingPlan(warmup=10, min_iterations=50, min_time_s=1.0).per_round()
    assert (single.warmup, single.min_iterations, single.min_time_s) == (10, 50, 1.0)
    assert TimingPlan(warmup=0, min_iterations=1, min_time_s=0.0, rounds=4).per_round().warmup == 0


def test_a_row_that_fails_mid_timing_leaves_the_others_their_rounds() -> None:
    count = {"n": 0}

    def flaky() -> None:
        count["n"] += 1
        if count["n"] > 3:
            raise RuntimeError("device lost")

    samples, failures = timed_rounds([flaky, lambda: None], TimingPlan(1, 2, 0.0, rounds=4))
    assert list(failures) == [0] and "device lost" in str(failures[0])
    assert len(samples[0]) == 1 and len(samples[1]) == 4


def test_p50_is_the_median_of_the_round_medians_and_the_interval_their_range() -> None:
    ms = 1_000_000
    rounds_ns = [[1 * ms, 2 * ms, 3 * ms], [4 * ms, 5 * ms, 6 * ms, 100 * ms], [2 * ms, 2 * ms, 2 * ms]]
    stats, rounds = summarize_rounds(rounds_ns)
    assert rounds.round_p50s == [2.0, 5.5, 2.0] and (rounds.low, rounds.p50, rounds.high) == (2.0, 2.0, 5.5)
    assert stats.p50 == 2.0 and stats.iterations == 10 and stats.max == 100.0  # the rest pools every run
    assert rounds.confidence == 0.75 and rounds.interleaved  # 1 - 2 * 0.5**3
    assert rounds.noise_pct == pytest.approx((5.5 - 2.0) / 2 / 2.0 * 100)


def test_one_round_is_the_old_single_measurement() -> None:
    samples = [3, 1, 2, 5, 4]
    stats, rounds = summarize_rounds([[s * 1000 for s in samples]])
    assert rounds.rounds == 1 and rounds.confidence == 0.0 and rounds.noise_pct == 0.0
    assert stats.p50 == rounds.p50 == round(statistics.median(samples) / 1000, 4)
    five = rounds_from_medians([1.0, 1.1, 0.9, 1.05, 1.0], interleaved=False)
    assert five.confidence == 0.9375 and (five.low, five.p50, five.high) == (0.9, 1.0, 1.1) and not five.interleaved


def test_one_vs_rest_figures_are_scikit_learns() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    logits = rng.standard_normal((200, 4)) + 2.0 * np.eye(4)[labels]  # informative, not perfect
    m = accuracy_metrics(labels, logits.argmax(1), ["a", "b", "c", "d"], logits=logits)
    probs = softmax(logits)
    assert m.roc_auc == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"), abs=1e-6)
    assert 0.7 < m.roc_auc < 1.0  # type: ignore[operator]
    for c, name in enumerate("abcd"):
        assert m.per_class[name].roc_auc == pytest.approx(roc_auc_score(labels == c, probs[:, c]), abs=1e-4)
        assert m.per_class[name].average_precision == pytest.approx(
            average_precision_score(labels == c, probs[:, c]), abs=1e-4)
    assert m.average_precision == pytest.approx(np.mean([m.per_class[n].average_precision for n in "abcd"]),
                                                abs=1e-4)


def test_a_class_without_images_has_no_auc_and_does_not_enter_the_mean() -> None:
    labels = np.array([0, 0, 1, 1])
    logits = np.array([[3.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.5, 0.0]])
    m = accuracy_metrics(labels, logits.argmax(1), ["a", "b", "c"], logits=logits)
    assert m.per_class["c"].roc_auc is None and m.per_class["c"].average_precision is None
    assert m.roc_auc == pytest.approx(np.mean([m.per_class["a"].roc_auc, m.per_class["b"].roc_auc]), abs=1e-6)
    assert accuracy_metrics(labels, logits.argmax(1), ["a", "b", "c"]).roc_auc is None  # no logits: no figure


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy() -> None:
    # 10 samples at top-1 probability 0.9 of which 5 are right: ECE 0.4; perfectly calibrated halves: 0
    p = np.log(np.array([[0.9, 0.1]] * 10))
    labels = np.array([0] * 5 + [1] * 5)
    assert accuracy_metrics(labels, np.zeros(10, int), ["a", "b"], logits=p).ece == pytest.approx(0.4, abs=1e-6)
    rel = reliability(labels, softmax(p))
    assert len(rel.count) == ECE_BINS and rel.count.sum() == 10 and rel.count[13] == 10  # 0.9 in (0.867, 0.933]
    sure = np.log(np.array([[1.0 - 1e-12, 1e-12]] * 4))
    assert reliability(np.zeros(4, int), softmax(sure)).count[-1] == 4  # confidence 1.0 is in the last bin
    calibrated = np.log(np.array([[0.5, 0.5]] * 4))
    assert reliability(np.array([0, 1, 0, 1]), softmax(calibrated)).ece == pytest.approx(0.0, abs=1e-9)


def test_softmax_survives_large_logits() -> None:
    probs = softmax(np.array([[1000.0, 0.0], [-1000.0, 1000.0]]))
    assert np.isfinite(probs).all() and probs[0, 0] == 1.0 and probs[1, 1] == 1.0
