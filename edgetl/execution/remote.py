"""The SSH executor: measure the planned rows a target's device can run on that device, with its own runtime.

``SshExecutor(device).measure(plans, settings, eval_data)`` copies the models, ``device_runner.py`` and the
preprocessed evaluation inputs (``.npy``) to a fresh temporary directory on the device
(``edgetl.execution.ssh.measure_on_device``), runs every row there with the benchmark's timing rules and returns one
``BenchRow`` per plan with ``measured_on="device"``, the device's address and hostname. Accuracy, macro F1, per-class
figures and the confusion matrix are computed here, on the host, from the device's predictions, with the same
function as host rows (``edgetl.bench.measure.accuracy_metrics``).

``device_plans(target, source)`` is what a device can run: the target's own runtime specs that the runner has
(ONNX Runtime, OpenVINO) crossed with the artifacts each runs. Not the torch reference (the device has no torch)
and not the host proxies. A target runtime the runner lacks (TensorRT) is a ``skipped`` device row saying so.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.bench.results import BenchRow, LatencyStats
from edgetl.errors import DeviceError, DeviceRuntimeUnavailableError
from edgetl.execution.base import EvalData, Executor, MeasureSettings, Planned
from edgetl.execution.local import accuracy_update, base_row

if TYPE_CHECKING:
    from edgetl.bench.plan import Source
    from edgetl.execution.ssh import SshDevice
    from edgetl.targets import DeviceSpec, TargetProfile

log = logging.getLogger("edgetl.bench")

__all__ = ["RUNNER_RUNTIMES", "SshExecutor", "device_plans", "executor_for"]

RUNNER_RUNTIMES = ("onnxruntime", "openvino")  # what device_runner.py can run
_PROBE = "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())"


def device_plans(target: TargetProfile, source: Source) -> list[Planned]:
    """The rows to measure on the target's own device: its runtime specs x the artifacts each can run."""
    from edgetl.runtimes import RUNTIMES

    rows: list[Planned] = []
    for spec in target.runtimes:
        if spec.runtime == "torch":
            continue  # the float reference runs on the host; a device needs no torch
        adapter = RUNTIMES.get(spec.runtime)
        for precision in spec.precisions:
            for artifact, file in source.artifacts:
                if not adapter.runs(artifact.format, artifact.precision, precision):
                    continue
                skip = "" if spec.runtime in RUNNER_RUNTIMES else (
                    f"edgetl's device runner measures {' and '.join(RUNNER_RUNTIMES)}, not {spec.runtime}"
                    + (" (the bundle's build_engine.sh builds and times a TensorRT engine on the device)"
                       if spec.runtime == "tensorrt" else ""))
                rows.append(Planned(artifact, file, spec.runtime, spec.device, precision, proxy=False, skip=skip))
    return rows


def executor_for(spec: DeviceSpec) -> SshExecutor:
    """An ``SshExecutor`` for a target's or a build config's ``device:`` entry."""
    from edgetl.execution.ssh import SshDevice

    ssh_config = Path(spec.ssh_config).expanduser() if spec.ssh_config else None
    device = SshDevice(spec.address(), connect_timeout_s=spec.connect_timeout_s, command_timeout_s=spec.timeout_s,
                       ssh_config=ssh_config)
    return SshExecutor(device, timeout_s=spec.timeout_s)


