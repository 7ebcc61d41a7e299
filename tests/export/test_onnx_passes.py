"""Folding TF-"same" Pad ops into convs: exact in fp32 and int8 QDQ graphs, and fewer ops in ONNX Runtime."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _padded_net():  # type: ignore[no-untyped-def]
    from torch import nn

    class SamePad(nn.Module):  # what timm's Conv2dSame does for a stride-2 3x3 conv on even inputs
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, 2, bias=False)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.relu(self.bn(self.conv(nn.functional.pad(x, (0, 1, 0, 1)))))

    torch.manual_seed(0)
    return nn.Sequential(SamePad(3, 8), SamePad(8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def _export(model, path: Path) -> Path:  # type: ignore[no-untyped-def]
    from edgetl.quant.pt2e import batch_dim

    program = torch.onnx.export(model, (torch.randn(2, 3, 16, 16),), dynamo=True, input_names=["input"],
                                dynamic_shapes=batch_dim(True), verbose=False)
    program.save(str(path))
    return path


def _ort(path: Path, x: np.ndarray) -> tuple[np.ndarray, Counter]:
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x})[0]
    return out, Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def test_fold_pads_into_a_float_conv_is_exact(tmp_path):
    # the dynamo exporter's own optimizer already folds Pad -> Conv in float graphs; a hand-made one checks ours
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgetl.export.onnx_passes import fold_pads

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64), "pads")
    graph = helper.make_graph(
        [helper.make_node("Pad", ["input", "pads"], ["padded"], mode="constant"),
         helper.make_node("Conv", ["padded", "w"], ["out"], strides=[2, 2])],
        "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 4, 8, 8])], [weight, pads])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.save(proto, str(tmp_path / "model.onnx"))
    assert fold_pads(proto) == 1
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp_path / "folded.onnx"))
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    before, _ = _ort(tmp_path / "model.onnx", x)
    after, ops = _ort(tmp_path / "folded.onnx", x)
    assert ops["Pad"] == 0
    np.testing.assert_allclose(after, before, atol=1e-5)


@pytest.mark.parametrize("int8", [True], ids=["int8"])
def test_fold_pads_is_exact_and_removes_every_pad(tmp_path, int8):
    import onnx
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgetl.export.onnx_passes import fold_pads
    from edgetl.quant import QuantizerOptions, make_quantizer
    from edgetl.quant.pt2e import capture

    model = _padded_net()
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    if int8:
        prepared = prepare_pt2e(capture(model, torch.from_numpy(x), stage="test", what="net").module(),
                                make_quantizer(QuantizerOptions()))
        prepared(torch.from_numpy(x))
        model = convert_pt2e(prepared)
    original = _export(model, tmp_path / "model.onnx")
    proto = onnx.load(str(original))
    assert sum(n.op_type == "Pad" for n in proto.graph.node) == 2
    assert fold_pads(proto) == 2
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp_path / "folded.onnx"))
    before, _ = _ort(original, x)
    after, ops = _ort(tmp_path / "folded.onnx", x)
    assert ops["Pad"] == 0
    np.testing.assert_allclose(after, before, atol=1e-5 if not int8 else 0.0)
    if int8:
        assert ops["QLinearConv"] == 2
