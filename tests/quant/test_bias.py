"""Bias correction of a converted PT2E model (``edgetl.quant.bias``) on the tiny backbone."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ptq():  # type: ignore[no-untyped-def]
    from edgetl.backbones import create_model
    from edgetl.config import BuildConfig
    from edgetl.stages.quantize import FLOAT_WEIGHTS, run_ptq

    torch.manual_seed(0)
    model = create_model("tiny", 3, weights="none").eval()
    cfg = BuildConfig().with_overrides({"train.backbone": "tiny", "quantize.fallback.enabled": True,
                                        "quantize.bias_correction": False})  # the uncorrected model
    calibration = [{"x": torch.randn(8, 3, 32, 32)} for _ in range(3)]
    converted, _, report = run_ptq(cfg, model, (torch.randn(2, 3, 32, 32),), calibration)
    return model, converted, report[FLOAT_WEIGHTS], [tuple(b.values()) for b in calibration]


def test_the_float_reference_is_the_float_model(ptq):
    from edgetl.quant.bias import float_reference

    model, converted, weights, _ = ptq
    x = torch.randn(4, 3, 32, 32)
    assert (float_reference(converted, weights)(x) - model(x)).abs().max() < 1e-5
    assert (converted(x) - model(x)).abs().max() > 1e-4  # the int8 model itself is not


def test_a_planted_weight_error_is_absorbed_by_the_bias(ptq):
    """int8 weights moved off their float values shift the layer's mean output; the correction removes that shift.
    A bias moved by hand is not quantization's doing (the float reference has it too) and stays."""
    import copy

    from edgetl.quant.bias import _channel_means, correct_biases, float_reference
    from edgetl.quant.mixed import _fetch

    _, converted, weights, batches = ptq
    planted = copy.deepcopy(converted)
    node = next(n for n in planted.graph.nodes if n.name == "conv2d_1")
    int8 = _fetch(planted, str(node.args[1].args[0].target))  # the weight's int8 constant
    int8.copy_((int8.to(torch.int16) + 6).clamp(-127, 127).to(int8.dtype))
    bias = _fetch(planted, str(node.args[2].target))
    with torch.no_grad():
        bias += 0.5
    _, plain = correct_biases(converted, weights, batches)
    fixed, report = correct_biases(planted, weights, batches)
    assert report["layers"] == 4 and report["skipped_without_bias"] == 0
    assert report["mean_abs_shift"] > 5 * plain["mean_abs_shift"]  # the planted error shows

    # measured again, from outside: every layer's mean output per channel against the float model's
    names = {n.name for n in fixed.graph.nodes if n.name in weights}
    reference = _channel_means(float_reference(planted, weights), names, batches)

    def distance(model):  # type: ignore[no-untyped-def]
        means = _channel_means(model, names, batches)
        return max(float((reference[n] - means[n]).abs().max()) for n in names)

    assert distance(fixed) < 1e-4 < 0.01 * distance(planted)
    moved = _fetch(fixed, str(node.args[2].target)) - bias
    assert moved.abs().mean() > 0.01  # the bias took the shift
    assert (bias - _fetch(converted, str(node.args[2].target))).min() > 0.49  # its input model is not changed


def test_the_ptq_stage_applies_it_when_asked(tmp_path):
    from edgetl.backbones import create_model
    from edgetl.config import BuildConfig
    from edgetl.quant.mixed import _fetch
    from edgetl.stages.quantize import run_ptq

    torch.manual_seed(0)
    model = create_model("tiny", 3, weights="none").eval()
    calibration = [{"x": torch.randn(8, 3, 32, 32)} for _ in range(2)]
    biases = {}
    for on in (False, True):
        cfg = BuildConfig().with_overrides({"train.backbone": "tiny", "quantize.bias_correction": on})
        converted, _, report = run_ptq(cfg, model, (torch.randn(2, 3, 32, 32),), calibration)
        assert ("bias_correction" in report) == on
        biases[on] = _fetch(converted, "classifier.bias").detach().clone()
    assert not torch.equal(biases[False], biases[True])


def test_a_reverted_layer_takes_back_its_uncorrected_bias(ptq):
    """Its correction made up for its int8 weights; once the fallback puts it back in float, that bias is wrong."""
    from edgetl.quant.bias import correct_biases, layer_biases
    from edgetl.quant.mixed import _fetch, quantized_layers, revert_layers

    _, converted, weights, batches = ptq
    fixed, _ = correct_biases(converted, weights, batches)
    original = layer_biases(converted, set(weights))
    layer = quantized_layers(fixed)[1]
    for biases, expected in ((original, original[layer.node]), (None, layer_biases(fixed, {layer.node})[layer.node])):
        reverted = revert_layers(fixed, weights, [layer], biases)
        node = next(n for n in reverted.graph.nodes if n.name == layer.node)
        assert torch.equal(_fetch(reverted, str(node.args[2].target)), expected)
    assert not torch.equal(original[layer.node], layer_biases(fixed, {layer.node})[layer.node])
