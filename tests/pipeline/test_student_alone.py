"""The student_alone stage on the tiny backbone: a build with a teacher also trains the same student without it,
and results.json, the console and the report put the teacher, both students and the gain side by side on one split;
without a teacher the stage is skipped with its reason; an unchanged rerun reuses it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from tests.conftest import FAST_BUILD, make_image_folder

torch = pytest.importorskip("torch")

# fp32 only: no quantize stage, so the module stays fast (the comparison is of float models)
FP32_TARGET = """name: cpu-fp32
extends: cpu
runtimes:
  - {runtime: onnxruntime, device: cpu, precisions: [fp32]}
export: {formats: [onnx], opset: 20}
"""


# rates at which the tiny model learns the colours in 3 epochs (the defaults are for pretrained backbones)
LEARNS = FAST_BUILD.replace("seed: 0}}", "seed: 0, head_lr: 0.01, lr: 0.01, backbone_lr: 0.01}}")


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def distilled_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Any]:
    """(base, teacher run, student run, the build's CliRunner result); the teacher is `edgetl train` of the very
    config the student builds with, so the student alone must come out as the teacher's exact twin."""
    base = tmp_path_factory.mktemp("alone")
    data = make_image_folder(base / "data", {"red": 8, "green": 8, "blue": 8}, splits=("train", "val", "test"))
    teacher_cfg = base / "teacher.yaml"
    teacher_cfg.write_text(LEARNS.format(data=data, out=base / "teacher"))
    trained = _invoke("train", "--config", str(teacher_cfg))
    assert trained.exit_code == 0, trained.output
    config = base / "build.yaml"
    config.write_text(LEARNS.format(data=data, out=base / "run"))
    (base / "cpu-fp32.yaml").write_text(FP32_TARGET)
    result = _invoke("build", "--target", str(base / "cpu-fp32.yaml"), "--config", str(config), "--no-budget-check",
                     "--teacher", str(base / "teacher"))
    return base, base / "teacher", base / "run", result


def test_a_build_with_a_teacher_trains_the_student_alone_as_its_own_stage(distilled_build: Any) -> None:
    from edgetl.artifacts import read_model_artifact

    _, teacher, out, result = distilled_build
    assert result.exit_code == 0, result.output
    assert "[student_alone] done" in result.output and "[quantize] skipped" in result.output
    alone = read_model_artifact(out / "student_alone")
    distilled = read_model_artifact(out / "train")
    assert alone.manifest.stage == "student_alone" and alone.card.lineage.stage == "student_alone"
    assert alone.card.lineage.method == "finetune" and distilled.card.lineage.method == "distill"
    assert alone.manifest.info["teacher"] is None and distilled.manifest.info["teacher"]["path"] == str(teacher)
    assert (out / "student_alone" / "split.json").read_bytes() == (out / "train" / "split.json").read_bytes()
    # same config, split and seed without the teacher: exactly the teacher's own training (it is that config)
    ours, twin = alone.load().state_dict(), read_model_artifact(teacher / "train").load().state_dict()
    assert all(torch.equal(ours[k], twin[k]) for k in twin)
    assert any(not torch.equal(ours[k], v) for k, v in distilled.load().state_dict().items())
    # nothing downstream reads it: export and bench took the distilled model
    export = json.loads((out / "export" / "manifest.json").read_text())
    assert list(export["inputs"]) == ["train/manifest.json"] and export["info"]["float_source"] == "train:fp32"
    assert {r["float_source"] for r in json.loads((out / "bench" / "results.json").read_text())["rows"]
            if r["status"] == "ok"} == {"train:fp32"}


def test_results_console_and_report_put_the_three_figures_on_one_split(distilled_build: Any) -> None:
    from edgetl.bench.results import load_results
    from tests.report.html_checks import check_report_html

    _, teacher, out, result = distilled_build
    d = load_results(out / "bench").distillation
    assert d is not None and d.eval_split == "test" and d.eval_images == 12  # 4 test images per class
    train = json.loads((out / "train" / "manifest.json").read_text())["info"]
    alone = json.loads((out / "student_alone" / "manifest.json").read_text())["info"]
    teacher_card = json.loads((teacher / "train" / "manifest.json").read_text())["info"]
    assert d.distilled.accuracy == train["eval_accuracy"] and d.distilled.source == "train:fp32"
    assert d.student_alone is not None and d.student_alone.accuracy == alone["eval_accuracy"]
    assert d.gain_points == pytest.approx(100 * (train["eval_accuracy"] - alone["eval_accuracy"]))
    # the teacher scored on the student's test images by the train stage: its twin's figure, and its own card's
    assert d.teacher.accuracy == pytest.approx(alone["eval_accuracy"]) and d.teacher.eval_images == 12
    assert d.teacher.card_accuracy == teacher_card["eval_accuracy"] and d.teacher.card_eval_split == "test"
    assert d.teacher_trained_on_eval == 0 and d.notes == []

    text = " ".join(result.output.split())
    assert "Distillation: torch fp32 top-1 on test (12 images)" in text
    assert f"{100 * train['eval_accuracy']:.2f}% on test against {100 * alone['eval_accuracy']:.2f}% trained alone" \
        in text and f"{d.gain_points:+.2f} points" in text

    sections = check_report_html(out / "report" / "report.html")  # every section has content, figures drawn
    assert sections["Distillation"].table_rows == 3 and "trained alone" in sections["Distillation"].text
    md = (out / "report" / "report.md").read_text()
    assert "| student alone | tiny | student_alone:fp32 |" in md and "| distilled student | tiny | train:fp32 |" in md


def test_an_unchanged_rerun_reuses_the_student_alone(distilled_build: Any) -> None:
    base, teacher, _, _ = distilled_build
    result = _invoke("build", "--target", str(base / "cpu-fp32.yaml"), "--config", str(base / "build.yaml"),
                     "--no-budget-check", "--teacher", str(teacher))
    assert result.exit_code == 0, result.output
    for stage in ("train", "student_alone", "export", "bench", "report", "bundle"):
        assert f"[{stage}] reused" in result.output, stage


def test_the_stage_is_skipped_without_a_teacher_and_resumes_through_finetune(monkeypatch: pytest.MonkeyPatch,
                                                                             tmp_path: Path) -> None:
    from edgetl.config import BuildConfig
    from edgetl.pipeline import stages
    from edgetl.pipeline.engine import STAGES, Context
    from edgetl.targets import load_target

    stage = STAGES.get("student_alone")
    assert stage.order == 15 and stage.produces == () and stage.consumes == ()
    plain = Context(BuildConfig(), load_target("cpu"), tmp_path)
    assert stage.disabled(plain) == "no teacher to compare with (train.teacher, --teacher)"
    taught = Context(BuildConfig().with_overrides({"train.teacher": "runs/big", "train.teacher_alpha": 0.9}),
                     plain.target, tmp_path)
    assert stage.disabled(taught) is None
    # its key is train's without the teacher: another teacher (or its settings) keys the same alone student
    monkeypatch.setattr(stages, "_teacher_digest", lambda path: path)
    assert stage.key(taught) == stage.key(plain) and stages._train_key(taught) != stages._train_key(plain)

    calls: list[tuple[Any, Path, bool, str]] = []
    monkeypatch.setattr("edgetl.stages.finetune.finetune",
                        lambda cfg, target, out_dir, *, resume, stage: calls.append((cfg, out_dir, resume, stage)))
    stage.run(taught, True)
    cfg, out_dir, resume, name = calls[0]
    assert cfg.train.teacher is None and cfg.train.seed == taught.cfg.train.seed and resume is True
    assert out_dir == tmp_path / "student_alone" and name == "student_alone"
