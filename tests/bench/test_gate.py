"""The regression gate: a planted regression fails with a table, an unchanged rerun passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgetl.cli
from edgetl.bench.gate import check_regressions, parse_percent
from edgetl.errors import BudgetExceededError, ConfigError
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
