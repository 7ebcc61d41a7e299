"""Stage ``bench``: latency, throughput, memory and accuracy of every artifact on every runtime the target names.

The stage plans the rows (``edgetl.bench.plan``), preprocesses the evaluation split once through the task
(``edgetl.tasks``), hands both to an executor (``edgetl.execution``: in this process by default) and writes
``results.json``. Where the rows are measured is the executor's business; this stage does not change with it.

With a device (``device=``, else ``bench.device`` of the build config, else the target profile's ``device:``) the
host rows are measured as without one, and the rows the target's own device can run are measured there too
(``edgetl.execution.remote``: ``measured_on: "device"``). A target whose device is not this host and was not
measured gets roofline estimate rows (``measured_on: "estimate"``) from the target's published peaks, with the error
band validated on the build host; they carry no measured latency and never pass or fail a budget.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench.measure import MEMORY_METHOD, TimingPlan
from edgetl.bench.plan import Source, host_is_target, open_source, plan_rows
from edgetl.bench.results import (
    SCORES_NAME,
    BenchResults,
    BenchRow,
    BenchSettings,
    LatencyEstimate,
    write_scores,
)
from edgetl.config import BuildConfig
from edgetl.errors import ConfigError, DataError, ModelFileError
from edgetl.execution.base import EvalData, Executor, MeasureSettings, Planned
from edgetl.targets import DeviceSpec, TargetProfile

log = logging.getLogger("edgetl.bench")

__all__ = ["ESTIMATE_BAND", "benchmark", "device_spec", "estimate_rows", "host_is_target", "open_source",
           "plan_rows"]

# estimate/measured of the roofline on the build host, min and max over resnet18, mobilenet_v3_small and
# efficientnet_lite0 in fp32 and int8 QDQ (ONNX Runtime CPU, 2 threads, host peaks measured by microbenchmark);
# a test keeps these equal to the file's "band".
ESTIMATE_BAND = (0.25, 1.882)
ESTIMATE_BAND_SOURCE = "benchmarks/reported/roofline_validation.json (6 models on the build host, 2026-12-01)"


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
    # selection (the kept epochs of fine-tuning and QAT) used the run's own val split, never a test split
    selected_on: bool | None = False
    if split == "val":
        own = data is None or (source.split_file is not None
                               and read_split(source.split_file).source == index.source)
        selected_on = True if own else None
    facts.update(dataset=index.source, eval_split=split, classes=index.classes, eval_split_selected_on=selected_on)
    inputs = _preprocess_to_memmaps(task, samples, preprocess, workdir)
    labels = np.asarray([label for _, label in samples], dtype=np.int64)
    return EvalData(inputs, labels, list(index.classes), trim_to=task.padding_mask), preprocess, facts


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


def device_spec(cfg: BuildConfig, target: TargetProfile) -> DeviceSpec | None:
    """The device to measure on: the build config's ``bench.device``, else the target profile's ``device:``."""
    return cfg.bench.device or target.device


def _band_text() -> str:
    lo, hi = ESTIMATE_BAND
    return (f"real latency {1 / hi:.2g}-{1 / lo:.2g}x of it (band measured on the build host: estimate/measured "
            f"{lo:g}-{hi:g}, {ESTIMATE_BAND_SOURCE})")


def _sig(value: float) -> float:
    return float(f"{value:.4g}")  # 4 significant digits: a tiny model's estimate is microseconds


def _float_precision(runtime: str, precision: str, fp32_peak: float | None) -> str | None:
    """The precision the row's float layers run at: TensorRT and devices without fp32 run them in fp16."""
    if precision == "fp16" or (precision == "int8" and (runtime == "tensorrt" or fp32_peak is None)):
        return "fp16"
    return "fp32" if fp32_peak is not None else "fp16"


