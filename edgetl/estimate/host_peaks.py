"""Microbenchmarks of this host's *achievable* peaks: fp32 FLOP/s, int8 op/s, memory bandwidth, per-op overhead.

Published peaks are what a data sheet promises; a roofline checked against a measured latency needs what the
runtime actually reaches. The compute figures are measured with ONNX Runtime's CPU kernels (MLAS), the same ones
that run the exported models, on one large GEMM built with ``onnx.helper``: ``MatMul`` for fp32, ``MatMulInteger``
(uint8 x int8 -> int32, the core of ``QLinearConv``) for int8. Bandwidth is a large array copy split over the
threads. The per-op overhead is the time per node of a chain of tiny convolutions, whose own work is negligible:
ONNX Runtime's dispatch and thread-pool cost per kernel.

Every figure is measured in several rounds, interleaved, and reported as the median with the min-max spread:
on a shared machine one round means little.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from edgetl.errors import ConfigError
from edgetl.estimate.peaks import DevicePeaks

OVERHEAD_CHAIN = 64  # tiny convs per overhead probe: enough that one Python call's cost is spread thin


@dataclass(frozen=True)
class Figure:
    """One measured rate: the median over rounds, the lowest and highest round, and how it was measured."""

    median: float
    low: float
    high: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "low": self.low, "high": self.high, "method": self.method}


@dataclass(frozen=True)
class HostPeaks:
    """This host's achievable peaks at ``threads`` threads (medians of ``rounds`` interleaved rounds)."""

    fp32_flops_per_s: Figure
    int8_ops_per_s: Figure
    bandwidth_bytes_per_s: Figure
    op_overhead_s: Figure
    threads: int
    rounds: int

    def to_device_peaks(self) -> DevicePeaks:
        """The medians as :class:`DevicePeaks`, labelled measured; fp16 is None (no fp16 kernels on this CPU path)."""
        return DevicePeaks(
            int8_ops_per_s=self.int8_ops_per_s.median, fp16_ops_per_s=None,
            fp32_ops_per_s=self.fp32_flops_per_s.median, bandwidth_bytes_per_s=self.bandwidth_bytes_per_s.median,
            source=f"measured on this host ({self.threads} threads, median of {self.rounds} rounds)",
            labels={"int8": f"measured: {self.int8_ops_per_s.method}",
                    "fp32": f"measured: {self.fp32_flops_per_s.method}",
                    "bandwidth": f"measured: {self.bandwidth_bytes_per_s.method}",
                    "fp16": "none: not measured (ONNX Runtime CPU runs no fp16 kernels here)"},
        )

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "rounds": self.rounds,
                "fp32_flops_per_s": self.fp32_flops_per_s.to_dict(), "int8_ops_per_s": self.int8_ops_per_s.to_dict(),
                "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s.to_dict(),
                "op_overhead_s": self.op_overhead_s.to_dict()}


def measure_host_peaks(threads: int = 2, *, matmul_size: int = 1024, bandwidth_mb: int = 256, rounds: int = 5,
                       min_time_s: float = 0.1) -> HostPeaks:
    """Measure fp32 and int8 GEMM rates, copy bandwidth and per-op overhead; a few seconds at the defaults.

    Args:
        threads: intra-op threads for ONNX Runtime and the number of copy threads.
        matmul_size: n of the n x n x n GEMMs (large enough to leave the caches' fast path: 1024 and up).
        bandwidth_mb: size of each of the two copy buffers (source, destination), in MiB.
        rounds: interleaved rounds; each figure is the median over them.
        min_time_s: how long each figure runs per round.

    Returns:
        The medians with their spread, as :class:`HostPeaks`.

    Raises:
        ConfigError: a size, the thread count or the round count is not positive.
    """
    if min(threads, matmul_size, bandwidth_mb, rounds) < 1 or min_time_s <= 0:
        raise ConfigError("measure_host_peaks: threads, sizes, rounds and min_time_s must be positive")
    from concurrent.futures import ThreadPoolExecutor

    n = matmul_size
    rates: dict[str, list[float]] = {"fp32": [], "int8": [], "bandwidth": [], "overhead": []}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        probes: dict[str, tuple[Callable[[], object], float]] = {
            "fp32": (_gemm_runner("fp32", n, threads), 2.0 * n**3),
            "int8": (_gemm_runner("int8", n, threads), 2.0 * n**3),
            "bandwidth": _copy_runner(bandwidth_mb * 2**20, threads, pool),
            "overhead": (_overhead_runner(threads), 1.0),
        }
        for _ in range(rounds):
            for key, (run, work) in probes.items():
                rates[key].append(work * _runs_per_second(run, min_time_s))
    overhead = [1.0 / (rate * OVERHEAD_CHAIN) for rate in rates["overhead"]]
    return HostPeaks(
        fp32_flops_per_s=_figure(rates["fp32"], f"ONNX Runtime MatMul fp32 {n}x{n}x{n}, {threads} threads"),
        int8_ops_per_s=_figure(rates["int8"],
                               f"ONNX Runtime MatMulInteger u8 x s8 -> s32 {n}x{n}x{n}, {threads} threads"),
        bandwidth_bytes_per_s=_figure(
            rates["bandwidth"], f"numpy copy of {bandwidth_mb} MiB in {threads} slices, read + write bytes"),
        op_overhead_s=_figure(overhead, f"ONNX Runtime chain of {OVERHEAD_CHAIN} 1x1 convs on 8x4x4, per node, "
                                        f"{threads} threads"),
        threads=threads, rounds=rounds,
    )


