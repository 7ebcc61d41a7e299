"""``edgetl bench``: latency, throughput, memory and accuracy of every artifact on every runtime this host has.

The rows are the target's runtime specs crossed with the exported artifacts each can run. What this host lacks is
a ``skipped`` row with its reason; a failure while running is a ``failed`` row. When the target's device is not
this host (a Jetson, an NPU), the host's ONNX Runtime CPU and OpenVINO CPU run the same artifacts as labelled
proxies (``proxy: true``): useful for comparing artifacts, never a claim about the device.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.config import BuildConfig
from edgetl.errors import ConfigError, DataError, ModelFileError
from edgetl.manifest import Artifact, read_manifest
from edgetl.bench.measure import (
    MEMORY_METHOD,
    PeakRss,
    TimingPlan,
    accuracy_metrics,
    keep_samples,
    latency_stats,
    predict_all,
    throughput,
    timed_runs,
)
from edgetl.bench.results import BenchResults, BenchRow, BenchSettings
from edgetl.targets import RUNTIME_DEVICES, TargetProfile

log = logging.getLogger("edgetl.bench")

RUNTIME_FORMAT = {"onnxruntime": "onnx", "tensorrt": "onnx", "openvino": "openvino", "torch": "torch"}
# runtimes that can run an fp32 model at a lower float precision (a compile-time hint or autocast)
REDUCES_PRECISION = {"openvino", "tensorrt", "torch"}
HOST_PROXIES = (("onnxruntime", "cpu"), ("openvino", "CPU"))
# assumed for a model file that does not state its preprocessing (the torchvision/timm default)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Planned:
    """A row to measure (or to record as skipped)."""

    artifact: Artifact
    file: Path
    runtime: str
    device: str
    precision: str
    proxy: bool
    note: str = ""
    skip: str = ""


@dataclass
class EvalData:
    images: np.ndarray  # N x C x H x W float32 (a memory map)
    labels: np.ndarray
    classes: list[str]


@dataclass
class Source:
    """What is being benchmarked: artifacts plus what the run says about data and preprocessing."""

    path: Path
    artifacts: list[tuple[Artifact, Path]]
    from_run: bool
    backbone: str | None = None
    classes: list[str] | None = None
    preprocess: dict[str, Any] | None = None
    split_file: Path | None = None
    notes: list[str] = field(default_factory=list)


# -------------------------------------------------------------------------------------------------- sources
def _ov_size(xml: Path) -> int:
    return xml.stat().st_size + (xml.with_suffix(".bin").stat().st_size if xml.with_suffix(".bin").is_file() else 0)


def _guess_precision(path: Path, fmt: str, meta: dict[str, str]) -> str:
    """int8 when the graph holds quantization ops, else fp16 when its weights are fp16, else fp32."""
    stated = meta.get("precision") or meta.get("edgetl.precision") or meta.get("framework.precision")
    if stated in ("fp32", "fp16", "bf16", "int8"):
        return stated
    if fmt == "onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        ops = {n.op_type for n in model.graph.node}
        if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger"}:
            return "int8"
        if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
            return "fp16"
        return "fp32"
    import openvino

    model = openvino.Core().read_model(str(path))
    if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
        return "int8"
    constants = [op for op in model.get_ops() if op.get_type_name() == "Constant"]
    if any(str(op.get_output_element_type(0)) in ("i8", "u8") for op in constants):
        return "int8"
    return "fp32"


def _file_source(path: Path) -> Source:
    from edgetl.runtimes import model_format
    from edgetl.runtimes.base import check_onnx_file, check_openvino_files, short_error
    from edgetl.runtimes.metadata import model_classes, model_preprocess, read_metadata

    fmt = model_format(path)
    if fmt == "torch":
        raise ModelFileError(f"{path}: benchmark a torch checkpoint through its run directory",
                             hint="pass the run directory (OUT/) or an exported .onnx / .xml file")
    (check_onnx_file if fmt == "onnx" else check_openvino_files)(path)
    try:
        meta = read_metadata(path)
        precision = _guess_precision(path, fmt, meta)
    except RuntimeError as exc:  # openvino read_model: unreadable XML or weights
        raise ModelFileError(f"{path} is not a readable OpenVINO IR (corrupt or truncated): {short_error(exc)}",
                             hint="re-export it; the .xml and .bin must come from one export") from exc
    size = path.stat().st_size if fmt == "onnx" else _ov_size(path)
    artifact = Artifact(name=path.stem, format=fmt, precision=precision, source="file", path=path.name,
                        size_bytes=size)
    source = Source(path=path, artifacts=[(artifact, path)], from_run=False, classes=model_classes(meta),
                    preprocess=model_preprocess(meta))
    source.backbone = meta.get("backbone") or meta.get("framework.backbone") or meta.get("edgetl.backbone")
    return source


def _run_source(path: Path) -> Source:
    run_dir = path.parent if (path / "manifest.json").is_file() and not (path / "export").is_dir() else path
    export_dir, train_dir = run_dir / "export", run_dir / "train"
    export = read_manifest(export_dir)
    bad = export.verify_outputs(export_dir)
    if bad:
        raise ModelFileError(f"{export_dir}: {', '.join(bad)} missing or not matching the sha256 in its manifest "
                             "(modified, truncated or corrupt)", hint="rerun `edgetl export` (or `edgetl build`)")
    artifacts = []
    for entry in export.info.get("artifacts", []):
        artifact = Artifact.model_validate(entry)
        artifacts.append((artifact, export_dir / artifact.path))
    source = Source(path=run_dir, artifacts=artifacts, from_run=True)
    if (train_dir / "manifest.json").is_file():
        train = read_manifest(train_dir)
        source.backbone = train.info.get("backbone")
        source.classes = train.info.get("classes")
        source.preprocess = train.info.get("preprocess")
        checkpoint = train_dir / "model.pt"
        if checkpoint.is_file():
            torch_artifact = Artifact(name="torch-fp32", format="torch", precision="fp32", source="fp32",
                                      path="../train/model.pt", size_bytes=checkpoint.stat().st_size)
            source.artifacts.insert(0, (torch_artifact, checkpoint))
        if (train_dir / "split.json").is_file():
            source.split_file = train_dir / "split.json"
    return source


def open_source(path: str | Path) -> Source:
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p} does not exist", hint="pass a run directory (OUT/) or an .onnx / .xml file")
    return _run_source(p) if p.is_dir() else _file_source(p)


# ------------------------------------------------------------------------------------------------- planning
def host_is_target(target: TargetProfile) -> bool:
    """True when this machine is an instance of the target (a generic x86-64 CPU profile on an x86-64 host)."""
    return target.is_host_cpu and platform.machine().lower() in ("x86_64", "amd64")


def _runs(artifact: Artifact, runtime: str, precision: str) -> bool:
    if artifact.format != RUNTIME_FORMAT[runtime]:
        return False
    if artifact.precision == precision:
        return True
    return precision in ("bf16", "fp16") and artifact.precision == "fp32" and runtime in REDUCES_PRECISION


def plan_rows(target: TargetProfile, source: Source) -> list[Planned]:
    """Every (artifact, runtime, device, precision) row: the target's specs, then host proxies where needed."""
    from edgetl.runtimes import RUNTIMES

    on_target = host_is_target(target)
    rows: list[Planned] = []
    unavailable: list[str] = []
    for spec in target.runtimes:
        ok, why = RUNTIMES.get(spec.runtime).available(spec.device)
        if not ok:
            unavailable.append(spec.label)
        for precision in spec.precisions:
            matches = [(a, f) for a, f in source.artifacts if _runs(a, spec.runtime, precision)]
            fmt = RUNTIME_FORMAT[spec.runtime]
            if not matches and source.from_run and (fmt != "torch" or precision != "fp32"):
                produced = ", ".join(a.name for a, _ in source.artifacts) or "none"
                placeholder = Artifact(name=f"{fmt}-{precision}", format=fmt, precision=precision, source="-",
                                       path="", size_bytes=0)
                rows.append(Planned(placeholder, Path(), spec.runtime, spec.device, precision, False,
                                    skip=f"no {precision} {fmt} artifact was exported (artifacts: {produced})"))
            for artifact, file in matches:
                stand_in = ok and not on_target  # runs here, on a machine that is not the target
                rows.append(Planned(artifact, file, spec.runtime, spec.device, precision, proxy=stand_in,
                                    note=f"host stand-in for {target.name}'s {spec.label}" if stand_in else "",
                                    skip="" if ok else f"not on this host: {why}"))
    planned = {(p.artifact.name, p.runtime, p.device, p.precision) for p in rows}
    if unavailable or not rows or all(p.skip for p in rows):
        for runtime, device in HOST_PROXIES:
            runnable = RUNTIME_DEVICES[runtime][device]
            for artifact, file in source.artifacts:
                key = (artifact.name, runtime, device, artifact.precision)
                if artifact.precision in runnable and _runs(artifact, runtime, artifact.precision) and key not in planned:
                    rows.append(Planned(artifact, file, runtime, device, artifact.precision, proxy=True,
                                        note=f"host proxy for {', '.join(unavailable) or target.name}"))
                    planned.add(key)
    # the fine-tuned checkpoint is the reference every artifact is compared with
    for artifact, file in source.artifacts:
        if artifact.format == "torch" and not any(p.runtime == "torch" for p in rows):
            rows.append(Planned(artifact, file, "torch", "cpu", "fp32", proxy=not on_target,
                                note="reference: the fine-tuned checkpoint in eager PyTorch"))
    return rows


