"""Tests of cytolt.report.html: a self-contained page with thumbnail, gallery and histogram."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from cytolt.io import open_slide
from cytolt.report import slide_report, write_html
from cytolt.screen.engine import SlideResult, failed_result


class _Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _parse(path: Path) -> tuple[str, list[tuple[str, dict[str, str | None]]]]:
    text = path.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(text)
    return text, parser.tags


def _decode(src: str) -> np.ndarray:
    kind, data = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", src).groups()
    image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"undecodable {kind}"
    return image


def test_page_is_self_contained_with_every_image(
    scored_result: SlideResult, report_slide: Path, tmp_path: Path
):
    report = slide_report(scored_result)
    out = write_html(report, report_slide, tmp_path / "report.html", thumbnail_px=512, crop_px=96)
    text, tags = _parse(out)
    # nothing to fetch: no scripts, links, frames, and no URL anywhere in the page
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed")]
    assert re.search(r"(https?:|ftp:|file:)//", text) is None and "url(" not in text
    images = [a["src"] for t, a in tags if t == "img"]
    assert all(src.startswith("data:image/") for src in images)
    n_cells = sum(len(c) for c in report["top_cells"].values()) + len(report["evidence"])
    # thumbnail, focus map, gallery and evidence crops, histogram
    assert len(images) == 1 + 1 + n_cells + 1
    thumb = _decode(images[0])
    assert thumb.shape == (512, 512, 3)  # the square 1024 px slide shrunk to 512
    assert _decode(images[1]).shape == (512, 512, 3)  # the focus map is the thumbnail, tinted
    assert all(_decode(src).shape == (96, 96, 3) for src in images[2:-1])
    assert images[-1].startswith("data:image/png")
    assert report["score"]["category"] in text and "slide7.tiff" in text
    assert "case-Jane-Doe" not in text  # the slide's folder never appears


def test_thumbnail_shows_the_gallery_boxes(scored_result: SlideResult, report_slide: Path, tmp_path: Path):
    # pure green stands out from every stain colour, so a drawn line always changes the pixels under it
    report = slide_report(scored_result, colors=[(0, 255, 0)] * len(scored_result.class_names))
    out = write_html(report, report_slide, tmp_path / "report.html", thumbnail_px=1024)
    _, tags = _parse(out)
    thumb = cv2.cvtColor(_decode(next(a["src"] for t, a in tags if t == "img")), cv2.COLOR_BGR2RGB)
    with open_slide(report_slide) as slide:
        plain = slide.thumbnail(1024)
    changed = np.abs(thumb.astype(int) - plain.astype(int)).max(axis=2) > 60  # JPEG noise stays below
    # each drawn box changes pixels along its outline: check the top edge of every gallery and evidence cell
    for cell in [c for cells in report["top_cells"].values() for c in cells] + report["evidence"]:
        x0, y0, x1, _ = (int(round(v)) for v in cell["box"])
        assert changed[max(y0 - 1, 0) : y0 + 2, x0 + 2 : x1 - 2].any(axis=0).mean() > 0.8, cell


def test_failed_slide_page_escapes_the_error(tmp_path: Path) -> None:
    result = failed_result("x.svs", "x.svs: <b>bad</b> & broken")
    out = write_html(slide_report(result), None, tmp_path / "report.html")
    text, tags = _parse(out)
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; broken" in text and "<b>bad</b>" not in text
    assert not [t for t, _ in tags if t == "img"]


def test_done_report_without_a_slide_still_renders(scored_result: SlideResult, tmp_path: Path) -> None:
    out = write_html(slide_report(scored_result), None, tmp_path / "report.html")
    text, tags = _parse(out)
    images = [a["src"] for t, a in tags if t == "img"]
    assert len(images) == 1 and images[0].startswith("data:image/png")  # only the histogram
    assert "no slide given" in text


def test_a_slide_that_no_longer_reads_gives_a_page_that_says_why(
    openslide_fixtures: Path, tmp_path: Path
) -> None:
    # unreadable.svs opens but its tiles fail to decode ("Bogus marker length")
    path = openslide_fixtures / "unreadable.svs"
    result = SlideResult(path=path, status="done", dimensions=(16, 16), class_names=("a",))
    out = write_html(slide_report(result), path, tmp_path / "report.html")
    text, tags = _parse(out)
    assert "slide images unavailable" in text and "Bogus marker length" in text
    assert not [t for t, _ in tags if t == "img"]  # no thumbnail, no crops, no histogram (no detections)


def test_a_different_slide_is_refused(
    scored_result: SlideResult, openslide_fixtures: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        ValueError, match="small.svs is 16x16 px but the report of slide7.tiff is for a 1024x1024"
    ):
        write_html(slide_report(scored_result), openslide_fixtures / "small.svs", tmp_path / "report.html")
