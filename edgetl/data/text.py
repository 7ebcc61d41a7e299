"""Read a text classification data set (CSV, TSV or JSONL), check every row once, and split it deterministically.

A data set is either a directory with one file per split (``train.*``, ``val.*`` or ``dev.*``, optionally
``test.*``) or a single file that edgetl splits itself (seeded and stratified, like the image data sets). Each row
gives a text and a label, found by column name or position.

Bad rows (an empty text, a missing label, a label outside ``labels``, a line that is not valid UTF-8, a JSON line
that does not parse) are skipped with one warning per kind, giving the count and the first ``file:line``
positions, or stop the read with a ``DataError`` under ``strict``.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgetl.config import TextDataOptions, held_out_test_ratio
from edgetl.data.dataset import SplitViews, stratified_split
from edgetl.errors import ConfigError, DataError
from edgetl.fsutil import sha256_file, sha256_json

log = logging.getLogger("edgetl.data")

TEXT_SPLIT_FORMAT = 1
DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (*DELIMITERS, *JSONL_SUFFIXES)
SPLIT_FILES = {"train": ("train",), "val": ("val", "dev"), "test": ("test",)}  # split -> accepted file stems
LISTED_POSITIONS = 10  # file:line positions named in one warning

# Bad-row kinds, in the order a row is checked; each gets one warning. (one row, several rows)
BAD_ROW_KINDS = {
    "undecodable": ("line that is not valid UTF-8", "line(s) that are not valid UTF-8"),
    "malformed": ("row that does not parse", "row(s) that do not parse"),
    "empty_text": ("row with an empty text", "row(s) with an empty text"),
    "missing_label": ("row with no label", "row(s) with no label"),
    "unknown_label": ("row with a label outside the labels list", "row(s) with a label outside the labels list"),
}

TextSample = tuple[str, int]  # (text, class index)


class TextDatasetIndex(SplitViews, BaseModel):
    """Every usable row of a text data set, by split, with the class names; mirrors the image ``DatasetIndex``."""

    model_config = ConfigDict(extra="forbid")

    format: int = TEXT_SPLIT_FORMAT
    source: str  # the file or directory read
    files: dict[str, str] = Field(default_factory=dict)  # split -> file it was read from
    classes: list[str]
    splits: dict[str, list[TextSample]]
    split_made: bool = False  # True when edgetl made val/test from train
    split_seed: int | None = None
    skipped: list[str] = Field(default_factory=list)  # "file:line: kind" of every bad row left out
    fingerprint: str = ""  # hash of the files' bytes: changes exactly when the data changes

    def summary(self) -> str:
        parts = [f"{split} {len(samples)}" for split, samples in self.splits.items()]
        extra = [f"{len(self.skipped)} bad rows skipped"] if self.skipped else []
        return f"{self.source}: {len(self.classes)} classes, " + ", ".join(parts + extra)


class _BadRows:
    """Collects bad rows by kind (one warning each at the end), or raises on the first one under ``strict``."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.by_kind: dict[str, list[str]] = {kind: [] for kind in BAD_ROW_KINDS}

    def add(self, kind: str, path: Path, line: int, detail: str = "") -> None:
        where = f"{path}:{line}"
        if self.strict:
            raise DataError(
                f"{where}: {BAD_ROW_KINDS[kind][0]}{f' ({detail})' if detail else ''}",
                hint="fix or remove the row, or drop --strict to skip bad rows with a warning",
            )
        self.by_kind[kind].append(where)

    def warn(self) -> list[str]:
        skipped: list[str] = []
        for kind, where in self.by_kind.items():
            if not where:
                continue
            shown = ", ".join(where[:LISTED_POSITIONS]) + (", ..." if len(where) > LISTED_POSITIONS else "")
            log.warning("skipping %d %s: %s", len(where), BAD_ROW_KINDS[kind][1], shown)
            skipped.extend(f"{w}: {kind}" for w in where)
        return skipped


class _Lines:
    """The file's lines decoded one by one (bad UTF-8 costs one line, not the file), tracking line numbers."""

    def __init__(self, path: Path, data: bytes, bad: _BadRows) -> None:
        self.path = path
        self.data = data
        self.bad = bad
        self.record_start: int | None = None  # first line number of the record being read

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self.data.splitlines(keepends=True), 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                self.bad.add("undecodable", self.path, number, str(exc))
                continue
            if self.record_start is None:
                self.record_start = number
            yield line


_Row = tuple[int, list[Any]]  # (line number, cells or a parsed JSON value)


def _csv_rows(path: Path, data: bytes, delimiter: str, quoting: bool, bad: _BadRows) -> list[_Row]:
    lines = _Lines(path, data, bad)
    if quoting:
        reader = csv.reader(iter(lines), delimiter=delimiter)
    else:
        reader = csv.reader(iter(lines), delimiter=delimiter, quoting=csv.QUOTE_NONE)
    rows: list[_Row] = []
    while True:
        lines.record_start = None
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            bad.add("malformed", path, lines.record_start or reader.line_num, str(exc))
            continue
        if any(cell.strip() for cell in cells):  # blank lines separate nothing; they are not rows
            rows.append((lines.record_start or reader.line_num, cells))
    return rows


