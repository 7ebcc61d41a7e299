"""Structured pruning: fewer MACs, protected layers whole, round channel counts, a model that still runs and ships."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
from torch import nn

from edgetl.backbones import create_model
from edgetl.compress import PruneGoal, count_macs_params, prune_model
from edgetl.errors import ConfigError


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    return create_model("efficientnet_lite0", 5, "none").eval()


def _lite0_input() -> torch.Tensor:
    # 64 px, not 224: the traced graph and the MACs fractions are the same, each forward pass 12x cheaper
    return torch.randn(1, 3, 64, 64)


def _assert_whole(before: nn.Module, after: nn.Module, paths: tuple[str, ...]) -> None:
    for path in paths:
        old, new = before.get_submodule(path).state_dict(), after.get_submodule(path).state_dict()
        assert old.keys() == new.keys(), path
        assert all(torch.equal(old[k], new[k]) for k in old), path


def test_tiny_prunes_the_middle_block_and_keeps_stem_and_classifier_whole() -> None:
    model = create_model("tiny", 3, "none").eval()
    original = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 3, 32, 32)

    result = prune_model(model, x, PruneGoal(ratio=0.5))

    report = result.report
    assert report.protected == ("blocks.0.0", "classifier")  # found from the forward order
    assert report.macs_after < report.macs_before and report.params_after < report.params_before
    assert report.channels["blocks.1.0"] == (16, 8)
    assert report.channels["blocks.0.0"] == (8, 8) and report.channels["classifier"] == (3, 3)
    # blocks.2.0 feeds the classifier through pool+flatten: keeping the classifier whole keeps it whole too
    assert report.channels["blocks.2.0"] == (32, 32)
    _assert_whole(model, result.model, report.protected)
    assert result.model(x).shape == (2, 3)
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())  # the input is left alone
    assert (report.macs_before, report.params_before) == count_macs_params(model, x)


def test_lite0_ratio_lowers_macs_keeps_protected_layers_and_rounds_channels_to_8(lite0: nn.Module) -> None:
    result = prune_model(lite0, _lite0_input(), PruneGoal(ratio=0.3))
    report = result.report

    assert report.protected == ("conv_stem", "classifier")
    assert 0.4 < report.macs_fraction < 0.6  # a channel ratio r removes about 1-(1-r)^2 of the MACs
    _assert_whole(lite0, result.model, report.protected)
    changed = {p: (b, a) for p, (b, a) in report.channels.items() if b != a}
    assert len(changed) > 40
    assert all(a % 8 == 0 and a >= 8 for _, a in changed.values()), changed
    pruned_convs = [m for m in result.model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.out_channels % 8 == 0 and m.in_channels % 8 in (0, 3) for m in pruned_convs)
    assert result.model(_lite0_input()).shape == (1, 5)


def test_round_to_16_holds_on_every_pruned_layer(lite0: nn.Module) -> None:
    report = prune_model(lite0, _lite0_input(), PruneGoal(ratio=0.3, round_to=16)).report
    changed = [a for b, a in report.channels.values() if b != a]
    assert changed and all(a % 16 == 0 for a in changed)


def test_a_tiny_ratio_removes_almost_nothing_instead_of_rounding_every_layer_down(lite0: nn.Module) -> None:
    """Torch-Pruning's own rounding takes a 16-channel group keeping 15 down to 8 (15 % of lite0's MACs at 0.02)."""
    report = prune_model(lite0, _lite0_input(), PruneGoal(ratio=0.02)).report
    assert report.macs_fraction > 0.95


def test_global_importance_runs_and_prunes_layers_unevenly(lite0: nn.Module) -> None:
    report = prune_model(lite0, _lite0_input(), PruneGoal(ratio=0.3, importance="global")).report
    assert report.importance == "global" and report.macs_after < report.macs_before
    kept = {round(a / b, 2) for b, a in report.channels.values() if b != a}
    assert len(kept) > 3


def test_a_macs_target_is_met_by_the_smallest_ratio_that_meets_it() -> None:
    # a plain net with wide middle layers: the search is the same on any graph (lite0's coupled channels are
    # covered above), and each of its ~12 pruning trials costs milliseconds here instead of seconds
    model = nn.Sequential(_conv(3, 32), _conv(32, 256), _conv(256, 256), _conv(256, 256), _conv(256, 32),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))
    x = torch.randn(1, 3, 16, 16)
    report = prune_model(model, x, PruneGoal(macs_fraction=0.5)).report
    assert 0.45 < report.macs_fraction <= 0.5  # not over-pruned: the search keeps as much as the target allows
    looser = prune_model(model, x, PruneGoal(ratio=report.ratio - 0.01)).report
    assert looser.macs_fraction > 0.5


def test_a_params_target_is_met_on_a_plain_conv_net() -> None:
    model = nn.Sequential(_conv(3, 16), _conv(16, 64), _conv(64, 64), _conv(64, 16),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    report = prune_model(model, torch.randn(1, 3, 16, 16), PruneGoal(params_fraction=0.5)).report
    assert 0.35 < report.params_fraction <= 0.5
    assert report.channels["1.0"][1] < 64 and report.channels["3.0"] == (16, 16)  # 3.0 feeds the classifier


def test_pruned_lite0_exports_with_dynamo_and_matches_in_onnxruntime(lite0: nn.Module, tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    pruned = prune_model(lite0, _lite0_input(), PruneGoal(ratio=0.3)).model.eval()
    x = _lite0_input()
    onnx_file = tmp_path / "pruned.onnx"
    torch.onnx.export(pruned, (x,), str(onnx_file), dynamo=True)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, pruned(x).numpy(), atol=1e-4, rtol=1e-3)


def test_pruned_state_dict_reloads_and_the_module_round_trips_through_torch_save(lite0: nn.Module) -> None:
    pruned = prune_model(lite0, _lite0_input(), PruneGoal(ratio=0.3)).model.eval()
    x = _lite0_input()
    with torch.no_grad():
        expected = pruned(x)

    twin = copy.deepcopy(pruned)
    for p in twin.parameters():
        p.data.zero_()
    twin.load_state_dict(pruned.state_dict())  # strict: every pruned shape fits the pruned module
    buffer = io.BytesIO()
    torch.save(pruned, buffer)
    buffer.seek(0)
    reloaded = torch.load(buffer, weights_only=False).eval()  # the whole pruned module, our own file
    with torch.no_grad():
        assert torch.allclose(twin(x), expected) and torch.allclose(reloaded(x), expected)


def test_train_mode_and_frozen_parameters_survive_pruning() -> None:
    model = create_model("tiny", 3, "none").train()
    for p in model.blocks.parameters():
        p.requires_grad_(False)  # a head-only fine-tune: DepGraph must still see the frozen blocks

    pruned = prune_model(model, torch.randn(2, 3, 32, 32), PruneGoal(ratio=0.5)).model

    assert pruned.training and all(m.training for m in pruned.modules())
    _assert_whole(model, pruned, ("blocks.0.0", "blocks.0.1", "classifier"))  # BN statistics did not move
    assert pruned.get_submodule("blocks.1.0").out_channels == 8
    assert not any(p.requires_grad for p in pruned.blocks.parameters())
    assert all(p.requires_grad for p in pruned.classifier.parameters())


class _NamedInputs(nn.Module):
    """A text-model-shaped forward: called as ``model(**inputs)``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 32)
        self.hidden = nn.Linear(32, 32)
        self.out = nn.Linear(32, 32)
        self.head = nn.Linear(32, 2)

    def forward(self, features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.hidden(torch.relu(self.embed(features))))
        return self.head(torch.relu(self.out(x)) * scale)


