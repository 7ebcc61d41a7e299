"""``edgetl build`` / ``edgetl bench`` with ``--device ssh://...``, end to end through the CLI against the real sshd
of ``conftest.loopback`` (the "device" is this host, logged into as the non-root ``edgetl-device`` user whose
python has numpy and onnxruntime but no torch), plus the roofline estimate rows of a target nothing can reach."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from tests.execution.conftest import Loopback, free_port

pytestmark = pytest.mark.subprocess  # ssh clients are subprocesses: collected first, as tests/conftest.py explains

FAST = """
train: {{backbone: tiny, weights: none, image_size: 32, batch_size: 8, head_epochs: 1, epochs: 2, seed: 0}}
quantize: {{qat_epochs: 1, calibration_images: 16, skip_qat_within_budget: false}}
bench: {{warmup: 1, min_iterations: 5, min_time_s: 0.0, batch_sizes: [1, 2]}}
data: {{path: {data}, num_workers: 0}}
out: {out}
"""

BOARD = """
# the user's own board: a Raspberry Pi 5 as shipped, with looser budgets for the tiny test model
extends: raspberry-pi-5
name: my-pi
budgets: {{p90_latency_ms: {latency}, model_size_mb: 10, peak_memory_mb: 1024, max_accuracy_drop: 100}}
"""


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def device_flags(box: Loopback, *, port: int | None = None, key: Path | None = None,
                 python: str | None = None) -> list[str]:
    return ["--device", f"ssh://{box.user}@127.0.0.1:{port or box.port}{box.workdir}",
            "--device-python", python or box.python, "--identity", str(key or box.key),
            "--ssh-config", str(box.ssh_config)]


def rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"]


@pytest.fixture(scope="module")
def built(loopback: Loopback, tmp_path_factory: pytest.TempPathFactory):
    """``edgetl build --target ./board.yaml --device ssh://edgetl-device@127.0.0.1:PORT/WORKDIR`` on tiny data."""
    from tests.conftest import make_image_folder

    base = tmp_path_factory.mktemp("remote")
    data = make_image_folder(base / "data", {"red": 10, "green": 10, "blue": 10})
    config = base / "build.yaml"
    config.write_text(FAST.format(data=data, out=base / "run"))
    board = base / "board.yaml"
    board.write_text(BOARD.format(latency=1000))
    result = run("build", "--target", str(board), "--config", str(config), *device_flags(loopback))
    return base, config, board, result


def test_build_measures_on_the_device_and_checks_budgets_there(built, loopback: Loopback) -> None:
    base, _, _, result = built
    assert result.exit_code == 0, result.output
    out = base / "run"
    hostname = socket.gethostname()
    all_rows = rows(out / "bench" / "results.json")
    device = [r for r in all_rows if r["measured_on"] == "device"]
    assert {r["name"] for r in device} == {"onnx-fp32", "onnx-int8-qat", "onnx-int8-ptq"}
    for r in device:
        assert r["status"] == "ok", r["reason"]
        assert r["device_hostname"] == hostname and not r["proxy"] and r["runtime"] == "onnxruntime"
        assert r["device_address"] == f"ssh://{loopback.user}@127.0.0.1:{loopback.port}{loopback.workdir}"
        assert r["latency_ms"]["p90"] > 0 and r["peak_memory_mb"] is not None and r["eval_images"] == 15
        assert r["threads"] == 2 and "capped at the device's 2 cores" in r["note"]  # the Pi's 4 threads
        # the same model on the same runtime and inputs: the device's accuracy is the host proxy's
        host = next(h for h in all_rows if h["name"] == r["name"] and h["measured_on"] == "host"
                    and h["runtime"] == "onnxruntime")
        assert host["proxy"] and r["accuracy"] == host["accuracy"] and r["confusion_matrix"] == host["confusion_matrix"]
    facts = json.loads((out / "bench" / "results.json").read_text())["device_facts"]
    assert facts["hostname"] == hostname and facts["runtimes"]["onnxruntime"] and facts["python_executable"]
    budgets = {b["budget"]: b for b in json.loads((out / "budgets.json").read_text())}
    assert budgets["p90 latency"]["status"] == "pass" and budgets["peak memory"]["status"] == "pass"
    assert f"onnx-int8-qat) on the device {hostname}" in budgets["p90 latency"]["where"]
    int8 = next(r for r in device if r["name"] == "onnx-int8-qat")
    assert budgets["p90 latency"]["measured"] == int8["latency_ms"]["p90"]
    assert "measured on" in result.output and hostname in result.output
    report = (out / "report" / "report.md").read_text()
    assert "| measured on |" in report and f"| {hostname} |" in report
    assert loopback.workdir_entries() == [] and loopback.wait_no_processes() == []


