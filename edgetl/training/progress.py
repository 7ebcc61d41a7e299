"""Rich progress bars for training: one line per epoch and per evaluation, with loss, accuracy and ETA."""

from __future__ import annotations

from typing import Any

from edgetl.training.loop import ProgressFn


class TrainProgress:
    """``with TrainProgress(enabled) as p: fn = p.bar("epoch 1/3", steps)``; ``fn(done, loss, acc)`` per step.

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
                TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:6.2%}"),
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
        task = progress.add_task(description, total=total, loss=0.0, acc=0.0)

        def update(done: int, loss: float, acc: float) -> None:
            progress.update(task, completed=done, loss=loss, acc=acc)

        return update