class SshExecutor(Executor):
    """Measures rows on a device over SSH (the system OpenSSH client; see ``edgetl.execution.ssh``).

    Args:
        device: the device.
        timeout_s: wall-clock limit of the whole device run (default: the device's command timeout).
    """

    where = "device"

    def __init__(self, device: SshDevice, *, timeout_s: float | None = None) -> None:
        self.device = device
        self.timeout_s = timeout_s
        self.facts: dict[str, Any] = {}  # the device's facts after ``measure`` (hostname, CPU, versions)
        self._cores: int | None = None

    @property
    def address(self) -> str:
        return str(self.device.address)

    def check(self) -> int:
        """Log in once and ask the device's python for its cores: fails fast on a wrong key, a closed port or
        a missing interpreter, before any host row is measured. Returns the cores this login may use."""
        a = self.device.address
        done = self.device.shell(f"{shlex.quote(a.python)} -c {shlex.quote(_PROBE)}", check=False,
                                 timeout_s=max(30.0, self.device.connect_timeout_s + 20), what="probing python")
        if done.returncode in (126, 127):
            raise DeviceRuntimeUnavailableError(
                f"{a}: no Python interpreter {a.python!r} on the device ({done.stderr.strip()[-200:]})",
                hint="install python3 with numpy and the runtime on the device, or name the interpreter: "
                     "--device-python /path/to/venv/bin/python (or python: in the device entry)")
        if done.returncode != 0:
            raise self.device.error(done, "logging in")
        try:
            self._cores = max(1, int(done.stdout.decode().strip().splitlines()[-1]))
        except (ValueError, IndexError) as exc:
            raise DeviceError(f"{a}: unexpected answer from {a.python}: {done.stdout[:200]!r}") from exc
        return self._cores

    def measure(self, plans: list[Planned], settings: MeasureSettings, eval_data: EvalData | None,
                progress: Any = None) -> list[BenchRow]:
        from edgetl.execution.ssh import measure_on_device

        rows: list[BenchRow | None] = [None] * len(plans)
        todo = [i for i, plan in enumerate(plans) if not plan.skip]
        if not todo:
            return [self._skipped(plan) for plan in plans]
        cores = self._cores or self.check()
        threads = settings.threads if settings.threads is None else min(settings.threads, cores)
        files, names = self._files([plans[i] for i in todo])
        plan_rows = [self._runner_row(plans[i], names[plans[i].file], settings, threads) for i in todo]
        arrays = dict(eval_data.inputs) if eval_data is not None else None
        labels = eval_data.labels if eval_data is not None else None
        with _spinner(f"measuring {len(todo)} row(s) on {self.address}"):
            facts, results = measure_on_device(self.device, plan_rows, files, arrays, labels,
                                               eval_batch_size=settings.eval_batch_size,
                                               trim_to=eval_data.trim_to if eval_data is not None else None,
                                               timeout_s=self.timeout_s,
                                               on_missing_runtime="skip")
        self.facts = {**facts, "address": self.address, "cores_used": cores}
        self._raise_if_nothing_ran(facts, results)
        for i, result in zip(todo, results, strict=True):
            note = ("" if settings.threads is None or threads == settings.threads
                    else f"threads capped at the device's {cores} cores (asked for {settings.threads})")
            rows[i] = to_bench_row(plans[i], result, facts, eval_data, note=note)
        return [row if row is not None else self._skipped(plan) for row, plan in zip(rows, plans, strict=True)]

    # ------------------------------------------------------------------------------------------ helpers
    def _skipped(self, plan: Planned) -> BenchRow:
        return base_row(plan, "device").model_copy(update={
            "status": "skipped", "reason": plan.skip, "proxy": False, "device_address": self.address,
            "device_hostname": self.facts.get("hostname") or None})

    @staticmethod
    def _files(plans: list[Planned]) -> tuple[dict[str, Path], dict[Path, str]]:
        """Remote name of each model file (one copy per file, names unique and flat)."""
        files: dict[str, Path] = {}
        names: dict[Path, str] = {}
        for plan in plans:
            if plan.file in names:
                continue
            name = f"{len(names)}-{plan.file.name}"
            files[name] = plan.file
            names[plan.file] = name
        return files, names

    @staticmethod
    def _runner_row(plan: Planned, model: str, settings: MeasureSettings, threads: int | None) -> dict[str, Any]:
        t = settings.timing
        row: dict[str, Any] = {
            "id": f"{plan.artifact.name}@{plan.runtime}:{plan.device}:{plan.precision}", "model": model,
            "runtime": plan.runtime, "device": plan.device, "precision": plan.precision, "threads": threads,
            "latency_batch": 1, "batch_sizes": list(settings.batch_sizes), "warmup": t.warmup,
            "min_iterations": t.min_iterations, "min_time_s": t.min_time_s, "keep_samples": settings.samples_kept,
        }
        if t.rounds > 1:  # the runner's default is one round
            row["rounds"] = t.rounds
        if settings.io is not None:  # fixed non-batch dimensions: the runner replaces a dynamic batch itself
            shapes = {}
            for spec in settings.io.inputs:
                if all(d is not None for d in spec.shape[1:]):
                    shapes[spec.name] = [1 if d is None else int(d) for d in spec.shape]
            row["input_shapes"] = shapes
        return row

    def _raise_if_nothing_ran(self, facts: dict[str, Any], results: list[dict[str, Any]]) -> None:
        """Every row skipped for a missing library: the device cannot measure anything; say how to install it."""
        from edgetl.execution.device_runner import INSTALL_HINTS

        missing = ["numpy"] if facts.get("numpy") is None else []
        missing += [name for name, version in (facts.get("runtimes") or {}).items() if version is None]
        if not missing or any(r.get("status") != "skipped" for r in results):
            return
        a = self.device.address
        commands = "; ".join(f"{a.python} -m {INSTALL_HINTS[m]}" for m in missing if m in INSTALL_HINTS)
        raise DeviceRuntimeUnavailableError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed on the device {a} "
            f"(python {facts.get('python', '?')} at {facts.get('python_executable', a.python)})",
            hint=f"on {a.destination}: {commands}; or point --device-python at a venv that has them")