def test_a_budget_the_device_misses_fails_the_build(built, loopback: Loopback) -> None:
    base, config, _, _ = built
    tight = base / "tight.yaml"
    tight.write_text(BOARD.format(latency=0.0001))  # everything reused; only the budgets change
    result = run("build", "--target", str(tight), "--config", str(config), *device_flags(loopback))
    assert result.exit_code == 1, result.output
    budgets = {b["budget"]: b for b in json.loads((base / "run" / "budgets.json").read_text())}
    assert budgets["p90 latency"]["status"] == "fail" and "on the device" in budgets["p90 latency"]["where"]


def test_a_device_entry_in_the_target_profile_measures_there(built, loopback: Loopback) -> None:
    base, _, _, _ = built
    board = base / "board-with-device.yaml"
    board.write_text(BOARD.format(latency=1000) + (
        f"device: {{url: 'ssh://{loopback.user}@127.0.0.1:{loopback.port}{loopback.workdir}', "
        f"python: {loopback.python}, identity_file: {loopback.key}, ssh_config: {loopback.ssh_config}}}\n"))
    out = base / "bench-profile-device"
    result = run("bench", str(base / "run"), "--target", str(board), "--out", str(out), "--no-report")
    assert result.exit_code == 0, result.output
    device = [r for r in rows(out / "results.json") if r["measured_on"] == "device"]
    assert len(device) == 3 and all(r["status"] == "ok" for r in device)
    assert loopback.workdir_entries() == []


@pytest.mark.parametrize("case", ["wrong key", "closed port", "missing runtime"])
def test_device_failures_exit_3_with_the_reason_and_write_nothing(built, loopback: Loopback, case: str) -> None:
    base, _, board, _ = built
    before = (base / "run" / "bench" / "results.json").read_bytes()
    flags = {"wrong key": device_flags(loopback, key=loopback.wrong_key),
             "closed port": device_flags(loopback, port=free_port()),
             "missing runtime": device_flags(loopback, python=loopback.bare_python)}[case]
    out = base / f"failed-{case.replace(' ', '-')}"
    result = run("bench", str(base / "run"), "--target", str(board), "--out", str(out), *flags)
    assert result.exit_code == 3, result.output
    expected = {"wrong key": ("refused every key offered", "authorized_keys"),
                "closed port": ("connection refused", "sshd runs on the device"),
                "missing runtime": ("onnxruntime is not installed on the device",
                                    f"{loopback.bare_python} -m pip install onnxruntime")}[case]
    for text in expected:
        assert text in result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing half-written
    assert (base / "run" / "bench" / "results.json").read_bytes() == before
    assert loopback.workdir_entries() == []


