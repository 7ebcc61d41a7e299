"""Checks of a written report.html that a reader would notice: every figure embedded and not empty, every section
with content, nothing fetched from elsewhere. Used by the report, build and text-task tests."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

MIN_FIGURE_PX = 120  # the smallest plot the report draws is hundreds of pixels on each side
VOID_TAGS = {"img", "meta", "br", "hr", "link", "input", "source", "wbr"}  # no end tag: never on the open stack
DRAWING_TAGS = {"path", "rect", "line", "polyline", "polygon", "circle", "ellipse", "text", "use", "image"}


@dataclass
class Section:
    title: str
    figures: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, width, height)
    tables: int = 0
    table_rows: int = 0
    text: str = ""

    @property
    def has_content(self) -> bool:
        return bool(self.figures) or self.table_rows > 0 or bool(self.text.strip())


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections = [Section("(top)")]
        self.errors: list[str] = []
        self._in: list[str] = []
        self._svg_depth = 0
        self._svg_drawn = 0
        self._svg_size: tuple[int, int] = (0, 0)
        self._heading = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.errors.append(f"<{tag}> loads {a.get('href') or a.get('src')} (the page must be self-contained)")
        if tag == "h2":
            self._heading = ""
        if tag == "img":
            self._image(a.get("src") or "", a.get("alt") or "")
        if tag == "svg":
            if self._svg_depth == 0:
                self._svg_drawn = 0
                self._svg_size = _svg_size(a)
            self._svg_depth += 1
        elif self._svg_depth and tag in DRAWING_TAGS:
            self._svg_drawn += 1
        if tag == "table":
            self.sections[-1].tables += 1
        if tag == "tr" and "tbody" in self._in:
            self.sections[-1].table_rows += 1
        if tag not in VOID_TAGS:
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS or tag not in self._in:
            return
        if tag == "h2":
            self.sections.append(Section(self._heading.strip()))
        if tag == "svg" and self._svg_depth:
            self._svg_depth -= 1
            if self._svg_depth == 0:
                w, h = self._svg_size
                if not self._svg_drawn or min(w, h) < MIN_FIGURE_PX:
                    self.errors.append(f"inline <svg> in {self.sections[-1].title!r} is empty or tiny "
                                       f"({self._svg_drawn} drawing elements, {w}x{h})")
                self.sections[-1].figures.append(("svg", w, h))
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] == "h2":
            self._heading += data
        elif self._in and self._in[-1] in ("p", "li", "div", "td", "h3") and not self._svg_depth:
            self.sections[-1].text += data

    def _image(self, src: str, alt: str) -> None:
        where = self.sections[-1].title
        match = re.fullmatch(r"data:image/(png|jpeg|svg\+xml);base64,([A-Za-z0-9+/=\s]+)", src)
        if match is None:
            self.errors.append(f"<img alt={alt!r}> in {where!r} is not an embedded data: URI: {src[:60]!r}")
            return
        try:
            raw = base64.b64decode(match.group(2), validate=False)
        except (binascii.Error, ValueError) as exc:
            self.errors.append(f"<img alt={alt!r}> in {where!r} does not decode: {exc}")
            return
        if match.group(1) == "svg+xml":
            inner = _Parser()
            inner.feed(raw.decode("utf-8", "replace"))
            self.errors += inner.errors
            self.sections[-1].figures.append(("svg", 0, 0))
            return
        from PIL import Image

        try:
            image = Image.open(io.BytesIO(raw))
            image.load()
        except Exception as exc:  # anything PIL cannot read is a broken figure
            self.errors.append(f"<img alt={alt!r}> in {where!r} is not a readable image: {exc}")
            return
        w, h = image.size
        if min(w, h) < MIN_FIGURE_PX:
            self.errors.append(f"<img alt={alt!r}> in {where!r} is only {w}x{h} px")
        elif len(image.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) < 3:
            self.errors.append(f"<img alt={alt!r}> in {where!r} is blank (fewer than 3 colours)")
        self.sections[-1].figures.append((match.group(1), w, h))


def _svg_size(attrs: dict[str, str | None]) -> tuple[int, int]:
    def px(value: str | None) -> int:
        m = re.match(r"\s*([\d.]+)", value or "")
        return int(float(m.group(1))) if m else 0

    w, h = px(attrs.get("width")), px(attrs.get("height"))
    if not (w and h) and attrs.get("viewbox"):
        parts = (attrs.get("viewbox") or "").split()
        if len(parts) == 4:
            w, h = int(float(parts[2])), int(float(parts[3]))
    return w, h


def check_report_html(page: Path) -> dict[str, Section]:
    """Parse ``page``; raise ``AssertionError`` naming every problem; the sections by their ``<h2>`` title."""
    text = Path(page).read_text(encoding="utf-8")
    parser = _Parser()
    parser.feed(text)
    parser.close()
    errors = list(parser.errors)
    if re.search(r"""(?:src|href)\s*=\s*['"]https?://""", text):
        errors.append("the page loads something over the network")
    for s in parser.sections:
        if not s.has_content:
            errors.append(f"section {s.title!r} is empty")
    assert not errors, f"{page}:\n  " + "\n  ".join(errors)
    return {s.title: s for s in parser.sections}
