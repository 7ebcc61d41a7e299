"""Render report.html in headless Chromium, screenshot it and check that the screenshot is not blank.

``make report-check`` runs this on the report of a tiny build (the ``tiny`` backbone on a few synthetic colour
images, QAT included, a few minutes on 2 cores); pass a report to check that one instead::

    python -m tests.report.render_check [REPORT.html] [--out DIR]

It needs Debian's ``chromium`` package (``apt-get install chromium``); without it, it exits 2 and says so. The
check reads the screenshot's pixels: enough of the page is drawn on (text, tables, plots), some of it in colour
(the plots: text and tables are grey, so a page whose images did not decode has none), and the drawing reaches
far enough down for the page's figures. Exit 0: the page renders; 1: it does not (the reasons are printed).
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install Debian's chromium package: apt-get install -y chromium"
WIDTH = 1280
MAX_HEIGHT = 16000  # Chromium's headless screenshots stay reliable up to about 16k pixels high
# thresholds on a page's pixels (measured on the tiny build's report: ink ~10 %, colour ~2 %, 7 figures)
MIN_INK = 0.02  # share of the drawn area that differs from the background
MIN_COLOUR = 0.002  # share of saturated pixels (the plots' lines, markers and bars)
MIN_CONTENT_PX = 800


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def page_height(page: Path) -> int:
    """A window height that holds the whole page: its embedded figures at the page's width, plus text and tables."""
    from PIL import Image

    text = page.read_text(encoding="utf-8")
    height = 1000 + 40 * text.count("<tr") + 60 * text.count("<h2") + 40 * text.count("<p")
    for data in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text):
        w, h = Image.open(io.BytesIO(base64.b64decode(data))).size
        height += int(h * min(1.0, (WIDTH - 80) / max(w, 1))) + 20
    return min(MAX_HEIGHT, height)


def screenshot(page: Path, png: Path, chromium: str, height: int | None = None, timeout_s: float = 180.0) -> Path:
    """Render ``page`` (a local file) in headless ``chromium`` and write a screenshot ``WIDTH`` wide to ``png``."""
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgetl-chromium-") as profile:
        argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--no-first-run", "--mute-audio", f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{height or page_height(page)}", "--virtual-time-budget=10000",
                f"--screenshot={png.resolve()}", page.resolve().as_uri()]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0 or not png.is_file():
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"chromium exited {done.returncode} without a screenshot: {tail}")
    return png


@dataclass(frozen=True)
class Stats:
    width: int
    height: int
    content_height: int  # the lowest drawn row
    ink: float  # share of pixels above it that differ from the background
    colour: float  # share of saturated pixels above it

    def problems(self) -> list[str]:
        out = []
        if self.content_height < MIN_CONTENT_PX:
            out.append(f"only the top {self.content_height} px of the page are drawn (expected >= {MIN_CONTENT_PX})")
        if self.ink < MIN_INK:
            out.append(f"the page is blank: {100 * self.ink:.2f}% of it is drawn (expected >= {100 * MIN_INK:g}%)")
        if self.colour < MIN_COLOUR:
            out.append(f"no plot was painted: {100 * self.colour:.3f}% of the page is in colour "
                       f"(expected >= {100 * MIN_COLOUR:g}%)")
        return out


def screenshot_stats(png: Path) -> Stats:
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    h, w, _ = rgb.shape
    flat = rgb.reshape(-1, 3)
    values, counts = np.unique(flat[:: max(1, len(flat) // 200_000)], axis=0, return_counts=True)
    background = values[counts.argmax()]
    ink = np.abs(rgb - background).max(axis=2) > 30
    rows = np.flatnonzero(ink.any(axis=1))
    bottom = int(rows[-1]) + 1 if len(rows) else 0
    if bottom == 0:
        return Stats(w, h, 0, 0.0, 0.0)
    saturated = (rgb.max(axis=2) - rgb.min(axis=2)) > 80
    area = bottom * w
    return Stats(w, h, bottom, float(ink[:bottom].sum()) / area, float(saturated[:bottom].sum()) / area)


def check_page(page: Path, png: Path, chromium: str | None = None) -> Stats:
    """Screenshot ``page`` to ``png`` and measure it; ``RuntimeError`` when there is no Chromium."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError(f"no Chromium on PATH ({', '.join(CHROMIUM_NAMES)}): {INSTALL_HINT}")
    height = page_height(page)
    stats = screenshot_stats(screenshot(page, png, chromium, height))
    while stats.content_height >= stats.height - 2 and height < MAX_HEIGHT:  # drawn to the edge: the page is longer
        height = min(MAX_HEIGHT, 2 * height)
        stats = screenshot_stats(screenshot(page, png, chromium, height))
    return stats


def build_tiny(out: Path) -> Path:
    """A whole tiny build (tests/conftest.py FAST_BUILD) into ``out``; its report.html."""
    from click.testing import CliRunner

    from edgetl.cli import cli
    from tests.conftest import FAST_BUILD, make_image_folder

    data = make_image_folder(out / "data", {"red": 10, "green": 10, "blue": 10})
    config = out / "build.yaml"
    config.write_text(FAST_BUILD.format(data=data, out=out / "run"))
    result = CliRunner().invoke(cli, ["build", "--target", "cpu", "--config", str(config), "--no-budget-check"],
                                catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"the tiny build failed ({result.exit_code}): {result.output[-800:]}")
    return out / "run" / "report" / "report.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.report.render_check", description=__doc__.split("\n")[0])
    parser.add_argument("report", nargs="?", help="report.html to check (default: build a tiny run and check its)")
    parser.add_argument("--out", default="runs/report-check", help="where the tiny build and the screenshot go")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print(f"report-check: no Chromium on PATH: {INSTALL_HINT}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.report:
        page = Path(args.report)
        if not page.is_file():
            print(f"report-check: {page} does not exist", file=sys.stderr)
            return 2
    else:
        if out.exists():
            shutil.rmtree(out)
        print(f"report-check: building a tiny run in {out} ...", flush=True)
        page = build_tiny(out)
    from tests.report.html_checks import check_report_html

    sections = check_report_html(page)  # every figure embedded and decodable, every section with content
    png = out / "report.png"
    stats = check_page(page, png, chromium)
    print(f"report-check: {page} -> {png} ({stats.width}x{stats.height} px, drawn to {stats.content_height} px, "
          f"{100 * stats.ink:.1f}% ink, {100 * stats.colour:.2f}% colour; {len(sections) - 1} sections, "
          f"{sum(len(s.figures) for s in sections.values())} figures)")
    problems = stats.problems()
    for p in problems:
        print(f"report-check: FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