def test_named_inputs_are_passed_as_keywords() -> None:
    inputs = {"features": torch.randn(2, 4), "scale": torch.ones(2, 1)}
    result = prune_model(_NamedInputs(), inputs, PruneGoal(ratio=0.5))
    assert result.report.protected == ("embed", "head")
    assert result.report.channels["hidden"] == (32, 16)
    assert result.model(**inputs).shape == (2, 2)


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_a_ratio_outside_0_1_is_a_config_error_naming_the_field(ratio: float) -> None:
    with pytest.raises(ConfigError, match="field 'ratio'"):
        PruneGoal(ratio=ratio)


@pytest.mark.parametrize("fields", [{}, {"ratio": 0.3, "macs_fraction": 0.5}])
def test_not_exactly_one_target_is_a_config_error(fields: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="exactly one of ratio, macs_fraction, params_fraction"):
        PruneGoal(**fields)


def test_an_unknown_field_or_importance_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="field 'importance'"):
        PruneGoal(ratio=0.3, importance="random")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="field 'sparsity': unknown field"):
        PruneGoal(ratio=0.3, sparsity=0.5)  # type: ignore[call-arg]


def test_an_unknown_protected_path_is_named_with_close_matches() -> None:
    model = create_model("tiny", 3, "none")
    with pytest.raises(ConfigError, match="'clasifier' is not in the model") as err:
        prune_model(model, torch.randn(1, 3, 32, 32), PruneGoal(ratio=0.3, protected=("clasifier",)))
    assert "classifier" in str(err.value.hint)


