"""The CLI process: signals and exit codes as a user (or a CI runner) sees them."""

from __future__ import annotations

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
