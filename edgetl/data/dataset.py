"""Find a data set, check every image once, split it deterministically, and record the split.

An ImageFolder root holds ``train/CLASS/*`` plus ``val/`` and optionally ``test/``. With only ``train/``, a seeded,
stratified split into train, val (what selection uses) and a held-out test (what the reported figures use;
``DataConfig.held_out_test_ratio``) is made and recorded in ``split.json`` so every later stage evaluates on exactly
the same images. A user's own ``val/`` is never carved up: without ``test/`` the figures are then on val.

Byte-identical files are found while the images are checked: the same image under two classes (one label is
wrong) and the same image in train and an evaluation split (the evaluation is inflated) are warned about by name.
A split edgetl makes itself never holds such a leak: held-out copies of training images go back to train.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from edgetl.config import DataConfig
from edgetl.errors import DataError
from edgetl.fsutil import read_json, sha256_file, sha256_json, write_json

log = logging.getLogger("edgetl.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif")
SPLITS = ("train", "val", "test")
SPLIT_FORMAT = 1

Sample = tuple[str, int]  # (reference: an image path or "digits:<index>", class index)


class SplitViews:
    """What every data set index (images, text) derives from its ``splits`` and ``classes`` fields."""

    if TYPE_CHECKING:  # the fields themselves are each index model's own
        classes: list[str]
        splits: dict[str, list[Any]]

    @property
    def eval_split(self) -> str:
        return "test" if self.splits.get("test") else "val"

    def class_counts(self, split: str) -> dict[str, int]:
        counts = Counter(label for _, label in self.splits.get(split, []))
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def imbalance_ratio(self, split: str = "train") -> float:
        """Largest class over smallest class (1.0 = balanced)."""
        counts = [c for c in self.class_counts(split).values() if c > 0]
        return max(counts) / min(counts) if counts else 1.0


class DatasetIndex(SplitViews, BaseModel):
    """Every image of a data set, by split, with the class names; what ``split.json`` holds."""

    model_config = ConfigDict(extra="forbid")

    format: int = SPLIT_FORMAT
    source: str  # the root path, or the built-in name
    classes: list[str]
    splits: dict[str, list[Sample]]
    split_made: bool = False  # True when edgetl made val/test from train
    split_seed: int | None = None
    skipped: list[str] = Field(default_factory=list)  # unreadable files left out
    duplicates: list[list[str]] = Field(default_factory=list)  # groups of byte-identical files, any class or split
    fingerprint: str = ""  # hash of the file list (+ sizes, mtimes): changes when the data changes

    def summary(self) -> str:
        parts = [f"{split} {len(samples)}" for split, samples in self.splits.items()]
        extra = [f"{len(self.skipped)} unreadable skipped"] if self.skipped else []
        extra += [f"{len(self.duplicates)} groups of identical files"] if self.duplicates else []
        return f"{self.source}: {len(self.classes)} classes, " + ", ".join(parts + extra)


def write_split(index: DatasetIndex, path: str | Path) -> Path:
    return write_json(path, index.model_dump(mode="json"))


def read_split(path: str | Path) -> DatasetIndex:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"split record {p} does not exist", hint="run `edgetl train` first")
    try:
        return DatasetIndex.model_validate(read_json(p))
    except Exception as exc:
        raise DataError(f"split record {p} is corrupt: {exc}", hint="rerun `edgetl train`") from exc


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _walk_images(class_dir: Path, root: Path, outside: list[str]) -> list[Path]:
    """The image files under ``class_dir``, following symbolic links to folders.

    A link to a folder that holds the link (a loop, or ``train/self -> .`` filing every image under a class
    "self") is a ``DataError``. Links that lead out of the data root ``root`` are followed and listed in
    ``outside`` (warned about once by the caller).
    """
    import os

    real_root = root.resolve()
    found: list[Path] = []
    visited: set[Path] = set()

    def walk(folder: Path, real: Path) -> None:
        visited.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"cannot list {folder}: {exc.strerror or exc}") from exc
        for entry in entries:
            path = folder / entry.name
            if entry.is_dir(follow_symlinks=True):
                target = path.resolve()
                if entry.is_symlink() and (_inside(real, target) or target in visited):
                    raise DataError(
                        f"{path} is a symbolic link to {target}, a folder that holds it: a loop that would list "
                        "the same images again", hint="remove the link, or replace it by the folder it should be")
                if entry.is_symlink() and not _inside(target, real_root):
                    outside.append(f"{path} -> {target}")
                walk(path, target)
            elif _is_image(path):
                if entry.is_symlink() and not _inside(path.resolve(), real_root):
                    outside.append(f"{path} -> {path.resolve()}")
                found.append(path)

    real_class = class_dir.resolve()
    if class_dir.is_symlink() and _inside(class_dir.parent.resolve(), real_class):
        raise DataError(
            f"class folder {class_dir} is a symbolic link to {real_class}, a folder that holds it: every image "
            f"below it would be filed under a class {class_dir.name!r}",
            hint="remove the link, or replace it by a folder of that class's images")
    if class_dir.is_symlink() and not _inside(real_class, real_root):
        outside.append(f"{class_dir} -> {real_class}")
    walk(class_dir, real_class)
    return found


def _scan_split(split_dir: Path, class_to_idx: dict[str, int], split: str, root: Path | None = None,
                outside: list[str] | None = None) -> list[Sample]:
    samples: list[Sample] = []
    for class_dir in _class_dirs(split_dir):
        if class_dir.name not in class_to_idx:
            raise DataError(
                f"{class_dir}: class {class_dir.name!r} is in {split}/ but not in train/",
                hint="every evaluation class needs training images; add them to train/ or remove the folder",
            )
        files = _walk_images(class_dir, root or split_dir.parent, outside if outside is not None else [])
        samples.extend((str(p.resolve()), class_to_idx[class_dir.name]) for p in files)
    return samples


def _same_file_twice(raw: dict[str, list[Sample]], classes: list[str]) -> dict[str, list[Sample]]:
    """One entry per file: a file reached twice (through symbolic links) in one class of one split counts once;
    under two classes it is a ``DataError``; in two splits it is warned about (an inflated evaluation)."""
    seen: dict[str, tuple[str, int]] = {}
    in_two_splits: list[str] = []
    out: dict[str, list[Sample]] = {}
    for split, samples in raw.items():
        kept: list[Sample] = []
        for ref, label in samples:
            if ref in seen:
                other_split, other_label = seen[ref]
                if other_label != label:
                    raise DataError(
                        f"{ref} is listed under two classes ({classes[other_label]!r} in {other_split}/, "
                        f"{classes[label]!r} in {split}/) through a symbolic link; at most one label is right",
                        hint="remove the link that files it under the wrong class")
                if other_split != split:
                    in_two_splits.append(ref)
                    kept.append((ref, label))
                continue
            seen[ref] = (split, label)
            kept.append((ref, label))
        out[split] = kept
    if in_two_splits:
        log.warning("%d image(s) are in two splits (the same file, through a symbolic link): an evaluation on "
                    "images the model trained on is inflated:\n  %s", len(in_two_splits),
                    "\n  ".join(in_two_splits[:10]))
    return out


def _check_readable(samples: list[Sample], strict: bool, digests: dict[str, str]) -> tuple[list[Sample], list[str]]:
    """Fully decode each image once; unreadable ones are skipped with one warning (or an error if strict).

    The sha256 of each readable file's bytes goes into ``digests`` (path -> hex digest).
    """
    from rich.progress import Progress

    from edgetl.data.preprocess import ImageTooLargeError, load_image

    good: list[Sample] = []
    bad: list[str] = []
    reasons: list[str] = []
    too_large = 0
    with Progress(transient=True) as progress:
        task = progress.add_task("checking images", total=len(samples))
        for ref, label in samples:
            try:
                load_image(ref)
                digests[ref] = sha256_file(ref)
                good.append((ref, label))
            except DataError as exc:
                bad.append(ref)
                reasons.append(exc.message.split(f"{ref}: ", 1)[-1])
                too_large += isinstance(exc, ImageTooLargeError)
            progress.advance(task)
    if bad:
        shown = [f"{ref}: {why}" for ref, why in zip(bad, reasons, strict=True)]
        listing = "\n  ".join(shown[:20]) + (f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else "")
        what = " and ".join(
            ([f"{len(bad) - too_large} unreadable or truncated image(s)"] if len(bad) > too_large else [])
            + ([f"{too_large} image(s) too large to decode"] if too_large else []))
        if strict:
            raise DataError(
                f"{what}:\n  {listing}",
                hint="remove or replace them, or drop --strict to skip them with a warning",
            )
        log.warning("skipping %s:\n  %s", what, listing)
    return good, bad


def stratified_split(samples: list[Sample], ratio: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off ``ratio`` of each class (at least one image of every class that has two or more), seeded."""
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    keep: list[Sample] = []
    held: list[Sample] = []
    for label in sorted(by_class):
        items = sorted(by_class[label])
        random.Random(f"{seed}-{label}").shuffle(items)
        n_held = min(len(items) - 1, max(1, round(len(items) * ratio))) if len(items) > 1 else 0
        held.extend(items[:n_held])
        keep.extend(items[n_held:])
    return sorted(keep), sorted(held)


