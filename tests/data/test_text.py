"""Text data sets: every file shape reads, bad rows are named by file and line, splits are stratified and seeded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgetl.data.text import TextDataOptions, TextDatasetIndex, read_text_dataset
from edgetl.errors import ConfigError, DataError

POSITIVE = ["a gripping , funny film", "warm and wise", "a joy to watch", "the best of the year"]
NEGATIVE = ["a dull mess", "tedious and long", "nothing works here", "flat , lifeless acting"]


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _tsv(rows: list[tuple[str, str]]) -> str:
    return "".join(f"{text}\t{label}\n" for text, label in rows)


@pytest.fixture
def sst_like(tmp_path: Path) -> Path:
    """An SST-2-shaped directory: train/dev/test TSV, no header, labels 0/1."""
    root = tmp_path / "sst"
    _write(root / "train.tsv", _tsv([(t, "1") for t in POSITIVE] + [(t, "0") for t in NEGATIVE]))
    _write(root / "dev.tsv", _tsv([("lovely", "1"), ("awful", "0")]))
    _write(root / "test.tsv", _tsv([("charming", "1"), ("boring", "0"), ("grim", "0")]))
    return root


def test_tsv_directory_without_header(sst_like: Path) -> None:
    index = read_text_dataset(sst_like)

    assert index.classes == ["0", "1"]
    assert {split: len(rows) for split, rows in index.splits.items()} == {"train": 8, "val": 2, "test": 3}
    assert index.splits["train"][0] == (POSITIVE[0], 1)  # file order is kept when the files give the splits
    assert index.splits["val"] == [("lovely", 1), ("awful", 0)]  # dev.tsv is the val split
    assert index.eval_split == "test"
    assert index.class_counts("test") == {"0": 2, "1": 1}
    assert index.imbalance_ratio("train") == 1.0
    assert not index.split_made and index.split_seed is None and not index.skipped
    assert index.summary().endswith("2 classes, train 8, val 2, test 3")
    assert Path(index.files["val"]).name == "dev.tsv"


def test_fingerprint_follows_the_bytes_and_the_index_round_trips_through_json(sst_like: Path) -> None:
    before = read_text_dataset(sst_like)
    again = read_text_dataset(sst_like)
    _write(sst_like / "test.tsv", _tsv([("charming", "1"), ("boring", "0"), ("grim", "1")]))
    after = read_text_dataset(sst_like)

    assert before.fingerprint == again.fingerprint != after.fingerprint
    assert TextDatasetIndex.model_validate(json.loads(before.model_dump_json())) == before


def test_csv_with_header_named_columns_and_quoted_fields(tmp_path: Path) -> None:
    # Quoted fields hold the delimiter, an escaped quote and a newline; the label is a named column.
    csv_text = (
        'id,label,review\n'
        '1,pos,"great, really great"\n'
        '2,neg,"he said ""meh""\nand left"\n'
        '3,pos,fine\n'
        '4,neg,bad\n'
    )
    root = tmp_path / "reviews"
    _write(root / "train.csv", csv_text)
    _write(root / "val.csv", "id,label,review\n9,neg,\"awful\"\n")
    index = read_text_dataset(root, TextDataOptions(text_column="review", label_column="label"))

    assert index.classes == ["neg", "pos"]
    assert index.splits["train"] == [("great, really great", 1), ('he said "meh"\nand left', 0), ("fine", 1),
                                     ("bad", 0)]
    assert index.splits["val"] == [("awful", 0)]


def test_header_is_detected_with_numbered_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.csv", "sentence,label\n" + "".join(
        f"{t},{label}\n" for t, label in [("good", 1), ("bad", 0), ("fine", 1), ("poor", 0)]))
    index = read_text_dataset(path)

    assert index.classes == ["0", "1"]
    assert sorted(index.splits["train"] + index.splits["val"]) == [("bad", 0), ("fine", 1), ("good", 1), ("poor", 0)]


def test_header_is_detected_over_word_labels_and_in_a_one_row_val_file(tmp_path: Path) -> None:
    root = tmp_path / "words"
    _write(root / "train.csv", "review,sentiment\n" + "good,pos\nbad,neg\nfine,pos\npoor,neg\n")
    _write(root / "val.csv", "review,sentiment\nnice,pos\n")
    index = read_text_dataset(root)

    assert index.classes == ["neg", "pos"]
    assert index.splits["val"] == [("nice", 1)]
    assert len(index.splits["train"]) == 4


def test_a_missing_named_column_is_a_data_error_naming_the_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.csv", "text,label\ngood,1\nbad,0\n")
    with pytest.raises(DataError, match=r"no column 'sentence'.*") as err:
        read_text_dataset(path, TextDataOptions(text_column="sentence"))
    assert "['text', 'label']" in str(err.value)
    with pytest.raises(ConfigError, match="header is false"):
        read_text_dataset(path, TextDataOptions(text_column="text", header=False))


def test_jsonl_by_key_and_by_position(tmp_path: Path) -> None:
    rows = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}, {"text": "ok", "label": "pos"},
            {"text": "meh", "label": "neg"}]
    root = tmp_path / "j"
    _write(root / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    _write(root / "test.jsonl", json.dumps({"label": "neg", "text": "dire"}) + "\n")
    _write(root / "val.jsonl", json.dumps({"text": "nice", "label": "pos"}) + "\n")

    by_key = read_text_dataset(root, TextDataOptions(text_column="text", label_column="label"))
    assert by_key.classes == ["neg", "pos"]
    assert by_key.splits["train"] == [("good", 1), ("bad", 0), ("ok", 1), ("meh", 0)]
    assert by_key.splits["test"] == [("dire", 0)]

    by_position = read_text_dataset(root / "train.jsonl", test_ratio=0.25)  # keys in order: text=0, label=1
    assert sorted(sum(by_position.splits.values(), [])) == sorted(by_key.splits["train"])


def test_one_file_is_split_stratified_and_deterministic(tmp_path: Path) -> None:
    rows = [(f"good review {i}", "1") for i in range(40)] + [(f"bad review {i}", "0") for i in range(20)]
    path = _write(tmp_path / "all.tsv", _tsv(rows))

    first = read_text_dataset(path, val_ratio=0.25, test_ratio=0.1, split_seed=3)
    second = read_text_dataset(path, val_ratio=0.25, test_ratio=0.1, split_seed=3)
    other_seed = read_text_dataset(path, val_ratio=0.25, test_ratio=0.1, split_seed=4)

    assert first.splits == second.splits
    assert first.splits["val"] != other_seed.splits["val"]
    assert first.split_made and first.split_seed == 3
    assert first.class_counts("val") == {"0": 5, "1": 10}  # a quarter of each class
    assert sum(len(rows) for rows in first.splits.values()) == 60
    texts = [set(t for t, _ in rows) for rows in first.splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_one_file_holds_out_a_test_split_by_default_a_given_val_none(tmp_path: Path) -> None:
    rows = [(f"good review {i}", "1") for i in range(40)] + [(f"bad review {i}", "0") for i in range(20)]
    path = _write(tmp_path / "all.tsv", _tsv(rows))

    index = read_text_dataset(path, val_ratio=0.25)  # test_ratio None: the default rule
    # val: a quarter of each class; test: 15 % of each class's remainder (30 -> 4 or 5, 15 -> 2)
    assert index.class_counts("val") == {"0": 5, "1": 10}
    assert index.class_counts("test") == {"0": 2, "1": 4}
    assert index.eval_split == "test" and index.split_made
    assert read_text_dataset(path, val_ratio=0.25, test_ratio=0.0).eval_split == "val"

    _write(tmp_path / "given" / "train.tsv", _tsv(rows))
    _write(tmp_path / "given" / "dev.tsv", _tsv([("lovely", "1"), ("awful", "0")]))
    given = read_text_dataset(tmp_path / "given")  # a user's own val file: their train is not carved up
    assert set(given.splits) == {"train", "val"} and len(given.splits["train"]) == 60
    assert given.eval_split == "val" and not given.split_made


def test_labels_list_sets_the_class_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", _tsv([("good", "pos"), ("bad", "neg"), ("ok", "pos"), ("meh", "neg")]))
    index = read_text_dataset(path, TextDataOptions(labels=["pos", "neg"]))

    assert index.classes == ["pos", "neg"]
    assert sorted(index.splits["train"] + index.splits["val"]) == [("bad", 1), ("good", 0), ("meh", 1), ("ok", 0)]


def test_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    rows = [(f"text {i} {label}", label) for label in ("2", "10", "1") for i in range(3)]
    index = read_text_dataset(_write(tmp_path / "train.tsv", _tsv(rows)))
    assert index.classes == ["1", "2", "10"]


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TextDataOptions(text_col=0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="at least two"):
        TextDataOptions(labels=["only"])
    with pytest.raises(ValidationError, match="repeat"):
        TextDataOptions(labels=["a", "b", "a"])
    with pytest.raises(ValidationError):
        TextDataOptions(label_column=-1)


@pytest.fixture
def bad_rows(tmp_path: Path) -> Path:
    """A TSV with every bad-row kind: undecodable line 3, empty text 4 and 7, missing label 5, unknown label 6."""
    lines = [b"good\tpos\n", b"bad\tneg\n", b"caf\xe9 \xff\tpos\n", b"\tneg\n", b"no label here\n",
             b"strange\tmaybe\n", b"   \tpos\n", b"fine\tpos\n", b"poor\tneg\n"]
    return _write(tmp_path / "train.tsv", b"".join(lines))


def test_every_bad_row_kind_gives_one_warning_with_count_and_lines(
    bad_rows: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edgetl.data"):
        index = read_text_dataset(bad_rows, TextDataOptions(labels=["neg", "pos"]))

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4  # one per kind
    name = str(bad_rows)
    assert f"skipping 1 line(s) that are not valid UTF-8: {name}:3" in warnings
    assert f"skipping 2 row(s) with an empty text: {name}:4, {name}:7" in warnings
    assert f"skipping 1 row(s) with no label: {name}:5" in warnings
    assert f"skipping 1 row(s) with a label outside the labels list: {name}:6" in warnings
    assert sorted(index.splits["train"] + index.splits["val"]) == [("bad", 0), ("fine", 1), ("good", 1), ("poor", 0)]
    assert len(index.skipped) == 5 and f"{name}:6: unknown_label" in index.skipped
    assert "5 bad rows skipped" in index.summary()


def test_long_lists_of_bad_rows_are_cut_short(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [("good", "1"), ("bad", "0")] * 3 + [("", "1")] * 25
    path = _write(tmp_path / "train.tsv", _tsv(rows))
    with caplog.at_level(logging.WARNING, logger="edgetl.data"):
        read_text_dataset(path)
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert message.startswith(f"skipping 25 row(s) with an empty text: {path}:7, {path}:8")
    assert message.endswith(f"{path}:16, ...")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"caf\xe9\tpos\n", r"train\.tsv:3: line that is not valid UTF-8"),
        (b"\tneg\n", r"train\.tsv:3: row with an empty text"),
        (b"no label\n", r"train\.tsv:3: row with no label"),
        (b"odd\tmaybe\n", r"train\.tsv:3: row with a label outside the labels list \(label 'maybe'"),
    ],
)
def test_strict_raises_on_the_first_bad_row_naming_file_and_line(tmp_path: Path, line: bytes, expected: str) -> None:
    path = _write(tmp_path / "train.tsv", b"good\tpos\nbad\tneg\n" + line + b"fine\tpos\npoor\tneg\n")
    with pytest.raises(DataError, match=expected) as err:
        read_text_dataset(path, TextDataOptions(labels=["neg", "pos"]), strict=True)
    assert err.value.exit_code == 2


def test_malformed_json_lines_are_bad_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = ['{"text": "good", "label": 1}', '{"text": "bad", "label": 0}', "{not json", "42",
             '{"text": "fine", "label": 1}', '{"text": "poor", "label": 0}', '{"text": "meh"}']
    path = _write(tmp_path / "train.jsonl", "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="edgetl.data"):
        index = read_text_dataset(path, TextDataOptions(text_column="text", label_column="label"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"skipping 2 row(s) that do not parse: {path}:3, {path}:4" in warnings
    assert f"skipping 1 row(s) with no label: {path}:7" in warnings
    assert index.classes == ["0", "1"]


def test_an_evaluation_label_missing_from_train_is_an_error(sst_like: Path) -> None:
    _write(sst_like / "test.tsv", _tsv([("charming", "1"), ("so-so", "2")]))
    with pytest.raises(DataError, match=r"label\(s\) \['2'\] are in test but not in train.tsv"):
        read_text_dataset(sst_like)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"val.tsv": "a\t1\n"}, "no train file"),
        ({"train.tsv": "a\t1\n", "train.csv": "a,1\n"}, "more than one file for the train split"),
        ({"train.tsv": "a\t1\nb\t1\n"}, "only one label"),
        ({"train.tsv": "\n\n"}, "no usable rows"),
    ],
)
def test_unusable_directories_are_data_errors(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    for name, text in files.items():
        _write(tmp_path / "d" / name, text)
    with pytest.raises(DataError, match=expected):
        read_text_dataset(tmp_path / "d")


def test_a_missing_path_and_an_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_text_dataset(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="cannot tell the format"):
        read_text_dataset(_write(tmp_path / "train.txt", "a|1\nb|0\n"))
    index = read_text_dataset(tmp_path / "train.txt", TextDataOptions(delimiter="|"), val_ratio=0.5)
    assert index.classes == ["0", "1"]


def test_quoting_off_keeps_a_leading_quote_in_the_text(tmp_path: Path) -> None:
    rows = '" a bold start\t1\nplain\t0\nmore\t1\nless\t0\n'
    path = _write(tmp_path / "train.tsv", rows)
    index = read_text_dataset(path, TextDataOptions(quoting=False))
    texts = sorted(t for t, _ in index.splits["train"] + index.splits["val"])
    assert texts == ['" a bold start', "less", "more", "plain"]


@pytest.mark.slow
def test_real_sst2(shared_dir: Path) -> None:
    index = read_text_dataset(shared_dir / "datasets" / "sst2", strict=True)

    assert index.classes == ["0", "1"]
    assert {split: len(rows) for split, rows in index.splits.items()} == {"train": 6920, "val": 872, "test": 1821}
    assert index.class_counts("train") == {"0": 3310, "1": 3610}
    assert index.class_counts("val") == {"0": 428, "1": 444}
    assert index.class_counts("test") == {"0": 912, "1": 909}
    assert index.eval_split == "test" and not index.split_made
    assert index.imbalance_ratio() < 1.1
