"""The report's distillation section: the teacher, the distilled student and the same student trained alone, on
one split, so a reader sees what distillation bought.

Everything comes from ``results.json``'s ``distillation`` (written by the bench stage from the run's ``train/`` and
``student_alone/`` manifests, ``edgetl.compress.distill.compare_distillation``); nothing is measured here.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from edgetl.stats import format_interval

if TYPE_CHECKING:
    from edgetl.bench.results import BenchResults, ComparedModel, DistillationComparison
    from edgetl.report.render import Table


def _m(value: int | None, scale: float) -> str:
    return "-" if value is None else f"{value / scale:.2f}"


def distillation_table(results: BenchResults) -> Table | None:
    """One row per model (teacher, distilled student, student alone): torch fp32 top-1 on the comparison's split
    with its 95 % Wilson interval, the change against the student alone, size and training time."""
    from edgetl.report.render import Table

    d = results.distillation
    if d is None:
        return None
    alone = d.student_alone

    def row(role: str, m: ComparedModel | None) -> list[str]:
        if m is None:
            return [role, "-", "not trained (see the notes)", "-", "-", "-", "-", "-"]
        versus = ("-" if m is alone or alone is None or alone.accuracy is None or m.accuracy is None
                  else f"{100 * (m.accuracy - alone.accuracy):+.2f} points")
        artifact = f"{m.path} ({m.source})" if m.path else m.source  # the teacher's lies in another run
        return [role, m.backbone or "-", artifact, format_interval(m.accuracy, m.eval_images), versus,
                _m(m.macs, 1e6), _m(m.params, 1e6), "-" if m.wall_time_s is None else f"{m.wall_time_s:.1f}"]

    return Table(f"Distillation: torch fp32 top-1 on {d.eval_split} ({d.eval_images} images)",
                 ["model", "backbone", "artifact", f"top-1 on {d.eval_split}", "vs student alone", "MMACs",
                  "params M", "training s"],
                 [row("teacher", d.teacher), row("distilled student", d.distilled), row("student alone", alone)])


def distillation_lines(results: BenchResults) -> list[str]:
    """The sentences beside the table: the gain and the split it is on, the teacher's own figure, and why a
    figure may read high or be missing (markdown bold for the gain)."""
    d = results.distillation
    if d is None:
        return []
    lines = [_gain_sentence(d)]
    t = d.teacher
    if t.card_accuracy is not None and t.card_eval_split and (t.card_eval_split != d.eval_split
                                                               or t.accuracy is None
                                                               or abs(t.card_accuracy - t.accuracy) > 1e-9):
        lines.append(f"The teacher's own run states {100 * t.card_accuracy:.2f}% on its {t.card_eval_split} split; "
                     f"the figures here are on the student's {d.eval_split} images.")
    if d.teacher_trained_on_eval:
        lines.append(f"The teacher was trained on {d.teacher_trained_on_eval} of these {d.eval_images} "
                     f"{d.eval_split} images (its split.json): its figure reads high, and the distilled student "
                     "learnt from its outputs on them. Train the teacher on the student's split for a fair figure.")
    return lines + list(d.notes)


def _gain_sentence(d: DistillationComparison) -> str:
    student, alone = d.distilled, d.student_alone
    teacher = f"{d.teacher.backbone or 'the teacher'} ({d.teacher.path})"
    if alone is None or d.gain_points is None:
        return (f"Distilled from {teacher}: the student reaches {format_interval(student.accuracy, student.eval_images)}"
                f" on {d.eval_split}; the student alone was not trained, so the gain is not known.")
    return (f"Distillation from {teacher} (T {d.temperature:g}, alpha {d.alpha:g}): the student reaches "
            f"**{100 * (student.accuracy or 0):.2f}%** on {d.eval_split} against **{100 * (alone.accuracy or 0):.2f}%"
            f"** trained alone (same split, seed and recipe, cross-entropy only): **{d.gain_points:+.2f} points** "
            f"on {d.eval_images} images; the teacher {format_interval(d.teacher.accuracy, d.teacher.eval_images)}.")


def distillation_html(results: BenchResults) -> str:
    """The report.html section: heading, sentences and table (empty without a teacher)."""
    table = distillation_table(results)
    if table is None:
        return ""

    def bold(text: str) -> str:
        escaped = html.escape(text)
        while "**" in escaped:
            escaped = escaped.replace("**", "<b>", 1).replace("**", "</b>", 1)
        return escaped

    return ("<h2>Distillation</h2>" + "".join(f"<p>{bold(line)}</p>" for line in distillation_lines(results))
            + table.html())


def distillation_markdown(results: BenchResults) -> str:
    table = distillation_table(results)
    if table is None:
        return ""
    return "\n".join([*(f"- {line}" for line in distillation_lines(results)), "", table.markdown()])
