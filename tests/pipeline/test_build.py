"""End to end on the tiny backbone: build -> predict, plus reuse, resume and budget-failure paths."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from tests.conftest import FAST_BUILD


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, object]:
    from tests.conftest import make_image_folder

    base = tmp_path_factory.mktemp("e2e")
    data = make_image_folder(base / "data", {"red": 10, "green": 10, "blue": 10})
    config = base / "build.yaml"
    config.write_text(FAST_BUILD.format(data=data, out=base / "run"))
    result = run("build", "--target", "cpu", "--config", str(config), "--no-budget-check")
    return base, config, result


def test_build_produces_every_stage_and_a_bundle(built):
    base, _, result = built
    assert result.exit_code == 0, result.output
    out = base / "run"
    for stage in ("train", "quantize", "export", "bench", "report", "bundle"):
        assert (out / stage).is_dir(), stage
    # no teacher: nothing to compare a student alone with
    assert "[student_alone] skipped: no teacher to compare with (train.teacher, --teacher)" in result.output
    assert not (out / "student_alone").exists()
    results = json.loads((out / "bench" / "results.json").read_text())
    assert results["distillation"] is None and "Distillation" not in (out / "report" / "report.md").read_text()
    ok = [r for r in results["rows"] if r["status"] == "ok"]
    assert {r["precision"] for r in ok} >= {"fp32", "int8"}
    assert (out / "report" / "report.html").is_file()
    # the export stage's checks travel into results.json and the report
    int8_onnx = next(r for r in ok if r["name"] == "onnx-int8-qat")
    assert int8_onnx["parity"]["reference"] and int8_onnx["parity"]["n"] == 15 and int8_onnx["int8_ops"] == 4
    assert "Export checks" in (out / "report" / "report.md").read_text()
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert {"labels.json", "preprocess.json", "README.md"} <= {f["path"] for f in manifest["files"]}
    with tarfile.open(out / "bundle.tar.gz") as tar:
        assert any(n.endswith("manifest.json") for n in tar.getnames())
    assert "accuracy" in result.output and "p50" in result.output


def test_predict_matches_the_reported_accuracy(built):
    base, _, _ = built
    out = base / "run"
    result = run("predict", str(out / "bundle"), str(base / "data" / "val"))
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("accuracy:"))
    correct, total = (int(v) for v in line.split()[1].split("/"))
    artifact = line.split("(artifact ")[1].split(",")[0]
    results = json.loads((out / "bench" / "results.json").read_text())
    fmt = "onnxruntime" if artifact.startswith("onnx") else "openvino"
    reported = [r["accuracy"] for r in results["rows"]
                if r["name"] == artifact and r["runtime"] == fmt and r["status"] == "ok"]
    assert total == 15 and reported
    assert abs(correct / total - reported[0]) < 1e-5


def test_predict_refuses_a_tampered_bundle(built, tmp_path):
    base, _, _ = built
    copy = tmp_path / "bundle"
    shutil.copytree(base / "run" / "bundle", copy)
    (copy / "labels.json").write_text('["a", "b", "c"]')
    result = run("predict", str(copy), str(base / "data" / "val"))
    assert result.exit_code == 2 and "labels.json does not match its sha256" in result.output
    (copy / "labels.json").unlink()
    assert "missing" in run("predict", str(copy), str(base / "data" / "val")).output


def test_unchanged_rerun_reuses_every_stage(built):
    base, config, _ = built
    result = run("build", "--target", "cpu", "--config", str(config), "--no-budget-check")
    assert result.exit_code == 0, result.output
    for stage in ("train", "quantize", "export", "bench", "report", "bundle"):
        assert f"[{stage}] reused" in result.output


def test_changed_bench_setting_reruns_only_bench_and_later(built):
    base, config, _ = built
    changed = base / "changed.yaml"
    changed.write_text(config.read_text().replace("min_iterations: 5", "min_iterations: 6"))
    result = run("build", "--target", "cpu", "--config", str(changed), "--no-budget-check")
    assert result.exit_code == 0, result.output
    for stage in ("train", "quantize", "export"):
        assert f"[{stage}] reused" in result.output
    assert "[bench] done" in result.output and "[bundle] done" in result.output


def test_budget_miss_fails_the_build_with_a_table(built, tmp_path):
    base, config, _ = built
    board = tmp_path / "strict.yaml"
    board.write_text("name: strict\nextends: cpu\nbudgets: {p90_latency_ms: 0.0001, model_size_mb: 0.0001}\n")
    result = run("build", "--target", str(board), "--config", str(config))
    assert result.exit_code == 1
    assert "budget" in result.output and "fail" in result.output and "p90 latency" in result.output


def test_interrupted_stage_is_rerun_not_trusted(built):
    base, config, _ = built
    out = base / "run"
    state = json.loads((out / "build.json").read_text())
    state["export"]["status"] = "started"  # what a Ctrl-C during export leaves behind
    (out / "build.json").write_text(json.dumps(state))
    (out / "export" / "model_fp32.onnx").write_bytes(b"half a model")
    result = run("build", "--target", "cpu", "--config", str(config), "--no-budget-check")
    assert result.exit_code == 0, result.output
    assert "[train] reused" in result.output and "[export] done" in result.output
    import onnx

    onnx.checker.check_model(str(out / "export" / "model_fp32.onnx"))


def test_trtexec_shapes_follow_the_model_not_the_target_profile(built, tmp_path):
    """A 32 px model bundled for jetson (a 224 px profile, fixed batch): build_engine.sh has the model's shapes."""
    from edgetl.stages.bundle import make_bundle
    from edgetl.targets import load_target

    base, _, _ = built
    out = base / "run"
    target = load_target("jetson")
    assert target.input.image_size == 224
    make_bundle(out / "export", out / "bench" / "results.json", target, tmp_path / "bundle")
    script = (tmp_path / "bundle" / "build_engine.sh").read_text()
    assert "--shapes=input:1x3x32x32" in script and "224" not in script


