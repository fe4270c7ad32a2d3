"""``report.html``: one self-contained page per slide, rendered from its ``report.json`` and the slide itself.

The page holds the call and slide score, the cells behind them, a slide thumbnail with the gallery cells drawn
in their class colours, a per-class gallery of the top cells (crops read from the slide), the score histogram
(matplotlib) and the stage timings. Every image is inline (base64 data URIs) and so is the style sheet: the file
opens anywhere, mailed or archived, and fetches nothing (no URL at all). Slide pixels are JPEG (quality 90) and
the plot PNG: as PNG, the thumbnail and gallery of a synthetic slide took 3.5 MB per page, as JPEG 0.65 MB (2048 px HSIL slide, 69 images).

Crops cover a cell and its surroundings: ``crop_px`` pixels at the model's mpp (64 um at 0.5 um/px), or 1.5x
the cell when it is larger, read from the pyramid level nearest that scale and shown at ``crop_px``
(:func:`cytolt.report.thumbnails.cell_thumbnail`, which the napari review widget's gallery uses too).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cytolt.io import Slide, SlideError, open_slide
from cytolt.report.json_report import class_colors, validate_report
from cytolt.report.thumbnails import cell_thumbnail

__all__ = ["write_html"]

THUMBNAIL_PX = 1024
CROP_PX = 128
JPEG_QUALITY = 90
CROP_CONTEXT = 1.5  # a crop spans 1.5x the cell's longer side when the cell outgrows crop_px


def write_html(
    report: Mapping[str, Any],
    slide: Slide | str | os.PathLike[str] | None,
    path: str | os.PathLike[str],
    *,
    thumbnail_px: int = THUMBNAIL_PX,
    crop_px: int = CROP_PX,
) -> Path:
    """Write the HTML page of ``report`` (a :func:`~cytolt.report.slide_report` dict) to ``path``.

    ``slide`` is the screened slide (an open :class:`~cytolt.io.Slide`, left open, or its path) for the
    thumbnail and crops; None, a failed slide, or a slide that no longer reads gives a page without images
    that says why. Returns ``path``.
    """
    import jinja2

    validate_report(report)
    colors = class_colors(report)
    images: dict[str, Any] = {"thumbnail": None, "gallery": {}, "evidence": [], "focus": None, "note": None}
    if report["status"] == "done" and slide is not None:
        try:
            images = _slide_images(report, slide, colors, thumbnail_px=thumbnail_px, crop_px=crop_px)
        except SlideError as exc:
            images["note"] = f"slide images unavailable: {exc.cause}"
    elif report["status"] == "done":
        images["note"] = "slide images not rendered (no slide given)"
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cytolt.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        report=report,
        images=images,
        histogram=_histogram_png(report, colors),
        colors={name: "#{:02x}{:02x}{:02x}".format(*c) for name, c in colors.items()},
    )
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path


# -- images ---------------------------------------------------------------------------------------------------


def _slide_images(
    report: Mapping[str, Any],
    slide: Slide | str | os.PathLike[str],
    colors: Mapping[str, tuple[int, int, int]],
    *,
    thumbnail_px: int,
    crop_px: int,
) -> dict[str, Any]:
    owned = not isinstance(slide, Slide)
    given = report["slide"]["mpp"] if report["slide"].get("mpp_source") == "given" else None
    handle = open_slide(slide, mpp=tuple(given) if given else None) if owned else slide
    try:
        expected = report["slide"]["dimensions"]
        if expected is not None and list(handle.dimensions) != list(expected):
            raise ValueError(
                f"{handle.path} is {handle.dimensions[0]}x{handle.dimensions[1]} px but the report of "
                f"{report['slide']['name']} is for a {expected[0]}x{expected[1]} px slide"
            )
        tile_mpp = report["tiles"]["mpp"]
        slide_mpp = handle.mpp
        # level-0 px covered by crop_px pixels at the model's mpp (1:1 when either mpp is unknown)
        crop_l0 = crop_px * (tile_mpp[0] / slide_mpp[0] if tile_mpp and slide_mpp else 1.0)
        gallery = {
            name: [_gallery_item(handle, cell, colors[name], crop_l0, crop_px) for cell in cells]
            for name, cells in report["top_cells"].items()
            if cells
        }
        evidence = [
            _gallery_item(handle, c, colors[c["class"]], crop_l0, crop_px) for c in report["evidence"]
        ]
        shown = [c for cells in report["top_cells"].values() for c in cells] + list(report["evidence"])
        thumbnail = _thumbnail_png(handle, shown, colors, thumbnail_px)
        focus = _focus_map(handle, report.get("focus"), thumbnail_px)
    finally:
        if owned:
            handle.close()
    return {"thumbnail": thumbnail, "gallery": gallery, "evidence": evidence, "focus": focus, "note": None}


def _data_uri(rgb: np.ndarray, fmt: str) -> str:
    """(h, w, 3) uint8 RGB as a ``data:`` URI; ``fmt`` 'png' (plots) or 'jpeg' (slide pixels)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as {fmt}")
    return f"data:image/{fmt};base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _thumbnail_png(
    slide: Slide, cells: Sequence[Mapping[str, Any]], colors: Mapping[str, tuple[int, int, int]], size: int
) -> dict[str, Any]:
    """The slide shrunk to ``size`` px with each cell's box drawn (at least 6 px wide, so single cells show)."""
    thumb = np.ascontiguousarray(slide.thumbnail(size))
    sx = thumb.shape[1] / slide.dimensions[0]
    sy = thumb.shape[0] / slide.dimensions[1]
    for c in cells:
        x0, y0, x1, y1 = c["box"]
        cx, cy = (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy
        hw, hh = max((x1 - x0) * sx, 6) / 2, max((y1 - y0) * sy, 6) / 2
        p0 = (int(round(cx - hw)), int(round(cy - hh)))
        p1 = (int(round(cx + hw)), int(round(cy + hh)))
        cv2.rectangle(thumb, p0, p1, tuple(int(v) for v in colors[c["class"]]), 1)
    return {"src": _data_uri(thumb, "jpeg"), "width": thumb.shape[1], "height": thumb.shape[0]}


def _focus_map(slide: Slide, focus: Mapping[str, Any] | None, size: int) -> dict[str, Any] | None:
    """The slide thumbnail with each tile read tinted by its focus: red out of focus, green in focus."""
    if not focus or not focus["tiles"]:
        return None
    thumb = np.ascontiguousarray(slide.thumbnail(size)).astype(np.float32)
    sx = thumb.shape[1] / slide.dimensions[0]
    sy = thumb.shape[0] / slide.dimensions[1]
    tint = np.zeros_like(thumb)
    weight = np.zeros(thumb.shape[:2], np.float32)
    for x, y, w, h, sharpness, _ in focus["tiles"]:
        if sharpness is None:
            continue
        x0, y0 = int(x * sx), int(y * sy)
        x1, y1 = max(x0 + 1, int(round((x + w) * sx))), max(y0 + 1, int(round((y + h) * sy)))
        tint[y0:y1, x0:x1] = (220, 40, 40) if sharpness < focus["threshold"] else (40, 170, 60)
        weight[y0:y1, x0:x1] = 0.45
    out = thumb * (1 - weight[..., None]) + tint * weight[..., None]
    rgb = np.clip(out, 0, 255).astype(np.uint8)
    return {"src": _data_uri(rgb, "jpeg"), "width": rgb.shape[1], "height": rgb.shape[0]}


def _gallery_item(
    slide: Slide, cell: Mapping[str, Any], color: tuple[int, int, int], crop_l0: float, crop_px: int
) -> dict[str, Any]:
    crop = cell_thumbnail(
        slide, cell["box"], size=crop_px, context=CROP_CONTEXT, min_side=crop_l0, color=color
    )
    return {**cell, "src": _data_uri(crop, "jpeg")}


def _histogram_png(report: Mapping[str, Any], colors: Mapping[str, tuple[int, int, int]]) -> str | None:
    """Detections per score bin, one step line per class, log count axis; None without detections."""
    counts = report["score_histogram"]["counts"]
    if not any(sum(v) for v in counts.values()):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    edges = np.asarray(report["score_histogram"]["edges"])
    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, values in counts.items():
        if sum(values):
            ax.stairs(values, edges, label=name, color=np.asarray(colors[name]) / 255, linewidth=1.5)
    ax.set_yscale("log", nonpositive="mask")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(0, 1)
    ax.set_xlabel("detection score")
    ax.set_ylabel("detections (log)")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return _data_uri(np.ascontiguousarray(rgba[..., :3]), "png")
