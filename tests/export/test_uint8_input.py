"""The uint8-input variant's graph surgery on hand-made ONNX models: same logits from raw pixels, int8 stays int8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SIZE = 12
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _conv_model(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n)
             for n, s in {"w": (8, 3, 3, 3), "fc": (4, 8)}.items()]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            ["batch", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _front():  # type: ignore[no-untyped-def]
    from edgetl.artifacts import ModelIO, TensorSpec
    from edgetl.tasks import get_task

    io = ModelIO(inputs=(TensorSpec(name="input", shape=(None, 3, SIZE, SIZE), dynamic_axes={0: "batch"}),),
                 outputs=(TensorSpec(name="logits", shape=(None, 4), dynamic_axes={0: "batch"}),))
    pp = {"image_size": SIZE, "resize_size": SIZE, "mean": MEAN, "std": STD}
    return get_task("image_classification").pixel_front(io, pp), pp


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_the_variant_takes_uint8_nhwc_and_gives_the_float_models_logits(tmp_path: Path) -> None:
    from edgetl.data import Preprocess, normalise_pixels
    from edgetl.export.uint8_input import write_uint8_variant

    front, pp = _front()
    assert front.io.inputs[0].dtype == "uint8" and front.io.inputs[0].shape == (None, SIZE, SIZE, 3)
    src = _conv_model(tmp_path / "model.onnx")
    dst = tmp_path / "model_uint8.onnx"
    write_uint8_variant(src, dst, front, {"task": "image_classification"})
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(uint8)", ["batch", SIZE, SIZE, 3])
    pixels = np.random.default_rng(1).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    floats = np.stack([normalise_pixels(p, Preprocess.model_validate(pp)) for p in pixels])
    np.testing.assert_array_equal(_run(dst, pixels), _run(src, floats))  # the same floats reach the conv
    meta = {p.key: p.value for p in onnx.load(str(dst)).metadata_props}
    assert json.loads(meta["inputs"])[0] == {"name": "input", "shape": [None, SIZE, SIZE, 3], "dtype": "uint8",
                                             "dynamic_axes": {"0": "batch"}}
    described = json.loads(meta["input_preprocessing"])
    assert described["input_layout"] == "NHWC" and described["mean"] == list(MEAN) and meta["task"]


def test_an_int8_qdq_model_keeps_every_conv_and_gemm_in_int8(tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgetl.export.uint8_input import write_uint8_variant
    from edgetl.runtimes import RUNTIMES

    src = _conv_model(tmp_path / "model.onnx")
    batches = iter([{"input": np.random.default_rng(i).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)}
                    for i in range(4)])

    class Reader(CalibrationDataReader):
        def get_next(self):  # type: ignore[no-untyped-def]
            return next(batches, None)

    int8 = tmp_path / "model_int8.onnx"
    quantize_static(str(src), str(int8), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    front, _ = _front()
    variant = tmp_path / "model_int8_uint8.onnx"
    write_uint8_variant(int8, variant, front, {})
    counts = {}
    for name, path in (("float input", int8), ("uint8 input", variant)):
        session = RUNTIMES.get("onnxruntime").load(path, "cpu", "int8", 1)
        counts[name] = session.op_counts()
        session.close()
    assert counts["uint8 input"].int8 == counts["float input"].int8 and counts["uint8 input"].int8_total == 2
    assert counts["uint8 input"].float_total == 0


def test_a_model_without_the_named_input_is_an_export_error(tmp_path: Path) -> None:
    from edgetl.errors import ExportError
    from edgetl.export.uint8_input import PixelFront, write_uint8_variant

    front, _ = _front()
    other = PixelFront(input_name="pixels", io=front.io, scale=front.scale, mean=front.mean, std=front.std)
    with pytest.raises(ExportError, match="has no input 'pixels'"):
        write_uint8_variant(_conv_model(tmp_path / "m.onnx"), tmp_path / "v.onnx", other, {})
    assert not (tmp_path / "v.onnx").exists()


def test_text_tasks_have_no_uint8_variant() -> None:
    from edgetl.artifacts import ModelIO, TensorSpec
    from edgetl.tasks import get_task

    io = ModelIO(inputs=(TensorSpec(name="input_ids", shape=(None, None), dtype="int64"),),
                 outputs=(TensorSpec(name="logits", shape=(None, 2)),))
    assert get_task("text_classification").pixel_front(io, {}) is None
