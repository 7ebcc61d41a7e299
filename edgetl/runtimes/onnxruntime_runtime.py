"""ONNX Runtime: one edgetl device per execution provider this host's onnxruntime build offers."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError
from edgetl.runtimes.base import OpCount, Runtime, Session, check_onnx_file, static_dims

# edgetl device name -> ONNX Runtime execution provider
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
# the int8 proof: compute ops of the optimised graph, by the precision they run in
# (QAttention / Attention: ONNX Runtime's fused self-attention, whose QKV projection is the matmul it counts as)
INT8_OPS = {"conv": {"QLinearConv", "ConvInteger"},
            "matmul": {"QLinearMatMul", "MatMulInteger", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
                       "QAttention"}}
FLOAT_OPS = {"conv": {"Conv", "FusedConv", "ConvTranspose"},
             "matmul": {"MatMul", "FusedMatMul", "Gemm", "FusedGemm", "Attention", "MultiHeadAttention"}}


def _session(path: Path, options: Any, providers: list[str]) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own pybind error types
        text = str(exc)
        if "INVALID_PROTOBUF" in text or "Protobuf parsing failed" in text:
            raise ModelFileError(f"{path} is not a readable ONNX model: {text.splitlines()[0]}") from exc
        raise


class OnnxRuntimeSession(Session):
    def __init__(self, path: Path, device: str, precision: str, threads: int | None) -> None:
        import onnxruntime as ort

        self._path = path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: EP fallback warnings would drown the progress bar
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        provider = PROVIDERS[device]
        # The CPU provider stays last so that a node the accelerator cannot run still runs (as ORT does by default).
        self._providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        self._options = options
        self._session = _session(path, options, self._providers)
        self.inputs = {i.name: static_dims(list(i.shape)) for i in self._session.get_inputs()}
        self._output_name = self._session.get_outputs()[0].name
        self.threads = threads
        self.settings: dict[str, Any] = {
            "providers": self._session.get_providers(),
            "intra_op_num_threads": threads if threads is not None else "default (physical cores)",
            "graph_optimization_level": "ORT_ENABLE_ALL",
        }

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._session.run([self._output_name], dict(inputs))[0]

    def op_counts(self) -> OpCount:
        """From the graph ONNX Runtime optimised for this session's providers (``optimized_model_filepath``)."""
        import onnx
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="edgetl-ort-") as tmp:
            options = ort.SessionOptions()
            options.graph_optimization_level = self._options.graph_optimization_level
            options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            options.log_severity_level = 3  # the "optimised model is hardware specific" warning is expected here
            _session(self._path, options, self._providers)
            optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
        counts = OpCount()
        for node in optimized.graph.node:
            for kind in ("conv", "matmul"):
                if node.op_type in INT8_OPS[kind]:
                    counts.int8[kind] += 1
                elif node.op_type in FLOAT_OPS[kind]:
                    counts.float[kind] += 1
                    counts.float_names[kind].append(node.name or node.output[0])
        return counts

    def close(self) -> None:
        self._session = None


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    formats = ("onnx",)
    capabilities = {
        "cpu": frozenset({"fp32", "int8"}),
        "cuda": frozenset({"fp32", "fp16", "int8"}),
        "tensorrt": frozenset({"fp32", "fp16", "int8"}),
        "openvino": frozenset({"fp32", "fp16", "int8"}),
        "coreml": frozenset({"fp32", "fp16"}),
    }
    install_hint = "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA, TensorRT providers)"

    def devices(self) -> list[str]:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        return [device for device, provider in PROVIDERS.items() if provider in available]

    def load(self, path: Path, device: str, precision: str, threads: int | None) -> Session:
        check_onnx_file(path)
        return OnnxRuntimeSession(path, device, precision, threads)