def _figure(values: list[float], method: str) -> Figure:
    return Figure(median=statistics.median(values), low=min(values), high=max(values), method=method)


def _runs_per_second(run: Callable[[], object], min_time_s: float) -> float:
    """Calls per second of ``run`` over at least ``min_time_s`` (after one warm-up call)."""
    run()
    count = 0
    start = time.perf_counter_ns()
    deadline = start + int(min_time_s * 1e9)
    now = start
    while now < deadline or count < 3:
        run()
        count += 1
        now = time.perf_counter_ns()
    return count / ((now - start) / 1e9)


def _session(model: Any, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _gemm_runner(precision: str, n: int, threads: int) -> Callable[[], object]:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight: np.ndarray
    data: np.ndarray
    if precision == "fp32":
        weight = rng.standard_normal((n, n), dtype=np.float32)
        data = rng.standard_normal((n, n), dtype=np.float32)
        node = helper.make_node("MatMul", ["A", "W"], ["Y"])
        in_type, out_type = TensorProto.FLOAT, TensorProto.FLOAT
    else:
        weight = rng.integers(-127, 128, (n, n), dtype=np.int8)
        data = rng.integers(0, 256, (n, n), dtype=np.uint8)
        node = helper.make_node("MatMulInteger", ["A", "W"], ["Y"])
        in_type, out_type = TensorProto.UINT8, TensorProto.INT32
    graph = helper.make_graph([node], f"gemm_{precision}", [helper.make_tensor_value_info("A", in_type, [n, n])],
                              [helper.make_tensor_value_info("Y", out_type, [n, n])],
                              [numpy_helper.from_array(weight, "W")])
    session = _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), threads)
    feeds = {"A": data}
    return lambda: session.run(None, feeds)


def _copy_runner(nbytes: int, threads: int, pool: Executor) -> tuple[Callable[[], object], float]:
    """A copy of ``nbytes`` split into ``threads`` slices copied in parallel on ``pool`` (numpy releases the GIL)."""
    import numpy as np

    count = max(threads, nbytes // 8)
    source = np.ones(count, dtype=np.float64)
    target = np.zeros_like(source)  # zeros_like writes the pages, so the first timed copy takes no page faults
    bounds = np.linspace(0, count, threads + 1, dtype=np.int64)
    slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def copy_slice(part: slice) -> None:
        np.copyto(target[part], source[part])

    def run() -> None:
        if threads == 1:
            np.copyto(target, source)
        else:
            list(pool.map(copy_slice, slices))

    return run, 2.0 * source.nbytes  # read once, written once


def _overhead_runner(threads: int) -> Callable[[], object]:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    channels, size = 8, 4
    weight = numpy_helper.from_array(np.full((channels, channels, 1, 1), 0.1, dtype=np.float32), "W")
    names = ["X", *(f"t{i}" for i in range(1, OVERHEAD_CHAIN + 1))]
    nodes = [helper.make_node("Conv", [names[i], "W"], [names[i + 1]]) for i in range(OVERHEAD_CHAIN)]
    shape = [1, channels, size, size]
    graph = helper.make_graph(nodes, "overhead", [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, shape)],
                              [weight])
    session = _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), threads)
    feeds = {"X": np.ones(shape, dtype=np.float32)}
    return lambda: session.run(None, feeds)
