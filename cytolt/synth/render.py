"""Papanicolaou-like rendering: objects made of filled polygons and lines, composited by optical density.

Glossary
    level-0 px   pixel coordinates (x, y) of the whole field or slide, origin top-left, float for sub-pixel shapes.
    OD           optical density per RGB channel, natural log: a pixel is ``I0 * exp(-sum of OD)``. Stained
                 cells absorb light (Beer-Lambert), so translucent overlapping cells add their densities and the
                 result does not depend on drawing order; a region can be rendered alone, clipped to a window.
    Prim         one drawing primitive: a filled polygon or a polyline, a dye OD vector scaled by density, and
                 weights of three noise textures that modulate it (chromatin grain, clumps, cytoplasm mottle).
    SynthObject  one annotated cell, cell group or organism (``label`` set) or unannotated clutter
                 (``label=None``): its prims, the prims whose union is its instance mask, and a bounding box.
    Defocus      out-of-focus rectangles of a field (level-0 px) and the extra Gaussian blur drawn inside them.

Rendering a window costs the window's pixel count (exp, blur, noise) plus the area of the prims that touch it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy import ndimage

# Sub-pixel precision for OpenCV drawing: coordinates are passed as integers in 1/16 px.
_SHIFT = 4
_SCALE = 1 << _SHIFT

FILL = 0
LINE = 1

# Dye optical densities per RGB channel at density 1 on a background of about (238, 236, 230), chosen from the
# colours of Papanicolaou-stained ThinPrep cells: hematoxylin nuclei blue-purple, light green (cyanophilic)
# cytoplasm blue-green, eosin (eosinophilic) pink, orange G (keratin) orange.
DYES: dict[str, tuple[float, float, float]] = {
    "hematoxylin": (1.00, 1.10, 0.58),
    "light_green": (0.34, 0.15, 0.14),
    "eosin": (0.02, 0.24, 0.14),
    "orange_g": (0.02, 0.36, 0.80),
    "candida": (0.32, 0.55, 0.45),
    "trichomonas": (0.40, 0.30, 0.33),
    "neutrophil": (0.12, 0.14, 0.09),
    "rbc": (0.04, 0.38, 0.40),
    "mucus": (0.07, 0.05, 0.02),
}


@dataclass(frozen=True)
class Stain:
    """Stain batch and microscope of one field or slide.

    dyes: dye name -> (3,) float32 OD vector; background: (3,) float32 RGB of clear glass (0-255);
    blur_um: focus blur (Gaussian sigma, microns).
    """

    dyes: dict[str, np.ndarray]
    background: np.ndarray
    blur_um: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Stain:
        """Draw a stain batch: dye strengths vary +-25 %, hues shift slightly, the glass tint a few grey levels."""
        dyes = {}
        for name, od in DYES.items():
            od = np.asarray(od, np.float32)
            # A per-channel jitter shifts the hue; a common factor changes the staining intensity.
            od = od * rng.uniform(0.8, 1.25) * rng.uniform(0.92, 1.08, size=3)
            dyes[name] = od.astype(np.float32)
        background = np.array([238.0, 236.0, 230.0]) + rng.normal(0.0, 2.0, size=3)
        return cls(
            dyes=dyes,
            background=np.clip(background, 215.0, 250.0).astype(np.float32),
            blur_um=float(rng.uniform(0.2, 0.45)),
        )

    def od(self, dye: str, density: float) -> np.ndarray:
        """(3,) float32 OD of ``dye`` at ``density``."""
        return self.dyes[dye] * np.float32(density)


@dataclass(frozen=True, slots=True)
class Prim:
    """A filled polygon (``kind=FILL``) or polyline (``kind=LINE``) in level-0 px.

    pts: (N, 2) float32 (x, y); od: (3,) float32; tex: weights of the (grain, clump, mottle) textures;
    width: line thickness in px (LINE only); closed: whether a LINE closes on itself.
    """

    kind: int
    pts: np.ndarray
    od: np.ndarray
    tex: tuple[float, float, float] = (0.0, 0.0, 0.0)
    width: int = 1
    closed: bool = True
    # (x0, y0, x1, y1) covering the prim and its anti-aliased edge; computed once, rendering asks often.
    box: tuple[float, float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pad = 1.0 + (self.width / 2.0 if self.kind == LINE else 0.0)
        lo = self.pts.min(axis=0)
        hi = self.pts.max(axis=0)
        box = (float(lo[0] - pad), float(lo[1] - pad), float(hi[0] + pad), float(hi[1] + pad))
        object.__setattr__(self, "box", box)


@dataclass
class SynthObject:
    """One rendered object: an annotated cell/group/organism (``label``) or clutter (``label=None``).

    prims: what is drawn; footprint: the prims whose union is the instance mask (the whole cell outline, so
    a perinuclear halo belongs to its cell); bbox: (x0, y0, x1, y1) float level-0 px covering all prims.
    """

    label: str | None
    prims: list[Prim]
    footprint: list[Prim]
    bbox: tuple[float, float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        if not self.prims:
            raise ValueError("a SynthObject needs at least one prim")
        b = np.array([p.box for p in self.prims])
        self.bbox = (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))

    def moved(self, dx: float, dy: float) -> SynthObject:
        """A copy shifted by (dx, dy) px (builders draw around a centre; placement moves them afterwards)."""
        shift = np.array([dx, dy], np.float32)
        moved = {id(p): replace(p, pts=p.pts + shift) for p in self.prims + self.footprint}
        return SynthObject(
            self.label, [moved[id(p)] for p in self.prims], [moved[id(p)] for p in self.footprint]
        )

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.bbox
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0


class Textures:
    """Periodic noise textures of one field, sliced by level-0 position so that adjacent windows match.

    Three zero-mean, unit-std Gaussian-filtered noises: grain (sigma 0.35 um, chromatin granules), clump
    (1 um, chromatin clumps and cytoplasm granularity), mottle (4 um, uneven cytoplasm); and sensor noise of
    std ``noise`` grey levels, kept as its positive and negative parts in uint8 so that it is added with
    saturating uint8 arithmetic. Each has period ``period`` px and is stored padded so that any window up to
    ``max_window`` px is a plain slice (a view, no copy).
    """

    SIGMAS_UM = (0.35, 1.0, 4.0)

    def __init__(
        self, rng: np.random.Generator, *, mpp: float, period: int, max_window: int, noise: float = 1.8
    ) -> None:
        if period < 16 or max_window < 1:
            raise ValueError(f"period must be >= 16 and max_window >= 1; got {period}, {max_window}")
        self.period = period
        self.max_window = max_window
        fields = []
        for sigma_um in self.SIGMAS_UM:
            white = rng.standard_normal((period, period), dtype=np.float32)
            smooth = ndimage.gaussian_filter(white, sigma=max(sigma_um / mpp, 0.5), mode="wrap")
            smooth /= max(float(smooth.std()), 1e-6)
            fields.append(smooth)
        sensor = np.round(noise * rng.standard_normal((period, period), dtype=np.float32))
        fields.append(np.clip(sensor, 0, 255).astype(np.uint8))
        fields.append(np.clip(-sensor, 0, 255).astype(np.uint8))
        pad = max_window
        self._fields = [np.pad(f, ((0, pad), (0, pad)), mode="wrap") for f in fields]

    def window(self, x0: int, y0: int, width: int, height: int) -> list[np.ndarray]:
        """[grain, clump, mottle] float32 and [sensor+, sensor-] uint8 slices, each (height, width), for the
        window at (x0, y0)."""
        if width > self.max_window or height > self.max_window:
            raise ValueError(f"window {width}x{height} exceeds max_window {self.max_window}")
        ox, oy = x0 % self.period, y0 % self.period
        return [f[oy : oy + height, ox : ox + width] for f in self._fields]


@dataclass(frozen=True)
class Illumination:
    """Smooth brightness I0(x, y) = background * (1 + gx(x)) * (1 + gy(y)), a separable low-frequency field.

    ``amplitude`` is the peak relative change, ``period_px`` the wavelength; ``vignette`` adds a quadratic
    fall-off of that strength towards the edges of a (``width`` x ``height``) field (0 for slides).
    """

    amplitude: float
    period_px: float
    phase: tuple[float, float]
    vignette: float = 0.0
    width: int = 1
    height: int = 1

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        *,
        period_px: float,
        vignette: float = 0.0,
        size: tuple[int, int] = (1, 1),
    ) -> Illumination:
        """Draw a field with up to 3 % brightness variation."""
        return cls(
            amplitude=float(rng.uniform(0.0, 0.03)),
            period_px=period_px,
            phase=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
            vignette=vignette,
            width=size[0],
            height=size[1],
        )

    def profiles(self, x0: int, y0: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(gx (width,), gy (height,)) multiplicative float32 profiles for the window at (x0, y0)."""
        xs = np.arange(x0, x0 + width, dtype=np.float64)
        ys = np.arange(y0, y0 + height, dtype=np.float64)
        k = 2.0 * np.pi / self.period_px
        gx = 1.0 + self.amplitude * np.cos(k * xs + self.phase[0])
        gy = 1.0 + self.amplitude * np.cos(k * ys + self.phase[1])
        if self.vignette:
            gx *= 1.0 - self.vignette * ((xs - self.width / 2.0) / self.width) ** 2
            gy *= 1.0 - self.vignette * ((ys - self.height / 2.0) / self.height) ** 2
        return gx.astype(np.float32), gy.astype(np.float32)


