"""TensorRT: builds an engine from the ONNX artifact (int8 from the explicit Q/DQ of the int8 ONNX) and runs it.

Only offered when ``import tensorrt`` works and a CUDA GPU is visible; it is never imported at package import.
Device buffers are torch CUDA tensors (torch is already a dependency), so no pycuda is needed.
Written against the TensorRT 10 Python API (``execute_async_v3``, named I/O tensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError
from edgetl.runtimes.base import Runtime, Session, check_onnx_file

MAX_BATCH = 32  # upper bound of the dynamic-batch optimisation profile


class TensorRtSession(Session):
    def __init__(self, path: Path, precision: str, threads: int | None) -> None:
        import tensorrt as trt
        import torch

        self._torch = torch
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelFileError(f"TensorRT cannot parse {path}: {errors}")
        config = builder.create_builder_config()
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # layers left in float run in fp16
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # scales come from the model's Q/DQ nodes: no calibrator
        inp = network.get_input(0)
        shape = tuple(inp.shape)
        if shape[0] == -1:
            profile = builder.create_optimization_profile()
            rest = shape[1:]
            profile.set_shape(inp.name, (1, *rest), (1, *rest), (MAX_BATCH, *rest))
            config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT could not build an engine from {path} at {precision}")
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        self._context = self._engine.create_execution_context()
        self._input_name = inp.name
        self._output_name = network.get_output(0).name
        self._stream = torch.cuda.Stream()
        self.inputs = {inp.name: tuple(None if d == -1 else int(d) for d in shape)}
        self.threads = threads
        self.settings: dict[str, Any] = {"builder_flags": {"fp16": precision in ("fp16", "int8"),
                                                           "int8": precision == "int8"},
                                         "tensorrt": trt.__version__}

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(inputs[self._input_name])).cuda()
        self._context.set_input_shape(self._input_name, tuple(x.shape))
        out_shape = tuple(self._context.get_tensor_shape(self._output_name))
        y = torch.empty(out_shape, dtype=torch.float32, device="cuda")
        self._context.set_tensor_address(self._input_name, x.data_ptr())
        self._context.set_tensor_address(self._output_name, y.data_ptr())
        self._context.execute_async_v3(self._stream.cuda_stream)
        self._stream.synchronize()
        return y.cpu().numpy()

    def close(self) -> None:
        self._context = None
        self._engine = None


class TensorRt(Runtime):
    name = "tensorrt"
    formats = ("onnx",)
    capabilities = {"gpu": frozenset({"fp32", "fp16", "int8"})}
    reduces_precision = True
    install_hint = "pip install tensorrt (needs an NVIDIA GPU and driver); on Jetson it comes with JetPack"

    def devices(self) -> list[str]:
        import tensorrt  # noqa: F401  (ImportError -> 'not installed' in available())
        import torch

        return ["gpu"] if torch.cuda.is_available() else []

    def load(self, path: Path, device: str, precision: str, threads: int | None) -> Session:
        check_onnx_file(path)
        return TensorRtSession(path, precision, threads)
