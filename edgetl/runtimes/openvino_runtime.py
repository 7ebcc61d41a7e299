"""OpenVINO: one edgetl device per OpenVINO device this host has (CPU, GPU, NPU).

The CPU plugin defaults to bf16 inference on CPUs with AVX-512 bf16 or AMX, so an "fp32" figure would silently be
bf16: every compile states ``INFERENCE_PRECISION_HINT`` explicitly. An int8 IR runs its quantized layers in int8
whatever the hint; the hint (f32 on the CPU) decides the layers left in float, so int8 and fp32 rows differ only
by quantization. A model with a dynamic batch is reshaped to each batch size it is run at and compiled once per
size, as an application with a fixed batch would do (static shapes are OpenVINO's fast path).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError
from edgetl.runtimes.base import OpCount, Runtime, Session, check_openvino_files, short_error, static_dims

# edgetl precision -> INFERENCE_PRECISION_HINT, per device kind. None: leave the device's default.
_HINTS: dict[str, dict[str, str | None]] = {
    "CPU": {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"},
    "GPU": {"fp32": "f32", "fp16": "f16", "int8": None},
    "NPU": {"fp16": None, "int8": None},
}
LAYERS = {"conv": {"Convolution", "GroupConvolution", "Deconvolution", "GroupDeconvolution"},
          "matmul": {"FullyConnected", "MatMul"}}
INT8_PRECISIONS = {"u8", "i8"}


class OpenVinoSession(Session):
    def __init__(self, core: Any, path: Path, device: str, precision: str, threads: int | None) -> None:
        self._core = core
        self._device = device
        try:
            self._model = core.read_model(str(path))
        except RuntimeError as exc:
            raise ModelFileError(
                f"{path} is not a readable OpenVINO IR (corrupt or truncated): {short_error(exc)}",
                hint="re-export it (edgetl export); the .xml and .bin must come from one export",
            ) from exc
        self._config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        hint = _HINTS.get(device, {}).get(precision)
        if hint:
            self._config["INFERENCE_PRECISION_HINT"] = hint
        if threads is not None and device == "CPU":
            self._config["INFERENCE_NUM_THREADS"] = threads
        self.inputs = {}
        for port in self._model.inputs:
            dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            self.inputs[port.get_any_name()] = static_dims(dims)
        self._names = list(self.inputs)
        self._dynamic = any(d is None for shape in self.inputs.values() for d in shape)
        self._requests: dict[tuple[tuple[int, ...], ...], Any] = {}
        # the request's own input tensors and NumPy views of them, for inputs that cannot be shared (see run)
        self._buffers: dict[tuple[tuple[int, ...], ...], list[tuple[Any, np.ndarray]]] = {}
        self._held: list[np.ndarray] = []  # the caller's arrays the request reads from, kept alive until the next run
        self._shared = [False] * len(self._names)  # per input: does the last request read the held array itself?
        self._last: Any = None  # the request of the last run
        import openvino

        self._tensor = openvino.Tensor
        first = tuple(tuple(1 if d is None else d for d in shape) for shape in self.inputs.values())
        try:
            request = self._request_for(first)
        except RuntimeError as exc:
            text = str(exc)
            if "bin" in text.lower() and ("weights" in text.lower() or "size" in text.lower()):
                raise ModelFileError(f"{path.with_suffix('.bin')} does not match {path.name} (truncated?): "
                                     f"{short_error(exc)}") from exc
            raise
        compiled = request.get_compiled_model()
        self.threads = _int_property(compiled, "INFERENCE_NUM_THREADS") or threads
        self.settings = {**self._config, "device": device,
                         "effective_inference_precision": _type_name(_property(compiled, "INFERENCE_PRECISION_HINT")),
                         "reshaped_per_shape": self._dynamic}

    def _request_for(self, shapes: tuple[tuple[int, ...], ...]) -> Any:
        request = self._requests.get(shapes)
        if request is None:
            if self._dynamic:  # static shapes are OpenVINO's fast path: compile once per shape, as an app would
                self._model.reshape({port: list(shape) for port, shape in zip(self._model.inputs, shapes, strict=True)})
            compiled = self._core.compile_model(self._model, self._device, self._config)
            request = compiled.create_infer_request()
            self._requests[shapes] = request
            tensors = [request.get_input_tensor(i) for i in range(len(shapes))]
            self._buffers[shapes] = [(t, t.data) for t in tensors]
        return request

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        arrays = [inputs[name] for name in self._names]
        shapes = tuple(tuple(int(d) for d in a.shape) for a in arrays)
        request = self._request_for(shapes)
        # An input that already is what the model reads (its element type, C-contiguous, writeable) is handed to
        # the request without a copy. Over benchmark_app's loop (input preset once, infer() only), copying a
        # 1x3x224x224 float input into the request added 22.9 us per call and the shared tensor 5.7 us (median of
        # 15 interleaved rounds, benchmarks/reported/ov_input_overhead.json). Any other input (read-only memory
        # maps, strided views, another dtype) is copied into the request's own buffer (a same-kind cast).
        # The call is start_async() + wait(): infer() wraps its outputs in a dict of copies that run() does not use,
        # and costs more per call. Measured over 4 interleaved rounds (lite0 int8 IR, 2 threads, 2.6 ms per run):
        # call time minus OpenVINO's own timer (request.latency, what benchmark_app reports) 52.8 us for infer(),
        # 32.5 us for start_async() + wait(); infer({0: batch}) costs more than infer() (its argument handling).
        # The very array of the last call (a benchmark's repeated input) is already the request's shared tensor:
        # nothing to hand over again. Holding it (self._held) keeps NumPy from resizing or freeing its memory.
        held = self._held if len(self._held) == len(arrays) and request is self._last else None
        for i, ((own, view), array) in enumerate(zip(self._buffers[shapes], arrays, strict=True)):
            if held is not None and held[i] is array and self._shared[i]:
                continue
            self._shared[i] = array.dtype == view.dtype and array.flags.c_contiguous and array.flags.writeable
            if self._shared[i]:
                request.set_input_tensor(i, self._tensor(array, shared_memory=True))
            else:
                np.copyto(view, array, casting="same_kind")
                request.set_input_tensor(i, own)
        self._held, self._last = arrays, request  # OpenVINO's shared tensor does not keep the array alive
        request.start_async()
        request.wait()
        return request.get_output_tensor(0).data.copy()

    def op_counts(self) -> OpCount:
        """The precision each convolution / fully-connected layer runs in (``runtimePrecision`` of the runtime
        model OpenVINO compiled)."""
        request = next(iter(self._requests.values()))
        counts = OpCount()
        for op in request.get_compiled_model().get_runtime_model().get_ops():
            info = op.get_rt_info()
            layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ""
            for kind, types in LAYERS.items():
                if layer in types:
                    if precision in INT8_PRECISIONS:
                        counts.int8[kind] += 1
                    else:
                        counts.float[kind] += 1
                        counts.float_names[kind].append(f"{op.get_friendly_name()} ({precision or '?'})")
        return counts

    def close(self) -> None:
        self._buffers.clear()
        self._requests.clear()
        self._held, self._last = [], None


def _property(compiled: Any, name: str) -> Any:
    try:
        return compiled.get_property(name)
    except RuntimeError:
        return None


def _type_name(value: Any) -> str:
    """OpenVINO element type -> its short name (f32, bf16, f16)."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def _int_property(compiled: Any, name: str) -> int | None:
    value = _property(compiled, name)
    try:
        return int(value) if value is not None and int(value) > 0 else None
    except (TypeError, ValueError):
        return None


class OpenVino(Runtime):
    name = "openvino"
    formats = ("openvino",)
    capabilities = {
        "CPU": frozenset({"fp32", "bf16", "int8"}),
        "GPU": frozenset({"fp32", "fp16", "int8"}),
        "NPU": frozenset({"fp16", "int8"}),
    }
    reduces_precision = True
    install_hint = "pip install openvino (GPU and NPU need Intel's drivers as well)"

    def __init__(self) -> None:
        self._core: Any = None

    def core(self) -> Any:
        if self._core is None:
            import openvino

            self._core = openvino.Core()
        return self._core

    def devices(self) -> list[str]:
        # "GPU.0", "GPU.1" -> "GPU": edgetl names a device kind; the first one of a kind is used
        seen: dict[str, None] = {}
        for device in self.core().available_devices:
            seen.setdefault(device.split(".")[0], None)
        return list(seen)

    def load(self, path: Path, device: str, precision: str, threads: int | None) -> Session:
        check_openvino_files(path)
        return OpenVinoSession(self.core(), path, device, precision, threads)
