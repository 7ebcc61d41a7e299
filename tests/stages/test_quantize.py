"""``edgetl quantize`` on the tiny backbone: int8 programs that load back, accuracies, manifest, errors, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.quant.builders import fast_config, quantized_run

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return quantized_run(tmp_path_factory)


def test_programs_load_back_and_run_int8_at_any_batch(run):
    from edgetl.quant import count_quantized_layers
    from edgetl.quant.pt2e import load_program

    for name in ("qat", "ptq"):
        module = load_program(run / "quantize" / f"{name}.pt2").module()
        assert count_quantized_layers(module) == {"int8": 4, "float": 0}
        for batch in (1, 5):
            assert module(torch.randn(batch, 3, 32, 32)).shape == (batch, 3)


def test_metrics_and_manifest(run):
    from edgetl.manifest import read_manifest

    metrics = json.loads((run / "quantize" / "metrics.json").read_text())
    assert set(metrics["accuracy"]) == {"fp32", "ptq", "qat"}
    assert metrics["accuracy"]["fp32"] == 1.0  # colour classes: the tiny net separates them
    assert metrics["accuracy"]["qat"] >= 0.9 and metrics["accuracy"]["ptq"] >= 0.9
    # QAT validates after range initialisation (epoch 0) and after each epoch, and keeps its best epoch
    qat = metrics["qat"]
    history = [h["val_accuracy"] for h in qat["history"]]
    assert [h["epoch"] for h in qat["history"]] == list(range(qat["epochs"] + 1))
    assert history[qat["kept_epoch"]] == max(history)
    manifest = read_manifest(run / "quantize")
    assert manifest.stage == "quantize"
    assert set(manifest.outputs) == {"qat.pt2", "ptq.pt2", "metrics.json"}
    assert manifest.verify_outputs(run / "quantize") == []
    assert manifest.info["source_manifest"] == read_manifest(run / "train").hash
    assert manifest.input_hash


def test_modified_checkpoint_is_refused(run, tmp_path):
    from edgetl.errors import ModelFileError
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    train = tmp_path / "train"
    shutil.copytree(run / "train", train)
    with (train / "model.pt").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelFileError, match="model.pt missing or not matching"):
        quantize(fast_config(), load_target("cpu"), train, tmp_path / "quantize")


def test_nothing_to_do_is_a_config_error(run, tmp_path):
    from edgetl.errors import ConfigError
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    cfg = fast_config(**{"quantize.qat": False, "quantize.ptq_baseline": False})
    with pytest.raises(ConfigError, match="nothing to produce"):
        quantize(cfg, load_target("cpu"), run / "train", tmp_path / "quantize")


def test_cli_ptq_only(run, tmp_path):
    import yaml

    from edgetl.cli import cli

    shutil.copytree(run / "train", tmp_path / "train")
    config = tmp_path / "fast.yaml"
    config.write_text(yaml.safe_dump({"train": {"backbone": "tiny", "batch_size": 8}, "data": {"num_workers": 0}}))
    result = CliRunner().invoke(cli, ["quantize", "--out", str(tmp_path), "--config", str(config), "--no-qat",
                                      "--calibration-images", "8"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "int8 ptq" in result.output and "int8 qat" not in result.output
    assert (tmp_path / "quantize" / "ptq.pt2").is_file() and not (tmp_path / "quantize" / "qat.pt2").exists()


def test_qat_selects_its_epoch_on_val_and_reports_on_test(run, tmp_path):
    """With a test split, QAT's best-epoch choice must not look at the split the accuracy is reported on."""
    import shutil

    from edgetl.data import read_split, write_split
    from edgetl.manifest import hash_outputs, read_manifest
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    train = tmp_path / "train"
    shutil.copytree(run / "train", train)
    index = read_split(train / "split.json")
    val = sorted(index.splits["val"])
    index.splits["test"], index.splits["val"] = val[::2], val[1::2]
    write_split(index, train / "split.json")
    manifest = read_manifest(train)
    manifest.outputs = hash_outputs(train, ["model.pt", "split.json"])
    manifest.write(train)

    quantize(fast_config(), load_target("cpu"), train, tmp_path / "quantize")
    metrics = json.loads((tmp_path / "quantize" / "metrics.json").read_text())
    assert metrics["eval_split"] == "test" and metrics["eval_images"] == len(val[::2])
    assert metrics["qat"]["val_images"] == len(val[1::2])
    # the test figures scored beside val in one export (PTQ; the kept QAT candidate) are each program's own
    from edgetl.quant.pt2e import load_program
    from edgetl.stages.quantize import _split_batches, int8_eval, read_float_model

    inputs = read_float_model(train)
    io = inputs.artifact.card.io
    test = _split_batches(inputs, "test", 8)
    for name in ("ptq", "qat"):
        program = load_program(tmp_path / "quantize" / f"{name}.pt2").module()
        alone = int8_eval(fast_config(), program, test, inputs.task.example_inputs(io, 2), io, 20)
        assert alone.accuracy == metrics["accuracy"][name], name
    assert metrics["qat"]["kept_eval_accuracy"] == metrics["accuracy"]["qat"]
    # each route's val figure, which the deployed route is chosen on, is the one QAT and the skip were decided by
    assert metrics["val_accuracy"]["qat"] == metrics["qat"]["kept_val_accuracy"]
    val = _split_batches(inputs, "val", 8)
    ptq = load_program(tmp_path / "quantize" / "ptq.pt2").module()
    assert metrics["val_accuracy"]["ptq"] == int8_eval(fast_config(), ptq, val, inputs.task.example_inputs(io, 2),
                                                       io, 20).accuracy
    cards = {c["name"]: c for c in read_manifest(tmp_path / "quantize").info["models"]}
    assert {n: cards[n]["metrics"]["val_accuracy"] for n in ("ptq", "qat")} == metrics["val_accuracy"]