def _clip_window(
    bounds: tuple[float, float, float, float], ox: int, oy: int, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Integer (x0, y0, x1, y1) of ``bounds`` inside the window, relative to its origin; None when outside."""
    x0 = max(int(np.floor(bounds[0])) - ox, 0)
    y0 = max(int(np.floor(bounds[1])) - oy, 0)
    x1 = min(int(np.ceil(bounds[2])) + 1 - ox, width)
    y1 = min(int(np.ceil(bounds[3])) + 1 - oy, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _draw(canvas: np.ndarray, prim: Prim, dx: float, dy: float, value: int, line_type: int) -> None:
    """Rasterise ``prim`` shifted by (-dx, -dy) into the uint8 ``canvas`` (clipped by OpenCV)."""
    pts = np.round((prim.pts - np.array([dx, dy], np.float32)) * _SCALE).astype(np.int32)
    if prim.kind == FILL:
        cv2.fillPoly(canvas, [pts], value, line_type, shift=_SHIFT)
    else:
        cv2.polylines(canvas, [pts], prim.closed, value, max(int(prim.width), 1), line_type, shift=_SHIFT)


def blur_margin(sigma: float) -> int:
    """Pixels a Gaussian blur of ``sigma`` px reads beyond a window (OpenCV's uint8 kernel radius, 3 sigma) + 1."""
    return int(np.ceil(3.0 * sigma)) + 2


@dataclass(frozen=True)
class Defocus:
    """Out-of-focus parts of a field: inside ``regions`` ((x0, y0, x1, y1) level-0 px, x1/y1 exclusive) the
    image gets a further Gaussian blur of ``sigma`` px on top of the stain's focus blur (variances add).

    Large blurs are computed on a copy area-downsampled ``factor`` times (4 from 8 px, 2 from 4 px) and
    upsampled bilinearly, with the Gaussian narrowed so that the three together have the requested variance:
    about 10 times faster than a 12-px Gaussian at full size, and the same to a grey level or two.
    """

    sigma: float
    regions: tuple[tuple[int, int, int, int], ...]

    @property
    def factor(self) -> int:
        return 4 if self.sigma >= 8.0 else 2 if self.sigma >= 4.0 else 1

    def reach(self, focus_sigma: float) -> int:
        """Pixels around a region that its blur reads, the stain's ``focus_sigma`` px included; a multiple of
        ``factor``, so that a window widened by it keeps the downsampled grid aligned to level-0 multiples."""
        f = self.factor
        reach = blur_margin(float(np.hypot(self.sigma, focus_sigma))) + 3 * f
        return -(-reach // f) * f

    def overlaps(self, x0: int, y0: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The parts of the regions inside the window, in level-0 px."""
        out = []
        for rx0, ry0, rx1, ry1 in self.regions:
            box = (max(rx0, x0), max(ry0, y0), min(rx1, x0 + width), min(ry1, y0 + height))
            if box[0] < box[2] and box[1] < box[3]:
                out.append(box)
        return out


def _defocus(image: np.ndarray, sigma: float, factor: int) -> np.ndarray:
    """Gaussian blur of ``sigma`` px of a (H, W, 3) uint8 image whose sides are multiples of ``factor``."""
    if factor == 1:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    h, w = image.shape[:2]
    small = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    # The area average is a box of `factor` px (variance (f^2 - 1) / 12) and bilinear upsampling a tent of
    # `factor` px (variance f^2 / 6): the Gaussian supplies the rest of sigma^2.
    rest = sigma**2 - (factor**2 - 1) / 12.0 - factor**2 / 6.0
    small = cv2.GaussianBlur(small, (0, 0), float(np.sqrt(rest)) / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def render_region(
    objects: Iterable[SynthObject],
    *,
    x0: int,
    y0: int,
    width: int,
    height: int,
    mpp: float,
    stain: Stain,
    textures: Textures,
    illumination: Illumination,
    margin: int = 8,
    texture_offset: tuple[int, int] = (0, 0),
    defocus: Defocus | None = None,
) -> np.ndarray:
    """Render the window [x0, x0+width) x [y0, y0+height) of a field as (height, width, 3) uint8 RGB.

    Objects are given in level-0 px; those not touching the window are skipped. The window is drawn with
    ``margin`` extra px on each side (more if the blur needs it, see :func:`blur_margin`) so that the focus
    blur matches across neighbouring windows, and rendering a field in pieces equals rendering it whole. Textures
    are read at the window position plus ``texture_offset`` (fields sharing one texture set use different ones).
    ``defocus`` blurs its regions further (:class:`Defocus`); the margin then grows by its ``reach``, so the
    textures must allow that window, and ``x0 - margin`` and ``y0 - margin`` must be multiples of its
    ``factor`` for the blur to match across windows (slides pass block origins and a margin of 16).
    """
    sigma = stain.blur_um / mpp
    # The blur must not reach past the margin, or neighbouring windows would not match.
    margin = max(margin, blur_margin(sigma))
    out_of_focus = defocus.overlaps(x0, y0, width, height) if defocus is not None else []
    if out_of_focus:
        assert defocus is not None
        margin = max(margin, defocus.reach(sigma))
    ox, oy = x0 - margin, y0 - margin
    w, h = width + 2 * margin, height + 2 * margin
    grain, clump, mottle, noise_pos, noise_neg = textures.window(
        ox + texture_offset[0], oy + texture_offset[1], w, h
    )
    # Work in log intensity: log I = log I0 - sum of OD. Starting from the illumination's log means the
    # glass, uneven lighting and all cells end in one exp, with no extra full-window pass.
    gx, gy = illumination.profiles(ox, oy, w, h)
    # One broadcast add of a column and an interleaved (x, channel) row; a (h, w, 1) broadcast into
    # (h, w, 3) is several times slower.
    row = (np.log(gx)[:, None] + np.log(stain.background)[None, :]).reshape(1, w * 3)
    log_i = np.empty((h, w * 3), np.float32)
    np.add(np.log(gy)[:, None], row, out=log_i)
    log_i = log_i.reshape(h, w, 3)
    for obj in objects:
        if _clip_window(obj.bbox, ox, oy, w, h) is None:
            continue
        for prim in obj.prims:
            win = _clip_window(prim.box, ox, oy, w, h)
            if win is None:
                continue
            wx0, wy0, wx1, wy1 = win
            sub = np.zeros((wy1 - wy0, wx1 - wx0), np.uint8)
            _draw(sub, prim, ox + wx0, oy + wy0, 255, cv2.LINE_AA)
            # alpha = coverage (0-255) / 255 * max(0, 1 + sum of weighted textures), in as few passes as
            # possible: this loop is most of the rendering time of a slide.
            factor = np.full(sub.shape, 1.0 / 255.0, np.float32)
            for a, tex in zip(prim.tex, (grain, clump, mottle), strict=True):
                if a:
                    factor = cv2.scaleAdd(tex[wy0:wy1, wx0:wx1], a / 255.0, factor)
            if any(prim.tex):
                np.maximum(factor, 0.0, out=factor)
            np.multiply(factor, sub, out=factor)
            log_i[wy0:wy1, wx0:wx1] -= factor[:, :, None] * prim.od
    # Beer-Lambert transmission, rounded and saturated to uint8; then the microscope's focus blur and
    # sensor noise, both in uint8 (OpenCV's fixed-point paths are several times faster than float).
    image = cv2.convertScaleAbs(cv2.exp(log_i))
    sharp = cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.2 else image
    if out_of_focus:
        assert defocus is not None
        _paste_defocused(sharp, image, out_of_focus, defocus, sigma, ox, oy)
    image = sharp[margin : margin + height, margin : margin + width]
    pos = cv2.merge([noise_pos[margin : margin + height, margin : margin + width]] * 3)
    neg = cv2.merge([noise_neg[margin : margin + height, margin : margin + width]] * 3)
    return cv2.subtract(cv2.add(image, pos), neg)


def _paste_defocused(
    sharp: np.ndarray,
    image: np.ndarray,
    boxes: Sequence[tuple[int, int, int, int]],
    defocus: Defocus,
    focus_sigma: float,
    ox: int,
    oy: int,
) -> None:
    """Overwrite ``boxes`` (level-0 px) of ``sharp`` with ``image`` (before the focus blur) blurred by the focus
    and the defocus together; both images are the window whose top-left is (ox, oy). The blurred crop spans the
    boxes plus the blur's reach, on the grid of multiples of ``defocus.factor``, so every window downsamples
    the same pixels together."""
    f = defocus.factor
    reach = defocus.reach(focus_sigma)
    h, w = image.shape[:2]
    cx0 = max((min(b[0] for b in boxes) - reach) // f * f, ox)
    cy0 = max((min(b[1] for b in boxes) - reach) // f * f, oy)
    cx1 = min(-(-(max(b[2] for b in boxes) + reach) // f) * f, ox + w)
    cy1 = min(-(-(max(b[3] for b in boxes) + reach) // f) * f, oy + h)
    crop = image[cy0 - oy : cy1 - oy, cx0 - ox : cx1 - ox]
    blurred = _defocus(crop, float(np.hypot(focus_sigma, defocus.sigma)), f)
    for bx0, by0, bx1, by1 in boxes:
        sharp[by0 - oy : by1 - oy, bx0 - ox : bx1 - ox] = blurred[
            by0 - cy0 : by1 - cy0, bx0 - cx0 : bx1 - cx0
        ]


def object_mask(obj: SynthObject, *, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Binary instance mask (height, width) bool of ``obj`` in the window at (x0, y0): union of its footprint."""
    mask = np.zeros((height, width), np.uint8)
    for prim in obj.footprint:
        _draw(mask, prim, x0, y0, 1, cv2.LINE_8)
    return mask.astype(bool)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the True pixels of a (H, W) mask, x1/y1 exclusive; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def objects_in(objects: Sequence[SynthObject], box: tuple[float, float, float, float]) -> list[SynthObject]:
    """The objects whose bbox intersects ``box`` (x0, y0, x1, y1)."""
    return [
        o
        for o in objects
        if o.bbox[0] < box[2] and o.bbox[2] > box[0] and o.bbox[1] < box[3] and o.bbox[3] > box[1]
    ]