def estimate_rows(target: TargetProfile, src: Source, measured: list[BenchRow]) -> tuple[list[BenchRow], list[str]]:
    """Roofline estimate rows for the target's own runtime rows that no machine of the target measured.

    One per (artifact, runtime spec, precision) the target runs, from the artifact's ONNX graph (an OpenVINO IR
    is estimated from the ONNX export of the same model) and the profile's published peaks: ONNX shape inference
    and arithmetic only, no run. Returns the rows and the notes (why no estimate was made, where none was).
    """
    from edgetl.estimate import DevicePeaks, estimate_latency
    from edgetl.execution.local import base_row
    from edgetl.runtimes import RUNTIMES

    if host_is_target(target):
        return [], []
    done = {r.key[:4] for r in measured if r.status == "ok" and (r.measured_on == "device" or not r.proxy)}
    pending = []
    for spec in target.runtimes:
        if spec.runtime == "torch":
            continue
        adapter = RUNTIMES.get(spec.runtime)
        for precision in spec.precisions:
            for artifact, file in src.artifacts:
                if (adapter.runs(artifact.format, artifact.precision, precision)
                        and (artifact.name, spec.runtime, spec.device, precision) not in done):
                    pending.append((spec, precision, artifact, file))
    if not pending:  # every row of the target's own runtimes was measured on the target
        return [], []
    try:
        peaks = DevicePeaks.from_target(target)
    except ConfigError as exc:
        return [], [f"no latency estimate for {target.name}: {exc.message}"]
    onnx_of = {(a.source, a.precision): f for a, f in src.artifacts if a.format == "onnx"}
    cache: dict[tuple[Path, str | None], Any] = {}
    rows: list[BenchRow] = []
    notes: list[str] = []
    for spec, precision, artifact, file in pending:
        graph = file if artifact.format == "onnx" else onnx_of.get((artifact.source, artifact.precision))
        if graph is None:
            continue
        fp = _float_precision(spec.runtime, precision, peaks.fp32_ops_per_s)
        try:
            if (graph, fp) not in cache:
                cache[(graph, fp)] = estimate_latency(graph, peaks, batch=1, float_precision=fp)  # type: ignore[arg-type]
            est = cache[(graph, fp)]
        except (ConfigError, ModelFileError) as exc:
            notes.append(f"no latency estimate for {artifact.name} on {spec.label}: {exc.message}")
            continue
        lo, hi = ESTIMATE_BAND
        ms = est.total_ms
        method = (f"roofline over {graph.name} (int8 layers at int8, float layers at {fp}) with "
                  f"{target.name}'s published peaks")
        plan = Planned(artifact, file, spec.runtime, spec.device, precision, proxy=False)
        rows.append(base_row(plan, "estimate").model_copy(update={
            "note": f"estimate, {_band_text()}; {method}",
            "estimate": LatencyEstimate(
                latency_ms=_sig(ms), low_ms=_sig(ms / hi), high_ms=_sig(ms / lo),
                band=ESTIMATE_BAND, band_source=ESTIMATE_BAND_SOURCE, method=method,
                peaks=peaks.to_dict(), macs=est.macs, bytes=est.bytes,
                time_by_bound_ms={k: round(v * 1e3, 5) for k, v in est.time_by_bound().items()}),
        }))
    return rows, notes


def _shipped(target: TargetProfile, rows: list[BenchRow], selection: dict[str, Any] | None) -> list[str]:
    """The names of the artifacts a bundle for ``target`` carries, by the bundle's own choice, primary first."""
    from edgetl.bench.budgets import choose_int8_sources
    from edgetl.stages.bundle import pick_artifacts

    source = choose_int8_sources({"rows": [r.model_dump(mode="json") for r in rows], "int8_selection": selection})
    return [r.name for r in pick_artifacts(target, [r for r in rows if r.measured_on != "estimate"], source)]