def test_qat_runs_through_the_shared_trainer(run, tmp_path, monkeypatch):
    """QAT is a Trainer phase (the trainer fine-tuning uses: devices, mixed precision, DDP), not a loop of its own."""
    import json

    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target
    from edgetl.training import trainer as trainer_module
    from edgetl.training.losses import CrossEntropy

    calls = []
    real_fit = trainer_module.Trainer.fit

    def spy(self, phases, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(([p.name for p in phases], type(self.loss), str(self.device)))
        return real_fit(self, phases, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "fit", spy)
    quantize(fast_config(**{"quantize.ptq_baseline": False}), load_target("cpu"), run / "train", tmp_path / "q")
    import torch as _torch

    expected_device = "cuda:0" if _torch.cuda.is_available() else "cpu"
    assert calls == [(["qat"], CrossEntropy, expected_device)]
    assert json.loads((tmp_path / "q" / "metrics.json").read_text())["qat"]["device"] == expected_device


def test_qat_judges_its_epochs_with_a_real_val_loss(run):
    """Each QAT epoch's val figures are measured on the converted int8 model: a loss, not a placeholder 0."""
    import math

    import torch.nn.functional as F

    from edgetl.stages.quantize import torch_eval

    history = json.loads((run / "quantize" / "metrics.json").read_text())["qat"]["history"]
    assert all(math.isfinite(h["val_loss"]) and h["val_loss"] > 0 for h in history)

    model = torch.nn.Linear(4, 3)
    x = torch.randn(10, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    batches = [({"input": x[:6].numpy()}, labels[:6].numpy()), ({"input": x[6:].numpy()}, labels[6:].numpy())]
    stats = torch_eval(model, batches)
    with torch.no_grad():
        logits = model(x)
    assert stats.count == 10 and abs(stats.loss - F.cross_entropy(logits, labels).item()) < 1e-5
    assert stats.accuracy == int((logits.argmax(1) == labels).sum()) / 10


def _with_budget(target, max_drop):  # type: ignore[no-untyped-def]
    return target.model_copy(update={"budgets": target.budgets.model_copy(update={"max_accuracy_drop": max_drop})})


@pytest.mark.parametrize(("fp32", "ptq", "budget", "overrides", "skips"), [
    (0.95, 0.95, 1.0, {}, True),  # PTQ matches fp32 (hymenoptera)
    (0.9415, 0.9345, 1.0, {}, True),  # a drop of 0.70 points, inside 1 point
    (0.9415, 0.8969, 1.0, {}, False),  # a drop of 4.46 points (the digits demo): QAT runs
    (0.95, 0.94, 1.0, {}, True),  # exactly at the budget: within it
    (0.95, 0.95, None, {}, False),  # no budget to meet: QAT runs
    (0.95, 0.95, 1.0, {"quantize.skip_qat_within_budget": False}, False),
    (0.95, 0.95, 1.0, {"quantize.ptq_baseline": False}, False),
    (0.95, 0.95, 1.0, {"quantize.qat": False}, False),
])
def test_qat_is_skipped_only_when_ptq_meets_the_budget(fp32, ptq, budget, overrides, skips):
    from edgetl.config import BuildConfig
    from edgetl.stages.quantize import qat_skip_reason
    from edgetl.targets import load_target

    reason = qat_skip_reason(BuildConfig().with_overrides(overrides), _with_budget(load_target("cpu"), budget),
                             fp32, ptq)
    assert (reason is not None) == skips
    if skips:
        assert "within target cpu's accuracy-drop budget on val" in reason


def test_ptq_within_budget_ships_ptq_alone(run, tmp_path):
    """Default config: PTQ within the budget on val means no QAT epochs and no qat.pt2; metrics say why."""
    from edgetl.manifest import read_manifest
    from edgetl.quant.pt2e import load_program
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    cfg = fast_config(**{"quantize.skip_qat_within_budget": True})
    result = quantize(cfg, _with_budget(load_target("cpu"), 100.0), run / "train", tmp_path / "quantize")
    assert set(result.programs) == {"ptq"} and set(result.accuracy) == {"fp32", "ptq"}
    metrics = json.loads((tmp_path / "quantize" / "metrics.json").read_text())
    assert "accuracy-drop budget on val" in metrics["qat"]["skipped"]
    assert set(metrics["timings"]) >= {"fp32_eval_s", "ptq"} and "qat" not in metrics["timings"]
    assert set(read_manifest(tmp_path / "quantize").outputs) == {"ptq.pt2", "metrics.json"}
    assert load_program(tmp_path / "quantize" / "ptq.pt2").module()(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize(("budget", "overrides", "epochs_run"), [
    (100.0, {}, 1),  # the first trained candidate is within any drop: epoch 2 and its judging are not run
    (100.0, {"quantize.qat_stop_within_budget": False}, 2),
    (None, {}, 2),  # no budget to stop at
])
def test_qat_stops_after_the_first_epoch_within_the_budget(run, tmp_path, budget, overrides, epochs_run):
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    cfg = fast_config(**{"quantize.ptq_baseline": False, "quantize.qat_epochs": 2, **overrides})
    quantize(cfg, _with_budget(load_target("cpu"), budget), run / "train", tmp_path / "quantize")
    metrics = json.loads((tmp_path / "quantize" / "metrics.json").read_text())
    qat = metrics["qat"]
    assert [h["epoch"] for h in qat["history"]] == list(range(epochs_run + 1))
    assert len(metrics["timings"]["qat"]["judge_s"]) == epochs_run + 1
    assert qat["stopped_after_epoch"] == (1 if epochs_run == 1 else None)
    assert (qat["stop_at_val_accuracy"] is None) == (budget is None or bool(overrides))
    assert qat["kept_epoch"] <= epochs_run


def test_beside_ptq_qat_epoch_0_is_the_ptq_model_scored_once(run, tmp_path):
    """QAT's range initialisation is PTQ's calibration, so its untrained candidate is the PTQ model: beside a PTQ
    baseline that model is QAT's epoch 0, not converted, exported and scored a second time. A QAT-only stage
    converts its own, and the two score alike."""
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    epoch_0 = {}
    for ptq in (True, False):
        out = tmp_path / f"ptq-{ptq}"
        quantize(fast_config(**{"quantize.ptq_baseline": ptq}), load_target("cpu"), run / "train", out)
        metrics = json.loads((out / "metrics.json").read_text())
        qat = metrics["qat"]
        assert qat["epoch_0"] == ("the PTQ model" if ptq else "converted after range initialisation")
        assert (metrics["timings"]["qat"]["judge_s"][0] == 0.0) == ptq  # no judging of its own
        epoch_0[ptq] = qat["history"][0]
    assert epoch_0[True]["val_accuracy"] == epoch_0[False]["val_accuracy"]
    assert epoch_0[True]["val_loss"] == pytest.approx(epoch_0[False]["val_loss"], rel=0.05)


def test_the_stop_accuracy_is_fp32_less_the_budget():
    from edgetl.config import BuildConfig
    from edgetl.stages.quantize import qat_stop_accuracy
    from edgetl.targets import load_target

    cfg = BuildConfig()
    assert qat_stop_accuracy(cfg, _with_budget(load_target("cpu"), 1.0), 0.9248) == pytest.approx(0.9148)
    assert qat_stop_accuracy(cfg, _with_budget(load_target("cpu"), None), 0.9248) is None
    off = cfg.with_overrides({"quantize.qat_stop_within_budget": False})
    assert qat_stop_accuracy(off, _with_budget(load_target("cpu"), 1.0), 0.9248) is None


def test_onnxruntime_judge_keeps_the_epoch_the_torch_judge_keeps(run, tmp_path):
    """QAT candidates judged in ONNX Runtime's int8 kernels rank the epochs as torch's reference ops do."""
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    kept = {}
    for judge in ("torch", "onnxruntime"):
        cfg = fast_config(**{"quantize.ptq_baseline": False, "quantize.qat_judge": judge})
        quantize(cfg, load_target("cpu"), run / "train", tmp_path / judge)
        metrics = json.loads((tmp_path / judge / "metrics.json").read_text())
        qat = metrics["qat"]
        assert qat["judge"] == judge and len(metrics["timings"]["qat"]["judge_s"]) == qat["epochs"] + 1
        kept[judge] = (qat["kept_epoch"], [h["val_accuracy"] for h in qat["history"]])
    assert kept["onnxruntime"][0] == kept["torch"][0]
    assert kept["onnxruntime"][1] == pytest.approx(kept["torch"][1], abs=0.1)


def test_int8_models_are_scored_in_onnxruntime_not_in_torch_reference_ops(run, tmp_path, monkeypatch):
    """The default scores every int8 model (PTQ, the QAT candidates, both on the evaluation split) in ONNX Runtime's
    int8 kernels: torch's reference quantized ops score only float models."""
    import edgetl.stages.quantize as stage
    from edgetl.targets import load_target

    scored: list[str] = []
    real = stage.torch_accuracy

    def spy(model, batches, progress=None):  # type: ignore[no-untyped-def]
        scored.append(type(model).__name__)
        return real(model, batches, progress)

    monkeypatch.setattr(stage, "torch_accuracy", spy)
    stage.quantize(fast_config(**{"quantize.skip_qat_within_budget": False}), load_target("cpu"), run / "train",
                   tmp_path / "quantize")
    metrics = json.loads((tmp_path / "quantize" / "metrics.json").read_text())
    assert scored and "GraphModule" not in scored  # the fp32 model only
    assert metrics["int8_scored_in"].startswith("onnxruntime")
    assert set(metrics["accuracy"]) == {"fp32", "ptq", "qat"}
    assert all(0.0 <= a <= 1.0 for a in metrics["accuracy"].values())
    assert "score_s" in metrics["timings"]["ptq"]


@pytest.mark.parametrize(("setting", "saturates", "target", "expected"), [
    ("auto", True, "cpu", "reduced"),      # the model runs on this AVX2-only host: its kernels would saturate
    ("auto", False, "cpu", "full"),        # a VNNI/AMX host is exact at full range
    ("auto", True, "jetson", "full"),      # a device's runtime is not this host's kernels
    ("full", True, "cpu", "full"),
    ("reduced", False, "jetson", "reduced"),
])
def test_weight_range_auto_reduces_only_where_the_host_kernels_saturate(setting, saturates, target, expected,
                                                                          monkeypatch):
    import platform

    import edgetl.host
    from edgetl.stages.quantize import resolve_weight_range
    from edgetl.targets import load_target

    monkeypatch.setattr(edgetl.host, "u8s8_saturates", lambda: saturates)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    chosen, why = resolve_weight_range(fast_config(**{"quantize.weight_range": setting}), load_target(target))
    assert chosen == expected and why
