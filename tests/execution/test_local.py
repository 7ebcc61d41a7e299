"""The local executor: every row loaded, then timed in interleaved rounds, then evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgetl.bench.measure as measure
from edgetl.bench.results import load_results
from edgetl.stages.benchmark import benchmark
from edgetl.targets import load_target
from tests.benchmarking import fast_config, make_run_dir
from tests.conftest import make_image_folder


def test_rows_take_turns_in_rounds_and_record_their_spread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run_dir(tmp_path / "run", make_image_folder(tmp_path / "data", {"red": 3, "green": 3, "blue": 3}))
    order: list[int] = []
    timed = measure.timed_runs

    def recording(run, plan):  # type: ignore[no-untyped-def]
        order.append(id(run))
        return timed(run, plan)

    monkeypatch.setattr(measure, "timed_runs", recording)
    results = benchmark(fast_config(rounds=3, min_iterations=6, batch_sizes=(1,)), load_target("cpu"), run,
                        tmp_path / "bench")
    ok = results.ok_rows()
    assert len(ok) == 5 and results.settings.rounds == 3
    # latency timing: 3 rounds of one call per row, the rows in the same order in each round (A B C A B C ...)
    latency_calls = order[: 3 * len(ok)]
    first = latency_calls[: len(ok)]
    assert len(set(first)) == len(ok) and latency_calls == first * 3
    for r in ok:
        assert r.latency_rounds is not None and r.latency_rounds.rounds == 3 and r.latency_rounds.interleaved
        assert r.latency_ms is not None and r.latency_ms.p50 == r.latency_rounds.p50
        assert r.latency_rounds.low <= r.latency_ms.p50 <= r.latency_rounds.high
        assert r.latency_ms.iterations == 6  # ceil(6 / 3) timed runs in each of the 3 rounds
    again = load_results(tmp_path / "bench")  # written and read back with the rounds
    assert again.rows[0].latency_rounds == results.rows[0].latency_rounds
