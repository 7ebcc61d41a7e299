from __future__ import annotations

from edgetl.bench.budgets import budget_table, check_budgets, choose_int8_source, choose_int8_sources
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


def test_int8_source_is_chosen_per_format_and_dynamic_is_a_route_of_onnx_only():
    # a text build: ONNX Runtime's dynamic int8 beats both static routes in ONNX; OpenVINO has no dynamic artifact
    rows = [*RESULTS["rows"], row("onnx-int8-dynamic", "onnx", "int8", "dynamic", "onnxruntime", "cpu", 0.948, 2.5)]
    results = {"rows": rows}
    assert choose_int8_source(results, "onnx") == "dynamic"
    assert choose_int8_source(results, "openvino") == "qat"
    assert choose_int8_sources(results) == {"onnx": "dynamic", "openvino": "qat"}
    assert choose_int8_source(results) == "qat"  # the routes both formats have: as before
    # the shared routes stay one choice for every format (an image build ships as before), even where one format
    # alone would prefer the other: here ONNX's ptq beats its qat, but over both formats qat is better
    mixed = {"rows": [r for r in RESULTS["rows"] if r["name"] != "onnx-int8-ptq"]
             + [row("onnx-int8-ptq", "onnx", "int8", "ptq", "onnxruntime", "cpu", 0.942, 3.0)]}
    assert choose_int8_sources(mixed) == {"onnx": "qat", "openvino": "qat"}
    # at equal accuracy the shared route wins the tie, and an unknown source is never chosen
    tie = {"rows": [row("a", "onnx", "int8", "dynamic", "onnxruntime", "cpu", 0.9, 1.0),
                    row("b", "onnx", "int8", "ptq", "onnxruntime", "cpu", 0.9, 1.0),
                    row("c", "onnx", "int8", "file", "onnxruntime", "cpu", 0.99, 1.0)]}
    assert choose_int8_source(tie, "onnx") == "ptq"
    # dynamic less accurate than the shared route: the shared route
    worse = {"rows": [*RESULTS["rows"], row("d", "onnx", "int8", "dynamic", "onnxruntime", "cpu", 0.93, 1.0)]}
    assert choose_int8_sources(worse) == {"onnx": "qat", "openvino": "qat"}
    # the budgets are checked on the deployment format's own route: cpu deploys OpenVINO first
    checked = by_budget(check_budgets(load_target("cpu"), results))
    assert "openvino-int8-qat" in checked["p90 latency"]["where"]


def test_a_build_chooses_its_int8_route_on_val_not_on_the_test_rows():
    # the rows (test split) favour QAT; the build's val figures favour PTQ: val decides
    on_val = {**RESULTS, "int8_selection": {"split": "val", "accuracy": {"qat": 0.90, "ptq": 0.93}}}
    assert choose_int8_source(RESULTS) == "qat"
    assert choose_int8_source(on_val) == "ptq"
    assert choose_int8_sources(on_val) == {"onnx": "ptq", "openvino": "ptq"}
    # text: the dynamic ONNX route beats the shared one on test but not on val
    rows = [*RESULTS["rows"], row("onnx-int8-dynamic", "onnx", "int8", "dynamic", "onnxruntime", "cpu", 0.948, 2.5)]
    text = {"rows": rows, "int8_selection": {"split": "val", "accuracy": {"qat": 0.92, "ptq": 0.90, "dynamic": 0.91}}}
    assert choose_int8_sources({"rows": rows}) == {"onnx": "dynamic", "openvino": "qat"}
    assert choose_int8_sources(text) == {"onnx": "qat", "openvino": "qat"}
    # a selection that lacks a measured route (an older build) is not half-used: the rows decide
    partial = {"rows": rows, "int8_selection": {"split": "val", "accuracy": {"qat": 0.80, "ptq": 0.99}}}
    assert choose_int8_sources(partial)["onnx"] == choose_int8_sources({"rows": rows})["onnx"] == "dynamic"


