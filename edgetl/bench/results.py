"""The ``results.json`` schema (version 1): what ``edgetl bench`` writes and ``report``, the gate, the budgets and
the bundle read. Every field is documented in ``docs/results-schema.md``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from edgetl import __version__
from edgetl.errors import ModelFileError
from edgetl.fsutil import read_json, write_json

RESULTS_NAME = "results.json"
SCORES_NAME = "scores.npz"  # the evaluation logits of every row, beside results.json (see write_scores)
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


class LatencyRounds(_Model):
    """The row's timing repeated in rounds: each round's median, and their median with its spread.

    ``[low, high]`` (the fastest and slowest round median) is a distribution-free confidence interval for the
    median round: it misses it only when every round falls on one side, with probability ``2 * 0.5**rounds``, so
    its ``confidence`` is ``1 - 2**(1 - rounds)`` (93.75 % for 5 rounds). The gate compares these intervals.
    """

    rounds: int
    p50: float  # median of the round medians (the row's latency_ms.p50)
    low: float  # fastest round median
    high: float  # slowest round median
    round_p50s: list[float]  # each round's median, in the order measured
    confidence: float  # 1 - 2**(1 - rounds): coverage of [low, high] for the median round (0 for one round)
    interleaved: bool  # the rounds alternated with the other rows' (host); false: back to back (device runner)

    @property
    def noise_pct(self) -> float:
        """Half the min-max spread of the round medians, in percent of their median (``±noise_pct``)."""
        return (self.high - self.low) / (2 * self.p50) * 100.0 if self.p50 > 0 else 0.0


class ClassMetrics(_Model):
    precision: float
    recall: float
    f1: float
    support: int
    roc_auc: float | None = None  # one-vs-rest on the class's softmax probability (None: no logits, or one-sided)
    average_precision: float | None = None  # the area under that class's precision-recall curve (step-wise)


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
    roc_auc: float | None = None  # mean of the per-class one-vs-rest ROC AUCs (from the logits)
    average_precision: float | None = None  # mean of the per-class average precisions
    ece: float | None = None  # expected calibration error of the softmax, ECE_BINS equal-width bins
    latency_ms: LatencyStats | None = None
    # the timing rounds behind latency_ms.p50 (None in files written before rounds: one round)
    latency_rounds: LatencyRounds | None = None
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
    # the evaluation pass's logits (N x classes), carried to the stage that writes scores.npz, never to results.json
    _logits: Any = PrivateAttr(default=None)

    @property
    def logits(self) -> Any:
        """The logits of the evaluation pass (a NumPy array), when this row was evaluated in this process."""
        return self._logits

    def with_logits(self, logits: Any) -> BenchRow:
        """This row carrying ``logits`` (for ``write_scores``)."""
        row = self.model_copy()
        row._logits = logits
        return row

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
    def where_label(self) -> str:
        """``where`` that says which kind it is: ``host``, ``device HOSTNAME``, ``estimate`` (console tables)."""
        return f"device {self.where}" if self.measured_on == "device" else self.measured_on

    @property
    def label(self) -> str:
        where = {"host": "", "device": f" on {self.where}", "estimate": " (estimate)"}[self.measured_on]
        return f"{self.name} @ {self.runtime}:{self.device}" + (" (proxy)" if self.proxy else "") + where


class ComparedModel(_Model):
    """One model of the distillation comparison, with its torch fp32 top-1 on the comparison's evaluation split."""

    source: str  # "STAGE:NAME" of its artifact: "train:fp32" (distilled), "student_alone:fp32", the teacher's
    backbone: str | None = None
    path: str | None = None  # the teacher: the run (or stage) directory it was read from
    accuracy: float | None = None  # top-1 on DistillationComparison.eval_split, 0..1 (None: not measured)
    eval_images: int | None = None
    macs: int | None = None
    params: int | None = None
    wall_time_s: float | None = None  # the students: training time (the distilled one's includes teacher passes)
    # the teacher: the figure its own run states, on its own split (other images than the comparison's, maybe)
    card_eval_split: str | None = None
    card_accuracy: float | None = None


