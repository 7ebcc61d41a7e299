"""``edgetl predict`` on hand-made bundles: manifest checks, archives, unreadable inputs, exit codes."""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import cli
from edgetl.stages.bundle import BUNDLE_FORMAT

CLASSES = ["red", "green", "blue"]  # the model scores the R, G and B channel means


def _onnx_model(path: Path, classes: int = 3) -> None:
    """input (N,3,8,8) -> mean per channel -> one logit per channel (a colour classifier)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(3, classes, dtype=np.float32) * 10, "w")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "colour", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(root: Path, files: list[dict]) -> None:
    (root / "manifest.json").write_text(json.dumps({"format": BUNDLE_FORMAT, "target": "cpu",
                                                    "task": "image_classification", "files": files}))


def make_bundle(root: Path, labels: list[str] = CLASSES) -> Path:
    root.mkdir(parents=True)
    _onnx_model(root / "model_fp32.onnx")
    (root / "labels.json").write_text(json.dumps(labels))
    (root / "preprocess.json").write_text(json.dumps(
        {"image_size": 8, "resize_size": 8, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}))
    files = [{"path": "model_fp32.onnx", "format": "onnx", "precision": "fp32", "artifact": "onnx-fp32"}]
    files += [{"path": n, "format": "text"} for n in ("labels.json", "preprocess.json")]
    for f in files:
        f["sha256"] = _sha(root / f["path"])
    write_manifest(root, files)
    return root


def entries(root: Path) -> list[dict]:
    return json.loads((root / "manifest.json").read_text())["files"]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    for name, colour in (("red", (250, 0, 0)), ("green", (0, 250, 0)), ("blue", (0, 0, 250))):
        (folder / name).mkdir(parents=True)
        Image.new("RGB", (12, 12), colour).save(folder / name / f"{name}.png")
    return folder


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_a_hand_made_bundle_predicts(tmp_path, images):
    result = run("predict", str(make_bundle(tmp_path / "b")), str(images))
    assert result.exit_code == 0, result.output
    assert "accuracy: 3/3 = 100.00%" in result.output


@pytest.mark.parametrize("edit, expected", [
    (lambda fs: fs[0].pop("path"), "files[0] needs a 'path' and a 'sha256'"),
    (lambda fs: fs.__setitem__(0, "model_fp32.onnx"), "files[0] needs a 'path'"),
])
def test_malformed_manifest_entries_exit_2(tmp_path, images, edit, expected):
    root = make_bundle(tmp_path / "b")
    files = entries(root)
    edit(files)
    write_manifest(root, files)
    result = run("predict", str(root), str(images))
    assert result.exit_code == 2 and expected in result.output
    assert "Traceback" not in result.output


def test_files_that_is_not_a_list_exits_2(tmp_path, images):
    root = make_bundle(tmp_path / "b")
    write_manifest(root, {"model_fp32.onnx": "x"})  # type: ignore[arg-type]
    result = run("predict", str(root), str(images))
    assert result.exit_code == 2 and "field 'files' must be a list" in result.output


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_manifest_paths_outside_the_bundle_are_refused(tmp_path, images, how):
    root = make_bundle(tmp_path / "b")
    outside = tmp_path / "elsewhere.onnx"
    (root / "model_fp32.onnx").rename(outside)
    files = entries(root)
    if how == "dotdot":
        files[0]["path"] = "../elsewhere.onnx"
    elif how == "absolute":
        files[0]["path"] = str(outside)
    else:
        (root / "model_fp32.onnx").symlink_to(outside)
    write_manifest(root, files)
    result = run("predict", str(root), str(images))
    assert result.exit_code == 2, result.output
    assert "points outside the bundle" in result.output and "accuracy" not in result.output


def test_labels_shorter_than_the_model_outputs_exit_2(tmp_path, images):
    root = make_bundle(tmp_path / "b", labels=["red"])
    result = run("predict", str(root), str(images))
    assert result.exit_code == 2, result.output
    assert "gives 3 outputs per input but labels.json lists 1 classes" in result.output


@pytest.mark.parametrize("k", ["0", "-2"])
def test_top_k_below_one_is_a_usage_error(tmp_path, images, k):
    result = run("predict", str(make_bundle(tmp_path / "b")), str(images), "--top-k", k)
    assert result.exit_code == 2 and "--top-k" in result.output


def test_top_k_shows_k_classes(tmp_path, images):
    result = run("predict", str(make_bundle(tmp_path / "b")), str(images / "red" / "red.png"), "-k", "2")
    assert result.output.splitlines()[0].count(",") == 1


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("edgetl-bundle-*")}


def test_an_archive_leaves_no_temporary_directory(tmp_path, images):
    root = make_bundle(tmp_path / "bundle")
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="bundle")
    before = _leftovers()
    assert run("predict", str(archive), str(images)).exit_code == 0
    assert _leftovers() == before
    failed = run("predict", str(archive), str(tmp_path / "bundle" / "labels.json"))  # not an image: fails
    assert failed.exit_code == 2
    assert _leftovers() == before


def test_an_archive_with_two_top_level_entries_is_reported_against_the_archive(tmp_path, images):
    for name in ("a", "b"):
        (tmp_path / "two" / name).mkdir(parents=True)
    archive = tmp_path / "two.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "two" / "a", arcname="a")
        tar.add(tmp_path / "two" / "b", arcname="b")
    before = _leftovers()
    result = run("predict", str(archive), str(images))
    assert result.exit_code == 2
    assert f"bundle archive {archive} holds 2 top-level entries (a, b)" in result.output
    assert "edgetl-bundle-" not in result.output and _leftovers() == before


def test_unreadable_images_are_skipped_with_one_warning(tmp_path, images):
    (images / "red" / "broken.png").write_bytes(b"not a png")
    (images / "green" / "broken.jpg").write_bytes(b"\xff\xd8 nor a jpeg")
    result = run("predict", str(make_bundle(tmp_path / "b")), str(images))
    assert result.exit_code == 0, result.output
    assert "accuracy: 3/3" in result.output
    assert result.output.count("warning:") == 1 and "skipped 2 unreadable input(s)" in result.output
    assert "broken.png: cannot identify image file" in result.output


def test_no_readable_image_and_an_empty_folder_exit_2(tmp_path, images):
    bundle = make_bundle(tmp_path / "b")
    (tmp_path / "empty").mkdir()
    result = run("predict", str(bundle), str(tmp_path / "empty"))
    assert result.exit_code == 2 and "holds no images" in result.output
    (tmp_path / "bad.png").write_bytes(b"x")
    result = run("predict", str(bundle), str(tmp_path / "bad.png"))
    assert result.exit_code == 2 and "none of the 1 input(s) could be read" in result.output
