from __future__ import annotations

from edgetl.bench.budgets import budget_table, check_budgets, choose_int8_source
from edgetl.targets import load_target


def row(name, fmt, precision, source, runtime, device, acc, p90, size=1_000_000, proxy=False, mem=100.0):
    return {"name": name, "format": fmt, "precision": precision, "source": source, "runtime": runtime,
            "device": device, "proxy": proxy, "status": "ok", "accuracy": acc,
            "latency_ms": {"p50": p90 * 0.9, "p90": p90}, "size_bytes": size, "peak_memory_mb": mem}


RESULTS = {"rows": [
    row("openvino-fp32", "openvino", "fp32", "fp32", "openvino", "CPU", 0.95, 4.0, 18_000_000),
    row("openvino-int8-qat", "openvino", "int8", "qat", "openvino", "CPU", 0.945, 2.0, 5_000_000),
    row("openvino-int8-ptq", "openvino", "int8", "ptq", "openvino", "CPU", 0.90, 2.0, 5_000_000),
    row("onnx-fp32", "onnx", "fp32", "fp32", "onnxruntime", "cpu", 0.95, 5.0, 18_000_000),
    row("onnx-int8-qat", "onnx", "int8", "qat", "onnxruntime", "cpu", 0.94, 3.0, 4_000_000),
    row("onnx-int8-ptq", "onnx", "int8", "ptq", "onnxruntime", "cpu", 0.91, 3.0, 4_000_000),
]}


def by_budget(rows):
    return {r["budget"]: r for r in rows}


def test_int8_source_is_the_more_accurate_route():
    assert choose_int8_source(RESULTS) == "qat"


def test_host_target_budgets_pass_and_fail_on_measured_rows():
    rows = by_budget(check_budgets(load_target("cpu"), RESULTS))
    assert rows["p90 latency"]["status"] == "pass" and rows["p90 latency"]["measured"] == 2.0
    assert "openvino:CPU int8" in rows["p90 latency"]["where"]
    assert rows["model size"]["measured"] == 5.0
    assert abs(rows["int8 accuracy drop"]["measured"] - 0.5) < 1e-9
    tight = load_target("cpu").model_copy(update={"budgets": load_target("cpu").budgets.model_copy(
        update={"p90_latency_ms": 1.0, "max_accuracy_drop": 0.1})})
    rows = by_budget(check_budgets(tight, RESULTS))
    assert rows["p90 latency"]["status"] == "fail" and rows["int8 accuracy drop"]["status"] == "fail"
    assert "fail" in budget_table(list(rows.values()))


def test_device_not_on_host_reports_latency_as_not_measured_with_proxy():
    results = {"rows": [dict(r, proxy=True) for r in RESULTS["rows"]]}
    rows = by_budget(check_budgets(load_target("jetson"), results))
    assert rows["p90 latency"]["status"] == "not measured"
    assert "host proxy" in rows["p90 latency"]["note"]
    assert rows["model size"]["status"] == "pass" and rows["model size"]["measured"] == 4.0