# ------------------------------------------------------------------------------------------------- eval data
def _eval_data(cfg: BuildConfig, target: TargetProfile, source: Source, data: str | None,
               workdir: Path) -> tuple[EvalData | None, dict[str, Any] | None, dict[str, Any]]:
    """(eval images, the preprocessing used, facts for the results header); images None when there is no data."""
    from edgetl.data import Preprocess, read_split, resolve_dataset

    facts: dict[str, Any] = {"notes": []}
    if data is not None:
        index = resolve_dataset(cfg.data.model_copy(update={"path": data}))
    elif source.split_file is not None:
        index = read_split(source.split_file)
    else:
        facts["notes"].append("no evaluation data (pass --data PATH for accuracy): latency only")
        return None, source.preprocess, facts
    if source.classes and list(source.classes) != list(index.classes):
        raise DataError(f"the model's classes {source.classes} are not the data set's {index.classes}",
                        hint="pass the data set the model was trained on (same class folders)")
    if source.preprocess is not None:
        pp = Preprocess.model_validate(source.preprocess)
    else:
        size = cfg.train.image_size or target.input.image_size
        pp = Preprocess.make(size, cfg.data.crop_pct, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
        facts["notes"].append(f"the model carries no preprocessing metadata: assumed ImageNet mean/std, "
                              f"{size}px, crop {cfg.data.crop_pct}")
    split = index.eval_split
    samples = index.splits.get(split) or []
    if not samples:
        raise DataError(f"{index.source}: the {split} split is empty", hint="add images to val/ or test/")
    facts.update(dataset=index.source, eval_split=split, classes=index.classes)
    images = _preprocess_to_memmap(samples, pp, workdir / "eval.npy")
    labels = np.asarray([label for _, label in samples], dtype=np.int64)
    return EvalData(images, labels, list(index.classes)), pp.model_dump(mode="json"), facts


def _preprocess_to_memmap(samples: list[tuple[str, int]], pp: Any, path: Path) -> np.ndarray:
    """Preprocess every evaluation image once (``preprocess_image``) into a disk-backed array."""
    from rich.progress import Progress

    from edgetl.data import open_sample, preprocess_image

    shape = (len(samples), 3, pp.image_size, pp.image_size)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"preprocessing {len(samples)} evaluation images", total=len(samples))
        for i, (ref, _) in enumerate(samples):
            array[i] = preprocess_image(open_sample(ref), pp)
            progress.advance(task)
    array.flush()
    return array


