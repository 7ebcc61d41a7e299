"""Runtime adapters: what they offer on this host, what they refuse, and that they agree on a tiny model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgetl.errors import ModelFileError, RuntimeUnavailableError, UnknownNameError
from edgetl.runtimes import RUNTIMES, model_format, open_model
from tests.benchmarking import SIZE, convert_ir, export_onnx, tiny_model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    model = tiny_model(4)
    onnx_path = export_onnx(model, root / "tiny.onnx")
    return {"onnx": onnx_path, "xml": convert_ir(onnx_path, root / "ir" / "tiny.xml")}


def _batch(n: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 3, SIZE, SIZE), dtype=np.float32)


def test_registry_names_and_aliases() -> None:
    assert set(RUNTIMES.names()) == {"torch", "onnxruntime", "openvino", "tensorrt"}
    assert RUNTIMES.get("ort") is RUNTIMES.get("onnxruntime")
    with pytest.raises(UnknownNameError, match="did you mean 'openvino'"):
        RUNTIMES.get("openvno")


def test_host_cpu_runtimes_are_available() -> None:
    assert RUNTIMES.get("onnxruntime").available("cpu") == (True, "")
    assert RUNTIMES.get("openvino").available("CPU") == (True, "")
    assert RUNTIMES.get("torch").available("cpu") == (True, "")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_missing_tensorrt_is_a_reason_with_an_install_hint() -> None:
    ok, reason = RUNTIMES.get("tensorrt").available("gpu")
    assert not ok
    assert "not installed" in reason and "pip install tensorrt" in reason


def test_missing_device_names_what_the_host_has() -> None:
    ok, reason = RUNTIMES.get("openvino").available("NPU")
    if "NPU" in RUNTIMES.get("openvino").devices():
        pytest.skip("this host has an NPU")
    assert not ok and "no NPU device" in reason and "CPU" in reason


def test_onnxruntime_and_openvino_agree_on_fp32(models: dict[str, Path]) -> None:
    x = _batch(3)
    ort_logits = open_model(models["onnx"], threads=1).run({"input": x})
    ov_session = open_model(models["xml"], threads=1)
    ov_logits = ov_session.run({"input": x})
    assert ort_logits.shape == ov_logits.shape == (3, 4)
    np.testing.assert_allclose(ort_logits, ov_logits, atol=1e-4)
    # batch 1 after batch 3: the dynamic-batch IR is recompiled for each size it sees
    np.testing.assert_allclose(ov_session.run({"input": x[:1]}), ort_logits[:1], atol=1e-4)


def test_openvino_reads_shared_inputs_and_copies_the_rest(models: dict[str, Path], tmp_path: Path) -> None:
    """Writeable float32 inputs are handed over without a copy; read-only, strided or float64 ones are copied."""
    import gc

    x = _batch(2)
    reference = open_model(models["onnx"], threads=1).run({"input": x})
    session = open_model(models["xml"], threads=1)
    np.save(tmp_path / "x.npy", x)
    read_only = np.load(tmp_path / "x.npy", mmap_mode="r")  # as the evaluation memory maps are
    strided = np.concatenate([x, x], axis=3)[:, :, :, :SIZE]
    for array in (x.copy(), read_only, strided, x.astype(np.float64)):
        np.testing.assert_allclose(session.run({"input": array}), reference, atol=1e-4)
    shared = x.copy()
    session.run({"input": shared})
    np.testing.assert_array_equal(shared, x)  # the caller's array is read, never written
    first = session.run({"input": _batch(2) * 0 + x})  # a temporary: the session keeps it alive while it is set
    gc.collect()
    np.testing.assert_allclose(first, reference, atol=1e-4)
    np.testing.assert_allclose(session.run({"input": x[:1].copy()}), reference[:1], atol=1e-4)


def test_openvino_repeated_input_array_is_read_afresh_each_run(models: dict[str, Path]) -> None:
    """The same array object twice is not handed over again (a benchmark's loop), but what it holds now is read:
    a shared array through its memory, a copied one (float64) by copying it again."""
    x, y = _batch(2), _batch(2)[:, ::-1].copy()
    ort = open_model(models["onnx"], threads=1)
    want_x, want_y = ort.run({"input": x}), ort.run({"input": y})
    assert not np.allclose(want_x, want_y, atol=1e-3)
    session = open_model(models["xml"], threads=1)
    for array in (x.copy(), x.astype(np.float64)):
        np.testing.assert_allclose(session.run({"input": array}), want_x, atol=1e-4)
        array[...] = y  # in place: the same object, other pixels
        np.testing.assert_allclose(session.run({"input": array}), want_y, atol=1e-4)
        np.testing.assert_allclose(session.run({"input": x}), want_x, atol=1e-4)  # another array again


def test_openvino_fp32_is_really_f32_not_the_bf16_default(models: dict[str, Path]) -> None:
    session = RUNTIMES.get("openvino").load(models["xml"], "CPU", "fp32", threads=1)
    assert session.settings["INFERENCE_PRECISION_HINT"] == "f32"
    assert "32" in session.settings["effective_inference_precision"]
    assert session.threads == 1


def test_openvino_bf16_is_its_own_setting(models: dict[str, Path]) -> None:
    session = RUNTIMES.get("openvino").load(models["xml"], "CPU", "bf16", threads=1)
    assert session.settings["INFERENCE_PRECISION_HINT"] == "bf16"
    assert session.run({"input": _batch(1)}).shape == (1, 4)


def test_onnxruntime_records_threads(models: dict[str, Path]) -> None:
    session = RUNTIMES.get("onnxruntime").load(models["onnx"], "cpu", "fp32", threads=1)
    assert session.settings["intra_op_num_threads"] == 1
    assert session.input_shape == (None, 3, SIZE, SIZE)


def test_truncated_onnx_is_a_model_file_error(models: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(models["onnx"].read_bytes()[: 300])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        open_model(bad)


def test_garbage_ir_is_a_model_file_error(models: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<net><layers>")
    bad.with_suffix(".bin").write_bytes(b"\0" * 16)
    with pytest.raises(ModelFileError, match="not a readable OpenVINO IR"):
        open_model(bad)


def test_ir_without_its_bin_is_a_model_file_error(models: dict[str, Path], tmp_path: Path) -> None:
    lone = tmp_path / "lone.xml"
    lone.write_bytes(models["xml"].read_bytes())
    with pytest.raises(ModelFileError, match=r"lone\.bin is missing"):
        open_model(lone)


def test_unknown_suffix_and_unavailable_device() -> None:
    with pytest.raises(ModelFileError, match="unknown model format"):
        model_format("model.tflite")
    with pytest.raises(RuntimeUnavailableError):
        open_model("x.onnx", runtime="onnxruntime", device="coreml")


def test_metadata_classes_and_preprocess_survive_onnx_to_ir(tmp_path: Path) -> None:
    import json

    from edgetl.runtimes.metadata import model_classes, model_preprocess, read_metadata

    pp = {"image_size": SIZE, "resize_size": SIZE, "mean": [0.5] * 3, "std": [0.5] * 3}
    onnx_path = export_onnx(tiny_model(2), tmp_path / "m.onnx",
                            {"classes": json.dumps(["cat", "dog"]), "preprocess": json.dumps(pp)})
    xml = convert_ir(onnx_path, tmp_path / "m.xml")
    for path in (onnx_path, xml):
        meta = read_metadata(path)
        assert model_classes(meta) == ["cat", "dog"]
        assert model_preprocess(meta)["image_size"] == SIZE
    assert model_classes({"names": "{0: 'a', 1: 'b'}"}) == ["a", "b"]  # ultralytics style
    assert model_classes({"model_info.labels": "a b c"}) == ["a", "b", "c"]  # OpenVINO model_info style
    assert model_preprocess({}) is None
