"""Runtimes: one adapter per inference library, behind one interface, in a registry.

``RUNTIMES.get("openvino").available("CPU") -> (ok, reason)``; ``.load(path, device, precision, threads)`` returns a
``Session`` whose ``run({input name: array}) -> logits``. Each adapter states its formats and, per device, the
precisions it runs (``capabilities``); target validation, planning, budgets and the report read them here. Importing this package imports no runtime library: each adapter
imports its library when it is asked something, so a missing optional runtime (TensorRT, CUDA) is a reason, not an
import error.
"""

from __future__ import annotations

from pathlib import Path

from edgetl.errors import ModelFileError
from edgetl.registry import Registry
from edgetl.runtimes.base import OpCount, Runtime, Session
from edgetl.runtimes.onnxruntime_runtime import OnnxRuntime
from edgetl.runtimes.openvino_runtime import OpenVino
from edgetl.runtimes.tensorrt_runtime import TensorRt
from edgetl.runtimes.torch_runtime import Torch

RUNTIMES: Registry[Runtime] = Registry("runtime")
RUNTIMES.register("torch", Torch(), aliases=("pytorch",))
RUNTIMES.register("onnxruntime", OnnxRuntime(), aliases=("ort",))
RUNTIMES.register("openvino", OpenVino(), aliases=("ov",))
RUNTIMES.register("tensorrt", TensorRt(), aliases=("trt",))

# model file suffix -> artifact format
FORMAT_BY_SUFFIX = {".onnx": "onnx", ".xml": "openvino", ".pt": "torch"}
# artifact format -> the runtime and device that run it on any host edgetl installs on
DEFAULT_RUNTIME = {"onnx": ("onnxruntime", "cpu"), "openvino": ("openvino", "CPU"), "torch": ("torch", "cpu")}


def get_runtime(name: str) -> Runtime:
    return RUNTIMES.get(name)


def runtime_format(name: str) -> str:
    """The artifact format the runtime ``name`` consumes (onnx, openvino, torch)."""
    return RUNTIMES.get(name).format


def model_format(path: str | Path) -> str:
    """``onnx`` | ``openvino`` | ``torch`` from the file suffix; ``ModelFileError`` for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_BY_SUFFIX:
        raise ModelFileError(f"{path}: unknown model format {suffix or '(no suffix)'!r}",
                             hint="pass an .onnx file, an OpenVINO .xml (with its .bin), or a run directory")
    return FORMAT_BY_SUFFIX[suffix]


def open_model(path: str | Path, runtime: str | None = None, device: str | None = None,
               precision: str = "fp32", threads: int | None = None) -> Session:
    """Load a model file on the host: ONNX on ONNX Runtime CPU, IR on OpenVINO CPU, unless told otherwise."""
    fmt = model_format(path)
    default_runtime, default_device = DEFAULT_RUNTIME[fmt]
    adapter = RUNTIMES.get(runtime or default_runtime)
    device = device or default_device
    ok, reason = adapter.available(device)
    if not ok:
        from edgetl.errors import RuntimeUnavailableError

        raise RuntimeUnavailableError(reason, hint=adapter.install_hint)
    return adapter.load(Path(path), device, precision, threads)


__all__ = ["DEFAULT_RUNTIME", "FORMAT_BY_SUFFIX", "RUNTIMES", "OpCount", "Runtime", "Session", "get_runtime",
           "model_format", "open_model", "runtime_format"]
