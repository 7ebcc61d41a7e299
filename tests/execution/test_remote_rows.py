"""The SSH executor's pieces that need no SSH: runner results -> BenchRow, what a device runs, the device entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgetl.bench.measure import TimingPlan
from edgetl.bench.plan import Source
from edgetl.config import BuildConfig
from edgetl.errors import EXIT_USAGE, ConfigError, DeviceError
from edgetl.execution.base import EvalData, MeasureSettings, Planned
from edgetl.execution.remote import SshExecutor, device_plans, to_bench_row
from edgetl.manifest import Artifact
from edgetl.targets import load_target

REPO = Path(__file__).resolve().parents[2]
FACTS = {"hostname": "rpi5", "cpu_model": "Cortex-A76", "runtimes": {"onnxruntime": "1.20.1"}, "numpy": "2.1"}


def artifact(name: str, fmt: str = "onnx", precision: str = "int8", source: str = "qat") -> Artifact:
    return Artifact(name=name, format=fmt, precision=precision, source=source, path=f"{name}.{fmt}",  # type: ignore[arg-type]
                    size_bytes=1234, int8_ops=4, float_ops=0)


def plan(name: str = "onnx-int8-qat", precision: str = "int8") -> Planned:
    return Planned(artifact(name, precision=precision), Path(f"/x/{name}.onnx"), "onnxruntime", "cpu", precision,
                   proxy=False)


def runner_row(**over: object) -> dict:
    row = {"id": "r", "status": "ok", "reason": "", "latency_batch": 1, "runtime_version": "1.20.1",
           "latency_ms": {"p50": 2.0, "p90": 2.5, "p99": 3.0, "mean": 2.1, "std": 0.2, "min": 1.9, "max": 3.1,
                          "iterations": 50},
           "latency_samples_ms": [2.0, 2.1], "throughput": {"1": 476.2, "2": None}, "cold_start_ms": 40.0,
           "peak_memory_mb": 12.5, "memory_source": "VmHWM", "threads": 4, "settings": {"providers": ["CPU"]},
           "predictions": [0, 1, 1, 2], "eval_count": 4, "measured_on": "device",
           "device_address": "ssh://pi@rpi5.local", "device_hostname": "rpi5"}
    return {**row, **over}


def test_a_runner_result_becomes_a_device_bench_row_with_host_computed_metrics() -> None:
    data = EvalData({"input": np.zeros((4, 3, 8, 8), np.float32)}, np.array([0, 1, 2, 2]), ["a", "b", "c"])
    row = to_bench_row(plan(), runner_row(), FACTS, data, note="threads capped")
    assert (row.measured_on, row.proxy, row.device_hostname, row.device_address) == (
        "device", False, "rpi5", "ssh://pi@rpi5.local")
    assert row.status == "ok" and row.latency_ms is not None and row.latency_ms.p90 == 2.5
    assert row.accuracy == 0.75 and row.eval_images == 4 and row.confusion_matrix == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert row.per_class is not None and row.per_class["c"].recall == 0.5 and row.macro_f1 is not None
    assert row.throughput == {"1": 476.2, "2": None} and row.peak_memory_mb == 12.5 and row.threads == 4
    assert row.settings["runtime_version"] == "1.20.1" and row.settings["memory_source"] == "VmHWM"
    assert row.size_bytes == 1234 and row.int8_ops == 4  # the export stage's facts travel as on the host
    assert "measured on the device rpi5 (Cortex-A76)" in row.note and "threads capped" in row.note
    assert row.where == "rpi5" and row.key[-1] == "device"  # never matched with a host row by the gate
    failed = to_bench_row(plan(), {"status": "failed", "reason": "the runtime crashed: SIGSEGV",
                                   "device_hostname": "rpi5"}, FACTS, data)
    assert failed.status == "failed" and "SIGSEGV" in failed.reason and failed.latency_ms is None
    latency_only = to_bench_row(plan(), runner_row(predictions=None), FACTS, None)
    assert latency_only.accuracy is None and latency_only.latency_ms is not None


def test_a_device_runs_the_targets_own_runtimes_not_torch_nor_proxies() -> None:
    arts = [(artifact("torch-fp32", "torch", "fp32", "fp32"), Path("m.pt")),
            (artifact("onnx-fp32", "onnx", "fp32", "fp32"), Path("a.onnx")),
            (artifact("onnx-int8-qat"), Path("b.onnx")),
            (artifact("openvino-int8-qat", "openvino"), Path("c.xml"))]
    source = Source(path=Path("."), artifacts=arts, from_run=True)
    pi = {(p.artifact.name, p.runtime, p.device, p.precision) for p in device_plans(load_target("rpi5"), source)}
    assert pi == {("onnx-int8-qat", "onnxruntime", "cpu", "int8"), ("onnx-fp32", "onnxruntime", "cpu", "fp32")}
    cpu = device_plans(load_target("cpu"), source)
    assert {p.runtime for p in cpu} == {"openvino", "onnxruntime"} and not any(p.proxy or p.skip for p in cpu)
    jetson = device_plans(load_target("jetson"), source)
    trt = [p for p in jetson if p.runtime == "tensorrt"]
    assert trt and all("device runner measures onnxruntime and openvino" in p.skip for p in trt)
    assert [p.artifact.name for p in jetson if p.runtime == "onnxruntime"] == ["onnx-fp32"]


def test_runner_rows_follow_the_benchmark_settings() -> None:
    from edgetl.artifacts import ModelIO, TensorSpec

    io = ModelIO(inputs=(TensorSpec(name="input", shape=(None, 3, 32, 32)),),
                 outputs=(TensorSpec(name="logits", shape=(None, 3)),))
    settings = MeasureSettings(timing=TimingPlan(3, 20, 0.5), threads=4, batch_sizes=[1, 8], eval_batch_size=1,
                               samples_kept=100, io=io)
    row = SshExecutor._runner_row(plan(), "0-onnx-int8-qat.onnx", settings, threads=2)
    assert row == {"id": "onnx-int8-qat@onnxruntime:cpu:int8", "model": "0-onnx-int8-qat.onnx",
                   "runtime": "onnxruntime", "device": "cpu", "precision": "int8", "threads": 2, "latency_batch": 1,
                   "batch_sizes": [1, 8], "warmup": 3, "min_iterations": 20, "min_time_s": 0.5, "keep_samples": 100,
                   "input_shapes": {"input": [1, 3, 32, 32]}}
    files, names = SshExecutor._files([plan(), plan(), plan("onnx-fp32", "fp32")])
    assert list(files) == ["0-onnx-int8-qat.onnx", "1-onnx-fp32.onnx"] and len(names) == 2


def test_device_entries_in_a_profile_and_a_config(tmp_path: Path) -> None:
    board = tmp_path / "board.yaml"
    board.write_text("extends: raspberry-pi-5\nname: my-pi\ndevice: ssh://pi@rpi5.local:2222/home/pi/edgetl\n")
    spec = load_target(board).device
    assert spec is not None and spec.python == "python3" and spec.timeout_s > 0
    address = spec.address()
    assert (address.user, address.host, address.port, address.workdir) == ("pi", "rpi5.local", 2222, "/home/pi/edgetl")
    board.write_text("extends: raspberry-pi-5\ndevice: {url: 'ssh://pi:secret@rpi5', python: /opt/venv/bin/python}\n")
    with pytest.raises(ConfigError) as err:
        load_target(board)
    assert "field 'device.url'" in str(err.value) and "no password" in str(err.value)
    cfg = BuildConfig().with_overrides({"bench.device": {"url": "ssh://jetson", "identity_file": "~/.ssh/id_ed25519"}})
    assert cfg.bench.device is not None and str(cfg.bench.device.address().identity_file).endswith(".ssh/id_ed25519")


def test_device_flags_without_a_device_are_a_usage_error() -> None:
    from edgetl.cli.bench import apply_device_flags

    cfg, cpu = BuildConfig(), load_target("cpu")
    with pytest.raises(ConfigError, match="--identity needs a device") as err:
        apply_device_flags(cfg, cpu, None, None, "key", None)
    assert err.value.exit_code == EXIT_USAGE
    assert apply_device_flags(cfg, cpu, None, None, None, None) is cfg
    with_device = apply_device_flags(cfg, cpu, "ssh://pi@rpi5", "/venv/bin/python", None, None)
    assert with_device.bench.device is not None and with_device.bench.device.python == "/venv/bin/python"
    # flags on top of the target's own entry keep its address
    board = cpu.model_copy(update={"device": with_device.bench.device})
    again = apply_device_flags(cfg, board, None, None, "/k", None)
    assert again.bench.device is not None and (again.bench.device.url, again.bench.device.identity_file) == (
        "ssh://pi@rpi5", "/k")


def test_the_estimate_band_is_the_validated_one() -> None:
    from edgetl.stages.benchmark import ESTIMATE_BAND

    band = json.loads((REPO / "benchmarks" / "reported" / "roofline_validation.json").read_text())["band"]
    assert (band["min"], band["max"]) == ESTIMATE_BAND


def test_the_devices_logits_give_the_ranking_and_calibration_figures() -> None:
    from sklearn.metrics import roc_auc_score

    from edgetl.bench.measure import softmax

    data = EvalData({"input": np.zeros((4, 3, 8, 8), np.float32)}, np.array([0, 1, 2, 2]), ["a", "b", "c"])
    logits = [[2.0, 0.1, 0.0], [0.0, 1.5, 1.4], [0.2, 1.0, 0.9], [0.0, 0.0, 3.0]]  # row 2's near-tie: class 1
    row = to_bench_row(plan(), runner_row(logits=logits), FACTS, data)
    assert row.accuracy == 0.75 and row.logits is not None and row.logits.shape == (4, 3)
    assert row.roc_auc == pytest.approx(roc_auc_score(data.labels, softmax(np.array(logits)), multi_class="ovr"),
                                        abs=1e-6)
    # class c: image 2 (a c) has a lower p(c) than image 1 (a b), so 3 of the 4 (c, not c) pairs are ranked right
    assert row.ece is not None and row.per_class is not None and row.per_class["c"].roc_auc == 0.75
    older = to_bench_row(plan(), runner_row(), FACTS, data)  # a runner without logits: top-1 figures only
    assert older.accuracy == 0.75 and older.roc_auc is None and older.logits is None
    with pytest.raises(DeviceError, match="logits of shape"):
        to_bench_row(plan(), runner_row(logits=logits[:3]), FACTS, data)
