"""The CLI process: signals and exit codes as a user (or a CI runner) sees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.subprocess
def test_sigterm_mid_training_exits_130_and_leaves_no_worker_processes(tiny_imagefolder: Path,
                                                                         tmp_path: Path) -> None:
    config = tmp_path / "build.yaml"
    config.write_text("data: {num_workers: 1}\n")  # a forkserver DataLoader worker, the process that used to leak
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgetl.cli", "train", "--data", str(tiny_imagefolder), "--backbone", "tiny",
         "--image-size", "32", "--batch-size", "4", "--head-epochs", "1", "--epochs", "500", "--config", str(config),
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    try:
        assert _wait_for(lambda: any(out.rglob("last.pt")) or proc.poll() is not None, 90), "training never started"
        assert proc.poll() is None, proc.communicate()[0]
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "expected DataLoader worker processes"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted" in output
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"processes left running after SIGTERM: {[p.pid for p in alive]}"
    # the stage is not marked complete (later stages trust only a manifest), and the resume point is kept
    assert not (out / "train" / "manifest.json").exists()
    assert (out / "train" / "last.pt").is_file()


def _train_command(data: Path, out: Path, config: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "edgetl.cli", "train", "--data", str(data), "--backbone", "tiny", "--image-size",
            "32", "--batch-size", "4", "--head-epochs", "1", "--epochs", str(epochs), "--config", str(config),
            "--out", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


@pytest.mark.subprocess
def test_kill_9_mid_training_leaves_no_orphan_processes(tiny_imagefolder: Path, tmp_path: Path) -> None:
    """A hard kill runs no handler: the forkserver, its DataLoader workers and the resource tracker must still go."""
    config = tmp_path / "build.yaml"
    config.write_text("data: {num_workers: 1}\n")
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_command(tiny_imagefolder, out, config, 500), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env(), cwd=tmp_path)
    try:
        assert _wait_for(lambda: any(out.rglob("last.pt")) or proc.poll() is not None, 90), "training never started"
        assert proc.poll() is None, proc.communicate()[0]
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert len(descendants) >= 3, "expected the forkserver, a DataLoader worker and the resource tracker"
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(descendants, timeout=20)
    for p in alive:  # do not leak them into the rest of the test session
        p.kill()
    assert not alive, f"still running 20 s after kill -9 of edgetl: {[(p.pid, p.cmdline()[-1][:60]) for p in alive]}"


@pytest.mark.subprocess
def test_resume_with_dataloader_workers_matches_an_uninterrupted_run(tiny_imagefolder: Path, tmp_path: Path) -> None:
    config = tmp_path / "build.yaml"
    config.write_text("data: {num_workers: 1, restart_workers: true}\ntrain: {patience: 100}\n")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = subprocess.run(_train_command(tiny_imagefolder, whole, config, 5), capture_output=True, text=True,
                          env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    def epochs_written() -> int:
        metrics = cut / "train" / "metrics.json"
        try:
            return len(json.loads(metrics.read_text())["epochs"])
        except (OSError, ValueError, KeyError):
            return 0

    proc = subprocess.Popen(_train_command(tiny_imagefolder, cut, config, 5), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env(), cwd=tmp_path)
    try:
        assert _wait_for(lambda: epochs_written() >= 3 or proc.poll() is not None, 180)
        proc.send_signal(signal.SIGTERM)  # mid-way: after epoch 3 of 6
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "add --resume" in output
    resumed = subprocess.run([*_train_command(tiny_imagefolder, cut, config, 5), "--resume"], capture_output=True,
                             text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr

    def curve(run: Path) -> list[tuple[float, float]]:
        return [(e["train_loss"], e["val_loss"]) for e in json.loads((run / "train" / "metrics.json").read_text())["epochs"]]

    assert len(curve(whole)) == 6 and curve(cut) == curve(whole)