def _listing(groups: list[list[str]], limit: int = 10) -> str:
    lines = [" = ".join(g) for g in groups[:limit]]
    if len(groups) > limit:
        lines.append(f"... and {len(groups) - limit} more (all in split.json, 'duplicates')")
    return "\n  ".join(lines)


def find_duplicates(splits: dict[str, list[Sample]], digests: dict[str, str]) -> list[list[str]]:
    """Groups (two or more paths, sorted) of byte-identical files across all splits and classes."""
    groups: dict[str, list[str]] = {}
    for samples in splits.values():
        for ref, _ in samples:
            groups.setdefault(digests[ref], []).append(ref)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def _return_leaks_to_train(splits: dict[str, list[Sample]], digests: dict[str, str]) -> int:
    """Move held-out copies of training images (same bytes) back to train; returns how many moved."""
    in_train = {digests[ref] for ref, _ in splits["train"]}
    moved = 0
    for split in ("val", "test"):
        kept: list[Sample] = []
        leaked: list[Sample] = []
        for sample in splits.get(split, []):
            (leaked if digests[sample[0]] in in_train else kept).append(sample)
        if leaked:
            splits[split] = kept
            splits["train"] = sorted(splits["train"] + leaked)
            moved += len(leaked)
    return moved


def _warn_duplicates(duplicates: list[list[str]], splits: dict[str, list[Sample]]) -> None:
    where = {ref: (split, label) for split, samples in splits.items() for ref, label in samples}
    conflicts = [g for g in duplicates if len({where[r][1] for r in g}) > 1]
    leaks = [g for g in duplicates if len({where[r][0] for r in g}) > 1]
    if conflicts:
        log.warning("%d image(s) are filed under two or more classes (byte-identical files); at most one label is "
                    "right, so fix or remove the others:\n  %s", len(conflicts), _listing(conflicts))
    if leaks:
        log.warning("%d image(s) are in two splits (byte-identical files): an evaluation on images the model "
                    "trained on is inflated; remove one copy:\n  %s", len(leaks), _listing(leaks))


