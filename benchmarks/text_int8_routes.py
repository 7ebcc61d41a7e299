"""Issue 16's int8 routes for a BERT-class text encoder, side by side, per runtime: which int8 is fastest at equal
accuracy in ONNX Runtime and in OpenVINO.

    python benchmarks/text_int8_routes.py                          # random-head minilm_l6: latency only
    python benchmarks/text_int8_routes.py --run RUN_DIR            # a fine-tuned run: latency and test accuracy

Routes (all from one float model; every int8 weight is per output channel, symmetric):

* ``ort fp32 (dynamo)``: the float ONNX the pipeline exported before (dynamo exporter, SDPA attention) -- the
  untuned reference; ``ort fp32 (fused)``: the TorchScript export with eager attention, fused by
  ``onnxruntime.transformers.optimizer`` (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu).
* ``ort dyn (untuned)``: ``quantize_dynamic`` on the dynamo export (the issue's by-hand baseline);
  ``ort dyn (fused)``: ``quantize_dynamic`` on the fused graph -> QAttention, DynamicQuantizeMatMul, and
  QEmbedLayerNormalization (int8 embedding tables). Activations are quantized at run time, per tensor.
* ``ort qdq (linears)`` / ``ort qdq (+attn)``: ``quantize_static`` QDQ on the unfused TorchScript export, uint8
  activations from calibration, the weight matmuls only, or the two attention matmuls too.
* ``ov fp32``: the unfused TorchScript export in OpenVINO (f32 hint); ``ov qdq (linears)``: the same QDQ ONNX;
  ``ov nncf``: ``nncf.quantize`` on the OpenVINO model, ``ModelType.TRANSFORMER`` (int8 weights AND int8
  activations, static, calibrated; not the weights-only ``nncf.compress_weights``).

Latency: batch 1 (and 8), 2 runtime threads, 32 and 128 tokens, interleaved rounds (each round times every model in
turn), the median of the per-round p50 ratios to the runtime's fp32 reference with the min-max spread. Accuracy (with
``--run``): test split at batch 1, tokenized as the bundle does. Writes benchmarks/results/text_int8_routes.json
and benchmarks/reported/text_int8_routes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _token_latency import interleaved_rounds, token_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REPORTED = ROOT / "benchmarks" / "reported"


def _float_model(run: Path | None) -> tuple[Any, Any, dict[str, Any] | None, Any]:
    """(model, task, preprocess, index) of a fine-tuned run, or a random-head minilm_l6."""
    from edgetl.backbones import create_model
    from edgetl.tasks import get_task

    if run is None:
        return create_model("minilm_l6", 2, "default").eval(), get_task("text_classification"), None, None
    from edgetl.stages.quantize import read_float_model

    inputs = read_float_model(run / "train")
    return inputs.artifact.load().eval(), inputs.task, inputs.preprocess, inputs.index


def _calibration(preprocess: dict[str, Any] | None, index: Any, n: int, vocab: int) -> list[dict[str, np.ndarray]]:
    """``n`` batch-1 inputs: seeded training texts (a run), else random tokens of 8..128."""
    if preprocess is None:
        rng = np.random.default_rng(0)
        out = []
        for _ in range(n):
            length = int(rng.integers(8, 129))
            ids = rng.integers(1000, vocab, size=(1, length), dtype=np.int64)
            out.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        return out
    from edgetl.tasks.text import encode_texts

    rows = list(index.splits["train"])
    random.Random(0).shuffle(rows)
    out = []
    for text, _ in rows[:n]:
        ids, mask = encode_texts([text], preprocess)
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def build_routes(model: Any, task: Any, out: Path, calib: list[dict[str, np.ndarray]],
                 dynamo_fp32: Path | None, reuse: bool = False,
                 with_fallback: bool = False) -> tuple[dict[str, Path], dict[str, float]]:
    """Every ONNX/IR file compared; returns name -> path and the wall seconds of each route's making."""
    import openvino as ov
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from edgetl.backbones.text import export_text_onnx
    from edgetl.export.text_int8 import dynamic_int8, fuse_bert, weight_matmuls

    files: dict[str, Path] = {}
    walls: dict[str, float] = {}

    def timed(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        fn()
        walls[name] = round(time.perf_counter() - t0, 1)

    if dynamo_fp32 is None and (out / "fp32_dynamo.onnx").is_file() and reuse:
        dynamo_fp32 = out / "fp32_dynamo.onnx"
    if dynamo_fp32 is None:
        from edgetl.export.writers import export_onnx
        from edgetl.tasks.base import ResolvedInput

        io = task.model_io(ResolvedInput(size=128, channels=1, batch_sizes=(1, 8), dynamic_batch=True), 2)
        dynamo_fp32 = out / "fp32_dynamo.onnx"
        timed("fp32 dynamo export", lambda: export_onnx(model, task.example_inputs(io, 2), dynamo_fp32, opset=20,
                                                         dynamic=True, metadata={}, what="fp32", io=io))
    files["ort fp32 (dynamo)"] = dynamo_fp32
    eager = out / "fp32_eager.onnx"
    attn = model.encoder.config._attn_implementation
    model.encoder.config._attn_implementation = "eager"
    try:
        timed("fp32 eager export", lambda: export_text_onnx(model, eager))
    finally:
        model.encoder.config._attn_implementation = attn
    files["ort fp32 (unfused)"] = eager
    fused = out / "fp32_fused.onnx"
    timed("fuse", lambda: fuse_bert(eager, fused, model.encoder.config))
    files["ort fp32 (fused)"] = fused
    dyn = out / "dyn_untuned.onnx"
    timed("ort dyn (untuned)", lambda: quantize_dynamic(str(dynamo_fp32), str(dyn), weight_type=QuantType.QInt8,
                                                        per_channel=True))
    files["ort dyn (untuned)"] = dyn
    dyn_f = out / "dyn_fused.onnx"
    timed("ort dyn (fused)", lambda: dynamic_int8(fused, dyn_f))
    files["ort dyn (fused)"] = dyn_f

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    linears = weight_matmuls(eager)
    # the FFN down-projections (input: the GELU output, whose outliers a per-tensor static range clips or coarsens)
    ffn_out = [n for n in linears if "/output/dense/" in n and "/attention/" not in n]
    variants = [("ort qdq (linears)", "qdq_linears.onnx", linears), ("ort qdq (+attn)", "qdq_all.onnx", None)]
    if with_fallback:
        variants.append(("ort qdq (ffn-out fp)", "qdq_ffn_fp.onnx", [n for n in linears if n not in ffn_out]))
    for name, file, only in variants:
        path = out / file
        timed(name, lambda path=path, only=only: quantize_static(
            str(eager), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_quantize=only, extra_options={"WeightSymmetric": True, "ActivationSymmetric": False}))
        files[name] = path
    core = ov.Core()
    files["ov fp32"] = eager
    files["ov qdq (linears)"] = out / "qdq_linears.onnx"
    if with_fallback:
        files["ov qdq (ffn-out fp)"] = out / "qdq_ffn_fp.onnx"
    nncf_xml = out / "ov_nncf.xml"

    def nncf_route() -> None:
        import nncf

        ov_model = core.read_model(str(eager))
        q = nncf.quantize(ov_model, nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER,
                          preset=nncf.QuantizationPreset.MIXED, subset_size=len(calib))
        ov.save_model(q, str(nncf_xml), compress_to_fp16=False)

    try:
        import nncf  # noqa: F401
    except ImportError:
        walls["ov nncf"] = -1.0  # not installed: the route is not measured
    else:
        timed("ov nncf", nncf_route)
        files["ov nncf"] = nncf_xml
    return files, walls


def sessions(files: dict[str, Path], threads: int) -> dict[str, Any]:
    import onnxruntime as ort
    import openvino as ov

    runs: dict[str, Any] = {}
    core = ov.Core()
    for name, path in files.items():
        if name.startswith("ort"):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            runs[name] = lambda x, s=s: s.run(None, x)[0]
        else:
            compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                             "INFERENCE_PRECISION_HINT": "f32",
                                                             "PERFORMANCE_HINT": "LATENCY"})
            r = compiled.create_infer_request()
            runs[name] = lambda x, r=r: next(iter(r.infer(x).values()))
    return runs


