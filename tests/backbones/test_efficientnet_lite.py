"""The EfficientNet-Lite0/1/2 ImageNet weights are real and land on the right tensors of timm's architecture."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetl.backbones import create_model, get_backbone
from edgetl.backbones.base import load_state_dict_file
from edgetl.backbones.efficientnet_lite import (
    VARIANTS,
    get_variant,
    imagenet_model,
    map_reference_state,
    packaged_weights_path,
)
from edgetl.errors import UnknownNameError

ANT, BEE = 310, 309  # ImageNet-1k class indices
NAMES = list(VARIANTS)


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]  # weight | bias | running_mean | running_var


@pytest.mark.parametrize("name", NAMES)
def test_reference_tensors_map_onto_timm_by_position_shape_and_kind(name: str) -> None:
    import timm

    variant = VARIANTS[name]
    reference = load_state_dict_file(packaged_weights_path(name))
    model = timm.create_model(variant.timm_name, pretrained=False, num_classes=1000)
    mapped = map_reference_state(reference, list(model.state_dict()))
    src = [k for k in reference if not k.endswith("num_batches_tracked")]

    assert len(mapped) == len(src) == variant.tensors
    own = model.state_dict()
    for (dst_key, tensor), src_key in zip(mapped.items(), src, strict=True):
        assert tuple(tensor.shape) == tuple(own[dst_key].shape), (src_key, dst_key)
        assert _kind(src_key) == _kind(dst_key), (src_key, dst_key)
    keys = list(mapped)
    assert (src[0], keys[0]) == ("_conv_stem.weight", "conv_stem.weight")
    assert (src[-1], keys[-1]) == ("_fc.bias", "classifier.bias")


@pytest.mark.parametrize("name", NAMES)
def test_registered_entry_matches_timm_pretrained_cfg(name: str) -> None:
    import timm

    variant = VARIANTS[name]
    cfg = timm.create_model(variant.timm_name, pretrained=False).pretrained_cfg
    spec = get_backbone(name.removeprefix("efficientnet_"))  # the short alias resolves to the same entry
    assert spec.name == name
    assert (3, spec.input_size, spec.input_size) == tuple(cfg["input_size"])
    assert variant.crop_pct == pytest.approx(cfg["crop_pct"])
    assert spec.interpolation == cfg["interpolation"] == "bicubic"
    assert spec.mean == (0.498,) * 3 and spec.std == (0.502,) * 3


def test_default_weights_load_and_the_new_head_has_the_requested_classes() -> None:
    import torch

    model = create_model("efficientnet_lite1", 5, "default")
    reference = load_state_dict_file(packaged_weights_path("efficientnet_lite1"))
    assert torch.equal(model.state_dict()["conv_stem.weight"], reference["_conv_stem.weight"])
    assert model.get_submodule("classifier").out_features == 5


def test_imagenet_model_defaults_to_lite0_and_rejects_unknown_variants() -> None:
    assert imagenet_model().pretrained_cfg["architecture"] == "tf_efficientnet_lite0"
    with pytest.raises(UnknownNameError, match="efficientnet_lite7"):
        get_variant("efficientnet_lite7")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_zero_shot_imagenet_classes_on_hymenoptera_val(shared_dir: Path, name: str) -> None:
    """Hymenoptera's images come from ImageNet: real weights name 'ant' (310) and 'bee' (309) exactly."""
    import torch

    from edgetl.data import Preprocess, load_image, preprocess_image, to_rgb

    variant = VARIANTS[name]
    val = shared_dir / "datasets" / "hymenoptera" / "val"
    samples = [(p, ANT) for p in sorted((val / "ants").iterdir())] + [(p, BEE) for p in sorted((val / "bees").iterdir())]
    # The native size and crop of each variant, with the TF release's normalisation.
    pp = Preprocess.make(variant.input_size, variant.crop_pct, (0.498,) * 3, (0.502,) * 3, "bicubic")
    model = imagenet_model(name)
    hits = 0
    with torch.inference_mode():
        for start in range(0, len(samples), 32):
            chunk = samples[start : start + 32]
            batch = torch.stack([torch.from_numpy(preprocess_image(to_rgb(load_image(p)), pp)) for p, _ in chunk])
            hits += sum(int(c == label) for c, (_, label) in zip(model(batch).argmax(1).tolist(), chunk, strict=True))
    print(f"{name} @ {variant.input_size} px: {hits}/{len(samples)} exact ImageNet hits")
    assert len(samples) == 153
    assert hits / len(samples) >= 0.80, f"{name}: {hits}/153 exact ImageNet hits; lite0 measured 128-130"