def _jsonl_rows(path: Path, data: bytes, bad: _BadRows) -> list[_Row]:
    lines = _Lines(path, data, bad)
    rows: list[_Row] = []
    for line in lines:
        number = lines.record_start or 0
        lines.record_start = None
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.add("malformed", path, number, f"not JSON: {exc}")
            continue
        if isinstance(value, dict):
            rows.append((number, [value]))
        elif isinstance(value, list):
            rows.append((number, value))
        else:
            bad.add("malformed", path, number, "a JSON line must hold an object or an array")
    return rows


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JSON 1.0 and 1 name the same label
    return str(value).strip()


class _ColumnPicker:
    """Finds the text and label of a row, by column position or by name (header cell or JSON key)."""

    def __init__(self, options: TextDataOptions, header: list[str] | None, path: Path) -> None:
        self.columns: list[str | int] = [options.text_column, options.label_column]
        if header is not None:
            names = [h.strip() for h in header]
            for i, column in enumerate(self.columns):
                if isinstance(column, str):
                    if column not in names:
                        raise DataError(
                            f"{path}: no column {column!r} in the header",
                            hint=f"the header names {names}; set text_column/label_column to one of them",
                        )
                    self.columns[i] = names.index(column)

    def pick(self, cells: list[Any]) -> tuple[str | None, str | None]:
        if len(cells) == 1 and isinstance(cells[0], dict):  # a JSON object: named key, or key by position
            obj = cells[0]
            keys = list(obj)
            found = [obj.get(c) if isinstance(c, str) else (obj[keys[c]] if c < len(keys) else None)
                     for c in self.columns]
        else:
            found = [cells[c] if isinstance(c, int) and c < len(cells) else None for c in self.columns]
        text, label = (_as_text(v) for v in found)
        return text, label


def _is_number(value: str) -> bool:
    return re.fullmatch(r"[+-]?\d+(\.\d*)?", value) is not None


def _looks_like_header(rows: list[_Row], label_at: int, known: set[str]) -> bool:
    """Whether the first row names the columns, judged by its label cell against the labels of the other rows.

    Against known labels (the ``labels`` option, or train's labels for the other splits) a first label that is
    none of them is a header. Otherwise it is a header when it is the odd one out: a word over numeric labels, or
    a value seen once where every other label repeats.
    """
    if not rows or label_at >= len(rows[0][1]):
        return False
    first = str(rows[0][1][label_at]).strip()
    if not first or first in known:
        return False
    if known:
        return True
    others = Counter(str(cells[label_at]).strip() for _, cells in rows[1:] if label_at < len(cells))
    others.pop("", None)
    if not others:
        return False
    if all(_is_number(label) for label in others):
        return not _is_number(first)
    return first not in others and min(others.values()) >= 2


def _read_file(path: Path, options: TextDataOptions, known: set[str],
               bad: _BadRows) -> list[tuple[int, str, str]]:
    """Rows of one file as (line, text, raw label); bad text/label rows are reported, label values not checked."""
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if suffix in JSONL_SUFFIXES:
        rows = _jsonl_rows(path, data, bad)
        picker = _ColumnPicker(options, None, path)
    else:
        delimiter = options.delimiter or DELIMITERS.get(suffix)
        if delimiter is None:
            raise ConfigError(
                f"{path}: cannot tell the format from the suffix {suffix!r}",
                hint=f"use one of {', '.join(TEXT_SUFFIXES)}, or set delimiter",
            )
        rows = _csv_rows(path, data, delimiter, options.quoting, bad)
        named = isinstance(options.text_column, str) or isinstance(options.label_column, str)
        header = options.header
        if header is None:
            label_at = options.label_column
            header = named or (isinstance(label_at, int) and _looks_like_header(rows, label_at, known))
            if header and not named:
                log.info("%s: treating the first row as a header (%s)", path, rows[0][1])
        if named and not header:
            raise ConfigError(
                "text_column/label_column name columns but header is false",
                hint="give column positions (0, 1, ...) or set header: true",
            )
        picker = _ColumnPicker(options, rows[0][1] if header and rows else None, path)
        rows = rows[1:] if header else rows
    good: list[tuple[int, str, str]] = []
    for line, cells in rows:
        text, label = picker.pick(cells)
        if not text:
            bad.add("empty_text", path, line)
        elif not label:
            bad.add("missing_label", path, line)
        else:
            good.append((line, text, label))
    return good


def _sort_labels(labels: set[str]) -> list[str]:
    """Sorted class names: numerically when every label is a number (so "10" comes after "9")."""
    if all(_is_number(label) for label in labels):
        return sorted(labels, key=lambda label: (float(label), label))
    return sorted(labels)


