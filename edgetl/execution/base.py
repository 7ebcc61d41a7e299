"""The measurement seam: what an executor is given (planned rows, settings, evaluation data) and returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.bench.measure import TimingPlan
from edgetl.manifest import Artifact

if TYPE_CHECKING:
    from edgetl.artifacts import ModelIO
    from edgetl.bench.results import BenchRow


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
    """The evaluation split, preprocessed once: named input arrays (N x ...; memory maps) and labels.

    ``trim_to``: the padding mask input (a text model's ``attention_mask``, ``Task.padding_mask``) of arrays padded
    to one length so that they stack; each batch is cut to its own longest sample, as a deployed application pads
    (``trim_padding``). None: batches as stored.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    classes: list[str]
    trim_to: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        chunk = {name: np.ascontiguousarray(a[start:stop]) for name, a in self.inputs.items()}
        return trim_padding(chunk, self.trim_to) if self.trim_to else chunk


def trim_padding(batch: dict[str, np.ndarray], mask: str | None) -> dict[str, np.ndarray]:
    """``batch`` with the sequence axis (axis 1) of every input shaped like input ``mask`` cut after the last
    position any sample attends to. Padding is invisible to a float or statically quantized model, but not to
    dynamic int8, whose activation scales are computed at run time over every position, padding included: a model
    is evaluated on the inputs an application gives it (padded to the longest text of its batch, at batch 1 not at
    all). The same rule is written out in ``device_runner.py``, which runs on a device without edgetl."""
    m = batch.get(mask) if mask else None
    if m is None or m.ndim < 2:
        return batch
    attended = np.flatnonzero(np.asarray(m).any(axis=0))
    keep = int(attended[-1]) + 1 if len(attended) else 1
    if keep == m.shape[1]:
        return batch
    return {name: np.ascontiguousarray(a[:, :keep]) if a.ndim >= 2 and a.shape[:2] == m.shape[:2] else a
            for name, a in batch.items()}


@dataclass(frozen=True)
class MeasureSettings:
    """How every row is timed and evaluated (the same rules wherever the row runs)."""

    timing: TimingPlan
    threads: int | None
    batch_sizes: list[int]
    eval_batch_size: int
    samples_kept: int
    io: ModelIO | None = None  # the models' named inputs (None: read from each model file)
    task: str = "image_classification"
    fallback_size: int = 224  # a bare model file with a dynamic spatial size: the size to time it at
    extra: dict[str, Any] = field(default_factory=dict)


class Executor(ABC):
    """Measures planned rows somewhere and returns one result row per plan, in order."""

    #: where rows are measured: "host" (this process) or "device"
    where: str = "host"

    @abstractmethod
    def measure(self, plans: list[Planned], settings: MeasureSettings, eval_data: EvalData | None,
                progress: Any = None) -> list[BenchRow]:
        """One ``BenchRow`` per plan (skipped and failed rows included, with their reason)."""
