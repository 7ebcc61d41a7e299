"""OpenVINO: one edgetl device per OpenVINO device this host has (CPU, GPU, NPU).

The CPU plugin defaults to bf16 inference on CPUs with AVX-512 bf16 or AMX, so an "fp32" figure would silently be
bf16: every compile states ``INFERENCE_PRECISION_HINT`` explicitly. An int8 IR runs its quantized layers in int8
whatever the hint; the hint (f32 on the CPU) decides the layers left in float, so int8 and fp32 rows differ only
by quantization. A model with a dynamic batch is reshaped to each batch size it is run at and compiled once per
size, as an application with a fixed batch would do (static shapes are OpenVINO's fast path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError
from edgetl.runtimes.base import Runtime, Session, check_openvino_files, short_error, static_dims

# edgetl precision -> INFERENCE_PRECISION_HINT, per device kind. None: leave the device's default.
_HINTS: dict[str, dict[str, str | None]] = {
    "CPU": {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"},
    "GPU": {"fp32": "f32", "fp16": "f16", "int8": None},
    "NPU": {"fp16": None, "int8": None},
}


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
        partial = self._model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in partial]
        self.input_shape = static_dims(dims)
        self._dynamic_batch = bool(dims) and dims[0] is None
        self._requests: dict[int, Any] = {}
        self._inputs: dict[int, np.ndarray] = {}
        first_batch = 1 if self._dynamic_batch else (dims[0] or 1)
        try:
            self._request_for(first_batch)
        except RuntimeError as exc:
            text = str(exc)
            if "bin" in text.lower() and ("weights" in text.lower() or "size" in text.lower()):
                raise ModelFileError(f"{path.with_suffix('.bin')} does not match {path.name} (truncated?): "
                                     f"{short_error(exc)}") from exc
            raise
        compiled = self._requests[first_batch].get_compiled_model()
        self.threads = _int_property(compiled, "INFERENCE_NUM_THREADS") or threads
        self.settings = {**self._config, "device": device,
                         "effective_inference_precision": _type_name(_property(compiled, "INFERENCE_PRECISION_HINT")),
                         "reshaped_per_batch": self._dynamic_batch}

    def _request_for(self, batch: int) -> Any:
        request = self._requests.get(batch)
        if request is None:
            if self._dynamic_batch:
                shape = [batch, *[d if d is not None else -1 for d in self.input_shape[1:]]]
                self._model.reshape({self._model.inputs[0]: shape})
            compiled = self._core.compile_model(self._model, self._device, self._config)
            request = compiled.create_infer_request()
            self._requests[batch] = request
            self._inputs[batch] = request.get_input_tensor(0).data  # a NumPy view of the request's own buffer
        return request

    def run(self, batch: np.ndarray) -> np.ndarray:
        request = self._request_for(int(batch.shape[0]))
        # Copying into the request's buffer and calling infer() without arguments costs about 15 us less per call
        # than infer({0: batch}) (measured), which matters for small models and for parity with benchmark_app.
        np.copyto(self._inputs[int(batch.shape[0])], batch, casting="same_kind")
        request.infer()
        return request.get_output_tensor(0).data.copy()

    def close(self) -> None:
        self._inputs.clear()
        self._requests.clear()


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
