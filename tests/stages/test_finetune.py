"""The fine-tune stage on the tiny backbone: accuracy, outputs, determinism, Ctrl-C + resume, CLI."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import edgetl.cli
from edgetl.backbones import get_backbone, load_checkpoint
from edgetl.config import BuildConfig
from edgetl.data import Preprocess, open_sample, preprocess_image, read_split
from edgetl.errors import ConfigError
from edgetl.fsutil import read_json
from edgetl.manifest import read_manifest
from edgetl.stages import finetune as finetune_module
from edgetl.stages.finetune import finetune, resolve_recipe
from edgetl.targets import load_target
from tests.conftest import make_image_folder


def tiny_cfg(data: Path, **train: Any) -> BuildConfig:
    settings = {"backbone": "tiny", "image_size": 32, "batch_size": 8, "head_epochs": 1, "epochs": 4,
                "head_lr": 1e-2, "lr": 1e-2, "backbone_lr": 1e-2, **train}
    return BuildConfig().with_overrides({"data.path": str(data), "data.num_workers": 0,
                                         **{f"train.{k}": v for k, v in settings.items()}})


@pytest.mark.parametrize("regularisers", [{}, {"ema_epochs": 1.0}, {"mixup_alpha": 0.2, "cutmix_alpha": 1.0},
                                          {"cpu_bf16": True}, {"auto_augment": "randaugment", "random_erasing": 0.25}],
                         ids=["plain", "weight-ema", "mixup-cutmix", "cpu-bf16-where-native", "randaugment-erasing"])
def test_tiny_training_reaches_high_accuracy_and_writes_every_output(
    tiny_imagefolder: Path, tmp_path: Path, regularisers: dict[str, float]
) -> None:
    out = tmp_path / "run" / "train"
    result = finetune(tiny_cfg(tiny_imagefolder, **regularisers), load_target("cpu"), out)

    assert result.best_val_accuracy >= 0.9
    assert result.epochs_run == 5 and 1 <= result.best_epoch <= 5
    manifest = read_manifest(out)
    assert manifest.stage == "train"
    assert set(manifest.outputs) == {"model.pt", "labels.json", "split.json", "metrics.json"}
    assert manifest.verify_outputs(out) == []
    assert not (out / "last.pt").exists()  # a finished run leaves only its results
    info = manifest.info
    assert info["classes"] == ["blue", "green", "red"] == read_json(out / "labels.json")
    assert info["class_counts"]["train"] == {"blue": 8, "green": 8, "red": 8}
    assert info["imbalance_ratio"] == 1.0 and info["eval_split"] == "val"
    assert read_split(out / "split.json").classes == info["classes"]

    metrics = read_json(out / "metrics.json")
    assert metrics["complete"] and [e["phase"] for e in metrics["epochs"]] == ["head"] + ["finetune"] * 4
    assert sum(c["count"] for c in metrics["eval_per_class"].values()) == 12

    # the checkpoint (with EMA on: the averaged weights validation judged), fed with the deployment preprocessing
    # from the manifest, gives the accuracy stated
    import torch

    from edgetl.artifacts import read_model_artifact

    artifact = read_model_artifact(out)
    card = artifact.card
    pp = Preprocess.model_validate(card.preprocess)
    assert (card.io.inputs[0].shape[2], pp.resize_size, list(card.classes)) == (32, round(32 / 0.875), info["classes"])
    model = artifact.load()
    samples = read_split(out / "split.json").splits["val"]
    with torch.no_grad():
        batch = torch.stack([torch.from_numpy(preprocess_image(open_sample(ref), pp)) for ref, _ in samples])
        predicted = model(batch).argmax(1).tolist()
    hits = sum(p == label for p, (_, label) in zip(predicted, samples, strict=True))
    assert hits / len(samples) == pytest.approx(result.best_val_accuracy)


def test_same_seed_gives_the_same_metrics(tiny_imagefolder: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(tiny_imagefolder, epochs=2)
    finetune(cfg, load_target("cpu"), tmp_path / "a")
    finetune(cfg, load_target("cpu"), tmp_path / "b")
    finetune(tiny_cfg(tiny_imagefolder, epochs=2, seed=1), load_target("cpu"), tmp_path / "c")

    def losses(run: str) -> list[float]:
        return [e["train_loss"] for e in read_json(tmp_path / run / "metrics.json")["epochs"]]

    assert losses("a") == losses("b")
    assert losses("a") != losses("c")


@pytest.mark.parametrize("ema_epochs", [0.0, 1.0], ids=["plain", "weight-ema"])
def test_ctrl_c_keeps_last_epoch_and_resume_finishes_like_an_uninterrupted_run(
    tiny_imagefolder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ema_epochs: float
) -> None:
    cfg = tiny_cfg(tiny_imagefolder, epochs=3, ema_epochs=ema_epochs)
    finetune(cfg, load_target("cpu"), tmp_path / "whole")

    real_write = finetune_module._write_metrics

    def interrupt_after_epoch_2(out_dir, state, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_write(out_dir, state, *args, **kwargs)
        if state.epoch == 2 and not kwargs["complete"]:
            raise KeyboardInterrupt  # what Ctrl-C raises, at the worst moment: right after an epoch's files

    out = tmp_path / "cut" / "train"
    monkeypatch.setattr(finetune_module, "_write_metrics", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, load_target("cpu"), out)
    monkeypatch.undo()
    assert not (out / "manifest.json").exists()
    assert load_checkpoint(out / "last.pt").extra["state"]["epoch"] == 2

    with pytest.raises(ConfigError, match="another config"):
        finetune(tiny_cfg(tiny_imagefolder, epochs=3, lr=0.5, ema_epochs=ema_epochs), load_target("cpu"), out,
                 resume=True)

    result = finetune(cfg, load_target("cpu"), out, resume=True)
    assert result.epochs_run == 4
    whole = read_json(tmp_path / "whole" / "metrics.json")["epochs"]
    resumed = read_json(out / "metrics.json")["epochs"]
    assert [(e["train_loss"], e["val_loss"], e["val_accuracy"]) for e in resumed] == [
        (e["train_loss"], e["val_loss"], e["val_accuracy"]) for e in whole
    ]


def test_imbalanced_classes_are_reported_and_can_be_weighted(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", {"common": 12, "rare": 4})
    out = tmp_path / "train"
    finetune(tiny_cfg(data, epochs=1, balanced_loss=True), load_target("cpu"), out)
    info = read_manifest(out).info
    assert info["class_counts"]["train"] == {"common": 12, "rare": 4}
    assert info["imbalance_ratio"] == 3.0
    assert set(read_json(out / "metrics.json")["eval_per_class"]) == {"common", "rare"}


def test_nothing_to_train_is_a_config_error(tiny_imagefolder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to train"):
        finetune(tiny_cfg(tiny_imagefolder, epochs=0, head_epochs=0), load_target("cpu"), tmp_path)


def test_cli_train_prints_a_summary_and_writes_the_checkpoint(tiny_imagefolder: Path, tmp_path: Path) -> None:
    config = tmp_path / "build.yaml"
    config.write_text("data: {num_workers: 0}\ntrain: {head_lr: 0.01, lr: 0.01, backbone_lr: 0.01}\n")
    result = CliRunner().invoke(edgetl.cli.cli, [
        "train", "--data", str(tiny_imagefolder), "--backbone", "tiny", "--image-size", "32", "--epochs", "2",
        "--head-epochs", "1", "--batch-size", "8", "--unfreeze", "2", "--seed", "3", "--config", str(config),
        "--out", str(tmp_path / "run"),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "best val acc" in result.output
    assert (tmp_path / "run" / "train" / "model.pt").is_file()
    assert read_manifest(tmp_path / "run" / "train").config["train"]["unfreeze"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backbone", "resnet19"], "unknown backbone 'resnet19'; did you mean 'resnet18'"),
        (["--weights", "no/such/weights.pt"], "weights file no/such/weights.pt does not exist"),
        (["--unfreeze", "some"], "--unfreeze: expected 'all' or a number"),
    ],
)
def test_cli_train_bad_options_exit_2_with_a_message(
    tiny_imagefolder: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(edgetl.cli.cli, [
        "train", "--data", str(tiny_imagefolder), "--backbone", "tiny", "--out", str(tmp_path), *args,
    ], catch_exceptions=False)
    assert result.exit_code == 2
    assert message in result.output


def test_dataloader_workers_give_repeatable_runs(tiny_imagefolder: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(tiny_imagefolder, epochs=1).with_overrides({"data.num_workers": 2})
    a = finetune(cfg, load_target("cpu"), tmp_path / "a")
    b = finetune(cfg, load_target("cpu"), tmp_path / "b")
    assert read_json(a.out_dir / "metrics.json")["epochs"] != []
    assert [e["train_loss"] for e in read_json(a.out_dir / "metrics.json")["epochs"]] == [
        e["train_loss"] for e in read_json(b.out_dir / "metrics.json")["epochs"]
    ]


def test_lp_ft_probes_on_frozen_features_then_fine_tunes_every_layer_gently(tiny_imagefolder: Path,
                                                                          tmp_path: Path) -> None:
    import torch

    from edgetl.backbones import create_model

    torch.manual_seed(123)
    weights = tmp_path / "tiny_pretrained.pt"
    torch.save(create_model("tiny", 3, "none").state_dict(), weights)
    loaded = torch.load(weights)

    # the probe alone (no fine-tuning epoch): only the classifier moved, BatchNorm statistics included
    probe = finetune(tiny_cfg(tiny_imagefolder, strategy="lp_ft", head_epochs=3, epochs=0, weights=str(weights)),
                     load_target("cpu"), tmp_path / "probe")
    state = torch.load(probe.checkpoint, weights_only=False).state_dict()
    backbone = [k for k in loaded if not k.startswith("classifier.")]
    assert backbone and all(torch.equal(state[k], loaded[k]) for k in backbone)
    assert not all(torch.equal(state[k], loaded[k]) for k in loaded if k.startswith("classifier."))
    assert probe.epochs_run == 3

    out = tmp_path / "lpft"
    result = finetune(tiny_cfg(tiny_imagefolder, strategy="lp_ft", head_epochs=3, epochs=3, lp_ft_lr=5e-3,
                               weights=str(weights)), load_target("cpu"), out)
    rows = read_json(out / "metrics.json")["epochs"]
    assert [r["phase"] for r in rows] == ["probe"] * 3 + ["finetune"] * 3
    assert result.epochs_run == 6 and result.best_val_accuracy > rows[2]["val_accuracy"]
    # the gentle fine-tune: head and backbone at lp_ft_lr (the warm-up recipe fine-tunes its head at lr 1e-2 here);
    # a row's lr is the rate after its epoch, cosine-decayed to 0 by the last
    for row in rows[3:]:
        assert row["lr"] == row["lr_backbone"] and 0 <= row["lr"] < 5e-3
    assert rows[3]["lr"] > 0
    info = read_manifest(out).info
    assert info["strategy"] == "lp_ft" and read_manifest(tmp_path / "probe").info["strategy"] == "lp_ft"
    assert read_manifest(out).config["train"]["strategy"] == "lp_ft"
    # the fine-tune normalises by the pretrained statistics (lp_ft_norm "pretrained"): they never move, the
    # weights do; with "batch" the statistics follow the training batches
    tuned = torch.load(result.checkpoint, weights_only=False).state_dict()
    stats = [k for k in loaded if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(tuned[k], loaded[k]) for k in stats)
    assert not all(torch.equal(tuned[k], loaded[k]) for k in backbone if k.endswith(".weight"))
    batch = finetune(tiny_cfg(tiny_imagefolder, strategy="lp_ft", head_epochs=1, epochs=1, lp_ft_norm="batch",
                              weights=str(weights)), load_target("cpu"), tmp_path / "batch")
    moved = torch.load(batch.checkpoint, weights_only=False).state_dict()
    assert not all(torch.equal(moved[k], loaded[k]) for k in stats)


def test_unknown_strategy_is_a_config_error(tiny_imagefolder: Path) -> None:
    with pytest.raises(ConfigError, match="train.strategy"):
        tiny_cfg(tiny_imagefolder, strategy="lpft")
    with pytest.raises(ConfigError, match="train.lp_epochs is now train.head_epochs"):
        tiny_cfg(tiny_imagefolder, lp_epochs=3)


def test_auto_recipe_is_lp_ft_for_a_pretrained_image_backbone_only(caplog: pytest.LogCaptureFixture) -> None:
    def resolved(**train: Any) -> tuple[str, int]:
        cfg = BuildConfig().with_overrides({f"train.{k}": v for k, v in train.items()})
        t = resolve_recipe(cfg, get_backbone(cfg.train.backbone)).train
        return t.strategy, t.head_epochs

    assert BuildConfig().train.strategy == "auto" and BuildConfig().train.head_epochs is None
    assert resolved() == ("lp_ft", 8)  # efficientnet_lite0, its pretrained weights
    assert resolved(weights="/some/checkpoint.pt") == ("lp_ft", 8)
    assert resolved(weights="none") == ("warmup_finetune", 2)  # random features: nothing for a probe to keep
    assert resolved(backbone="tiny") == ("warmup_finetune", 2)  # its "default" weights are random
    assert resolved(backbone="tiny", weights="/some/checkpoint.pt") == ("lp_ft", 8)
    assert resolved(backbone="tiny_bert") == ("warmup_finetune", 2)  # text: LP-FT not measured there
    assert resolved(head_epochs=3) == ("lp_ft", 3) and resolved(strategy="warmup_finetune", head_epochs=0) == (
        "warmup_finetune", 0)
    with caplog.at_level(logging.WARNING, logger="edgetl.train"):
        assert resolved(strategy="lp_ft", weights="none") == ("lp_ft", 8)  # an explicit recipe is kept, with a word
    assert "lp_ft with random weights" in caplog.text


def test_the_recorded_recipe_is_the_one_that_ran(tmp_path: Path, tiny_imagefolder: Path) -> None:
    # tiny from random weights: auto resolves to the warm-up recipe, and the manifest records it, not "auto"
    cfg = BuildConfig().with_overrides({"data.path": str(tiny_imagefolder), "data.num_workers": 0,
                                        "train.backbone": "tiny", "train.weights": "none", "train.image_size": 32,
                                        "train.batch_size": 8, "train.epochs": 1})
    finetune(cfg, load_target("cpu"), tmp_path / "run")
    manifest = read_manifest(tmp_path / "run")
    assert manifest.config["train"]["strategy"] == "warmup_finetune" and manifest.config["train"]["head_epochs"] == 2
    assert [r["phase"] for r in read_json(tmp_path / "run" / "metrics.json")["epochs"]] == ["head", "head", "finetune"]


def test_the_build_warns_when_val_and_test_disagree_beyond_their_noise(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from PIL import Image

    data = make_image_folder(tmp_path / "data", {"red": 8, "green": 8, "blue": 8}, splits=("train", "val", "test"))
    clean = finetune(tiny_cfg(data), load_target("cpu"), tmp_path / "clean")
    assert clean.split_check is not None and not clean.split_check["disagree"]
    # a shifted test split: every test image's colours rotated (red -> green -> blue), labels unchanged
    for png in (data / "test").rglob("*.png"):
        with Image.open(png) as img:
            r, g, b = img.convert("RGB").split()
            Image.merge("RGB", (b, r, g)).save(png)
    with caplog.at_level(logging.WARNING, logger="edgetl.train"):
        shifted = finetune(tiny_cfg(data), load_target("cpu"), tmp_path / "shifted")
    check = shifted.split_check
    assert check is not None and check["disagree"] and check["p_value"] < 0.05
    assert check["val_images"] == 12 and check["test_images"] == 12
    assert "differ by more than their noise" in caplog.text and "--adapt-data" in caplog.text
    assert read_json(tmp_path / "shifted" / "metrics.json")["val_test_check"] == check
    assert read_manifest(tmp_path / "shifted").info["val_test_check"] == check
