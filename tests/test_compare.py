"""``edgetl compare`` on the tiny backbone: three strategies through the one fine-tune stage, one split, one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import edgetl.cli
from edgetl.compare import STRATEGIES, Strategy, compare
from edgetl.config import BuildConfig
from edgetl.errors import UnknownNameError
from edgetl.fsutil import read_json
from edgetl.targets import load_target
from tests.conftest import make_image_folder


def tiny_cfg(data: Path) -> BuildConfig:
    return BuildConfig().with_overrides({
        "data.path": str(data), "data.num_workers": 0, "train.backbone": "tiny", "train.image_size": 32,
        "train.batch_size": 8, "train.head_epochs": 1, "train.epochs": 2, "train.head_lr": 1e-2, "train.lr": 1e-2,
        "train.backbone_lr": 1e-2})


def test_four_strategies_on_one_held_out_split(tmp_path: Path) -> None:
    # train/ only: edgetl makes val and a held-out test, and every strategy is judged on that same test split
    data = make_image_folder(tmp_path / "data", {"red": 14, "green": 14, "blue": 14}, splits=("train",))
    # "pretrained" tiny weights (another seed's initialisation), so scratch starts elsewhere than the others
    import torch

    from edgetl.backbones import create_model

    torch.manual_seed(123)
    weights = tmp_path / "tiny_pretrained.pt"
    torch.save(create_model("tiny", 3, "none").state_dict(), weights)
    cfg = tiny_cfg(data).with_overrides({"train.weights": str(weights)})

    result = compare(cfg, load_target("cpu"), tmp_path / "cmp")

    assert [r.strategy for r in result.results] == ["feature_extraction", "finetune", "lp_ft", "scratch"]
    assert result.eval_split == "test" and not result.split_selected_on and result.eval_images == 6
    payload = read_json(result.json_path)
    assert payload["eval_split"] == "test" and payload["split_images"] == {"train": 27, "val": 9, "test": 6}
    for row in payload["strategies"]:
        # train.head_epochs (1) is the warm-up of three strategies and LP-FT's probe
        assert 0.0 <= row["eval_accuracy"] <= 1.0 and row["wall_time_s"] > 0 and row["epochs_run"] == 1 + 2
        assert row["eval_split"] == "test"
        manifest = read_json(tmp_path / "cmp" / row["run_dir"] / "manifest.json")
        assert manifest["info"]["eval_split"] == "test"
        assert manifest["info"]["eval_accuracy"] == row["eval_accuracy"]
    # each strategy changed exactly what it says, in the train stage's own manifest
    configs = {r["strategy"]: read_json(tmp_path / "cmp" / r["run_dir"] / "manifest.json")["config"]["train"]
               for r in payload["strategies"]}
    assert configs["feature_extraction"]["unfreeze"] == 0 and configs["feature_extraction"]["weights"] == str(weights)
    assert configs["finetune"]["unfreeze"] == "all" and configs["finetune"]["weights"] == str(weights)
    assert configs["finetune"]["strategy"] == "warmup_finetune" and configs["lp_ft"]["strategy"] == "lp_ft"
    assert configs["scratch"]["weights"] == "none" and configs["scratch"]["unfreeze"] == "all"
    # feature extraction is the warm-up recipe frozen; scratch's "auto" resolves to it (random weights)
    assert configs["feature_extraction"]["strategy"] == configs["scratch"]["strategy"] == "warmup_finetune"
    # feature extraction leaves the backbone exactly as loaded
    frozen = torch.load(tmp_path / "cmp" / "feature_extraction" / "model.pt", weights_only=False).state_dict()
    loaded = torch.load(weights)
    assert all(torch.equal(frozen[k], loaded[k]) for k in loaded if not k.startswith("classifier."))
    with Image.open(result.plot_path) as png:
        assert png.format == "PNG" and png.size[0] > 400


def test_a_new_strategy_is_one_registry_entry(tmp_path: Path, tiny_imagefolder: Path) -> None:
    STRATEGIES.register("long_head", Strategy("long_head", "head only, twice the epochs",
                                              lambda cfg: {"train.unfreeze": 0, "train.epochs": 2 * cfg.train.epochs}))
    try:
        result = compare(tiny_cfg(tiny_imagefolder), load_target("cpu"), tmp_path / "cmp", strategies=("long_head",))
    finally:
        STRATEGIES.unregister("long_head")
    assert result.results[0].epochs_run == 5
    # the user's own train/ + val/ is not carved up: the figures are on val, and the result says so
    assert result.eval_split == "val" and result.split_selected_on
    with pytest.raises(UnknownNameError, match="did you mean 'finetune'"):
        compare(tiny_cfg(tiny_imagefolder), load_target("cpu"), tmp_path / "x", strategies=("finetun",))


def test_compare_command_prints_the_table_and_names_the_split(tmp_path: Path, tiny_imagefolder: Path) -> None:
    out = tmp_path / "cmp"
    result = CliRunner().invoke(edgetl.cli.cli, [
        "compare", "--data", str(tiny_imagefolder), "--backbone", "tiny", "--image-size", "32", "--epochs", "1",
        "--head-epochs", "1", "--strategy", "finetune", "--strategy", "scratch", "--out", str(out)],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "top-1 on val" in result.output and "finetune" in result.output and "scratch" in result.output
    assert "the split each strategy kept its best epoch on" in result.output
    payload = json.loads((out / "compare.json").read_text())
    assert [r["strategy"] for r in payload["strategies"]] == ["finetune", "scratch"]
    assert (out / "compare.png").stat().st_size > 0
    bad = CliRunner().invoke(edgetl.cli.cli, ["compare", "--data", str(tiny_imagefolder), "--backbone", "tiny",
                                              "--strategy", "nope", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "unknown comparison strategy 'nope'" in bad.output