def reference(name: str) -> str:
    return "ov fp32" if name.startswith("ov") else "ort fp32 (dynamo)"


def interleaved(runs: dict[str, Any], batch: int, seq_len: int, rounds: int, iters: int) -> dict[str, Any]:
    per_round, low = interleaved_rounds(runs, token_inputs(batch, seq_len), rounds, iters)  # low: per-round p10
    out = {}
    for name, p50s in per_round.items():
        base = per_round[reference(name)]
        fused = per_round.get("ort fp32 (fused)")
        ratios = [a / b for a, b in zip(p50s, base, strict=True)]
        row = {"p50_ms": round(statistics.median(p50s), 3), "ratio": round(statistics.median(ratios), 3),
               "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3)}
        row["ratio_p10"] = round(statistics.median(a / b for a, b in zip(low[name], low[reference(name)],
                                                                          strict=True)), 3)
        if name.startswith("ort") and fused:
            vs = [a / b for a, b in zip(p50s, fused, strict=True)]
            row["ratio_vs_fused_fp32"] = round(statistics.median(vs), 3)
        out[name] = row
    return out


def accuracy(runs: dict[str, Any], preprocess: dict[str, Any], index: Any, split: str) -> dict[str, float]:
    from edgetl.tasks.text import encode_texts

    rows = list(index.splits[split])
    encoded = [encode_texts([t], preprocess) for t, _ in rows]
    labels = np.asarray([y for _, y in rows])
    out = {}
    for name, run in runs.items():
        if name == "ort fp32 (unfused)":
            continue
        pred = np.asarray([int(np.asarray(run({"input_ids": i, "attention_mask": m})).argmax()) for i, m in encoded])
        out[name] = round(float((pred == labels).mean()), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a fine-tuned text run directory (train/ inside)")
    parser.add_argument("--work", type=Path, default=RESULTS / "text_int8_routes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[1])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--calibration", type=int, default=128)
    parser.add_argument("--reuse-dynamo", action="store_true",
                        help="reuse WORK/fp32_dynamo.onnx (the random-head model's dynamo export) from an earlier run")
    parser.add_argument("--no-latency", action="store_true", help="accuracy only (with --run)")
    parser.add_argument("--split", default="test", help="accuracy split (with --run)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    model, task, preprocess, index = _float_model(args.run)
    calib = _calibration(preprocess, index, args.calibration, int(model.encoder.config.vocab_size))
    dyn_src = args.run / "export" / "model_fp32.onnx" if args.run else None
    files, walls = build_routes(model, task, args.work, calib, dyn_src if dyn_src and dyn_src.is_file() else None,
                                args.reuse_dynamo, with_fallback=args.run is not None)
    if args.run:  # the pipeline's own artifacts, where the run was built (edgetl build)
        for name, rel in (("ort pipeline ptq (pt2e qdq)", "model_int8_ptq.onnx"),
                          ("ort pipeline qat (pt2e qdq)", "model_int8_qat.onnx"),
                          ("ort pipeline dynamic", "model_int8_dynamic.onnx"),
                          ("ov pipeline ptq (pt2e qdq)", "openvino/model_int8_ptq.xml"),
                          ("ov pipeline qat (pt2e qdq)", "openvino/model_int8_qat.xml")):
            if (args.run / "export" / rel).is_file():
                files[name] = args.run / "export" / rel
    sizes = {n: round((p.stat().st_size + (p.with_suffix(".bin").stat().st_size if p.suffix == ".xml" else 0)) / 1e6,
                      2) for n, p in files.items()}
    runs = sessions(files, args.threads)
    summary: dict[str, Any] = {"command": "python " + " ".join(sys.argv), "threads": args.threads,
                               "rounds": args.rounds, "iters": args.iters, "calibration": args.calibration,
                               "model": str(args.run) if args.run else "minilm_l6, random head",
                               "make_s": walls, "size_mb": sizes, "latency": {},
                               "load_average_before": [round(x, 2) for x in os.getloadavg()],
                               "cpus": os.cpu_count()}
    for b in [] if args.no_latency else args.batches:
        for n in args.lengths:
            # a batch-8 call does 8x the work: fewer calls per round keep the rounds equally long
            summary["latency"][f"b{b}_t{n}"] = interleaved(runs, b, n, args.rounds, max(3, args.iters // b))
    summary["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.run:
        summary["accuracy_split"] = args.split
        summary["accuracy"] = accuracy(runs, preprocess, index, args.split)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "text_int8_routes" + ("_accuracy" if args.no_latency else "" if args.run else "_latency")
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    REPORTED.mkdir(parents=True, exist_ok=True)
    (REPORTED / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    keys = list(summary["latency"])
    print(f"\n{summary['model']}; {args.threads} threads, {args.rounds} interleaved rounds x {args.iters}; ratio = "
          "median [min-max] of per-round p50 over the runtime's fp32 (ORT: the dynamo export; OV: ov fp32)")
    print(f"{'route':<20} {'MB':>6} {'acc':>7}  " + "  ".join(f"{k:>34}" for k in keys))
    for name in files:
        acc = summary.get("accuracy", {}).get(name)
        cells = []
        for k in keys:
            if name not in summary["latency"][k]:
                continue
            r = summary["latency"][k][name]
            cells.append(f"{r['p50_ms']:7.2f}ms {r['ratio']:.3f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]"
                         f" p10 {r['ratio_p10']:.2f}")
        print(f"{name:<20} {sizes[name]:>6} {'-' if acc is None else f'{100 * acc:.2f}':>7}  " + "  ".join(
            f"{c:>34}" for c in cells))


if __name__ == "__main__":
    main()
