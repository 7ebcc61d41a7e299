from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgetl.config import DataConfig
from edgetl.data import open_sample, read_split, resolve_dataset, write_split
from edgetl.errors import DataError
from tests.conftest import make_image_folder


def test_imagefolder_with_val_split(tiny_imagefolder):
    index = resolve_dataset(DataConfig(path=str(tiny_imagefolder)))
    assert index.classes == ["blue", "green", "red"]
    assert len(index.splits["train"]) == 24 and len(index.splits["val"]) == 12
    assert index.eval_split == "val" and not index.split_made


def test_train_only_gets_deterministic_stratified_split(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 10, "b": 20}, splits=("train",))
    cfg = DataConfig(path=str(root), val_ratio=0.2, split_seed=3)
    first, second = resolve_dataset(cfg), resolve_dataset(cfg)
    assert first.splits == second.splits and first.split_made
    assert first.class_counts("val") == {"a": 2, "b": 4}
    other = resolve_dataset(DataConfig(path=str(root), val_ratio=0.2, split_seed=4))
    assert other.splits["val"] != first.splits["val"]
    # the recorded split round-trips, so later stages evaluate on the same images
    write_split(first, tmp_path / "split.json")
    assert read_split(tmp_path / "split.json").splits == first.splits


def test_train_only_holds_out_a_test_split_that_nothing_selects_on(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 20, "b": 40}, splits=("train",))
    cfg = DataConfig(path=str(root), val_ratio=0.2, split_seed=1)
    index = resolve_dataset(cfg)
    # val first (20 % of each class), then the held-out test: 15 % of what remains (16 -> 2, 32 -> 5)
    assert index.class_counts("val") == {"a": 4, "b": 8}
    assert index.class_counts("test") == {"a": 2, "b": 5}
    assert index.eval_split == "test" and index.split_made and index.split_seed == 1
    refs = [{ref for ref, _ in index.splits[s]} for s in ("train", "val", "test")]
    assert not (refs[0] & refs[1] or refs[0] & refs[2] or refs[1] & refs[2])
    assert sum(map(len, refs)) == 60
    assert resolve_dataset(cfg).splits == index.splits  # seeded: the same split every time
    write_split(index, tmp_path / "split.json")
    assert read_split(tmp_path / "split.json").splits["test"] == index.splits["test"]
    # test_ratio 0 turns the held-out split off; an explicit ratio is used as given
    assert "test" not in resolve_dataset(DataConfig(path=str(root), test_ratio=0.0)).splits
    assert resolve_dataset(DataConfig(path=str(root), test_ratio=0.25)).class_counts("test") == {"a": 4, "b": 8}


def test_a_given_val_split_is_not_carved_up(tiny_imagefolder):
    index = resolve_dataset(DataConfig(path=str(tiny_imagefolder)))
    assert set(index.splits) == {"train", "val"} and len(index.splits["train"]) == 24
    assert index.eval_split == "val"  # the split selection uses: the report says so


def test_corrupt_and_odd_images(tmp_path, caplog):
    root = make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = root / "train" / "b" / "b_0.png"
    (root / "train" / "b" / "truncated.png").write_bytes(good.read_bytes()[:60])
    Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 50).save(root / "train" / "a" / "deep.png")
    Image.new("RGBA", (17, 9), (10, 20, 30, 128)).save(root / "train" / "a" / "alpha.png")
    Image.new("P", (12, 12)).save(root / "train" / "b" / "palette.gif")
    Image.new("CMYK", (12, 12)).save(root / "train" / "b" / "cmyk.jpg")
    index = resolve_dataset(DataConfig(path=str(root)))
    assert len(index.skipped) == 2 and "skipping 2 unreadable" in caplog.text
    for ref, _ in index.splits["train"]:
        assert open_sample(ref).mode == "RGB"
    with pytest.raises(DataError, match="2 unreadable or truncated"):
        resolve_dataset(DataConfig(path=str(root), strict=True))


def test_data_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        resolve_dataset(DataConfig(path=str(tmp_path / "missing")))
    (tmp_path / "flat" / "cats").mkdir(parents=True)
    with pytest.raises(DataError, match="no train/ folder"):
        resolve_dataset(DataConfig(path=str(tmp_path / "flat")))
    root = make_image_folder(tmp_path / "e", {"a": 3, "b": 3})
    (root / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="no images .*empty"):
        resolve_dataset(DataConfig(path=str(root)))
    root = make_image_folder(tmp_path / "f", {"a": 3, "b": 3})
    make_image_folder(tmp_path / "g", {"zebra": 2}, splits=("val",))
    (tmp_path / "g" / "val" / "zebra").rename(root / "val" / "zebra")
    with pytest.raises(DataError, match="'zebra' is in val/ but not in train/"):
        resolve_dataset(DataConfig(path=str(root)))


def test_imbalance_is_reported(tmp_path, caplog):
    root = make_image_folder(tmp_path / "d", {"common": 12, "rare": 3})
    index = resolve_dataset(DataConfig(path=str(root)))
    assert index.imbalance_ratio() == 4.0
    assert "imbalanced classes" in caplog.text


def test_builtin_digits_is_offline_and_rgb():
    index = resolve_dataset(DataConfig(path="digits"))
    assert index.classes == [str(i) for i in range(10)]
    assert sum(len(s) for s in index.splits.values()) == 1797
    # edgetl splits it, so it holds out a test split: 20 % val, then 15 % of the rest
    assert {split: len(s) for split, s in index.splits.items()} == {"train": 1222, "val": 359, "test": 216}
    assert index.eval_split == "test"
    img = open_sample(index.splits["val"][0][0])
    assert img.mode == "RGB" and img.size == (8, 8)