def test_a_target_nobody_can_reach_gets_estimates_with_their_band(built, tmp_path: Path) -> None:
    """``edgetl build --target jetson``: no GPU here, no device given: estimate rows, and the latency budget says
    estimated instead of passing or failing on them."""
    base, config, _, _ = built
    run_dir = tmp_path / "jetson-run"
    shutil.copytree(base / "run", run_dir)  # train and quantize are reused; export reruns for the Jetson's input
    result = run("build", "--target", "jetson", "--config", str(config), "--out", str(run_dir))
    assert result.exit_code == 0, result.output
    estimates = [r for r in rows(run_dir / "bench" / "results.json") if r["measured_on"] == "estimate"]
    assert {(r["name"], r["runtime"], r["precision"]) for r in estimates} == {
        ("onnx-int8-qat", "tensorrt", "int8"), ("onnx-int8-ptq", "tensorrt", "int8"),
        ("onnx-fp32", "tensorrt", "fp16"), ("onnx-fp32", "onnxruntime", "fp32")}
    for r in estimates:
        e = r["estimate"]
        assert r["status"] == "ok" and r["latency_ms"] is None and not r["proxy"]  # nothing was timed
        assert e["latency_ms"] > 0 and e["band"] == [0.25, 1.882]
        assert e["low_ms"] == pytest.approx(e["latency_ms"] / 1.882, rel=1e-3)
        assert e["high_ms"] == pytest.approx(e["latency_ms"] / 0.25, rel=1e-3)
        assert "real latency 0.53-4x of it (band measured on the build host" in r["note"]
        assert "jetson-orin-nano" in e["peaks"]["source"]
    budgets = {b["budget"]: b for b in json.loads((run_dir / "budgets.json").read_text())}
    latency = budgets["p90 latency"]
    qat = next(r for r in estimates if r["name"] == "onnx-int8-qat")
    assert latency["status"] == "estimated" and latency["measured"] is None
    assert latency["estimated"] == qat["estimate"]["latency_ms"] and "roofline estimate" in latency["where"]
    line = next(ln for ln in result.output.splitlines() if ln.startswith("p90 latency"))
    assert "estimated" in line and f"~{qat['estimate']['latency_ms']:.3g}" in line
    report = (run_dir / "report" / "report.md").read_text()
    assert "Latency estimates (roofline, not measured" in report and "(estimate; real " in report
    assert "| estimate |" in report


def test_the_uint8_input_variant_gives_the_float_models_predictions_on_the_device(built, loopback: Loopback) -> None:
    """The bundle's uint8-input variant, fed the uint8 crops on the device, predicts what its float-input model
    predicts there from the normal preprocessed images (and what the build's device row measured)."""
    import numpy as np

    from edgetl.execution.ssh import measure_on_device
    from edgetl.stages.quantize import read_float_model

    base, _, _, result = built
    assert result.exit_code == 0, result.output
    bundle = base / "run" / "bundle"
    (variant,) = json.loads((bundle / "manifest.json").read_text())["uint8_input"]
    inputs = read_float_model(base / "run" / "train")
    floats, pixels, labels = [], [], []
    for (batch, lab), raw in inputs.task.eval_pixel_batches(inputs.eval_samples, inputs.preprocess, 8):
        floats.append(batch["input"])
        pixels.append(raw["input"])
        labels.append(lab)
    assert np.concatenate(pixels).dtype == np.uint8 and np.concatenate(pixels).shape[1:] == (32, 32, 3)
    row = {"runtime": "onnxruntime", "device": "cpu", "precision": "int8", "threads": 1, "warmup": 1,
           "min_iterations": 3, "min_time_s": 0.0}
    got = {}
    for kind, model, arrays in (("float", variant["variant_of"], floats), ("uint8", variant["path"], pixels)):
        _, (got[kind],) = measure_on_device(loopback.device(), [{**row, "model": model}], [bundle / model],
                                            {"input": np.concatenate(arrays)}, np.concatenate(labels),
                                            eval_batch_size=1)
        assert got[kind]["status"] == "ok", got[kind]["reason"]
        assert "torch" not in got[kind]["modules"] and "edgetl" not in got[kind]["modules"]
    assert got["uint8"]["predictions"] == got["float"]["predictions"] and got["uint8"]["eval_count"] == 15
    device_row = next(r for r in rows(base / "run" / "bench" / "results.json")
                      if r["measured_on"] == "device" and r["name"] == variant["artifact"])
    assert got["uint8"]["accuracy"] == pytest.approx(device_row["accuracy"])
    assert loopback.workdir_entries() == [] and loopback.wait_no_processes() == []
