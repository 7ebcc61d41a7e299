"""fp32 -> int8 speed-ups per runtime (ONNX Runtime CPU, OpenVINO CPU) on this CPU, side by side in one run.

int8 here is post-training quantization with ONNX Runtime's ``quantize_static`` (QDQ, per-channel int8 weights,
uint8 activations) calibrated on 16 random inputs: a speed figure, not an accuracy figure (the project's own
QAT/PTQ route produces the same int8 graph shape). The OpenVINO int8 IR is converted from that QDQ ONNX. Every
(model, runtime, precision) is measured in each round, the rounds interleave them, and the table reports the
median p50 over rounds, all through edgetl's runtime adapters (OpenVINO with an explicit f32 hint).

    python benchmarks/speedups.py [--threads 2] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _latency_models import RESULTS, convert_ir, edgetl_p50, export_onnx, quantize_onnx, write  # noqa: E402

MODELS = ("efficientnet_lite0", "resnet18")
RUNTIMES = (("onnxruntime", "cpu", "onnx"), ("openvino", "CPU", "xml"))


def int8_convs_in_ort(model: Path, work: Path) -> tuple[int, int]:
    """(QLinearConv, Conv) counts in ONNX Runtime's optimised graph: proof the int8 kernels really run."""
    import onnx
    import onnxruntime as ort

    optimized = work / f"{model.stem}.ort-optimized.onnx"
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(optimized)).graph.node]
    return sum(op == "QLinearConv" for op in ops), sum(op in ("Conv", "FusedConv") for op in ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="speedups-", dir=RESULTS))
    files: dict[tuple[str, str, str], Path] = {}
    facts: dict[str, dict] = {}
    for model in MODELS:
        fp32 = export_onnx(model, work / f"{model}_fp32.onnx")
        int8 = quantize_onnx(fp32, work / f"{model}_int8.onnx")
        files[(model, "onnx", "fp32")], files[(model, "onnx", "int8")] = fp32, int8
        files[(model, "xml", "fp32")] = convert_ir(fp32, work / "ir" / f"{model}_fp32.xml")
        files[(model, "xml", "int8")] = convert_ir(int8, work / "ir" / f"{model}_int8.xml")
        qconv, conv = int8_convs_in_ort(int8, work)
        facts[model] = {"fp32_onnx_bytes": fp32.stat().st_size, "int8_onnx_bytes": int8.stat().st_size,
                        "ort_int8_convs": qconv, "ort_float_convs": conv}
        print(f"{model}: int8 ONNX {int8.stat().st_size / 1e6:.1f} MB vs fp32 {fp32.stat().st_size / 1e6:.1f} MB; "
              f"ONNX Runtime runs {qconv} convs as QLinearConv, {conv} in float", flush=True)

    runs: list[dict] = []
    for rnd in range(args.rounds):
        for model in MODELS:
            for runtime, device, suffix in RUNTIMES:
                precisions = ("fp32", "int8") if rnd % 2 == 0 else ("int8", "fp32")
                for precision in precisions:
                    res = edgetl_p50(runtime, device, files[(model, suffix, precision)], precision, args.threads,
                                     args.seconds)
                    runs.append({"round": rnd, "model": model, "runtime": f"{runtime}:{device}",
                                 "precision": precision, **res})
                    print(f"round {rnd} {model:<19} {runtime}:{device:<4} {precision} p50 {res['p50_ms']:.3f} ms",
                          flush=True)

    rows = []
    print(f"\nbatch 1, {args.threads} threads, median of {args.rounds} rounds' p50")
    print(f"{'model':<19} {'runtime':<16} {'fp32 ms':>8} {'int8 ms':>8} {'speed-up':>8}")
    for model in MODELS:
        for runtime, device, _ in RUNTIMES:
            label = f"{runtime}:{device}"
            p50 = {p: statistics.median(r["p50_ms"] for r in runs if r["model"] == model
                                        and r["runtime"] == label and r["precision"] == p) for p in ("fp32", "int8")}
            speedup = p50["fp32"] / p50["int8"]
            rows.append({"model": model, "runtime": label, "fp32_p50_ms": round(p50["fp32"], 4),
                         "int8_p50_ms": round(p50["int8"], 4), "speedup": round(speedup, 3)})
            print(f"{model:<19} {label:<16} {p50['fp32']:>8.3f} {p50['int8']:>8.3f} {speedup:>7.2f}x")
    settings = {"threads": args.threads, "seconds": args.seconds, "rounds": args.rounds, "batch": 1,
                "int8": "onnxruntime quantize_static QDQ, per-channel s8 weights, u8 activations, 16 random "
                        "calibration inputs (speed probe, not accuracy); OpenVINO IR converted from it",
                "weights": "random init (latency does not depend on weights)"}
    write("speedups", {"settings": settings, "models": facts, "runs": runs, "summary": rows},
          {"settings": settings, "models": facts, "summary": rows})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