def test_identical_files_under_two_classes_and_in_two_splits_are_named(tmp_path, caplog):
    import shutil

    root = make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    shutil.copyfile(root / "train" / "a" / "a_0.png", root / "train" / "b" / "copy_of_a0.png")  # label conflict
    shutil.copyfile(root / "train" / "a" / "a_1.png", root / "val" / "a" / "leaked.png")  # train/val leak
    index = resolve_dataset(DataConfig(path=str(root)))
    assert len(index.duplicates) == 2
    assert "1 image(s) are filed under two or more classes" in caplog.text and "copy_of_a0.png" in caplog.text
    assert "1 image(s) are in two splits" in caplog.text and "leaked.png" in caplog.text
    assert "2 groups of identical files" in index.summary()
    # a user's own val/ is theirs: warned about, never changed
    assert any(ref.endswith("leaked.png") for ref, _ in index.splits["val"])


def test_a_split_edgetl_makes_keeps_copies_of_training_images_out_of_val(tmp_path):
    import shutil

    root = make_image_folder(tmp_path / "d", {"a": 10, "b": 10}, splits=("train",))
    for i in range(10):  # every "a" image twice: whichever copy is held out, its twin may be in train
        shutil.copyfile(root / "train" / "a" / f"a_{i}.png", root / "train" / "a" / f"twin_{i}.png")
    index = resolve_dataset(DataConfig(path=str(root), val_ratio=0.3))
    train_names = {ref.rsplit("/", 1)[1].split("_")[1] for ref, label in index.splits["train"] if label == 0}
    val_names = {ref.rsplit("/", 1)[1].split("_")[1] for ref, label in index.splits["val"] if label == 0}
    assert not train_names & val_names  # no image (by content) on both sides
    assert len(index.duplicates) == 10
    assert sum(len(s) for s in index.splits.values()) == 30  # nothing dropped, only moved


def test_a_class_folder_linked_to_its_split_is_an_error_not_a_new_class(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    (root / "train" / "self").symlink_to(".")
    with pytest.raises(DataError, match=r"class folder .*train/self is a symbolic link .* class 'self'"):
        resolve_dataset(DataConfig(path=str(root)))


def test_a_symlink_loop_inside_a_class_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    (root / "train" / "a" / "again").symlink_to("..")
    with pytest.raises(DataError, match=r"train/a/again is a symbolic link .* a loop"):
        resolve_dataset(DataConfig(path=str(root)))


def test_the_same_file_linked_under_two_classes_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    (root / "train" / "b" / "alias.png").symlink_to(root / "train" / "a" / "a_0.png")
    with pytest.raises(DataError, match=r"a_0.png is listed under two classes \('a' in train/, 'b' in train/\)"):
        resolve_dataset(DataConfig(path=str(root)))


def test_links_out_of_the_data_root_are_used_with_a_warning(tmp_path, caplog):
    root = make_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    elsewhere = make_image_folder(tmp_path / "other", {"c": 2}, splits=("train",))
    (root / "train" / "c").symlink_to(elsewhere / "train" / "c")
    index = resolve_dataset(DataConfig(path=str(root)))
    assert index.classes == ["a", "b", "c"] and index.class_counts("train")["c"] == 2
    assert "1 symbolic link(s) lead out of the data root" in caplog.text and "train/c ->" in caplog.text


def test_a_file_given_as_the_data_root_is_named_as_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        resolve_dataset(DataConfig(path=str(tmp_path / "notes.txt")))


def test_the_fingerprint_counts_images_and_layout_only(tmp_path):
    from edgetl.data import dataset_fingerprint

    root = make_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    first = dataset_fingerprint(str(root))
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0")
    (root / "train" / "a" / "notes.txt").write_text("taken on a sunny day")
    (root / "README.md").write_text("my data")
    assert dataset_fingerprint(str(root)) == first
    (root / "val" / "c").mkdir()  # the split layout counts (a class in val/ but not in train/ is an error)
    assert dataset_fingerprint(str(root)) != first
    (root / "val" / "c").rmdir()
    Image.new("RGB", (8, 8)).save(root / "train" / "a" / "new.png")
    assert dataset_fingerprint(str(root)) != first


def test_skipped_images_are_listed_with_their_reason(tmp_path, caplog, monkeypatch):
    root = make_image_folder(tmp_path / "d", {"a": 4, "b": 4}, size=24)
    (root / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("RGB", (200, 200)).save(root / "train" / "b" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # PIL's decompression-bomb guard, scaled down
    index = resolve_dataset(DataConfig(path=str(root)))
    assert len(index.skipped) == 2
    assert "skipping 1 unreadable or truncated image(s) and 1 image(s) too large to decode" in caplog.text
    assert "broken.jpg: Truncated File Read" in caplog.text or "broken.jpg: cannot identify" in caplog.text
    assert "huge.png: too large to decode" in caplog.text


def test_a_dataloader_worker_prints_no_traceback_when_edgetl_hangs_up(tmp_path):
    """The fd-sharing thread of a worker reports through sys.excepthook; a peer that hung up is not an error."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\nfrom edgetl.data.torch_data import worker_init\nworker_init(0)\n"
            "for exc in (ConnectionResetError(104, 'reset'), BrokenPipeError(32, 'pipe'), EOFError(),\n"
            "            FileNotFoundError(2, 'semaphore gone'), ValueError('real')):\n"
            "    try:\n        raise exc\n    except BaseException:\n        sys.excepthook(*sys.exc_info())\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "Error: [Errno" not in proc.stderr and "EOFError" not in proc.stderr
    assert "ValueError: real" in proc.stderr  # anything else still shows
