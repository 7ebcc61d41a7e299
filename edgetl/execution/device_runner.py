"""edgetl's device-side runner: measures planned rows on the machine it runs on and writes one results file.

This file is copied to the device and run there by the device's own ``python3`` (3.8 or newer). It imports only
the standard library, NumPy and the runtime a row names (``onnxruntime`` or ``openvino``, imported by name in the
row's child process); never torch, never edgetl. The parent process uses the standard library only, so a device
without NumPy or without the runtime still gets a results file that says what is missing.

Usage::

    python3 device_runner.py PLAN.json RESULTS.json [--pgid-file PATH] [--watch-stdin]

``--pgid-file`` makes the runner lead its own process group and write its id there, so one ``kill -- -PGID``
ends the runner and its children; ``--watch-stdin`` ends that group when stdin closes (the SSH connection went
away), so an interrupted host leaves nothing running on the device.

Each row runs in its own child process (this file again, ``--row``), so a runtime that segfaults on a model is a
``failed`` row naming the signal, and each row's peak memory is its own.

Exit codes: 0 every row ran (a row may still be ``failed``); 2 the plan is unreadable or invalid; 4 NumPy or a
runtime the plan names is not installed (those rows are ``skipped``; ``missing`` maps each one to its install hint).
The results file is written in every case (for exit 2 it holds ``error`` and no rows).

Plan (``PLAN.json``, schema_version 1); paths are relative to the plan file's directory::

    {"schema_version": 1,
     "rows": [{
        "id": "model@onnxruntime:cpu",      # echoed back; defaults to MODEL@RUNTIME:DEVICE
        "model": "model.onnx",              # .onnx, or an OpenVINO .xml with its .bin beside it
        "runtime": "onnxruntime",           # onnxruntime | openvino
        "device": "cpu",                    # onnxruntime: cpu, cuda, tensorrt, openvino, coreml; openvino: CPU, GPU, NPU
        "precision": "fp32",                # fp32 | fp16 | bf16 | int8 (OpenVINO: INFERENCE_PRECISION_HINT)
        "threads": 1,                       # null: the runtime's default
        "latency_batch": 1,                 # a model with a fixed batch uses its own
        "batch_sizes": [1, 8],              # throughput batch sizes
        "warmup": 10, "min_iterations": 50, "min_time_s": 1.0,
        "rounds": 1,                        # timing rounds, back to back; iterations and time shared out
        "keep_samples": 0,                  # latency samples (ms) kept in the row, evenly strided
        "input_shapes": {"input_ids": [1, 16]},   # optional: shapes for dynamic non-batch dimensions
        "timeout_s": 600,                   # the row's child is killed after this long
        "eval": {"inputs": {"input": "eval_input.npy"}, "labels": "labels.npy", "batch_size": 32,
                 "trim_to": "attention_mask"}  # or null; trim_to: optional, cut each batch's padding
     }]}

Inputs are named (input name -> array), so a text model's ``input_ids``/``attention_mask`` work as images do.
Latency inputs are random (float: standard normal, seed 0; integer and bool: ones) at each input's shape.

Results (``RESULTS.json``, schema_version 1)::

    {"schema_version": 1, "exit_code": 0, "error": "",
     "device": {"hostname", "cpu_model", "cpu_count", "cpu_affinity", "machine", "os", "kernel", "python",
                "python_executable", "numpy", "runtimes": {"onnxruntime": "1.20.1" or null}},
     "memory_method": "...",              # how peak_memory_mb was taken (VmHWM or ru_maxrss)
     "missing": {"onnxruntime": "pip install onnxruntime"},
     "rows": [{
        "id", "model", "runtime", "device", "precision",
        "status": "ok" | "failed" | "skipped", "reason": "",
        "latency_ms": {"p50", "p90", "p99", "mean", "std", "min", "max", "iterations"} or null,
        "latency_rounds_ms": [0.81, ...],  # each round's p50
        "latency_samples_ms": [...], "latency_batch": 1,
        "throughput": {"1": 812.3, "8": 1010.2, "4": null},   # images (samples) per second; null: fixed batch
        "cold_start_ms", "peak_memory_mb", "memory_source": "VmHWM" | "ru_maxrss",
        "threads", "settings": {...}, "runtime_version",
        "predictions": [3, 0, ...] or null, "accuracy": 0.95 or null, "eval_count",
        "logits": [[2.1, -0.3, ...], ...] or null,   # the first output per sample, rounded to 6 decimals
        "modules": [...],                  # top-level non-stdlib modules loaded in the row's child
        "exit_status": 0 or -11, "wall_s": 1.2}]}

Timing follows edgetl/bench/measure.py: ``time.perf_counter_ns``, warm-up, then timed runs until both
``min_iterations`` and ``min_time_s`` are met; p50/p90/p99 by ``numpy.percentile``, rounded to 4 decimals in ms.
With ``rounds`` > 1 the timing is split into that many rounds (each a 1/rounds share of the runs and the time,
re-warmed as the host does); ``latency_ms`` pools every round and ``latency_rounds_ms`` holds each round's p50.
Each row runs in its own process, so a device row's rounds follow one another rather than alternate with the
other rows' as on the host.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

SCHEMA_VERSION = 1
EXIT_OK, EXIT_BAD_PLAN, EXIT_MISSING = 0, 2, 4
MAX_ITERATIONS = 200_000  # the host's guard for sub-microsecond models with a long min_time
INSTALL_HINTS = {
    "numpy": "pip install numpy",
    "onnxruntime": "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA, TensorRT providers)",
    "openvino": "pip install openvino (GPU and NPU need Intel's drivers as well)",
}
# distribution names a runtime module may be installed under (for its version without importing it)
DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "openvino": ("openvino",),
    "numpy": ("numpy",),
}
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "tensorrt": "TensorrtExecutionProvider", "openvino": "OpenVINOExecutionProvider",
                 "coreml": "CoreMLExecutionProvider"}
OV_HINTS: dict[str, dict[str, str | None]] = {  # as edgetl/runtimes/openvino_runtime.py: f32 stated on the CPU
    "CPU": {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"},
    "GPU": {"fp32": "f32", "fp16": "f16", "int8": None},
    "NPU": {"fp16": None, "int8": None},
}
ROW_DEFAULTS: dict[str, Any] = {"precision": "fp32", "threads": None, "latency_batch": 1, "batch_sizes": [1],
                                "warmup": 10, "min_iterations": 50, "min_time_s": 1.0, "rounds": 1,
                                "keep_samples": 0,
                                "input_shapes": {}, "timeout_s": 600.0, "eval": None}
MEMORY_METHOD = ("peak_memory_mb = the row's child process's peak RSS (Linux /proc/self/status VmHWM, reset via "
                 "/proc/self/clear_refs after importing NumPy and the runtime; elsewhere getrusage ru_maxrss) "
                 "during load, first inference, warm-up and one run at each batch size, minus its RSS just after "
                 "importing the runtime")


# ------------------------------------------------------------------------------------------------ timing
def timed_runs(run: Callable[[], object], warmup: int, min_iterations: int, min_time_s: float) -> list[int]:
    """Warm up, then time ``run()`` until both ``min_iterations`` and ``min_time_s`` are met; nanoseconds each."""
    for _ in range(warmup):
        run()
    samples: list[int] = []
    min_ns = int(min_time_s * 1e9)
    clock = time.perf_counter_ns
    start = clock()
    while True:
        t0 = clock()
        run()
        samples.append(clock() - t0)
        if (len(samples) >= min_iterations and clock() - start >= min_ns) or len(samples) >= MAX_ITERATIONS:
            return samples


def latency_stats(samples_ns: list[int]) -> dict[str, float]:
    """p50/p90/p99/mean/std/min/max in ms (4 decimals) and the iteration count, as edgetl's host measures them."""
    import numpy as np

    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": round(float(p50), 4), "p90": round(float(p90), 4), "p99": round(float(p99), 4),
            "mean": round(float(ms.mean()), 4), "std": round(float(ms.std()), 4),
            "min": round(float(ms.min()), 4), "max": round(float(ms.max()), 4), "iterations": len(ms)}


