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
    from edgetl.bench.results import DistillationComparison


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


def describe_teacher(path: str | Path, student_index: Any) -> dict[str, Any]:
    """What the train stage records of its teacher (``manifest.info["teacher"]``) besides the distillation settings:
    the artifact it read, its backbone, size and own figure (from its card), and how many of the student's
    evaluation samples the teacher was trained on (its ``split.json``; None when it has none), since a teacher
    that saw those samples flatters its own figure and passes that on to the student."""
    from edgetl.data import read_split
    from edgetl.errors import DataError

    artifact = teacher_artifact(path)
    card = artifact.card
    trained_on_eval: int | None = None
    if artifact.split_path is not None and artifact.split_path.is_file():
        try:
            theirs = {str(sample[0]) for sample in read_split(artifact.split_path).splits.get("train", [])}
        except DataError:
            theirs = None
        if theirs is not None:
            ours = student_index.splits.get(student_index.eval_split, [])
            trained_on_eval = sum(str(sample[0]) in theirs for sample in ours)
    return {"source": artifact.ref, "backbone": card.backbone, "macs": card.macs, "params": card.params,
            "card_eval_split": card.metrics.get("eval_split"), "card_eval_accuracy": card.metrics.get("eval_accuracy"),
            "trained_on_eval_images": trained_on_eval}


# settings that differ between a distilled student and the same student alone, or that change speed, not results
_NOT_COMPARED = {"teacher", "teacher_temperature", "teacher_alpha", "device", "threads"}


def compare_distillation(run: str | Path) -> DistillationComparison | None:
    """The teacher, the distilled student (``run/train``) and the student alone (``run/student_alone``) on the
    student's evaluation split; None when the run's train stage had no teacher.

    The student alone is left out, with a note, when it is missing or was trained with other settings or another
    split than the distilled student (a later ``edgetl train --teacher`` into the run, say).
    """
    from edgetl.bench.results import ComparedModel, DistillationComparison
    from edgetl.errors import EdgetlError
    from edgetl.manifest import read_manifest

    root = Path(run)
    try:
        distilled = read_manifest(root / "train")
    except EdgetlError:
        return None
    teacher = distilled.info.get("teacher")
    if not isinstance(teacher, dict):
        return None
    split, images = distilled.info.get("eval_split"), distilled.info.get("eval_images")
    notes: list[str] = []
    if teacher.get("eval_accuracy") is None:
        notes.append("the teacher was not scored on the student's split (a train stage of an older edgetl): "
                     "rerun `edgetl build --force train`")
    alone, alone_manifest = None, None
    try:
        alone_manifest = read_manifest(root / "student_alone")
    except EdgetlError:
        notes.append(f"no {root / 'student_alone'}: `edgetl build --teacher` trains the student alone beside the "
                     "distilled one")
    if alone_manifest is not None:
        differ = _differences(distilled, alone_manifest)
        if differ:
            notes.append(f"{root / 'student_alone'} was trained with other settings than {root / 'train'} "
                         f"({', '.join(differ)}), so it is left out: rerun `edgetl build`")
        else:
            alone = _compared(alone_manifest, "student_alone")
    student = _compared(distilled, "train")
    gain = (None if alone is None or alone.accuracy is None or student.accuracy is None
            else round(100 * (student.accuracy - alone.accuracy), 4))
    return DistillationComparison(
        eval_split=str(split), eval_images=int(images or 0), temperature=teacher["temperature"],
        alpha=teacher["alpha"],
        teacher=ComparedModel(source=str(teacher.get("source") or teacher["path"]), backbone=teacher.get("backbone"),
                              path=teacher["path"], accuracy=teacher.get("eval_accuracy"),
                              eval_images=teacher.get("eval_images"), macs=teacher.get("macs"),
                              params=teacher.get("params"), card_eval_split=teacher.get("card_eval_split"),
                              card_accuracy=teacher.get("card_eval_accuracy")),
        distilled=student, student_alone=alone, gain_points=gain,
        teacher_trained_on_eval=teacher.get("trained_on_eval_images"), notes=notes)


def _compared(manifest: Any, stage: str) -> Any:
    from edgetl.bench.results import ComparedModel

    info = manifest.info
    card = (info.get("models") or [{}])[0]
    return ComparedModel(source=f"{stage}:{card.get('name', 'fp32')}", backbone=info.get("backbone"),
                         accuracy=info.get("eval_accuracy"), eval_images=info.get("eval_images"),
                         macs=card.get("macs"), params=card.get("params"), wall_time_s=info.get("wall_time_s"))


def _differences(distilled: Any, alone: Any) -> list[str]:
    """The settings (``train.X``, ``data.X``) and the split on which the two training manifests differ."""
    ours, theirs = distilled.config, alone.config
    differ = [f"train.{k}" for k in sorted(set(ours.get("train", {})) | set(theirs.get("train", {})))
              if k not in _NOT_COMPARED and ours.get("train", {}).get(k) != theirs.get("train", {}).get(k)]
    differ += [f"data.{k}" for k in sorted(set(ours.get("data", {})) | set(theirs.get("data", {})))
               if k != "num_workers" and ours.get("data", {}).get(k) != theirs.get("data", {}).get(k)]
    if distilled.outputs.get("split.json") != alone.outputs.get("split.json"):
        differ.append("split.json")
    return differ
