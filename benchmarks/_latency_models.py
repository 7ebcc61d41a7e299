"""Shared by benchmarks/bench_vs_benchmark_app.py and benchmarks/speedups.py: real-size models as ONNX and IR.

Weights do not change latency, so the backbones are built with ``weights="none"`` (random init) and the
classifier keeps ImageNet's 1000 classes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPORTED = Path(__file__).resolve().parent / "reported"
SIZE = 224


def export_onnx(backbone: str, path: Path) -> Path:
    """fp32 ONNX with a dynamic batch (legacy exporter, opset 17)."""
    import torch

    from edgetl.backbones import create_model

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create_model(backbone, 1000, weights="none").eval()
    torch.onnx.export(model, torch.randn(1, 3, SIZE, SIZE), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


def quantize_onnx(fp32: Path, int8: Path, calibration: int = 16) -> Path:
    """PTQ: QDQ, per-channel int8 weights, uint8 activations, calibrated on random inputs (a speed probe only)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if int8.is_file():
        return int8
    rng = np.random.default_rng(0)
    batches = [{"input": rng.standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)} for _ in range(calibration)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self._it, None)

    prepped = int8.with_name(int8.stem + ".prep.onnx")
    quant_pre_process(str(fp32), str(prepped))  # shape inference + BN folding: what ORT recommends first
    quantize_static(str(prepped), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    prepped.unlink()
    return int8


def convert_ir(onnx_path: Path, xml: Path) -> Path:
    import openvino as ov

    if xml.is_file():
        return xml
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


def edgetl_p50(runtime: str, device: str, model: Path, precision: str, threads: int, seconds: float) -> dict:
    """Load with edgetl's runtime adapter and time batch-1 runs exactly as `edgetl bench` does."""
    from edgetl.bench.measure import TimingPlan, latency_stats, timed_runs
    from edgetl.runtimes import RUNTIMES

    session = RUNTIMES.get(runtime).load(model, device, precision, threads)
    x = {next(iter(session.inputs)): np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)}
    samples = timed_runs(lambda: session.run(x), TimingPlan(warmup=20, min_iterations=50, min_time_s=seconds))
    session.close()
    stats = latency_stats(samples)
    return {"p50_ms": stats.p50, "p90_ms": stats.p90, "iterations": stats.iterations}


def write(name: str, full: dict, summary: dict) -> None:
    from edgetl.fsutil import write_json
    from edgetl.host import host_facts

    stamp = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host_facts()}
    write_json(RESULTS / f"{name}.json", {**stamp, **full})
    write_json(REPORTED / f"{name}.json", {**stamp, **summary})
    print(f"\nwrote {RESULTS / (name + '.json')} and {REPORTED / (name + '.json')}")


def dumps(data: object) -> str:
    return json.dumps(data, indent=2)
