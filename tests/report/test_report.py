"""``edgetl report``: tables a reader can scan and one HTML file with every plot inside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgetl.cli
from edgetl.bench.results import BenchRow, LatencyStats, load_results, load_scores, row_id
from edgetl.errors import ModelFileError
from edgetl.report.render import pareto_front, write_report
from edgetl.stages.benchmark import benchmark
from edgetl.targets import load_target
from tests.benchmarking import fast_config, make_run_dir
from tests.conftest import make_image_folder
from tests.report.html_checks import check_report_html


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
    # trade-off scatter, latency distribution, confusion matrices, ROC, precision-recall, reliability, sizes
    assert len(images) == 7
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


def test_bench_keeps_each_evaluated_rows_logits_beside_results(results_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    from edgetl.bench.measure import reliability, softmax

    results = load_results(results_path)
    assert results.scores_file == "scores.npz" and (results_path.parent / "scores.npz").is_file()
    assert '"logits"' not in results_path.read_text()  # results.json stays small
    scores = load_scores(results_path, results)
    assert scores is not None
    labels, logits = scores
    evaluated = [r for r in results.ok_rows() if r.accuracy is not None]
    assert evaluated and {row_id(r) for r in evaluated} == set(logits)
    for r in evaluated:
        probs = softmax(logits[row_id(r)])
        assert r.accuracy == pytest.approx(float((probs.argmax(1) == labels).mean()), abs=1e-6)
        # every class has val images here: the macro one-vs-rest AUC is scikit-learn's own
        assert r.roc_auc == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"), abs=1e-6)
        assert r.ece == pytest.approx(reliability(labels, probs).ece, abs=1e-6)
        assert r.per_class is not None and all(m.roc_auc is not None for m in r.per_class.values())


def test_every_figure_is_embedded_and_every_section_has_content(results_path: Path, tmp_path: Path) -> None:
    md, page = write_report(results_path, tmp_path)
    sections = check_report_html(page)
    for title in ("ROC curves (one-vs-rest)", "Precision-recall curves (one-vs-rest)", "Calibration"):
        assert len(sections[title].figures) == 1, title
    assert sections["Calibration"].table_rows >= 4  # the ranking and calibration table: every evaluated row
    text = md.read_text()
    assert "| class | precision | recall | F1 | images | ROC AUC | PR AUC (AP) |" in text
    assert "ECE over 15 bins" in text
    assert "Training curves" not in sections  # this run directory has no metrics.json: no empty section


def test_report_without_the_scores_file_keeps_the_recorded_figures(results_path: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "results.json"
    shutil.copy(results_path, copy)  # scores.npz stays behind
    _, page = write_report(copy, tmp_path / "report")
    sections = check_report_html(page)
    assert "ROC curves (one-vs-rest)" not in sections and "Calibration" not in sections
    html = page.read_text()
    assert "Ranking and calibration" in html  # the AUC and ECE figures of results.json, as a table


def test_a_corrupt_scores_file_is_a_model_file_error(results_path: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copy(results_path, tmp_path / "results.json")
    (tmp_path / "scores.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelFileError, match="scores file .*scores.npz is unreadable"):
        write_report(tmp_path / "results.json", tmp_path / "report")


def test_training_curves_come_from_the_runs_metrics(results_path: Path, tmp_path: Path) -> None:
    from tests.report.test_training import write_run

    run = write_run(tmp_path / "run")
    _, page = write_report(results_path, tmp_path / "report", run_dir=run)
    section = check_report_html(page)["Training curves"]
    assert len(section.figures) == 1 and section.table_rows == 4  # head, fine-tuning, prune recovery, QAT


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
