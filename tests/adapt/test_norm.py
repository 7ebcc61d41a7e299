"""AdaBN and TENT on a small BatchNorm network: what changes, what must not."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgetl.adapt import adabn, batchnorm_layers, tent
from edgetl.errors import ConfigError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def _shifted_batches(n: int = 3) -> list[tuple[torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, 8, 8, generator=g) * 2.0 + 1.5,) for _ in range(n)]  # another domain's statistics


def _split(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    stats = {k: v for k, v in state.items() if "running_" in k or "num_batches" in k}
    return stats, {k: v for k, v in state.items() if k not in stats}


def test_adabn_re_estimates_the_statistics_and_leaves_every_weight() -> None:
    model = _net()
    before_stats, before_weights = _split({k: v.clone() for k, v in model.state_dict().items()})
    batches = _shifted_batches()
    report = adabn(model, batches)
    after_stats, after_weights = _split(model.state_dict())
    assert report.method == "adabn" and report.images == 12 and report.layers == 1
    assert all(torch.equal(before_weights[k], after_weights[k]) for k in before_weights)
    bn = model[1]
    assert not torch.allclose(before_stats["1.running_mean"], after_stats["1.running_mean"])
    # the statistics are the cumulative ones over all 12 images, whatever the batch order (momentum None)
    conv_out = torch.cat([model[0](b[0]) for b in batches])
    assert torch.allclose(bn.running_mean, conv_out.mean((0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1 and not model.training  # restored


def test_tent_trains_only_the_batchnorm_affine_parameters() -> None:
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    batches = _shifted_batches()
    report = tent(model, lambda: iter(batches), epochs=3, lr=0.05)
    after = model.state_dict()
    assert report.method == "tent" and report.steps == 9 and report.images == 12
    assert not torch.equal(before["1.weight"], after["1.weight"])  # gamma moved
    for k in ("0.weight", "5.weight", "5.bias"):
        assert torch.equal(before[k], after[k]), k
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert report.entropy_after is not None and report.entropy_before is not None
    assert report.entropy_after < report.entropy_before  # what TENT minimises went down


def test_a_model_without_batchnorm_is_refused_with_the_reason() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    assert batchnorm_layers(model) == []
    with pytest.raises(ConfigError, match="has none"):
        adabn(model, [(torch.randn(2, 3, 2, 2),)])


def _deep_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def _source_batches(n: int = 6) -> list[tuple[torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    return [(torch.randn(8, 3, 8, 8, generator=g) * 0.5 - 0.3,) for _ in range(n)]


def _foreign_statistics(model: nn.Module, layers: tuple[nn.Module, ...], mean: float, var: float
                        ) -> tuple[list[tuple[torch.Tensor]], torch.Tensor, torch.Tensor]:
    """Running statistics set to ones that are not the source images'; the source batches, them joined, and the
    model's outputs on them."""
    for bn in layers:
        bn.running_mean.fill_(mean)
        bn.running_var.fill_(var)
    source = _source_batches()
    x = torch.cat([b[0] for b in source])
    with torch.no_grad():
        return source, x, model(x)


def test_anchored_adabn_leaves_a_model_alone_on_images_like_its_source() -> None:
    # running statistics that are not the source images' (a frozen backbone keeps ImageNet's): plain AdaBN on
    # source-like images rewrites them and changes the outputs; the anchored form keeps them (same images twice)
    model = _deep_net()
    source, x, before = _foreign_statistics(model, (model[1], model[4]), 0.7, 3.0)
    anchored = copy.deepcopy(model)
    report = adabn(anchored, source, source=source)
    plain = copy.deepcopy(model)
    adabn(plain, source)
    with torch.no_grad():
        assert torch.allclose(anchored(x), before, atol=1e-2)
        assert not torch.allclose(plain(x), before, atol=1e-1)
    assert report.method == "adabn" and report.images == 48 and report.layers == 2
    for k, v in model.state_dict().items():
        if "running_" not in k and "num_batches" not in k:
            assert torch.equal(v, anchored.state_dict()[k]), k  # the weights stay


def test_anchored_adabn_keeps_what_a_fused_normalisation_layer_adds() -> None:
    # timm's BatchNormAct2d (efficientnet_lite's layer) applies its activation inside its forward: the anchored pass
    # runs each layer's own forward, so the activation stays (replacing the forward dropped it: lite0 fell to chance)
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), BatchNormAct2d(8, act_layer=nn.ReLU6),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False), BatchNormAct2d(8, act_layer=nn.ReLU6),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    source, x, before = _foreign_statistics(model, (model[1], model[3]), 0.2, 2.0)
    with torch.no_grad():
        adabn(model, source, source=source)
        assert torch.allclose(model(x), before, atol=1e-2)
    for bn in (model[1], model[3]):  # the second layer's input passed through the first one's activation
        assert torch.allclose(bn.running_mean, torch.full((8,), 0.2), atol=1e-3)
        assert torch.allclose(bn.running_var, torch.full((8,), 2.0), rtol=1e-3)


def test_anchored_adabn_is_plain_adabn_where_the_statistics_are_the_sources() -> None:
    model = _deep_net()
    source = _source_batches()
    adabn(model, source)  # now the running statistics are the source images' own
    target = _shifted_batches()
    anchored, plain = copy.deepcopy(model), copy.deepcopy(model)
    adabn(anchored, target, source=source)
    adabn(plain, target)
    for bn_a, bn_p in ((anchored[1], plain[1]), (anchored[4], plain[4])):
        assert torch.allclose(bn_a.running_mean, bn_p.running_mean, atol=0.05)
        assert torch.allclose(bn_a.running_var, bn_p.running_var, rtol=0.1)
