"""The ONNX Runtime int8 route of text encoders (edgetl.export.text_int8) on a tiny random BERT."""

from __future__ import annotations

import collections

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from edgetl.backbones import create_model
    from edgetl.export.text_int8 import write_dynamic_int8

    torch.manual_seed(0)
    model = create_model("tiny_bert", 2, "none").eval()
    out = tmp_path_factory.mktemp("text_int8")
    fused = write_dynamic_int8(model, out / "dyn.onnx", {"task": "text_classification"}, out)
    return model, out / "dyn.onnx", fused


def test_the_fused_graph_is_int8_attention_matmuls_and_embeddings(tiny):
    import onnx

    _, path, fused = tiny
    assert fused["Attention"] == 2 and fused["EmbedLayerNormalization"] == 1  # tiny_bert: 2 layers
    proto = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    assert ops["QAttention"] == 2 and ops["QEmbedLayerNormalization"] == 1
    assert ops["MatMul"] == 0 and ops["Gemm"] == 0  # every linear, the classifier too, has int8 weights
    assert {p.key: p.value for p in proto.metadata_props}["task"] == "text_classification"
    assert not (path.parent / "eager_fp32.onnx").exists() and not (path.parent / "fused_fp32.onnx").exists()


def test_int8_proof_counts_qattention_and_dynamic_matmuls(tiny):
    from edgetl.runtimes import RUNTIMES

    _, path, _ = tiny
    session = RUNTIMES.get("onnxruntime").load(path, "cpu", "int8", 1)
    try:
        counts = session.op_counts()
    finally:
        session.close()
    # per layer: QAttention (q, k, v in one int8 matmul), attention output, intermediate, output; + the classifier
    assert counts.int8["matmul"] == 2 * 4 + 1
    assert counts.float["matmul"] == 0


def test_sequence_length_and_padding_are_dynamic_and_match_torch(tiny):
    import torch

    from edgetl.runtimes import RUNTIMES

    model, path, _ = tiny
    session = RUNTIMES.get("onnxruntime").load(path, "cpu", "int8", 1)
    rng = np.random.default_rng(0)
    try:
        for length in (7, 29):
            ids = rng.integers(5, 100, size=(3, length), dtype=np.int64)
            mask = np.ones_like(ids)
            mask[2, length // 2:] = 0
            got = np.asarray(session.run({"input_ids": ids, "attention_mask": mask}))
            with torch.inference_mode():
                want = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            assert got.shape == (3, 2)
            assert np.abs(got - want).max() < 0.3, length
    finally:
        session.close()


def test_weight_matmuls_leave_out_the_attention_matmuls(tmp_path):
    import torch

    from edgetl.backbones import create_model
    from edgetl.backbones.text import export_text_onnx
    from edgetl.export.text_int8 import weight_matmuls

    torch.manual_seed(0)
    model = create_model("tiny_bert", 2, "none").eval()
    model.encoder.config._attn_implementation = "eager"
    export_text_onnx(model, tmp_path / "eager.onnx")
    names = weight_matmuls(tmp_path / "eager.onnx")
    assert len(names) == 2 * 6 + 1  # q, k, v, attention output, intermediate, output per layer; the classifier


def test_an_unfusable_graph_is_an_export_error(tmp_path):
    import torch

    from edgetl.backbones import create_model
    from edgetl.backbones.text import export_text_onnx
    from edgetl.errors import ExportError
    from edgetl.export.text_int8 import fuse_bert

    torch.manual_seed(0)
    model = create_model("tiny_bert", 2, "none").eval()
    model.encoder.config._attn_implementation = "sdpa"  # SDPA's exported pattern is not one the fusion knows
    export_text_onnx(model, tmp_path / "sdpa.onnx")
    with pytest.raises(ExportError, match="found 0 of 2 attention blocks"):
        fuse_bert(tmp_path / "sdpa.onnx", tmp_path / "fused.onnx", model.encoder.config)


def test_the_openvino_route_runs_its_linears_in_int8_with_the_group_the_ir_states(tiny, tmp_path):
    import openvino as ov
    import torch

    from edgetl.backbones.text import export_text_onnx
    from edgetl.export.text_int8 import OPENVINO_DYNAMIC_GROUP, weight_matmuls, write_openvino_dynamic_int8
    from edgetl.runtimes import RUNTIMES

    model, _, _ = tiny
    fp32 = export_text_onnx(model, tmp_path / "fp32.onnx")
    xml = tmp_path / "openvino" / "dyn.xml"
    count = write_openvino_dynamic_int8(fp32, xml, tmp_path)
    assert count == len(weight_matmuls(fp32)) > 0
    assert not (tmp_path / "weight_only_int8.onnx").exists()  # the intermediate is gone
    # every weight and the embedding tables are int8: about a quarter of the float file
    assert xml.with_suffix(".bin").stat().st_size < 0.35 * fp32.stat().st_size
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE") == OPENVINO_DYNAMIC_GROUP  # from the IR
    session = RUNTIMES.get("openvino").load(xml, "CPU", "int8", 1)
    rng = np.random.default_rng(0)
    for length in (7, 23):  # the sequence axis stays dynamic
        ids = rng.integers(5, 100, size=(1, length), dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        with torch.no_grad():
            want = model(torch.from_numpy(ids), torch.from_numpy(feed["attention_mask"])).numpy()
        np.testing.assert_allclose(session.run(feed), want, atol=0.05)
    counts = session.op_counts()
    assert counts.int8["matmul"] >= count  # the proof: the linears run as i8 FullyConnected
