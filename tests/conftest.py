"""Shared fixtures. Fast tests build tiny data and tiny models; real-data tests need ../shared and skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGETL_SHARED", REPO_ROOT.parent / "shared"))

# Keep tests quiet and offline: no telemetry, few threads on shared 2-core machines.
os.environ.setdefault("OPENVINO_TELEMETRY", "0")
os.environ.setdefault("NNCF_CI", "1")


# A whole build on the tiny backbone in seconds (format with data= and out=): used by the end-to-end tests.
FAST_BUILD = """
train: {{backbone: tiny, weights: none, image_size: 32, batch_size: 8, head_epochs: 1, epochs: 2, seed: 0}}
quantize: {{qat_epochs: 1, calibration_images: 16, skip_qat_within_budget: false}}
bench: {{warmup: 1, min_iterations: 5, min_time_s: 0.0, batch_sizes: [1, 2]}}
data: {{path: {data}, num_workers: 0}}
out: {out}
"""


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only real assets (../shared); skips the test with the reason when absent."""
    if not (SHARED / "datasets").is_dir():
        pytest.skip(f"../shared not found at {SHARED}: real-data tests need the shared data sets")
    return SHARED


def make_image_folder(root: Path, classes: dict[str, int], splits: tuple[str, ...] = ("train", "val"),
                      size: int = 24, seed: int = 0) -> Path:
    """Write a small ImageFolder whose classes differ by colour (learnable in a few steps)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    palette = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 220, 40), (200, 40, 200), (40, 220, 220)]
    for split in splits:
        for ci, (name, count) in enumerate(classes.items()):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            n = count if split == "train" else max(2, count // 2)
            for i in range(n):
                base = np.array(palette[ci % len(palette)], dtype=np.float64)
                img = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{name}_{i}.png")
    return root


@pytest.fixture
def tiny_imagefolder(tmp_path: Path) -> Path:
    """3 colour classes, 8 train + 4 val images each, 24 px PNGs."""
    return make_image_folder(tmp_path / "data", {"red": 8, "green": 8, "blue": 8})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that launch subprocesses (torchrun) first.

    Measured here: after many in-process ONNX Runtime / OpenVINO / torch.export tests, launching a subprocess from
    the same pytest process crashed it with SIGSEGV, while the same tests pass in any smaller combination. Starting
    the subprocess tests before those thread pools exist avoids it; every test still runs.

    A module's tests stay together (its subprocess tests first, then the rest of it), so that a module-scoped
    fixture is built once: split across the run, a module's whole tiny build was made twice (tests/pipeline/
    test_build.py: measured 148 + 205 s on a loaded 2-core host).
    """
    def module(item: pytest.Item) -> str:
        return str(getattr(item, "path", item.nodeid.split("::")[0]))

    launching = {module(item) for item in items if "subprocess" in item.keywords}
    first = [item for item in items if module(item) in launching and "subprocess" in item.keywords]
    then = [item for item in items if module(item) in launching and "subprocess" not in item.keywords]
    rest = [item for item in items if module(item) not in launching]
    # per module: its subprocess tests, then its others; modules in collection order
    order = {m: i for i, m in enumerate(dict.fromkeys(module(item) for item in first))}
    grouped = sorted(first + then, key=lambda item: (order[module(item)], "subprocess" not in item.keywords))
    items[:] = grouped + rest
