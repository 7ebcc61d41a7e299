"""The rendering check behind ``make report-check``: report.html in headless Chromium, screenshot not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.report.render import write_report
from tests.report.render_check import INSTALL_HINT, check_page, find_chromium, screenshot_stats
from tests.report.test_report import results_path  # noqa: F401  (the module's bench run, as a fixture)

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason=f"no Chromium on PATH: {INSTALL_HINT}")


def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_blank_and_colourless_screenshots_fail_and_a_plotted_page_passes(tmp_path: Path) -> None:
    white = np.full((2000, 1280, 3), 255)
    assert any("blank" in p for p in screenshot_stats(_png(tmp_path / "w.png", white)).problems())
    text = white.copy()
    text[100:1900:20, 50:1200] = 90  # grey lines: text and tables, but no plot
    problems = screenshot_stats(_png(tmp_path / "t.png", text)).problems()
    assert problems and all("plot" in p for p in problems)
    plotted = text.copy()
    plotted[300:700, 100:600] = (31, 119, 180)  # a blue bar
    assert screenshot_stats(_png(tmp_path / "p.png", plotted)).problems() == []


@needs_chromium
@pytest.mark.subprocess
def test_the_report_renders_in_chromium_and_a_blank_page_does_not(results_path: Path, tmp_path: Path) -> None:  # noqa: F811
    _, page = write_report(results_path, tmp_path)
    stats = check_page(page, tmp_path / "report.png")
    assert stats.problems() == [], stats
    assert stats.content_height > 3000  # seven figures and the tables below one another
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert any("blank" in p for p in check_page(blank, tmp_path / "blank.png").problems())
