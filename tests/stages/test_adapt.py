"""The adapt stage through the CLI on the tiny backbone: a build with --adapt-data, and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from tests.conftest import FAST_BUILD, make_image_folder


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def adapted(tmp_path_factory) -> tuple[Path, Path, object]:
    base = tmp_path_factory.mktemp("adapt")
    data = make_image_folder(base / "data", {"red": 8, "green": 8, "blue": 8})
    # the "device" domain: the same classes under another seed's noise, no labels, flat and nested files
    device = make_image_folder(base / "device_raw", {"red": 4, "green": 4, "blue": 4}, splits=("train",), seed=7)
    frames = base / "frames"
    (frames / "day2").mkdir(parents=True)
    for i, png in enumerate(sorted((device / "train").rglob("*.png"))):
        shutil.copy(png, frames / ("day2" if i % 2 else "") / f"frame_{i}.png")
    (frames / "notes.txt").write_text("not an image")
    config = base / "build.yaml"
    fast = FAST_BUILD.format(data=data, out=base / "run")
    # PTQ only: the stage under test sits before quantize, and PTQ is what calibrates on the adaptation images
    config.write_text(fast.replace("quantize: {qat_epochs: 1,", "quantize: {qat: false,"))
    assert "qat: false" in config.read_text()
    result = _run("build", "--config", str(config), "--adapt-data", str(frames), "--no-budget-check")
    return base, config, result


def test_a_build_with_adapt_data_adapts_calibrates_and_records_it(adapted) -> None:
    from edgetl.manifest import read_manifest

    base, _, result = adapted
    assert result.exit_code == 0, result.output
    run = base / "run"
    info = json.loads((run / "adapt" / "manifest.json").read_text())["info"]
    assert info["adaptation"]["method"] == "adabn" and info["adaptation"]["images"] == 12
    assert info["evaluated_on_adaptation_images"] is False and set(info["accuracy_after"]) == {"val"}
    card = info["models"][0]
    assert card["lineage"] == {"stage": "adapt", "method": "adabn", "parent": "train:fp32",
                               "parent_manifest": read_manifest(run / "train").hash}
    # quantize took the adapted model, and calibrated on the device images
    quantize = json.loads((run / "quantize" / "metrics.json").read_text())
    assert quantize["calibration_source"] == "adaptation images"
    export = json.loads((run / "export" / "manifest.json").read_text())["info"]
    assert export["float_source"] == "adapt:adapted"
    bundle = json.loads((run / "bundle" / "manifest.json").read_text())
    assert bundle["adaptation"]["method"] == "adabn" and bundle["adaptation"]["images"] == 12
    # anchored (the default) to as many training images as adaptation images, when the split has them
    train_images = len(json.loads((run / "train" / "split.json").read_text())["splits"]["train"])
    assert bundle["adaptation"]["anchored_to_training_images"] == min(12, train_images) >= 2
    assert "adabn on 12 unlabelled image(s)" in (run / "bundle" / "README.md").read_text()
    assert "anchored to" in (run / "bundle" / "README.md").read_text()
    assert "[adapt] done" in result.output


def test_the_adapted_weights_differ_only_in_batchnorm_statistics(adapted) -> None:
    import torch

    from edgetl.artifacts import read_model_artifact

    run = adapted[0] / "run"
    source = read_model_artifact(run / "train").load().state_dict()
    after = read_model_artifact(run / "adapt").load().state_dict()
    changed = {k for k in source if not torch.equal(source[k], after[k])}
    assert changed and all("running_" in k or "num_batches" in k for k in changed), changed


def test_a_rerun_reuses_the_adapt_stage_and_a_changed_folder_reruns_it(adapted) -> None:
    base, config, _ = adapted
    frames = base / "frames"
    again = _run("build", "--config", str(config), "--adapt-data", str(frames), "--no-budget-check")
    assert again.exit_code == 0 and "[adapt] reused" in again.output and "[train] reused" in again.output
    shutil.copy(next(frames.glob("*.png")), frames / "extra.png")
    changed = _run("build", "--config", str(config), "--adapt-data", str(frames), "--no-budget-check")
    assert changed.exit_code == 0 and "[train] reused" in changed.output and "[adapt] done" in changed.output
    (frames / "extra.png").unlink()


@pytest.mark.parametrize("case, message", [
    ("empty", "holds no image files"),
    ("unreadable", "none of its 2 image file(s) can be read"),
    ("missing", "does not exist"),
    ("evaluation-copies", "adaptation image(s) in"),
])
def test_bad_adaptation_folders_exit_2_with_the_reason(adapted, tmp_path: Path, case: str, message: str) -> None:
    base, config, _ = adapted
    folder = tmp_path / "frames"
    folder.mkdir()
    if case == "unreadable":
        for i in range(2):
            (folder / f"broken_{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    elif case == "missing":
        folder.rmdir()
    elif case == "evaluation-copies":
        for png in sorted((base / "data" / "val" / "red").glob("*.png"))[:2]:
            shutil.copy(png, folder / f"copy_{png.name}")
    run_dir = tmp_path / "run"
    shutil.copytree(base / "run" / "train", run_dir / "train")  # a finished train stage: only adapt runs
    out = _run("build", "--config", str(config), "--out", str(run_dir), "--adapt-data", str(folder),
               "--no-budget-check")
    assert out.exit_code == 2, out.output
    assert message in " ".join(out.output.split()) and "Traceback" not in out.output
    if case == "evaluation-copies":
        assert "are also evaluation images" in " ".join(out.output.split())
        assert "never evaluated on" in out.output
    assert not (run_dir / "adapt").exists()