def _fingerprint(samples_by_split: dict[str, list[Sample]]) -> str:
    rows = []
    for split, samples in sorted(samples_by_split.items()):
        for ref, label in samples:
            st = Path(ref).stat() if not ref.startswith("digits:") else None
            rows.append((split, ref, label, st.st_size if st else 0, st.st_mtime_ns if st else 0))
    return sha256_json(rows)


def _resolve_folder(cfg: DataConfig) -> DatasetIndex:
    root = _data_root(cfg.path)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(
            f"no train/ folder in {root}",
            hint=f"expected {root}/train/CLASS_NAME/*.jpg (plus optional val/ and test/)",
        )
    class_dirs = _class_dirs(train_dir)
    if not class_dirs:
        raise DataError(f"{train_dir} has no class folders", hint="expected train/CLASS_NAME/*.jpg")
    classes = [d.name for d in class_dirs]
    class_to_idx = {name: i for i, name in enumerate(classes)}
    outside: list[str] = []
    raw = {split: _scan_split(root / split, class_to_idx, split, root, outside)
           for split in SPLITS if (root / split).is_dir()}
    if outside:
        log.warning("%d symbolic link(s) lead out of the data root %s; their images are used as found:\n  %s",
                    len(outside), root, "\n  ".join(outside[:10]))
    raw = _same_file_twice(raw, classes)
    counts = Counter(label for _, label in raw["train"])
    empty = [classes[i] for i in range(len(classes)) if counts.get(i, 0) == 0]
    if empty:
        raise DataError(
            f"class folder(s) with no images in {train_dir}: {', '.join(empty)}",
            hint=f"add images (extensions: {', '.join(IMAGE_EXTENSIONS)}) or remove the empty folder",
        )
    if len(classes) < 2:
        raise DataError(f"{train_dir} has only one class ({classes[0]}); a classifier needs at least two")

    skipped: list[str] = []
    splits: dict[str, list[Sample]] = {}
    digests: dict[str, str] = {}
    for split, samples in raw.items():
        splits[split], bad = _check_readable(samples, cfg.strict, digests)
        skipped.extend(bad)
    counts = Counter(label for _, label in splits["train"])
    emptied = [classes[i] for i in range(len(classes)) if counts.get(i, 0) == 0]
    if emptied:
        raise DataError(f"every image of class(es) {', '.join(emptied)} in {train_dir} is unreadable")

    made = False
    val_made = not splits.get("val")
    if val_made:
        splits["train"], splits["val"] = stratified_split(splits["train"], cfg.val_ratio, cfg.split_seed)
        made = True
    test_ratio = cfg.held_out_test_ratio(val_made)
    if "test" not in splits and test_ratio > 0:
        splits["train"], splits["test"] = stratified_split(splits["train"], test_ratio, cfg.split_seed + 1)
        made = True
    if made and (moved := _return_leaks_to_train(splits, digests)):
        log.info("kept %d held-out copies of training images in train, so the evaluation split has no leak", moved)
    duplicates = find_duplicates(splits, digests)
    _warn_duplicates(duplicates, splits)
    return DatasetIndex(
        source=str(root.resolve()),
        classes=classes,
        splits=splits,
        split_made=made,
        split_seed=cfg.split_seed if made else None,
        skipped=skipped,
        duplicates=duplicates,
        fingerprint=_fingerprint(splits),
    )