def keep_samples(samples_ns: list[int], limit: int) -> list[float]:
    if limit <= 0 or not samples_ns:
        return []
    step = max(1, math.ceil(len(samples_ns) / limit))
    return [round(s / 1e6, 4) for s in samples_ns[::step]]


# ------------------------------------------------------------------------------------------------ memory
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class _Memory:
    """The child's peak RSS over a baseline taken now (after the imports)."""

    def __init__(self) -> None:
        self.source = "ru_maxrss"
        if _status_kb("VmHWM") is not None:
            try:  # "5" resets the high-water mark to the current RSS (Linux >= 4.0)
                with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                    fh.write("5")
                self.source = "VmHWM"
            except OSError:
                pass
        self.baseline_kb = _status_kb("VmRSS") if self.source == "VmHWM" else self._maxrss_kb()

    @staticmethod
    def _maxrss_kb() -> int:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, kB on Linux

    def peak_mb(self) -> float:
        now = _status_kb("VmHWM") if self.source == "VmHWM" else self._maxrss_kb()
        return round(max(0, (now or 0) - (self.baseline_kb or 0)) / 1024, 1)


# ------------------------------------------------------------------------------------------------ runtimes
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
              "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


class _OrtModel:
    """An ONNX Runtime session configured as edgetl/runtimes/onnxruntime_runtime.py configures it."""

    def __init__(self, path: str, device: str, precision: str, threads: int | None) -> None:
        ort: Any = importlib.import_module("onnxruntime")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if device not in ORT_PROVIDERS:
            raise ValueError(f"onnxruntime has no device {device!r} (known: {', '.join(ORT_PROVIDERS)})")
        provider = ORT_PROVIDERS[device]
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        self._session = ort.InferenceSession(path, sess_options=options, providers=providers)
        self.inputs = [(i.name, [d if isinstance(d, int) and d > 0 else None for d in i.shape],
                        _ORT_TYPES.get(i.type, "float32")) for i in self._session.get_inputs()]
        self._output = self._session.get_outputs()[0].name
        self.threads = threads
        self.version = str(getattr(ort, "__version__", ""))
        self.settings: dict[str, Any] = {
            "providers": self._session.get_providers(),
            "intra_op_num_threads": threads if threads is not None else "default (physical cores)",
            "graph_optimization_level": "ORT_ENABLE_ALL"}

    def run(self, feeds: dict[str, Any]) -> Any:
        return self._session.run([self._output], feeds)[0]


