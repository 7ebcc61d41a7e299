"""The local executor: load the planned rows' models in this process, time them in interleaved rounds, evaluate."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetl.bench.measure import (
    MEMORY_METHOD,
    PeakRss,
    accuracy_metrics,
    keep_samples,
    summarize_rounds,
    throughput,
    timed_rounds,
)
from edgetl.bench.results import BenchRow
from edgetl.errors import ModelFileError
from edgetl.execution.base import EvalData, Executor, MeasureSettings, Planned

log = logging.getLogger("edgetl.bench")

__all__ = ["MEMORY_METHOD", "LocalExecutor", "logits_all", "measure_row", "measure_rows", "predict_all"]


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


@dataclass
class _Loaded:
    """A row whose model is loaded and warmed once, waiting for its timing rounds."""

    plan: Planned
    row: BenchRow
    session: Any
    x: dict[str, np.ndarray]
    batches: dict[int, dict[str, np.ndarray]]
    lat_batch: int
    cold_ms: float
    peak_mb: float


def _failed(row: BenchRow, exc: Exception) -> BenchRow:
    from edgetl.runtimes.base import short_error

    log.debug("%s failed", row.label, exc_info=exc)
    return row.model_copy(update={"status": "failed", "reason": f"{type(exc).__name__}: {short_error(exc)}"})


def _load(plan: Planned, settings: MeasureSettings) -> BenchRow | _Loaded:
    """Load the row's model, time its cold start, run each batch size once; a skipped or failed row, or loaded."""
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
        return _Loaded(plan, row, session, x, batches, lat_batch, cold_ms, memory.peak_mb)
    except ModelFileError:
        if session is not None:
            session.close()
        raise
    except Exception as exc:  # any runtime error becomes a failed row with its reason; the others still run
        if session is not None:
            session.close()
        return _failed(row, exc)


def _finish(item: _Loaded, rounds_ns: list[list[int]], settings: MeasureSettings, eval_data: EvalData | None,
            progress: Any) -> BenchRow:
    """The row's latency from its rounds, then its throughput and accuracy."""
    session, plan, lat_batch = item.session, item.plan, item.lat_batch
    try:
        stats, rounds = summarize_rounds(rounds_ns, interleaved=True)
        rates: dict[str, float | None] = {str(lat_batch): round(lat_batch * 1000.0 / stats.mean, 2)}
        for b in settings.batch_sizes:
            if b == lat_batch:
                continue
            rates[str(b)] = throughput(session, item.batches[b], settings.timing) if b in item.batches else None
        samples = [s for r in rounds_ns for s in r]
        update: dict[str, Any] = {
            "latency_ms": stats, "latency_rounds": rounds,
            "latency_samples_ms": keep_samples(samples, settings.samples_kept),
            "throughput": rates, "cold_start_ms": round(item.cold_ms, 2), "peak_memory_mb": item.peak_mb,
            "threads": session.threads, "settings": {**session.settings, "latency_batch": lat_batch},
        }
        if session.fixed_batch is not None and len(settings.batch_sizes) > 1:
            update["note"] = "; ".join(filter(None, [plan.note, f"the model's batch is fixed at {lat_batch}"]))
        if eval_data is None:
            return item.row.model_copy(update=update)
        logits = _logits(session, eval_data, settings.eval_batch_size, progress)
        return item.row.model_copy(update={**update, **accuracy_update(eval_data, logits)}).with_logits(logits)
    except ModelFileError:
        raise
    except Exception as exc:  # any runtime error becomes a failed row with its reason; the others still run
        return _failed(item.row, exc)


def measure_rows(plans: list[Planned], settings: MeasureSettings, eval_data: EvalData | None,
                 progress: Any = None, on_step: Any = None) -> list[BenchRow]:
    """Load every row, time them in interleaved rounds (``settings.timing.rounds``), then evaluate each.

    Every model stays loaded until the rounds are done, so that the rows take turns (A B C A B C ...) and a
    load that drifts over the run hits them alike. ``ModelFileError`` propagates; any other failure is a failed
    row. ``on_step(text)`` is told each phase (for a progress bar).
    """
    say = on_step or (lambda text: None)
    done: list[BenchRow | _Loaded] = []
    closed: set[int] = set()
    try:
        for plan in plans:
            say(f"loading {plan.artifact.name} @ {plan.runtime}:{plan.device} {plan.precision}")
            done.append(_load(plan, settings))
        loaded = [item for item in done if isinstance(item, _Loaded)]
        rounds = max(1, settings.timing.rounds)
        samples, failures = timed_rounds(
            [lambda item=item: item.session.run(item.x) for item in loaded], settings.timing,  # type: ignore[misc]
            on_round=lambda r: say(f"timing round {r + 1}/{rounds} of {len(loaded)} row(s)"))
        results: dict[int, BenchRow] = {}
        for i, item in enumerate(loaded):
            say(f"{item.row.name} @ {item.plan.runtime}:{item.plan.device}: throughput and accuracy")
            results[id(item)] = (_failed(item.row, failures[i]) if i in failures
                                 else _finish(item, samples[i], settings, eval_data, progress))
            item.session.close()
            closed.add(id(item))
        return [results[id(d)] if isinstance(d, _Loaded) else d for d in done]
    finally:
        for entry in done:
            if isinstance(entry, _Loaded) and id(entry) not in closed:
                entry.session.close()


def measure_row(plan: Planned, settings: MeasureSettings, eval_data: EvalData | None,
                progress: Any = None) -> BenchRow:
    """Load, time and evaluate one row (its rounds back to back). ``ModelFileError`` propagates."""
    return measure_rows([plan], settings, eval_data, progress)[0]


class LocalExecutor(Executor):
    """Measures every row in this process, their timing rounds interleaved, with a progress line."""

    where = "host"

    def measure(self, plans: list[Planned], settings: MeasureSettings, eval_data: EvalData | None,
                progress: Any = None) -> list[BenchRow]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn())
        steps = 2 * len(plans) + max(1, settings.timing.rounds)
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("benchmarking", total=steps)

            def step(text: str) -> None:
                bar.update(task, description=text)
                bar.advance(task)

            return measure_rows(plans, settings, eval_data, progress=bar, on_step=step)