def _find_split_files(root: Path) -> dict[str, Path]:
    files = {p for p in root.iterdir() if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES}
    found: dict[str, Path] = {}
    for split, stems in SPLIT_FILES.items():
        matches = sorted(p for p in files if p.stem.lower() in stems)
        if len(matches) > 1:
            raise DataError(
                f"{root}: more than one file for the {split} split: {', '.join(p.name for p in matches)}",
                hint="keep one file per split",
            )
        if matches:
            found[split] = matches[0]
    if "train" not in found:
        raise DataError(
            f"no train file in {root}",
            hint="expected train.csv, train.tsv or train.jsonl (plus optional val/dev and test), "
                 "or pass a single file to split",
        )
    return found


def read_text_dataset(
    path: str | Path,
    options: TextDataOptions | None = None,
    val_ratio: float = 0.2,
    test_ratio: float | None = None,
    split_seed: int = 0,
    strict: bool = False,
) -> TextDatasetIndex:
    """Index a text data set: read every split file once, check every row, and split it if needed.

    Args:
        path: a directory holding ``train.*`` (and ``val.*``/``dev.*``, ``test.*``), or one CSV/TSV/JSONL file.
        options: where the text and label are and which labels exist; None: text in column 0, label in 1.
        val_ratio: share of each class held out as ``val`` when there is no val/dev file.
        test_ratio: share of each class (after val) held out as ``test`` when there is no test file (0: none);
            None: ``edgetl.config.held_out_test_ratio`` (a test split where edgetl makes val, none beside a given val).
        split_seed: seed of the stratified split; the same seed and data give the same split.
        strict: raise on the first bad row instead of skipping bad rows with one warning per kind.

    Returns:
        The index: class names, ``(text, class index)`` rows by split, the bad rows skipped, a fingerprint.

    Raises:
        DataError: the path, a split file or a column is missing, a split has no usable rows, an evaluation label
            is not a training label, or (under ``strict``) a row is bad.
        ConfigError: the options do not fit the files (named columns without a header, an unknown suffix).
    """
    options = options or TextDataOptions()
    src = Path(path).expanduser()
    if src.is_dir():
        files = _find_split_files(src)
    elif src.is_file():
        files = {"train": src}
    else:
        raise DataError(f"text data set {src} does not exist", hint="pass a CSV/TSV/JSONL file or a directory of them")

    bad = _BadRows(strict)
    known = set(options.labels or [])
    raw: dict[str, list[tuple[int, str, str]]] = {}
    for split in ("train", "val", "test"):  # train first: its labels help recognise the others' headers
        if split in files:
            raw[split] = _read_file(files[split], options, known, bad)
            known |= {label for _, _, label in raw[split]}
    classes = options.labels or _sort_labels({label for _, _, label in raw["train"]})
    class_to_idx = {name: i for i, name in enumerate(classes)}

    splits: dict[str, list[TextSample]] = {}
    for split, rows in raw.items():
        samples: list[TextSample] = []
        strays: Counter[str] = Counter()
        for line, text, label in rows:
            if label in class_to_idx:
                samples.append((text, class_to_idx[label]))
            elif options.labels is not None:
                bad.add("unknown_label", files[split], line, f"label {label!r}, not in {options.labels}")
            else:
                strays[label] += 1
        if strays:
            raise DataError(
                f"{files[split]}: label(s) {sorted(strays)} are in {split} but not in {files['train'].name}",
                hint="every evaluation label needs training rows; or list the labels in options.labels",
            )
        splits[split] = samples
    skipped = bad.warn()

    counts = Counter(label for _, label in splits["train"])
    if not splits["train"]:
        raise DataError(f"{files['train']} has no usable rows")
    if len(classes) < 2:
        raise DataError(f"{files['train']} has only one label ({classes[0]}); a classifier needs at least two")
    empty = [name for i, name in enumerate(classes) if counts.get(i, 0) == 0]
    if empty:
        raise DataError(
            f"label(s) {', '.join(empty)} have no training rows in {files['train']}",
            hint="add training rows for them or remove them from options.labels",
        )

    made = False
    val_made = not splits.get("val")
    if val_made:
        splits["train"], splits["val"] = stratified_split(splits["train"], val_ratio, split_seed)
        made = True
    test_ratio = held_out_test_ratio(test_ratio, val_made)
    if "test" not in splits and test_ratio > 0:
        splits["train"], splits["test"] = stratified_split(splits["train"], test_ratio, split_seed + 1)
        made = True
    index = TextDatasetIndex(
        source=str(src.resolve()),
        files={split: str(p.resolve()) for split, p in files.items()},
        classes=classes,
        splits=splits,
        split_made=made,
        split_seed=split_seed if made else None,
        skipped=skipped,
        fingerprint=sha256_json(sorted((split, sha256_file(p)) for split, p in files.items())),
    )
    log.info("%s", index.summary())
    ratio = index.imbalance_ratio("train")
    if ratio >= 3:
        log.warning("imbalanced classes (largest/smallest = %.1f): %s", ratio, index.class_counts("train"))
    return index
