"""The regression gate: a planted regression fails with a table, an unchanged rerun passes, noise is inconclusive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgetl.cli
from edgetl.bench.gate import LatencyInterval, check_regressions, latency_verdict, parse_percent
from edgetl.errors import EXIT_GATE_INCONCLUSIVE, BudgetExceededError, ConfigError, GateInconclusiveError
from edgetl.stages.benchmark import benchmark
from edgetl.targets import load_target
from tests.benchmarking import fast_config, make_run_dir
from tests.conftest import make_image_folder


@pytest.fixture(scope="module")
def run_and_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data = make_image_folder(tmp_path_factory.mktemp("data"), {"red": 4, "green": 4, "blue": 4})
    run = make_run_dir(tmp_path_factory.mktemp("run"), data)
    out = tmp_path_factory.mktemp("bench")
    benchmark(fast_config(batch_sizes=(1,)), load_target("cpu"), run, out)
    return run, out / "results.json"


def _planted(results: Path, tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    data = json.loads(results.read_text())
    edit(data["rows"])
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))
    return path


def test_unchanged_results_pass_and_write_gate_md(run_and_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, results = run_and_results
    report = check_regressions(results, results, tmp_path)
    assert report.passed and all(r.status == "pass" for r in report.rows)
    assert "no regression" in (tmp_path / "gate.md").read_text()


def test_a_real_rerun_matches_every_row(run_and_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run, baseline = run_and_results
    benchmark(fast_config(batch_sizes=(1,)), load_target("cpu"), run, tmp_path)
    # timing noise on microsecond models is large: this checks the matching, not the speed
    report = check_regressions(tmp_path / "results.json", baseline, tmp_path, max_latency_regression=10_000)
    assert report.passed and {r.status for r in report.rows} == {"pass"} and len(report.rows) == 5


def test_halved_baseline_latency_fails_with_a_table(run_and_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, results = run_and_results

    def halve(rows):  # type: ignore[no-untyped-def]
        for r in rows:
            if r["name"] == "onnx-int8-ptq":
                r["latency_ms"]["p50"] /= 2

    baseline = _planted(results, tmp_path, halve)
    with pytest.raises(BudgetExceededError, match="onnx-int8-ptq") as info:
        check_regressions(results, baseline, tmp_path, max_latency_regression=10)
    assert "p50 +100.0% > 10%" in info.value.table
    assert info.value.exit_code == 1
    assert "❌" in (tmp_path / "gate.md").read_text()


def test_accuracy_drop_fails_and_github_summary_is_appended(run_and_results, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _, results = run_and_results

    def better_baseline(rows):  # type: ignore[no-untyped-def]
        for r in rows:
            if r["name"] == "openvino-fp32":
                r["accuracy"] += 0.02  # the baseline was 2 points better

    baseline = _planted(results, tmp_path, better_baseline)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with pytest.raises(BudgetExceededError) as info:
        check_regressions(results, baseline, tmp_path, max_latency_regression=10_000, max_accuracy_drop=0.5)
    assert "top-1 -2.00 points" in info.value.table
    text = summary.read_text()
    assert text.startswith("earlier step") and "regression gate" in text


def test_row_missing_now_is_a_regression(run_and_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, results = run_and_results
    data = json.loads(results.read_text())
    data["rows"] = [r for r in data["rows"] if r["runtime"] != "openvino"]
    current = tmp_path / "current.json"
    current.write_text(json.dumps(data))
    with pytest.raises(BudgetExceededError, match="2 row"):
        check_regressions(current, results, tmp_path, max_latency_regression=10_000)


def test_cli_bench_with_baseline_exits_1_on_regression(run_and_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run, results = run_and_results

    def faster_torch(rows):  # type: ignore[no-untyped-def]
        for r in rows:
            r["latency_ms"]["p50"] /= 100

    baseline = _planted(results, tmp_path, faster_torch)
    args = ["bench", str(run), "--out", str(tmp_path / "new"), "--threads", "1", "--batch-sizes", "1",
            "--iterations", "3", "--min-time", "0", "--no-report", "--baseline", str(baseline),
            "--max-latency-regression", "10%"]
    result = CliRunner().invoke(edgetl.cli.cli, args, catch_exceptions=False)
    assert result.exit_code == 1
    assert "regressed against" in result.output and "p50 base" in result.output


def test_cli_gate_passes_on_identical_files(run_and_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, results = run_and_results
    result = CliRunner().invoke(edgetl.cli.cli, ["gate", str(results), str(results), "--out", str(tmp_path)],
                                catch_exceptions=False)
    assert result.exit_code == 0 and "no regression" in result.output


def test_parse_percent() -> None:
    assert parse_percent("10%") == 10.0 and parse_percent("7.5") == 7.5
    with pytest.raises(ConfigError):
        parse_percent("ten")


# ------------------------------------------------------------------------------ the noise-aware decision rule
def _interval(p50: float, noise_pct: float, rounds: int = 5) -> LatencyInterval:
    half = p50 * noise_pct / 100
    return LatencyInterval(p50, p50 - half, p50 + half, rounds)


def test_an_unchanged_row_passes_when_the_noise_is_below_the_threshold() -> None:
    verdict = latency_verdict(_interval(2.0, 2), _interval(2.04, 2), max_latency_pct=10)
    assert verdict.status == "pass" and verdict.change_pct == pytest.approx(2.0)
    assert verdict.ratio_high == pytest.approx(2.04 * 1.02 / (2.0 * 0.98))


def test_a_doubled_latency_regresses_even_with_noise() -> None:
    verdict = latency_verdict(_interval(2.0, 15), _interval(4.0, 15), max_latency_pct=10)
    assert verdict.status == "regressed" and "p50 +100.0% > 10%" in verdict.why
    assert verdict.ratio_low == pytest.approx(4.0 * 0.85 / (2.0 * 1.15)) and verdict.ratio_low > 1.1


def test_noise_above_the_threshold_is_inconclusive_not_pass_or_fail() -> None:
    same = latency_verdict(_interval(2.0, 12), _interval(2.0, 12), max_latency_pct=10)
    assert same.status == "inconclusive" and same.why.startswith("inconclusive: noise ±")
    assert same.noise_pct == pytest.approx((1.12 / 0.88 - 0.88 / 1.12) / 2 * 100, rel=1e-6)
    slower = latency_verdict(_interval(2.0, 12), _interval(2.4, 12), max_latency_pct=10)  # +20 %, but noise
    assert slower.status == "inconclusive"


def test_a_change_beyond_the_threshold_but_within_the_noise_is_inconclusive() -> None:
    # +12 % with ±3 % per run: the slowest baseline round vs the fastest new one is only x1.066
    verdict = latency_verdict(_interval(2.0, 3), _interval(2.24, 3), max_latency_pct=10)
    assert verdict.status == "inconclusive"
    assert latency_verdict(_interval(2.0, 3), _interval(2.6, 3), max_latency_pct=10).status == "regressed"


def test_files_without_rounds_fall_back_to_the_plain_threshold() -> None:
    old, new = LatencyInterval(2.0, 2.0, 2.0), LatencyInterval(2.3, 2.3, 2.3)
    assert latency_verdict(old, new, 10).status == "regressed"
    assert latency_verdict(old, LatencyInterval(2.1, 2.1, 2.1), 10).status == "pass"
    assert "noise not measured" in latency_verdict(old, new, 10).why


def _with_rounds(rows, spread: float) -> None:  # type: ignore[no-untyped-def]
    """Give each row five round medians spread +-spread around its p50."""
    for r in rows:
        if r.get("latency_ms"):
            p50 = r["latency_ms"]["p50"]
            meds = [p50 * (1 + f * spread) for f in (-1, -0.5, 0, 0.5, 1)]
            r["latency_rounds"] = {"rounds": 5, "p50": p50, "low": min(meds), "high": max(meds), "round_p50s": meds,
                                   "confidence": 0.9375, "interleaved": True}


def test_noisy_files_are_inconclusive_with_exit_code_4_and_say_so(run_and_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, results = run_and_results
    noisy = _planted(results, tmp_path, lambda rows: _with_rounds(rows, 0.2))  # ±20 % > the 10 % threshold
    with pytest.raises(GateInconclusiveError, match=r"inconclusive: noise ±\d") as info:
        check_regressions(noisy, noisy, tmp_path, max_latency_regression=10)
    assert info.value.exit_code == EXIT_GATE_INCONCLUSIVE == 4 and "inconclusive" in info.value.table
    assert "**inconclusive**" in (tmp_path / "gate.md").read_text()
    quiet = _planted(results, tmp_path, lambda rows: _with_rounds(rows, 0.01))
    assert check_regressions(quiet, quiet, tmp_path, max_latency_regression=10).passed


def test_a_regression_outranks_an_inconclusive_row(run_and_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, results = run_and_results

    def noisy_and_one_halved(rows):  # type: ignore[no-untyped-def]
        _with_rounds(rows, 0.2)
        for r in rows:
            if r["name"] == "onnx-fp32":
                r["latency_ms"]["p50"] /= 3  # the baseline was 3x faster: beyond any ±20 % noise

    current = _planted(results, tmp_path, lambda rows: _with_rounds(rows, 0.2))
    current = current.rename(tmp_path / "current.json")
    baseline = _planted(results, tmp_path, noisy_and_one_halved)
    with pytest.raises(BudgetExceededError, match="onnx-fp32") as info:
        check_regressions(current, baseline, tmp_path, max_latency_regression=10)
    assert info.value.exit_code == 1 and "inconclusive" in info.value.table


def test_cli_gate_exits_4_when_inconclusive(run_and_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, results = run_and_results
    noisy = _planted(results, tmp_path, lambda rows: _with_rounds(rows, 0.2))
    result = CliRunner().invoke(edgetl.cli.cli, ["gate", str(noisy), str(noisy), "--out", str(tmp_path),
                                                 "--max-latency-regression", "10%"], catch_exceptions=False)
    assert result.exit_code == 4
    assert "inconclusive: noise ±" in result.output and "noise ±%" in result.output  # the message and the table
    loose = CliRunner().invoke(edgetl.cli.cli, ["gate", str(noisy), str(noisy), "--out", str(tmp_path),
                                                "--max-latency-regression", "60%"], catch_exceptions=False)
    assert loose.exit_code == 0 and "no regression" in loose.output