class DistillationComparison(_Model):
    """What distillation bought (``train.teacher``): the teacher, the distilled student and the same student trained
    alone (stage ``student_alone``: same config, split, seed and recipe, cross-entropy only), all on one split."""

    eval_split: str  # the split every accuracy below is on: the student's test split, else its val
    eval_images: int
    temperature: float
    alpha: float  # weight of the distillation term
    teacher: ComparedModel
    distilled: ComparedModel
    student_alone: ComparedModel | None = None  # None: not trained (see notes)
    gain_points: float | None = None  # 100 * (distilled - student_alone) accuracy, percentage points
    # how many of the eval_split samples the teacher was trained on (its split.json; None: unknown): a teacher that
    # saw them reads high and passes what it memorised to the distilled student
    teacher_trained_on_eval: int | None = None
    notes: list[str] = Field(default_factory=list)


class BenchSettings(_Model):
    warmup: int
    min_iterations: int
    min_time_s: float
    rounds: int = 1  # timing rounds per row (files written before rounds: 1)
    threads: int | None
    batch_sizes: list[int]
    eval_batch_size: int
    memory_method: str


class BenchResults(_Model):
    schema_version: int = RESULTS_SCHEMA
    target: str
    target_hardware: str = ""  # the target's CPU/accelerator description, for proxy rows
    backbone: str | None = None
    task: str | None = None  # the task registry name of the models (edgetl.tasks), null where not known
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
    scores_file: str | None = None  # the evaluation logits of the rows (SCORES_NAME), relative to this file
    # the artifacts a bundle for this target carries (edgetl.stages.bundle.pick_artifacts), its primary model first
    shipped: list[str] = Field(default_factory=list)
    # the split the int8 route of the bundle was chosen on and each route's top-1 there, as the build recorded it
    # ({"split": "val", "accuracy": {"ptq": .., "qat": ..}}); null for a bare model file (chosen on the rows)
    int8_selection: dict[str, Any] | None = None
    # a build with a teacher: the teacher, the distilled student and the student alone on one split; else null
    distillation: DistillationComparison | None = None
    rows: list[BenchRow] = Field(default_factory=list)

    def write(self, out_dir: str | Path) -> Path:
        return write_json(Path(out_dir) / RESULTS_NAME, self.model_dump(mode="json"))

    def ok_rows(self) -> list[BenchRow]:
        return [r for r in self.rows if r.status == "ok"]


def row_id(row: BenchRow) -> str:
    """A row's key (``BenchRow.key``) as one string: how ``scores.npz`` names its rows."""
    return "|".join(row.key)


def write_scores(out_dir: str | Path, labels: Any, rows: list[BenchRow]) -> str | None:
    """Write the logits of every row that has them to ``out_dir/scores.npz`` (atomically); its name, or None.

    One compressed NumPy archive: ``labels`` (N,) int64, ``rows`` (M,) str (``row_id``) and ``logits`` (M, N, C)
    float32, row ``i`` of ``logits`` belonging to ``rows[i]``. Every row was evaluated on the same samples.
    """
    import numpy as np

    from edgetl.fsutil import atomic_path

    kept = [r for r in rows if r.logits is not None]
    if not kept:
        return None
    logits = np.stack([np.asarray(r.logits, dtype=np.float32) for r in kept])
    with atomic_path(Path(out_dir) / SCORES_NAME) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, labels=np.asarray(labels, dtype=np.int64),
                            rows=np.asarray([row_id(r) for r in kept]), logits=logits)
    return SCORES_NAME


def load_scores(results_path: str | Path, results: BenchResults) -> tuple[Any, dict[str, Any]] | None:
    """``(labels, {row_id: logits})`` from the results' ``scores_file``; None when it has none or it is gone."""
    if not results.scores_file:
        return None
    import zipfile

    import numpy as np

    p = Path(results_path)
    path = (p if p.is_dir() else p.parent) / results.scores_file
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            labels, names, logits = data["labels"], data["rows"], data["logits"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"scores file {path} is unreadable: {exc}",
                             hint="re-run `edgetl bench` (it rewrites results.json and scores.npz together)") from exc
    if logits.ndim != 3 or logits.shape[:2] != (len(names), len(labels)):
        raise ModelFileError(f"scores file {path} holds logits of shape {logits.shape} for {len(names)} rows and "
                             f"{len(labels)} labels", hint="re-run `edgetl bench`")
    return labels, {str(n): logits[i] for i, n in enumerate(names)}


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
