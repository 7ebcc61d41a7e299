"""Measuring on a device over SSH, end to end against the real sshd of ``conftest.loopback`` on 127.0.0.1."""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgetl.errors import (
    EXIT_RUNTIME,
    EXIT_USAGE,
    ConfigError,
    DeviceAuthError,
    DeviceDiskFullError,
    DeviceError,
    DeviceHostKeyError,
    DeviceRuntimeUnavailableError,
    DeviceUnreachableError,
    RuntimeUnavailableError,
)
from edgetl.execution import device_runner
from edgetl.execution.ssh import RUNNER, DeviceAddress, measure_on_device
from tests.execution.conftest import Loopback, free_port

# ssh clients are subprocesses: collected first, as tests/conftest.py explains
pytestmark = pytest.mark.subprocess

FAST = {"warmup": 2, "min_iterations": 10, "min_time_s": 0.05, "threads": 1}


# ------------------------------------------------------------------------------------------------ models
def conv_model(path: Path, classes: int = 3, size: int = 16) -> Path:
    """conv 3x3 -> relu -> global average pool -> linear; input "input" (N, 3, size, size)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny-conv", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal((classes, 8)).astype(np.float32), "fc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def text_model(path: Path, vocab: int = 20, classes: int = 3) -> Path:
    """Embedding -> masked mean -> linear; inputs "input_ids" and "attention_mask" (N, L) int64."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axis2"], ["m3"]), helper.make_node("Mul", ["e", "m3"], ["em"]),
             helper.make_node("ReduceMean", ["em"], ["pooled"], axes=[1], keepdims=0),
             helper.make_node("Gemm", ["pooled", "fc"], ["logits"], transB=1)]
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", "L"]) for n in ("input_ids", "attention_mask")]
    graph = helper.make_graph(
        nodes, "tiny-text", ints, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(rng.standard_normal((vocab, 8)).astype(np.float32), "emb"),
         numpy_helper.from_array(rng.standard_normal((classes, 8)).astype(np.float32), "fc"),
         numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def host_predictions(model: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0]).argmax(axis=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    corrupt = root / "corrupt.onnx"
    corrupt.write_bytes(conv_model(root / "tmp.onnx").read_bytes()[:200])  # truncated protobuf
    return {"conv": conv_model(root / "conv.onnx"), "text": text_model(root / "text.onnx"), "corrupt": corrupt}


def conv_row(**over: object) -> dict[str, object]:
    return {"model": "conv.onnx", "runtime": "onnxruntime", "device": "cpu", "batch_sizes": [1, 4], **FAST, **over}


# ----------------------------------------------------------------------------------------- measurements
def test_remote_rows_are_device_labelled_with_accuracy_and_latency(loopback: Loopback,
                                                                    models: dict[str, Path]) -> None:
    images = np.random.default_rng(2).standard_normal((12, 3, 16, 16)).astype(np.float32)
    expected = host_predictions(models["conv"], {"input": images})
    labels = expected.copy()
    labels[:3] = (labels[:3] + 1) % 3  # 3 of 12 wrong on purpose: the device must report 0.75
    rows_in = [conv_row(id="conv"), conv_row(id="corrupt", model="corrupt.onnx"),
               conv_row(id="slow", min_time_s=60, timeout_s=1.5, batch_sizes=[1])]
    facts, rows = measure_on_device(loopback.device(), rows_in, [models["conv"], models["corrupt"]],
                                    {"input": images}, labels, eval_batch_size=5)
    ok, corrupt, slow = rows
    assert ok["status"] == "ok", ok["reason"]
    assert ok["accuracy"] == 0.75 and ok["predictions"] == expected.tolist() and ok["eval_count"] == 12
    assert np.asarray(ok["logits"]).shape == (12, 3) and np.asarray(ok["logits"]).argmax(1).tolist() == expected.tolist()
    assert ok["latency_ms"]["iterations"] >= 10 and 0 < ok["latency_ms"]["p50"] <= ok["latency_ms"]["p99"]
    assert set(ok["throughput"]) == {"1", "4"} and all(v > 0 for v in ok["throughput"].values())
    assert ok["peak_memory_mb"] >= 0 and ok["memory_source"] == "VmHWM" and ok["threads"] == 1
    for row in rows:
        assert row["measured_on"] == "device" and row["device_hostname"] == socket.gethostname()
        assert row["device_address"] == f"ssh://edgetl-device@127.0.0.1:{loopback.port}{loopback.workdir}"
    assert corrupt["status"] == "failed" and "corrupt.onnx" in corrupt["reason"]
    assert slow["status"] == "failed" and "killed after its 1.5 s timeout" in slow["reason"]
    device_python = subprocess.run([loopback.python, "-c", "import platform; print(platform.python_version())"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    assert facts["python"] == device_python and facts["python_executable"] == loopback.python
    assert facts["runtimes"]["onnxruntime"] and facts["numpy"] and facts["cpu_count"] == os.cpu_count()
    assert loopback.workdir_entries() == []  # the temp dir is gone


def test_named_integer_inputs_of_a_text_model(loopback: Loopback, models: dict[str, Path]) -> None:
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 20, (6, 12), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[:, 9:] = 0
    expected = host_predictions(models["text"], {"input_ids": ids, "attention_mask": mask})
    row = {"model": "text.onnx", "runtime": "onnxruntime", "device": "cpu", "batch_sizes": [1, 2], **FAST}
    _, (result,) = measure_on_device(loopback.device(), [row], [models["text"]],
                                     {"input_ids": ids, "attention_mask": mask}, expected)
    assert result["status"] == "ok", result["reason"]
    assert result["accuracy"] == 1.0 and set(result["throughput"]) == {"1", "2"}


def test_the_runner_imports_neither_torch_nor_edgetl_on_the_device(loopback: Loopback,
                                                                    models: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    # statically: every import in the file is the standard library, numpy or a runtime named by string
    tree = ast.parse(RUNNER.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - set(sys.stdlib_module_names) == {"numpy"}
    # at run time, on the device: the parent under -X importtime, each row's child by its sys.modules at exit
    device = loopback.device()
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema_version": 1, "rows": [conv_row()]}))
    with device.tempdir() as remote:
        device.put([RUNNER, plan, models["conv"]], remote)
        done = device.shell(f"cd {remote} && {loopback.python} -X importtime device_runner.py plan.json out.json",
                            what="the runner under -X importtime")
        results = json.loads(device.shell(f"cat {remote}/out.json").stdout)
        no_torch = device.run([loopback.python, "-c", "import torch"], check=False)
    parent = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "json" in parent and not parent & {"torch", "edgetl", "numpy", "onnxruntime"}
    (row,) = results["rows"]
    assert row["status"] == "ok" and set(row["modules"]) <= {"numpy", "onnxruntime", "cython_runtime"}
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr  # the device has no torch


def test_a_crashing_runtime_is_a_failed_row_not_a_hang(loopback: Loopback, models: dict[str, Path]) -> None:
    # A device python whose "onnxruntime" dereferences NULL when imported: the row's child dies of SIGSEGV.
    fake = loopback.root / "crashing-runtime"
    (fake / "onnxruntime").mkdir(parents=True, exist_ok=True)
    (fake / "onnxruntime" / "__init__.py").write_text("import ctypes\nctypes.string_at(0)\n")
    wrapper = loopback.root / "crashing-python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={fake} exec {loopback.python} "$@"\n')
    wrapper.chmod(0o755)
    t0 = time.monotonic()
    _, (row,) = measure_on_device(loopback.device(python=str(wrapper)), [conv_row()], [models["conv"]])
    assert row["status"] == "failed" and "crashed" in row["reason"] and "SIGSEGV" in row["reason"]
    assert row["exit_status"] == -signal.SIGSEGV and time.monotonic() - t0 < 30
    assert loopback.workdir_entries() == []


def test_ctrl_c_leaves_no_remote_directory_or_process(loopback: Loopback, models: dict[str, Path]) -> None:
    device = loopback.device()
    started = threading.Event()

    def interrupt_once_measuring() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any("device_runner.py --row" in p for p in loopback.processes()):  # a row's child is timing
                started.set()
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    threading.Thread(target=interrupt_once_measuring, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        measure_on_device(device, [conv_row(min_time_s=120, batch_sizes=[1])], [models["conv"]])
    assert started.is_set()
    assert loopback.workdir_entries() == []
    assert loopback.wait_no_processes() == []


def _start_long_runner(device, remote: str, loopback: Loopback, models: dict[str, Path], tmp_path: Path,
                       *flags: str) -> subprocess.Popen:  # type: ignore[type-arg]
    """The runner on a two-minute row, started by hand over ssh; returns once its row's child is running."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema_version": 1, "rows": [conv_row(min_time_s=120, batch_sizes=[1])]}))
    device.put([RUNNER, plan, models["conv"]], remote)
    argv = device.ssh_argv(f"cd {remote} && exec {loopback.python} device_runner.py plan.json out.json "
                           "--pgid-file .pgid " + " ".join(flags))
    ssh = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any("--row" in p for p in loopback.processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return ssh


def test_runner_ends_itself_when_its_connection_drops(loopback: Loopback, models: dict[str, Path],
                                                      tmp_path: Path) -> None:
    """No host left to clean up (network gone, laptop closed): the runner sees stdin close and ends its group."""
    device = loopback.device()
    with device.tempdir() as remote:
        ssh = _start_long_runner(device, remote, loopback, models, tmp_path, "--watch-stdin")
        ssh.kill()  # the client dies without a word to the device
        ssh.wait()
        deadline = time.monotonic() + 10
        while any("device_runner" in p for p in loopback.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any("device_runner" in p for p in loopback.processes())
    assert loopback.wait_no_processes() == []


def test_leaving_the_temp_dir_kills_the_runners_process_group(loopback: Loopback, models: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """The other half: the connection is still up (no EOF), yet the cleanup ends the runner and its children."""
    device = loopback.device()
    with device.tempdir() as remote:
        ssh = _start_long_runner(device, remote, loopback, models, tmp_path)
    assert ssh.wait(timeout=10) != 0  # its remote command was killed under it
    assert loopback.wait_no_processes() == [] and loopback.workdir_entries() == []


# ---------------------------------------------------------------------------------------------- failures
def test_a_wrong_key_is_an_authentication_error(loopback: Loopback, models: dict[str, Path]) -> None:
    with pytest.raises(DeviceAuthError) as err:
        measure_on_device(loopback.device(key=loopback.wrong_key), [conv_row()], [models["conv"]])
    assert err.value.exit_code == EXIT_RUNTIME and "authorized_keys" in str(err.value.hint)


def test_a_closed_port_is_unreachable(loopback: Loopback, models: dict[str, Path]) -> None:
    with pytest.raises(DeviceUnreachableError) as err:
        measure_on_device(loopback.device(port=free_port()), [conv_row()], [models["conv"]])
    assert "connection refused" in str(err.value) and err.value.exit_code == EXIT_RUNTIME


def test_a_changed_host_key_is_refused(loopback: Loopback, models: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{loopback.port} {kind} {blob}\n")
    with pytest.raises(DeviceHostKeyError) as err:
        measure_on_device(loopback.device(ssh_config=loopback.client_config(known)), [conv_row()], [models["conv"]])
    assert "CHANGED" in str(err.value) and f"ssh-keygen -R '[127.0.0.1]:{loopback.port}'" in str(err.value.hint)
    unknown = tmp_path / "empty_known_hosts"
    unknown.write_text("")
    with pytest.raises(DeviceHostKeyError, match="not in known_hosts"):
        loopback.device(ssh_config=loopback.client_config(unknown)).run(["true"])


def test_a_missing_runtime_names_the_install_command(loopback: Loopback, models: dict[str, Path]) -> None:
    device = loopback.device(python=loopback.bare_python)
    with pytest.raises(DeviceRuntimeUnavailableError) as err:
        measure_on_device(device, [conv_row()], [models["conv"]])
    assert isinstance(err.value, RuntimeUnavailableError) and err.value.exit_code == EXIT_RUNTIME
    assert "onnxruntime is not installed on the device" in str(err.value)
    assert f"{loopback.bare_python} -m pip install onnxruntime" in str(err.value.hint)
    _, (row,) = measure_on_device(device, [conv_row()], [models["conv"]], on_missing_runtime="skip")
    assert row["status"] == "skipped" and "install hint: pip install onnxruntime" in row["reason"]
    with pytest.raises(DeviceRuntimeUnavailableError, match="no Python interpreter"):
        measure_on_device(loopback.device(python="/opt/no-such/python3"), [conv_row()], [models["conv"]])
    assert loopback.workdir_entries() == []


def test_a_full_device_disk_is_reported(loopback: Loopback, models: dict[str, Path]) -> None:
    full = loopback.root / "tiny-disk"
    full.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=256k,uid={loopback.uid}", "tmpfs", str(full)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 256 KiB tmpfs here ({mounted.stderr.strip()}): ENOSPC not testable")
    try:
        images = np.zeros((64, 3, 32, 32), dtype=np.float32)  # 768 KiB: does not fit
        with pytest.raises(DeviceDiskFullError) as err:
            measure_on_device(loopback.device(workdir=str(full)), [conv_row()], [models["conv"]], {"input": images})
        assert "no space left" in str(err.value) and "workdir" in str(err.value.hint)
        assert os.listdir(full) == []  # the half-copied temp dir was removed
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_every_command_has_a_timeout(loopback: Loopback) -> None:
    with pytest.raises(DeviceError, match="did not finish within 1 s"):
        loopback.device(command_timeout_s=1).run(["sleep", "30"])
    assert loopback.wait_no_processes() == []


# ------------------------------------------------------------------------------------------ no ssh needed
def test_runner_latency_stats_match_the_hosts() -> None:
    from edgetl.bench.measure import keep_samples, latency_stats

    rng = np.random.default_rng(4)
    for n in (1, 2, 7, 1000):
        samples = [int(v) for v in rng.lognormal(13, 0.5, n)]
        assert device_runner.latency_stats(samples) == latency_stats(samples).model_dump()
        assert device_runner.keep_samples(samples, 50) == keep_samples(samples, 50)


def test_the_runner_times_in_rounds_as_the_host_does(models: dict[str, Path]) -> None:
    """Rounds on the device: each a share of the runs, the pooled stats over all, one p50 per round."""
    from edgetl.bench.measure import TimingPlan
    from edgetl.execution.remote import to_bench_row

    row = {**device_runner.ROW_DEFAULTS, **conv_row(rounds=3, min_iterations=9, min_time_s=0.0, batch_sizes=[1])}
    result = device_runner.measure_row(row, str(models["conv"].parent))
    share = TimingPlan(2, 9, 0.0, rounds=3).per_round()
    assert len(result["latency_rounds_ms"]) == 3 and result["latency_ms"]["iterations"] == 3 * share.min_iterations
    from tests.execution.test_remote_rows import plan

    bench_row = to_bench_row(plan(), {"status": "ok", **result}, {"hostname": "dev"}, None)
    rounds = bench_row.latency_rounds
    assert rounds is not None and rounds.rounds == 3 and not rounds.interleaved  # back to back in its process
    assert bench_row.latency_ms is not None and bench_row.latency_ms.p50 == rounds.p50 == round(
        float(np.median(result["latency_rounds_ms"])), 4)


def test_device_addresses() -> None:
    a = DeviceAddress.parse("ssh://pi@rpi5.local:2222/home/pi/edgetl/", python="/opt/venv/bin/python")
    assert (a.user, a.host, a.port, a.workdir, a.python) == ("pi", "rpi5.local", 2222, "/home/pi/edgetl",
                                                             "/opt/venv/bin/python")
    assert str(a) == "ssh://pi@rpi5.local:2222/home/pi/edgetl" and a.destination == "pi@rpi5.local"
    alias = DeviceAddress.parse("ssh://my-jetson")  # user and port from ~/.ssh/config
    assert (alias.user, alias.port, alias.workdir, alias.destination) == (None, None, "/tmp", "my-jetson")
    for bad in ("pi@rpi5", "ssh://", "ssh://pi:secret@rpi5", "ssh://rpi5:notaport", "ssh://-oProxyCommand=x"):
        with pytest.raises(ConfigError) as err:
            DeviceAddress.parse(bad)
        assert err.value.exit_code == EXIT_USAGE


def test_the_runner_alone_runs_openvino_and_rejects_a_bad_plan(models: dict[str, Path], tmp_path: Path) -> None:
    """The runner without SSH, under this host's python (which has OpenVINO): the IR path and exit code 2."""
    import openvino

    openvino.save_model(openvino.convert_model(str(models["conv"])), str(tmp_path / "conv.xml"))
    images = np.random.default_rng(5).standard_normal((5, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", images)
    row = {"model": "conv.xml", "runtime": "openvino", "device": "CPU", "batch_sizes": [1, 2], **FAST,
           "eval": {"inputs": {"input": "x.npy"}, "batch_size": 2}}
    (tmp_path / "plan.json").write_text(json.dumps({"schema_version": 1, "rows": [row]}))
    done = subprocess.run([sys.executable, str(RUNNER), "plan.json", "out.json"], cwd=tmp_path, timeout=120)
    (result,) = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert done.returncode == 0 and result["status"] == "ok", result.get("reason")
    assert result["settings"]["INFERENCE_PRECISION_HINT"] == "f32" and set(result["throughput"]) == {"1", "2"}
    assert result["predictions"] == host_predictions(models["conv"], {"input": images}).tolist()
    (tmp_path / "bad.json").write_text(json.dumps({"schema_version": 1, "rows": [{"model": "conv.xml"}]}))
    done = subprocess.run([sys.executable, str(RUNNER), "bad.json", "bad-out.json"], cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "lacks runtime, device" in json.loads((tmp_path / "bad-out.json").read_text())["error"]
