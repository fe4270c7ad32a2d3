"""Pyramidal whole-slide images of a thin-layer (ThinPrep-like) preparation, with level-0 ground truth.

Formats (``SLIDE_FORMATS``), all tiled JPEG (YCbCr 4:2:0) written with tifffile, levels halved until the
smallest is at most 1024 px on its long side:

- ``tiff``: generic tiled TIFF, one page per level (SubFileType 1 for reduced levels), X/YResolution in
  pixels per centimetre; OpenSlide's generic-tiff driver reads the levels and ``openslide.mpp-x``.
- ``aperio``: Aperio-like SVS: the level-0 ImageDescription starts with ``Aperio Image Library`` and carries
  ``AppMag`` and ``MPP``; page 1 is a stripped thumbnail, the reduced levels follow, as in scanner output.
  There is no label or macro image, and no date, user or file name in the descriptions.
- ``ome``: OME-TIFF with the reduced levels in SubIFDs and PhysicalSizeX/Y in the OME-XML; tifffile reads the
  pyramid, OpenSlide only its first level.

Ground truth goes to ``<slide path>.cells.json`` (e.g. ``slide.svs.cells.json``): every cell's level-0 box
[x0, y0, x1, y1] (x1, y1 exclusive; the box of its instance mask), class name, the slide label, size and mpp;
and what the adequacy and focus checks of a screening product are tested against: the cellularity
(``density``), the squamous cell count, the cellular area, and the out-of-focus regions with the cellular
area and squamous cells inside them (see :func:`make_slide`, docs/synth.md).

Glossary
    region      (x0, y0, x1, y1) int level-0 px, x1/y1 exclusive.
    blurred     a cell whose box centre lies in a blurred region.
    cellular area  the union of the annotated cells' instance masks (clutter not included), measured on the
                level-0 points (4 i + 2, 4 j + 2): each covered point counts 16 px^2.

Speed: cells are laid out for the whole slide first, then level 0 is rendered in 1024 px blocks, each drawing
only the cells that touch it, on a thread pool that also JPEG-encodes the block's tiles and area-downsamples
it for level 1. The byte output depends only on the arguments and the library versions (no time stamps).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from numbers import Integral
from pathlib import Path
from typing import Any

import cv2
import imagecodecs
import numpy as np
import tifffile
from tqdm import tqdm

from cytolt import __version__
from cytolt.category_stats import instances_per_class
from cytolt.synth import cells
from cytolt.synth.classes import (
    ABNORMAL_CLASSES,
    CLASSES,
    NORMAL_DENSITY_PER_MM2,
    ORGANISM_RATES,
    SLIDE_LABELS,
    SQUAMOUS_CLASSES,
    check_label,
)
from cytolt.synth.render import (
    Defocus,
    Illumination,
    Stain,
    SynthObject,
    Textures,
    mask_box,
    object_mask,
    render_region,
)

SLIDE_FORMATS = ("tiff", "aperio", "ome")
# Level-0 rendering block (px); a multiple of every allowed tile size.
BLOCK = 1024
# Margin drawn around each block so the focus blur matches across blocks; render_region widens it when the
# blur needs more, up to the textures' window (BLOCK + 2 * MAX_MARGIN, enough for mpp >= 0.05).
MARGIN = 16
MAX_MARGIN = 64
# Stop adding levels once the long side is at most this (OpenSlide and viewers want a small top level).
SMALLEST_LEVEL = 1024
THUMBNAIL = 768
# Out-of-focus blur (Gaussian sigma, microns) of blurred regions. A 40x/0.75 NA objective has a depth of field
# of about 1 um (Inoue & Spring, *Video Microscopy*, 2nd ed., 1997): a ThinPrep layer 10-20 um off the focal
# plane spreads a point over a disc several microns wide. At sigma 3 um (12 px at 0.25 um/px) chromatin grain
# (0.35 um) and clumps (1 um) vanish, nuclear edges spread over ~6 um and a 7-um nucleus is a faint blob: the
# kind of field a focus check must reject, while cells stay visible as cells.
BLUR_SIGMA_UM = 3.0
# Spacing (level-0 px) of the points on which the cellular area is measured.
AREA_STEP = 4
# Cellularity (density) accepted by make_slide: 0 (blank glass) up to 5 x the normal density.
MAX_DENSITY = 5.0
# Most cells of one class make_slide(abnormal=...) plants (a guard against typos such as 30000 for 3).
MAX_ABNORMAL = 10_000


Region = tuple[int, int, int, int]

# make_slide(blur=...) names -> the region(s) they blur, from the slide's (width, height).
BLUR_PRESETS: dict[str, Callable[[int, int], tuple[Region, ...]]] = {
    "half": lambda w, h: ((w // 2, 0, w, h),),  # the right half
    "all": lambda w, h: ((0, 0, w, h),),
}


@dataclass(frozen=True)
class SlideCell:
    """One ground-truth cell: ``box`` (x0, y0, x1, y1) level-0 px, x1/y1 exclusive; ``label`` a class name;
    ``blurred`` whether the box centre lies in a blurred region."""

    box: tuple[int, int, int, int]
    label: str
    blurred: bool = False


@dataclass(frozen=True)
class SlideTruth:
    """What :func:`make_slide` wrote: the slide file, its ground-truth file and what they contain.

    size: (width, height) level-0 px; mpp: microns per pixel at level 0; level_sizes: (width, height) per level;
    density: the cellularity multiplier; abnormal: the exact abnormal counts asked for (None: drawn from the
    label); blur_regions: blurred regions (level-0, x1/y1 exclusive), () when none; blur_sigma_um: their extra
    Gaussian blur (None when none); cellular_area_px2 and blurred_cellular_area_px2: the cellular area of the
    slide and its part inside blur_regions, level-0 px^2.
    """

    path: Path
    cells_path: Path
    label: str
    format: str
    size: tuple[int, int]
    mpp: float
    level_sizes: tuple[tuple[int, int], ...]
    cells: tuple[SlideCell, ...]
    density: float = 1.0
    abnormal: dict[str, int] | None = None
    blur_regions: tuple[Region, ...] = ()
    blur_sigma_um: float | None = None
    cellular_area_px2: int = 0
    blurred_cellular_area_px2: int = 0

    def counts(self) -> dict[str, int]:
        """Number of cells per class, for every class in :data:`~cytolt.synth.CLASSES`."""
        labels = [CLASSES.index(c.label) for c in self.cells]
        return dict(zip(CLASSES, instances_per_class(labels, len(CLASSES)).tolist(), strict=True))

    @property
    def squamous_cells(self) -> int:
        """Number of squamous cells (:data:`~cytolt.synth.classes.SQUAMOUS_CLASSES`), blurred or not."""
        return sum(c.label in SQUAMOUS_CLASSES for c in self.cells)

    @property
    def squamous_cells_blurred(self) -> int:
        """Number of squamous cells in blurred regions."""
        return sum(c.label in SQUAMOUS_CLASSES and c.blurred for c in self.cells)

    @property
    def blurred_cellular_fraction(self) -> float:
        """Share of the cellular area inside blurred regions (0.0 on a slide without cells)."""
        return self.blurred_cellular_area_px2 / self.cellular_area_px2 if self.cellular_area_px2 else 0.0


def cells_path_for(slide_path: str | Path) -> Path:
    """Ground-truth path of a slide: the slide path with ``.cells.json`` appended (``a.svs`` -> ``a.svs.cells.json``)."""
    slide_path = Path(slide_path)
    return slide_path.with_name(slide_path.name + ".cells.json")


def level_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """(width, height) of each pyramid level: halved (rounding up) until the long side is <= 1024 px."""
    sizes = [(width, height)]
    while max(sizes[-1]) > SMALLEST_LEVEL:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


@dataclass
class _Layout:
    objects: list[SynthObject]  # annotated cells first, then clutter
    n_cells: int
    stain: Stain
    illumination: Illumination
    textures: Textures
    margin: int  # the widest margin a block is drawn with (level-0 px)


def _layout(
    width: int,
    height: int,
    *,
    mpp: float,
    seed: int,
    label: str,
    density: float = 1.0,
    abnormal: dict[str, int] | None = None,
    defocus: Defocus | None = None,
) -> _Layout:
    """Place every object of the slide: a round thin-layer spot with patchy density, normal cells at
    ``density`` x :data:`NORMAL_DENSITY_PER_MM2`, the abnormal cells of ``label`` (or exactly ``abnormal``) and
    maybe organisms (thinned when ``density`` < 1), then clutter (scaled by ``density``).

    With the defaults the random draws are those of the generator before ``density`` and ``abnormal`` existed,
    so old arguments give the old slides byte for byte. ``defocus`` only widens the margin blocks are drawn
    with (and so the textures' padding), not what is drawn."""
    rng = np.random.default_rng([seed, 0x51DE])
    stain = Stain.sample(rng)
    illumination = Illumination.sample(rng, period_px=rng.uniform(1500.0, 3000.0) / mpp)
    margin = max(MAX_MARGIN, defocus.reach(stain.blur_um / mpp)) if defocus is not None else MAX_MARGIN
    textures = Textures(
        np.random.default_rng([seed, 0x7E4]), mpp=mpp, period=1024, max_window=BLOCK + 2 * margin
    )
    cx = width / 2.0 * rng.uniform(0.97, 1.03)
    cy = height / 2.0 * rng.uniform(0.97, 1.03)
    radius = 0.47 * min(width, height) * rng.uniform(0.9, 1.0)
    # Patchy density: smooth noise on an 8 x 8 grid over the spot, bilinearly interpolated.
    grid = cv2.GaussianBlur(rng.uniform(0.0, 1.0, (8, 8)).astype(np.float32), (0, 0), 1.0)
    grid = (grid - grid.min()) / max(float(np.ptp(grid)), 1e-6)

    def spot_density(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u = np.clip((x - (cx - radius)) / (2 * radius) * 7, 0, 7)
        v = np.clip((y - (cy - radius)) / (2 * radius) * 7, 0, 7)
        iu, iv = np.minimum(u.astype(int), 6), np.minimum(v.astype(int), 6)
        fu, fv = u - iu, v - iv
        d = (
            grid[iv, iu] * (1 - fu) * (1 - fv)
            + grid[iv, iu + 1] * fu * (1 - fv)
            + grid[iv + 1, iu] * (1 - fu) * fv
            + grid[iv + 1, iu + 1] * fu * fv
        )
        r = np.hypot(x - cx, y - cy) / radius
        # Denser in the middle of the spot, thinning over the outer 15 % of its radius; none outside.
        edge = np.clip((1.0 - r) / 0.15, 0.0, 1.0)
        return np.clip(0.15 + 1.1 * d, 0.0, 1.0) * edge

    def sample_positions(n: int) -> np.ndarray:
        """n positions inside the spot, thinned by the density field (rejection sampling)."""
        out = np.zeros((0, 2))
        while len(out) < n:
            k = max(2 * (n - len(out)), 16)
            x = rng.uniform(cx - radius, cx + radius, k)
            y = rng.uniform(cy - radius, cy + radius, k)
            keep = rng.uniform(0.0, 1.0, k) < spot_density(x, y)
            out = np.vstack([out, np.stack([x[keep], y[keep]], axis=1)])
        return out[:n]

    spot_mm2 = math.pi * (radius * mpp / 1000.0) ** 2
    # Mean of the density field over the spot, to turn per-mm^2 rates into counts.
    probe = _uniform_in_disk(rng, cx, cy, radius, 4000)
    fill = float(spot_density(probe[:, 0], probe[:, 1]).mean())

    names: list[str] = []
    for name, per_mm2 in NORMAL_DENSITY_PER_MM2.items():
        names += [name] * int(rng.poisson(per_mm2 * spot_mm2 * fill * density))
    positions = list(sample_positions(len(names)))
    # An exact count is the range (n, n): the draw is kept, so the rest of the slide stays the label's.
    spans = SLIDE_LABELS[label] if abnormal is None else {name: (n, n) for name, n in abnormal.items()}
    for name, (lo, hi) in spans.items():
        n = int(rng.integers(lo, hi + 1))
        pts = sample_positions(n)
        for i in range(1, n):
            # Abnormal cells often come in small groups: half of them sit next to the previous one.
            if rng.random() < 0.5:
                step = rng.uniform(20.0, 45.0) / mpp
                phi = rng.uniform(0, 2 * np.pi)
                pts[i] = pts[i - 1] + step * np.array([np.cos(phi), np.sin(phi)])
        names += [name] * n
        positions += list(pts)
    for name, (p, (lo, hi)) in ORGANISM_RATES.items():
        if rng.random() < p:
            n = int(rng.integers(lo, hi + 1))
            if density < 1.0:
                n = int(rng.binomial(n, density))
            names += [name] * n
            positions += list(sample_positions(n))
    objects = [
        cells.build(
            name, rng, float(np.clip(x, 0, width - 1)), float(np.clip(y, 0, height - 1)), mpp=mpp, stain=stain
        )
        for name, (x, y) in zip(names, positions, strict=True)
    ]
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    clutter = [
        o
        for o in cells.build_clutter(
            rng, (2 * radius * mpp / 1000.0) ** 2 * density, box, mpp=mpp, stain=stain
        )
        if math.hypot(o.center[0] - cx, o.center[1] - cy) < radius
    ]
    return _Layout(objects + clutter, len(objects), stain, illumination, textures, margin)


def _uniform_in_disk(rng: np.random.Generator, cx: float, cy: float, radius: float, n: int) -> np.ndarray:
    """(n, 2) points uniform in the disk of ``radius`` px around (cx, cy)."""
    r = radius * np.sqrt(rng.uniform(0.0, 1.0, n))
    t = rng.uniform(0.0, 2 * np.pi, n)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _cell_boxes(
    objects: Sequence[SynthObject], width: int, height: int
) -> tuple[list[SlideCell], np.ndarray]:
    """Level-0 boxes of the annotated objects from their instance masks, clipped to the slide, and the
    cellular area: (ceil(height / 4), ceil(width / 4)) bool, True where the point (4 i + 2, 4 j + 2) lies in
    some cell's mask."""
    out = []
    step, phase = AREA_STEP, AREA_STEP // 2
    covered = np.zeros((-(-height // step), -(-width // step)), bool)
    for obj in objects:
        x0 = max(int(math.floor(obj.bbox[0])), 0)
        y0 = max(int(math.floor(obj.bbox[1])), 0)
        x1 = min(int(math.ceil(obj.bbox[2])) + 1, width)
        y1 = min(int(math.ceil(obj.bbox[3])) + 1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = object_mask(obj, x0=x0, y0=y0, width=x1 - x0, height=y1 - y0)
        box = mask_box(mask)
        if box is None:
            continue
        assert obj.label is not None
        out.append(SlideCell((box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0), obj.label))
        # The mask's pixels on the area grid: first sample column/row at or after x0/y0.
        sx, sy = (phase - x0) % step, (phase - y0) % step
        points = mask[sy::step, sx::step]
        gx, gy = (x0 + sx) // step, (y0 + sy) // step
        covered[gy : gy + points.shape[0], gx : gx + points.shape[1]] |= points
    return out, covered


def _on_grid(regions: Sequence[Region], shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool: True where the area grid's point (4 i + 2, 4 j + 2) lies in one of ``regions``."""
    step, phase = AREA_STEP, AREA_STEP // 2
    inside = np.zeros(shape, bool)
    for x0, y0, x1, y1 in regions:
        # Points p = step * i + phase with x0 <= p < x1.
        i0, i1 = -(-(x0 - phase) // step), -(-(x1 - phase) // step)
        j0, j1 = -(-(y0 - phase) // step), -(-(y1 - phase) // step)
        inside[max(j0, 0) : j1, max(i0, 0) : i1] = True
    return inside


def _in_regions(box: Region, regions: Sequence[Region]) -> bool:
    """Whether the centre of ``box`` lies in one of ``regions``."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    return any(x0 <= cx < x1 and y0 <= cy < y1 for x0, y0, x1, y1 in regions)


def _buckets(
    objects: Sequence[SynthObject], nx: int, ny: int, margin: int = MAX_MARGIN
) -> list[list[SynthObject]]:
    """Objects per rendering block (row-major), by bbox plus ``margin`` (the largest a block is drawn with)."""
    out: list[list[SynthObject]] = [[] for _ in range(nx * ny)]
    for obj in objects:
        x0, y0, x1, y1 = obj.bbox
        bx0 = max(int((x0 - margin) // BLOCK), 0)
        by0 = max(int((y0 - margin) // BLOCK), 0)
        bx1 = min(int((x1 + margin) // BLOCK), nx - 1)
        by1 = min(int((y1 + margin) // BLOCK), ny - 1)
        for by in range(by0, by1 + 1):
            for bx in range(bx0, bx1 + 1):
                out[by * nx + bx].append(obj)
    return out


def _jpeg(tile: np.ndarray, quality: int) -> bytes:
    # Same call tifffile makes for compression='jpeg' on RGB with the default 4:2:0 subsampling.
    return imagecodecs.jpeg_encode(
        tile, level=quality, colorspace="RGB", outcolorspace="YCBCR", subsampling=(2, 2)
    )


def _ome_xml(width: int, height: int, mpp: float) -> str:
    """Minimal OME-XML (2016-06) for one interleaved RGB uint8 image; no UUID, date or file name, so the output
    is stable and carries nothing about where it was written.

    PhysicalSizeX/Y carry no unit attribute: the schema's default unit is the micron, and TIFF strings must be
    ASCII (no "\u00b5")."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.openmicroscopy.org/Schemas/OME/2016-06 '
        'http://www.openmicroscopy.org/Schemas/OME/2016-06/ome.xsd" '
        f'Creator="cytolt {__version__}">'
        '<Image ID="Image:0" Name="cytolt synthetic slide">'
        f'<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{width}" SizeY="{height}" '
        f'SizeC="3" SizeZ="1" SizeT="1" Interleaved="true" SignificantBits="8" '
        f'PhysicalSizeX="{mpp}" PhysicalSizeY="{mpp}">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="3"><LightPath/></Channel>'
        '<TiffData IFD="0" PlaneCount="1"/>'
        "</Pixels></Image></OME>"
    )


def _aperio_description(
    width: int, height: int, level: tuple[int, int] | None, *, tile: int, quality: int, mpp: float
) -> str:
    """Aperio-style ImageDescription; ``level`` None for level 0, else the reduced (width, height)."""
    head = f"Aperio Image Library (cytolt {__version__} synthetic)\r\n"
    if level is None:
        head += f"{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) JPEG/RGB Q={quality}"
    else:
        head += f"{width}x{height} -> {level[0]}x{level[1]} - ({tile}x{tile}) JPEG/RGB Q={quality}"
    app_mag = round(10.0 / mpp)  # 0.25 um/px is the usual 40x scan, 0.5 um/px 20x
    return f"{head}|AppMag = {app_mag}|MPP = {mpp:.4f}"


def make_slide(
    out_path: str | Path,
    *,
    size: tuple[int, int],
    mpp: float = 0.25,
    format: str = "tiff",  # noqa: A002 - the name the CLI and the brief use
    seed: int = 0,
    label: str = "NILM",
    tile: int = 256,
    quality: int = 90,
    workers: int = 2,
    progress: bool = False,
    blur: str | Sequence[Sequence[int]] | None = None,
    blur_sigma_um: float = BLUR_SIGMA_UM,
    density: float = 1.0,
    abnormal: Mapping[str, int] | None = None,
) -> SlideTruth:
    """Write a synthetic pyramidal slide of ``size`` = (width, height) level-0 px and its ground truth.

    ``mpp`` microns per pixel at level 0 (0.25 ~ a 40x scan); ``format`` one of :data:`SLIDE_FORMATS`;
    ``label`` a Bethesda category from :data:`~cytolt.synth.SLIDE_LABELS` fixing which abnormal cells appear
    and how many; ``tile`` the TIFF tile side (a multiple of 16 that divides 1024: 256 or 512 are usual);
    ``quality`` JPEG quality; ``workers`` threads rendering and encoding. Returns a :class:`SlideTruth`.

    Specimen quality, for testing adequacy and focus checks (the defaults change nothing):

    - ``blur``: regions rendered out of focus, at every level: ``"half"`` (the right half, x >= width // 2),
      ``"all"``, or (x0, y0, x1, y1) level-0 rectangles inside the slide (x1/y1 exclusive). They get a further
      Gaussian blur of ``blur_sigma_um`` microns (default :data:`BLUR_SIGMA_UM`) on top of the usual focus blur.
    - ``density``: cellularity, a multiplier (0-5) of the normal cells, clutter and, below 1, organisms; 0 is
      blank glass (stain and illumination kept). Abnormal cells come from ``label`` / ``abnormal`` whatever it is.
    - ``abnormal``: exact abnormal cell counts, e.g. ``{"hsil": 2}``, instead of the label's drawn ones; the
      classes it leaves out get none (so ``label="HSIL", abnormal={"hsil": 2}`` has two abnormal cells). The
      label is recorded as given.
    """
    if format not in SLIDE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(SLIDE_FORMATS)}; got {format!r}")
    check_label(label)
    width, height = (int(v) for v in size)
    if width < 64 or height < 64:
        raise ValueError(f"size must be at least 64 x 64 px; got {width} x {height}")
    if tile % 16 or BLOCK % tile or tile < 64:
        raise ValueError(
            f"tile must be a multiple of 16 dividing {BLOCK} (64, 128, 256, 512, 1024); got {tile}"
        )
    if not 0.05 <= mpp <= 10:
        raise ValueError(f"mpp must be between 0.05 and 10 microns per pixel; got {mpp}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if not 0.0 <= density <= MAX_DENSITY:
        raise ValueError(
            f"density must be between 0 and {MAX_DENSITY:g} (1 = normal cellularity); got {density}"
        )
    regions = _blur_regions(blur, width, height)
    defocus = _defocus_for(regions, blur_sigma_um, mpp)
    wanted = _abnormal_counts(abnormal)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    layout = _layout(
        width, height, mpp=mpp, seed=seed, label=label, density=density, abnormal=wanted, defocus=defocus
    )
    truth_cells, covered = _cell_boxes(layout.objects[: layout.n_cells], width, height)
    truth_cells = [replace(c, blurred=True) if _in_regions(c.box, regions) else c for c in truth_cells]
    sizes = level_sizes(width, height)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # our own pool parallelises; OpenCV's threads would oversubscribe the cores
    try:
        _write_tiff(
            out_path,
            layout,
            sizes,
            fmt=format,
            mpp=mpp,
            tile=tile,
            quality=quality,
            workers=workers,
            progress=progress,
            defocus=defocus,
        )
    finally:
        cv2.setNumThreads(threads)

    step2 = AREA_STEP * AREA_STEP
    truth = SlideTruth(
        path=out_path,
        cells_path=cells_path_for(out_path),
        label=label,
        format=format,
        size=(width, height),
        mpp=float(mpp),
        level_sizes=tuple(sizes),
        cells=tuple(truth_cells),
        density=float(density),
        abnormal=wanted,
        blur_regions=regions,
        blur_sigma_um=float(blur_sigma_um) if regions else None,
        cellular_area_px2=int(covered.sum()) * step2,
        blurred_cellular_area_px2=int((covered & _on_grid(regions, covered.shape)).sum()) * step2,
    )
    _write_cells_json(truth, seed=seed)
    return truth


def _blur_regions(blur: str | Sequence[Sequence[int]] | None, width: int, height: int) -> tuple[Region, ...]:
    """The level-0 regions ``make_slide(blur=...)`` names, checked to lie inside the slide."""
    if blur is None:
        return ()
    if isinstance(blur, str):
        if blur not in BLUR_PRESETS:
            raise ValueError(
                f"blur must be one of {', '.join(map(repr, BLUR_PRESETS))} or a sequence of "
                f"(x0, y0, x1, y1) level-0 rectangles; got {blur!r}"
            )
        return BLUR_PRESETS[blur](width, height)
    regions = []
    for region in blur:
        try:
            x0, y0, x1, y1 = (int(v) for v in region)
        except (TypeError, ValueError):
            raise ValueError(f"each blur region must be (x0, y0, x1, y1) integers; got {region!r}") from None
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"blur region must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height} (level-0 px, "
                f"x1/y1 exclusive); got {region!r}"
            )
        regions.append((x0, y0, x1, y1))
    return tuple(regions)


def _defocus_for(regions: tuple[Region, ...], sigma_um: float, mpp: float) -> Defocus | None:
    """The renderer's :class:`Defocus` for ``regions``; None when there are none."""
    sigma_px = sigma_um / mpp
    if not (sigma_um > 0 and sigma_px <= 128):
        raise ValueError(
            f"blur_sigma_um must be > 0 and at most 128 px ({128 * mpp:g} um here); got {sigma_um}"
        )
    return Defocus(sigma_px, regions) if regions else None


def _abnormal_counts(abnormal: Mapping[str, int] | None) -> dict[str, int] | None:
    """``abnormal`` checked and ordered as :data:`~cytolt.synth.CLASSES` (so the slide does not depend on the
    mapping's order); None stays None."""
    if abnormal is None:
        return None
    unknown = sorted(set(abnormal) - set(ABNORMAL_CLASSES))
    if unknown:
        raise ValueError(
            f"abnormal classes must be among {', '.join(ABNORMAL_CLASSES)}; got {', '.join(unknown)}"
        )
    out = {}
    for name in ABNORMAL_CLASSES:
        if name in abnormal:
            n = abnormal[name]
            if isinstance(n, bool) or not isinstance(n, Integral) or not 0 <= n <= MAX_ABNORMAL:
                raise ValueError(f"abnormal count of {name} must be an integer 0-{MAX_ABNORMAL}; got {n!r}")
            out[name] = int(n)
    return out


def _write_cells_json(truth: SlideTruth, *, seed: int) -> None:
    data: dict[str, Any] = {
        "slide": truth.path.name,
        "generator": f"cytolt {__version__} synth",
        "seed": seed,
        "label": truth.label,
        "format": truth.format,
        "width": truth.size[0],
        "height": truth.size[1],
        "mpp": truth.mpp,
        "levels": [list(s) for s in truth.level_sizes],
        "classes": list(CLASSES),
        "counts": truth.counts(),
        "density": truth.density,
        "abnormal": truth.abnormal,
        "squamous_cells": truth.squamous_cells,
        "cellular_area_px2": truth.cellular_area_px2,
        "blur_sigma_um": truth.blur_sigma_um,
        "blur_regions": [list(r) for r in truth.blur_regions],
        "blurred_cellular_area_px2": truth.blurred_cellular_area_px2,
        "blurred_cellular_fraction": round(truth.blurred_cellular_fraction, 6),
        "squamous_cells_blurred": truth.squamous_cells_blurred,
        "cells": [_cell_json(c) for c in truth.cells],
    }
    truth.cells_path.write_text(json.dumps(data, separators=(",", ":")) + "\n")


def _cell_json(cell: SlideCell) -> dict[str, Any]:
    """A cell's ground-truth record; ``"blurred": true`` only on blurred cells (old files stay as they were)."""
    record: dict[str, Any] = {"box": list(cell.box), "class": cell.label}
    if cell.blurred:
        record["blurred"] = True
    return record


def _write_tiff(
    path: Path,
    layout: _Layout,
    sizes: list[tuple[int, int]],
    *,
    fmt: str,
    mpp: float,
    tile: int,
    quality: int,
    workers: int,
    progress: bool,
    defocus: Defocus | None = None,
) -> None:
    width, height = sizes[0]
    nx, ny = math.ceil(width / BLOCK), math.ceil(height / BLOCK)
    buckets = _buckets(layout.objects, nx, ny, layout.margin)
    per_block = BLOCK // tile
    # Level 0 halved, padded to whole blocks: the source of level 1 (and of the thumbnail).
    half_image = np.empty((ny * BLOCK // 2, nx * BLOCK // 2, 3), np.uint8)

    def block_job(index: int) -> list[list[bytes]]:
        """Render block ``index``, keep its half-size copy for level 1, return its JPEG tiles by row."""
        by, bx = divmod(index, nx)
        img = render_region(
            buckets[index],
            x0=bx * BLOCK,
            y0=by * BLOCK,
            width=BLOCK,
            height=BLOCK,
            mpp=mpp,
            stain=layout.stain,
            textures=layout.textures,
            illumination=layout.illumination,
            margin=MARGIN,
            defocus=defocus,
        )
        half = BLOCK // 2
        half_image[by * half : (by + 1) * half, bx * half : (bx + 1) * half] = cv2.resize(
            img, (half, half), interpolation=cv2.INTER_AREA
        )
        return [
            [
                _jpeg(img[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile], quality)
                for c in range(per_block)
            ]
            for r in range(per_block)
        ]

    tiles_x = math.ceil(width / tile)
    tiles_y = math.ceil(height / tile)
    bar = tqdm(total=tiles_x * tiles_y, desc="level 0 tiles", unit="tile", disable=not progress)

    def level0_tiles(pool: ThreadPoolExecutor) -> Iterator[bytes]:
        # All blocks are queued at once; results are consumed in order, so memory holds the encoded tiles
        # waiting to be written plus the half-size image (a quarter of level 0).
        futures = [pool.submit(block_job, i) for i in range(nx * ny)]
        for by in range(ny):
            rows = [futures[by * nx + bx].result() for bx in range(nx)]
            for r in range(per_block):
                if by * per_block + r >= tiles_y:
                    break
                for bx in range(nx):
                    for c in range(per_block):
                        if bx * per_block + c < tiles_x:
                            bar.update()
                            yield rows[bx][r][c]
            for bx in range(nx):
                futures[by * nx + bx] = None  # type: ignore[call-overload]  # free the encoded tiles

    common: dict[str, Any] = {
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": quality},
        "tile": (tile, tile),
        "resolutionunit": "CENTIMETER",
        "metadata": None,
        "software": f"cytolt {__version__}",
        "maxworkers": workers,
    }
    bigtiff = width * height * 3 > 2**32 - 2**28
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw, ThreadPoolExecutor(workers) as pool:
        res0 = (1e4 / mpp, 1e4 / mpp)
        if fmt == "aperio":
            desc = _aperio_description(width, height, None, tile=tile, quality=quality, mpp=mpp)
        elif fmt == "ome":
            desc = _ome_xml(width, height, mpp)
        else:
            desc = None
        tw.write(
            level0_tiles(pool),
            shape=(height, width, 3),
            dtype=np.uint8,
            resolution=res0,
            description=desc,
            subifds=len(sizes) - 1 if fmt == "ome" else None,
            **common,
        )
        bar.close()
        levels = _reduced_levels(half_image, sizes)
        if fmt == "aperio":
            source = levels[-1] if levels else half_image[: (height + 1) // 2, : (width + 1) // 2]
            thumb = _thumbnail(source)
            tw.write(
                thumb,
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": quality},
                rowsperstrip=16,
                metadata=None,
                software=common["software"],
                description=_aperio_description(
                    width, height, (thumb.shape[1], thumb.shape[0]), tile=tile, quality=quality, mpp=mpp
                ),
            )
        for k, img in enumerate(levels, start=1):
            down = width / img.shape[1]
            desc = None
            # Aperio marks no level as reduced (tifffile's SVS reader stops at a reduced page); TIFF and OME do.
            subfiletype = 1
            if fmt == "aperio":
                desc = _aperio_description(width, height, sizes[k], tile=tile, quality=quality, mpp=mpp)
                subfiletype = 0
            tw.write(
                img,
                resolution=(res0[0] / down, res0[1] / down),
                subfiletype=subfiletype,
                description=desc,
                **common,
            )


def _reduced_levels(half: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Images of levels 1.. : level 1 is ``half`` (level 0 area-averaged 2x2, padded) cropped to its size,
    each further level is area-averaged from the one above."""
    levels: list[np.ndarray] = []
    for w, h in sizes[1:]:
        if not levels:
            levels.append(np.ascontiguousarray(half[:h, :w]))
        else:
            levels.append(cv2.resize(levels[-1], (w, h), interpolation=cv2.INTER_AREA))
    return levels


def _thumbnail(source: np.ndarray) -> np.ndarray:
    """Aperio's page-1 thumbnail: ``source`` area-downsampled to at most 768 px on its long side."""
    h, w = source.shape[:2]
    scale = min(1.0, THUMBNAIL / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return np.ascontiguousarray(source)
    return cv2.resize(source, size, interpolation=cv2.INTER_AREA)
