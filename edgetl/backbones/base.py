"""The backbone spec, the registry, and the checkpoint format every later stage reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.errors import ModelFileError, WeightsError
from edgetl.fsutil import atomic_path
from edgetl.registry import Registry

if TYPE_CHECKING:
    from torch import nn

CHECKPOINT_FORMAT = "edgetl-checkpoint-v1"


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone.

    Attributes:
        name: registry name.
        build: ``build(num_classes, weights) -> nn.Module`` where ``weights`` is "default", "none" or a file path;
            it returns the model with a fresh classifier for ``num_classes``.
        classifier: attribute path of the classifier module (replaced for new classes, trained in warm-up).
        blocks: attribute path of the sequence of feature blocks (``--unfreeze N`` unfreezes the last N).
        input_size: native input size of the pretrained weights.
        mean, std: input normalisation, RGB, on 0..1 pixels.
        interpolation: resize interpolation the weights were trained with.
        weights_help: where the default weights come from, shown when they cannot be found.
        task: the task registry entry (``edgetl.tasks``) whose inputs the model takes.
        in_channels: image channels the stem takes.
        pretrained: whether "default" weights are pretrained ones (False for the random-init test backbones);
            ``train.strategy: auto`` picks its recipe by it.
    """

    name: str
    build: Callable[[int, str], nn.Module]
    classifier: str
    blocks: str
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    weights_help: str = ""
    description: str = ""
    task: str = "image_classification"  # the edgetl.tasks entry that feeds it
    in_channels: int = 3
    pretrained: bool = True

    def preprocess_info(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation}


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(spec: BackboneSpec, *, aliases: tuple[str, ...] = ()) -> BackboneSpec:
    return BACKBONES.register(spec.name, spec, aliases=aliases)


def get_backbone(name: str) -> BackboneSpec:
    return BACKBONES.get(name)


def create_model(name: str, num_classes: int, weights: str = "default") -> nn.Module:
    """Build a registered backbone with a new ``num_classes`` head. ``weights``: "default", "none" or a path."""
    spec = get_backbone(name)
    if weights not in ("default", "none") and not Path(weights).is_file():
        raise WeightsError(f"weights file {weights} does not exist", hint=spec.weights_help or None)
    return spec.build(num_classes, weights)


def get_submodule(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)


def load_state_dict_file(path: str | Path) -> dict[str, Any]:
    """Load a plain state dict safely (``weights_only=True``), unwrapping the usual ``{"state_dict": ...}``."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors all mean the same thing to a user
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def load_matching(model: nn.Module, state: dict[str, Any], source: str, *, skip_prefix: str) -> None:
    """Load ``state`` into ``model`` except the classifier (``skip_prefix``); fail loudly on any other mismatch."""
    own = model.state_dict()
    filtered = {k: v for k, v in state.items() if not k.startswith(skip_prefix)}
    missing = [
        k for k in own if not k.startswith(skip_prefix) and k not in filtered and not k.endswith("num_batches_tracked")
    ]
    bad_shape = [k for k, v in filtered.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    unexpected = [k for k in filtered if k not in own]
    if missing or bad_shape or unexpected:
        raise WeightsError(
            f"weights {source} do not fit the architecture: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(bad_shape)} wrong-shaped tensors (first: {(missing + unexpected + bad_shape)[:3]})"
        )
    model.load_state_dict(filtered, strict=False)


@dataclass
class Checkpoint:
    """What ``OUT/train/model.pt`` holds: weights plus everything needed to rebuild and feed the model."""

    backbone: str
    classes: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    crop_pct: float
    interpolation: str
    state_dict: dict[str, Any] = field(repr=False, default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. epoch/optimizer state for --resume

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def build_model(self) -> nn.Module:
        model = create_model(self.backbone, self.num_classes, weights="none")
        model.load_state_dict(self.state_dict)
        model.eval()
        return model


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    import torch

    payload = {"format": CHECKPOINT_FORMAT, **asdict(ckpt)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    import torch

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"checkpoint {p} does not exist", hint="run `edgetl train` first")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"checkpoint {p} is corrupt or truncated: {exc}", hint="rerun `edgetl train`") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{p} is not an edgetl checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    payload.pop("format")
    return Checkpoint(**payload)
