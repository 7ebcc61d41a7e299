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


def ort_logits(model: Any, example: Any, io: Any, batches: list[EvalBatch], *, opset: int,
               threads: int | None = None) -> list[np.ndarray]:
    """The logits (float64, one array per batch) of ``model`` (a converted PT2E module) on preprocessed
    ``batches``, from its ONNX QDQ export in ONNX Runtime's CPU int8 kernels.

    When every batch has the same input shapes but for the batch size (images), the export is static at the
    largest batch and a shorter batch is padded with copies of its last row, whose logits are dropped: a static
    export skips the exporter's symbolic-shape tracing, about half of its time (lite0 at 96 px: 4.2 s against
    8.7 s), and per-image results do not depend on the rows beside it. Otherwise (text of varying length) the
    export has the dynamic axes of ``io``."""
    from edgetl.export.writers import export_onnx
    from edgetl.runtimes import get_runtime

    static = _static_batch(batches)
    size = None
    if static is not None:  # the largest batch is the export's example and every batch's size
        import torch

        example = {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in batches[static][0].items()}
        size = len(batches[static][1])
    with tempfile.TemporaryDirectory(prefix="edgetl-judge-") as tmp:
        path = Path(tmp) / "candidate.onnx"
        with warnings.catch_warnings():
            # a converted PT2E module keeps nn.Module's training flag (.eval() raises on it); its ops are in eval
            # mode already (move_exported_model_to_eval), so the exporter's "training mode" warning says nothing
            warnings.filterwarnings("ignore", message="Exporting a model while it is in training mode")
            export_onnx(model, example, path, opset=opset, dynamic=static is None, metadata={}, what="an int8 model",
                        io=io)
        session = get_runtime("onnxruntime").load(path, "cpu", "int8", threads)
        try:
            if size is None:
                return [np.asarray(session.run(inputs), dtype=np.float64) for inputs, _ in batches]
            return [np.asarray(session.run(_padded(inputs, size)), dtype=np.float64)[: len(labels)]
                    for inputs, labels in batches]
        finally:
            session.close()


def _static_batch(batches: list[EvalBatch]) -> int | None:
    """The index of a largest batch when all batches share their input shapes but for the batch size, else None."""
    if not batches:
        return None
    first = {name: np.shape(array)[1:] for name, array in batches[0][0].items()}
    if any({name: np.shape(array)[1:] for name, array in inputs.items()} != first for inputs, _ in batches):
        return None
    return max(range(len(batches)), key=lambda i: len(batches[i][1]))


def _padded(inputs: dict[str, Any], size: int) -> dict[str, np.ndarray]:
    """``inputs`` with the batch filled up to ``size`` rows by repeating its last row."""
    out = {}
    for name, array in inputs.items():
        array = np.asarray(array)
        missing = size - len(array)
        out[name] = np.concatenate([array, np.repeat(array[-1:], missing, axis=0)]) if missing > 0 else array
    return out


def ort_eval(model: Any, example: Any, io: Any, batches: list[EvalBatch], *, opset: int,
             threads: int | None = None) -> tuple[float, float]:
    """Cross-entropy (no smoothing) and top-1 of ``model`` (a converted PT2E module) on preprocessed ``batches`` in
    ONNX Runtime's CPU int8 kernels."""
    return logits_stats(ort_logits(model, example, io, batches, opset=opset, threads=threads), batches)


def logits_stats(logits: list[np.ndarray], batches: list[EvalBatch]) -> tuple[float, float]:
    """Cross-entropy (no smoothing) and top-1 of per-batch ``logits`` against the labels of ``batches``."""
    correct = total = 0
    loss_sum = 0.0
    for batch_logits, (_, labels) in zip(logits, batches, strict=True):
        shifted = batch_logits - batch_logits.max(1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        loss_sum += float(-log_probs[np.arange(len(labels)), labels].sum())
        correct += int((batch_logits.argmax(1) == labels).sum())
        total += len(labels)
    return loss_sum / max(1, total), correct / max(1, total)


class StepLatency:
    """Batch-1 latency of accuracy-fallback steps in ONNX Runtime on this host, for the step curve and the cap.

    Each call exports a step's model (the export stage's writer, so its float layers stay float as they will ship)
    and times it beside the all-int8 model and the float model in interleaved rounds (``edgetl.bench.measure``):
    ``vs_int8`` and ``vs_fp32`` are medians of the per-round ratios, with their round ranges. A ratio, not a time:
    both sides see the same load. The all-int8 and float sessions are made on the first call and kept.
    """

    def __init__(self, float_model: Any, int8_model: Any, example: Any, io: Any, sample: dict[str, np.ndarray],
                 *, opset: int, threads: int | None = 1, rounds: int = 5, iterations: int = 40) -> None:
        self._models = {"fp32": float_model, "int8": int8_model}
        self._example, self._io, self._opset, self._threads = example, io, opset, threads
        self._sample = {k: v[:1] for k, v in sample.items()}
        self.rounds, self.iterations = rounds, iterations
        self._tmp = tempfile.TemporaryDirectory(prefix="edgetl-step-latency-")
        self._sessions: dict[str, Any] = {}
        self._count = 0

    def _session(self, model: Any, name: str, precision: str) -> Any:
        from edgetl.export.writers import export_onnx
        from edgetl.runtimes import get_runtime

        path = Path(self._tmp.name) / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Exporting a model while it is in training mode")
            export_onnx(model, self._example, path, opset=self._opset, dynamic=True, metadata={},
                        what=f"the fallback's {name} model", io=self._io)
        return get_runtime("onnxruntime").load(path, "cpu", precision, self._threads)

    def __call__(self, model: Any) -> dict[str, Any]:
        from edgetl.bench.measure import TimingPlan, timed_rounds

        if not self._sessions:
            self._sessions = {"fp32": self._session(self._models["fp32"], "fp32", "fp32"),
                              "int8": self._session(self._models["int8"], "int8", "int8")}
        self._count += 1
        step = (self._sessions["int8"] if model is self._models["int8"]
                else self._session(model, f"step{self._count}", "int8"))
        runs = [lambda s=s: s.run(self._sample) for s in (self._sessions["fp32"], self._sessions["int8"], step)]
        plan = TimingPlan(warmup=10, min_iterations=self.iterations * self.rounds, min_time_s=0.0,
                          rounds=self.rounds)
        samples, failures = timed_rounds(runs, plan)
        if step is not self._sessions["int8"]:
            step.close()
        if failures:
            raise next(iter(failures.values()))
        medians = [[float(np.median(r)) / 1e6 for r in row] for row in samples]  # ms per row per round
        fp32, int8, this = medians
        vs_int8 = [t / i for t, i in zip(this, int8, strict=True)]
        vs_fp32 = [t / f for t, f in zip(this, fp32, strict=True)]
        return {"runtime": "onnxruntime", "device": "cpu", "threads": self._threads, "rounds": self.rounds,
                "p50_ms": round(float(np.median(this)), 4),
                "vs_int8": round(float(np.median(vs_int8)), 4),
                "vs_int8_range": [round(min(vs_int8), 4), round(max(vs_int8), 4)],
                "vs_fp32": round(float(np.median(vs_fp32)), 4),
                "vs_fp32_range": [round(min(vs_fp32), 4), round(max(vs_fp32), 4)]}

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions = {}
        self._tmp.cleanup()
