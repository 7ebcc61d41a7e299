"""Accuracy figures from the logits: one-vs-rest ROC AUC and average precision per class, and the calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.bench.measure import ECE_BINS, accuracy_metrics, reliability, softmax


def test_one_vs_rest_figures_are_scikit_learns() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    logits = rng.standard_normal((200, 4)) + 2.0 * np.eye(4)[labels]  # informative, not perfect
    m = accuracy_metrics(labels, logits.argmax(1), ["a", "b", "c", "d"], logits=logits)
    probs = softmax(logits)
    assert m.roc_auc == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"), abs=1e-6)
    assert 0.7 < m.roc_auc < 1.0  # type: ignore[operator]
    for c, name in enumerate("abcd"):
        assert m.per_class[name].roc_auc == pytest.approx(roc_auc_score(labels == c, probs[:, c]), abs=1e-4)
        assert m.per_class[name].average_precision == pytest.approx(
            average_precision_score(labels == c, probs[:, c]), abs=1e-4)
    assert m.average_precision == pytest.approx(np.mean([m.per_class[n].average_precision for n in "abcd"]),
                                                abs=1e-4)


def test_a_class_without_images_has_no_auc_and_does_not_enter_the_mean() -> None:
    labels = np.array([0, 0, 1, 1])
    logits = np.array([[3.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.5, 0.0]])
    m = accuracy_metrics(labels, logits.argmax(1), ["a", "b", "c"], logits=logits)
    assert m.per_class["c"].roc_auc is None and m.per_class["c"].average_precision is None
    assert m.roc_auc == pytest.approx(np.mean([m.per_class["a"].roc_auc, m.per_class["b"].roc_auc]), abs=1e-6)
    assert accuracy_metrics(labels, logits.argmax(1), ["a", "b", "c"]).roc_auc is None  # no logits: no figure


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy() -> None:
    # 10 samples at top-1 probability 0.9 of which 5 are right: ECE 0.4; perfectly calibrated halves: 0
    p = np.log(np.array([[0.9, 0.1]] * 10))
    labels = np.array([0] * 5 + [1] * 5)
    assert accuracy_metrics(labels, np.zeros(10, int), ["a", "b"], logits=p).ece == pytest.approx(0.4, abs=1e-6)
    rel = reliability(labels, softmax(p))
    assert len(rel.count) == ECE_BINS and rel.count.sum() == 10 and rel.count[13] == 10  # 0.9 in (0.867, 0.933]
    sure = np.log(np.array([[1.0 - 1e-12, 1e-12]] * 4))
    assert reliability(np.zeros(4, int), softmax(sure)).count[-1] == 4  # confidence 1.0 is in the last bin
    calibrated = np.log(np.array([[0.5, 0.5]] * 4))
    assert reliability(np.array([0, 1, 0, 1]), softmax(calibrated)).ece == pytest.approx(0.0, abs=1e-9)


def test_softmax_survives_large_logits() -> None:
    probs = softmax(np.array([[1000.0, 0.0], [-1000.0, 1000.0]]))
    assert np.isfinite(probs).all() and probs[0, 0] == 1.0 and probs[1, 1] == 1.0
