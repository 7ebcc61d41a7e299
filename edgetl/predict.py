"""``edgetl predict``: load a bundle, verify every file's sha256, and classify images with it.

Every path the bundle manifest names must stay inside the bundle (symbolic links resolved), so a manifest cannot
make ``predict`` load or hash a file from elsewhere. A ``.tar.gz`` bundle is extracted to a temporary directory
that is removed when the bundle is closed (``with open_bundle(p) as b:``), on success and on failure.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgetl.errors import ConfigError, DataError, ModelFileError
from edgetl.fsutil import read_json, sha256_file
from edgetl.stages.bundle import BUNDLE_FORMAT, BUNDLE_MANIFEST


@dataclass
class Prediction:
    image: str  # the input, as printed (an image path, or a text and where it came from)
    top: list[tuple[str, float]]  # (label, probability), best first
    item: Any = None  # the input as the task collected it


class Bundle:
    """A verified bundle; ``predict`` runs its primary model on the host.

    Args:
        root: the bundle directory.
        source: what the user named (the archive for an extracted ``.tar.gz``); messages name it.
    """

    def __init__(self, root: Path, source: str | Path | None = None) -> None:
        self.root = root
        self.source = str(source or root)
        self._finalizer: Any = None
        self.manifest = _verified_manifest(root, self.source)
        self.labels: list[str] = _read_listed_json(root, "labels.json", self.source)
        if not isinstance(self.labels, list) or not all(isinstance(x, str) for x in self.labels):
            raise ModelFileError(f"bundle {self.source}: labels.json is not a list of class names")
        raw_preprocess: dict[str, Any] = _read_listed_json(root, "preprocess.json", self.source)
        from edgetl.tasks import get_task

        self.task = get_task(self.manifest.get("task", "image_classification"))
        # its files (a tokenizer) located in this bundle
        self.preprocess: dict[str, Any] = self.task.located_preprocess(raw_preprocess, root)
        self._session: Any = None
        self.model_entry = self._choose_model()
        self.model_file = root / self.model_entry["path"]
        self.skipped: list[tuple[str, str]] = []  # (input, why) of inputs that could not be read

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the temporary directory of an extracted archive (nothing for a bundle directory)."""
        self._session = None
        if self._finalizer is not None:
            self._finalizer()

    def _choose_model(self) -> dict[str, Any]:
        # the float-input models: predict does the preprocessing itself (the uint8-input variants are for devices)
        models = [f for f in self.manifest["files"] if f.get("format") in ("onnx", "openvino")
                  and not f.get("variant_of")]
        # ONNX Runtime runs anywhere edgetl installs; OpenVINO IR as the alternative
        models.sort(key=lambda f: f.get("format") != "onnx")
        if not models:
            raise ModelFileError(f"bundle {self.source} holds no ONNX or OpenVINO model")
        return dict(models[0])

    def _run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if self._session is None:
            from edgetl.runtimes import open_model

            self._session = open_model(self.model_file, precision=self.model_entry.get("precision", "fp32"))
        logits = np.asarray(self._session.run(batch))
        if logits.ndim != 2 or logits.shape[1] != len(self.labels):
            raise ModelFileError(
                f"bundle {self.source}: the model gives {logits.shape[-1]} outputs per input but labels.json "
                f"lists {len(self.labels)} classes", hint="rebuild the bundle with `edgetl build`")
        return logits

    def collect(self, paths: list[Path], texts: Sequence[str] = ()) -> list[Any]:
        """The inputs given (directories expanded, text files read, ``--text`` strings, by the bundle's task);
        a directory with no inputs is a ``DataError``."""
        found: list[Any] = []
        for p in paths:
            items = self.task.predict_inputs([p])
            if p.is_dir() and not items:
                raise DataError(f"{p} holds no {self.task.sample_noun} (searched recursively)",
                                hint="pass input files or folders of them")
            found.extend(items)
        if texts:
            found.extend(self.task.predict_inputs([], texts))
        return found

    def truth(self, item: Any) -> str | None:
        """The true class of an input, where it says so (its ImageFolder folder, a labelled text file's column)."""
        return self.task.predict_truth(Path(item) if isinstance(item, str) else item, self.labels)

    def predict(self, images: Sequence[Any], top_k: int = 3, batch_size: int = 1) -> Iterator[Prediction]:
        """Top-k classes per input. Batch 1 by default: int8 kernels round differently per batch size, and the
        benchmark states accuracy at batch 1 (the deployed case).

        An input that cannot be read is skipped, as training skips it, and recorded in ``self.skipped``.
        """
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        readable = ((p, s) for p, s in ((p, self._read(p)) for p in images) if s is not None)
        while chunk := [item for _, item in zip(range(batch_size), readable, strict=False)]:
            x = {name: np.stack([s[name] for _, s in chunk]) for name in chunk[0][1]}
            logits = self._run(x)
            z = logits - logits.max(axis=1, keepdims=True)
            probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            for (path, _), p in zip(chunk, probs, strict=True):
                order = np.argsort(-p)[:top_k]
                yield Prediction(str(path), [(self.labels[i], float(p[i])) for i in order], path)

    def _read(self, item: Path) -> dict[str, np.ndarray] | None:
        from pydantic import ValidationError

        try:
            return self.task.read_predict_input(item, self.preprocess)
        except DataError as exc:
            self.skipped.append((str(item), exc.message.split(": ", 1)[-1]))
            return None
        except ValidationError as exc:
            raise ModelFileError(f"bundle {self.source}: preprocess.json is not valid: "
                                 f"{str(exc).splitlines()[0]}") from exc


