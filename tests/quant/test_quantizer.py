"""edgetl's PT2E quantizer: which layers end up int8, and what stays float on request."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _ptq(model, options):  # type: ignore[no-untyped-def]
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgetl.quant import make_quantizer
    from edgetl.quant.pt2e import capture

    x = torch.randn(4, 3, 32, 32)
    quantizer = make_quantizer(options)
    prepared = prepare_pt2e(capture(model, x, stage="test", what="model").module(), quantizer)
    with torch.no_grad():
        prepared(x)
    return convert_pt2e(prepared), quantizer


def test_every_conv_and_linear_of_the_tiny_net_is_int8_with_uint8_activations():
    from edgetl.backbones import create_model
    from edgetl.quant import QuantizerOptions, count_quantized_layers

    converted, quantizer = _ptq(create_model("tiny", 3, weights="none").eval(), QuantizerOptions())
    assert count_quantized_layers(converted) == {"int8": 4, "float": 0}
    assert quantizer.kept_float == []
    act_dtypes = {n.args[-1] for n in converted.graph.nodes
                  if n.op == "call_function" and "quantize_per_tensor" in str(n.target)}
    assert act_dtypes == {torch.uint8}


def test_keep_first_and_last_in_float():
    from edgetl.backbones import create_model
    from edgetl.quant import QuantizerOptions, count_quantized_layers

    model = create_model("tiny", 3, weights="none").eval()
    converted, quantizer = _ptq(model, QuantizerOptions(keep_first_fp=True, keep_last_fp=True))
    assert count_quantized_layers(converted) == {"int8": 2, "float": 2}
    assert [(k["kind"], k["reason"]) for k in quantizer.kept_float] == [("conv", "keep_first_fp"),
                                                                         ("linear", "keep_last_fp")]


@pytest.mark.parametrize("weight_max", [127, 63])
def test_weight_range_bounds_every_int8_weight(weight_max):
    """The reduced range (CPUs without VNNI) keeps every stored int8 weight within -63..63."""
    from edgetl.backbones import create_model
    from edgetl.quant import QuantizerOptions

    converted, _ = _ptq(create_model("tiny", 3, weights="none").eval(), QuantizerOptions(weight_max=weight_max))
    bounds = {(n.args[-3], n.args[-2]) for n in converted.graph.nodes
              if n.op == "call_function" and "quantize_per_channel" in str(n.target)}
    assert bounds == {(-weight_max, weight_max)}


def test_reduced_range_spares_depthwise_convolutions():
    """Only dense convs and linears saturate u8 x s8 pairwise sums; a depthwise conv keeps -127..127."""
    from torch import nn

    from edgetl.quant import QuantizerOptions

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.ReLU(), nn.Conv2d(8, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    converted, _ = _ptq(model, QuantizerOptions(weight_max=63))
    bounds = []
    for node in converted.graph.nodes:
        if node.op == "call_function" and ("conv" in str(node.target) or "linear" in str(node.target)):
            dequant = node.args[1]
            assert "dequantize_per_channel" in str(dequant.target)
            bounds.append((dequant.args[-3], dequant.args[-2]))
    assert bounds == [(-63, 63), (-127, 127), (-63, 63), (-63, 63)]
