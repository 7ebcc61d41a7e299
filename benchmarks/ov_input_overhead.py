"""What edgetl's OpenVINO run() adds per call to benchmark_app's loop: the input copy, measured in one process.

On one compiled request (CPU, LATENCY hint, f32, N threads) three ways to run a batch-1 1x3x224x224 input,
interleaved round by round (each round: a short warm-up, then a block of timed calls of each way in turn):

- ``preset``: the input was put in the request once; ``infer()`` only (what benchmark_app's sync loop times);
- ``copy``: ``np.copyto`` into the request's own buffer, then ``infer()`` (edgetl's adapter before);
- ``shared``: the caller's array as a shared ``ov.Tensor`` (``set_input_tensor``), then ``infer()`` (edgetl now).

Each also copies the logits out, as ``session.run`` returns them. Models: ``reduce`` (a mean over the input:
almost no compute, so the per-call overhead shows) and efficientnet_lite0 fp32 (random weights).

    python benchmarks/ov_input_overhead.py [--rounds 15] [--calls 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _latency_models import RESULTS, SIZE, convert_ir, export_onnx, write  # noqa: E402


def reduce_model():  # type: ignore[no-untyped-def]
    import openvino as ov
    from openvino import opset13 as ops

    p = ops.parameter([1, 3, SIZE, SIZE], np.float32, name="input")
    return ov.Model([ops.reduce_mean(p, [2, 3], keep_dims=False)], [p], "reduce")


def ways(request, tensor_type, x: np.ndarray) -> dict:  # type: ignore[no-untyped-def]
    own = request.get_input_tensor(0)
    view = own.data

    def preset() -> np.ndarray:
        request.infer()
        return request.get_output_tensor(0).data.copy()

    def copy() -> np.ndarray:
        np.copyto(view, x, casting="same_kind")
        request.set_input_tensor(0, own)
        request.infer()
        return request.get_output_tensor(0).data.copy()

    def shared() -> np.ndarray:
        request.set_input_tensor(0, tensor_type(x, shared_memory=True))
        request.infer()
        return request.get_output_tensor(0).data.copy()

    return {"preset": preset, "copy": copy, "shared": shared}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300, help="timed calls per way per round (reduce model)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import openvino as ov

    core = ov.Core()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ov-input-", dir=RESULTS))
    models = {"reduce": reduce_model(),
              "efficientnet_lite0": core.read_model(str(convert_ir(export_onnx("efficientnet_lite0",
                                                                                work / "e.onnx"), work / "e.xml")))}
    x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads}
    rows = []
    print(f"{'model':<19} {'way':<7} {'median us':>10} {'min-max of round medians us':>28} {'vs preset us':>13}")
    for name, model in models.items():
        model.reshape({0: [1, 3, SIZE, SIZE]})
        request = core.compile_model(model, "CPU", config).create_infer_request()
        request.get_input_tensor(0).data[:] = x
        calls = args.calls if name == "reduce" else max(10, args.calls // 30)
        runs = ways(request, ov.Tensor, x)
        outputs = {way: run() for way, run in runs.items()}
        assert all(np.array_equal(outputs["preset"], o) for o in outputs.values())
        medians: dict[str, list[float]] = {way: [] for way in runs}
        for _ in range(args.rounds):
            for way, run in runs.items():
                for _ in range(5):
                    run()
                samples = []
                for _ in range(calls):
                    t0 = time.perf_counter_ns()
                    run()
                    samples.append(time.perf_counter_ns() - t0)
                medians[way].append(statistics.median(samples) / 1000)
        for way, values in medians.items():
            med = statistics.median(values)
            # the per-round difference to preset, which cancels the load of that round
            diffs = [v - p for v, p in zip(values, medians["preset"], strict=True)]
            rows.append({"model": name, "way": way, "median_us": round(med, 2), "round_min_us": round(min(values), 2),
                         "round_max_us": round(max(values), 2), "minus_preset_median_us": round(statistics.median(diffs), 2),
                         "minus_preset_min_max_us": [round(min(diffs), 2), round(max(diffs), 2)]})
            print(f"{name:<19} {way:<7} {med:>10.1f} {min(values):>13.1f}-{max(values):<14.1f} "
                  f"{statistics.median(diffs):>+13.1f}")
    settings = {"threads": args.threads, "rounds": args.rounds, "calls_per_round": args.calls,
                "input": f"1x3x{SIZE}x{SIZE} float32", "config": config}
    write("ov_input_overhead", {"settings": settings, "rows": rows}, {"settings": settings, "rows": rows})


if __name__ == "__main__":
    main()
