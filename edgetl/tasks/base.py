"""The task interface, its registry, and the one resolver of a build's input specification."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.registry import Registry

if TYPE_CHECKING:
    import torch

    from edgetl.artifacts import ModelIO
    from edgetl.backbones import BackboneSpec
    from edgetl.config import BuildConfig, DataConfig, TrainConfig
    from edgetl.data import DatasetIndex
    from edgetl.export.uint8_input import PixelFront
    from edgetl.targets import TargetProfile

# the end of every task's C++ snippet in the bundle README: the first output's logits to a class index
CPP_LOGITS_TO_CLASS = (
    "  const float* logits = out[0].GetTensorData<float>();",
    "  size_t n = out[0].GetTensorTypeAndShapeInfo().GetElementCount();",
    "  return int(std::max_element(logits, logits + n) - logits);  // index into labels.json",
    "}",
    "```",
    "",
)

# one evaluation batch: named inputs (NumPy, what the runtimes take) and the class index of each sample
EvalBatch = tuple[dict[str, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ResolvedInput:
    """The input specification of one build, resolved once (config over target over backbone).

    ``size`` is the image side for image tasks; ``sources`` says where each figure came from.
    """

    size: int
    channels: int
    batch_sizes: tuple[int, ...]
    dynamic_batch: bool
    sources: tuple[tuple[str, str], ...] = ()


class Task(ABC):
    """One kind of model input and output. Stateless: every method takes what it needs."""

    name: str = ""
    sample_noun: str = "samples"  # how reports count evaluation samples ("images")
    # the input that marks padding, where evaluation arrays are padded to stack (edgetl.execution.base.trim_padding)
    padding_mask: str | None = None

    # ------------------------------------------------------------------ data
    @abstractmethod
    def index_data(self, data: DataConfig) -> DatasetIndex:
        """Find, check and split the data set ``data.path`` names."""

    @abstractmethod
    def data_fingerprint(self, data: DataConfig) -> str:
        """A cheap hash that changes when the data set changes (build caching)."""

    @abstractmethod
    def resolve_input(self, cfg: BuildConfig, target: TargetProfile, spec: BackboneSpec) -> ResolvedInput:
        """The input specification: the config's setting, else the target's, else the backbone's."""

    @abstractmethod
    def model_io(self, resolved: ResolvedInput, num_classes: int) -> ModelIO:
        """The named inputs and outputs of a model for ``resolved``."""

    @abstractmethod
    def preprocess(self, cfg: BuildConfig, spec: BackboneSpec, resolved: ResolvedInput) -> dict[str, Any]:
        """The deployment preprocessing spec (JSON-able), carried in the model artifact and the bundle."""

    # ------------------------------------------------------------------ torch side
    @abstractmethod
    def train_dataset(self, samples: Sequence[Any], preprocess: dict[str, Any], train: TrainConfig) -> Any:
        """A map-style dataset of ``(inputs, label)`` with the training augmentation."""

    @abstractmethod
    def eval_dataset(self, samples: Sequence[Any], preprocess: dict[str, Any]) -> Any:
        """A map-style dataset of ``(inputs, label)`` with the deployment preprocessing."""

    def collate(self, preprocess: dict[str, Any] | None = None) -> Any:
        """The DataLoader ``collate_fn`` for batches of this task's datasets (None: torch's default)."""
        return None

    def train_sampler(self, samples: Sequence[Any], preprocess: dict[str, Any], batch_size: int, seed: int) -> Any:
        """A shuffling sampler for training (with ``set_epoch``), e.g. one that groups texts of similar length;
        None: uniform random order."""
        return None

    def write_model_files(self, cfg: BuildConfig, spec: BackboneSpec, preprocess: dict[str, Any], out_dir: Path,
                          write: bool = True) -> tuple[dict[str, Any], list[str]]:
        """Files a model needs besides its weights (a tokenizer), written by fine-tuning into ``out_dir``.

        Returns the preprocessing spec naming them (what the model card carries) and their names in ``out_dir``
        (hashed in the stage manifest). ``write`` False: only the spec (the other ranks of a distributed run).
        """
        return preprocess, []

    def model_files(self, preprocess: dict[str, Any]) -> list[tuple[Path, str]]:
        """The files ``write_model_files`` made for a model with this spec, each with its name in a bundle."""
        return []

    def portable_preprocess(self, preprocess: dict[str, Any]) -> dict[str, Any]:
        """The spec as a bundle ships it: without locations on the build machine."""
        return preprocess

    def located_preprocess(self, preprocess: dict[str, Any], root: Path) -> dict[str, Any]:
        """A bundle's spec with its files located under the bundle directory ``root`` (``edgetl predict``)."""
        return preprocess

    @abstractmethod
    def example_inputs(self, io: ModelIO, batch: int) -> dict[str, torch.Tensor]:
        """Random inputs of batch ``batch`` for tracing and export (``torch.export``, the ONNX exporter)."""

    # ------------------------------------------------------------------ runtime side
    @abstractmethod
    def eval_batches(self, samples: Sequence[Any], preprocess: dict[str, Any], batch_size: int) -> Iterator[EvalBatch]:
        """Named NumPy inputs and labels, preprocessed exactly as the bundle's user will."""

    @abstractmethod
    def benchmark_inputs(self, io: ModelIO, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random named inputs of batch ``batch`` for latency measurement."""

    @abstractmethod
    def assumed_preprocess(self, cfg: BuildConfig, size_hint: int) -> tuple[dict[str, Any], str]:
        """The preprocessing to assume for a bare model file that states none, and the note saying so."""

    @abstractmethod
    def io_for_file(self, inputs: dict[str, tuple[int | None, ...]], size_hint: int) -> ModelIO:
        """The ``ModelIO`` of a bare model file (no edgetl card) from its input shapes; dynamic non-batch axes
        take ``size_hint``."""

    # ------------------------------------------------------------------ the uint8-input variant
    def pixel_front(self, io: ModelIO, preprocess: dict[str, Any]) -> PixelFront | None:
        """What a uint8-input variant of a model with ``io`` does in its graph (raw camera pixels in, the
        normalisation and layout change inside); None: this task's inputs are no pixels (text)."""
        return None

    def eval_pixel_batches(self, samples: Sequence[Any], preprocess: dict[str, Any],
                           batch_size: int) -> Iterator[tuple[EvalBatch, dict[str, np.ndarray]]]:
        """``eval_batches`` with, for each batch, the same samples as the uint8-input variant takes them
        (only for tasks whose ``pixel_front`` is not None)."""
        raise NotImplementedError(f"task {self.name} has no uint8-input variant")

    # ------------------------------------------------------------------ deployment
    @abstractmethod
    def bundle_readme(self, preprocess: dict[str, Any], io: ModelIO, model_file: str, onnx_file: str | None,
                      uint8_file: str | None = None) -> str:
        """The bundle README's task-specific sections: preprocessing, a Python snippet, C++ guidance.

        ``uint8_file``: the bundle's uint8-input ONNX variant (``pixel_front``), which the C++ snippet feeds."""

    @abstractmethod
    def collect_predict_inputs(self, paths: Sequence[Path]) -> list[Any]:
        """The samples ``edgetl predict`` was given (directories expanded)."""

    def predict_inputs(self, paths: Sequence[Path], texts: Sequence[str] = ()) -> list[Any]:
        """The samples of ``edgetl predict``: its path arguments, and ``--text`` strings for tasks that take text."""
        if texts:
            from edgetl.errors import ConfigError

            raise ConfigError(f"--text is for text models; this bundle's task is {self.name}",
                              hint="pass input files instead")
        return self.collect_predict_inputs(paths)

    @abstractmethod
    def read_predict_input(self, item: Any, preprocess: dict[str, Any]) -> dict[str, np.ndarray]:
        """One sample, preprocessed, as named inputs without the batch axis."""

    def predict_truth(self, item: Any, classes: Sequence[str]) -> str | None:
        """The true class of a predict input when its location says so (None: unknown)."""
        return None


TASKS: Registry[Task] = Registry("task")


def get_task(name: str) -> Task:
    return TASKS.get(name)


def task_for_backbone(spec: BackboneSpec) -> Task:
    return TASKS.get(getattr(spec, "task", "image_classification"))


def resolve_input(cfg: BuildConfig, target: TargetProfile, spec: BackboneSpec | None = None) -> ResolvedInput:
    """The one resolver of a build's input specification (config over target over backbone).

    Every stage that needs the input size uses what this returns or, downstream of training, what the model
    artifact carries; nothing re-derives it.
    """
    from edgetl.backbones import get_backbone

    spec = spec or get_backbone(cfg.train.backbone)
    return task_for_backbone(spec).resolve_input(cfg, target, spec)
