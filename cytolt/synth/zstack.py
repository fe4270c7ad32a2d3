"""Z-stack crops: one cell rendered at T focal planes, each part blurred by how far it lies from the plane.

    stack = render_zstack("hsil", planes=5, step_um=1.0, size=64, mpp=0.5, seed=(0, 7))   # (5, 64, 64, 3)
    images, labels, names = make_zstack_crop_set(head=40, imbalance=10, planes=5, size=64, mpp=0.5)

Glossary
    z           depth in microns, positive away from the glass; z = 0 is the centre of the cell's nucleus,
                where a scanner's autofocus settles (the chromatin is the sharpest texture in the field).
    plane t     focal plane t of T at z_t = (t - T // 2) * step_um; plane T // 2 is in focus on the nucleus,
                for any T, and ``planes=1`` is that plane alone.
    layer       a group of primitives at one depth: the labelled cell's nucleus (hematoxylin prims), its
                cytoplasm (every other prim of the cell, the perinuclear halo included), and the clutter.

Depth of the parts. A thin-layer preparation flattens cells on the glass: the cytoplasm is a sheet about
1-2 um thick (drawn uniform on 1-2 um), the nucleus a flattened ellipsoid about half its diameter thick, so
its centre sits above the sheet's by (nucleus thickness - sheet thickness) / 2: ~1 um for a 7-um intermediate
nucleus, 2-4 um for the large HSIL/LSIL nuclei, ~0.2 um for a pyknotic superficial nucleus (clipped to
0-4 um). That offset is what makes a stack informative beyond one plane: the plane where the cytoplasm edge is
sharp is not the one where the chromatin is, and by how much depends on the nucleus. Cells without a
hematoxylin part (Candida) are one layer at z = 0. Clutter (red cells, debris, lymphocytes, mucus) lies at one
depth drawn on -3..3 um.

Defocus model (geometric optics with a Gaussian kernel). An objective of numerical aperture NA in a medium
of index n collects a cone of half-angle theta = asin(NA / n); a point dz from the focal plane spreads over a
disc of radius |dz| tan(theta), whose per-axis standard deviation is half its radius. So the defocus sigma is
``k |dz|`` with ``k = tan(asin(NA / n)) / 2``: for the default 40x / 0.75 NA dry objective (n = 1), k = 0.567
(1 um off focus -> 0.57 um, 2 um -> 1.13 um). It adds in quadrature to the stain's in-focus blur
(:class:`~cytolt.synth.render.Stain` ``blur_um``, 0.2-0.45 um). Within the depth of field (lambda / NA^2,
about 1 um here) diffraction dominates and this slightly overstates the blur; a disc kernel would ring
where the Gaussian does not (docs/synth.md, Limits).

Image formation. Each layer is rendered sharp as a transmission image T_l (Beer-Lambert, as
:func:`~cytolt.synth.render.render_region` draws it, on white glass, no blur, no noise); plane t is
``I0(x, y) * prod_l (G(sigma_lt) * T_l)``: each layer blurred by its own defocus, multiplied (thin layers in
series, each imaged through the same lens: the projection approximation), times the field's glass colour and
illumination, then sensor noise of its own per plane (std 1.8 grey levels, as the renderer's). A plane's noise
depends only on the seed and its depth, so the planes two stacks share are identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np
from tqdm import tqdm

from cytolt.synth import cells
from cytolt.synth.classes import CLASSES
from cytolt.synth.patches import long_tail_counts
from cytolt.synth.render import (
    FILL,
    Illumination,
    Prim,
    Stain,
    SynthObject,
    Textures,
    blur_margin,
    render_region,
)

# 40x / 0.75 NA dry objective: the common screening objective of cytology scanners.
DEFAULT_NA = 0.75
DEFAULT_IMMERSION_INDEX = 1.0
# Cytoplasm sheet thickness (um) of a flattened thin-layer cell, and the most a nucleus centre sits above it.
CYTOPLASM_THICKNESS_UM = (1.0, 2.0)
MAX_NUCLEUS_OFFSET_UM = 4.0
CLUTTER_DEPTH_UM = 3.0
# The largest focus blur Stain.sample draws (um).
MAX_FOCUS_BLUR_UM = 0.45
# Sensor noise std (grey levels), the renderer's default (Textures).
SENSOR_NOISE = 1.8
# Texture period (px) of a crop set: one set of textures, read at a different offset per crop.
_TEXTURE_PERIOD = 512
_WHITE = np.full(3, 255.0, np.float32)


def defocus_slope(na: float = DEFAULT_NA, immersion_index: float = DEFAULT_IMMERSION_INDEX) -> float:
    """k in ``sigma = k |dz|``: half the tangent of the objective's half-angle (see the module docstring)."""
    if not 0 < na < immersion_index:
        raise ValueError(f"na must be in (0, immersion_index={immersion_index}); got {na}")
    return float(np.tan(np.arcsin(na / immersion_index)) / 2.0)