def _inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` when it stays inside ``root`` once symbolic links are resolved, else None."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or Path(rel).is_absolute() or ".." in pure.parts:
        return None
    path = root / rel
    base = root.resolve()
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return path if resolved == base or base in resolved.parents else None


def _read_listed_json(root: Path, name: str, source: str) -> Any:
    try:
        return read_json(root / name)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"bundle {source}: {name} is unreadable: {exc}") from exc


def _verified_manifest(root: Path, source: str | None = None) -> dict[str, Any]:
    source = source or str(root)
    path = root / BUNDLE_MANIFEST
    if not path.is_file():
        raise ModelFileError(f"{source} is not an edgetl bundle (no {BUNDLE_MANIFEST})",
                             hint="pass OUT/bundle or OUT/bundle.tar.gz from `edgetl build`")
    try:
        manifest = read_json(path)
    except ValueError as exc:
        raise ModelFileError(f"{source}: {BUNDLE_MANIFEST} is corrupt: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ModelFileError(f"{source}: {BUNDLE_MANIFEST} is not an edgetl bundle manifest ({BUNDLE_FORMAT})")
    files = manifest.get("files", [])
    if not isinstance(files, list):
        raise ModelFileError(f"bundle {source} refused: {BUNDLE_MANIFEST} field 'files' must be a list, "
                             f"got {type(files).__name__}", hint="rebuild it with `edgetl build`")
    problems = []
    listed: set[str] = set()
    for i, f in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not isinstance(f.get("sha256"), str):
            problems.append(f"{where} needs a 'path' and a 'sha256' (strings)")
            continue
        file = _inside(root, f["path"])
        if file is None:
            problems.append(f"{where}.path {f['path']!r} points outside the bundle")
        elif not file.is_file():
            problems.append(f"{f['path']} is missing")
        elif sha256_file(file) != f["sha256"]:
            problems.append(f"{f['path']} does not match its sha256 (modified or corrupt)")
        listed.add(f["path"])
    for name in ("labels.json", "preprocess.json"):
        if name not in listed:
            problems.append(f"{name} is not listed")
    if problems:
        raise ModelFileError(f"bundle {source} refused: " + "; ".join(problems),
                             hint="rebuild it with `edgetl build`, or restore the original files")
    return manifest


def open_bundle(path: str | Path) -> Bundle:
    """Open a bundle directory or ``.tar.gz``; an archive is extracted to a temporary directory that
    ``Bundle.close()`` (or leaving ``with open_bundle(...)``) removes, as does any failure to open it."""
    p = Path(path)
    if not (p.is_file() and p.name.endswith((".tar.gz", ".tgz"))):
        if not p.exists():
            raise ModelFileError(f"bundle {p} does not exist")
        if not p.is_dir():
            raise ModelFileError(f"bundle {p} is neither a bundle directory nor a .tar.gz archive",
                                 hint="pass OUT/bundle or OUT/bundle.tar.gz from `edgetl build`")
        return Bundle(p)
    tmp = Path(tempfile.mkdtemp(prefix="edgetl-bundle-"))
    try:
        try:
            with tarfile.open(p, "r:gz") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ModelFileError(f"bundle archive {p} is corrupt or truncated: {exc}") from exc
        entries = sorted(tmp.iterdir())
        if (tmp / BUNDLE_MANIFEST).is_file():
            root = tmp  # the bundle's files at the top of the archive
        elif len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        else:
            names = ", ".join(e.name for e in entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise ModelFileError(f"bundle archive {p} holds {len(entries)} top-level entries ({names or 'none'}); "
                                 "expected one bundle folder", hint="pass OUT/bundle.tar.gz from `edgetl build`")
        bundle = Bundle(root, source=p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle._finalizer = weakref.finalize(bundle, shutil.rmtree, tmp, ignore_errors=True)
    return bundle
