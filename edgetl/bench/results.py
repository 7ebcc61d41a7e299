"""The ``results.json`` schema (version 1): what ``edgetl bench`` writes and ``report``, the gate, the budgets and
the bundle read. Every field is documented in ``docs/results-schema.md``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgetl import __version__
from edgetl.errors import ModelFileError
from edgetl.fsutil import read_json, write_json

RESULTS_NAME = "results.json"
RESULTS_SCHEMA = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyStats(_Model):
    """Batch-1 latency of one row, in milliseconds, over ``iterations`` timed runs after the warm-up."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    iterations: int


class ClassMetrics(_Model):
    precision: float
    recall: float
    f1: float
    support: int


class LatencyEstimate(_Model):
    """A model-based latency figure for a row no machine measured (``measured_on: "estimate"``)."""

    latency_ms: float  # the roofline estimate of one batch-1 inference
    low_ms: float  # the real latency the validated band allows: estimate / band max ...
    high_ms: float  # ... to estimate / band min
    band: tuple[float, float]  # estimate/measured, min and max, as validated on the build host
    band_source: str  # where the band was measured
    method: str  # how the estimate was made (model file, precisions)
    peaks: dict[str, Any] = Field(default_factory=dict)  # the device peaks used, each labelled with its source
    macs: int | None = None
    bytes: int | None = None
    time_by_bound_ms: dict[str, float] = Field(default_factory=dict)  # compute- vs memory-bound share


class BenchRow(_Model):
    """One artifact on one runtime/device at one precision."""

    name: str  # artifact name, e.g. "onnx-int8-qat"; "torch-fp32" for the checkpoint
    format: Literal["torch", "onnx", "openvino", "tensorrt"]
    precision: Literal["fp32", "fp16", "bf16", "int8"]
    source: str  # fp32 | qat | ptq | file
    runtime: str
    device: str
    proxy: bool = False  # measured on this host standing in for the target's device
    # where the figures were measured: this host, the target device itself, or a model-based estimate
    measured_on: Literal["host", "device", "estimate"] = "host"
    device_address: str | None = None  # measured_on "device": the ssh:// address the row ran on
    device_hostname: str | None = None  # measured_on "device": the device's own hostname
    status: Literal["ok", "skipped", "failed"]
    reason: str = ""  # why skipped or failed
    note: str = ""  # context for an ok row, e.g. "host proxy for tensorrt:gpu"
    path: str = ""  # model file, relative to the source
    accuracy: float | None = None  # top-1 on the evaluation split, 0..1
    macro_f1: float | None = None
    per_class: dict[str, ClassMetrics] | None = None
    confusion_matrix: list[list[int]] | None = None  # rows: true class, columns: predicted (classes order)
    eval_images: int | None = None
    latency_ms: LatencyStats | None = None
    latency_samples_ms: list[float] = Field(default_factory=list)  # at most bench.keep_samples, for plots
    throughput: dict[str, float | None] = Field(default_factory=dict)  # batch size -> images/s (None: unsupported)
    cold_start_ms: float | None = None  # load (read + compile) + first batch-1 inference
    peak_memory_mb: float | None = None  # peak RSS increase over RSS before load (see memory_method)
    size_bytes: int | None = None  # on disk (OpenVINO: .xml + .bin)
    threads: int | None = None  # threads the runtime used (None: its default, not reported)
    int8_ops: int | None = None  # from the export manifest
    float_ops: int | None = None  # convs/matmuls the runtime runs in float (export manifest)
    parity: dict[str, Any] | None = None  # the export stage's parity figures for this artifact (parity.json)
    # the float model every artifact of the run was exported from (its model card): int8 keeps its MACs
    macs: int | None = None  # multiply-accumulates of one sample's forward pass
    params: int | None = None
    float_source: str | None = None  # "STAGE:NAME" of that float model: "train:fp32", "prune:pruned"
    float_method: str | None = None  # how it was made: "finetune", "distill", "prune"
    settings: dict[str, Any] = Field(default_factory=dict)  # runtime options that change the figures
    # measured_on "estimate": the roofline latency and its error band (latency_ms stays null: nothing was timed)
    estimate: LatencyEstimate | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """How the gate matches a row between two results files (a device row never matches a host row)."""
        return (self.name, self.runtime, self.device, self.precision, self.measured_on)

    @property
    def where(self) -> str:
        """Where the figures come from, for tables: ``host``, the device's hostname, or ``estimate``."""
        if self.measured_on == "device":
            return self.device_hostname or self.device_address or "device"
        return self.measured_on

    @property
    def label(self) -> str:
        where = {"host": "", "device": f" on {self.where}", "estimate": " (estimate)"}[self.measured_on]
        return f"{self.name} @ {self.runtime}:{self.device}" + (" (proxy)" if self.proxy else "") + where


