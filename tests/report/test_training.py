"""Training curves from the run's metrics.json files: fine-tuning phases, prune recovery and QAT on one axis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgetl.errors import ModelFileError
from edgetl.report.training import load_history, plot_training, training_table


def _epoch(epoch: int, phase: str, loss: float, acc: float) -> dict[str, object]:
    # the keys the trainer writes per epoch (edgetl.training.trainer: TrainState.history)
    return {"epoch": epoch, "phase": phase, "train_loss": loss, "train_accuracy": acc, "val_loss": loss + 0.1,
            "val_accuracy": acc - 0.05, "lr": 1e-3, "lr_backbone": None, "time_s": 0.5}


def write_run(root: Path, prune: bool = True) -> Path:
    (root / "train").mkdir(parents=True)
    (root / "train" / "metrics.json").write_text(json.dumps({
        "complete": True, "best_epoch": 3, "eval_split": "val",
        "epochs": [_epoch(1, "head", 1.0, 0.5), _epoch(2, "finetune", 0.7, 0.7), _epoch(3, "finetune", 0.5, 0.8)]}))
    if prune:
        (root / "prune").mkdir()
        (root / "prune" / "metrics.json").write_text(json.dumps({
            "best_epoch": 1, "epochs": [_epoch(1, "recover", 0.6, 0.75), _epoch(2, "recover", 0.55, 0.74)]}))
    (root / "quantize").mkdir()
    # quantize/metrics.json's qat section: epoch 0 is the PTQ-initialised model, judged before any step
    (root / "quantize" / "metrics.json").write_text(json.dumps({"qat": {"kept_epoch": 2, "history": [
        {"epoch": 0, "train_loss": None, "train_accuracy": None, "val_accuracy": 0.7},
        {"epoch": 1, "train_loss": 0.6, "train_accuracy": 0.76, "val_accuracy": 0.72},
        {"epoch": 2, "train_loss": 0.55, "train_accuracy": 0.78, "val_accuracy": 0.76}]}}))
    return root


def test_stages_follow_one_another_with_their_phases_and_kept_epochs(tmp_path: Path) -> None:
    history = load_history(write_run(tmp_path))
    assert history is not None
    assert history.phases() == [("head", 1, 1), ("finetune", 2, 3), ("recover", 4, 5), ("qat", 6, 8)]
    assert history.kept == {"train": 3, "prune": 4, "quantize": 8}
    assert history.sources == ["train/metrics.json", "prune/metrics.json", "quantize/metrics.json"]
    qat_start = history.epochs[5]
    assert (qat_start.epoch, qat_start.train_loss, qat_start.val_accuracy) == (0, None, 0.7)
    png = plot_training(history)
    assert png is not None and len(png) > 5000
    table = training_table(history)
    assert [r[0] for r in table.rows] == ["head only (backbone frozen)", "fine-tuning", "prune recovery",
                                          "QAT (int8 fake-quant)"]
    assert table.rows[1][1] == "2-3" and table.rows[1][-1] == "epoch 3" and table.rows[3][-1] == "epoch 2"


def test_no_metrics_no_history_and_a_corrupt_file_names_itself(tmp_path: Path) -> None:
    assert load_history(tmp_path) is None  # a bare model file's bench: no training section
    run = write_run(tmp_path / "run", prune=False)
    (run / "quantize" / "metrics.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"quantize/metrics.json is not valid JSON"):
        load_history(run)