class _OvModel:
    """An OpenVINO model compiled as edgetl/runtimes/openvino_runtime.py compiles it, once per input shape."""

    def __init__(self, path: str, device: str, precision: str, threads: int | None) -> None:
        ov: Any = importlib.import_module("openvino")
        self._ov = ov
        self._held: dict[str, Any] = {}
        self._core = ov.Core()
        self._device = device
        self._model = self._core.read_model(path)
        self._config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        hint = OV_HINTS.get(device, {}).get(precision)
        if hint:
            self._config["INFERENCE_PRECISION_HINT"] = hint
        if threads is not None and device == "CPU":
            self._config["INFERENCE_NUM_THREADS"] = threads
        self.inputs = []
        for port in self._model.inputs:
            dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            self.inputs.append((port.get_any_name(), dims, str(port.get_element_type().to_dtype())))
        self._static = all(d is not None for _, dims, _ in self.inputs for d in dims)
        self._requests: dict[tuple[Any, ...], tuple[Any, dict[str, tuple[Any, Any]]]] = {}
        self.threads = threads
        self.version = str(getattr(ov, "__version__", ""))
        self.settings = {**self._config, "device": device, "reshaped_per_batch": not self._static}

    def _request_for(self, feeds: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        key = () if self._static else tuple((name, tuple(a.shape)) for name, a in sorted(feeds.items()))
        entry = self._requests.get(key)
        if entry is None:
            if not self._static:
                self._model.reshape({name: list(a.shape) for name, a in feeds.items()})
            compiled = self._core.compile_model(self._model, self._device, self._config)
            request = compiled.create_infer_request()
            buffers = {name: (request.get_tensor(name), request.get_tensor(name).data) for name in feeds}
            entry = self._requests[key] = (request, buffers)
            if "effective_inference_precision" not in self.settings:
                self._describe(compiled)
        return entry

    def _describe(self, compiled: Any) -> None:
        for prop, key in (("INFERENCE_PRECISION_HINT", "effective_inference_precision"),
                          ("INFERENCE_NUM_THREADS", "inference_num_threads")):
            try:
                value = compiled.get_property(prop)
            except RuntimeError:
                continue
            self.settings[key] = value.get_type_name() if hasattr(value, "get_type_name") else value
        threads = self.settings.get("inference_num_threads")
        if isinstance(threads, int) and threads > 0:
            self.threads = threads

    def run(self, feeds: dict[str, Any]) -> Any:
        import numpy as np

        request, buffers = self._request_for(feeds)
        for name, array in feeds.items():  # as the host adapter: shared when it can be, else copied
            own, view = buffers[name]
            if array.dtype == view.dtype and array.flags.c_contiguous and array.flags.writeable:
                request.set_tensor(name, self._ov.Tensor(array, shared_memory=True))
            else:
                np.copyto(view, array, casting="same_kind")
                request.set_tensor(name, own)
        self._held = feeds  # the shared tensor does not keep the array alive
        request.start_async()  # as the host adapter: infer() also copies every output into a dict it returns
        request.wait()
        return request.get_output_tensor(0).data.copy()


RUNTIMES: dict[str, Callable[[str, str, str, int | None], Any]] = {"onnxruntime": _OrtModel, "openvino": _OvModel}


# ------------------------------------------------------------------------------------------------ one row
def _fixed_batch(model: Any) -> int | None:
    firsts = {dims[0] for _, dims, _ in model.inputs if dims}
    return firsts.pop() if len(firsts) == 1 and None not in firsts else None


def _shapes(model: Any, batch: int, overrides: dict[str, list[int]], eval_arrays: dict[str, Any]) -> dict[str, list[int]]:
    shapes = {}
    for name, dims, _ in model.inputs:
        if name in overrides:
            shape = list(overrides[name])
        elif name in eval_arrays and None in dims[1:]:
            shape = [dims[0], *eval_arrays[name].shape[1:]]
        else:
            shape = list(dims)
        if shape:
            shape[0] = batch if dims and dims[0] is None else shape[0]
        if any(d is None for d in shape):
            raise ValueError(f"input {name!r} has dynamic dimensions {dims}: give its shape in the row's "
                             "input_shapes (or evaluation inputs)")
        shapes[name] = shape
    return shapes


def _random_feeds(model: Any, shapes: dict[str, list[int]], rng: Any) -> dict[str, Any]:
    import numpy as np

    feeds = {}
    for name, _, dtype in model.inputs:
        if np.issubdtype(np.dtype(dtype), np.floating):
            feeds[name] = rng.standard_normal(shapes[name], dtype=np.float32).astype(dtype, copy=False)
        else:  # ones: a valid token id and a valid attention mask
            feeds[name] = np.ones(shapes[name], dtype=dtype)
    return feeds


def _predict(model: Any, arrays: dict[str, Any], batch_size: int,
             trim_to: str | None = None) -> tuple[list[int], list[list[float]]]:
    """Arg-max of the first output over every sample, and that output (the host computes ROC, PR and calibration
    from it); a fixed-batch model gets its batch, zero-padded. ``trim_to``: the padding mask input; each batch's
    inputs shaped like it are cut after the last attended position (the host's ``trim_padding``, written out
    here because this file runs without edgetl)."""
    import numpy as np

    fixed = _fixed_batch(model)
    size = fixed or batch_size
    count = len(next(iter(arrays.values())))
    dtypes = {name: dtype for name, _, dtype in model.inputs}
    preds: list[int] = []
    outputs: list[list[float]] = []
    for start in range(0, count, size):
        feeds = {}
        for name, array in arrays.items():
            chunk = np.ascontiguousarray(array[start : start + size], dtype=dtypes.get(name, array.dtype))
            n = len(chunk)
            if fixed and n < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), dtype=chunk.dtype)])
            feeds[name] = chunk
        mask = feeds.get(trim_to) if trim_to else None
        if mask is not None and mask.ndim >= 2 and not fixed:
            attended = np.flatnonzero(mask.any(axis=0))
            keep = int(attended[-1]) + 1 if len(attended) else 1
            feeds = {k: np.ascontiguousarray(v[:, :keep]) if v.ndim >= 2 and v.shape[:2] == mask.shape[:2] else v
                     for k, v in feeds.items()}
        logits = np.asarray(model.run(feeds))
        logits = logits.reshape(logits.shape[0], -1)
        preds.extend(int(p) for p in logits[:n].argmax(axis=1))
        outputs.extend(np.round(logits[:n].astype(np.float64), 6).tolist())
    return preds, outputs


