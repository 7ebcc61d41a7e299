"""Validate the roofline estimate on this host: estimate/measured batch-1 latency with the host's measured peaks.

For resnet18, mobilenet_v3_small (torchvision) and efficientnet_lite0 (timm ``tf_efficientnet_lite0``), all with
random weights (weights do not change latency), the script exports fp32 ONNX with the dynamo exporter (dynamic
batch) and an int8 QDQ model with ONNX Runtime's ``quantize_static`` (per-channel int8 weights, uint8 activations,
8 random calibration inputs: a speed probe, not an accuracy figure). It then runs ``rounds`` interleaved rounds;
each round measures the host's peaks (``measure_host_peaks``) and times every model with ONNX Runtime CPU at
``threads`` threads (warm-up, then ``seconds`` of timed batch-1 runs, p50). Medians over rounds are compared with
the roofline estimate from the median peaks, without and with the measured per-op overhead. The band printed
beside an estimate is the min-max of estimate/measured over the six models.

    PYTHONPATH=$PWD python benchmarks/roofline_validation.py [--threads 2] [--seconds 2] [--rounds 3] [--name N]

Writes benchmarks/results/roofline_validation.json (every layer) and benchmarks/reported/roofline_validation.json
(the summary).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPORTED = HERE / "reported"
SIZE = 224
MODELS = ("resnet18", "mobilenet_v3_small", "efficientnet_lite0")
EXAMPLE_TARGET = "jetson"  # one published-peaks estimate per model, to show what the band will sit beside


def build_model(name: str) -> Any:
    import timm
    import torchvision

    if name == "efficientnet_lite0":
        return timm.create_model("tf_efficientnet_lite0", pretrained=False)
    return getattr(torchvision.models, name)(weights=None)


def export_fp32(name: str, path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    model = build_model(name).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(model, (torch.randn(1, 3, SIZE, SIZE),), str(path), dynamo=True, input_names=["input"],
                      output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
    return path


def quantize_int8(fp32: Path, int8: Path, calibration: int = 8) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    batches = [{"input": rng.standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)} for _ in range(calibration)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return int8


def session(path: Path, threads: int, optimized: Path | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_op_counts(path: Path, work: Path) -> dict[str, int]:
    """Node counts of ONNX Runtime's optimised graph: proof of which kernels really run (QLinearConv or not)."""
    import collections

    import onnx

    optimized = work / f"{path.stem}.ort.onnx"
    session(path, 1, optimized)
    counts = collections.Counter(node.op_type for node in onnx.load(str(optimized)).graph.node)
    return dict(counts.most_common())


def p50_ms(sess: Any, seconds: float, warmup: int = 20) -> float:
    feeds = {"input": np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)}
    for _ in range(warmup):
        sess.run(None, feeds)
    samples: list[int] = []
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    while time.perf_counter_ns() < deadline or len(samples) < 20:
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        samples.append(time.perf_counter_ns() - t0)
    return float(np.percentile(samples, 50)) / 1e6


LAYOUT_KERNELS = frozenset({"ReorderInput", "ReorderOutput", "Transpose"})  # what ONNX Runtime inserts itself


def category(op: str, depthwise: bool) -> str:
    if op in LAYOUT_KERNELS:
        return "layout (runtime-inserted)"
    if "Conv" in op:
        return "depthwise conv" if depthwise else "conv"
    if op in ("Gemm", "MatMul", "QGemm", "QLinearMatMul", "MatMulInteger"):
        return "gemm"
    if op in ("QuantizeLinear", "DequantizeLinear"):
        return "quantize/dequantize"
    return "other memory-bound"


def kernel_is_depthwise(args: dict[str, Any]) -> bool:
    """A profiled conv kernel is depthwise when its 4-D weight (first 4-D int8/float input after the data) is Cx1xKxK."""
    shapes = [next(iter(entry.values())) for entry in args.get("input_type_shape", [])]
    weights = [shape for shape in shapes[1:] if len(shape) == 4]
    return bool(weights) and weights[0][1] == 1 and weights[0][0] > 1


