"""Exit codes and one-line messages for inputs and failures a user runs into (CliRunner, in-process)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def test_an_unexpected_exception_is_one_line_and_exit_3(monkeypatch, tmp_path):
    def boom(path):  # type: ignore[no-untyped-def]
        raise KeyError("path")

    monkeypatch.setattr("edgetl.predict.open_bundle", boom)
    (tmp_path / "x.png").write_bytes(b"")
    result = run("predict", str(tmp_path), str(tmp_path / "x.png"))
    assert result.exit_code == 3
    assert "error: unexpected KeyError: 'path'" in result.output and "--verbose" in result.output
    assert "Traceback" not in result.output
    verbose = run("predict", str(tmp_path), str(tmp_path / "x.png"), "--verbose")
    assert verbose.exit_code == 3 and "Traceback (most recent call last)" in verbose.output
    env = run("predict", str(tmp_path), str(tmp_path / "x.png"), env={"EDGETL_VERBOSE": "1"})
    assert env.exit_code == 3 and "Traceback" in env.output and 'raise KeyError("path")' in env.output


def test_click_usage_errors_keep_exit_2():
    result = run("no-such-command")
    assert result.exit_code == 2 and "No such command" in result.output


@pytest.mark.parametrize("command", ["build", "train", "quantize", "export"])
def test_out_naming_a_file_is_exit_2(tmp_path, command):
    (tmp_path / "afile").write_text("x")
    result = run(command, "--out", str(tmp_path / "afile"))
    assert result.exit_code == 2, result.output
    assert f"--out {tmp_path / 'afile'} is a file, not a directory" in result.output
    nested = run(command, "--out", str(tmp_path / "afile" / "run"))
    assert nested.exit_code == 2 and "is a file, so the directory cannot be created" in nested.output


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    try:  # root writes through permission bits; sysfs refuses new entries even to root
        tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    pytest.skip("no directory here refuses writes to this user")


def test_out_in_an_unwritable_directory_is_exit_2(tmp_path):
    where = _unwritable(tmp_path)
    result = run("build", "--out", str(where / "run"))
    assert result.exit_code == 2, result.output
    assert f"cannot write in {where}" in result.output and "Traceback" not in result.output


def test_a_file_as_data_and_a_directory_as_weights_are_named_for_what_they_are(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = run("train", "--data", str(tmp_path / "afile"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and "is a file, not a folder" in result.output
    (tmp_path / "weights").mkdir()
    result = run("train", "--weights", str(tmp_path / "weights"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and "is a directory; expected a checkpoint file" in result.output


@pytest.mark.parametrize("command, hint", [("build", "rerun the same command to resume"),
                                           ("train", "add --resume to continue from OUT/train/last.pt")])
def test_the_interrupt_message_fits_the_command(monkeypatch, tmp_path, command, hint):
    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr("edgetl.pipeline.build", interrupted)
    monkeypatch.setattr("edgetl.stages.finetune.finetune", interrupted)
    result = run(command, "--out", str(tmp_path / "run"))
    assert result.exit_code == 130 and hint in result.output
    assert "--resume" not in result.output or command == "train"


@pytest.mark.subprocess
def test_a_malformed_bundle_in_a_real_process_exits_2_without_a_traceback(tmp_path):
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text('{"format": "edgetl-bundle-v1", "files": [{"path": 1}]}')
    (tmp_path / "x.png").write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("EDGETL_VERBOSE", None)
    proc = subprocess.run([sys.executable, "-m", "edgetl.cli", "predict", str(tmp_path / "bundle"),
                           str(tmp_path / "x.png")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr  # a malformed manifest is an input error
    assert "files[0] needs a 'path'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_schema_invalid_baseline_names_each_field(tmp_path):
    import json

    from edgetl.bench.results import RESULTS_SCHEMA

    row = {"name": "onnx-fp32", "precision": "fp32", "status": "ok", "latency_ms": "fast"}
    bad = tmp_path / "baseline.json"
    bad.write_text(json.dumps({"schema_version": RESULTS_SCHEMA, "rows": [row]}))
    result = run("gate", str(bad), str(bad))
    assert result.exit_code == 2
    assert "field 'rows.0.runtime': Field required" in result.output
    assert "field 'rows.0.latency_ms'" in result.output and "(got 'fast')" in result.output


def test_an_extends_error_names_the_file_and_the_field(tmp_path):
    profile = tmp_path / "board.yaml"
    profile.write_text("name: board\nextends: no-such-board\n")
    result = run("targets", "validate", str(profile))
    assert result.exit_code == 2
    assert f"{profile}: field 'extends': unknown target 'no-such-board'" in result.output
    profile.write_text("name: board\nextends: ./missing.yaml\n")
    result = run("targets", "validate", str(profile))
    assert f"{profile}: field 'extends': target file ./missing.yaml does not exist" in result.output


_IMPORT_TORCHAO = "import logging, sys\n{setup}\nimport torchao.quantization\n"


@pytest.mark.subprocess
@pytest.mark.parametrize("setup, shown", [
    ("", True),  # what torch prints on its own
    ("from edgetl.library_logs import quiet_library_logs; quiet_library_logs()", False),
    ("logging.getLogger('edgetl').setLevel(logging.DEBUG)\n"
     "from edgetl.library_logs import quiet_library_logs; quiet_library_logs()", True),  # --verbose
    # the CLI quiets it before any stage runs: a text model's training imports torchao before quantize does
    ("from edgetl.cli.common import setup_logging; setup_logging()", False),
    ("from edgetl.cli.common import setup_logging; setup_logging(verbose=True)", True),
], ids=["torch", "edgetl", "edgetl-verbose", "cli", "cli-verbose"])
def test_the_register_constant_deprecation_is_shown_only_with_verbose(setup, shown):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", _IMPORT_TORCHAO.format(setup=setup)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ("register_constant()" in proc.stderr) is shown


_LOG_TWICE = """
import logging, sys
from edgetl.cli import cli, main
from edgetl.cli.common import setup_logging

@cli.command("probe-log")
def probe_log():
    setup_logging()
    logging.warning("a library's note")  # installs a root handler, as ONNX Runtime's quantization tools do
    logging.getLogger("edgetl.export").info("an edgetl line")

sys.argv = ["edgetl", "probe-log"]
main()
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("verbose", [False, True])
def test_onnx_runtimes_pre_processing_advice_is_shown_only_with_verbose(verbose):
    code = ("from edgetl.cli.common import setup_logging\n"
            f"setup_logging(verbose={verbose})\n"
            "import logging\n"
            "logging.warning('Please consider to run pre-processing before quantization. Refer to example: x')\n"
            "logging.warning('a note that stays')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ("pre-processing before quantization" in proc.stderr) is verbose
    assert "a note that stays" in proc.stderr


@pytest.mark.subprocess
def test_an_edgetl_line_prints_once_after_a_library_installs_a_root_handler():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", _LOG_TWICE], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert out.count("an edgetl line") == 1, out
    assert "a library's note" in out  # the library's own warning still shows
