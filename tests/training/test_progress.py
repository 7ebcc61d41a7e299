"""Progress bars show only the figures a step measured: nothing before the first step, no loss where none is."""

from __future__ import annotations

from edgetl.training.progress import TrainProgress, stats_text


def test_a_bar_shows_only_measured_figures() -> None:
    assert stats_text(None, None) == ""
    assert stats_text(None, 0.5) == "acc 50.00%"
    assert stats_text(0.25, 0.5) == "loss 0.250  acc 50.00%"
    with TrainProgress() as progress:
        update = progress.bar("epoch 1 val", 3)
        assert update is not None
        task = progress._progress.tasks[-1]
        assert task.fields["stats"] == ""  # before the first step: no "loss 0.000 acc 0.00%"
        update(1, None, 0.75)
        assert task.fields["stats"] == "acc 75.00%"
