"""The accuracy fallback in the report: the step curve (accuracy against latency per step) and the ranking."""

from __future__ import annotations

import base64

from edgetl.report.render import accuracy_fallback_tables, plot_sensitivity, plot_step_curve


def _lat(vs_int8: float, vs_fp32: float) -> dict[str, object]:
    return {"runtime": "onnxruntime", "device": "cpu", "threads": 1, "rounds": 5, "p50_ms": 1.0,
            "vs_int8": vs_int8, "vs_int8_range": [vs_int8 - 0.01, vs_int8 + 0.01],
            "vs_fp32": vs_fp32, "vs_fp32_range": [vs_fp32 - 0.02, vs_fp32 + 0.02]}


REPORT = {
    "message": "2 layer(s) reverted to float: int8 drop 0.80 points, within the 1-point budget",
    "fp32_accuracy": 0.93, "max_drop_points": 1.0,
    "steps": [
        {"float_layers": [], "accuracy": 0.85, "drop_points": 8.0, "within_budget": False, "latency": _lat(1.0, 0.6)},
        {"float_layers": ["conv_stem"], "accuracy": 0.90, "drop_points": 3.0, "within_budget": False,
         "latency": _lat(1.04, 0.62)},
        {"float_layers": ["conv_stem", "classifier"], "accuracy": 0.922, "drop_points": 0.8, "within_budget": True,
         "latency": _lat(1.05, 0.63)},
    ],
    "sensitivity": {"method": "screened", "images": 359, "screen_images": 64, "proxy_spearman": 0.8, "layers": [
        {"layer": "conv_stem", "kind": "conv", "accuracy_gain": 5.0, "mse_drop": 0.4, "screen_mse_drop": 0.9},
        {"layer": "blocks.0.0.conv_dw", "kind": "conv", "accuracy_gain": None, "mse_drop": None,
         "screen_mse_drop": 0.01}]},
}


def test_the_step_table_carries_each_steps_latency_beside_its_accuracy():
    steps, ranking = accuracy_fallback_tables({"ptq": REPORT})
    md = steps.markdown()
    assert "p50 vs all-int8 (onnxruntime, 1 thread(s), batch 1, median of 5 interleaved rounds [range])" in md
    assert "| 2 | conv_stem, classifier | 92.20% (95% CI 89.0-94.5) | 0.80 | yes | 1.05 [1.04-1.06] | 0.63 [0.61-0.65] |" in md
    assert "screened on 64 val images, the best confirmed on all 359" in ranking.title
    assert "| blocks.0.0.conv_dw | conv | - | - | 0.01 |" in ranking.markdown()  # screened out: no accuracy


def test_the_step_curve_is_drawn_once_steps_were_timed():
    png = plot_step_curve({"ptq": REPORT})
    assert png is not None and base64.b64decode(png).startswith(b"\x89PNG")
    assert plot_sensitivity({"ptq": REPORT}) is not None  # the confirmed layers only


def test_nothing_reverted_draws_no_curve_and_says_so():
    quiet = {"message": "int8 is within the 1-point budget (+0.00 points): the fallback reverts nothing",
             "fp32_accuracy": 0.95, "max_drop_points": 1.0, "sensitivity": {"method": "not run", "layers": []},
             "steps": [{"float_layers": [], "accuracy": 0.95, "drop_points": 0.0, "within_budget": True,
                        "latency": {}}]}
    assert plot_step_curve({"ptq": quiet}) is None and plot_sensitivity({"ptq": quiet}) is None
    tables = accuracy_fallback_tables({"ptq": quiet})
    assert len(tables) == 1 and "the fallback reverts nothing" in tables[0].title
    assert "| 0 | none (all int8) | 95.00% | 0.00 | yes | - | - |" in tables[0].markdown()