def resolve_dataset(cfg: DataConfig) -> DatasetIndex:
    """Index the data set ``cfg.path`` names (a built-in name or an ImageFolder root), split and checked."""
    from edgetl.data.builtin import BUILTIN_DATASETS

    if cfg.path in BUILTIN_DATASETS:
        index = BUILTIN_DATASETS.get(cfg.path)(cfg)
    else:
        index = _resolve_folder(cfg)
    log.info("%s", index.summary())
    ratio = index.imbalance_ratio("train")
    if ratio >= 3:
        log.warning("imbalanced classes (largest/smallest = %.1f): %s", ratio, index.class_counts("train"))
    return index


def _data_root(path: str) -> Path:
    root = Path(path).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"data set {root} is a file, not a folder",
                        hint="pass an ImageFolder root (a folder holding train/CLASS/*.jpg) or 'digits'")
    if not root.is_dir():
        raise DataError(f"data set {root} does not exist", hint="pass an ImageFolder root (train/CLASS/*.jpg) or 'digits'")
    return root


def dataset_fingerprint(path: str) -> str:
    """Cheap fingerprint of a data set for build caching (no decoding): the split and class folders, and the
    names, sizes and mtimes of the image files edgetl reads. Other files (``.DS_Store``, notes) do not count."""
    from edgetl.data.builtin import BUILTIN_DATASETS

    if path in BUILTIN_DATASETS:
        import sklearn

        return sha256_json(["builtin", path, sklearn.__version__])
    root = _data_root(path)
    rows: list[tuple[str, int, int]] = []
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        for class_dir in _class_dirs(root / split):
            rows.append((f"{split}/{class_dir.name}/", 0, 0))
            for p in _walk_images(class_dir, root, []):
                st = p.stat()
                rows.append((str(p.relative_to(root)), st.st_size, st.st_mtime_ns))
    return sha256_json([str(root.resolve()), rows])
