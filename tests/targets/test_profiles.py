from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from edgetl.cli import cli
from edgetl.errors import ConfigError, UnknownNameError
from edgetl.targets import list_targets, load_target

REQUIRED = {"cpu", "jetson-orin-nano", "jetson-agx-orin", "raspberry-pi-5", "intel-core-ultra", "nvidia-gpu"}


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_shipped_profiles_all_load_and_cover_the_required_devices():
    profiles = {t.name: t for t in list_targets()}
    assert set(profiles) >= REQUIRED
    for t in profiles.values():
        assert t.runtimes and t.input.image_size > 0 and t.export.opset >= 13
    ultra = profiles["intel-core-ultra"]
    assert {r.device for r in ultra.runtimes if r.runtime == "openvino"} == {"NPU", "GPU", "CPU"}


def test_alias_resolves_to_the_jetson_orin_nano():
    t = load_target("jetson")
    assert t.name == "jetson-orin-nano"
    assert t.hardware.cpu_arch == "aarch64"
    assert t.runtimes[0].runtime == "tensorrt"


def test_profile_is_immutable():
    t = load_target("cpu")
    with pytest.raises(ValidationError):
        t.name = "other"  # type: ignore[misc]


def test_targets_list_shows_every_profile():
    result = run("targets", "list")
    assert result.exit_code == 0
    for name in REQUIRED:
        assert name in result.output


def test_targets_show_jetson_prints_resolved_profile():
    result = run("targets", "show", "jetson")
    assert result.exit_code == 0
    assert "name: jetson-orin-nano" in result.output
    assert "tensorrt" in result.output


def test_unknown_target_suggests_close_match_and_exits_2():
    result = run("targets", "show", "jetsn")
    assert result.exit_code == 2
    assert "unknown target 'jetsn'; did you mean 'jetson'?" in result.output
    assert "Traceback" not in result.output


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_user_file_extends_shipped_profile_and_overrides(tmp_path):
    p = write(tmp_path, "board.yaml", "name: my-board\nextends: cpu\ninput: {image_size: 160}\nbudgets: {p90_latency_ms: 5}\n")
    t = load_target(str(p))
    assert t.name == "my-board" and t.input.image_size == 160
    assert t.input.batch_sizes == load_target("cpu").input.batch_sizes  # merged, not replaced
    assert t.budgets.p90_latency_ms == 5 and t.budgets.model_size_mb == load_target("cpu").budgets.model_size_mb
    assert run("targets", "validate", str(p)).exit_code == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nextends: cpu\nhardware: {bogus: 1}\n", "field 'hardware.bogus': unknown field"),
        ("name: x\nextends: cpu\ninput: {image_size: big}\n", "field 'input.image_size'"),
        ("name: x\nextends: cpu\nruntimes:\n  - {runtime: onnxruntime, device: cpu, precisions: [fp16]}\n",
         "runtime onnxruntime on cpu cannot run fp16"),
        ("name: x\nextends: cpu\nruntimes:\n  - {runtime: openvino, device: TPU, precisions: [int8]}\n",
         "runtime openvino has no device 'TPU'"),
        ("name: x\nhardware: [\n", "malformed YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_invalid_profile_names_file_and_field_and_exits_2(tmp_path, text, expected):
    p = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_target(str(p))
    assert str(p) in str(err.value) and expected in str(err.value)
    result = run("targets", "validate", str(p))
    assert result.exit_code == 2
    assert expected in result.output and "Traceback" not in result.output


def test_extends_cycle_is_reported(tmp_path):
    write(tmp_path, "a.yaml", "name: a\nextends: b.yaml\n")
    b = write(tmp_path, "b.yaml", "name: b\nextends: a.yaml\n")
    with pytest.raises(ConfigError, match="'extends' cycle"):
        load_target(str(b))
    assert run("targets", "validate", str(b)).exit_code == 2


def test_extends_unknown_parent_suggests(tmp_path):
    p = write(tmp_path, "c.yaml", "name: c\nextends: raspbery-pi-5\n")
    with pytest.raises(UnknownNameError, match="did you mean 'raspberry-pi-5'"):
        load_target(str(p))


def test_missing_file_is_a_usage_error(tmp_path):
    result = run("targets", "validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "does not exist" in result.output