def test_the_dynamic_route_has_one_val_figure_per_runtime():
    # text: ONNX Runtime's and OpenVINO's dynamic int8 are two models; each format reads its own figure against
    # the shared route's, and the shared choice (qat/ptq) never becomes "dynamic"
    rows = [*RESULTS["rows"], row("onnx-int8-dynamic", "onnx", "int8", "dynamic", "onnxruntime", "cpu", 0.95, 2.5),
            row("openvino-int8-dynamic", "openvino", "int8", "dynamic", "openvino", "CPU", 0.95, 2.5)]
    chosen = {"split": "val", "accuracy": {"qat": 0.90, "ptq": 0.90, "dynamic": {"onnx": 0.93, "openvino": 0.91}}}
    assert choose_int8_sources({"rows": rows, "int8_selection": chosen}) == {"onnx": "dynamic", "openvino": "dynamic"}
    worse = {**chosen, "accuracy": {**chosen["accuracy"], "dynamic": {"onnx": 0.93, "openvino": 0.85}}}
    assert choose_int8_sources({"rows": rows, "int8_selection": worse}) == {"onnx": "dynamic", "openvino": "qat"}
    assert choose_int8_source({"rows": rows, "int8_selection": chosen}) == "qat"  # the shared route


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


def test_device_rows_come_first_and_estimates_never_pass_or_fail():
    device = dict(row("onnx-int8-qat", "onnx", "int8", "qat", "onnxruntime", "cpu", 0.93, 40.0, 4_000_000),
                  measured_on="device", device_hostname="rpi5")
    host = dict(row("onnx-int8-qat", "onnx", "int8", "qat", "onnxruntime", "cpu", 0.94, 3.0, 4_000_000), proxy=True)
    fp32 = dict(row("onnx-fp32", "onnx", "fp32", "fp32", "onnxruntime", "cpu", 0.95, 90.0, 18_000_000),
                measured_on="device", device_hostname="rpi5")
    rows = by_budget(check_budgets(load_target("rpi5"), {"rows": [host, device, fp32]}))
    assert rows["p90 latency"]["measured"] == 40.0 and "on the device rpi5" in rows["p90 latency"]["where"]
    assert rows["p90 latency"]["status"] == "pass"  # the Pi's budget is 60 ms
    assert abs(rows["int8 accuracy drop"]["measured"] - 2.0) < 1e-9 and "on rpi5" in rows["int8 accuracy drop"]["where"]
    # on a host target, a device row wins over the host's own measurement too
    cpu_rows = [dict(r, measured_on="device", device_hostname="box", latency_ms={"p50": 60, "p90": 70})
                if r["name"] == "openvino-int8-qat" else r for r in RESULTS["rows"]]
    assert by_budget(check_budgets(load_target("cpu"), {"rows": cpu_rows}))["p90 latency"]["status"] == "fail"

    estimate = {"name": "onnx-int8-qat", "format": "onnx", "precision": "int8", "source": "qat",
                "runtime": "tensorrt", "device": "gpu", "proxy": False, "measured_on": "estimate", "status": "ok",
                "latency_ms": None, "estimate": {"latency_ms": 0.2, "low_ms": 0.106, "high_ms": 0.8}}
    proxies = [dict(r, proxy=True) for r in RESULTS["rows"]]
    for budget in (10.0, 0.01):  # far above and far below the estimate: neither passes nor fails
        jetson = load_target("jetson")
        jetson = jetson.model_copy(update={"budgets": jetson.budgets.model_copy(update={"p90_latency_ms": budget})})
        rows = by_budget(check_budgets(jetson, {"rows": [*proxies, estimate]}))
        assert rows["p90 latency"]["status"] == "estimated" and rows["p90 latency"]["measured"] is None
        assert "real 0.106-0.8 ms" in rows["p90 latency"]["note"] and "host proxy" in rows["p90 latency"]["note"]
        assert "~0.2" in budget_table(list(rows.values()))
