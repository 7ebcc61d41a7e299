"""torchvision backbones with ImageNet weights through torchvision's weights API.

Weights come from (in order): an explicit ``--weights PATH``; the torch hub cache
(``$TORCH_HOME/hub/checkpoints/``), which is where torchvision itself stores downloads; the network via torchvision.
Offline with nothing cached, the error says exactly which file to put where.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.backbones.base import BackboneSpec, load_matching, load_state_dict_file, register_backbone
from edgetl.errors import WeightsError

if TYPE_CHECKING:
    from torch import nn

# name -> (classifier module path, final linear inside it, module whose children are the blocks)
_MODELS: dict[str, tuple[str, str, str]] = {
    "resnet18": ("fc", "fc", ""),
    "mobilenet_v3_small": ("classifier", "classifier.3", "features"),
    "mobilenet_v3_large": ("classifier", "classifier.3", "features"),
    "mobilenet_v2": ("classifier", "classifier.1", "features"),
    "efficientnet_b0": ("classifier", "classifier.1", "features"),
}


def cached_weights_path(name: str) -> Path:
    """Where torchvision's weights API caches the default ImageNet weights of ``name``."""
    import torch
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _imagenet_state(name: str) -> dict:
    from torchvision.models import get_model_weights

    cached = cached_weights_path(name)
    if cached.is_file():
        return load_state_dict_file(cached)
    try:  # torchvision's own download path (torch hub); fails fast when offline
        return get_model_weights(name).DEFAULT.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:
        raise WeightsError(
            f"ImageNet weights for {name} are not cached and cannot be downloaded ({type(exc).__name__})",
            hint=f"put {Path(get_model_weights(name).DEFAULT.url).name} at {cached}, "
            "or pass --weights PATH, or --weights none to train from scratch",
        ) from exc


def _builder(name: str):  # type: ignore[no-untyped-def]
    classifier, final_linear, _ = _MODELS[name]

    def build(num_classes: int, weights: str) -> nn.Module:
        from torch import nn
        from torchvision.models import get_model

        model = get_model(name, weights=None)
        if weights != "none":
            state = _imagenet_state(name) if weights == "default" else load_state_dict_file(weights)
            load_matching(model, state, weights, skip_prefix=f"{final_linear}.")
        old = model.get_submodule(final_linear)
        assert isinstance(old, nn.Linear)  # internal invariant of the table above, not user input
        parent_path, _, attr = final_linear.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        new = nn.Linear(old.in_features, num_classes)
        if isinstance(parent, nn.Sequential):
            parent[int(attr)] = new
        else:
            setattr(parent, attr, new)
        return model

    return build


for _name, (_classifier, _, _blocks) in _MODELS.items():
    register_backbone(
        BackboneSpec(
            name=_name,
            build=_builder(_name),
            classifier=_classifier,
            blocks=_blocks,
            input_size=224,
            interpolation="bilinear",
            weights_help="torchvision ImageNet weights: put the file in the torch hub cache or pass --weights PATH",
            description=f"torchvision {_name}, ImageNet weights via torchvision's weights API",
        ),
        aliases=(_name.replace("_", "-"),) if "_" in _name else (),
    )
