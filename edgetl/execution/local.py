"""The local executor: load each planned row's model in this process, time it, and evaluate it."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from edgetl.bench.measure import (
    MEMORY_METHOD,
    PeakRss,
    accuracy_metrics,
    keep_samples,
    latency_stats,
    throughput,
    timed_runs,
)
from edgetl.bench.results import BenchRow
from edgetl.errors import ModelFileError
from edgetl.execution.base import EvalData, Executor, MeasureSettings, Planned

log = logging.getLogger("edgetl.bench")

__all__ = ["MEMORY_METHOD", "LocalExecutor", "logits_all", "measure_row", "predict_all"]


def predict_all(session: Any, data: EvalData, batch_size: int, on_batch: Any = None) -> np.ndarray:
    """Arg-max class of every sample; a fixed-batch model gets its batch size, the last batch zero-padded."""
    return logits_all(session, data, batch_size, on_batch).argmax(axis=1)


def logits_all(session: Any, data: EvalData, batch_size: int, on_batch: Any = None) -> np.ndarray:
    """The model's output (N x classes, float32) for every sample, batched as ``predict_all`` is."""
    fixed = session.fixed_batch
    size = fixed or batch_size
    outputs: list[np.ndarray] = []
    for start in range(0, len(data), size):
        chunk = data.batch(start, start + size)
        n = len(next(iter(chunk.values())))
        if fixed and n < fixed:
            chunk = {k: np.concatenate([v, np.zeros((fixed - n, *v.shape[1:]), dtype=v.dtype)]) for k, v in chunk.items()}
        logits = np.asarray(session.run(chunk))
        if logits.ndim != 2:
            logits = logits.reshape(logits.shape[0], -1)
        outputs.append(np.asarray(logits[:n], dtype=np.float32))
        if on_batch:
            on_batch(n)
    return np.concatenate(outputs) if outputs else np.zeros((0, len(data.classes)), dtype=np.float32)


def _logits(session: Any, data: EvalData, batch_size: int, progress: Any) -> np.ndarray:
    task = progress.add_task("  accuracy", total=len(data)) if progress is not None else None

    def advance(n: int) -> None:
        if task is not None:
            progress.advance(task, n)

    try:
        return logits_all(session, data, batch_size, advance)
    finally:
        if task is not None:
            progress.remove_task(task)


def accuracy_update(data: EvalData, logits: np.ndarray | None,
                    predictions: np.ndarray | None = None) -> dict[str, Any]:
    """A row's accuracy fields from its evaluation pass (host and device rows alike).

    ``predictions``: the classes the runtime picked, where they may differ from the arg-max of ``logits`` (the
    device's logits come back rounded); default the arg-max. Without ``logits``, no ROC, PR or calibration figures.
    """
    if predictions is None:
        if logits is None:
            raise ValueError("accuracy_update needs logits or predictions")
        predictions = logits.argmax(axis=1)
    preds = predictions
    m = accuracy_metrics(data.labels, preds, data.classes, logits=logits)
    return {"accuracy": m.accuracy, "macro_f1": m.macro_f1, "per_class": m.per_class,
            "confusion_matrix": m.confusion_matrix, "eval_images": m.n, "roc_auc": m.roc_auc,
            "average_precision": m.average_precision, "ece": m.ece}


def base_row(plan: Planned, where: str = "host") -> BenchRow:
    """The row's identity and the export stage's facts, before anything is measured."""
    a = plan.artifact
    return BenchRow(name=a.name, format=a.format, precision=plan.precision, source=a.source,  # type: ignore[arg-type]
                    runtime=plan.runtime, device=plan.device, proxy=plan.proxy, status="ok", note=plan.note,
                    path=a.path, size_bytes=a.size_bytes or None, int8_ops=a.int8_ops, float_ops=a.float_ops,
                    parity=a.parity or None, measured_on=where)  # type: ignore[arg-type]


def measure_row(plan: Planned, settings: MeasureSettings, eval_data: EvalData | None,
                progress: Any = None) -> BenchRow:
    """Load, time and evaluate one row. ``ModelFileError`` propagates; any other failure is a failed row."""
    from edgetl.runtimes import RUNTIMES
    from edgetl.tasks import get_task

    row = base_row(plan)
    if plan.skip:
        return row.model_copy(update={"status": "skipped", "reason": plan.skip})
    runtime = RUNTIMES.get(plan.runtime)
    ok, why = runtime.available(plan.device)  # also imports the library, so its import is not counted as memory
    if not ok:
        return row.model_copy(update={"status": "skipped", "reason": f"not on this host: {why}"})
    task = get_task(settings.task)
    session = None
    try:
        rng = np.random.default_rng(0)
        with PeakRss() as memory:
            t0 = time.perf_counter_ns()
            session = runtime.load(plan.file, plan.device, plan.precision, settings.threads)
            io = settings.io or task.io_for_file(session.inputs, settings.fallback_size)
            lat_batch = session.fixed_batch or 1
            x = task.benchmark_inputs(io, lat_batch, rng)
            session.run(x)
            cold_ms = (time.perf_counter_ns() - t0) / 1e6
            batches = {b: task.benchmark_inputs(io, b, rng)
                       for b in settings.batch_sizes if b != lat_batch and session.fixed_batch is None}
            for batch in batches.values():
                session.run(batch)
        samples = timed_runs(lambda: session.run(x), settings.timing)
        stats = latency_stats(samples)
        rates: dict[str, float | None] = {str(lat_batch): round(lat_batch * 1000.0 / stats.mean, 2)}
        for b in settings.batch_sizes:
            if b == lat_batch:
                continue
            rates[str(b)] = throughput(session, batches[b], settings.timing) if b in batches else None
        update: dict[str, Any] = {
            "latency_ms": stats, "latency_samples_ms": keep_samples(samples, settings.samples_kept),
            "throughput": rates, "cold_start_ms": round(cold_ms, 2), "peak_memory_mb": memory.peak_mb,
            "threads": session.threads, "settings": {**session.settings, "latency_batch": lat_batch},
        }
        if session.fixed_batch is not None and len(settings.batch_sizes) > 1:
            update["note"] = "; ".join(filter(None, [plan.note, f"the model's batch is fixed at {lat_batch}"]))
        if eval_data is None:
            return row.model_copy(update=update)
        logits = _logits(session, eval_data, settings.eval_batch_size, progress)
        return row.model_copy(update={**update, **accuracy_update(eval_data, logits)}).with_logits(logits)
    except ModelFileError:
        raise
    except Exception as exc:  # any runtime error becomes a failed row with its reason; the others still run
        from edgetl.runtimes.base import short_error

        log.debug("%s failed", row.label, exc_info=True)
        return row.model_copy(update={"status": "failed", "reason": f"{type(exc).__name__}: {short_error(exc)}"})
    finally:
        if session is not None:
            session.close()


class LocalExecutor(Executor):
    """Measures every row in this process, one after another, with a progress bar."""

    where = "host"

    def measure(self, plans: list[Planned], settings: MeasureSettings, eval_data: EvalData | None,
                progress: Any = None) -> list[BenchRow]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        rows: list[BenchRow] = []
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("benchmarking", total=len(plans))
            for plan in plans:
                bar.update(task, description=f"{plan.artifact.name} @ {plan.runtime}:{plan.device} {plan.precision}")
                rows.append(measure_row(plan, settings, eval_data, progress=bar))
                bar.advance(task)
        return rows
