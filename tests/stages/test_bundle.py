"""The bundle: what it says about the model comes from the export manifest (the model card), never the target."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from edgetl.errors import ModelFileError
from tests.benchmarking import SIZE, make_run_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from tests.benchmarking import CLASSES
    from tests.conftest import make_image_folder

    base = tmp_path_factory.mktemp("bundle")
    data = make_image_folder(base / "data", dict.fromkeys(CLASSES, 4), size=SIZE)
    return make_run_dir(base / "run", data)


def test_bundle_files_manifest_readme_and_archive(run: Path, tmp_path: Path) -> None:
    from edgetl.stages.bundle import make_bundle
    from edgetl.targets import load_target

    out = make_bundle(run / "export", None, load_target("cpu"), tmp_path / "bundle")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "image_classification"
    assert manifest["inputs"][0]["name"] == "input" and manifest["inputs"][0]["shape"] == [None, 3, SIZE, SIZE]
    assert {f["path"] for f in manifest["files"]} >= {"labels.json", "preprocess.json", "README.md"}
    readme = (out / "README.md").read_text()
    assert "## Python" in readme and f"shape N x 3 x {SIZE} x {SIZE}" in readme
    with tarfile.open(tmp_path / "bundle.tar.gz") as tar:
        assert any(n.endswith("manifest.json") for n in tar.getnames())


def test_an_export_that_does_not_describe_its_inputs_is_refused(run: Path, tmp_path: Path) -> None:
    import shutil

    from edgetl.fsutil import read_json, write_json
    from edgetl.stages.bundle import make_bundle
    from edgetl.targets import load_target

    export = tmp_path / "export"
    shutil.copytree(run / "export", export)
    manifest = read_json(export / "manifest.json")
    del manifest["info"]["io"]
    write_json(export / "manifest.json", manifest)
    with pytest.raises(ModelFileError, match="does not describe the model's inputs"):
        make_bundle(export, None, load_target("cpu"), tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_the_bundle_summary_says_where_each_figure_was_measured() -> None:
    from edgetl.manifest import Artifact
    from edgetl.stages.bundle import _measured_lines, _summary

    picked = [Artifact(name="onnx-int8-qat", format="onnx", precision="int8", source="qat", path="m.onnx",
                       size_bytes=1)]
    base = {"name": "onnx-int8-qat", "runtime": "onnxruntime", "device": "cpu", "status": "ok", "accuracy": 0.95,
            "latency_ms": {"p50": 7.2, "p90": 7.9}}
    results = {"eval_split": "val", "host": {"cpu": "AMD EPYC"}, "rows": [
        {**base, "measured_on": "host", "proxy": True},
        {**base, "measured_on": "device", "device_hostname": "rpi5", "device_address": "ssh://pi@10.0.0.2"},
        {**base, "measured_on": "estimate", "latency_ms": None, "accuracy": None,
         "estimate": {"latency_ms": 12.5, "band": [0.25, 1.882]}},
    ]}
    summary = _summary(results, picked)
    assert [r["measured_on"] for r in summary["rows"]] == ["host", "device", "estimate"]
    assert summary["rows"][1]["device_address"] == "ssh://pi@10.0.0.2" and summary["rows"][0]["device_address"] is None
    table = "\n".join(_measured_lines(summary))
    assert "| build host (proxy for the device) | 95.00 % | 7.2 |" in table
    assert "| device rpi5 (ssh://pi@10.0.0.2) | 95.00 % | 7.2 |" in table
    assert "estimate (roofline; estimate/measured 0.25..1.882 on the build host)" in table and "~12.5 (estimate)" in table


def test_pick_artifacts_takes_each_formats_own_int8_route() -> None:
    from edgetl.manifest import Artifact
    from edgetl.stages.bundle import pick_artifacts
    from edgetl.targets import load_target

    def art(fmt: str, precision: str, source: str) -> Artifact:
        name = f"{fmt}-{precision}" if precision == "fp32" else f"{fmt}-int8-{source}"
        return Artifact(name=name, format=fmt, precision=precision, source=source, path=f"{name}.x", size_bytes=1)

    artifacts = [art("onnx", "fp32", "fp32"), art("onnx", "int8", "ptq"), art("onnx", "int8", "dynamic"),
                 art("openvino", "fp32", "fp32"), art("openvino", "int8", "ptq")]
    picked = pick_artifacts(load_target("cpu"), artifacts, {"onnx": "dynamic", "openvino": "ptq"})
    assert sorted(a.name for a in picked) == ["onnx-int8-dynamic", "openvino-int8-ptq"]
    # one route for every format: a format without it falls back to its fp32 model
    picked = pick_artifacts(load_target("cpu"), artifacts, "dynamic")
    assert sorted(a.name for a in picked) == ["onnx-int8-dynamic", "openvino-fp32"]
