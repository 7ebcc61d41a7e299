"""Stage ``bench``: latency, throughput, memory and accuracy of every artifact on every runtime the target names.

The stage plans the rows (``edgetl.bench.plan``), preprocesses the evaluation split once through the task
(``edgetl.tasks``), hands both to an executor (``edgetl.execution``: in this process by default) and writes
``results.json``. Where the rows are measured is the executor's business; this stage does not change with it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench.measure import MEMORY_METHOD, TimingPlan
from edgetl.bench.plan import Source, host_is_target, open_source, plan_rows
from edgetl.bench.results import BenchResults, BenchSettings
from edgetl.config import BuildConfig
from edgetl.errors import ConfigError, DataError
from edgetl.execution.base import EvalData, Executor, MeasureSettings
from edgetl.targets import TargetProfile

log = logging.getLogger("edgetl.bench")

__all__ = ["benchmark", "host_is_target", "open_source", "plan_rows"]


def _eval_data(cfg: BuildConfig, source: Source, data: str | None, workdir: Path,
               fallback_size: int) -> tuple[EvalData | None, dict[str, Any] | None, dict[str, Any]]:
    """(evaluation inputs, the preprocessing used, facts for the results header); None when there is no data."""
    from edgetl.data import read_split
    from edgetl.tasks import get_task

    task = get_task(source.task)
    facts: dict[str, Any] = {"notes": []}
    if data is not None:
        index = task.index_data(cfg.data.model_copy(update={"path": data}))
    elif source.split_file is not None:
        index = read_split(source.split_file)
    else:
        facts["notes"].append("no evaluation data (pass --data PATH for accuracy): latency only")
        return None, source.preprocess, facts
    if source.classes and list(source.classes) != list(index.classes):
        raise DataError(f"the model's classes {source.classes} are not the data set's {index.classes}",
                        hint="pass the data set the model was trained on (same class folders)")
    preprocess = source.preprocess
    if preprocess is None:
        preprocess, note = task.assumed_preprocess(cfg, fallback_size)
        facts["notes"].append(note)
    split = index.eval_split
    samples = index.splits.get(split) or []
    if not samples:
        raise DataError(f"{index.source}: the {split} split is empty", hint="add images to val/ or test/")
    facts.update(dataset=index.source, eval_split=split, classes=index.classes)
    inputs = _preprocess_to_memmaps(task, samples, preprocess, workdir)
    labels = np.asarray([label for _, label in samples], dtype=np.int64)
    return EvalData(inputs, labels, list(index.classes)), preprocess, facts


def _preprocess_to_memmaps(task: Any, samples: list[Any], preprocess: dict[str, Any],
                           workdir: Path) -> dict[str, np.ndarray]:
    """Preprocess every evaluation sample once (the task's deployment preprocessing) into disk-backed arrays."""
    from rich.progress import Progress

    arrays: dict[str, np.ndarray] = {}
    done = 0
    with Progress(transient=True) as progress:
        bar = progress.add_task(f"preprocessing {len(samples)} evaluation {task.sample_noun}", total=len(samples))
        for batch, labels in task.eval_batches(samples, preprocess, 32):
            for name, value in batch.items():
                if name not in arrays:
                    arrays[name] = np.lib.format.open_memmap(workdir / f"eval_{name}.npy", mode="w+",
                                                             dtype=value.dtype, shape=(len(samples), *value.shape[1:]))
                arrays[name][done : done + len(labels)] = value
            done += len(labels)
            progress.advance(bar, len(labels))
    for a in arrays.values():
        a.flush()  # type: ignore[attr-defined]
    return arrays


def _threads(cfg: BuildConfig, target: TargetProfile) -> tuple[int | None, str]:
    wanted = cfg.bench.threads or target.benchmark.threads
    cores = os.cpu_count() or 1
    if wanted is not None and wanted > cores:
        return cores, f"threads capped at this host's {cores} cores (the target asks for {wanted})"
    return wanted, ""


def benchmark(cfg: BuildConfig, target: TargetProfile, source: Path, out_dir: Path, *, data: str | None = None,
              executor: Executor | None = None) -> BenchResults:
    """Measure every artifact of ``source`` (a run directory or one .onnx/.xml file) and write ``results.json``.

    Args:
        cfg: the build config; ``cfg.bench`` overrides the target's benchmark settings.
        target: the target profile whose runtimes and batch sizes are measured.
        source: a run directory (reads ``export/manifest.json``) or a single model file.
        out_dir: where ``results.json`` is written.
        data: a data set for accuracy; by default the run's recorded split.
        executor: where the rows are measured (default: ``LocalExecutor``, this process).

    Returns:
        The results, as written to ``out_dir/results.json``.
    """
    from edgetl.execution.local import LocalExecutor
    from edgetl.host import host_facts

    bench = cfg.bench
    src = open_source(source)
    timing = TimingPlan(
        warmup=bench.warmup if bench.warmup is not None else target.benchmark.warmup,
        min_iterations=bench.min_iterations or target.benchmark.min_iterations,
        min_time_s=bench.min_time_s if bench.min_time_s is not None else target.benchmark.min_time_s,
    )
    batch_sizes = sorted(set(bench.batch_sizes or target.input.batch_sizes))
    if any(b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be >= 1, got {batch_sizes}")
    threads, thread_note = _threads(cfg, target)
    plans = plan_rows(target, src)
    executor = executor or LocalExecutor()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fallback = (src.preprocess or {}).get("image_size") or target.input.image_size
    settings = MeasureSettings(timing=timing, threads=threads, batch_sizes=batch_sizes,
                               eval_batch_size=bench.eval_batch_size, samples_kept=bench.keep_samples, io=src.io,
                               task=src.task, fallback_size=int(fallback))
    with tempfile.TemporaryDirectory(prefix=".bench-", dir=out_dir) as work:
        eval_data: EvalData | None = None
        preprocess = src.preprocess
        facts: dict[str, Any] = {"notes": []}
        if bench.accuracy:
            eval_data, preprocess, facts = _eval_data(cfg, src, data, Path(work), settings.fallback_size)
        rows = executor.measure(plans, settings, eval_data)
        if src.model_facts:  # every artifact of a run comes from one float model: its MACs, parameters, lineage
            rows = [r.model_copy(update=src.model_facts) for r in rows]
        del eval_data  # release the memory maps before the temporary directory goes
    hw = target.hardware
    results = BenchResults(
        target=target.name,
        target_hardware=f"{hw.cpu}; {hw.accelerator_name or hw.accelerator}",
        backbone=src.backbone,
        dataset=facts.get("dataset"),
        eval_split=facts.get("eval_split"),
        classes=facts.get("classes") or list(src.classes or []),
        preprocess=preprocess,
        source=str(source),
        host=host_facts(),
        settings=BenchSettings(warmup=timing.warmup, min_iterations=timing.min_iterations,
                               min_time_s=timing.min_time_s, threads=threads, batch_sizes=batch_sizes,
                               eval_batch_size=bench.eval_batch_size, memory_method=MEMORY_METHOD),
        notes=[*src.notes, *facts.get("notes", []), *([thread_note] if thread_note else []),
               *([] if host_is_target(target) else
                 [f"this host is not a {target.name}: rows marked proxy ran here as stand-ins"])],
        rows=rows,
    )
    results.write(out_dir)
    return results