def plane_depths(planes: int, step_um: float) -> np.ndarray:
    """(T,) float64 depths (um) of the focal planes: ``(t - T // 2) * step_um``, plane T // 2 at z = 0."""
    if planes < 1:
        raise ValueError(f"planes must be >= 1; got {planes}")
    if not step_um > 0:
        raise ValueError(f"step_um must be > 0; got {step_um}")
    return (np.arange(planes) - planes // 2) * float(step_um)


def _max_sigma_px(depths: np.ndarray, k: float, mpp: float) -> float:
    """The largest blur (px) any layer can get on these planes: the farthest layer depth from the farthest
    plane, with the stain's largest focus blur; sizes the texture window a crop set shares."""
    far = float(np.abs(depths).max()) + max(MAX_NUCLEUS_OFFSET_UM, CLUTTER_DEPTH_UM)
    return float(np.hypot(MAX_FOCUS_BLUR_UM, k * far)) / mpp


def _is_hematoxylin(prim: Prim, stain: Stain) -> bool:
    """True when the prim's OD is hematoxylin's at some density: builders draw nuclei, membranes, lobes and
    nucleoli as ``stain.od("hematoxylin", d)``, an exact multiple that no other (jittered) dye matches."""
    ref = stain.dyes["hematoxylin"]
    scale = float(prim.od @ ref) / float(ref @ ref)
    return scale > 0 and bool(np.allclose(prim.od, scale * ref, rtol=1e-4, atol=1e-6))


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0].astype(np.float64), pts[:, 1].astype(np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _layers(
    cell: SynthObject, clutter: Sequence[SynthObject], stain: Stain, rng: np.random.Generator, mpp: float
) -> list[tuple[str, list[SynthObject], float]]:
    """[(name, objects, depth um)] of the cell's nucleus, its cytoplasm and the clutter (empty ones left out)."""
    nucleus = [p for p in cell.prims if _is_hematoxylin(p, stain)]
    cytoplasm = [p for p in cell.prims if not _is_hematoxylin(p, stain)]
    # Drawn whatever the cell, so every class consumes the generator alike.
    sheet_um = rng.uniform(*CYTOPLASM_THICKNESS_UM)
    clutter_z = float(rng.uniform(-CLUTTER_DEPTH_UM, CLUTTER_DEPTH_UM))
    out: list[tuple[str, list[SynthObject], float]] = []
    if nucleus:
        fills = [p for p in nucleus if p.kind == FILL] or nucleus
        diameter_um = 2.0 * np.sqrt(max(_polygon_area(p.pts) for p in fills) / np.pi) * mpp
        offset = float(np.clip((0.5 * diameter_um - sheet_um) / 2.0, 0.0, MAX_NUCLEUS_OFFSET_UM))
        out.append(("nucleus", [SynthObject(cell.label, nucleus, nucleus)], 0.0))
        if cytoplasm:
            out.append(("cytoplasm", [SynthObject(cell.label, cytoplasm, cytoplasm)], -offset))
    else:
        out.append(("cell", [cell], 0.0))
    if clutter:
        out.append(("clutter", list(clutter), clutter_z))
    return out


def _scene(
    label: str, *, size: int, mpp: float, seed: Sequence[int]
) -> tuple[Stain, Illumination, list[tuple[str, list[SynthObject], float]], np.random.Generator]:
    """The stain, light and layers of one crop, and the generator left after drawing them."""
    if label not in cells.BUILDERS:
        raise ValueError(f"label must be one of {', '.join(cells.BUILDERS)}; got {label!r}")
    if size < 8:
        raise ValueError(f"size must be >= 8 px; got {size}")
    if not 0.05 <= mpp <= 10:
        raise ValueError(f"mpp must be between 0.05 and 10 microns per pixel; got {mpp}")
    rng = np.random.default_rng(list(seed))
    stain = Stain.sample(rng)
    illumination = Illumination.sample(
        rng, period_px=rng.uniform(2.0, 4.0) * size, vignette=0.15, size=(size, size)
    )
    centre = size / 2.0
    cell = cells.build(label, rng, centre, centre, mpp=mpp, stain=stain)
    area_mm2 = (size * mpp / 1000.0) ** 2
    clutter = cells.build_clutter(rng, area_mm2, (0.0, 0.0, float(size), float(size)), mpp=mpp, stain=stain)
    return stain, illumination, _layers(cell, clutter, stain, rng, mpp), rng


def _seed_list(seed: int | Sequence[int]) -> list[int]:
    return [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]


def layer_depths(label: str, *, size: int, mpp: float, seed: int | Sequence[int]) -> dict[str, float]:
    """Depth (um, nucleus centre = 0) of each layer of the crop :func:`render_zstack` draws with these
    arguments: ``nucleus`` and ``cytoplasm`` (or ``cell`` for a cell without hematoxylin), ``clutter``."""
    _, _, layers, _ = _scene(label, size=size, mpp=mpp, seed=_seed_list(seed))
    return {name: z for name, _, z in layers}


def render_zstack(
    label: str,
    *,
    planes: int = 5,
    step_um: float = 1.0,
    size: int,
    mpp: float,
    seed: int | Sequence[int],
    na: float = DEFAULT_NA,
    textures: Textures | None = None,
) -> np.ndarray:
    """Render one cell of class ``label`` at ``planes`` focal planes ``step_um`` apart.

    The cell (a :mod:`cytolt.synth.cells` builder) is centred in a ``size`` x ``size`` field at ``mpp`` um/px
    with the clutter of that area; plane ``planes // 2`` is in focus on its nucleus (module docstring for the
    depths and the blur). Deterministic from ``seed`` (an int or a sequence, e.g. ``(set_seed, index)``);
    ``textures`` lets a crop set share one texture field (its noise must be 0: the planes add their own).

    Returns:
        (T, size, size, 3) uint8 RGB.
    """
    depths = plane_depths(planes, step_um)
    k = defocus_slope(na)
    seq = _seed_list(seed)
    stain, illumination, layers, rng = _scene(label, size=size, mpp=mpp, seed=seq)
    # sigma (px) of every layer at every plane: the stain's focus blur and the defocus in quadrature.
    sigmas = [
        [float(np.hypot(stain.blur_um, k * abs(z - z_layer))) / mpp for z in depths]
        for _, _, z_layer in layers
    ]
    margin = blur_margin(max(max(s) for s in sigmas))
    window = size + 2 * margin
    if textures is None:
        # The period (the texture's content) must not depend on the planes, so that the planes two stacks
        # share come out identical; the window only pads it.
        textures = Textures(rng, mpp=mpp, period=max(256, size), max_window=window + 8, noise=0.0)
    offset = tuple(int(v) for v in rng.integers(0, textures.period, size=2))
    # Sharp transmission of each layer on white glass, flat light, no noise: 255 = clear.
    flat = Illumination(amplitude=0.0, period_px=1.0, phase=(0.0, 0.0))
    glass = replace(stain, background=_WHITE, blur_um=0.0)
    transmission = [
        render_region(
            objects,
            x0=-margin,
            y0=-margin,
            width=window,
            height=window,
            mpp=mpp,
            stain=glass,
            textures=textures,
            illumination=flat,
            margin=0,
            texture_offset=offset,
        ).astype(np.float32)
        / 255.0
        for _, objects, _ in layers
    ]
    gx, gy = illumination.profiles(0, 0, size, size)
    light = (gy[:, None, None] * gx[None, :, None]) * stain.background[None, None, :]
    inner = slice(margin, margin + size)
    out = np.empty((planes, size, size, 3), np.uint8)
    for t, z in enumerate(depths):
        image = light.copy()
        for trans, layer_sigmas in zip(transmission, sigmas, strict=True):
            image *= cv2.GaussianBlur(trans, (0, 0), layer_sigmas[t])[inner, inner]
        # Each plane is its own exposure: noise seeded by the plane's depth (in 1/1000 um), not its index.
        noise_rng = np.random.default_rng([*seq, 0x2057, int(round(z * 1000.0)) & 0xFFFFFFFF])
        noise = np.round(SENSOR_NOISE * noise_rng.standard_normal((size, size, 1), dtype=np.float32))
        out[t] = np.clip(np.round(image) + noise, 0, 255).astype(np.uint8)
    return out


def make_zstack_crop_set(
    *,
    per_class: Sequence[int] | None = None,
    imbalance: float = 100.0,
    head: int = 500,
    planes: int = 5,
    step_um: float = 1.0,
    size: int = 64,
    mpp: float = 1.0,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
    na: float = DEFAULT_NA,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A long-tailed set of z-stack crops, one cell each (:func:`render_zstack`).

    Counts: ``per_class`` (one per class) or geometric from ``head`` down to ``head / imbalance`` (>= 1).
    Crop j of class k is seeded ``(seed, k, j)``, so a class's crops do not depend on the other classes' counts;
    the crops share one texture field read at offsets of their own. Crops come in class order.

    Returns:
        images (N, T, size, size, 3) uint8, labels (N,) int64 indices into ``classes``, class names.
    """
    names = tuple(classes)
    unknown = [c for c in names if c not in cells.BUILDERS]
    if unknown or not names:
        raise ValueError(f"classes must be among {', '.join(cells.BUILDERS)}; got {list(names)}")
    if per_class is None:
        counts = long_tail_counts(len(names), head, imbalance)
    else:
        counts = [int(n) for n in per_class]
        if len(counts) != len(names) or any(n < 0 for n in counts):
            raise ValueError(f"per_class must be {len(names)} counts >= 0; got {list(per_class)}")
    reach = blur_margin(_max_sigma_px(plane_depths(planes, step_um), defocus_slope(na), mpp))
    textures = Textures(
        np.random.default_rng([seed, 0x7E4]),
        mpp=mpp,
        period=_TEXTURE_PERIOD,
        max_window=size + 2 * reach + 8,
        noise=0.0,
    )
    total = sum(counts)
    images = np.empty((total, planes, size, size, 3), np.uint8)
    labels = np.repeat(np.arange(len(names), dtype=np.int64), counts)
    jobs = [(k, j) for k, n in enumerate(counts) for j in range(n)]
    for i, (k, j) in enumerate(tqdm(jobs, desc="z-stacks", unit="crop", disable=not progress)):
        images[i] = render_zstack(
            names[k],
            planes=planes,
            step_um=step_um,
            size=size,
            mpp=mpp,
            seed=(seed, k, j),
            na=na,
            textures=textures,
        )
    return images, labels, names
