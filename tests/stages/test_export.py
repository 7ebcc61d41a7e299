"""``edgetl export`` on the tiny backbone: artifacts that load and run int8, self-description, parity, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.quant.builders import SIZE, exported_run, fast_config, quantized_run

torch = pytest.importorskip("torch")

NAMES = ["onnx-fp32", "openvino-fp32", "onnx-int8-qat", "openvino-int8-qat", "onnx-int8-ptq", "openvino-int8-ptq"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return exported_run(tmp_path_factory)


def _artifacts(run: Path) -> dict[str, dict]:
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    return {a["name"]: a for a in manifest["info"]["artifacts"]}


def test_every_artifact_is_listed_hashed_and_loads(run):
    import onnxruntime as ort
    import openvino as ov

    from edgetl.manifest import read_manifest

    artifacts = _artifacts(run)
    assert list(artifacts) == NAMES
    manifest = read_manifest(run / "export")
    assert manifest.verify_outputs(run / "export") == []
    assert {"model_fp32.onnx", "openvino/model_int8_qat.bin", "parity.json"} <= set(manifest.outputs)
    x = np.zeros((3, 3, SIZE, SIZE), dtype=np.float32)  # dynamic batch
    for a in artifacts.values():
        path = run / "export" / a["path"]
        if a["format"] == "onnx":
            out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        else:
            out = ov.Core().compile_model(str(path), "CPU").create_infer_request().infer({0: x})[0]
        assert np.asarray(out).shape == (3, 3)


def test_int8_artifacts_run_every_conv_in_int8(run):
    for name, a in _artifacts(run).items():
        if a["precision"] == "int8":
            assert (a["int8_ops"], a["float_ops"]) == (4, 0), name  # 3 convs + the classifier
        else:
            assert (a["int8_ops"], a["float_ops"]) == (0, 4), name


def test_parity_is_recorded(run):
    parity = json.loads((run / "export" / "parity.json").read_text())
    for name, a in _artifacts(run).items():
        p = a["parity"]
        assert p["n"] == 18 and p["top1_agreement"] == 1.0 and parity[name]["n"] == 18
        assert p["max_logit_diff"] < (1e-4 if a["precision"] == "fp32" else 0.5)
        assert p["accuracy"] == 1.0


def test_models_describe_themselves(run):
    from edgetl.manifest import read_manifest
    from edgetl.runtimes.metadata import model_classes, model_preprocess, read_metadata

    source_hash = read_manifest(run / "train").hash
    for a in _artifacts(run).values():
        meta = read_metadata(run / "export" / a["path"])
        assert model_classes(meta) == ["blue", "green", "red"]
        assert model_preprocess(meta)["image_size"] == SIZE
        prefix = "edgetl." if a["format"] == "openvino" else ""
        assert meta[prefix + "source"] == a["source"]
        assert meta[prefix + "source_manifest"] == source_hash
        assert meta[prefix + "edgetl_version"]


def test_int8_onnx_uses_qdq_and_ir_keeps_fp32_weights(run):
    import onnx
    import openvino as ov

    ops = {n.op_type for n in onnx.load(str(run / "export" / "model_int8_qat.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    model = ov.Core().read_model(str(run / "export" / "openvino" / "model_fp32.xml"))
    types = {str(op.get_output_element_type(0)) for op in model.get_ops() if op.get_type_name() == "Constant"}
    assert "f16" not in types


def test_unsupported_op_is_an_export_error_naming_it(tmp_path):
    from edgetl.errors import ExportError
    from edgetl.stages.export import export_onnx

    class CumMax(torch.nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.cummax(x, dim=1)[0]

    with pytest.raises(ExportError, match=r"export: cannot export the model: operator aten\.cummax"):
        export_onnx(CumMax(), torch.randn(2, 3, 8, 8), tmp_path / "m.onnx", opset=20, dynamic=True, metadata={},
                    what="the model")
    assert not (tmp_path / "m.onnx").exists()


def test_parity_failure_names_the_artifact_and_figures(tmp_path_factory, tmp_path):
    from edgetl.errors import ExportError
    from edgetl.stages.export import export
    from edgetl.targets import load_target

    run = quantized_run(tmp_path_factory)
    cfg = fast_config(**{"export.max_logit_diff_int8": 1e-9})
    with pytest.raises(ExportError, match=r"openvino-int8-qat: max \|logit diff\| [0-9.e-]+ > 1e-09"):
        export(cfg, load_target("cpu"), run / "train", run / "quantize", tmp_path / "export")
    assert not (tmp_path / "export").exists()  # nothing half-written


def test_fixed_batch_target_and_float_convs_not_explained(tmp_path_factory, tmp_path):
    import onnx

    from edgetl.errors import ExportError
    from edgetl.fsutil import read_json, write_json
    from edgetl.stages.export import export
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    run = quantized_run(tmp_path_factory)
    board = tmp_path / "board.yaml"
    board.write_text("name: board\nextends: cpu\ninput: {dynamic_batch: false, batch_sizes: [1]}\n"
                     "export: {formats: [onnx]}\nruntimes: [{runtime: onnxruntime, device: cpu, "
                     "precisions: [int8, fp32]}]\n")
    target = load_target(str(board))
    cfg = fast_config(**{"quantize.qat": False, "quantize.keep_first_fp": True})
    quantize(cfg, target, run / "train", tmp_path / "quantize")
    result = export(cfg, target, run / "train", tmp_path / "quantize", tmp_path / "export")
    assert [a.name for a in result.artifacts] == ["onnx-fp32", "onnx-int8-ptq"]
    ptq = result.artifacts[1]
    assert (ptq.int8_ops, ptq.float_ops) == (3, 1)
    assert any("keep_first_fp" in n for n in ptq.float_op_names)
    dims = onnx.load(str(tmp_path / "export" / "model_int8_ptq.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, SIZE, SIZE]

    manifest = read_json(tmp_path / "quantize" / "manifest.json")
    for card in manifest["info"]["models"]:  # the float stem conv is no longer in the precision plan
        card["precision_plan"]["float_layers"] = []
    write_json(tmp_path / "quantize" / "manifest.json", manifest)
    with pytest.raises(ExportError, match="onnx-int8-ptq: int8 model runs 1 convs in float"):
        export(cfg, target, run / "train", tmp_path / "quantize", tmp_path / "export2")


def test_cli_export_prints_the_table(run, tmp_path):
    from edgetl.cli import cli

    for stage in ("train", "quantize"):
        shutil.copytree(run / stage, tmp_path / stage)
    result = CliRunner().invoke(cli, ["export", "--out", str(tmp_path), "--target", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "onnx-int8-qat" in result.output and "4/4" in result.output and "100.00%" in result.output


def test_every_artifact_has_a_uint8_input_variant_with_parity(run):
    """Raw uint8 NHWC pixels in, the same predictions as the float-input artifact out, int8 still int8."""
    import onnxruntime as ort

    from edgetl.manifest import read_manifest

    parity = json.loads((run / "export" / "parity.json").read_text())
    assert set(read_manifest(run / "export").outputs) >= {"model_int8_qat_uint8.onnx",
                                                          "openvino/model_int8_qat_uint8.bin"}
    for name, a in _artifacts(run).items():
        v = a["uint8_variant"]
        assert v["io"]["inputs"][0] == {"name": "input", "shape": [None, SIZE, SIZE, 3], "dtype": "uint8",
                                        "dynamic_axes": {"0": "batch"}}
        assert v["preprocessing"]["input_layout"] == "NHWC"
        p = v["parity"]
        assert p["n"] == 18 and p["top1_agreement"] == 1.0 and p["reference"] == f"{name} (float input)"
        assert p["max_logit_diff"] < 1e-4 and p["accuracy"] == a["parity"]["accuracy"]
        assert parity[f"{name}-uint8-input"]["n"] == 18
        assert (v["int8_ops"], v["float_ops"]) == ((4, 0) if a["precision"] == "int8" else (0, 4)), name
    session = ort.InferenceSession(str(run / "export" / "model_int8_qat_uint8.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    out = session.run(None, {"input": np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8)})[0]
    assert out.shape == (2, 3)


def test_the_bundle_ships_the_uint8_variant_and_its_readme_feeds_it(run, tmp_path):
    from edgetl.predict import open_bundle
    from edgetl.stages.bundle import make_bundle
    from edgetl.targets import load_target

    out = make_bundle(run / "export", None, load_target("raspberry-pi-5"), tmp_path / "bundle")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["primary"] == "model_int8.onnx"
    (entry,) = manifest["uint8_input"]
    assert entry["path"] == "model_int8_uint8.onnx" and entry["variant_of"] == "model_int8.onnx"
    assert entry["inputs"][0]["dtype"] == "uint8" and entry["inputs"][0]["shape"] == [None, SIZE, SIZE, 3]
    assert entry["parity"]["top1_agreement"] == 1.0 and entry["parity"]["n"] == 18
    listed = {f["path"]: f for f in manifest["files"]}
    assert listed["model_int8_uint8.onnx"]["input"] == "uint8_nhwc"
    readme = (out / "README.md").read_text()
    assert "## C++ (ONNX Runtime, uint8 camera frames)" in readme
    assert 'Ort::Session session(env, "model_int8_uint8.onnx", opts);' in readme
    assert "CreateTensor<uint8_t>" in readme and f"shape{{1, {SIZE}, {SIZE}, 3}}" in readme
    with open_bundle(out) as bundle:  # predict keeps the float-input model
        assert bundle.model_entry["path"] == "model_int8.onnx"
