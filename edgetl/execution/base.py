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
    """The evaluation split, preprocessed once: named input arrays (N x ...; memory maps) and labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(a[start:stop]) for name, a in self.inputs.items()}


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
