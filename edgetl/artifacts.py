"""Self-describing model artifacts: what every model-producing stage writes and every later stage loads.

A model artifact is a model file plus a ``ModelCard`` in its stage's ``manifest.json`` (``info["models"]``). The
card says everything a later stage needs without knowing which stage made the model and without rebuilding the
architecture from a registry name: the task, the named inputs (shapes as tuples, dynamic axes), labels,
preprocessing, the precision plan (which layers run in float in an int8 model; empty for a float model), MACs and
parameters, and the lineage (which stage and which artifact it came from).

Two kinds of model file:

* ``module``: a whole ``torch.nn.Module`` saved with ``torch.save``. It is what lets a model whose layer widths
  changed (a channel-pruned one) travel between stages. Loading it unpickles Python objects, so it is code: edgetl
  loads such a file only after its sha256 matches the manifest the stage wrote beside it (a changed or foreign
  file is refused), and only from a run directory you point it at. That is the trust boundary: load run
  directories you or your CI built, as you would run their code. Everything else edgetl reads from a user stays
  ``weights_only=True``: ``--weights`` files, the resume checkpoint ``last.pt``.
* ``program``: a ``torch.export`` program (``.pt2``), the form of the converted int8 models; its loader does not
  unpickle arbitrary objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgetl.errors import ModelFileError
from edgetl.fsutil import atomic_path
from edgetl.manifest import Manifest, read_manifest

if TYPE_CHECKING:
    from torch import nn

MODEL_ARTIFACT_FORMAT = "edgetl-model-v1"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Frozen):
    """One named model input or output. ``shape`` has None where a dimension is dynamic."""

    name: str
    shape: tuple[int | None, ...]
    dtype: Literal["float32", "int64", "uint8"] = "float32"
    dynamic_axes: dict[int, str] = Field(default_factory=dict)  # axis -> symbolic name ("batch", "sequence")

    def with_batch(self, batch: int) -> tuple[int, ...]:
        """The concrete shape at ``batch`` (every other dynamic axis must already be fixed)."""
        dims = list(self.shape)
        if dims and dims[0] is None:
            dims[0] = batch
        missing = [i for i, d in enumerate(dims) if d is None]
        if missing:
            raise ValueError(f"input {self.name!r} has dynamic axes {missing} besides the batch")
        return tuple(int(d) for d in dims)  # type: ignore[arg-type]


class ModelIO(_Frozen):
    """The model's named inputs (in call order) and outputs."""

    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


class FloatLayer(_Frozen):
    """A compute layer an int8 model keeps in float, on purpose."""

    layer: str  # module path, e.g. "blocks.0.0.conv"
    kind: Literal["conv", "linear"]
    reason: str  # keep_first_fp, keep_last_fp, skip_modules, accuracy fallback, ...


class PrecisionPlan(_Frozen):
    """Which layers run in which precision: ``default`` everywhere except ``float_layers``."""

    default: Literal["fp32", "int8"] = "fp32"
    float_layers: tuple[FloatLayer, ...] = ()

    @property
    def is_float(self) -> bool:
        return self.default == "fp32"

    def kept_float(self) -> list[dict[str, str]]:
        return [layer.model_dump() for layer in self.float_layers]


class Lineage(_Frozen):
    """Where a model came from: the stage that made it, how, and the artifact it was made from."""

    stage: str  # train | prune | quantize | ...
    method: str  # finetune | qat | ptq | prune | ...
    parent: str | None = None  # "STAGE:NAME" of the artifact it was made from
    parent_manifest: str | None = None  # hash of that artifact's stage manifest


class ModelCard(_Frozen):
    """Everything a later stage needs to know about one model file (``manifest.info["models"]``)."""

    format: str = MODEL_ARTIFACT_FORMAT
    name: str  # unique within its stage: "fp32", "qat", "ptq", "pruned"
    file: str  # relative to the stage directory
    kind: Literal["module", "program"]
    task: str
    backbone: str
    classes: tuple[str, ...]
    io: ModelIO
    preprocess: dict[str, Any]  # the task's preprocessing spec (images: edgetl.data.Preprocess)
    precision_plan: PrecisionPlan = PrecisionPlan()
    lineage: Lineage
    data_split: str | None = None  # the data split it was trained and evaluated on (split.json), relative
    macs: int | None = None  # multiply-accumulates of one sample's forward pass
    params: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)  # e.g. {"eval_accuracy": .., "eval_split": ..}

    @property
    def precision(self) -> str:
        return self.precision_plan.default


