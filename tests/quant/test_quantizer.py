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


def test_untraceable_model_is_an_export_error_naming_the_stage():
    from edgetl.errors import ExportError
    from edgetl.quant.pt2e import capture

    class DataDependent(torch.nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(ExportError, match="quantize: cannot export the model"):
        capture(DataDependent(), torch.randn(2, 3, 8, 8), stage="quantize", what="the model")


def test_qat_graph_computes_the_float_model_when_batchnorm_eps_is_not_the_default():
    """torchao's QAT conv+BN pattern assumes eps 1e-5; the TF-ported EfficientNet-Lite uses 1e-3."""
    from torch import nn
    from torchao.quantization.pt2e import FakeQuantizeBase, move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from edgetl.quant import QuantizerOptions, make_quantizer
    from edgetl.quant.pt2e import capture, match_qat_batchnorm_eps

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, eps=1e-3), nn.ReLU(), nn.Conv2d(8, 4, 1),
                          nn.BatchNorm2d(4, eps=1e-3))
    for bn in (model[1], model[4]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(1e-4, 1e-2)  # small variances: where the eps matters
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    expected = model(x).detach()

    def qat_graph_output(m: nn.Module) -> torch.Tensor:
        prepared = prepare_qat_pt2e(capture(m, x, stage="test", what="m").module(),
                                    make_quantizer(QuantizerOptions(qat=True)))
        move_exported_model_to_eval(prepared)
        for fq in prepared.modules():
            if isinstance(fq, FakeQuantizeBase):
                fq.disable_fake_quant()
                fq.disable_observer()
        return prepared(x).detach()

    import copy

    assert (qat_graph_output(copy.deepcopy(model)) - expected).abs().max() > 1e-2  # the mismatch this guards
    assert match_qat_batchnorm_eps(model) == 2
    assert torch.allclose(model(x), expected, atol=1e-5)  # the float model computes the same function
    assert torch.allclose(qat_graph_output(model), expected, atol=1e-4)
