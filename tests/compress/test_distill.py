"""``compare_distillation`` and the report's distillation section, from manifests written here (no training): which
figures stand side by side, and why one is left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgetl.bench.results import BenchResults, BenchSettings
from edgetl.compress.distill import compare_distillation
from edgetl.manifest import Manifest
from edgetl.report.distillation import distillation_lines, distillation_table
from edgetl.report.render import render_html, render_markdown
from tests.report.html_checks import check_report_html

TRAIN = {"backbone": "tiny", "epochs": 2, "seed": 0, "teacher": None, "teacher_alpha": 0.5, "threads": None}
DATA = {"path": "data", "num_workers": 0}
TEACHER = {"path": "runs/big", "temperature": 4.0, "alpha": 0.5, "source": "train:fp32", "backbone": "resnet18",
           "macs": 1_800_000_000, "params": 11_000_000, "card_eval_split": "val", "card_eval_accuracy": 0.97,
           "trained_on_eval_images": 0, "eval_split": "test", "eval_accuracy": 0.9, "eval_images": 40}


def _stage(run: Path, stage: str, accuracy: float, *, teacher: dict[str, Any] | None = None,
           split: str = "s1", **train: Any) -> None:
    card = {"name": "fp32", "macs": 200_000, "params": 9_000}
    Manifest(stage=stage, config={"data": DATA, "train": {**TRAIN, **train, "teacher": (teacher or {}).get("path")}},
             outputs={"model.pt": "m", "split.json": split},
             info={"models": [card], "backbone": "tiny", "eval_split": "test", "eval_accuracy": accuracy,
                   "eval_images": 40, "wall_time_s": 3.0, "teacher": teacher}).write(run / stage)


def _results(run: Path) -> BenchResults:
    settings = BenchSettings(warmup=1, min_iterations=1, min_time_s=0, threads=1, batch_sizes=[1], eval_batch_size=8,
                             memory_method="rss")
    return BenchResults(target="cpu", source=str(run), settings=settings, distillation=compare_distillation(run))


def test_the_three_models_stand_on_one_split_with_the_gain(tmp_path: Path) -> None:
    _stage(tmp_path, "train", 0.85, teacher=TEACHER, teacher_alpha=0.7)  # the alpha is not a difference
    _stage(tmp_path, "student_alone", 0.8, threads=1)  # nor where it ran
    d = compare_distillation(tmp_path)
    assert d is not None and d.eval_split == "test" and d.eval_images == 40 and d.notes == []
    assert (d.teacher.accuracy, d.distilled.accuracy, d.student_alone and d.student_alone.accuracy) == (0.9, 0.85, 0.8)
    assert d.gain_points == pytest.approx(5.0) and d.teacher.card_accuracy == 0.97
    table = distillation_table(_results(tmp_path))
    assert table is not None and table.title == "Distillation: torch fp32 top-1 on test (40 images)"
    assert [r[0] for r in table.rows] == ["teacher", "distilled student", "student alone"]
    assert table.rows[0][2] == "runs/big (train:fp32)" and table.rows[1][4] == "+5.00 points"
    lines = distillation_lines(_results(tmp_path))
    assert "**+5.00 points** on 40 images" in lines[0]
    assert "states 97.00% on its val split; the figures here are on the student's test images" in lines[1]


def test_a_student_alone_of_other_settings_or_split_is_left_out_with_the_reason(tmp_path: Path) -> None:
    _stage(tmp_path, "train", 0.85, teacher=TEACHER)
    _stage(tmp_path, "student_alone", 0.8, epochs=5, split="s2")
    d = compare_distillation(tmp_path)
    assert d is not None and d.student_alone is None and d.gain_points is None
    assert "other settings than" in d.notes[0] and "(train.epochs, split.json)" in d.notes[0]
    assert distillation_table(_results(tmp_path)).rows[2][2] == "not trained (see the notes)"  # type: ignore


def test_no_student_alone_a_teacher_that_saw_the_eval_images_and_no_teacher(tmp_path: Path) -> None:
    _stage(tmp_path, "train", 0.85, teacher={**TEACHER, "trained_on_eval_images": 7})
    d = compare_distillation(tmp_path)
    assert d is not None and d.student_alone is None and "`edgetl build --teacher` trains the student alone" \
        in d.notes[0]
    text = "\n".join(distillation_lines(_results(tmp_path)))
    assert "the gain is not known" in text and "trained on 7 of these 40 test images" in text
    _stage(tmp_path, "train", 0.85)
    assert compare_distillation(tmp_path) is None and compare_distillation(tmp_path / "absent") is None


def test_the_report_section_has_its_table_in_markdown_and_html(tmp_path: Path) -> None:
    _stage(tmp_path, "train", 0.85, teacher=TEACHER)
    _stage(tmp_path, "student_alone", 0.8)
    results = _results(tmp_path)
    md = render_markdown(results)
    assert "### Distillation: torch fp32 top-1 on test (40 images)" in md
    assert "| student alone | tiny | student_alone:fp32 | 80.00% (95% CI" in md
    page = tmp_path / "report.html"
    page.write_text(render_html(results))
    section = check_report_html(page)["Distillation"]
    assert section.table_rows >= 3 and "+5.00 points" in section.text  # (no plots here: the host table follows)
    plain = results.model_copy(update={"distillation": None})
    assert "Distillation" not in render_markdown(plain) and "Distillation" not in render_html(plain)