# ---------------------------------------------------------------------------------------------- measuring
def _threads(cfg: BuildConfig, target: TargetProfile) -> tuple[int | None, str]:
    wanted = cfg.bench.threads or target.benchmark.threads
    cores = os.cpu_count() or 1
    if wanted is not None and wanted > cores:
        return cores, f"threads capped at this host's {cores} cores (the target asks for {wanted})"
    return wanted, ""


def _input_size(session: Any, eval_data: EvalData | None, target: TargetProfile) -> tuple[int, int, int]:
    shape = tuple(session.input_shape)
    c = shape[1] if len(shape) > 1 and shape[1] else 3
    if len(shape) == 4 and shape[2] and shape[3]:
        return int(c), int(shape[2]), int(shape[3])
    if eval_data is not None:
        return int(c), int(eval_data.images.shape[2]), int(eval_data.images.shape[3])
    return int(c), target.input.image_size, target.input.image_size


def measure_row(plan: Planned, *, threads: int | None, timing: TimingPlan, batch_sizes: list[int],
                eval_data: EvalData | None, eval_batch_size: int, samples_kept: int, target: TargetProfile,
                progress: Any = None) -> BenchRow:
    """Load, time and evaluate one row. ``ModelFileError`` propagates; any other failure is a failed row."""
    import time

    from edgetl.runtimes import RUNTIMES

    a = plan.artifact
    row = BenchRow(name=a.name, format=a.format, precision=plan.precision, source=a.source,  # type: ignore[arg-type]
                   runtime=plan.runtime, device=plan.device, proxy=plan.proxy, status="ok", note=plan.note,
                   path=a.path, size_bytes=a.size_bytes or None, int8_ops=a.int8_ops,
                   float_ops=a.float_ops, parity=a.parity or None)
    if plan.skip:
        return row.model_copy(update={"status": "skipped", "reason": plan.skip})
    runtime = RUNTIMES.get(plan.runtime)
    ok, why = runtime.available(plan.device)  # also imports the library, so its import is not counted as memory
    if not ok:
        return row.model_copy(update={"status": "skipped", "reason": f"not on this host: {why}"})
    session = None
    try:
        rng = np.random.default_rng(0)
        with PeakRss() as memory:
            t0 = time.perf_counter_ns()
            session = runtime.load(plan.file, plan.device, plan.precision, threads)
            c, h, w = _input_size(session, eval_data, target)
            lat_batch = session.fixed_batch or 1
            x = rng.standard_normal((lat_batch, c, h, w), dtype=np.float32)
            session.run(x)
            cold_ms = (time.perf_counter_ns() - t0) / 1e6
            batches = {b: rng.standard_normal((b, c, h, w), dtype=np.float32)
                       for b in batch_sizes if b != lat_batch and session.fixed_batch is None}
            for batch in batches.values():
                session.run(batch)
        samples = timed_runs(lambda: session.run(x), timing)
        stats = latency_stats(samples)
        rates: dict[str, float | None] = {str(lat_batch): round(lat_batch * 1000.0 / stats.mean, 2)}
        for b in batch_sizes:
            if b == lat_batch:
                continue
            rates[str(b)] = throughput(session, batches[b], timing) if b in batches else None
        update: dict[str, Any] = {
            "latency_ms": stats, "latency_samples_ms": keep_samples(samples, samples_kept), "throughput": rates,
            "cold_start_ms": round(cold_ms, 2), "peak_memory_mb": memory.peak_mb, "threads": session.threads,
            "settings": {**session.settings, "latency_batch": lat_batch},
        }
        if session.fixed_batch is not None and len(batch_sizes) > 1:
            update["note"] = "; ".join(filter(None, [plan.note, f"the model's batch is fixed at {lat_batch}"]))
        if eval_data is not None:
            update.update(_accuracy(session, eval_data, eval_batch_size, progress))
        return row.model_copy(update=update)
    except ModelFileError:
        raise
    except Exception as exc:  # any runtime error becomes a failed row with its reason; the others still run
        from edgetl.runtimes.base import short_error

        log.debug("%s failed", row.label, exc_info=True)
        return row.model_copy(update={"status": "failed", "reason": f"{type(exc).__name__}: {short_error(exc)}"})
    finally:
        if session is not None:
            session.close()


