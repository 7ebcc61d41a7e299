"""The accuracy-aware method on its own: ranking, the fallback loop and its stops, every bad input."""

from __future__ import annotations

import pytest

from edgetl.errors import ConfigError, DataError, EdgetlError
from edgetl.quant.sensitivity import Evaluation, Layer, check_inputs, fallback, rank_layers

LAYERS = [Layer("a", "conv"), Layer("b", "conv"), Layer("c", "conv"), Layer("head", "linear")]
# what reverting each layer wins back (accuracy 0..1) and the logit error it removes
GAIN = {"a": 0.0, "b": 0.04, "c": 0.01, "head": 0.06}
MSE_DROP = {"a": 0.01, "b": 0.3, "c": 0.1, "head": 0.5}


def evaluate(names: frozenset[str]) -> Evaluation:
    """A model whose layers' reverts add up: base 0.85 top-1, logit MSE 1.0."""
    return Evaluation(0.85 + sum(GAIN[n] for n in names), 1.0 - sum(MSE_DROP[n] for n in names))


def test_ranking_puts_the_layer_that_wins_most_first_and_checks_the_proxy():
    sens = rank_layers(LAYERS, evaluate, images=400)
    assert [r.layer for r in sens.rows] == ["head", "b", "c", "a"]
    assert sens.rows[0].accuracy_gain == pytest.approx(6.0)
    assert sens.rows[0].mse_drop == pytest.approx(0.5)
    assert sens.proxy_spearman == pytest.approx(1.0)  # here the MSE drop orders the layers as the accuracy does


def test_ties_in_accuracy_are_broken_by_the_error_drop():
    flat = {"a": 0.0, "b": 0.0, "c": 0.0, "head": 0.0}
    sens = rank_layers(LAYERS, lambda n: Evaluation(0.85 + sum(flat[x] for x in n),
                                                    1.0 - sum(MSE_DROP[x] for x in n)), images=400)
    assert [r.layer for r in sens.rows] == ["head", "b", "c", "a"]
    assert sens.proxy_spearman is None  # no accuracy differences: nothing to correlate with


def test_fallback_reverts_one_layer_at_a_time_until_the_budget_holds():
    sens = rank_layers(LAYERS, evaluate, images=400)
    result = fallback(sens, evaluate, fp32_accuracy=0.95, max_drop_points=1.0, cap=3)
    assert result.status == "budget met"
    assert [s.float_layers for s in result.steps] == [[], ["head"], ["head", "b"]]
    assert [round(s.drop_points, 2) for s in result.steps] == [10.0, 4.0, 0.0]
    assert result.float_layers == ["head", "b"]
    assert "2 layer(s) reverted" in result.message


def test_fallback_stops_at_the_cap_and_says_so():
    sens = rank_layers(LAYERS, evaluate, images=400)
    result = fallback(sens, evaluate, fp32_accuracy=0.95, max_drop_points=1.0, cap=1)
    assert result.status == "cap reached" and len(result.steps) == 2
    assert "after reverting 1 layer(s) (the cap)" in result.message


def test_fallback_reverts_nothing_when_int8_is_within_budget():
    sens = rank_layers([], evaluate, images=400)
    result = fallback(sens, evaluate, fp32_accuracy=0.855, max_drop_points=1.0, cap=5)
    assert result.status == "not needed" and result.float_layers == []
    assert "reverts nothing" in result.message


def test_a_cap_that_allows_nothing_is_a_config_error():
    with pytest.raises(ConfigError, match=r"max_float_layers is 0: the fallback may revert no layer") as info:
        check_inputs(400, 1.0, 0, 0.0, "quantize.fallback")
    assert info.value.exit_code == 2


def test_a_split_too_small_to_rank_on_names_the_count():
    with pytest.raises(DataError, match=r"has 60 images: too few .* 1-point budget .* needs at least 100") as info:
        check_inputs(60, 1.0, 5, 0.0, "quantize.fallback")
    assert info.value.exit_code == 2


def test_a_zero_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="max_accuracy_drop is 0"):
        check_inputs(400, 0.0, 5, 0.0, "quantize.fallback")


def test_fp32_not_meeting_itself_is_an_evaluation_error_not_a_quantization_one():
    with pytest.raises(EdgetlError, match=r"scores \+0.50 points against itself .* evaluation error") as info:
        check_inputs(400, 1.0, 5, 0.5, "quantize.fallback")
    assert info.value.exit_code == 3


