"""Accuracy-aware PTQ (issue 14): the fallback, its step curve in ONNX Runtime and OpenVINO, and NNCF beside it.

Usage (a run directory whose train/ holds the fp32 model, e.g. from `edgetl train -c demo -o runs/demo`):

    python benchmarks/accuracy_aware.py --run runs/demo --config demo [--nncf /work/nncf-site] [--rounds 3]

What it does, all in one process and side by side:
1. ``edgetl quantize`` PTQ-only with ``quantize.fallback.enabled`` on the cpu target, then ``edgetl export`` (the
   int8 proof checks each runtime against the precision plan).
2. The step curve: every fallback step's model (0, 1, ... layers in float) exported to ONNX and IR; accuracy on
   the evaluation split and batch-1 p50 latency in both runtimes, fp32 beside it, in interleaved rounds
   (fp32, step 0, step 1, ... then again), medians of the rounds with their spread.
3. With ``--nncf PATH`` (NNCF installed there, e.g. ``pip install --target PATH nncf``; a benchmark-only
   dependency): ``nncf.quantize_with_accuracy_control`` on the same fp32 IR, the same calibration and validation
   images and the same max_drop, measured in the same rounds.
Prints a table and writes benchmarks/reported/accuracy_aware.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPORTED = Path(__file__).resolve().parent / "reported"


def p50_ms(session: Any, sample: dict[str, np.ndarray], iterations: int) -> float:
    for _ in range(5):
        session.run(sample)
    times = []
    for _ in range(iterations):
        t = time.perf_counter_ns()
        session.run(sample)
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1e6


def accuracy(session: Any, batches: list[Any]) -> float:
    correct = total = 0
    for inputs, labels in batches:
        for i in range(len(labels)):
            out = session.run({k: v[i : i + 1] for k, v in inputs.items()})
            correct += int(np.asarray(out).argmax(1)[0] == labels[i])
            total += 1
    return correct / max(1, total)


def main() -> None:  # noqa: PLR0915  (one linear script)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--config", default="demo")
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nncf", type=Path, default=None, help="a folder NNCF is installed in (pip --target)")
    ap.add_argument("--name", default="digits")
    ap.add_argument("--json", type=Path, default=REPORTED / "accuracy_aware.json")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # the fallback's progress lines

    import torch

    from edgetl.config import load_build_config
    from edgetl.export.writers import export_onnx, export_openvino
    from edgetl.quant.mixed import quantized_layers, revert_layers
    from edgetl.runtimes import RUNTIMES
    from edgetl.stages.export import export
    from edgetl.stages.quantize import (
        _calibration_batches,
        _split_batches,
        quantize,
        read_float_model,
        run_ptq,
    )
    from edgetl.targets import load_target

    torch.set_num_threads(2)
    cfg = load_build_config(args.config).with_overrides({"quantize.qat": False, "quantize.fallback.enabled": True,
                                                          "out": str(args.run)})
    target = load_target(args.target)
    budget = float(target.budgets.max_accuracy_drop or 0.0)
    train, quant, exp = args.run / "train", args.run / "quantize-aa", args.run / "export-aa"
    t0 = time.perf_counter()
    quantize(cfg, target, train, quant)
    quantize_s = time.perf_counter() - t0
    report = json.loads((quant / "metrics.json").read_text())["fallback"]["ptq"]
    t0 = time.perf_counter()
    export(cfg, target, train, quant, exp)
    export_s = time.perf_counter() - t0
    parity = json.loads((exp / "parity.json").read_text())
    print(f"edgetl fallback: {report['message']} (quantize {quantize_s:.0f} s, export {export_s:.0f} s)")

    # ---- the step curve: re-make each step's model (PTQ is deterministic: same calibration, same seed)
    inputs = read_float_model(train)
    card = inputs.artifact.card
    fp32_model = inputs.artifact.load()
    example = inputs.task.example_inputs(card.io, 2)
    converted, _, ptq_report = run_ptq(cfg, fp32_model, example, _calibration_batches(cfg, inputs), card.io)
    weights = ptq_report.pop("_float_weights")
    by_name = {la.name: la for la in quantized_layers(converted)}
    eval_batches = _split_batches(inputs, inputs.index.eval_split, 32)
    val_batches = _split_batches(inputs, "val", 32)
    models: dict[str, dict[str, Path]] = {}
    work = Path(tempfile.mkdtemp(prefix="edgetl-aa-"))
    opset = cfg.export.opset or target.export.opset
    fp32_onnx = exp / "model_fp32.onnx"
    models["fp32"] = {"onnx": fp32_onnx, "openvino": exp / "openvino" / "model_fp32.xml"}
    for k, step in enumerate(report["steps"]):
        model = revert_layers(converted, weights, [by_name[n] for n in step["float_layers"]])
        path = work / f"step{k}.onnx"
        export_onnx(model, example, path, opset=opset, dynamic=True, metadata={}, what=f"step {k}", io=card.io)
        export_openvino(path, work / f"step{k}.xml", {})
        models[f"step{k}"] = {"onnx": path, "openvino": work / f"step{k}.xml"}

    nncf_row: dict[str, Any] = {}
    if args.nncf is not None:
        sys.path.insert(0, str(args.nncf))
        import nncf
        import openvino as ov

        core = ov.Core()
        fp32_ir = core.read_model(str(models["fp32"]["openvino"]))
        import random

        samples = list(inputs.index.splits["train"])
        random.Random(cfg.quantize.seed).shuffle(samples)  # the same calibration sample as edgetl's PTQ
        calib = [x["input"] for x, _ in inputs.task.eval_batches(samples[: cfg.quantize.calibration_images],
                                                                 inputs.preprocess, 1)]
        val = [(x["input"][i : i + 1], int(y[i])) for x, y in val_batches for i in range(len(y))]

        def validate(compiled: Any, data: Any) -> float:
            out = compiled.outputs[0]
            hits = [int(np.argmax(compiled(img)[out]) == label) for img, label in data]
            return float(np.mean(hits))

        t0 = time.perf_counter()
        quantized = nncf.quantize_with_accuracy_control(
            fp32_ir, calibration_dataset=nncf.Dataset(calib), validation_dataset=nncf.Dataset(val),
            validation_fn=validate, max_drop=budget / 100, drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(calib))
        nncf_s = time.perf_counter() - t0
        path = work / "nncf.xml"
        ov.save_model(quantized, str(path), compress_to_fp16=False)
        models["nncf"] = {"openvino": path}
        nncf_row = {"wall_time_s": round(nncf_s, 1), "nncf_version": nncf.__version__}

    # ---- accuracy and interleaved latency
    rows: dict[str, dict[str, Any]] = {}
    sessions: dict[tuple[str, str], Any] = {}
    for name, files in models.items():
        for fmt, path in files.items():
            precision = "fp32" if name == "fp32" else "int8"
            runtime, device = ("onnxruntime", "cpu") if fmt == "onnx" else ("openvino", "CPU")
            session = RUNTIMES.get(runtime).load(path, device, precision, args.threads)
            sessions[(name, fmt)] = session
            row = rows.setdefault(name, {})
            row[f"{fmt}_accuracy"] = accuracy(session, eval_batches)
            counts = session.op_counts()
            if counts is not None:
                row[f"{fmt}_float_convs"] = counts.float["conv"]
                row[f"{fmt}_int8_convs"] = counts.int8["conv"]
    sample = {"input": next(iter(eval_batches))[0]["input"][:1]}
    timings: dict[tuple[str, str], list[float]] = {key: [] for key in sessions}
    for _ in range(args.rounds):
        for key, session in sessions.items():
            timings[key].append(p50_ms(session, sample, args.iterations))
    for (name, fmt), values in timings.items():
        ref = timings[("fp32", fmt)]
        ratios = [v / r for v, r in zip(values, ref, strict=True)]
        rows[name][f"{fmt}_p50_ms_rounds"] = [round(v, 4) for v in values]
        rows[name][f"{fmt}_p50_vs_fp32"] = round(statistics.median(ratios), 3)
        rows[name][f"{fmt}_p50_vs_fp32_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    for k, step in enumerate(report["steps"]):
        rows[f"step{k}"]["float_layers"] = step["float_layers"]
        rows[f"step{k}"]["torch_val_accuracy"] = step["accuracy"]
    if nncf_row:
        rows["nncf"].update(nncf_row)

    result = {
        "name": args.name, "config": args.config, "target": args.target, "budget_points": budget,
        "threads": args.threads, "rounds": args.rounds, "iterations": args.iterations,
        "eval_split": inputs.index.eval_split, "eval_images": sum(len(y) for _, y in eval_batches),
        "val_images": sum(len(y) for _, y in val_batches),
        "fallback": {k: report[k] for k in ("status", "message", "float_layers", "layers", "convs", "steps")},
        "sensitivity": report["sensitivity"], "quantize_wall_s": round(quantize_s, 1),
        "export_wall_s": round(export_s, 1),
        "export_plan_check": {k: v.get("precision_plan", {}).get("summary") for k, v in parity.items()
                              if "int8" in k},
        "export_accuracy": {k: v["accuracy"] for k, v in parity.items()},
        "rows": rows,
        "versions": {m: __import__(m).__version__ for m in ("torch", "torchao", "onnxruntime", "openvino")},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'model':8} {'float layers':>12} {'ORT acc':>8} {'OV acc':>8} {'ORT p50/fp32':>14} {'OV p50/fp32':>14}")
    for name, row in rows.items():
        def cell(fmt: str, row: dict[str, Any] = row) -> str:
            if f"{fmt}_p50_vs_fp32" not in row:
                return "-"
            lo, hi = row[f"{fmt}_p50_vs_fp32_range"]
            return f"{row[f'{fmt}_p50_vs_fp32']:.2f} [{lo:.2f}-{hi:.2f}]"

        acc = {f: f"{100 * row[f'{f}_accuracy']:.2f}" if f"{f}_accuracy" in row else "-"
               for f in ("onnx", "openvino")}
        n = len(row.get("float_layers", [])) if name.startswith("step") else row.get("openvino_float_convs", "")
        print(f"{name:8} {n!s:>12} {acc['onnx']:>8} {acc['openvino']:>8} {cell('onnx'):>14} {cell('openvino'):>14}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
