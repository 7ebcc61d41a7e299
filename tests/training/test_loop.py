"""Freezing, parameter groups and the LR schedule the fine-tune recipe is built from."""

from __future__ import annotations

import pytest

from edgetl.backbones import create_model, get_backbone
from edgetl.training.loop import (
    WeightEMA,
    autocast_dtype_for,
    batch_mix,
    cpu_has_native_bf16,
    frozen_norm_layers,
    param_groups,
    set_trainable,
    warmup_cosine,
)


def _trainable(model) -> set[str]:  # type: ignore[no-untyped-def]
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_head_phase_trains_only_the_classifier_and_freezes_every_batchnorm() -> None:
    model = create_model("tiny", 3, "none")
    set_trainable(model, get_backbone("tiny"), None)
    assert _trainable(model) == {"classifier.weight", "classifier.bias"}
    assert len(frozen_norm_layers(model)) == 3


def test_unfreeze_last_block_of_tiny() -> None:
    model = create_model("tiny", 3, "none")
    set_trainable(model, get_backbone("tiny"), 1)
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in _trainable(model) if n.startswith("blocks")} == {
        "blocks.2"
    }
    assert len(frozen_norm_layers(model)) == 2
    set_trainable(model, get_backbone("tiny"), "all")
    assert frozen_norm_layers(model) == []


def test_unfreeze_n_on_efficientnet_lite0_keeps_the_stem_frozen_and_the_final_conv_trainable() -> None:
    spec = get_backbone("efficientnet_lite0")
    model = create_model("efficientnet_lite0", 2, "none")
    set_trainable(model, spec, 2)
    names = _trainable(model)
    assert "conv_stem.weight" not in names and not any(n.startswith("blocks.4.") for n in names)
    assert {"blocks.5.0.conv_pw.weight", "blocks.6.0.conv_pw.weight", "conv_head.weight", "classifier.weight"} <= names
    groups = param_groups(model, spec, head_lr=1e-3, backbone_lr=1e-4, weight_decay=0.01)
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 1e-3 and by_name["backbone"]["lr"] == 1e-4
    assert by_name["backbone_no_decay"]["weight_decay"] == 0.0  # biases and BatchNorm weights are not decayed
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_warmup_then_cosine_to_zero() -> None:
    f = warmup_cosine(total_steps=100, warmup_steps=10)
    assert f(0) < 0.2 and f(9) < 1.0
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-9)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


def test_mixed_precision_type_per_device() -> None:
    import torch

    assert autocast_dtype_for(torch.device("cuda"), amp=True) == torch.float16
    assert autocast_dtype_for(torch.device("cuda"), amp=False) is None
    assert autocast_dtype_for(torch.device("cpu"), amp=True) is None  # CPU bfloat16 is opt-in
    # and only where the CPU computes it natively; emulated it would be slower than float32
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert autocast_dtype_for(torch.device("cpu"), amp=True, cpu_bf16=True) == expected


def test_weight_ema_ramps_up_then_averages_over_its_horizon() -> None:
    import torch

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = WeightEMA(model, horizon_steps=4)  # decay 0.75 once the ramp (1+n)/(10+n) passes it
    assert ema.max_decay == pytest.approx(0.75)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay 0.1: 0.9 of the way to the model
    assert ema.module.weight.item() == pytest.approx(0.9)
    for _ in range(30):
        ema.update(model)
    assert ema.module.weight.item() == pytest.approx(1.0, abs=1e-3)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema.update(model)  # now at the full decay: a quarter of the way
    assert ema.module.weight.item() == pytest.approx(0.75, abs=1e-3)

    copy = WeightEMA(model, horizon_steps=4)
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == ema.updates == 32
    assert copy.module.weight.item() == ema.module.weight.item()


def test_batch_mix_gives_soft_targets_that_sum_to_one() -> None:
    import torch

    assert batch_mix(3, 0.0, 0.0) is None
    torch.manual_seed(0)
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    for mix in (batch_mix(3, 0.2, 0.0), batch_mix(3, 0.0, 1.0), batch_mix(3, 0.2, 1.0)):
        assert mix is not None
        mixed, targets = mix(images, labels)
        assert mixed.shape == images.shape and targets.shape == (4, 3)
        assert torch.allclose(targets.sum(1), torch.ones(4))
        assert not torch.equal(mixed, images)  # each image now holds part of its neighbour
