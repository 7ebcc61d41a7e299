"""``scores.npz``: the evaluation logits beside results.json, written atomically and read back by row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgetl.bench.results import (
    SCORES_NAME,
    BenchResults,
    BenchRow,
    BenchSettings,
    load_scores,
    row_id,
    write_scores,
)
from edgetl.errors import ModelFileError


def _row(name: str, precision: str = "fp32") -> BenchRow:
    return BenchRow(name=name, format="onnx", precision=precision, source="fp32", runtime="onnxruntime",  # type: ignore[arg-type]
                    device="cpu", status="ok")


def _results(scores_file: str | None) -> BenchResults:
    settings = BenchSettings(warmup=0, min_iterations=1, min_time_s=0, threads=None, batch_sizes=[1],
                             eval_batch_size=1, memory_method="-")
    return BenchResults(target="cpu", source=".", settings=settings, scores_file=scores_file)


def test_scores_round_trip_by_row_and_stay_out_of_results_json(tmp_path: Path) -> None:
    labels = np.array([0, 1, 2, 1])
    fp32 = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    rows = [_row("onnx-fp32").with_logits(fp32), _row("onnx-int8-qat", "int8").with_logits(fp32 + 1),
            _row("not-evaluated")]
    rows = [r.model_copy(update={"accuracy": 0.5}) for r in rows]  # what the stage does: the logits travel along
    assert write_scores(tmp_path, labels, rows) == SCORES_NAME
    assert sorted(p.name for p in tmp_path.iterdir()) == [SCORES_NAME]  # no temporary file left behind
    results = _results(SCORES_NAME)
    results.rows = rows
    results.write(tmp_path)
    assert "logits" not in (tmp_path / "results.json").read_text()
    got = load_scores(tmp_path / "results.json", results)
    assert got is not None
    got_labels, logits = got
    assert got_labels.tolist() == labels.tolist() and set(logits) == {row_id(rows[0]), row_id(rows[1])}
    np.testing.assert_array_equal(logits[row_id(rows[1])], fp32 + 1)


def test_no_logits_no_file_and_a_missing_file_is_no_scores(tmp_path: Path) -> None:
    assert write_scores(tmp_path, np.zeros(2), [_row("a")]) is None and not (tmp_path / SCORES_NAME).exists()
    assert load_scores(tmp_path / "results.json", _results(None)) is None
    assert load_scores(tmp_path / "results.json", _results(SCORES_NAME)) is None  # moved without it


def test_scores_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / SCORES_NAME, labels=np.zeros(3, np.int64), rows=np.array(["a"]),
             logits=np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ModelFileError, match="logits of shape"):
        load_scores(tmp_path / "results.json", _results(SCORES_NAME))
