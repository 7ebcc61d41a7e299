"""``edgetl bench``: rows per artifact x runtime, skipped rows with reasons, single model files, corrupt inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgetl.cli
from edgetl.bench.results import load_results
from edgetl.errors import ModelFileError
from edgetl.stages.benchmark import benchmark
from edgetl.targets import load_target
from tests.benchmarking import CLASSES, convert_ir, export_onnx, fast_config, make_run_dir, tiny_model
from tests.conftest import make_image_folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data"), {"red": 6, "green": 6, "blue": 6})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("run"), data_root)


@pytest.fixture(scope="module")
def cpu_results(run_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return benchmark(fast_config(), load_target("cpu"), run_dir, tmp_path_factory.mktemp("bench"))


def _rows(results, **match):  # type: ignore[no-untyped-def]
    return [r for r in results.rows if all(getattr(r, k) == v for k, v in match.items())]


def test_every_artifact_runs_on_its_runtimes_with_figures(cpu_results) -> None:  # type: ignore[no-untyped-def]
    got = {(r.name, r.runtime, r.precision) for r in cpu_results.rows}
    assert got == {
        ("openvino-int8-ptq", "openvino", "int8"), ("openvino-fp32", "openvino", "fp32"),
        ("onnx-int8-ptq", "onnxruntime", "int8"), ("onnx-fp32", "onnxruntime", "fp32"),
        ("torch-fp32", "torch", "fp32"),
    }
    for r in cpu_results.rows:
        assert r.status == "ok", r.reason
        assert not r.proxy  # the cpu target is this host
        assert r.latency_ms.p50 > 0 and r.latency_ms.iterations >= 3
        assert r.latency_ms.min <= r.latency_ms.p50 <= r.latency_ms.p90 <= r.latency_ms.p99
        assert set(r.throughput) == {"1", "2"} and all(v and v > 0 for v in r.throughput.values())
        assert r.cold_start_ms > 0 and r.peak_memory_mb is not None and r.threads == 1
        assert r.eval_images == 9 and r.confusion_matrix is not None
        assert sum(map(sum, r.confusion_matrix)) == 9
        assert set(r.per_class) == set(CLASSES)
    assert cpu_results.host["cpu"] and cpu_results.host["versions"]["onnxruntime"]
    assert cpu_results.classes == CLASSES and cpu_results.eval_split == "val"


def test_fp32_artifacts_match_the_torch_accuracy(cpu_results) -> None:  # type: ignore[no-untyped-def]
    torch_row = _rows(cpu_results, runtime="torch")[0]
    for r in _rows(cpu_results, precision="fp32"):
        assert r.accuracy == torch_row.accuracy
        assert r.confusion_matrix == torch_row.confusion_matrix


def test_openvino_fp32_row_runs_in_f32(cpu_results) -> None:  # type: ignore[no-untyped-def]
    row = _rows(cpu_results, runtime="openvino", precision="fp32")[0]
    assert row.settings["INFERENCE_PRECISION_HINT"] == "f32"


def test_results_json_roundtrips(cpu_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = cpu_results.write(tmp_path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1
    assert {"target", "backbone", "dataset", "eval_split", "classes", "host", "edgetl_version", "created",
            "rows"} <= set(data)
    assert load_results(path) == cpu_results


def test_device_target_skips_with_reasons_and_labels_proxies(run_dir: Path, tmp_path: Path) -> None:
    results = benchmark(fast_config(accuracy=False), load_target("jetson"), run_dir, tmp_path)
    trt = _rows(results, runtime="tensorrt")
    cuda = _rows(results, runtime="onnxruntime", device="cuda")
    if not any(r.status == "ok" for r in trt + cuda):  # a host without NVIDIA GPU
        assert trt and cuda
        for r in trt + cuda:
            assert r.status == "skipped" and r.reason.startswith("not on this host")
            assert r.latency_ms is None and not r.proxy
    proxies = [r for r in results.rows if r.status == "ok" and r.measured_on == "host"]  # estimates: not run
    assert {(r.runtime, r.device) for r in proxies} >= {("onnxruntime", "cpu"), ("openvino", "CPU")}
    assert all(r.proxy for r in proxies)
    assert any("not a jetson-orin-nano" in n for n in results.notes)


def test_missing_int8_artifact_is_a_skipped_row(run_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "run"
    shutil.copytree(run_dir, partial)
    manifest_path = partial / "export" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["info"]["artifacts"] = [a for a in manifest["info"]["artifacts"] if a["precision"] != "int8"]
    manifest_path.write_text(json.dumps(manifest))
    results = benchmark(fast_config(accuracy=False), load_target("cpu"), partial, tmp_path / "bench")
    skipped = [r for r in results.rows if r.status == "skipped"]
    assert {(r.runtime, r.precision) for r in skipped} == {("openvino", "int8"), ("onnxruntime", "int8")}
    assert all("no int8" in r.reason for r in skipped)


def test_single_onnx_with_metadata_and_data(run_dir: Path, data_root: Path, tmp_path: Path) -> None:
    onnx_file = run_dir / "export" / "model_fp32.onnx"
    results = benchmark(fast_config(), load_target("cpu"), onnx_file, tmp_path, data=str(data_root))
    assert [(r.runtime, r.status) for r in results.rows] == [("onnxruntime", "ok")]
    row = results.rows[0]
    assert row.name == "model_fp32" and row.precision == "fp32" and row.accuracy is not None
    assert results.classes == CLASSES and results.preprocess["image_size"] == 32


def test_single_xml_without_metadata_is_latency_only(tmp_path: Path) -> None:
    onnx_file = export_onnx(tiny_model(5), tmp_path / "plain.onnx")
    xml = convert_ir(onnx_file, tmp_path / "ir" / "plain.xml")
    results = benchmark(fast_config(), load_target("cpu"), xml, tmp_path / "bench")
    assert [(r.runtime, r.device, r.status) for r in results.rows] == [("openvino", "CPU", "ok")]
    assert results.rows[0].accuracy is None and results.rows[0].latency_ms.p50 > 0
    assert any("--data" in n for n in results.notes)


def test_detects_int8_from_the_graph(run_dir: Path, tmp_path: Path) -> None:
    results = benchmark(fast_config(accuracy=False), load_target("cpu"),
                        run_dir / "export" / "model_int8_ptq.onnx", tmp_path)
    assert [(r.runtime, r.precision) for r in results.rows] == [("onnxruntime", "int8")]


def test_tampered_artifact_in_a_run_is_refused(run_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    onnx_file = broken / "export" / "model_fp32.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="model_fp32.onnx"):
        benchmark(fast_config(), load_target("cpu"), broken, tmp_path / "bench")


def test_cli_corrupt_model_exits_2_with_message(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    result = CliRunner().invoke(edgetl.cli.cli, ["bench", str(bad), "--out", str(tmp_path / "o")],
                                catch_exceptions=False)
    assert result.exit_code == 2
    assert "broken.onnx is not a readable ONNX model" in result.output


def test_cli_bench_writes_results_and_report(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        edgetl.cli.cli,
        ["bench", str(run_dir / "export" / "model_fp32.onnx"), "--target", "cpu", "--out", str(out),
         "--threads", "1", "--batch-sizes", "1,2", "--iterations", "3", "--min-time", "0", "--no-accuracy"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "model_fp32" in result.output and "onnxruntime:cpu" in result.output
    assert (out / "results.json").is_file() and (out / "report.html").is_file()
    assert load_results(out / "results.json").settings.batch_sizes == [1, 2]


def test_cli_bad_batch_sizes_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(edgetl.cli.cli, ["bench", "x.onnx", "--batch-sizes", "1,b"],
                                catch_exceptions=False)
    assert result.exit_code == 2 and "--batch-sizes" in result.output


@pytest.mark.slow
def test_real_size_backbone_latency(tmp_path: Path) -> None:
    """efficientnet_lite0 (1000 classes, 224 px) on ONNX Runtime: a real-size model loads, runs and is timed."""
    import torch

    from edgetl.backbones import create_model

    onnx_file = tmp_path / "lite0.onnx"
    torch.onnx.export(create_model("efficientnet_lite0", 1000, weights="none").eval(), torch.randn(1, 3, 224, 224),
                      str(onnx_file), dynamo=False, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "b"}})
    results = benchmark(fast_config(accuracy=False, threads=2, min_iterations=20), load_target("cpu"),
                        onnx_file, tmp_path / "bench")
    row = results.rows[0]
    assert row.status == "ok" and 0.3 < row.latency_ms.p50 < 100
    assert row.size_bytes > 10e6 and row.peak_memory_mb > 1
