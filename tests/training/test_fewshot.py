"""The prototype head: nearest-class-mean as a linear layer, the auto rule, and a one-shot build end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgetl.errors import ConfigError
from edgetl.training.fewshot import FEW_SHOT_MAX_SHOTS, choose_head, set_prototype_head
from tests.conftest import FAST_BUILD, make_image_folder


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


def test_the_prototype_head_is_nearest_normalised_class_mean() -> None:
    model = _Net().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, 2, 2, generator=g)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    head = set_prototype_head(model, "classifier", [((x[:5],), y[:5]), ((x[5:],), y[5:])], 3)
    assert head.shots == {0: 3, 1: 3, 2: 3} and head.temperature > 0
    def unit(t: torch.Tensor) -> torch.Tensor:
        return t / t.norm(dim=1, keepdim=True)

    feats = unit(model.body(x))
    protos = torch.stack([feats[y == c].mean(0) for c in range(3)])
    q = torch.randn(20, 3, 2, 2, generator=g)
    with torch.no_grad():
        nearest = torch.cdist(unit(model.body(q)), protos).argmin(1)
        logits = model(q)
        assert torch.equal(logits.argmax(1), nearest)
        # softmax of the logits is the softmax of -distance^2 / tau, on the unit sphere
        expected = (-torch.cdist(unit(model.body(q)), protos) ** 2 / head.temperature).softmax(1)
        assert torch.allclose(logits.softmax(1), expected, atol=1e-5)


def test_one_image_per_class_uses_the_spread_between_prototypes() -> None:
    model = _Net().eval()
    x, y = torch.randn(3, 3, 2, 2), torch.tensor([0, 1, 2])
    head = set_prototype_head(model, "classifier", [((x,), y)], 3)
    assert head.shots == {0: 1, 1: 1, 2: 1} and head.temperature > 0
    assert torch.equal(model(x).argmax(1), y)  # each training image is its own prototype


def test_a_class_without_images_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"class\(es\) \[2\] have no training image"):
        set_prototype_head(_Net().eval(), "classifier", [((torch.randn(2, 3, 2, 2),), torch.tensor([0, 1]))], 3)


def test_auto_picks_the_prototype_head_up_to_the_documented_count() -> None:
    assert choose_head("auto", 1) == choose_head("auto", FEW_SHOT_MAX_SHOTS) == "prototype"
    assert choose_head("auto", FEW_SHOT_MAX_SHOTS + 1) == "linear"
    assert choose_head("linear", 1) == "linear" and choose_head("prototype", 100) == "prototype"


def test_a_one_shot_build_runs_end_to_end_and_says_its_figure_is_noisy(tmp_path: Path) -> None:
    from edgetl.cli import cli

    data = make_image_folder(tmp_path / "data", {"red": 1, "green": 1, "blue": 1}, splits=("train",))
    make_image_folder(tmp_path / "val_src", {"red": 6, "green": 6, "blue": 6}, splits=("val",), seed=3)
    (tmp_path / "val_src" / "val").rename(data / "val")
    config = tmp_path / "build.yaml"
    config.write_text(FAST_BUILD.format(data=data, out=tmp_path / "run").replace(
        "quantize: {qat_epochs: 1,", "quantize: {qat: false,"))
    result = CliRunner().invoke(cli, ["build", "--config", str(config), "--no-budget-check"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run" / "train" / "manifest.json").read_text())["info"]
    assert info["head"] == "prototype" and info["shots_per_class"] == {"blue": 1, "green": 1, "red": 1}
    assert info["models"][0]["lineage"]["method"] == "prototype" and info["epochs_run"] == 0
    assert "noisy figure: 95% binomial interval" in result.output
    assert (tmp_path / "run" / "bundle" / "manifest.json").is_file()
    # the report states the shots and draws the (one-point) curve on the evaluation split, with intervals
    (point,) = json.loads((tmp_path / "run" / "train" / "metrics.json").read_text())["shots_curve"]
    assert point["shots"] == 1 and point["eval_images"] == 9 and point["ci95"][0] <= point["accuracy"]
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "Few-shot build: **1 labelled image(s) per class** (blue 1, green 1, red 1)" in report
    assert "| 1 | " in report and "95% CI" in report


def test_a_class_with_zero_shots_is_exit_2(tmp_path: Path) -> None:
    from edgetl.cli import cli

    data = make_image_folder(tmp_path / "data", {"red": 3, "green": 3})
    (data / "train" / "blue").mkdir()
    (data / "val" / "blue").mkdir()
    make_image_folder(tmp_path / "more", {"blue": 2}, splits=("val",))
    for png in (tmp_path / "more" / "val" / "blue").glob("*.png"):
        png.rename(data / "val" / "blue" / png.name)
    config = tmp_path / "build.yaml"
    config.write_text(FAST_BUILD.format(data=data, out=tmp_path / "run"))
    result = CliRunner().invoke(cli, ["train", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "class folder(s) with no images" in result.output and "blue" in result.output


def test_the_shots_curve_rebuilds_the_head_per_k_and_scores_the_evaluation_split() -> None:
    from edgetl.training.fewshot import shots_curve

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 3
    train_y = torch.arange(3).repeat_interleave(6)  # 6 shots per class
    train_x = centres[train_y] + torch.randn(18, 8, generator=g)
    eval_y = torch.arange(3).repeat_interleave(10)
    eval_x = centres[eval_y] + torch.randn(30, 8, generator=g)
    rows = shots_curve(train_x, train_y, eval_x, eval_y, 3, max_shots=4, seeds=(0, 1))
    assert [r["shots"] for r in rows] == [1, 2, 3, 4]  # capped at max_shots, below the 6 each class has
    for r in rows:
        assert r["eval_images"] == 30 and len(r["seed_accuracies"]) == 2
        assert r["accuracy"] == pytest.approx(sum(r["seed_accuracies"]) / 2)
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    # the same draw again gives the same curve; at k = all six shots every seed builds the same prototypes
    assert shots_curve(train_x, train_y, eval_x, eval_y, 3, max_shots=4, seeds=(0, 1)) == rows
    full = shots_curve(train_x, train_y, eval_x, eval_y, 3, max_shots=6, seeds=(0, 1))[-1]
    assert full["seed_accuracies"][0] == full["seed_accuracies"][1]
    # and the curve's k = 6 point is the head set_prototype_head builds from every training image
    model = nn.Sequential(nn.Identity())
    model.classifier = nn.Linear(8, 3)
    model.forward = lambda x: model.classifier(x)  # type: ignore[method-assign]
    head = set_prototype_head(model, "classifier", [((train_x,), train_y)], 3, eval_batches=[((eval_x,), eval_y)])
    with torch.no_grad():
        built = float((model(eval_x).argmax(1) == eval_y).float().mean())
    assert head.curve is not None and head.curve[-1]["shots"] == 6
    assert head.curve[-1]["accuracy"] == pytest.approx(built)