# ---------------------------------------------------------------------------------------------- screened ranking
class Counting:
    """``evaluate`` that counts its calls (the cost of a ranking, in validation passes)."""

    def __init__(self, mse: dict[str, float]) -> None:
        self.calls = 0
        self.mse = mse

    def __call__(self, names: frozenset[str]) -> Evaluation:
        self.calls += 1
        return Evaluation(0.85 + sum(GAIN[n] for n in names), 1.0 - sum(self.mse[n] for n in names))


def test_screening_confirms_only_the_best_by_proxy_on_the_whole_split():
    full, screen = Counting(MSE_DROP), Counting({"a": 0.02, "b": 0.2, "c": 0.01, "head": 0.4})
    sens = rank_layers(LAYERS, full, images=400, screen=screen, screen_images=64, confirm=2)
    assert full.calls == 1 + 2 and screen.calls == 1 + len(LAYERS)  # base + the 2 confirmed; base + every layer
    assert (sens.full_passes, sens.screen_passes, sens.method, sens.screen_images) == (3, 5, "screened", 64)
    assert [r.layer for r in sens.rows] == ["head", "b", "a", "c"]  # confirmed by gain, then the rest by proxy
    assert sens.rows[0].accuracy_gain == pytest.approx(6.0) and sens.rows[0].screen_mse_drop == pytest.approx(0.4)
    assert sens.rows[2].accuracy_gain is None and sens.rows[2].screen_mse_drop == pytest.approx(0.02)


def test_confirmation_reorders_what_the_proxy_misordered():
    # the proxy ranks c first, but b wins more accuracy: confirmation puts b first and the loop reverts it first
    screen = Counting({"a": 0.0, "b": 0.1, "c": 0.3, "head": 0.05})
    sens = rank_layers(LAYERS, evaluate, images=400, screen=screen, screen_images=64, confirm=2)
    assert [r.layer for r in sens.rows[:2]] == ["b", "c"]
    result = fallback(sens, evaluate, fp32_accuracy=0.90, max_drop_points=1.0, cap=3)
    assert result.float_layers == ["b"] and result.status == "budget met"


# ---------------------------------------------------------------------------------------------- the latency cap
def latency_of(cost: dict[str, float]):  # type: ignore[no-untyped-def]
    def measure(names: frozenset[str]) -> dict[str, float]:
        return {"vs_int8": 1.0 + sum(cost[n] for n in names), "vs_fp32": 0.5}
    return measure


def test_each_step_carries_its_measured_latency():
    sens = rank_layers(LAYERS, evaluate, images=400)
    result = fallback(sens, evaluate, fp32_accuracy=0.95, max_drop_points=1.0, cap=3,
                      latency=latency_of({"a": 0.0, "b": 0.05, "c": 0.0, "head": 0.02}))
    assert [s.latency["vs_int8"] for s in result.steps] == pytest.approx([1.0, 1.02, 1.07])
    assert result.status == "budget met"


def test_the_latency_cap_stops_before_a_step_that_costs_too_much():
    sens = rank_layers(LAYERS, evaluate, images=400)
    result = fallback(sens, evaluate, fp32_accuracy=0.95, max_drop_points=1.0, cap=3,
                      latency=latency_of({"a": 0.0, "b": 0.30, "c": 0.0, "head": 0.02}), max_latency_increase=0.2)
    assert result.status == "latency cap reached"
    assert [len(s.float_layers) for s in result.steps] == [0, 1, 2]
    assert result.steps[-1].latency["over_cap"] and not result.steps[-1].within_budget  # head+b meets accuracy
    assert "costs 32 % latency over all-int8, more than the 20 % cap" in result.message
    assert result.as_dict()["max_latency_increase"] == 0.2


def test_a_latency_cap_of_zero_lets_nothing_revert_and_is_a_config_error():
    with pytest.raises(ConfigError, match=r"max_latency_increase is 0: a float layer always costs") as info:
        check_inputs(400, 1.0, 5, 0.0, "quantize.fallback", max_latency_increase=0.0)
    assert info.value.exit_code == 2


def test_no_latency_is_measured_and_nothing_ranked_when_int8_is_within_budget():
    calls = []
    result = fallback(rank_layers([], evaluate, images=400), evaluate, fp32_accuracy=0.855, max_drop_points=1.0,
                      cap=5, latency=lambda n: calls.append(n) or {})
    assert result.status == "not needed" and calls == [] and result.steps[0].latency == {}
