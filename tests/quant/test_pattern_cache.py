"""The pattern-graph cache: torchao's conv-BatchNorm pattern graphs are traced once per process, and a QAT model
converted with them is the one converted without them."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _qat_convert(model, x):  # type: ignore[no-untyped-def]
    import copy

    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    from edgetl.quant import QuantizerOptions, make_quantizer
    from edgetl.quant.pt2e import capture

    prepared = prepare_qat_pt2e(capture(copy.deepcopy(model), x, stage="test", what="model").module(),
                                make_quantizer(QuantizerOptions(qat=True)))
    prepared(x)  # train mode: updates the BatchNorm statistics of what it was captured from (hence the copy)
    return convert_pt2e(prepared)


def test_cached_patterns_convert_to_the_same_model_and_are_traced_once(monkeypatch):
    import torchao.quantization.pt2e.qat_utils as qat_utils
    import torchao.quantization.pt2e.utils as utils

    from edgetl.backbones import create_model
    from edgetl.quant import pt2e

    torch.manual_seed(0)
    model = create_model("tiny", 3, weights="none")
    x = torch.randn(4, 3, 32, 32)
    original = getattr(utils._get_aten_graph_module_for_pattern, "__wrapped__",
                       utils._get_aten_graph_module_for_pattern)
    # uncached reference: torchao's own helper, whatever an earlier test installed
    monkeypatch.setattr(utils, "_get_aten_graph_module_for_pattern", original)
    monkeypatch.setattr(qat_utils, "_get_aten_graph_module_for_pattern", original)
    fold = qat_utils._fold_conv_bn_qat_helper
    monkeypatch.setattr(qat_utils, "_fold_conv_bn_qat_helper", getattr(fold, "__wrapped__", fold))
    monkeypatch.setattr(pt2e, "install_pattern_cache", lambda: False)
    reference = _qat_convert(model, x)
    monkeypatch.undo()

    traced = []

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        traced.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(utils, "_get_aten_graph_module_for_pattern", counting)
    monkeypatch.setattr(qat_utils, "_get_aten_graph_module_for_pattern", counting)
    monkeypatch.setattr(pt2e, "_PATTERN_CACHE", {})
    monkeypatch.setattr(qat_utils, "_fold_conv_bn_qat_helper", getattr(fold, "__wrapped__", fold))
    assert pt2e.install_pattern_cache()
    first = _qat_convert(model, x)
    after_first = len(traced)
    second = _qat_convert(model, x)
    assert after_first > 0 and len(traced) == after_first  # the second prepare + convert traced nothing
    with torch.no_grad():
        assert torch.equal(first(x), reference(x)) and torch.equal(second(x), reference(x))
    assert first.code == reference.code
