"""One run directory, one edgetl process at a time; build.json says how a stage that did not finish ended."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from edgetl.fsutil import LOCK_NAME, dir_lock

REPO_ROOT = Path(__file__).resolve().parents[2]
HOLD = "import sys, time; from edgetl.fsutil import dir_lock\nwith dir_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)\n"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def holder(tmp_path: Path):
    """Another process holding the lock on tmp_path/run, as a running build would."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield out, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.subprocess
@pytest.mark.parametrize("command", ["build", "train", "quantize", "export"])
def test_a_second_run_into_a_busy_directory_refuses_naming_the_holder(holder, command):
    out, proc = holder
    result = run(command, "--out", str(out), "--data", "digits") if command in ("build", "train") else \
        run(command, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert f"{out} is in use by another edgetl run (pid {proc.pid}" in result.output
    assert not (out / "build.json").exists() and not (out / "train").exists()  # nothing of the holder's touched


@pytest.mark.subprocess
def test_the_lock_of_a_killed_process_is_taken_over(holder):
    out, proc = holder
    proc.kill()  # kill -9: no cleanup ran, the lock file stays behind
    proc.wait()
    assert (out / LOCK_NAME).read_text().startswith(f"pid {proc.pid}")
    with dir_lock(out):
        assert (out / LOCK_NAME).read_text().startswith(f"pid {os.getpid()}")
        with dir_lock(out):  # the same process may nest it
            pass


def test_build_json_records_a_failed_stage_and_why(tmp_path):
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", {"a": 3, "b": 3})
    for image in (data / "train" / "b").iterdir():
        image.write_bytes(b"not an image")
    config = tmp_path / "build.yaml"
    config.write_text(f"train: {{backbone: tiny, weights: none, image_size: 32}}\n"
                      f"data: {{path: {data}, num_workers: 0}}\nout: {tmp_path / 'run'}\n")
    result = run("build", "--config", str(config))
    assert result.exit_code == 2 and "every image of class(es) b" in result.output
    state = json.loads((tmp_path / "run" / "build.json").read_text())
    assert state["train"]["status"] == "failed"
    assert state["train"]["error"].startswith("DataError: every image of class(es) b")


def test_build_json_records_an_interrupted_stage_and_resumes_it(tmp_path, monkeypatch):
    import dataclasses

    from edgetl.pipeline.engine import STAGES, ordered_stages

    ordered_stages()  # registers the built-in stages
    seen: list[bool] = []

    def train_interrupted(ctx, resume):  # type: ignore[no-untyped-def]
        seen.append(resume)
        raise KeyboardInterrupt

    monkeypatch.setitem(STAGES._entries, "train", dataclasses.replace(STAGES.get("train"), run=train_interrupted))
    for _ in range(2):
        result = run("build", "--out", str(tmp_path / "run"), "--data", "digits", "--backbone", "tiny")
        assert result.exit_code == 130
        assert json.loads((tmp_path / "run" / "build.json").read_text())["train"]["status"] == "interrupted"
    assert seen == [False, True]  # the second build resumes the interrupted stage
