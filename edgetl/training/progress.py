"""Rich progress bars for training: one line per epoch and per evaluation, with loss, accuracy and ETA."""

from __future__ import annotations

from typing import Any

from edgetl.training.loop import ProgressFn


def stats_text(loss: float | None, acc: float | None) -> str:
    """The figures a bar shows beside its count: only those the step measured (None: not measured)."""
    parts = ([] if loss is None else [f"loss {loss:.3f}"]) + ([] if acc is None else [f"acc {acc:6.2%}"])
    return "  ".join(parts)


class TrainProgress:
    """``with TrainProgress(enabled) as p: fn = p.bar("epoch 1/3", steps)``; ``fn(done, loss, acc)`` per step
    (``None`` for a figure the step does not measure: it is left out, never shown as 0).

    Disabled (on ranks other than 0) it draws nothing and ``bar`` returns ``None``.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def bar(self, description: str, total: int) -> ProgressFn | None:
        if self._progress is None:
            return None
        progress = self._progress
        # nothing until the first step reports: a bar at "loss 0.000 acc 0.00%" would read as a measurement
        task = progress.add_task(description, total=total, stats="")

        def update(done: int, loss: float | None, acc: float | None) -> None:
            progress.update(task, completed=done, stats=stats_text(loss, acc))

        return update
