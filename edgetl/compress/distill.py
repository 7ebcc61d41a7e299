"""A distillation teacher from another build: its float model artifact, checked against the student.

Any fine-tuned model of the same task, label set and input size can teach any student (``--teacher RUN_DIR``): a
bigger backbone, or the unpruned model of a pruned one. The teacher sees the student's batches, so where its
normalisation differs (EfficientNet-Lite's mean/std 0.5 against torchvision's ImageNet statistics) the inputs are
converted to the teacher's normalisation in front of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from edgetl.artifacts import ModelArtifact, ModelIO


def teacher_artifact(path: str | Path) -> ModelArtifact:
    """The float model artifact of a run directory (its current one: the latest stage that made one) or of a
    stage directory.

    Raises:
        ConfigError: ``path`` does not exist or holds no float model artifact.
    """
    from edgetl.artifacts import read_model_artifact
    from edgetl.errors import ModelFileError
    from edgetl.pipeline.engine import ordered_stages

    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"teacher {root} is not a directory", hint="pass the run directory of a finished build")
    if (root / "manifest.json").is_file():
        candidates = [root]
    else:  # a run directory: the last float-model stage (prune after train) that finished
        candidates = [root / s.name for s in reversed(ordered_stages())
                      if "float_model" in s.produces and (root / s.name / "manifest.json").is_file()]
    if not candidates:
        raise ConfigError(f"teacher {root} holds no float model (no train/ or prune/ stage with a manifest)",
                          hint="build the teacher first (`edgetl train --out DIR` or `edgetl build`)")
    try:
        return read_model_artifact(candidates[0])
    except ModelFileError as exc:
        raise ConfigError(f"teacher {candidates[0]}: {exc.message}", hint=exc.hint) from exc


def check_teacher(teacher: ModelArtifact, *, task: str, classes: list[str] | tuple[str, ...], io: ModelIO) -> None:
    """Refuse a teacher of another task, label set or input size, naming the difference.

    Raises:
        ConfigError: the first difference found.
    """
    card = teacher.card
    where = f"teacher {teacher.path}"
    if card.task != task:
        raise ConfigError(f"{where} is a {card.task} model; the student is {task}",
                          hint="the teacher must be fine-tuned for the same task")
    if list(card.classes) != list(classes):
        missing = sorted(set(classes) - set(card.classes))
        extra = sorted(set(card.classes) - set(classes))
        detail = "; ".join(part for part in (f"missing {missing}" if missing else "",
                                             f"extra {extra}" if extra else "") if part) or "another order"
        raise ConfigError(f"{where} predicts classes {list(card.classes)}, the student {list(classes)} ({detail})",
                          hint="fine-tune the teacher on the same data set")
    theirs = [(t.name, t.shape) for t in card.io.inputs]
    ours = [(t.name, t.shape) for t in io.inputs]
    if theirs != ours:
        raise ConfigError(f"{where} takes inputs {_shapes(theirs)}, the student {_shapes(ours)}",
                          hint="train the student at the teacher's input size (--image-size) or the teacher at "
                               "the student's")


def _shapes(specs: list[tuple[str, tuple[int | None, ...]]]) -> str:
    return ", ".join(f"{name} {'x'.join('N' if d is None else str(d) for d in shape)}" for name, shape in specs)


def load_teacher(path: str | Path, *, task: str, classes: list[str] | tuple[str, ...], io: ModelIO,
                 preprocess: dict[str, Any]) -> nn.Module:
    """The checked teacher model (eval mode), taking inputs normalised with the student's ``preprocess``."""
    artifact = teacher_artifact(path)
    check_teacher(artifact, task=task, classes=classes, io=io)
    model = artifact.load()
    theirs, ours = artifact.card.preprocess, preprocess
    if "mean" in theirs and "mean" in ours and (theirs["mean"], theirs["std"]) != (ours["mean"], ours["std"]):
        return _renormalised(model, ours, theirs)
    return model


def _renormalised(model: nn.Module, student: dict[str, Any], teacher: dict[str, Any]) -> nn.Module:
    import torch
    from torch import nn

    class Renormalise(nn.Module):
        """x normalised with the student's mean/std -> the same pixels normalised with the teacher's."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner
            view = (1, -1, 1, 1)
            s_mean, s_std = torch.tensor(student["mean"]).view(view), torch.tensor(student["std"]).view(view)
            t_mean, t_std = torch.tensor(teacher["mean"]).view(view), torch.tensor(teacher["std"]).view(view)
            self.register_buffer("scale", s_std / t_std)
            self.register_buffer("shift", (s_mean - t_mean) / t_std)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale, shift = self.get_buffer("scale"), self.get_buffer("shift")
            return self.inner(x * scale + shift)

    return Renormalise(model).eval()
