"""The prune stage on the tiny backbone, through the CLI: build with pruning -> quantize -> export -> bench ->
bundle -> predict; recovery by distillation (the teacher's forward pass is used and changes the result); a
teacher from another build; and every bad input of the issue, each exit 2 with nothing half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from tests.conftest import make_image_folder

torch = pytest.importorskip("torch")

FAST = """
train: {{backbone: tiny, weights: none, image_size: 32, batch_size: 8, head_epochs: 1, epochs: 2, seed: 0,
        head_lr: 0.01, lr: 0.01, backbone_lr: 0.01}}
prune: {{epochs: 2, max_steps_per_epoch: 3}}
quantize: {{qat_epochs: 1, calibration_images: 16, skip_qat_within_budget: false}}
bench: {{warmup: 1, min_iterations: 5, min_time_s: 0.0, batch_sizes: [1]}}
data: {{path: {data}, num_workers: 0}}
out: {out}
"""


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _config(base: Path, data: Path, out: Path, name: str = "build.yaml") -> Path:
    path = base / name
    path.write_text(FAST.format(data=data, out=out))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "colours", {"red": 10, "green": 10, "blue": 10})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """A run directory with OUT/train finished (copy it before writing into it)."""
    base = tmp_path_factory.mktemp("trained")
    config = _config(base, data, base / "run")
    result = _invoke("train", "--config", str(config))
    assert result.exit_code == 0, result.output
    return base / "run"


def _copy_run(trained: Path, tmp_path: Path, data: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    shutil.copytree(trained / "train", run / "train")
    return run, _config(tmp_path, data, run)


@pytest.fixture(scope="module")
def pruned_build(tmp_path_factory: pytest.TempPathFactory, data: Path) -> tuple[Path, Any]:
    base = tmp_path_factory.mktemp("pruned")
    config = _config(base, data, base / "run")
    result = _invoke("build", "--target", "cpu", "--config", str(config), "--no-budget-check", "--prune-ratio", "0.5")
    return base / "run", result


def test_build_with_pruning_goes_through_quantize_export_bench_bundle_and_predict(pruned_build: Any,
                                                                                  data: Path) -> None:
    out, result = pruned_build
    assert result.exit_code == 0, result.output
    assert "[prune] done" in result.output
    prune = json.loads((out / "prune" / "manifest.json").read_text())["info"]
    card = prune["models"][0]
    train_card = json.loads((out / "train" / "manifest.json").read_text())["info"]["models"][0]
    from edgetl.manifest import read_manifest

    assert card["lineage"] == {"stage": "prune", "method": "prune", "parent": "train:fp32",
                               "parent_manifest": read_manifest(out / "train").hash}
    assert card["macs"] < train_card["macs"] and card["params"] < train_card["params"]
    assert prune["prune"]["channels"]["blocks.1.0"] == [16, 8]  # half the middle block, a multiple of 8
    assert prune["prune"]["channels"]["blocks.0.0"] == [8, 8] and prune["prune"]["channels"]["classifier"] == [3, 3]
    assert prune["recovery"] == "distill" and prune["epochs_run"] == 2
    assert prune["best_val_accuracy"] >= prune["pruned_val_accuracy"]  # the best epoch (0 = no recovery) is kept

    quantize = json.loads((out / "quantize" / "manifest.json").read_text())["info"]
    assert quantize["source"] == "prune:pruned"
    results = json.loads((out / "bench" / "results.json").read_text())
    ok = [r for r in results["rows"] if r["status"] == "ok"]
    assert {"onnx-fp32", "onnx-int8-qat", "openvino-int8-qat"} <= {r["name"] for r in ok}
    assert {(r["macs"], r["params"], r["float_source"]) for r in ok} == {(card["macs"], card["params"],
                                                                           "prune:pruned")}
    assert "MMACs" in result.output and f"{card['macs'] / 1e6:.1f}" in result.output  # the console table
    report = (out / "report" / "report.md").read_text()
    assert "MMACs" in report and "params M" in report
    from edgetl.bench.results import load_results
    from edgetl.report.render import model_tag

    assert {model_tag(r) for r in load_results(out / "bench").rows} == {"pruned"}  # the plot's label
    bundle = json.loads((out / "bundle" / "manifest.json").read_text())
    assert bundle["lineage"]["float_model"] == "prune:pruned"
    predicted = _invoke("predict", str(out / "bundle"), str(data / "val"))
    assert predicted.exit_code == 0 and "accuracy:" in predicted.output


def test_build_without_a_goal_skips_the_prune_stage(trained: Path, tmp_path: Path, data: Path) -> None:
    from edgetl.config import BuildConfig
    from edgetl.pipeline.engine import Context, ordered_stages
    from edgetl.targets import load_target

    cfg = BuildConfig().with_overrides({"data.path": str(data)})
    ctx = Context(cfg, load_target("cpu"), tmp_path, current="quantize")
    prune = next(s for s in ordered_stages() if s.name == "prune")
    assert prune.order == 20 and prune.disabled(ctx) and ctx.input_dir("float_model") == tmp_path / "train"
    on = Context(cfg.with_overrides({"prune.enabled": True, "prune.ratio": 0.3}), ctx.target, tmp_path,
                 current="quantize")
    assert on.input_dir("float_model") == tmp_path / "prune"


def _count_teacher_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from edgetl.training.losses import DistillationLoss

    calls: list[int] = []
    original = DistillationLoss.teacher_logits

    def counted(self: Any, inputs: Any) -> Any:
        calls.append(1)
        return original(self, inputs)

    monkeypatch.setattr(DistillationLoss, "teacher_logits", counted)
    return calls


def test_recovery_distils_from_the_unpruned_model_and_differs_from_cross_entropy_only(
    trained: Path, tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgetl.artifacts import read_model_artifact
    from edgetl.cli.stages import current_float_dir

    calls = _count_teacher_calls(monkeypatch)
    weights = {}
    for mode in ("distill", "ce"):
        run, config = _copy_run(trained, tmp_path / mode, data)
        before = len(calls)
        extra = ["--no-distill"] if mode == "ce" else ["--alpha", "0.9"]
        result = _invoke("prune", "--config", str(config), "--ratio", "0.5", "--epochs", "1", *extra)
        assert result.exit_code == 0, result.output
        assert "recovery: " + ("distill" if mode == "distill" else "cross_entropy") in result.output
        teacher_passes = len(calls) - before
        assert teacher_passes == (3 if mode == "distill" else 0)  # one per training step (max_steps_per_epoch 3)
        info = json.loads((run / "prune" / "manifest.json").read_text())["info"]
        assert (info["distillation"] or {}).get("teacher") == ("train:fp32" if mode == "distill" else None)
        weights[mode] = read_model_artifact(run / "prune").load().state_dict()
        # the single-stage commands after it (`edgetl quantize`, `export`) read OUT/prune once it exists
        assert current_float_dir(run, "quantize") == run / "prune" and current_float_dir(run, "prune") == run / "train"
    differ = [k for k in weights["ce"] if not torch.equal(weights["ce"][k], weights["distill"][k])]
    assert differ, "distillation changed nothing"


def test_student_distils_from_a_teacher_build(trained: Path, tmp_path: Path, data: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from edgetl.artifacts import read_model_artifact

    calls = _count_teacher_calls(monkeypatch)
    config = _config(tmp_path, data, tmp_path / "student")
    result = _invoke("train", "--config", str(config), "--teacher", str(trained), "--seed", "0")
    assert result.exit_code == 0, result.output
    assert calls  # the teacher's forward pass ran
    student = read_model_artifact(tmp_path / "student" / "train")
    assert student.card.lineage.method == "distill"
    teacher = json.loads((tmp_path / "student" / "train" / "manifest.json").read_text())["info"]["teacher"]
    assert teacher["path"] == str(trained) and teacher["source"] == "train:fp32"
    # the teacher scored on the student's evaluation images (here the same split as its own: its own figure)
    own = read_model_artifact(trained / "train").card.metrics
    assert teacher["eval_split"] == own["eval_split"] and teacher["eval_accuracy"] == pytest.approx(own["eval_accuracy"])
    assert teacher["trained_on_eval_images"] == 0
    # the stage command trains the distilled student only, and says how to get the comparison
    assert "`edgetl build` with the same --teacher also trains this student alone" in " ".join(result.output.split())
    alone = read_model_artifact(trained / "train").load().state_dict()  # same config and seed, no teacher
    distilled = student.load().state_dict()
    assert any(not torch.equal(alone[k], distilled[k]) for k in alone)


def test_the_train_cache_key_holds_the_teachers_hash_not_its_path(trained: Path, tmp_path: Path) -> None:
    """A teacher retrained in place must retrain the student: the key changes with the teacher's model file."""
    import shutil

    from edgetl.artifacts import read_model_artifact, save_module
    from edgetl.fsutil import sha256_file
    from edgetl.manifest import read_manifest
    from edgetl.pipeline.stages import _teacher_digest

    teacher = tmp_path / "teacher"
    shutil.copytree(trained, teacher)
    manifest = read_manifest(teacher / "train")
    before = _teacher_digest(str(teacher))
    assert before == manifest.outputs["model.pt"]
    model = read_model_artifact(teacher / "train").load()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # what a retrain at the same path leaves behind
    save_module(model, teacher / "train" / "model.pt")
    after = sha256_file(teacher / "train" / "model.pt")
    manifest.model_copy(update={"outputs": {**manifest.outputs, "model.pt": after}}).write(teacher / "train")
    assert _teacher_digest(str(teacher)) == after != before
    assert _teacher_digest(None) is None
    assert _teacher_digest(str(tmp_path / "absent")) == str(tmp_path / "absent")  # the stage names the problem


