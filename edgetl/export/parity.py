"""Checks every exported artifact must pass: it agrees with its torch model, and its int8 layers really run in int8.

Parity runs each artifact in its runtime (ONNX Runtime CPUExecutionProvider; OpenVINO CPU with
``INFERENCE_PRECISION_HINT`` f32, since this CPU plugin otherwise silently runs "fp32" in bf16) on the evaluation
split, preprocessed with the shared ``preprocess_image``, and compares logits with the torch model it came from: the
fine-tuned fp32 model for fp32 artifacts, the converted int8 torch program for int8 ones.

Every artifact runs through the same runtime adapters the benchmark uses (``edgetl.runtimes``). The int8 proof
reads what the runtime will execute, not what the file contains (``Session.op_counts``): ONNX Runtime's optimised
graph (``QLinearConv`` / ``QGemm`` vs float ``Conv`` / ``Gemm``) and OpenVINO's ``get_runtime_model()``
(``runtimePrecision`` u8/i8 vs f32 per convolution and fully-connected layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError
from edgetl.runtimes.base import OpCount

__all__ = ["OpCount", "ParityTally", "describe_agreement", "load_onnx_checked", "load_openvino_checked",
           "open_checked_session", "run_in_chunks"]


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
# the runtime and device each exported format is checked on: the CPU runtimes every host has
PARITY_RUNTIME = {"onnx": ("onnxruntime", "cpu"), "openvino": ("openvino", "CPU")}


def open_checked_session(path: Path, fmt: str, precision: str) -> tuple[Any, OpCount, str]:
    """A runtime-adapter session for a freshly exported artifact, the precision its layers run in, and a label.

    The file is validated first (a corrupt one is a ``ModelFileError``). OpenVINO on the CPU runs with
    ``INFERENCE_PRECISION_HINT`` f32 for fp32 and int8 artifacts alike (the adapter's rule), so int8 and fp32
    differ only by quantization.
    """
    from edgetl.runtimes import RUNTIMES

    (load_onnx_checked if fmt == "onnx" else load_openvino_checked)(path)
    runtime, device = PARITY_RUNTIME[fmt]
    session = RUNTIMES.get(runtime).load(path, device, precision, None)
    counts = session.op_counts() or OpCount()
    label = "onnxruntime:cpu" if fmt == "onnx" else "openvino:CPU (f32 hint)"
    return session, counts, label


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


def run_in_chunks(session: Any, inputs: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """Run named ``inputs`` through ``session`` ``batch_size`` at a time; a short last chunk is padded, the padding
    dropped."""
    n = len(next(iter(inputs.values())))
    outputs = []
    for start in range(0, n, batch_size):
        chunk = {k: v[start : start + batch_size] for k, v in inputs.items()}
        short = batch_size - len(next(iter(chunk.values())))
        if short:
            chunk = {k: np.concatenate([v, np.zeros((short, *v.shape[1:]), dtype=v.dtype)]) for k, v in chunk.items()}
        out = np.asarray(session.run({k: np.ascontiguousarray(v) for k, v in chunk.items()}))
        outputs.append(out[: len(out) - short] if short else out)
    return np.concatenate(outputs)