def test_a_macs_target_below_the_floor_of_the_protected_layers_says_the_floor() -> None:
    """On tiny only blocks.1.0 can shrink (16 -> 8): about 65 % of the MACs is the floor."""
    model = create_model("tiny", 3, "none")
    with pytest.raises(ConfigError, match=r"cannot keep only 50.0% of the MACs: .*, 6\d\.\d% remain \(the floor\)"):
        prune_model(model, torch.randn(1, 3, 32, 32), PruneGoal(macs_fraction=0.5))
    report = prune_model(model, torch.randn(1, 3, 32, 32), PruneGoal(macs_fraction=0.7)).report
    assert report.macs_fraction <= 0.7


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class _Detached(nn.Module):
    """Leaves autograd: DepGraph sees nothing before it, so those layers would silently never be pruned."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = _conv(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).detach()


class _ChannelShuffle(nn.Module):
    """Hard-codes its channel count (2 groups of 8): DepGraph prunes through it and the reshape then fails."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = _conv(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, _, h, w = y.shape
        return y.view(n, 2, 8, h, w).transpose(1, 2).reshape(n, 16, h, w)


def _net_around(block: nn.Module) -> nn.Module:
    net = nn.Sequential(_conv(3, 16), _conv(16, 32), _conv(32, 16), nn.Sequential(block), _conv(16, 32), _conv(32, 16))
    return nn.Sequential(net, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


def test_a_module_that_leaves_autograd_is_named_by_its_path() -> None:
    with pytest.raises(ConfigError, match=r"cannot trace through module '0\.3\.0': its output leaves the autograd"):
        prune_model(_net_around(_Detached()), torch.randn(1, 3, 16, 16), PruneGoal(ratio=0.5))


def test_a_module_that_hard_codes_channels_is_named_and_protecting_it_works() -> None:
    model = _net_around(_ChannelShuffle())
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ConfigError, match=r"cannot follow the channels through module '0\.3\.0'") as err:
        prune_model(model, x, PruneGoal(ratio=0.5))
    assert "add '0.3.0' to protected" in str(err.value.hint)

    result = prune_model(model, x, PruneGoal(ratio=0.5, protected=("0.0.0", "0.3.0", "3")))
    assert result.report.channels["0.1.0"] == (32, 16) and result.report.channels["0.4.0"] == (32, 16)
    _assert_whole(model, result.model, ("0.3.0",))
    assert result.model(x).shape == (1, 4)


# --- the measurement behind the default importance --------------------------------------------------------------


@pytest.mark.slow
def test_layer_importance_keeps_imagenet_logits_closer_than_global_on_lite0(shared_dir: Path) -> None:
    """Real lite0 weights, 64 hymenoptera val images: the pruned model's ImageNet logits against the unpruned ones.

    The 1000-class head is protected like the 5-class one, so at the same ratio its backbone prunes identically
    (asserted below). Run: ``pytest tests/compress -m slow -k importance -s``.
    """
    import torch.nn.functional as F

    from edgetl.backbones.efficientnet_lite import imagenet_model
    from edgetl.data import Preprocess, load_image, preprocess_image, to_rgb

    val = shared_dir / "datasets" / "hymenoptera" / "val"
    paths = sorted((val / "ants").iterdir())[:32] + sorted((val / "bees").iterdir())[:32]
    pp = Preprocess.make(224, 0.875, (0.498,) * 3, (0.502,) * 3, "bicubic")
    batch = torch.stack([torch.from_numpy(preprocess_image(to_rgb(load_image(p)), pp)) for p in paths])
    imagenet = imagenet_model()
    five = create_model("efficientnet_lite0", 5, "default").eval()
    x = _lite0_input()
    with torch.no_grad():
        reference = imagenet(batch)

    rows: dict[str, tuple[float, float, float]] = {}
    for goal in (PruneGoal(ratio=0.3, importance="layer"), PruneGoal(ratio=0.3, importance="global"),
                 PruneGoal(ratio=0.05, importance="layer"), PruneGoal(ratio=0.05, importance="global"),
                 PruneGoal(macs_fraction=0.9, importance="layer"), PruneGoal(macs_fraction=0.9, importance="global")):
        head5 = prune_model(five, x, goal)  # MACs as deployed (5 classes); the same ratio for the 1000-class twin
        pruned = prune_model(imagenet, x, PruneGoal(ratio=head5.report.ratio, importance=goal.importance)).model.eval()
        backbone = {k: v for k, v in head5.model.state_dict().items() if not k.startswith("classifier.")}
        assert all(torch.equal(v, pruned.state_dict()[k]) for k, v in backbone.items())
        with torch.no_grad():
            logits = pruned(batch)
        agreement = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
        kl = F.kl_div(F.log_softmax(logits, 1), F.log_softmax(reference, 1), log_target=True, reduction="batchmean")
        label = f"{goal.importance} ratio {head5.report.ratio:.3f}"
        rows[label] = (head5.report.macs_fraction, agreement, kl.item())
        print(f"{label}: MACs left {head5.report.macs_fraction:.3f}, top-1 agreement {agreement:.3f}, KL {kl:.2f}")

    layer = [v for k, v in rows.items() if k.startswith("layer")]
    global_ = [v for k, v in rows.items() if k.startswith("global")]
    assert layer[-1][1] > global_[-1][1] and layer[-1][2] < global_[-1][2]  # at the same 90 % MACs