def benchmark(cfg: BuildConfig, target: TargetProfile, source: Path, out_dir: Path, *, data: str | None = None,
              executor: Executor | None = None, device: Executor | None = None) -> BenchResults:
    """Measure every artifact of ``source`` (a run directory or one .onnx/.xml file) and write ``results.json``.

    Args:
        cfg: the build config; ``cfg.bench`` overrides the target's benchmark settings.
        target: the target profile whose runtimes and batch sizes are measured.
        source: a run directory (reads ``export/manifest.json``) or a single model file.
        out_dir: where ``results.json`` is written.
        data: a data set for accuracy; by default the run's recorded split.
        executor: where the host rows are measured (default: ``LocalExecutor``, this process).
        device: where the target's own device rows are measured (default: an ``SshExecutor`` for
            ``device_spec(cfg, target)``; none when neither names a device).

    Returns:
        The results, as written to ``out_dir/results.json``.
    """
    from edgetl.compress.distill import compare_distillation
    from edgetl.execution.local import LocalExecutor
    from edgetl.host import host_facts

    bench = cfg.bench
    src = open_source(source)
    timing = TimingPlan(
        warmup=bench.warmup if bench.warmup is not None else target.benchmark.warmup,
        min_iterations=bench.min_iterations or target.benchmark.min_iterations,
        min_time_s=bench.min_time_s if bench.min_time_s is not None else target.benchmark.min_time_s,
        rounds=bench.rounds or target.benchmark.rounds,
    )
    batch_sizes = sorted(set(bench.batch_sizes or target.input.batch_sizes))
    if any(b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be >= 1, got {batch_sizes}")
    threads, thread_note = _threads(cfg, target)
    plans = plan_rows(target, src)
    executor = executor or LocalExecutor()
    if device is None and (spec := device_spec(cfg, target)) is not None:
        from edgetl.execution.remote import executor_for

        device = executor_for(spec)
    device_rows_planned: list[Planned] = []
    if device is not None:
        from edgetl.execution.remote import device_plans

        device_rows_planned = device_plans(target, src)
        check = getattr(device, "check", None)
        if device_rows_planned and check is not None:
            check()  # a wrong key, a closed port, no python: fail now, before anything is measured or written
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    fallback = (src.preprocess or {}).get("image_size") or target.input.image_size
    settings = MeasureSettings(timing=timing, threads=threads, batch_sizes=batch_sizes,
                               eval_batch_size=bench.eval_batch_size, samples_kept=bench.keep_samples, io=src.io,
                               task=src.task, fallback_size=int(fallback))
    # the device has its own cores: the target's thread count, not capped at this host's (the executor caps it)
    device_settings = dataclasses.replace(settings, threads=bench.threads or target.benchmark.threads)
    try:
        with tempfile.TemporaryDirectory(prefix=".bench-", dir=out_dir) as work:
            eval_data: EvalData | None = None
            labels: np.ndarray | None = None
            preprocess = src.preprocess
            facts: dict[str, Any] = {"notes": []}
            if bench.accuracy:
                eval_data, preprocess, facts = _eval_data(cfg, src, data, Path(work), settings.fallback_size)
            # the device first: its failures (a missing runtime, a full disk) come before minutes of host work
            device_rows = (device.measure(device_rows_planned, device_settings, eval_data)  # type: ignore[union-attr]
                           if device_rows_planned else [])
            rows = [*executor.measure(plans, settings, eval_data), *device_rows]
            if src.model_facts:  # every artifact of a run comes from one float model: its MACs, parameters, lineage
                rows = [r.model_copy(update=src.model_facts) for r in rows]
            labels = None if eval_data is None else np.array(eval_data.labels)
            del eval_data  # release the memory maps before the temporary directory goes
    except BaseException:
        if created:  # nothing half-written: a folder this call made goes again
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    device_facts = (getattr(device, "facts", None) or None) if device is not None else None
    device_notes: list[str] = []
    if device is not None and not device_rows_planned:
        device_notes.append(f"the device was not used: {target.name} names no runtime the device runner has")
    elif device_facts:
        device_notes.append(
            f"rows measured on {device_facts.get('hostname')} ({device_facts.get('address')}): "
            f"{device_facts.get('cpu_model')}, {device_facts.get('os')}, python {device_facts.get('python')}, "
            + ", ".join(f"{k} {v}" for k, v in (device_facts.get("runtimes") or {}).items() if v))
    estimates, estimate_notes = estimate_rows(target, src, rows)
    if estimates:
        estimate_notes.insert(0, f"rows measured on 'estimate' are roofline estimates from {target.name}'s published "
                                 f"peaks, not measurements: {_band_text()}")
    rows += estimates
    # the logits behind the ROC, PR and calibration figures, beside results.json (which would grow N x classes x rows)
    scores_file = write_scores(out_dir, labels, rows) if labels is not None else None
    if scores_file is None:
        (out_dir / SCORES_NAME).unlink(missing_ok=True)  # a previous run's logits do not belong to these rows
    rows = [r.with_logits(None) if r.logits is not None else r for r in rows]  # written; the results equal the file
    hw = target.hardware
    results = BenchResults(
        target=target.name,
        target_hardware=f"{hw.cpu}; {hw.accelerator_name or hw.accelerator}",
        backbone=src.backbone,
        task=src.task,
        dataset=facts.get("dataset"),
        eval_split=facts.get("eval_split"),
        eval_split_selected_on=facts.get("eval_split_selected_on"),
        classes=facts.get("classes") or list(src.classes or []),
        preprocess=preprocess,
        source=str(source),
        host=host_facts(),
        settings=BenchSettings(warmup=timing.warmup, min_iterations=timing.min_iterations,
                               min_time_s=timing.min_time_s, rounds=timing.rounds, threads=threads,
                               batch_sizes=batch_sizes,
                               eval_batch_size=bench.eval_batch_size, memory_method=MEMORY_METHOD),
        notes=[*src.notes, *facts.get("notes", []), *([thread_note] if thread_note else []),
               *([] if host_is_target(target) else
                 [f"this host is not a {target.name}: rows marked proxy ran here as stand-ins"]),
               *device_notes, *estimate_notes],
        device_facts=device_facts,
        scores_file=scores_file,
        shipped=_shipped(target, rows, src.int8_selection) if Path(source).is_dir() else [],  # a file: no bundle
        int8_selection=src.int8_selection,
        distillation=compare_distillation(source) if Path(source).is_dir() else None,
        rows=rows,
    )
    results.write(out_dir)
    return results