def kernel_split(path: Path, estimate: Any, threads: int, runs: int = 100) -> dict[str, dict[str, float]]:
    """Measured (ONNX Runtime profiler) against estimated ms per category of layer, for one model.

    Kernels are grouped by their own op type and weight shape (ONNX Runtime renames fused and re-laid-out kernels,
    so names do not map back to graph nodes); layout reorders and transposes it inserts are their own category.
    The profiler adds a little time per kernel, so the split shows *where* the estimate is off, not by how much.
    """
    import json

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix("")) + "_profile"
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {"input": np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)}
    for _ in range(runs):
        sess.run(None, feeds)  # the first, slower run is one of ``runs``: a small bias, and the same for every model
    events = json.loads(Path(sess.end_profiling()).read_text())
    split: dict[str, dict[str, float]] = {}

    def add(cat: str, key: str, ms: float) -> None:
        split.setdefault(cat, {"measured_ms": 0.0, "estimate_ms": 0.0})[key] += ms

    # int8 kernels keep the graph node's name (plus _token_N) but not their prepacked weight's shape
    depthwise_nodes = {row.name for row in estimate.layers if row.detail.startswith("dw")}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            args = event["args"]
            node = re.sub(r"_token_\d+$", "", event["name"][: -len("_kernel_time")])
            depthwise = kernel_is_depthwise(args) or node in depthwise_nodes
            add(category(args["op_name"], depthwise), "measured_ms", event["dur"] / 1e3 / runs)
    for row in estimate.layers:
        if row.time_s > 0:
            add(category(row.op, row.detail.startswith("dw")), "estimate_ms", row.time_s * 1e3)
    return {k: {m: round(v, 4) for m, v in d.items()} for k, d in sorted(split.items())}


