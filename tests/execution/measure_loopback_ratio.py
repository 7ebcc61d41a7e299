"""p50 of one small ONNX model on the loopback "device" (sshd on 127.0.0.1, device_runner.py in the device venv)
against the same model measured in-process by edgetl's host code, interleaved rounds.

    PYTHONPATH=$PWD /work/main/.venv/bin/python tests/execution/measure_loopback_ratio.py [--rounds 3]

Root only (it starts the test sshd of conftest.py). Prints one line per round and the median ratio with its spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgetl.bench.measure import TimingPlan, latency_stats, timed_runs
from edgetl.execution.ssh import measure_on_device
from edgetl.runtimes import RUNTIMES
from tests.execution.conftest import loopback_server

SIZE, WIDTH, THREADS = 64, 32, 1
TIMING = {"warmup": 20, "min_iterations": 200, "min_time_s": 3.0}


def model(path: Path) -> Path:
    """Two 3x3 convs (32 channels) on 64 px -> pool -> linear: about 1 ms a run on one core."""
    rng = np.random.default_rng(0)
    weights = {"w1": (WIDTH, 3, 3, 3), "w2": (WIDTH, WIDTH, 3, 3), "fc": (10, WIDTH)}
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "ratio", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32), n) for n, s in weights.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def host_p50(path: Path) -> float:
    session = RUNTIMES.get("onnxruntime").load(path, "cpu", "fp32", THREADS)
    x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)
    session.run(x)
    try:
        return latency_stats(timed_runs(lambda: session.run(x), TimingPlan(**TIMING))).p50
    finally:
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, loopback_server() as box:
        path = model(Path(tmp) / "ratio.onnx")
        device = box.device(command_timeout_s=300)
        row = {"model": path.name, "runtime": "onnxruntime", "device": "cpu", "threads": THREADS, **TIMING}
        ratios = []
        for i in range(args.rounds):
            host = host_p50(path)
            _, (remote,) = measure_on_device(device, [row], [path])
            dev = remote["latency_ms"]["p50"]
            ratios.append(dev / host)
            print(json.dumps({"round": i + 1, "host_p50_ms": host, "device_p50_ms": dev,
                              "ratio": round(dev / host, 3), "device_iterations": remote["latency_ms"]["iterations"]}))
        print(f"device/host p50: median {statistics.median(ratios):.3f}, spread {min(ratios):.3f}..{max(ratios):.3f} "
              f"over {len(ratios)} interleaved rounds ({THREADS} thread, {SIZE} px, {WIDTH} channels)")


if __name__ == "__main__":
    main()