# ------------------------------------------------------------------------------------------- bad input, exit 2
@pytest.mark.parametrize("args, message", [
    (["prune", "--ratio", "1.5"], "prune.ratio"),
    (["prune", "--ratio", "0"], "prune.ratio"),
    (["prune", "--macs", "0.01"], "cannot keep only 1.0% of the MACs"),
    (["prune"], "give exactly one of ratio, macs_fraction, params_fraction"),
    (["build", "--prune-ratio", "1.0"], "prune.ratio"),
], ids=["ratio-above-1", "ratio-0", "macs-below-the-protected-floor", "no-goal", "build-ratio-1"])
def test_bad_prune_goals_exit_2_and_write_nothing(trained: Path, tmp_path: Path, data: Path, args: list[str],
                                                  message: str) -> None:
    run, config = _copy_run(trained, tmp_path, data)
    result = CliRunner().invoke(cli, [*args, "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (run / "prune").exists() and sorted(p.name for p in run.iterdir()) == ["train"]


class Detach(torch.nn.Module):
    """Cuts the autograd graph: the layers before it cannot be traced (module-level: the artifact unpickles it)."""

    def forward(self, x: Any) -> Any:
        return x.detach()


def test_an_untraceable_layer_is_named_by_its_module_path(trained: Path, tmp_path: Path, data: Path) -> None:
    from edgetl.artifacts import read_model_artifact, save_module
    from edgetl.fsutil import sha256_file
    from edgetl.manifest import read_manifest

    run, config = _copy_run(trained, tmp_path, data)
    model = read_model_artifact(run / "train").load()
    model.blocks[1] = torch.nn.Sequential(*model.blocks[1], Detach())
    save_module(model, run / "train" / "model.pt")
    manifest = read_manifest(run / "train")
    manifest.model_copy(update={"outputs": {**manifest.outputs,
                                            "model.pt": sha256_file(run / "train" / "model.pt")}}).write(run / "train")
    result = CliRunner().invoke(cli, ["prune", "--ratio", "0.5", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "cannot trace through module 'blocks.1.3'" in " ".join(result.output.split())
    assert not (run / "prune").exists()


def test_a_teacher_with_other_classes_or_another_input_size_is_refused(trained: Path, tmp_path: Path,
                                                                        data: Path) -> None:
    two = make_image_folder(tmp_path / "two", {"red": 6, "green": 6})
    other = tmp_path / "other"
    teacher_cfg = _config(tmp_path, two, other, "teacher.yaml")
    assert _invoke("train", "--config", str(teacher_cfg), "--epochs", "0").exit_code == 0

    student = tmp_path / "student"
    config = _config(tmp_path, data, student)
    result = CliRunner().invoke(cli, ["train", "--config", str(config), "--teacher", str(other)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "predicts classes ['green', 'red']" in text and "missing ['blue']" in text
    assert not (student / "train" / "model.pt").exists() and not (student / "train" / "manifest.json").exists()

    result = CliRunner().invoke(cli, ["train", "--config", str(config), "--teacher", str(trained),
                                      "--image-size", "48"])
    assert result.exit_code == 2, result.output
    assert "takes inputs input Nx3x32x32, the student input Nx3x48x48" in " ".join(result.output.split())
    assert not (student / "train" / "model.pt").exists()

    result = CliRunner().invoke(cli, ["build", "--config", str(config), "--teacher", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "is not a directory" in result.output
