"""A folder of unlabelled images from the deployment domain (``data.adapt``): found, checked and kept apart.

Every image file under the folder counts (any depth, any folder names: there are no labels). Unreadable files are
skipped with one warning, or are an error with ``data.strict``. An image that is byte-identical to one of the
evaluation images is an error: adaptation images are never evaluated on, or the figure would be transductive.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.data.dataset import Sample, _check_readable, _is_image
from edgetl.errors import DataError
from edgetl.fsutil import sha256_file

log = logging.getLogger("edgetl.data")


@dataclass(frozen=True)
class UnlabelledImages:
    folder: str
    refs: list[str]  # image paths, sorted (a seeded sample of them when capped)
    digests: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the file's bytes
    skipped: list[str] = field(default_factory=list)
    found: int = 0  # readable images in the folder, before any cap

    def samples(self) -> list[Sample]:
        """As (path, -1) samples: what the tasks' eval batches take; -1 marks "no label"."""
        return [(ref, -1) for ref in self.refs]


def scan_unlabelled(folder: str | Path, *, strict: bool = False, limit: int | None = None,
                    seed: int = 0) -> UnlabelledImages:
    """The readable images under ``folder`` (a seeded sample of ``limit`` of them when there are more).

    Raises:
        DataError: ``folder`` is missing, not a directory, or holds no readable image (or, with ``strict``,
            an unreadable one).
    """
    root = Path(folder)
    if not root.exists():
        raise DataError(f"adaptation folder {root} does not exist",
                        hint="point data.adapt (--adapt-data) at a folder of unlabelled deployment images")
    if not root.is_dir():
        raise DataError(f"adaptation folder {root} is a file, not a folder",
                        hint="point data.adapt (--adapt-data) at the folder that holds the images")
    files = sorted(str(p) for p in root.rglob("*") if _is_image(p))
    if not files:
        raise DataError(f"adaptation folder {root} holds no image files",
                        hint="add unlabelled images from the deployment domain (jpg, png, ...), any layout")
    digests: dict[str, str] = {}
    good, bad = _check_readable([(f, -1) for f in files], strict, digests)
    if not good:
        raise DataError(f"adaptation folder {root}: none of its {len(files)} image file(s) can be read",
                        hint="replace the files, or point data.adapt at another folder")
    refs = [ref for ref, _ in good]
    if limit is not None and len(refs) > limit:
        refs = sorted(random.Random(seed).sample(refs, limit))
    return UnlabelledImages(str(root), refs, {r: digests[r] for r in refs}, bad, len(good))


def folder_fingerprint(folder: str | Path) -> str:
    """Hash of the image files under ``folder`` (paths, sizes, mtimes): what the adapt stage's cache key holds."""
    from edgetl.fsutil import sha256_json

    root = Path(folder)
    if not root.is_dir():
        return f"missing:{root}"  # the stage itself names the problem
    rows = []
    for p in sorted(root.rglob("*")):
        if _is_image(p):
            st = p.stat()
            rows.append((str(p.relative_to(root)), st.st_size, st.st_mtime_ns))
    return sha256_json(rows)


def refuse_evaluation_overlap(images: UnlabelledImages, splits: dict[str, list[Sample]],
                              evaluated: tuple[str, ...] = ("val", "test")) -> None:
    """A ``DataError`` naming the adaptation images that are byte-identical to images of ``evaluated`` splits."""
    theirs: dict[str, str] = {}
    for split in evaluated:
        for ref, _ in splits.get(split, []):
            path = Path(ref)
            if path.is_file():  # built-in data sets ("digits:12") are no files a user can copy
                theirs.setdefault(sha256_file(path), f"{split}: {ref}")
    clashes = [f"{ref} = {theirs[d]}" for ref, d in images.digests.items() if d in theirs]
    if clashes:
        listing = "\n  ".join(clashes[:10]) + (f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else "")
        raise DataError(
            f"{len(clashes)} adaptation image(s) in {images.folder} are also evaluation images (byte-identical "
            f"files):\n  {listing}\nadaptation images are never evaluated on",
            hint="remove them from the adaptation folder (or from the evaluation split)")