@dataclass(frozen=True)
class ModelArtifact:
    """A model file in a stage directory, with its card and the manifest that vouches for it."""

    stage_dir: Path
    card: ModelCard
    manifest: Manifest

    @property
    def path(self) -> Path:
        return self.stage_dir / self.card.file

    @property
    def split_path(self) -> Path | None:
        return self.stage_dir / self.card.data_split if self.card.data_split else None

    @property
    def ref(self) -> str:
        """``STAGE:NAME``: how lineage names this artifact."""
        return f"{self.manifest.stage}:{self.card.name}"

    def load(self) -> nn.Module:
        """The model, in eval mode. Checks the file's sha256 against the manifest first (see the module doc)."""
        from edgetl.fsutil import sha256_file

        digest = self.manifest.outputs.get(self.card.file)
        if not self.path.is_file():
            raise ModelFileError(f"model file {self.path} is missing", hint="rerun the stage that made it")
        if digest is None or sha256_file(self.path) != digest:
            raise ModelFileError(f"{self.path} does not match the sha256 in {self.stage_dir / 'manifest.json'} "
                                 "(modified, truncated or not made by this run); edgetl will not load it",
                                 hint="rerun the stage that made it (or `edgetl build`)")
        if self.card.kind == "program":
            from edgetl.quant.pt2e import load_program

            return load_program(self.path).module()
        return load_module_file(self.path)

    def load_program(self) -> Any:
        """The ``torch.export`` program of a ``program`` artifact (checked like ``load``)."""
        if self.card.kind != "program":
            raise ModelFileError(f"{self.ref} is a {self.card.kind}, not a torch.export program")
        self.load()  # the sha256 check
        from edgetl.quant.pt2e import load_program

        return load_program(self.path)


def load_module_file(path: Path) -> nn.Module:
    """Unpickle a whole module saved by ``save_module``; callers check its sha256 first (see the module doc)."""
    import torch

    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # zip, pickle and missing-class errors all mean "not a usable model file"
        raise ModelFileError(f"model file {path} is corrupt or needs code that is not installed: "
                             f"{type(exc).__name__}: {exc}", hint="rerun the stage that made it") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelFileError(f"{path} holds a {type(model).__name__}, not a torch module")
    return standard_strides(model).eval()


def standard_strides(model: nn.Module) -> nn.Module:
    """Give every parameter and buffer the strides a freshly built module has (in place; returns ``model``).

    channels_last training leaves weights whose size-1 dimensions carry odd strides (``is_contiguous()`` is True for
    them all the same), and oneDNN then picks other convolution kernels. Measured on the digits demo: the same
    weights gave PTQ int8 88.86 % with the training strides and 89.69 % with standard ones (the calibration
    histograms differ by the kernels' rounding), so a saved model must not carry them, nor a loaded one.
    """
    import torch

    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor is not None:
            tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
    return model


def save_module(model: nn.Module, path: Path) -> Path:
    """``torch.save`` a whole module (on the CPU, contiguous weights) atomically."""
    import copy

    import torch

    clone = copy.deepcopy(model).to("cpu").eval()
    standard_strides(clone)
    for p in clone.parameters():
        p.requires_grad_(True)
    with atomic_path(path) as tmp:
        torch.save(clone, tmp)
    return path


def model_cards(manifest: Manifest) -> list[ModelCard]:
    """The model cards a stage manifest lists (``info["models"]``)."""
    try:
        return [ModelCard.model_validate(m) for m in manifest.info.get("models", [])]
    except Exception as exc:  # pydantic ValidationError: a manifest of another edgetl version
        raise ModelFileError(f"manifest of stage {manifest.stage} has unreadable model cards: "
                             f"{str(exc).splitlines()[0]}", hint="rerun that stage") from exc


def read_model_artifacts(stage_dir: Path) -> list[ModelArtifact]:
    """Every model artifact of a stage directory, checked against the manifest's sha256s."""
    stage_dir = Path(stage_dir)
    manifest = read_manifest(stage_dir)
    cards = model_cards(manifest)
    bad = [c.file for c in cards if c.file in manifest.verify_outputs(stage_dir)]
    if bad:
        raise ModelFileError(f"{stage_dir}: {', '.join(bad)} missing or not matching the sha256 in its manifest",
                             hint=f"rerun the {manifest.stage} stage (or `edgetl build`)")
    return [ModelArtifact(stage_dir, card, manifest) for card in cards]


def read_model_artifact(stage_dir: Path, name: str | None = None) -> ModelArtifact:
    """One artifact of a stage directory: ``name``, or the only/first float one when ``name`` is None."""
    artifacts = read_model_artifacts(stage_dir)
    if name is not None:
        for a in artifacts:
            if a.card.name == name:
                return a
        raise ModelFileError(f"{stage_dir} holds no model {name!r} (it has: "
                             f"{', '.join(a.card.name for a in artifacts) or 'none'})")
    floats = [a for a in artifacts if a.card.precision_plan.is_float]
    if not floats:
        raise ModelFileError(f"{stage_dir} holds no float model artifact")
    return floats[0]
