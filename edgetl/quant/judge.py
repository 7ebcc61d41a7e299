"""Judge a converted int8 model where int8 is fast: its ONNX QDQ export in an ONNX Runtime int8 session.

torch runs a converted PT2E model with reference quantized ops (quantize / dequantize around float kernels), so
validation of a QAT candidate costs more than the float model's. The ONNX file the export stage would write runs
as ``QLinearConv`` kernels instead. The export and the session are the export stage's and the runtime adapter's
(``edgetl.export.writers.export_onnx``, ``edgetl.runtimes``), not copies of them.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgetl.tasks.base import EvalBatch


def ort_eval(model: Any, example: Any, io: Any, batches: list[EvalBatch], *, opset: int,
             threads: int | None = None) -> tuple[float, float]:
    """Cross-entropy (no smoothing) and top-1 of ``model`` (a converted PT2E module) on preprocessed ``batches`` in
    ONNX Runtime's CPU int8 kernels."""
    from edgetl.export.writers import export_onnx
    from edgetl.runtimes import get_runtime

    with tempfile.TemporaryDirectory(prefix="edgetl-judge-") as tmp:
        path = Path(tmp) / "candidate.onnx"
        with warnings.catch_warnings():
            # a converted PT2E module keeps nn.Module's training flag (.eval() raises on it); its ops are in eval
            # mode already (move_exported_model_to_eval), so the exporter's "training mode" warning says nothing
            warnings.filterwarnings("ignore", message="Exporting a model while it is in training mode")
            export_onnx(model, example, path, opset=opset, dynamic=True, metadata={}, what="a QAT candidate", io=io)
        session = get_runtime("onnxruntime").load(path, "cpu", "int8", threads)
        try:
            correct = total = 0
            loss_sum = 0.0
            for inputs, labels in batches:
                logits = np.asarray(session.run(inputs), dtype=np.float64)
                shifted = logits - logits.max(1, keepdims=True)
                log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
                loss_sum += float(-log_probs[np.arange(len(labels)), labels].sum())
                correct += int((logits.argmax(1) == labels).sum())
                total += len(labels)
        finally:
            session.close()
    return loss_sum / max(1, total), correct / max(1, total)