def main() -> None:
    from edgetl.estimate import DevicePeaks, estimate_latency, layer_costs, measure_host_peaks, roofline
    from edgetl.fsutil import write_json
    from edgetl.host import host_facts
    from edgetl.targets import load_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="roofline_validation",
                        help="file name of the results; only the default name is also written to reported/")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="roofline-", dir=RESULTS))

    files: dict[str, Path] = {}
    kernels: dict[str, dict[str, int]] = {}
    for name in MODELS:
        fp32 = export_fp32(name, work / f"{name}_fp32.onnx")
        files[f"{name} fp32"] = fp32
        files[f"{name} int8"] = quantize_int8(fp32, work / f"{name}_int8.onnx")
    for key, path in files.items():
        kernels[key] = ort_op_counts(path, work)
    sessions = {key: session(path, args.threads) for key, path in files.items()}

    load_before = os.getloadavg()
    measured: dict[str, list[float]] = {key: [] for key in files}
    host_rounds = []
    for index in range(args.rounds):
        host_rounds.append(measure_host_peaks(args.threads))
        for key, sess in sessions.items():
            measured[key].append(p50_ms(sess, args.seconds))
        print(f"round {index + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in measured.items()))
    load_after = os.getloadavg()

    def median_of(attr: str) -> tuple[float, float, float]:
        values = [getattr(h, attr).median for h in host_rounds]
        return statistics.median(values), min(values), max(values)

    fp32_rate, int8_rate, bandwidth, overhead = (median_of(a) for a in (
        "fp32_flops_per_s", "int8_ops_per_s", "bandwidth_bytes_per_s", "op_overhead_s"))
    first = host_rounds[0].to_device_peaks()
    peaks = DevicePeaks(int8_ops_per_s=int8_rate[0], fp16_ops_per_s=None, fp32_ops_per_s=fp32_rate[0],
                        bandwidth_bytes_per_s=bandwidth[0],
                        source=f"measured on this host ({args.threads} threads, median of {args.rounds} rounds)",
                        labels=first.labels)
    target = load_target(EXAMPLE_TARGET)
    target_peaks = DevicePeaks.from_target(target)

    rows: list[dict[str, Any]] = []
    layers: dict[str, Any] = {}
    splits: dict[str, Any] = {}
    for key, path in files.items():
        costs = layer_costs(path, batch=1)
        plain = roofline(costs, peaks, model=key)
        with_overhead = roofline(costs, peaks, model=key, overhead_s_per_layer=overhead[0])
        on_target = estimate_latency(path, target_peaks, float_precision="fp16" if key.endswith("fp32") else None)
        ms = statistics.median(measured[key])
        # the same ratio within each round (that round's peaks, that round's latency): how much contention moves it
        per_round = [roofline(costs, h.to_device_peaks(), model=key).total_ms / m
                     for h, m in zip(host_rounds, measured[key], strict=True)]
        working = sum(1 for row in plain.layers if row.bound in ("compute", "memory"))
        rows.append({
            "model": key, "measured_p50_ms": round(ms, 4),
            "measured_rounds_ms": [round(v, 4) for v in measured[key]],
            "estimate_ms": round(plain.total_ms, 4), "ratio": round(plain.total_ms / ms, 3),
            "ratio_per_round": [round(r, 3) for r in per_round],
            "estimate_with_overhead_ms": round(with_overhead.total_ms, 4),
            "ratio_with_overhead": round(with_overhead.total_ms / ms, 3),
            "compute_bound_ms": round(plain.time_by_bound().get("compute", 0.0) * 1e3, 4),
            "memory_bound_ms": round(plain.time_by_bound().get("memory", 0.0) * 1e3, 4),
            "layers_doing_work": working, "gmacs": round(plain.macs / 1e9, 4), "mbytes": round(plain.bytes / 1e6, 2),
            f"{target.name}_estimate_ms": round(on_target.total_ms, 4),
            "ort_qlinearconv": kernels[key].get("QLinearConv", 0),
        })
        layers[key] = plain.to_dict()
        splits[key] = kernel_split(path, plain, args.threads)

    def band(field: str, precision: str = "") -> dict[str, float]:
        values = [row[field] for row in rows if row["model"].endswith(precision)]
        return {"min": min(values), "max": max(values), "median": statistics.median(values)}

    print(f"\nhost peaks ({args.threads} threads, median [min-max] of {args.rounds} rounds): "
          f"fp32 {fp32_rate[0] / 1e9:.0f} [{fp32_rate[1] / 1e9:.0f}-{fp32_rate[2] / 1e9:.0f}] GFLOP/s, "
          f"int8 {int8_rate[0] / 1e12:.2f} [{int8_rate[1] / 1e12:.2f}-{int8_rate[2] / 1e12:.2f}] TOPS, "
          f"bandwidth {bandwidth[0] / 1e9:.1f} [{bandwidth[1] / 1e9:.1f}-{bandwidth[2] / 1e9:.1f}] GB/s, "
          f"per-op overhead {overhead[0] * 1e6:.2f} [{overhead[1] * 1e6:.2f}-{overhead[2] * 1e6:.2f}] us")
    header = (f"{'model':<26}{'measured':>10}{'estimate':>10}{'ratio':>7}{'rounds':>12}{'+overhead':>11}{'ratio':>7}"
              f"{'compute':>9}{'memory':>8}{'layers':>7}{f'{target.name}':>18}")
    print(header)
    for row in rows:
        spread = f"{min(row['ratio_per_round']):.2f}-{max(row['ratio_per_round']):.2f}"
        print(f"{row['model']:<26}{row['measured_p50_ms']:>10.3f}{row['estimate_ms']:>10.3f}{row['ratio']:>7.2f}"
              f"{spread:>12}"
              f"{row['estimate_with_overhead_ms']:>11.3f}{row['ratio_with_overhead']:>7.2f}"
              f"{row['compute_bound_ms']:>9.3f}{row['memory_bound_ms']:>8.3f}{row['layers_doing_work']:>7}"
              f"{row[f'{target.name}_estimate_ms']:>18.4f}")
    plain_band, overhead_band = band("ratio"), band("ratio_with_overhead")
    print(f"band estimate/measured: {plain_band['min']:.2f}-{plain_band['max']:.2f} (median {plain_band['median']:.2f});"
          f" with per-op overhead {overhead_band['min']:.2f}-{overhead_band['max']:.2f} "
          f"(median {overhead_band['median']:.2f})")

    stamp = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host_facts(),
             "command": f"python benchmarks/roofline_validation.py --threads {args.threads} --seconds {args.seconds} "
                        f"--rounds {args.rounds} --name {args.name}",
             "method": __doc__.strip().split("\n\n")[1].replace("\n", " "),
             "load_average_1_5_15min": {"before": load_before, "after": load_after}}
    host = {"fp32_flops_per_s": fp32_rate, "int8_ops_per_s": int8_rate, "bandwidth_bytes_per_s": bandwidth,
            "op_overhead_s": overhead, "format": "[median, min, max] over rounds of per-round medians",
            "rounds": [h.to_dict() for h in host_rounds]}
    print("\nwhere the time goes, ONNX Runtime profiler vs estimate, ms (measured / estimated):")
    for key, split in splits.items():
        print(f"  {key:<24}" + "; ".join(f"{cat} {v['measured_ms']:.2f}/{v['estimate_ms']:.2f}"
                                          for cat, v in split.items()))
    by_precision = {p: {"band": band("ratio", p), "band_with_overhead": band("ratio_with_overhead", p)}
                    for p in ("fp32", "int8")}
    for precision, bands in by_precision.items():
        print(f"  {precision}: {bands['band']['min']:.2f}-{bands['band']['max']:.2f}; with overhead "
              f"{bands['band_with_overhead']['min']:.2f}-{bands['band_with_overhead']['max']:.2f}")
    summary = {"rows": rows, "kernel_split": splits, "band": plain_band, "band_with_overhead": overhead_band,
               "band_by_precision": by_precision,
               "host_peaks": host,
               "peaks_used": peaks.to_dict(), f"{target.name}_peaks": target_peaks.to_dict(),
               f"{target.name}_note": "fp32 models estimated at fp16 (TensorRT), int8 at int8, published peaks"}
    written = [write_json(RESULTS / f"{args.name}.json",
                          {**stamp, **summary, "ort_kernels": kernels, "layers": layers})]
    if args.name == "roofline_validation":
        written.append(write_json(REPORTED / f"{args.name}.json", {**stamp, **summary}))
    print(f"\nwrote {' and '.join(str(p) for p in written)}")


if __name__ == "__main__":
    main()
