"""The report's headline speaks of the artifact the bundle carries, and names the split behind every accuracy."""

from __future__ import annotations

from edgetl.bench.results import BenchResults, BenchRow, BenchSettings, LatencyStats
from edgetl.report.render import headline_lines, render_markdown


def _row(name: str, precision: str, source: str, p50: float, acc: float) -> BenchRow:
    lat = LatencyStats(p50=p50, p90=p50, p99=p50, mean=p50, std=0, min=p50, max=p50, iterations=5)
    return BenchRow(name=name, format="onnx", precision=precision, source=source,  # type: ignore[arg-type]
                    runtime="onnxruntime", device="cpu", status="ok", accuracy=acc, latency_ms=lat, eval_images=216)


def _results(**fields: object) -> BenchResults:
    settings = BenchSettings(warmup=1, min_iterations=5, min_time_s=0, threads=1, batch_sizes=[1], eval_batch_size=1,
                             memory_method="rss")
    rows = [_row("onnx-fp32", "fp32", "fp32", 2.0, 0.9000), _row("onnx-int8-ptq", "int8", "ptq", 0.8, 0.8000),
            _row("onnx-int8-qat", "int8", "qat", 1.0, 0.8900)]
    return BenchResults(target="cpu", source="run", settings=settings, rows=rows, eval_split="test",
                        **fields)  # type: ignore[arg-type]


def test_headline_quotes_the_shipped_artifact_not_the_fastest_row() -> None:
    lines = headline_lines(_results(shipped=["onnx-int8-qat"], eval_split_selected_on=False))
    assert lines[0] == ("Ships: onnx-int8-qat (onnxruntime:cpu, the bundle's primary model): p50 1.000 ms, 2.00x the "
                        "speed of onnx-fp32, top-1 89.00% (95% CI 84.0-92.4) on test (-1.00 points vs fp32).")
    assert lines[1] == "Every accuracy is on test (216 images), held out from training and from selection."
    # the faster PTQ baseline is named as what it is, never as the result
    assert lines[2].startswith("Fastest measured (not the shipped model): onnx-int8-ptq")
    assert not any("int8 (onnx-int8-ptq) is" in line for line in lines)


def test_headline_says_when_the_figures_are_on_the_split_selection_used() -> None:
    results = _results(shipped=["onnx-int8-qat"], eval_split_selected_on=True)
    results = results.model_copy(update={"eval_split": "val"})
    md = render_markdown(results)
    assert "Every accuracy is on **val** (216 images), the split fine-tuning and QAT kept their best epochs on" in md
    assert "optimistic" in md and "| top-1 (val) |" in md and "the split selection used" in md


def test_without_a_shipped_artifact_the_rows_speak_for_themselves() -> None:
    lines = headline_lines(_results())  # one model file benchmarked: no bundle, no shipped artifact
    assert lines[0].startswith("Every accuracy is on the test split")
    assert lines[1].startswith("Fastest: onnx-int8-ptq")


def test_headline_says_the_int8_route_was_chosen_on_val() -> None:
    selection = {"split": "val", "accuracy": {"qat": 0.91, "ptq": 0.88}}
    line = headline_lines(_results(shipped=["onnx-int8-qat"], int8_selection=selection))[0]
    assert line.endswith("Its int8 route (qat) was chosen on val (ptq 88.00 %, qat 91.00 %).")
    # one route: no choice to explain
    alone = headline_lines(_results(shipped=["onnx-int8-qat"], int8_selection={"split": "val",
                                                                              "accuracy": {"qat": 0.91}}))[0]
    assert "chosen on" not in alone


def test_a_text_builds_headline_counts_texts() -> None:
    line = headline_lines(_results(shipped=["onnx-int8-qat"], eval_split_selected_on=False,
                                   task="text_classification"))[1]
    assert line == "Every accuracy is on test (216 texts), held out from training and from selection."
