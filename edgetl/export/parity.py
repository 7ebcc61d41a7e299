"""Checks every exported artifact must pass: it agrees with its torch model, and its int8 layers really run in int8.

Parity runs each artifact in its runtime (ONNX Runtime CPUExecutionProvider; OpenVINO CPU with
``INFERENCE_PRECISION_HINT`` f32, since this CPU plugin otherwise silently runs "fp32" in bf16) on the evaluation
split, preprocessed with the shared ``preprocess_image``, and compares logits with the torch model it came from: the
fine-tuned fp32 model for fp32 artifacts, the converted int8 torch program for int8 ones.

The int8 proof reads what the runtime will execute, not what the file contains: ONNX Runtime's optimised graph
(``SessionOptions.optimized_model_filepath``: ``QLinearConv`` / ``QGemm`` vs float ``Conv`` / ``Gemm``) and OpenVINO's
``get_runtime_model()`` (``runtimePrecision`` u8/i8 vs f32 per convolution and fully-connected layer).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError

ORT_INT8 = {"conv": {"QLinearConv", "ConvInteger"},
            "matmul": {"QLinearMatMul", "MatMulInteger", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}}
ORT_FLOAT = {"conv": {"Conv", "FusedConv", "ConvTranspose"}, "matmul": {"MatMul", "FusedMatMul", "Gemm", "FusedGemm"}}
OV_LAYERS = {"conv": {"Convolution", "GroupConvolution", "Deconvolution", "GroupDeconvolution"},
             "matmul": {"FullyConnected", "MatMul"}}
OV_INT8_PRECISIONS = {"u8", "i8"}


@dataclass
class OpCount:
    """Compute layers (convolutions, matmuls) of a runtime's executable graph, by the precision they run in."""

    int8: dict[str, int] = field(default_factory=lambda: {"conv": 0, "matmul": 0})
    float: dict[str, int] = field(default_factory=lambda: {"conv": 0, "matmul": 0})
    float_names: dict[str, list[str]] = field(default_factory=lambda: {"conv": [], "matmul": []})

    @property
    def int8_total(self) -> int:
        return sum(self.int8.values())

    @property
    def float_total(self) -> int:
        return sum(self.float.values())


# --------------------------------------------------------------------------------------------------- loading
def load_onnx_checked(path: str | Path) -> Any:
    """Load and validate an ONNX model; a missing, truncated or invalid file is a ``ModelFileError``."""
    import onnx

    from edgetl.runtimes.base import check_onnx_file

    p = Path(path)
    check_onnx_file(p)
    model = onnx.load(str(p))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(f"{p} is not a valid ONNX model: {str(exc).splitlines()[0]}",
                             hint="re-export it (edgetl export)") from exc
    return model


def load_openvino_checked(path: str | Path) -> Any:
    """Read an OpenVINO IR (.xml + .bin); a missing, truncated or mismatched pair is a ``ModelFileError``."""
    import openvino as ov

    from edgetl.runtimes.base import check_openvino_files, short_error

    p = Path(path)
    check_openvino_files(p)
    try:
        return ov.Core().read_model(str(p))
    except RuntimeError as exc:
        raise ModelFileError(f"{p} is not a readable OpenVINO IR (corrupt or truncated): {short_error(exc)}",
                             hint="re-export it (edgetl export); the .xml and .bin must come from one export") from exc


# --------------------------------------------------------------------------------------------------- runners
Runner = Callable[[np.ndarray], np.ndarray]


def onnxruntime_runner(path: Path) -> tuple[Runner, OpCount]:
    """An ONNX Runtime CPU session, and the op precisions of the graph it optimised."""
    import onnx
    import onnxruntime as ort

    load_onnx_checked(path)
    with tempfile.TemporaryDirectory(prefix="edgetl-ort-") as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3  # the "optimised model is hardware specific" warning is expected here
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelFileError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}",
                                 hint="re-export it (edgetl export)") from exc
        optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
    counts = OpCount()
    for node in optimized.graph.node:
        for kind in ("conv", "matmul"):
            if node.op_type in ORT_INT8[kind]:
                counts.int8[kind] += 1
            elif node.op_type in ORT_FLOAT[kind]:
                counts.float[kind] += 1
                counts.float_names[kind].append(node.name or node.output[0])
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: batch})[0])

    return run, counts


def openvino_runner(xml: Path) -> tuple[Runner, OpCount]:
    """An OpenVINO CPU compiled model (f32 inference precision), and the precision each layer runs in."""
    import openvino as ov

    model = load_openvino_checked(xml)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    counts = OpCount()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ""
        for kind, types in OV_LAYERS.items():
            if layer in types:
                if precision in OV_INT8_PRECISIONS:
                    counts.int8[kind] += 1
                else:
                    counts.float[kind] += 1
                    counts.float_names[kind].append(f"{op.get_friendly_name()} ({precision or '?'})")
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(request.infer({0: batch})[compiled.output(0)]).copy()

    return run, counts


# --------------------------------------------------------------------------------------------------- parity
@dataclass
class ParityTally:
    """Running comparison of one artifact with its torch reference."""

    runtime: str
    reference: str
    batch_size: int
    # a flip where the reference's top-2 logits are closer than this is a near-tie: kernel rounding, not a defect
    tie_margin: float = 0.0
    n: int = 0
    agree: int = 0
    near_tie_flips: int = 0
    flip_margins: list[float] = field(default_factory=list)  # the reference's top-2 margin at each flip
    correct: int = 0
    reference_correct: int = 0
    max_diff: float = 0.0

    def update(self, logits: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> None:
        got, want = logits.argmax(1), reference.argmax(1)
        self.n += len(labels)
        self.agree += int((got == want).sum())
        self.correct += int((got == labels).sum())
        self.reference_correct += int((want == labels).sum())
        if len(labels):
            self.max_diff = max(self.max_diff, float(np.abs(logits.astype(np.float64) - reference).max()))
        for i in np.flatnonzero(got != want):
            margin = float(reference[i, want[i]] - reference[i, got[i]])
            self.flip_margins.append(round(margin, 4))
            self.near_tie_flips += margin < self.tie_margin

    def as_dict(self) -> dict[str, Any]:
        n = max(1, self.n)
        return {"runtime": self.runtime, "reference": self.reference, "n": self.n, "batch_size": self.batch_size,
                "top1_agreement": self.agree / n, "flips": self.n - self.agree,
                "near_tie_flips": self.near_tie_flips, "tie_margin": self.tie_margin,
                "top1_agreement_beyond_ties": (self.agree + self.near_tie_flips) / n,
                "flip_reference_margins": sorted(self.flip_margins)[:50],
                "max_logit_diff": self.max_diff,
                "accuracy": self.correct / n, "reference_accuracy": self.reference_correct / n}


def describe_agreement(parity: dict[str, Any]) -> str:
    """Raw top-1 agreement, with the flips and how many were near-ties: ``"99.31% (6 flips, 6 near-ties < 0.25)"``."""
    text = f"{100 * parity['top1_agreement']:.2f}%"
    flips = parity.get("flips", 0)
    if flips:
        text += f" ({flips} flips, {parity.get('near_tie_flips', 0)} near-ties < {parity.get('tie_margin', 0):g})"
    return text


def run_in_chunks(run: Runner, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Run ``images`` through ``run`` ``batch_size`` at a time; a short last chunk is padded, the padding dropped."""
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        short = batch_size - len(chunk)
        if short:
            chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), dtype=chunk.dtype)])
        out = run(np.ascontiguousarray(chunk))
        outputs.append(out[: len(out) - short] if short else out)
    return np.concatenate(outputs)
