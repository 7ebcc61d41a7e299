"""The report's transfer facts: a Wilson interval on every accuracy, the shots per class and the
accuracy-against-shots curve of a few-shot build, and the warning when val and test disagree beyond their noise."""

from __future__ import annotations

import re
from pathlib import Path

from edgetl.fsutil import read_json, write_json
from edgetl.report.render import write_report
from edgetl.report.transfer import load_transfer, shots_table, transfer_lines
from edgetl.stats import split_disagreement
from tests.report.test_report import results_path  # noqa: F401  (the module-scoped benchmark fixture)

CURVE = [{"shots": k, "accuracy": a, "ci95": [a - 0.1, min(1.0, a + 0.05)], "seed_accuracies": [a - 0.02, a, a + 0.02],
          "seeds": [0, 1, 2], "eval_images": 40} for k, a in ((1, 0.70), (2, 0.80), (3, 0.85))]


def _run_with_metrics(root: Path, **metrics: object) -> Path:
    (root / "train").mkdir(parents=True)
    base = {"epochs": [], "best_epoch": 0, "eval_split": "test",
            "class_counts": {"train": {"ants": 3, "bees": 3}, "val": {"ants": 20, "bees": 20},
                             "test": {"ants": 20, "bees": 20}}}
    write_json(root / "train" / "metrics.json", {**base, **metrics})
    return root


def test_a_few_shot_build_states_its_shots_and_draws_the_curve(results_path: Path, tmp_path: Path) -> None:  # noqa: F811
    run = _run_with_metrics(tmp_path / "run", head="prototype", shots_curve=CURVE,
                            val_test_check=split_disagreement(0.9, 40, 0.85, 40))
    info = load_transfer(run)
    assert info is not None and info.few_shot and info.shots_per_class == {"ants": 3, "bees": 3}
    lines = transfer_lines(info)
    assert len(lines) == 1 and "3 labelled image(s) per class** (ants 3, bees 3)" in lines[0]  # no shift warning
    table = shots_table(info)
    assert [r[0] for r in table.rows] == ["1", "2", "3"]
    assert table.rows[0][1] == "70.00% (95% CI 54.6-81.9)"  # the Wilson interval of 28/40

    md, page = write_report(results_path, tmp_path / "report", run_dir=run)
    text = md.read_text()
    assert "Few-shot build: **3 labelled image(s) per class**" in text
    assert "against labelled images per class" in text and "| 2 | 80.00% (95% CI" in text
    html = page.read_text()
    assert "Accuracy against labelled images per class" in html
    # one more embedded figure than the report of a build without a curve
    plain = write_report(results_path, tmp_path / "plain")[1].read_text()
    count = len(re.findall(r"src='data:image/png;base64,", html))
    assert count == len(re.findall(r"src='data:image/png;base64,", plain)) + 1


def test_every_accuracy_in_the_report_carries_its_wilson_interval(results_path: Path, tmp_path: Path) -> None:  # noqa: F811
    from edgetl.bench.results import load_results

    results = load_results(results_path)
    evaluated = [r for r in results.rows if r.accuracy is not None]
    assert evaluated
    text = write_report(results_path, tmp_path)[0].read_text()
    # every percentage with two decimals in a table cell or a sentence is followed by its interval
    bare = re.findall(r"\d+\.\d\d%(?! \(95% CI)", text)
    assert bare == [], bare
    for r in evaluated:
        assert f"{100 * r.accuracy:.2f}% (95% CI " in text


def test_val_and_test_beyond_their_noise_is_a_warning_in_the_report(results_path: Path, tmp_path: Path) -> None:  # noqa: F811
    run = _run_with_metrics(tmp_path / "run", head="linear",
                            class_counts={"train": {"ants": 100, "bees": 100}, "val": {"ants": 50, "bees": 50}},
                            val_test_check=split_disagreement(0.976, 100, 0.733, 120))
    info = load_transfer(run)
    assert info is not None and not info.few_shot
    (line,) = transfer_lines(info)
    assert line.startswith("**Warning: val and test disagree beyond their noise**")
    assert "val 97.60% (95% CI" in line and "non-overlapping Wilson 95% intervals" in line
    text = write_report(results_path, tmp_path / "report", run_dir=run)[0].read_text()
    assert "Warning: val and test disagree beyond their noise" in text and "Few-shot build" not in text
    # within noise: no warning
    quiet = _run_with_metrics(tmp_path / "quiet", head="linear",
                              class_counts={"train": {"ants": 100, "bees": 100}},
                              val_test_check=split_disagreement(0.95, 100, 0.93, 120))
    assert transfer_lines(load_transfer(quiet)) == []
    assert read_json(quiet / "train" / "metrics.json")["val_test_check"]["disagree"] is False