def to_bench_row(plan: Planned, result: dict[str, Any], facts: dict[str, Any], eval_data: EvalData | None,
                 note: str = "") -> BenchRow:
    """One runner result (``device_runner``'s row schema, labelled by ``measure_on_device``) as a ``BenchRow``."""
    from edgetl.bench.measure import rounds_from_medians

    row = base_row(plan, "device").model_copy(update={
        "proxy": False, "device_address": result.get("device_address") or None,
        "device_hostname": result.get("device_hostname") or facts.get("hostname") or None})
    status = result.get("status")
    if status != "ok":
        return row.model_copy(update={"status": "failed" if status == "failed" else "skipped",
                                      "reason": str(result.get("reason") or "no result from the device")})
    settings = {**(result.get("settings") or {}), "latency_batch": result.get("latency_batch", 1),
                "runtime_version": result.get("runtime_version", ""),
                "memory_source": result.get("memory_source", "")}
    where = " ".join(filter(None, [facts.get("hostname"), f"({facts['cpu_model']})" if facts.get("cpu_model") else ""]))
    stats = LatencyStats.model_validate(result["latency_ms"])
    medians = result.get("latency_rounds_ms") or [stats.p50]
    rounds = rounds_from_medians(medians, interleaved=False)  # each row's rounds run back to back in its process
    update: dict[str, Any] = {
        "latency_ms": stats.model_copy(update={"p50": rounds.p50}), "latency_rounds": rounds,
        "latency_samples_ms": list(result.get("latency_samples_ms") or []),
        "throughput": dict(result.get("throughput") or {}), "cold_start_ms": result.get("cold_start_ms"),
        "peak_memory_mb": result.get("peak_memory_mb"), "threads": result.get("threads"), "settings": settings,
        "note": "; ".join(filter(None, [plan.note, f"measured on the device {where}".strip(), note])),
    }
    predictions = result.get("predictions")
    if eval_data is None or predictions is None:
        return row.model_copy(update=update)
    preds = np.asarray(predictions, dtype=np.int64)
    if len(preds) != len(eval_data):
        raise DeviceError(f"the device returned {len(preds)} predictions for {len(eval_data)} evaluation inputs")
    raw = result.get("logits")  # a runner of an older edgetl returns the predictions only
    logits = None if raw is None else np.asarray(raw, dtype=np.float32)
    if logits is not None and (logits.ndim != 2 or len(logits) != len(eval_data)):
        raise DeviceError(f"the device returned logits of shape {logits.shape} for {len(eval_data)} evaluation inputs")
    row = row.model_copy(update={**update, **accuracy_update(eval_data, logits, preds)})
    return row if logits is None else row.with_logits(logits)


class _spinner:
    """A transient status line while the device works (the runner reports nothing until it is done)."""

    def __init__(self, text: str) -> None:
        from rich.console import Console

        self._status = Console(stderr=True).status(text)

    def __enter__(self) -> None:
        self._status.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._status.__exit__(None, None, None)