def _accuracy(session: Any, data: EvalData, batch_size: int, progress: Any) -> dict[str, Any]:
    task = progress.add_task("  accuracy", total=len(data.labels)) if progress is not None else None

    def advance(n: int) -> None:
        if task is not None:
            progress.advance(task, n)

    try:
        preds = predict_all(session, data.images, batch_size, advance)
    finally:
        if task is not None:
            progress.remove_task(task)
    m = accuracy_metrics(data.labels, preds, data.classes)
    return {"accuracy": m.accuracy, "macro_f1": m.macro_f1, "per_class": m.per_class,
            "confusion_matrix": m.confusion_matrix, "eval_images": m.n}


# ------------------------------------------------------------------------------------------------ the stage
def benchmark(cfg: BuildConfig, target: TargetProfile, source: Path, out_dir: Path,
              *, data: str | None = None) -> BenchResults:
    """Measure every artifact of ``source`` (a run directory or one .onnx/.xml file) and write ``results.json``.

    Args:
        cfg: the build config; ``cfg.bench`` overrides the target's benchmark settings.
        target: the target profile whose runtimes and batch sizes are measured.
        source: a run directory (reads ``export/manifest.json``, ``train/``) or a single model file.
        out_dir: where ``results.json`` is written.
        data: an ImageFolder root (or built-in name) for accuracy; by default the run's recorded split.

    Returns:
        The results, as written to ``out_dir/results.json``.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-", dir=out_dir) as work:
        eval_data: EvalData | None = None
        preprocess = src.preprocess
        facts: dict[str, Any] = {"notes": []}
        if bench.accuracy:
            eval_data, preprocess, facts = _eval_data(cfg, target, src, data, Path(work))
        rows: list[BenchRow] = []
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn())
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("benchmarking", total=len(plans))
            for plan in plans:
                progress.update(task, description=f"{plan.artifact.name} @ {plan.runtime}:{plan.device} "
                                                  f"{plan.precision}")
                rows.append(measure_row(plan, threads=threads, timing=timing, batch_sizes=batch_sizes,
                                        eval_data=eval_data, eval_batch_size=bench.eval_batch_size,
                                        samples_kept=bench.keep_samples, target=target, progress=progress))
                progress.advance(task)
        del eval_data  # release the memory map before the temporary directory goes
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