class BenchSettings(_Model):
    warmup: int
    min_iterations: int
    min_time_s: float
    threads: int | None
    batch_sizes: list[int]
    eval_batch_size: int
    memory_method: str


class BenchResults(_Model):
    schema_version: int = RESULTS_SCHEMA
    target: str
    target_hardware: str = ""  # the target's CPU/accelerator description, for proxy rows
    backbone: str | None = None
    dataset: str | None = None
    eval_split: str | None = None
    # true: eval_split is val, the split fine-tuning and QAT kept their best epochs on, so its accuracies are
    # optimistic (the data came with train/ and val/ only); false: held out from all selection; null: not known
    eval_split_selected_on: bool | None = None
    classes: list[str] = Field(default_factory=list)
    preprocess: dict[str, Any] | None = None
    source: str  # the run directory or model file benchmarked
    host: dict[str, Any] = Field(default_factory=dict)
    settings: BenchSettings
    edgetl_version: str = __version__
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    notes: list[str] = Field(default_factory=list)  # caveats a reader must see (assumed preprocessing, proxies)
    # the device the "device" rows ran on (hostname, CPU, OS, python and runtime versions), null without one
    device_facts: dict[str, Any] | None = None
    # the artifacts a bundle for this target carries (edgetl.stages.bundle.pick_artifacts), its primary model first
    shipped: list[str] = Field(default_factory=list)
    rows: list[BenchRow] = Field(default_factory=list)

    def write(self, out_dir: str | Path) -> Path:
        return write_json(Path(out_dir) / RESULTS_NAME, self.model_dump(mode="json"))

    def ok_rows(self) -> list[BenchRow]:
        return [r for r in self.rows if r.status == "ok"]


def load_results(path: str | Path) -> BenchResults:
    """Read and validate a results file; ``ModelFileError`` when it is missing, corrupt or of another schema."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_NAME
    if not p.is_file():
        raise ModelFileError(f"results file {p} does not exist", hint="run `edgetl bench` first")
    try:
        data = read_json(p)
    except ValueError as exc:
        raise ModelFileError(f"results file {p} is not valid JSON: {exc}") from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != RESULTS_SCHEMA:
        raise ModelFileError(f"results file {p} has schema_version {version!r}; this edgetl reads {RESULTS_SCHEMA}",
                             hint="re-run `edgetl bench` with this edgetl version")
    from pydantic import ValidationError

    try:
        return BenchResults.model_validate(data)
    except ValidationError as exc:  # one line per field, as for a config file (the first ten)
        from edgetl.targets import format_validation_error

        lines = format_validation_error(p, exc).splitlines()
        more = [f"... and {len(lines) - 10} more"] if len(lines) > 10 else []
        raise ModelFileError(f"results file {p} does not match schema {RESULTS_SCHEMA}:\n  "
                             + "\n  ".join(lines[:10] + more),
                             hint="pass a results.json written by `edgetl bench` of this edgetl version") from exc
