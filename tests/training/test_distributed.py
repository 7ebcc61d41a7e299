"""`edgetl train` under torchrun: two CPU processes (gloo) on the tiny backbone finish and write one checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgetl.artifacts import read_model_artifact
from edgetl.fsutil import read_json
from edgetl.manifest import read_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.subprocess
def test_torchrun_two_cpu_processes_train_and_rank_0_writes(tiny_imagefolder: Path, tmp_path: Path) -> None:
    config = tmp_path / "build.yaml"
    config.write_text("data: {num_workers: 0}\ntrain: {head_lr: 0.01, lr: 0.01, backbone_lr: 0.01}\n")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "edgetl.cli", "train", "--data", str(tiny_imagefolder), "--backbone", "tiny", "--image-size", "32",
         "--batch-size", "4", "--head-epochs", "1", "--epochs", "2", "--config", str(config), "--out", str(out)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train = out / "train"
    manifest = read_manifest(train)
    assert manifest.info["world_size"] == 2
    assert manifest.verify_outputs(train) == []
    assert list(read_model_artifact(train).card.classes) == ["blue", "green", "red"]
    metrics = read_json(train / "metrics.json")
    assert len(metrics["epochs"]) == 3
    # validation is sharded without padding: the two processes together saw each of the 12 images exactly once
    assert sum(c["count"] for c in metrics["eval_per_class"].values()) == 12
    assert proc.stdout.count("best val acc") == 1  # only rank 0 prints the summary


@pytest.mark.subprocess
def test_torchrun_qat_trains_data_parallel_and_rank_0_writes(tmp_path: Path) -> None:
    """QAT runs through the shared trainer, so it runs under torchrun too (two CPU processes, gloo)."""
    import json

    from tests.quant.builders import make_train_dir

    train = make_train_dir(tmp_path)
    config = tmp_path / "build.yaml"
    config.write_text("data: {num_workers: 0}\ntrain: {backbone: tiny, batch_size: 4}\n"
                      "quantize: {qat_epochs: 1, calibration_images: 8, max_steps_per_epoch: 3, ptq_baseline: false}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "edgetl.cli", "quantize", "--config", str(config), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert train.is_dir() and read_manifest(tmp_path / "quantize").verify_outputs(tmp_path / "quantize") == []
    metrics = json.loads((tmp_path / "quantize" / "metrics.json").read_text())
    assert metrics["qat"]["world_size"] == 2 and [h["epoch"] for h in metrics["qat"]["history"]] == [0, 1]
    assert proc.stdout.count("edgetl quantize: torch top-1") == 1  # only rank 0 reports
