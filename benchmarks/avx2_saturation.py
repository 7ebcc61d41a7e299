"""Do this host's int8 kernels saturate, per layer kind and weight range, and what each weight range costs a model.

1. **Kernels.** One Q/DQ convolution (64 input channels, 3x3, 16x16, activations u8 200..255, weights uniform in
   -W..W) in ONNX Runtime's int8 kernels (``QLinearConv`` after its graph optimisations) and in OpenVINO's CPU
   plugin, against the exact Q/DQ arithmetic (ONNX Runtime with its optimisations off). For a dense and a
   depthwise conv, at W = 127 and W = 63: the fraction of outputs that differ, and the largest difference in
   output quantization steps. On an x86 CPU without VNNI/AMX the u8 x s8 pairwise int16 sums of ``vpmaddubsw``
   saturate for dense convs at full range; with VNNI (or on Arm) nothing differs.
2. **A model** (``--run RUN_DIR``: a build's fine-tuned ``train/``): PTQ of it with the build's calibration at three
   weight ranges (``full`` -127..127; ``reduced-all`` -63..63 everywhere; ``reduced-dense`` -63..63 with depthwise
   convs at full range, edgetl's ``reduced``), each scored on val and on the evaluation split in torch's reference
   ops, in ONNX Runtime's int8 kernels, and in ONNX Runtime with its optimisations off (the exact arithmetic).

Prints a table per part and writes ``benchmarks/reported/avx2_saturation.json``.

    python benchmarks/avx2_saturation.py
    python benchmarks/avx2_saturation.py --run runs/demo --config edgetl/configs/demo.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REPORTED = ROOT / "benchmarks" / "reported" / "avx2_saturation.json"
OUT_SCALE = 4.0


def _conv_model(weights: np.ndarray, depthwise: bool) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    cout, cin = weights.shape[0], weights.shape[0] if depthwise else weights.shape[1]
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
             numpy_helper.from_array(np.array(0, np.uint8), "xz"),
             numpy_helper.from_array(weights, "w"),
             numpy_helper.from_array(np.full(cout, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "wz"),
             numpy_helper.from_array(np.array(OUT_SCALE, np.float32), "ys"),
             numpy_helper.from_array(np.array(128, np.uint8), "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1], group=cin if depthwise else 1),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model.SerializeToString()


def _ort(model: bytes | str, optimise: bool) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def kernels(seed: int = 0) -> list[dict[str, Any]]:
    import openvino as ov

    rng = np.random.default_rng(seed)
    x = (rng.integers(200, 256, size=(1, 64, 16, 16)) * 0.02).astype(np.float32)
    core = ov.Core()
    rows = []
    for depthwise in (False, True):
        for wmax in (127, 63):
            shape = (64, 1, 3, 3) if depthwise else (32, 64, 3, 3)
            model = _conv_model(rng.integers(-wmax, wmax + 1, size=shape).astype(np.int8), depthwise)
            exact = _ort(model, optimise=False).run(None, {"x": x})[0]
            got = {"onnxruntime": _ort(model, optimise=True).run(None, {"x": x})[0]}
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "conv.onnx"
                path.write_bytes(model)
                compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                got["openvino"] = compiled(x)[0]
            for runtime, out in got.items():
                steps = np.abs(out - exact) / OUT_SCALE
                rows.append({"layer": "depthwise" if depthwise else "dense", "weights": f"-{wmax}..{wmax}",
                             "runtime": runtime, "outputs_differing": float(np.mean(steps > 0.5)),
                             "max_steps": float(steps.max())})
    return rows


def model_rows(run: Path, config: Path | None) -> list[dict[str, Any]]:
    from edgetl.config import load_build_config
    from edgetl.export.writers import export_onnx
    from edgetl.quant import QuantizerOptions, make_quantizer
    from edgetl.stages.quantize import _calibration_batches, _split_batches, read_float_model, torch_accuracy
    from edgetl.targets import load_target

    cfg = load_build_config(config) if config else load_build_config(None)
    inputs = read_float_model(run / "train")
    io = inputs.artifact.card.io
    model = inputs.artifact.load()
    example = inputs.task.example_inputs(io, 2)
    calibration = _calibration_batches(cfg, inputs)
    opset = cfg.export.opset or load_target(cfg.target).export.opset
    splits = {s: _split_batches(inputs, s, 64) for s in dict.fromkeys(("val", inputs.index.eval_split))}
    rows = [{"weights": "fp32", "split": s, "torch": torch_accuracy(model, b)} for s, b in splits.items()]
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgetl.quant.pt2e import capture

    for name, dense, depthwise in (("full", 127, 127), ("reduced-all", 63, 63), ("reduced-dense", 63, 127)):
        started = time.perf_counter()
        quantizer = make_quantizer(QuantizerOptions(weight_max=dense, depthwise_weight_max=depthwise))
        prepared = prepare_pt2e(capture(model, example, stage="bench", what="model", io=io).module(),
                                quantizer)
        import torch

        with torch.no_grad():
            for batch in calibration:
                prepared(*batch.values())
        converted = convert_pt2e(prepared)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            export_onnx(converted, example, path, opset=opset, dynamic=True, metadata={}, what="bench", io=io)
            sessions = {"ort_int8": _ort(str(path), True), "ort_exact": _ort(str(path), False)}
            for split, batches in splits.items():
                row: dict[str, Any] = {"weights": name, "split": split, "torch": torch_accuracy(converted, batches)}
                for key, session in sessions.items():
                    names = [i.name for i in session.get_inputs()]
                    correct = total = 0
                    for feeds, labels in batches:
                        logits = session.run(None, dict(zip(names, feeds.values(), strict=True)))[0]
                        correct += int((logits.argmax(1) == labels).sum())
                        total += len(labels)
                    row[key] = correct / total
                rows.append(row)
        print(f"  {name}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a build directory with a fine-tuned train/ (part 2)")
    parser.add_argument("--config", type=Path, help="that build's config (calibration count, target opset)")
    args = parser.parse_args()
    from edgetl.fsutil import write_json
    from edgetl.host import host_facts, u8s8_saturates

    print(f"host: u8 x s8 kernels saturate at full range (no VNNI/AMX): {u8s8_saturates()}")
    krows = kernels()
    print(f"\n{'layer':10} {'weights':10} {'runtime':12} {'outputs differing':>18} {'max steps':>10}")
    for r in krows:
        print(f"{r['layer']:10} {r['weights']:10} {r['runtime']:12} {r['outputs_differing']:>17.1%} "
              f"{r['max_steps']:>10.0f}")
    result: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host_facts(),
                              "command": "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
                              "u8s8_saturates": u8s8_saturates(), "kernels": krows}
    if args.run:
        mrows = model_rows(args.run, args.config)
        print(f"\n{'weights':14} {'split':6} {'torch':>7} {'ORT int8':>9} {'ORT exact':>10}")
        for r in mrows:
            print(f"{r['weights']:14} {r['split']:6} {100 * r['torch']:>6.2f}% "
                  + (f"{100 * r['ort_int8']:>8.2f}% {100 * r['ort_exact']:>9.2f}%" if "ort_int8" in r else ""))
        result.update({"run": str(args.run), "model": mrows})
    write_json(REPORTED, result)
    print(f"\nwrote {REPORTED}")


if __name__ == "__main__":
    main()
