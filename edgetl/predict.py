"""``edgetl predict``: load a bundle, verify every file's sha256, and classify images with it."""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError
from edgetl.fsutil import read_json, sha256_file
from edgetl.stages.bundle import BUNDLE_FORMAT, BUNDLE_MANIFEST


@dataclass
class Prediction:
    image: str  # the input, as printed (an image path, or a text and where it came from)
    top: list[tuple[str, float]]  # (label, probability), best first
    item: Any = None  # the input as the task collected it


class Bundle:
    """A verified bundle; ``predict`` runs its primary model on the host."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest = _verified_manifest(root)
        self.labels: list[str] = read_json(root / "labels.json")
        from edgetl.tasks import get_task

        self.task = get_task(self.manifest.get("task", "image_classification"))
        # its files (a tokenizer) located in this bundle
        self.preprocess: dict[str, Any] = self.task.located_preprocess(read_json(root / "preprocess.json"), root)
        self._session: Any = None
        self.model_entry = self._choose_model()
        self.model_file = root / self.model_entry["path"]

    def _choose_model(self) -> dict[str, Any]:
        models = [f for f in self.manifest["files"] if f["format"] in ("onnx", "openvino")]
        # ONNX Runtime runs anywhere edgetl installs; OpenVINO IR as the alternative
        models.sort(key=lambda f: f["format"] != "onnx")
        if not models:
            raise ModelFileError(f"bundle {self.root} holds no ONNX or OpenVINO model")
        return dict(models[0])

    def _run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if self._session is None:
            from edgetl.runtimes import open_model

            self._session = open_model(self.model_file, precision=self.model_entry["precision"])
        return np.asarray(self._session.run(batch))

    def collect(self, paths: list[Path], texts: Sequence[str] = ()) -> list[Any]:
        """The inputs given (directories expanded, text files read, by the bundle's task)."""
        return self.task.predict_inputs(paths, texts)

    def truth(self, item: Any) -> str | None:
        """The true class of an input, where it says so (its ImageFolder folder, a labelled text file's column)."""
        return self.task.predict_truth(Path(item) if isinstance(item, str) else item, self.labels)

    def predict(self, images: Sequence[Any], top_k: int = 3, batch_size: int = 1) -> Iterator[Prediction]:
        """Top-k classes per input. Batch 1 by default: int8 kernels round differently per batch size, and the
        benchmark states accuracy at batch 1 (the deployed case)."""
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            samples = [self.task.read_predict_input(p, self.preprocess) for p in chunk]
            x = {name: np.stack([s[name] for s in samples]) for name in samples[0]}
            logits = self._run(x)
            z = logits - logits.max(axis=1, keepdims=True)
            probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            for path, p in zip(chunk, probs, strict=True):
                order = np.argsort(-p)[:top_k]
                yield Prediction(str(path), [(self.labels[i], float(p[i])) for i in order], path)


def _verified_manifest(root: Path) -> dict[str, Any]:
    path = root / BUNDLE_MANIFEST
    if not path.is_file():
        raise ModelFileError(f"{root} is not an edgetl bundle (no {BUNDLE_MANIFEST})",
                             hint="pass OUT/bundle or OUT/bundle.tar.gz from `edgetl build`")
    try:
        manifest = read_json(path)
    except ValueError as exc:
        raise ModelFileError(f"{path} is corrupt: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ModelFileError(f"{path} is not an edgetl bundle manifest ({BUNDLE_FORMAT})")
    problems = []
    for f in manifest.get("files", []):
        file = root / f["path"]
        if not file.is_file():
            problems.append(f"{f['path']} is missing")
        elif sha256_file(file) != f["sha256"]:
            problems.append(f"{f['path']} does not match its sha256 (modified or corrupt)")
    for name in ("labels.json", "preprocess.json"):
        if name not in {f["path"] for f in manifest.get("files", [])}:
            problems.append(f"{name} is not listed")
    if problems:
        raise ModelFileError(f"bundle {root} refused: " + "; ".join(problems),
                             hint="rebuild it with `edgetl build`, or restore the original files")
    return manifest


def open_bundle(path: str | Path) -> Bundle:
    """Open a bundle directory or ``.tar.gz`` (extracted to a temporary directory)."""
    p = Path(path)
    if p.is_file() and p.name.endswith((".tar.gz", ".tgz")):
        tmp = Path(tempfile.mkdtemp(prefix="edgetl-bundle-"))
        try:
            with tarfile.open(p, "r:gz") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ModelFileError(f"bundle archive {p} is corrupt or truncated: {exc}") from exc
        inner = [d for d in tmp.iterdir() if d.is_dir()]
        p = inner[0] if len(inner) == 1 else tmp
    if not p.exists():
        raise ModelFileError(f"bundle {p} does not exist")
    return Bundle(p)
