"""Accuracy-aware PTQ on the tiny backbone: a layer that int8 breaks is found, reverted, carried and proven.

The model (``make_fragile_train_dir``) has one classifier column scaled so that per-channel int8 rounds the rest of
the classifier to 0: PTQ loses accuracy, reverting the classifier alone wins it back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.quant.builders import fast_config, make_fragile_train_dir

torch = pytest.importorskip("torch")

BOARD = "name: board\nextends: cpu\nbudgets: {max_accuracy_drop: 10.0}\n"  # 18 val images: 10 points resolvable
FALLBACK = {"quantize.qat": False, "quantize.fallback.enabled": True,
            # screen on 6 of the 18 val images, confirm the best 2 on all of them (the default path, made small)
            "quantize.fallback.rank_images": 6, "quantize.fallback.confirm_layers": 2}


# the images of every ONNX Runtime int8 scoring (edgetl.quant.judge.ort_logits) during the fixture's quantize
ORT_SCORED: list[int] = []


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    import edgetl.quant.judge as judge
    from edgetl.stages.export import export
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    root = tmp_path_factory.mktemp("fragile")
    train = make_fragile_train_dir(root)
    (root / "board.yaml").write_text(BOARD)
    target = load_target(str(root / "board.yaml"))
    real = judge.ort_logits

    def spy(model, example, io, batches, **kwargs):  # type: ignore[no-untyped-def]
        ORT_SCORED.append(sum(len(labels) for _, labels in batches))
        return real(model, example, io, batches, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(judge, "ort_logits", spy)
        quantize(fast_config(**FALLBACK), target, train, root / "quantize")
    export(fast_config(**FALLBACK), target, train, root / "quantize", root / "export")
    return root


def test_fallback_finds_and_reverts_the_one_sensitive_layer(run):
    metrics = json.loads((run / "quantize" / "metrics.json").read_text())
    report = metrics["fallback"]["ptq"]
    sens = report["sensitivity"]
    ranking = sens["layers"]
    assert ranking[0]["layer"] == "classifier" and ranking[0]["accuracy_gain"] > 50
    assert ranking[1]["accuracy_gain"] == 0 and all(r["accuracy_gain"] is None for r in ranking[2:])
    # 4 layers screened on 6 images (+ the base), 2 confirmed on all 18 (+ the base)
    assert (sens["method"], sens["screen_images"], sens["screen_passes"], sens["full_passes"]) == ("screened", 6, 5, 3)
    assert sens["screen"]["images"] == 6 and sens["screen"]["flipped_in_subset"] == min(6, sens["screen"]
                                                                                         ["flipped_in_val"])
    assert report["status"] == "budget met" and report["float_layers"] == ["classifier"]
    # every whole-val figure (the int8 model, the confirmed layers, each step) from ONNX Runtime's int8 kernels
    assert report["scored_in"] == "onnxruntime int8 kernels (the exported QDQ model)"
    # ... and it is so: the PTQ model's score, the loop's base and its 2 confirmed layers ran in ONNX Runtime on
    # all 18 val images; no ONNX Runtime scoring ran on the screening subset (that proxy stays in torch)
    assert ORT_SCORED.count(18) >= 1 + sens["full_passes"] and set(ORT_SCORED) == {18}
    assert report["steps"][0]["drop_points"] > 10 and report["steps"][1]["within_budget"]
    assert metrics["accuracy"]["ptq"] == metrics["accuracy"]["fp32"]
    # the shipped step's val figure is the reverted model's (what the int8 route is chosen on)
    assert report["shipped_val_accuracy"] == report["steps"][1]["accuracy"] == metrics["val_accuracy"]["ptq"]


def test_each_step_is_timed_in_onnx_runtime_for_the_step_curve(run):
    steps = json.loads((run / "quantize" / "metrics.json").read_text())["fallback"]["ptq"]["steps"]
    for step in steps:  # step 0 (all int8) and step 1 (the classifier in float), each beside int8 and fp32
        lat = step["latency"]
        assert lat["runtime"] == "onnxruntime" and lat["rounds"] == 5 and lat["p50_ms"] > 0
        assert lat["vs_int8_range"][0] <= lat["vs_int8"] <= lat["vs_int8_range"][1]
        assert lat["vs_fp32_range"][0] <= lat["vs_fp32"] <= lat["vs_fp32_range"][1]


def test_within_budget_nothing_is_ranked_and_the_card_says_so(run, tmp_path):
    from edgetl.artifacts import read_model_artifact
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    (tmp_path / "loose.yaml").write_text("name: loose\nextends: cpu\nbudgets: {max_accuracy_drop: 100.0}\n")
    quantize(fast_config(**FALLBACK), load_target(str(tmp_path / "loose.yaml")), run / "train", tmp_path / "q")
    report = json.loads((tmp_path / "q" / "metrics.json").read_text())["fallback"]["ptq"]
    assert report["status"] == "not needed" and report["float_layers"] == []
    assert report["sensitivity"]["method"] == "not run" and report["sensitivity"]["layers"] == []
    assert report["steps"][0]["latency"] == {}  # nothing reverted: no step to time
    card = read_model_artifact(tmp_path / "q", "ptq").card
    assert card.precision_plan.float_layers == ()
    assert card.metrics["accuracy_fallback"]["status"] == "not needed"
    assert "the fallback reverts nothing" in card.metrics["accuracy_fallback"]["message"]


def test_the_screening_subset_takes_every_flipped_image_first_then_the_largest_errors():
    import numpy as np

    from edgetl.quant.mixed import _screening_subset

    fp32 = [np.array([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0]]), np.array([[2.0, 0.0], [2.0, 0.0]])]
    int8 = [np.array([[1.9, 0.0], [0.0, 0.1], [2.0, 0.0]]), np.array([[2.0, 1.5], [5.0, 0.0]])]
    batches = [({"input": np.arange(3.0)[:, None]}, np.zeros(3, int)), ({"input": np.arange(3.0, 5)[:, None]},
                                                                        np.zeros(2, int))]
    subset, info = _screening_subset(batches, int8, fp32, 2)
    # image 1 flips (error 4.01); image 4 has the largest error (9.0) of the rest; image 3 (2.25) is left out
    assert [float(v) for b in subset for v in b[0]["input"][:, 0]] == [1.0, 4.0]
    assert info["flipped_in_val"] == 1 and info["flipped_in_subset"] == 1
    assert info["share_of_logit_error"] == pytest.approx((4.01 + 9.0) / (0.01 + 4.01 + 9.0 + 2.25), abs=1e-4)


def test_the_plan_travels_in_the_model_card(run):
    from edgetl.artifacts import read_model_artifact
    from edgetl.quant import count_quantized_layers

    artifact = read_model_artifact(run / "quantize", "ptq")
    layers = artifact.card.precision_plan.float_layers
    assert [(f.layer, f.kind) for f in layers] == [("classifier", "linear")]
    assert layers[0].reason.startswith("accuracy fallback (step 1 of 1")
    assert count_quantized_layers(artifact.load()) == {"int8": 3, "float": 1}


def test_export_proves_the_plan_per_layer_in_both_runtimes(run):
    parity = json.loads((run / "export" / "parity.json").read_text())
    for name in ("onnx-int8-ptq", "openvino-int8-ptq"):
        plan = parity[name]["precision_plan"]
        assert plan["expected_float"] == ["classifier"] and plan["found_float"] == ["classifier"], plan
        assert plan["ok"] and plan["int8"] == 3
        assert plan["summary"] == "expected in float: classifier; found in float: classifier; all others int8 (3)"
        assert parity[name]["accuracy"] == 1.0  # the float classifier really runs in float (ORT would requantize it)


def test_an_unplanned_float_layer_fails_the_proof(run, tmp_path):
    from edgetl.errors import ExportError
    from edgetl.fsutil import read_json, write_json
    from edgetl.stages.export import export
    from edgetl.targets import load_target

    quant = tmp_path / "quantize"
    shutil.copytree(run / "quantize", quant)
    manifest = read_json(quant / "manifest.json")
    for card in manifest["info"]["models"]:  # the same count of float layers, but the plan names another one
        card["precision_plan"]["float_layers"][0]["layer"] = "blocks.0.0"
    write_json(quant / "manifest.json", manifest)
    with pytest.raises(ExportError, match=r"onnx-int8-ptq: float layers outside the precision plan: expected in "
                                          r"float: blocks\.0\.0; found in float: classifier; .* NOT in the plan: "
                                          r"classifier"):
        export(fast_config(**FALLBACK), load_target(str(run / "board.yaml")), run / "train", quant, tmp_path / "ex")
    assert not (tmp_path / "ex").exists()


def test_a_runtime_without_fp32_cannot_run_a_mixed_plan(run, tmp_path):
    from edgetl.errors import ConfigError
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    with pytest.raises(ConfigError, match="openvino on NPU has no fp32, so it cannot run a mixed int8/float plan"):
        quantize(fast_config(**FALLBACK), load_target("intel-core-ultra"), run / "train", tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_a_target_without_a_budget_is_a_config_error(run, tmp_path):
    from edgetl.errors import ConfigError
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    (tmp_path / "nobudget.yaml").write_text("name: nob\nextends: cpu\nbudgets: {max_accuracy_drop: null}\n")
    with pytest.raises(ConfigError, match="states no budgets.max_accuracy_drop"):
        quantize(fast_config(**FALLBACK), load_target(str(tmp_path / "nobudget.yaml")), run / "train", tmp_path / "q")


@pytest.mark.parametrize(("fallback", "message"), [
    ({"enabled": True}, "validation split has 18 images: too few to rank layers against a 1-point budget"),
    ({"enabled": True, "max_float_layers": 0}, "max_float_layers is 0: the fallback may revert no layer"),
    ({"enabled": True, "max_latency_increase": 0}, "max_latency_increase is 0: a float layer always costs"),
])
def test_cli_bad_input_exits_2_with_one_line(run, tmp_path, fallback, message):
    import yaml

    from edgetl.cli import cli

    shutil.copytree(run / "train", tmp_path / "train")
    config = tmp_path / "fast.yaml"
    config.write_text(yaml.safe_dump({"train": {"backbone": "tiny", "batch_size": 8}, "data": {"num_workers": 0},
                                      "quantize": {"qat": False, "fallback": fallback}}))
    result = CliRunner().invoke(cli, ["quantize", "--out", str(tmp_path), "--config", str(config), "--target", "cpu",
                                      "--calibration-images", "8"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "quantize").exists()
