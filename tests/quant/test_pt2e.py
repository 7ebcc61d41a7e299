"""torch.export / PT2E plumbing: capture with named inputs and dynamic axes, BatchNorm eps, programs on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.quant.builders import quantized_run

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return quantized_run(tmp_path_factory)


def test_truncated_program_is_a_model_file_error(run, tmp_path):
    from edgetl.errors import ModelFileError
    from edgetl.quant.pt2e import load_program

    blob = (run / "quantize" / "qat.pt2").read_bytes()
    bad = tmp_path / "qat.pt2"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_program(bad)


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


def test_named_inputs_share_one_dim_per_axis_name():
    from edgetl.artifacts import ModelIO, TensorSpec
    from edgetl.quant.pt2e import capture, dynamic_shapes_for

    class Pair(torch.nn.Module):
        def forward(self, ids, mask):  # type: ignore[no-untyped-def]
            return (ids.float() * mask.float()).sum(1, keepdim=True)

    axes = {0: "batch", 1: "sequence"}
    io = ModelIO(inputs=(TensorSpec(name="ids", shape=(None, None), dtype="int64", dynamic_axes=axes),
                         TensorSpec(name="mask", shape=(None, None), dtype="int64", dynamic_axes=axes)),
                 outputs=(TensorSpec(name="out", shape=(None, 1)),))
    example = {"ids": torch.ones(2, 5, dtype=torch.long), "mask": torch.ones(2, 5, dtype=torch.long)}
    shapes = dynamic_shapes_for(example, io)
    assert shapes[0][0] is shapes[1][0] and shapes[0][1] is shapes[1][1]
    module = capture(Pair(), example, stage="test", what="pair", io=io).module()
    assert module(torch.ones(3, 7, dtype=torch.long), torch.ones(3, 7, dtype=torch.long)).shape == (3, 1)


def test_the_judge_scores_a_static_export_exactly_as_the_dynamic_one(run, monkeypatch):
    """``ort_logits`` exports images at one static batch (shorter batches padded, their extra rows dropped): the
    logits equal those of the dynamic-batch export, bit for bit. Inputs whose other axes vary stay dynamic."""
    import numpy as np

    import edgetl.quant.judge as judge
    from edgetl.quant.pt2e import load_program

    module = load_program(run / "quantize" / "ptq.pt2").module()
    rng = np.random.default_rng(0)
    batches = [({"input": rng.standard_normal((n, 3, 32, 32)).astype(np.float32)}, np.zeros(n, dtype=np.int64))
               for n in (4, 4, 3)]
    example = {"input": torch.randn(2, 3, 32, 32)}
    static = judge.ort_logits(module, example, None, batches, opset=20)
    assert judge._static_batch(batches) == 0 and [len(a) for a in static] == [4, 4, 3]
    monkeypatch.setattr(judge, "_static_batch", lambda b: None)
    dynamic = judge.ort_logits(module, example, None, batches, opset=20)
    for s, d in zip(static, dynamic, strict=True):
        np.testing.assert_array_equal(s, d)
    monkeypatch.undo()
    ragged = [({"ids": np.zeros((2, 5))}, np.zeros(2)), ({"ids": np.zeros((2, 7))}, np.zeros(2))]
    assert judge._static_batch(ragged) is None and judge._static_batch([]) is None
