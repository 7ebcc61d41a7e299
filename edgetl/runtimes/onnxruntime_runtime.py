"""ONNX Runtime: one edgetl device per execution provider this host's onnxruntime build offers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError
from edgetl.runtimes.base import Runtime, Session, check_onnx_file, static_dims

# edgetl device name (targets.RUNTIME_DEVICES["onnxruntime"]) -> ONNX Runtime execution provider
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


class OnnxRuntimeSession(Session):
    def __init__(self, path: Path, device: str, precision: str, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: EP fallback warnings would drown the progress bar
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        provider = PROVIDERS[device]
        # The CPU provider stays last so that a node the accelerator cannot run still runs (as ORT does by default).
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own pybind error types
            text = str(exc)
            if "INVALID_PROTOBUF" in text or "Protobuf parsing failed" in text:
                raise ModelFileError(f"{path} is not a readable ONNX model: {text.splitlines()[0]}") from exc
            raise
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._output_name = self._session.get_outputs()[0].name
        self.input_shape = static_dims(list(inp.shape))
        self.threads = threads
        self.settings: dict[str, Any] = {
            "providers": self._session.get_providers(),
            "intra_op_num_threads": threads if threads is not None else "default (physical cores)",
            "graph_optimization_level": "ORT_ENABLE_ALL",
        }

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self._output_name], {self._input_name: batch})[0]

    def close(self) -> None:
        self._session = None


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    formats = ("onnx",)
    install_hint = "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA, TensorRT providers)"

    def devices(self) -> list[str]:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        return [device for device, provider in PROVIDERS.items() if provider in available]

    def load(self, path: Path, device: str, precision: str, threads: int | None) -> Session:
        check_onnx_file(path)
        return OnnxRuntimeSession(path, device, precision, threads)