def test_image_size_flows_from_the_resolver_into_the_artifact(built):
    from edgetl.artifacts import read_model_artifact

    base, _, _ = built
    card = read_model_artifact(base / "run" / "train").card
    assert card.io.inputs[0].shape == (None, 3, 32, 32) and card.preprocess["image_size"] == 32
    assert json.loads((base / "run" / "train" / "manifest.json").read_text())["info"]["input_sources"] == {
        "size": "config train.image_size", "channels": "target cpu input.channels"}


def test_the_report_embeds_every_figure_with_training_and_calibration(built):
    from tests.report.html_checks import check_report_html

    base, _, result = built
    assert result.exit_code == 0, result.output
    out = base / "run"
    sections = check_report_html(out / "report" / "report.html")
    for title in ("Accuracy vs latency", "Confusion matrices", "ROC curves (one-vs-rest)",
                  "Precision-recall curves (one-vs-rest)", "Calibration", "Training curves", "Model size"):
        assert len(sections[title].figures) == 1, title
    phases = (out / "report" / "report.md").read_text()
    assert "| head only (backbone frozen) |" in phases and "| QAT (int8 fake-quant) |" in phases
    assert (out / "bench" / "scores.npz").is_file()


@pytest.mark.subprocess
def test_the_tiny_builds_report_renders_in_chromium(built, tmp_path):
    from tests.report.render_check import INSTALL_HINT, check_page, find_chromium

    if find_chromium() is None:
        pytest.skip(f"no Chromium on PATH: {INSTALL_HINT}")
    base, _, _ = built
    stats = check_page(base / "run" / "report" / "report.html", tmp_path / "report.png")
    assert stats.problems() == [], stats


def test_results_console_and_report_name_the_split_and_what_ships(built):
    base, _, result = built
    out = base / "run"
    results = json.loads((out / "bench" / "results.json").read_text())
    bundle = json.loads((out / "bundle" / "manifest.json").read_text())
    primary = next(f["artifact"] for f in bundle["files"] if f["path"] == bundle["primary"])
    assert results["shipped"][0] == primary  # the bench stage names what the bundle then carries
    # the int8 route was chosen on val, from the quantize stage's figures
    quant = json.loads((out / "quantize" / "metrics.json").read_text())
    assert results["int8_selection"] == {"split": "val", "accuracy": quant["val_accuracy"]}
    assert set(quant["val_accuracy"]) == set(quant["accuracy"]) - {"fp32"}
    # this data came with train/ and val/: edgetl does not carve it, and every figure says it is on val
    assert results["eval_split"] == "val" and results["eval_split_selected_on"] is True
    md = (out / "report" / "report.md").read_text()
    for text in (result.output, md):
        assert f"Ships: {primary}" in text.replace("**", "") and "optimistic" in text
    assert "top-1 on val" in result.output and "| top-1 (val) |" in md
    assert "top-1 on val" in next(ln for ln in result.output.splitlines() if ln.startswith("int8 accuracy drop"))


def test_a_changed_split_changes_the_cache_key_and_the_figures(built):
    """Last in this module: it moves the run onto a held-out test split."""
    base, config, _ = built
    changed = base / "test-split.yaml"
    changed.write_text(config.read_text().replace("num_workers: 0", "num_workers: 0, test_ratio: 0.3"))
    result = run("build", "--target", "cpu", "--config", str(changed), "--no-budget-check")
    assert result.exit_code == 0, result.output
    assert "[train] done" in result.output and "[bench] done" in result.output
    results = json.loads((base / "run" / "bench" / "results.json").read_text())
    assert results["eval_split"] == "test" and results["eval_split_selected_on"] is False
    assert {r["eval_images"] for r in results["rows"] if r["status"] == "ok"} == {9}  # 30 % of 10 per class
    assert "held out from training and from selection" in result.output
