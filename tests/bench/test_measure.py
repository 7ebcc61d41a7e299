"""Timing in interleaved rounds: the turn order, the shares of runs and time, the round summary."""

from __future__ import annotations

import statistics

import pytest

from edgetl.bench.measure import TimingPlan, rounds_from_medians, summarize_rounds, timed_rounds


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