def measure_row(row: dict[str, Any], base_dir: str) -> dict[str, Any]:
    """Load, time and evaluate one row in this process; raises on any failure (the parent makes it a row)."""
    import numpy as np

    importlib.import_module(row["runtime"])  # before the baseline: the library itself is not the model's memory
    memory = _Memory()
    eval_spec = row.get("eval") or {}
    eval_arrays = {name: np.load(os.path.join(base_dir, f), mmap_mode="r")
                   for name, f in (eval_spec.get("inputs") or {}).items()}
    out: dict[str, Any] = {"memory_source": memory.source}
    t0 = time.perf_counter_ns()
    model = RUNTIMES[row["runtime"]](os.path.join(base_dir, row["model"]), row["device"], row["precision"],
                                     row["threads"])
    fixed = _fixed_batch(model)
    lat_batch = fixed or int(row["latency_batch"])
    rng = np.random.default_rng(0)
    overrides = row.get("input_shapes") or {}
    x = _random_feeds(model, _shapes(model, lat_batch, overrides, eval_arrays), rng)
    model.run(x)
    out["cold_start_ms"] = round((time.perf_counter_ns() - t0) / 1e6, 2)
    batches = {b: _random_feeds(model, _shapes(model, b, overrides, eval_arrays), rng)
               for b in row["batch_sizes"] if b != lat_batch and fixed is None}
    for feeds in batches.values():
        model.run(feeds)
    out["peak_memory_mb"] = memory.peak_mb()
    warmup, min_it, min_s = int(row["warmup"]), int(row["min_iterations"]), float(row["min_time_s"])
    rounds = max(1, int(row["rounds"]))
    # as edgetl.bench.measure.TimingPlan.per_round: each round a 1/rounds share, later rounds re-warmed
    share_warm = max(1, math.ceil(warmup / rounds)) if warmup else 0
    per_round = [timed_runs(lambda: model.run(x), warmup if r == 0 else share_warm,
                            max(1, math.ceil(min_it / rounds)), min_s / rounds) for r in range(rounds)]
    samples = [s for block in per_round for s in block]
    stats = latency_stats(samples)
    rates: dict[str, float | None] = {str(lat_batch): round(lat_batch * 1000.0 / stats["mean"], 2)}
    for b in row["batch_sizes"]:
        if b == lat_batch:
            continue
        if b not in batches:
            rates[str(b)] = None
            continue
        feeds = batches[b]
        sub = timed_runs(lambda feeds=feeds: model.run(feeds), max(1, warmup // b),  # type: ignore[misc]
                         max(3, math.ceil(min_it / b)), min_s)
        rates[str(b)] = round(b * len(sub) / (sum(sub) / 1e9), 2)
    out.update(latency_ms=stats, latency_rounds_ms=[latency_stats(block)["p50"] for block in per_round],
               latency_samples_ms=keep_samples(samples, int(row["keep_samples"])),
               latency_batch=lat_batch, throughput=rates, threads=model.threads, settings=model.settings,
               runtime_version=model.version)
    if eval_arrays:
        preds, logits = _predict(model, eval_arrays, int(eval_spec.get("batch_size") or 32),
                                 eval_spec.get("trim_to"))
        out.update(predictions=preds, logits=logits, eval_count=len(preds))
        if eval_spec.get("labels"):
            labels = np.load(os.path.join(base_dir, eval_spec["labels"]))
            out["accuracy"] = round(float(np.mean(np.asarray(preds) == labels)), 6) if len(preds) else None
    return out


def _third_party_modules() -> list[str]:
    stdlib = set(getattr(sys, "stdlib_module_names", ())) | {"sitecustomize", "usercustomize"}  # site's hooks
    tops = {name.split(".")[0] for name in list(sys.modules)}
    return sorted(t for t in tops if not t.startswith("_") and t not in stdlib and t not in sys.builtin_module_names)


def _child(row_file: str, out_file: str) -> int:
    with open(row_file, encoding="utf-8") as fh:
        row = json.load(fh)
    try:
        result = {"status": "ok", "reason": "", **measure_row(row, os.path.dirname(os.path.abspath(row_file)))}
    except Exception as exc:  # any runtime error is this row's failure, with its reason
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {(lines or [''])[-1][:300]}"}
    result["modules"] = _third_party_modules()
    _write_json(out_file, result)
    return 0


# ------------------------------------------------------------------------------------------------ the parent
def _write_json(path: str, data: Any) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def _version(module: str) -> str | None:
    """The installed version of ``module`` without importing it; None when it is not importable."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return ""
    for dist in DISTRIBUTIONS.get(module, (module,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return ""  # importable but not from a distribution (e.g. on PYTHONPATH)


def device_facts(runtimes: list[str]) -> dict[str, Any]:
    cpu_model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("model name", "hardware", "cpu model"):
                    cpu_model = value.strip()
                    break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        with open("/etc/os-release", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"hostname": socket.gethostname(), "cpu_model": cpu_model or platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "cpu_affinity": affinity, "machine": platform.machine(), "os": os_name,
            "kernel": platform.release(), "python": platform.python_version(), "python_executable": sys.executable,
            "numpy": _version("numpy"), "runtimes": {name: _version(name) for name in runtimes}}


def _validate(plan: Any) -> list[dict[str, Any]]:
    if not isinstance(plan, dict) or plan.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"the plan must be an object with schema_version {SCHEMA_VERSION}")
    rows = plan.get("rows")
    if not isinstance(rows, list):
        raise ValueError("the plan has no 'rows' list")
    out = []
    for i, raw in enumerate(rows):
        if not isinstance(raw, dict):
            raise ValueError(f"row {i} is not an object")
        missing = [k for k in ("model", "runtime", "device") if k not in raw]
        if missing:
            raise ValueError(f"row {i} lacks {', '.join(missing)}")
        if raw["runtime"] not in RUNTIMES:
            raise ValueError(f"row {i}: unknown runtime {raw['runtime']!r} (known: {', '.join(RUNTIMES)})")
        unknown = sorted(set(raw) - set(ROW_DEFAULTS) - {"id", "model", "runtime", "device"})
        if unknown:
            raise ValueError(f"row {i}: unknown field(s) {', '.join(unknown)}")
        row = {**ROW_DEFAULTS, **raw}
        row.setdefault("id", f"{raw['model']}@{raw['runtime']}:{raw['device']}")
        out.append(row)
    return out


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _run_child(row: dict[str, Any], index: int, work_dir: str) -> dict[str, Any]:
    row_file = os.path.join(work_dir, f".row{index}.json")
    out_file = os.path.join(work_dir, f".row{index}.result.json")
    log_file = os.path.join(work_dir, f".row{index}.log")
    _write_json(row_file, row)
    t0 = time.monotonic()
    with open(log_file, "wb") as log:
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--row", row_file, out_file],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = child.wait(timeout=float(row["timeout_s"]))
            timed_out = False
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
            timed_out = True
    wall = round(time.monotonic() - t0, 2)
    result: dict[str, Any] = {}
    if os.path.exists(out_file) and not timed_out:
        with open(out_file, encoding="utf-8") as fh:
            result = json.load(fh)
    if not result:
        with open(log_file, "rb") as fh:
            tail = " | ".join(fh.read().decode("utf-8", "replace").strip().splitlines()[-3:])[-400:]
        if timed_out:
            why = f"the row's process was killed after its {row['timeout_s']} s timeout"
        elif code < 0:
            why = f"the runtime crashed: the row's process died of {_signal_name(code)}"
        else:
            why = f"the row's process exited with status {code} without a result"
        result = {"status": "failed", "reason": why + (f"; output: {tail}" if tail else "")}
    for f in (row_file, out_file, log_file):
        if os.path.exists(f):
            os.remove(f)
    return {"exit_status": code, "wall_s": wall, **result}


def run_plan(plan_file: str, results_file: str) -> int:
    results: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "exit_code": EXIT_OK, "error": "",
                               "memory_method": MEMORY_METHOD, "missing": {}, "rows": []}
    try:
        with open(plan_file, encoding="utf-8") as fh:
            rows = _validate(json.load(fh))
    except (OSError, ValueError) as exc:
        results.update(exit_code=EXIT_BAD_PLAN, error=f"bad plan {plan_file}: {exc}",
                       device=device_facts([]))
        _write_json(results_file, results)
        return EXIT_BAD_PLAN
    facts = device_facts(sorted({r["runtime"] for r in rows}))
    results["device"] = facts
    missing = {} if facts["numpy"] is not None else {"numpy": INSTALL_HINTS["numpy"]}
    for name, version in facts["runtimes"].items():
        if version is None:
            missing[name] = INSTALL_HINTS[name]
    results["missing"] = missing
    work_dir = os.path.dirname(os.path.abspath(plan_file))
    for i, row in enumerate(rows):
        base = {k: row[k] for k in ("id", "model", "runtime", "device", "precision")}
        absent = [m for m in ("numpy", row["runtime"]) if m in missing]
        if absent:
            why = "; ".join(f"{m} is not installed on the device; install hint: {missing[m]}" for m in absent)
            results["rows"].append({**base, "status": "skipped", "reason": why})
            continue
        results["rows"].append({**base, **_run_child(row, i, work_dir)})
    results["exit_code"] = EXIT_MISSING if missing else EXIT_OK
    _write_json(results_file, results)
    return int(results["exit_code"])


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _end_group_on_eof() -> None:
    """Block until stdin closes, then end this process group (the host that started us is gone)."""
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    os.killpg(os.getpgrp(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    import argparse

    if len(argv) == 3 and argv[0] == "--row":
        return _child(argv[1], argv[2])
    parser = argparse.ArgumentParser(prog="device_runner.py", description="edgetl's device-side runner")
    parser.add_argument("plan")
    parser.add_argument("results")
    parser.add_argument("--pgid-file")
    parser.add_argument("--watch-stdin", action="store_true")
    args = parser.parse_args(argv)
    if args.pgid_file or args.watch_stdin:
        # Lead a process group of our own (sshd usually made us one already), so that one `kill -- -PGID` ends
        # this runner and every row child it started, and nothing else.
        with contextlib.suppress(OSError):  # already a session (hence process-group) leader
            os.setsid()
    if args.pgid_file:
        _write_json(args.pgid_file, os.getpgrp())
    signal.signal(signal.SIGTERM, _terminate)
    if args.watch_stdin:
        import threading

        threading.Thread(target=_end_group_on_eof, daemon=True).start()
    return run_plan(args.plan, args.results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
