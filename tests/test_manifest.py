"""Stage manifests: written atomically, read back, and they notice a changed or missing output."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetl.errors import ModelFileError
from edgetl.manifest import Manifest, hash_outputs, read_manifest


def test_round_trip_and_verify_outputs(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    manifest = Manifest(stage="demo", outputs=hash_outputs(tmp_path, ["a.txt", "b.txt"]), info={"k": 1})
    manifest.write(tmp_path)
    again = read_manifest(tmp_path)
    assert again.hash == manifest.hash and again.info == {"k": 1} and again.versions["edgetl"]
    assert again.verify_outputs(tmp_path) == []
    (tmp_path / "a.txt").write_text("changed")
    (tmp_path / "b.txt").unlink()
    assert again.verify_outputs(tmp_path) == ["a.txt", "b.txt"]
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left beside it


def test_missing_and_corrupt_manifests_are_model_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupt or from an incompatible edgetl version"):
        read_manifest(tmp_path)
