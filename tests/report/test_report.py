"""``edgetl report``: tables a reader can scan and one HTML file with every plot inside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgetl.cli
from edgetl.bench.results import BenchRow, LatencyStats
from edgetl.errors import ModelFileError
from edgetl.report.render import pareto_front, write_report
from edgetl.stages.benchmark import benchmark
from edgetl.targets import load_target
from tests.benchmarking import fast_config, make_run_dir
from tests.conftest import make_image_folder


@pytest.fixture(scope="module")
def results_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = make_image_folder(tmp_path_factory.mktemp("data"), {"red": 4, "green": 4, "blue": 4})
    run = make_run_dir(tmp_path_factory.mktemp("run"), data)
    out = tmp_path_factory.mktemp("bench")
    benchmark(fast_config(), load_target("jetson"), run, out)  # ok, proxy and skipped rows together
    return out / "results.json"


def test_markdown_lists_every_row_with_reasons(results_path: Path, tmp_path: Path) -> None:
    md, _ = write_report(results_path, tmp_path)
    text = md.read_text()
    for name in ("onnx-fp32", "onnx-int8-ptq", "openvino-int8-ptq", "torch-fp32"):
        assert f"| {name} |" in text
    assert "skipped: not on this host" in text
    assert "(proxy)" in text and "Per class" in text and "instruction sets" in text


def test_html_is_self_contained_with_plots(results_path: Path, tmp_path: Path) -> None:
    _, page = write_report(results_path, tmp_path)
    html = page.read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 4  # trade-off scatter, latency distribution, confusion matrices, sizes
    assert all(len(img) > 1000 for img in images)
    assert "http://" not in html and "https://" not in html  # no external assets
    assert "Accuracy vs latency" in html and "<table>" in html


def test_pareto_front_keeps_only_undominated_rows() -> None:
    def row(name: str, p50: float, acc: float) -> BenchRow:
        lat = LatencyStats(p50=p50, p90=p50, p99=p50, mean=p50, std=0, min=p50, max=p50, iterations=1)
        return BenchRow(name=name, format="onnx", precision="fp32", source="fp32", runtime="onnxruntime",
                        device="cpu", status="ok", accuracy=acc, latency_ms=lat)

    rows = [row("fast-bad", 1.0, 0.80), row("slow-good", 5.0, 0.95), row("dominated", 6.0, 0.90),
            row("middle", 2.0, 0.90)]
    assert [r.name for r in pareto_front(rows)] == ["fast-bad", "middle", "slow-good"]


def test_cli_report_and_a_corrupt_results_file(results_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(edgetl.cli.cli, ["report", str(results_path), "--out", str(tmp_path)],
                                catch_exceptions=False)
    assert result.exit_code == 0 and (tmp_path / "report.html").is_file()
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        write_report(bad, tmp_path)


def test_the_report_and_the_console_show_the_round_spread(results_path: Path, tmp_path: Path) -> None:
    import json

    from rich.console import Console

    from edgetl.bench.results import load_results
    from edgetl.report.render import results_table

    data = json.loads(results_path.read_text())
    for r in data["rows"]:
        if r["name"] == "onnx-fp32" and r.get("latency_ms"):
            p50 = r["latency_ms"]["p50"]
            r["latency_rounds"] = {"rounds": 5, "p50": p50, "low": p50 * 0.9, "high": p50 * 1.1,
                                   "round_p50s": [p50 * 0.9, p50, p50, p50, p50 * 1.1], "confidence": 0.9375,
                                   "interleaved": True}
    data["settings"]["rounds"] = 5
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    md, _ = write_report(path, tmp_path)
    text = md.read_text()
    assert " ±10.0% |" in text and "timing rounds" in text and "median of the round medians" in text
    console = Console(width=200, record=True)
    console.print(results_table(load_results(path)))
    assert "±10.0%" in console.export_text()
