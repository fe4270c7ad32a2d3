"""Builders of the synthetic cells, cell groups, organisms and unannotated clutter.

Each builder is ``build(rng, cx, cy, *, mpp, stain) -> SynthObject``: it draws the object's shape parameters
from ``rng``, centred at (cx, cy) level-0 px, with sizes given in microns (converted by ``mpp``) and colours
from the field's :class:`~cytolt.synth.render.Stain`. Sizes and nuclear-to-cytoplasm ratios follow The Bethesda
System atlas (Nayar & Wilbur 2015): intermediate cell ~35-55 um with a ~35 um^2 nucleus (6-8.5 um), ASC-US
nucleus 2.5-3x that area, LSIL >= 3x with a perinuclear cavity, HSIL parabasal-sized with a high N:C ratio.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from cytolt.synth.render import FILL, LINE, Prim, Stain, SynthObject

# Texture weights (grain, clump, mottle) of the common materials.
TEX_CYTOPLASM = (0.08, 0.12, 0.12)
TEX_NUCLEUS = (0.45, 0.25, 0.0)
TEX_PYKNOTIC = (0.08, 0.05, 0.0)
TEX_COARSE = (0.35, 0.45, 0.0)

Builder = Callable[..., SynthObject]


# --- geometry (offsets in px around the origin; the caller adds the centre) -------------------------------


def _rotate(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]], np.float64)


def blob(
    rng: np.random.Generator, rx: float, ry: float, *, angle: float, irregular: float, n: int = 40
) -> np.ndarray:
    """(n, 2) outline of an ellipse with radii (rx, ry) px whose radius wobbles with harmonics 2-6.

    ``irregular`` is the std of each harmonic's relative amplitude (0.02 smooth nucleus, 0.1 notched).
    """
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = np.ones(n)
    if irregular > 0:
        for k in range(2, 7):
            r += irregular * rng.normal() / (k - 1) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.5, 1.6)
    pts = np.stack([rx * r * np.cos(t), ry * r * np.sin(t)], axis=1)
    return _rotate(pts, angle)


def _chaikin(pts: np.ndarray, iterations: int) -> np.ndarray:
    """Round the corners of a closed polygon (Chaikin corner cutting)."""
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], axis=1).reshape(-1, 2)
    return pts


def squame(rng: np.random.Generator, radius: float, *, aspect: float, angle: float) -> np.ndarray:
    """Outline of a squamous cell: a 5-8 sided polygon with uneven sides and softened corners, radius px."""
    m = int(rng.integers(5, 10))
    step = 2.0 * np.pi / m
    t = np.arange(m) * step + rng.uniform(-0.35, 0.35, size=m) * step
    r = radius * rng.uniform(0.8, 1.2, size=m)
    pts = np.stack([r * np.cos(t) * np.sqrt(aspect), r * np.sin(t) / np.sqrt(aspect)], axis=1)
    # One corner cut keeps the corners angular, as in flattened squames, but not pixel-sharp.
    return _rotate(_chaikin(pts, 1), angle)


def _clip_halfplane(pts: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Part of a closed polygon where ``pts @ normal >= offset`` (Sutherland-Hodgman, one edge)."""
    out = []
    d = pts @ normal - offset
    for i in range(len(pts)):
        j = (i + 1) % len(pts)
        if d[i] >= 0:
            out.append(pts[i])
        if (d[i] >= 0) != (d[j] >= 0):
            s = d[i] / (d[i] - d[j])
            out.append(pts[i] + s * (pts[j] - pts[i]))
    return np.asarray(out, np.float64).reshape(-1, 2)


def _hull(pts: np.ndarray) -> np.ndarray:
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def _px(um: float, mpp: float) -> float:
    return um / mpp


def _line_px(um: float, mpp: float) -> int:
    return max(1, round(um / mpp))


# --- parts ---------------------------------------------------------------------------------------------


def _fill(pts: np.ndarray, cx: float, cy: float, od: np.ndarray, tex: tuple[float, float, float]) -> Prim:
    return Prim(FILL, (pts + (cx, cy)).astype(np.float32), od, tex)


def _line(pts: np.ndarray, cx: float, cy: float, od: np.ndarray, width: int, *, closed: bool = True) -> Prim:
    return Prim(LINE, (pts + (cx, cy)).astype(np.float32), od, (0.0, 0.0, 0.0), width, closed)


def _nucleus(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    *,
    diameter_um: float,
    aspect: float,
    irregular: float,
    density: float,
    tex: tuple[float, float, float],
    membrane: float,
    mpp: float,
    stain: Stain,
    angle: float | None = None,
) -> tuple[list[Prim], np.ndarray]:
    """Hematoxylin nucleus (filled outline + darker membrane of relative density ``membrane``); returns
    (prims, outline offsets around (cx, cy))."""
    r = _px(diameter_um, mpp) / 2.0
    angle = rng.uniform(0, np.pi) if angle is None else angle
    outline = blob(rng, r * np.sqrt(aspect), r / np.sqrt(aspect), angle=angle, irregular=irregular, n=32)
    prims = [_fill(outline, cx, cy, stain.od("hematoxylin", density), tex)]
    if membrane > 0:
        prims.append(_line(outline, cx, cy, stain.od("hematoxylin", density * membrane), _line_px(0.4, mpp)))
    return prims, outline


def _cytoplasm_dye(rng: np.random.Generator, p_cyan: float) -> str:
    return "light_green" if rng.random() < p_cyan else "eosin"


def _squamous(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    *,
    mpp: float,
    stain: Stain,
    diameter_um: tuple[float, float],
    p_cyan: float,
    density: tuple[float, float],
) -> tuple[list[Prim], np.ndarray, str, float]:
    """Polygonal squamous cytoplasm with an optional fold; returns (prims, outline, dye, density)."""
    radius = _px(rng.uniform(*diameter_um), mpp) / 2.0
    outline = squame(rng, radius, aspect=rng.uniform(1.0, 1.45), angle=rng.uniform(0, np.pi))
    dye = _cytoplasm_dye(rng, p_cyan)
    dens = rng.uniform(*density)
    od = stain.od(dye, dens)
    if dye == "eosin" and rng.random() < 0.3:
        od = od + stain.od("orange_g", 0.1 * dens)  # orangeophilic tint of some mature cells
    # The cell border reads as a slightly darker line where the thin cytoplasm turns up at its edge.
    prims = [_fill(outline, cx, cy, od, TEX_CYTOPLASM), _line(outline, cx, cy, 0.35 * od, _line_px(0.5, mpp))]
    if rng.random() < 0.3:
        # Folded edge: the cytoplasm beyond a chord lies double.
        phi = rng.uniform(0, 2 * np.pi)
        normal = np.array([np.cos(phi), np.sin(phi)])
        extent = float((outline @ normal).max())
        fold = _clip_halfplane(outline, normal, extent * rng.uniform(0.45, 0.8))
        if len(fold) >= 3:
            prims.append(_fill(fold, cx, cy, od * 0.9, TEX_CYTOPLASM))
            # The fold line itself is a darker crease.
            prims.append(_line(fold, cx, cy, od * 0.6, _line_px(0.6, mpp)))
    return prims, outline, dye, dens


def _halo(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    *,
    radius: float,
    cyto_od: np.ndarray,
    clearing: float,
    rim: float,
    mpp: float,
) -> list[Prim]:
    """Perinuclear cavity of ``radius`` px: removes ``clearing`` of the cell's own cytoplasm, with a rim of
    condensed cytoplasm (``rim`` x its density); a negative OD only cancels this cell's own contribution."""
    outline = blob(rng, radius * rng.uniform(1.0, 1.25), radius, angle=rng.uniform(0, np.pi), irregular=0.05)
    prims = [_fill(outline, cx, cy, -clearing * cyto_od, TEX_CYTOPLASM)]
    if rim > 0:
        prims.append(_line(outline, cx, cy, rim * cyto_od, _line_px(1.0, mpp)))
    return prims


def _inside_offset(rng: np.random.Generator, outline: np.ndarray, fraction: float) -> np.ndarray:
    """A random offset of at most ``fraction`` of the outline's smallest radius (to place a nucleus)."""
    rmin = float(np.sqrt((outline**2).sum(axis=1)).min())
    phi = rng.uniform(0, 2 * np.pi)
    return rng.uniform(0, fraction) * rmin * np.array([np.cos(phi), np.sin(phi)])


# --- normal squamous cells ------------------------------------------------------------------------------


def intermediate(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """Intermediate squamous cell: 35-55 um polygon, mostly cyanophilic; vesicular nucleus 6-8.5 um."""
    prims, outline, dye, dens = _squamous(
        rng,
        cx,
        cy,
        mpp=mpp,
        stain=stain,
        diameter_um=(36, 55),
        p_cyan=0.75,
        density=(0.7, 1.1),
    )
    off = _inside_offset(rng, outline, 0.3)
    nprims, _ = _nucleus(
        rng,
        cx + off[0],
        cy + off[1],
        diameter_um=rng.uniform(6.0, 8.5),
        aspect=rng.uniform(1.0, 1.3),
        irregular=0.02,
        density=rng.uniform(0.55, 0.8),
        tex=TEX_NUCLEUS,
        membrane=0.5,
        mpp=mpp,
        stain=stain,
    )
    if rng.random() < 0.06:
        # Small inflammatory (Trichomonas-associated) halo: a benign look-alike of the koilocyte's cavity.
        prims += _halo(
            rng,
            cx + off[0],
            cy + off[1],
            radius=_px(rng.uniform(5.0, 6.5), mpp),
            cyto_od=prims[0].od,
            clearing=0.6,
            rim=0.0,
            mpp=mpp,
        )
    return SynthObject("intermediate", prims + nprims, [prims[0]])


def superficial(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """Superficial squamous cell: 40-60 um thin eosinophilic polygon; pyknotic nucleus 3.5-5 um."""
    prims, outline, _, _ = _squamous(
        rng,
        cx,
        cy,
        mpp=mpp,
        stain=stain,
        diameter_um=(40, 60),
        p_cyan=0.2,
        density=(0.6, 1.0),
    )
    off = _inside_offset(rng, outline, 0.3)
    nprims, _ = _nucleus(
        rng,
        cx + off[0],
        cy + off[1],
        diameter_um=rng.uniform(3.5, 5.0),
        aspect=rng.uniform(1.0, 1.15),
        irregular=0.02,
        density=rng.uniform(1.7, 2.2),
        tex=TEX_PYKNOTIC,
        membrane=0.0,
        mpp=mpp,
        stain=stain,
    )
    return SynthObject("superficial", prims + nprims, [prims[0]])


def parabasal(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """Parabasal cell: round 16-28 um, dense cyanophilic; nucleus 30-42 % of the cell diameter, fine chromatin."""
    d = rng.uniform(16, 28)
    r = _px(d, mpp) / 2.0
    outline = blob(rng, r * rng.uniform(1.0, 1.15), r, angle=rng.uniform(0, np.pi), irregular=0.04)
    cyto = _fill(outline, cx, cy, stain.od("light_green", rng.uniform(1.4, 1.9)), TEX_CYTOPLASM)
    off = _inside_offset(rng, outline, 0.2)
    nprims, _ = _nucleus(
        rng,
        cx + off[0],
        cy + off[1],
        diameter_um=float(np.clip(d * rng.uniform(0.3, 0.42), 6.5, 9.5)),
        aspect=rng.uniform(1.0, 1.2),
        irregular=0.02,
        density=rng.uniform(0.8, 1.0),
        tex=TEX_NUCLEUS,
        membrane=0.4,
        mpp=mpp,
        stain=stain,
    )
    return SynthObject("parabasal", [cyto, *nprims], [cyto])


# --- inflammatory cells and organisms --------------------------------------------------------------------


def _neutrophil(
    rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain
) -> tuple[list[Prim], Prim]:
    """One neutrophil (cytoplasm 9-11 um, 2-4 nuclear lobes); returns (prims, cytoplasm prim)."""
    r = _px(rng.uniform(4.5, 5.5), mpp)
    cyto = _fill(
        blob(rng, r, r, angle=0.0, irregular=0.04, n=24),
        cx,
        cy,
        stain.od("neutrophil", rng.uniform(0.8, 1.3)),
        (0.0, 0.2, 0.0),
    )
    prims = [cyto]
    lobes = int(rng.integers(2, 5))
    phi = rng.uniform(0, 2 * np.pi)
    dens = rng.uniform(1.2, 1.6)
    for i in range(lobes):
        a = phi + (i - (lobes - 1) / 2) * 1.0
        lx, ly = cx + 0.45 * r * np.cos(a), cy + 0.45 * r * np.sin(a)
        lr = _px(rng.uniform(1.3, 1.8), mpp)
        prims.append(
            _fill(
                blob(rng, lr, lr * 0.8, angle=a, irregular=0.03, n=16),
                lx,
                ly,
                stain.od("hematoxylin", dens),
                TEX_PYKNOTIC,
            )
        )
    return prims, cyto


def neutrophil_cluster(
    rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain
) -> SynthObject:
    """Cluster of 4-18 neutrophils packed around (cx, cy); the instance is the whole cluster."""
    k = int(rng.integers(4, 19))
    spread = _px(3.0, mpp) * np.sqrt(k)
    prims: list[Prim] = []
    footprint: list[Prim] = []
    for _ in range(k):
        dx, dy = rng.normal(0.0, spread, size=2)
        p, cyto = _neutrophil(rng, cx + dx, cy + dy, mpp=mpp, stain=stain)
        prims += p
        footprint.append(cyto)
    return SynthObject("neutrophil_cluster", prims, footprint)


def candida(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """Candida pseudohyphae: 4-12 septate segments (8-15 x 2.2-3.2 um) on a random walk, plus budding yeasts."""
    width = _line_px(rng.uniform(2.2, 3.2), mpp)
    od = stain.od("candida", rng.uniform(0.9, 1.3))
    prims: list[Prim] = []
    heading = rng.uniform(0, 2 * np.pi)
    nodes = [np.zeros(2)]
    for _ in range(int(rng.integers(3, 9))):
        heading += rng.normal(0.0, 0.3)
        step = _px(rng.uniform(8.0, 15.0), mpp)
        nodes.append(nodes[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    path = np.asarray(nodes)
    path -= path.mean(axis=0)
    gap = 0.5 * width
    for a, b in zip(path[:-1], path[1:], strict=True):
        d = b - a
        n = d / max(float(np.hypot(*d)), 1e-6)
        # A small gap at each septum shows the constriction between segments.
        prims.append(_line(np.stack([a + n * gap, b - n * gap]), cx, cy, od, width, closed=False))
    for _ in range(int(rng.integers(2, 7))):
        p = path[int(rng.integers(0, len(path)))] + rng.normal(0.0, _px(3.0, mpp), size=2)
        ry = _px(rng.uniform(1.2, 1.8), mpp)
        prims.append(
            _fill(
                blob(rng, ry * 1.35, ry, angle=rng.uniform(0, np.pi), irregular=0.02, n=20) + p,
                cx,
                cy,
                od,
                (0.0, 0.1, 0.0),
            )
        )
    return SynthObject("candida", prims, list(prims))


def trichomonas(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """Trichomonas vaginalis: pear-shaped 15-28 um grey-green body, faint eccentric nucleus, red granules."""
    a = _px(rng.uniform(7.5, 14.0), mpp)
    b = a * rng.uniform(0.55, 0.75)
    t = np.linspace(0.0, 2.0 * np.pi, 36, endpoint=False)
    taper = 0.55 + 0.45 * (1.0 + np.cos(t)) / 2.0  # wide at +x, narrow at -x: a pear
    angle = rng.uniform(0, 2 * np.pi)
    body = _rotate(np.stack([a * np.cos(t), b * np.sin(t) * taper], axis=1), angle)
    body = body * (1.0 + 0.04 * rng.normal(size=(len(t), 1)))
    cyto = _fill(body, cx, cy, stain.od("trichomonas", rng.uniform(0.9, 1.3)), (0.1, 0.35, 0.0))
    axis = np.array([np.cos(angle), np.sin(angle)])
    nc = np.array([cx, cy]) + axis * a * 0.3
    nprims, _ = _nucleus(
        rng,
        nc[0],
        nc[1],
        diameter_um=rng.uniform(2.5, 3.5),
        aspect=2.2,
        irregular=0.02,
        density=rng.uniform(0.45, 0.65),
        tex=(0.1, 0.1, 0.0),
        membrane=0.0,
        mpp=mpp,
        stain=stain,
        angle=angle,
    )
    prims = [cyto, *nprims]
    for _ in range(int(rng.integers(5, 14))):
        u = rng.uniform(-0.7, 0.7)
        v = rng.uniform(-0.5, 0.5)
        g = _rotate(np.array([[u * a, v * b]]), angle)[0]
        gr = _px(rng.uniform(0.35, 0.6), mpp)
        prims.append(
            _fill(
                blob(rng, gr, gr, angle=0.0, irregular=0.0, n=8) + g,
                cx,
                cy,
                stain.od("eosin", 2.2),
                (0.0, 0.0, 0.0),
            )
        )
    # A faint flagellum from the narrow end.
    tip = -axis * a
    flag = tip + np.cumsum(
        _rotate(np.tile([[-_px(2.5, mpp), 0.0]], (4, 1)), angle + rng.normal(0, 0.3)), axis=0
    )
    prims.append(_line(np.vstack([tip, flag]), cx, cy, stain.od("trichomonas", 0.5), 1, closed=False))
    return SynthObject("trichomonas", prims, [cyto])


# --- abnormal cells ------------------------------------------------------------------------------------


def ascus(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """ASC-US: an intermediate-sized cell whose nucleus is 10-13 um (2.5-3x the normal area), a little darker."""
    prims, outline, _, _ = _squamous(
        rng,
        cx,
        cy,
        mpp=mpp,
        stain=stain,
        diameter_um=(36, 52),
        p_cyan=0.7,
        density=(0.7, 1.1),
    )
    off = _inside_offset(rng, outline, 0.25)
    nprims, _ = _nucleus(
        rng,
        cx + off[0],
        cy + off[1],
        diameter_um=rng.uniform(10.0, 13.0),
        aspect=rng.uniform(1.0, 1.35),
        irregular=0.04,
        density=rng.uniform(0.9, 1.15),
        tex=TEX_NUCLEUS,
        membrane=0.5,
        mpp=mpp,
        stain=stain,
    )
    return SynthObject("ascus", prims + nprims, [prims[0]])


def lsil(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """LSIL koilocyte: 40-58 um cell, dark irregular nucleus 11-15.5 um (35 % binucleate), sharp perinuclear
    cavity 1.9-2.6x the nuclear radius with a condensed rim."""
    prims, outline, _, _ = _squamous(
        rng,
        cx,
        cy,
        mpp=mpp,
        stain=stain,
        diameter_um=(40, 58),
        p_cyan=0.5,
        density=(0.8, 1.2),
    )
    off = _inside_offset(rng, outline, 0.15)
    ncx, ncy = cx + off[0], cy + off[1]
    diam = rng.uniform(11.0, 15.5)
    nuclei: list[Prim] = []
    centres = [(ncx, ncy)]
    if rng.random() < 0.35:
        phi = rng.uniform(0, 2 * np.pi)
        half = _px(diam * 0.45, mpp)
        centres = [
            (ncx + half * np.cos(phi), ncy + half * np.sin(phi)),
            (ncx - half * np.cos(phi), ncy - half * np.sin(phi)),
        ]
        diam *= 0.8
    for x, y in centres:
        p, _ = _nucleus(
            rng,
            x,
            y,
            diameter_um=diam,
            aspect=rng.uniform(1.0, 1.4),
            irregular=0.1,
            density=rng.uniform(1.15, 1.5),
            tex=TEX_COARSE,
            membrane=0.5,
            mpp=mpp,
            stain=stain,
        )
        nuclei += p
    rmin = float(np.sqrt(((outline - off) ** 2).sum(axis=1)).min())
    radius = min(_px(diam / 2.0, mpp) * (len(centres) + 0.6) * rng.uniform(1.25, 1.6), 0.8 * rmin)
    halo = _halo(rng, ncx, ncy, radius=radius, cyto_od=prims[0].od, clearing=0.85, rim=0.9, mpp=mpp)
    return SynthObject("lsil", prims + halo + nuclei, [prims[0]])


def hsil(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """HSIL: parabasal-sized 13-22 um cell, nucleus 55-75 % of the cell diameter, dark coarse chromatin,
    irregular membrane."""
    d = rng.uniform(13, 22)
    r = _px(d, mpp) / 2.0
    outline = blob(rng, r * rng.uniform(1.0, 1.2), r, angle=rng.uniform(0, np.pi), irregular=0.06)
    dye = "light_green" if rng.random() < 0.85 else "eosin"
    cyto = _fill(outline, cx, cy, stain.od(dye, rng.uniform(1.3, 1.9)), TEX_CYTOPLASM)
    off = _inside_offset(rng, outline, 0.15)
    nprims, _ = _nucleus(
        rng,
        cx + off[0],
        cy + off[1],
        diameter_um=d * rng.uniform(0.55, 0.75),
        aspect=rng.uniform(1.0, 1.35),
        irregular=0.09,
        density=rng.uniform(1.3, 1.7),
        tex=TEX_COARSE,
        membrane=0.5,
        mpp=mpp,
        stain=stain,
    )
    return SynthObject("hsil", [cyto, *nprims], [cyto])


def scc(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """Keratinising SCC: tadpole, spindle or bizarre cell 30-70 um, dense orange (or cyan) cytoplasm,
    ink-dark irregular nucleus 9-15 um elongated along the cell."""
    angle = rng.uniform(0, 2 * np.pi)
    shape = rng.choice(3, p=[0.4, 0.35, 0.25])
    length = _px(rng.uniform(30, 70), mpp)
    if shape == 0:  # tadpole: round head, tapering tail
        rh = length * rng.uniform(0.18, 0.25)
        head = blob(rng, rh, rh, angle=0.0, irregular=0.05, n=32)
        tail = np.array([[length - rh, -0.12 * rh], [length - rh, 0.12 * rh]])
        outline = _rotate(_hull(np.vstack([head, tail])) - (length / 2 - rh, 0.0), angle)
        elong = 1.3
    elif shape == 1:  # spindle (caudate) cell
        w = length * rng.uniform(0.12, 0.2)
        body = blob(rng, 0.3 * length, w, angle=0.0, irregular=0.03, n=32)
        outline = _rotate(_hull(np.vstack([body, [[length / 2, 0.0], [-length / 2, 0.0]]])), angle)
        elong = 2.5
    else:  # bizarre polygon
        outline = blob(rng, length / 2.0, length / 2.0 * rng.uniform(0.5, 0.8), angle=angle, irregular=0.18)
        elong = 1.2
    dye = "orange_g" if rng.random() < 0.7 else "light_green"
    cyto = _fill(
        outline,
        cx,
        cy,
        stain.od(dye, rng.uniform(0.9, 1.4) * (1.0 if dye == "orange_g" else 1.8)),
        (0.05, 0.2, 0.25),
    )
    nprims, _ = _nucleus(
        rng,
        cx,
        cy,
        diameter_um=rng.uniform(9.0, 15.0) / np.sqrt(elong) * (1.0 if shape else 0.9),
        aspect=elong,
        irregular=0.12,
        density=rng.uniform(1.8, 2.4),
        tex=TEX_COARSE,
        membrane=0.0,
        mpp=mpp,
        stain=stain,
        angle=angle,
    )
    return SynthObject("scc", [cyto, *nprims], [cyto])


def agc(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    """AGC: crowded sheet of 5-12 glandular cells (~10-12 um) with enlarged oval nuclei 7-10 x 5-7 um,
    polarised in one direction, some with nucleoli; the instance is the whole group."""
    k = int(rng.integers(5, 13))
    spacing = _px(rng.uniform(8.0, 10.5), mpp)
    # Jittered hexagonal lattice; keep the k sites nearest the centre.
    ii, jj = np.meshgrid(np.arange(-4, 5), np.arange(-4, 5))
    sites = np.stack([ii + 0.5 * (jj % 2), jj * np.sqrt(3) / 2], axis=-1).reshape(-1, 2) * spacing
    sites = sites[np.argsort((sites**2).sum(axis=1) + rng.uniform(0, spacing**2, len(sites)))[:k]]
    sites = _rotate(sites, rng.uniform(0, np.pi)) + rng.normal(0.0, 0.12 * spacing, sites.shape)
    polar = rng.uniform(0, np.pi)
    prims: list[Prim] = []
    footprint: list[Prim] = []
    for sx, sy in sites:
        rc = spacing * rng.uniform(0.6, 0.75)
        cyto = _fill(
            blob(rng, rc * 1.1, rc, angle=polar, irregular=0.05, n=24),
            cx + sx,
            cy + sy,
            stain.od("light_green", rng.uniform(0.7, 1.0)),
            TEX_CYTOPLASM,
        )
        footprint.append(cyto)
        nprims, _ = _nucleus(
            rng,
            cx + sx,
            cy + sy,
            diameter_um=rng.uniform(6.0, 8.0),
            aspect=rng.uniform(1.3, 1.7),
            irregular=0.04,
            density=rng.uniform(1.05, 1.35),
            tex=TEX_NUCLEUS,
            membrane=0.4,
            mpp=mpp,
            stain=stain,
            angle=polar + rng.normal(0, 0.2),
        )
        prims += [cyto, *nprims]
        if rng.random() < 0.5:
            nr = _px(0.7, mpp)
            prims.append(
                _fill(
                    blob(rng, nr, nr, angle=0.0, irregular=0.0, n=10),
                    cx + sx,
                    cy + sy,
                    stain.od("hematoxylin", 1.2),
                    (0.0, 0.0, 0.0),
                )
            )
    return SynthObject("agc", prims, footprint)


# --- unannotated clutter -------------------------------------------------------------------------------


def _rbc(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    r = _px(rng.uniform(3.2, 3.8), mpp)
    od = stain.od("rbc", rng.uniform(0.3, 0.6))
    disc = _fill(
        blob(rng, r, r * rng.uniform(0.85, 1.0), angle=rng.uniform(0, np.pi), irregular=0.02, n=20),
        cx,
        cy,
        od,
        (0.0, 0.0, 0.0),
    )
    pale = _fill(
        blob(rng, 0.5 * r, 0.5 * r, angle=0.0, irregular=0.0, n=16), cx, cy, -0.5 * od, (0.0, 0.0, 0.0)
    )
    return SynthObject(None, [disc, pale], [disc])


def _lymphocyte(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    r = _px(rng.uniform(3.5, 4.2), mpp)
    rim = _fill(
        blob(rng, r, r, angle=0.0, irregular=0.03, n=20),
        cx,
        cy,
        stain.od("light_green", 0.6),
        (0.0, 0.0, 0.0),
    )
    nprims, _ = _nucleus(
        rng,
        cx,
        cy,
        diameter_um=rng.uniform(5.5, 6.5),
        aspect=1.05,
        irregular=0.02,
        density=rng.uniform(1.3, 1.6),
        tex=TEX_NUCLEUS,
        membrane=0.0,
        mpp=mpp,
        stain=stain,
    )
    return SynthObject(None, [rim, *nprims], [rim])


def _debris(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    r = _px(rng.uniform(0.6, 2.0), mpp)
    dye = "hematoxylin" if rng.random() < 0.6 else "orange_g"
    p = _fill(
        blob(rng, r, r * rng.uniform(0.5, 1.0), angle=rng.uniform(0, np.pi), irregular=0.15, n=12),
        cx,
        cy,
        stain.od(dye, rng.uniform(0.4, 1.1)),
        (0.0, 0.0, 0.0),
    )
    return SynthObject(None, [p], [p])


def _mucus(rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain) -> SynthObject:
    heading = rng.uniform(0, 2 * np.pi)
    pts = [np.zeros(2)]
    for _ in range(int(rng.integers(6, 16))):
        heading += rng.normal(0.0, 0.35)
        pts.append(pts[-1] + _px(rng.uniform(8, 16), mpp) * np.array([np.cos(heading), np.sin(heading)]))
    path = np.asarray(pts) - np.mean(pts, axis=0)
    line = _line(
        path, cx, cy, stain.od("mucus", rng.uniform(0.6, 1.2)), _line_px(rng.uniform(2, 6), mpp), closed=False
    )
    return SynthObject(None, [line], [line])


BUILDERS: dict[str, Builder] = {
    "intermediate": intermediate,
    "superficial": superficial,
    "neutrophil_cluster": neutrophil_cluster,
    "parabasal": parabasal,
    "candida": candida,
    "trichomonas": trichomonas,
    "ascus": ascus,
    "lsil": lsil,
    "hsil": hsil,
    "scc": scc,
    "agc": agc,
}

# Unannotated objects: (builder, expected count per mm^2 of preparation).
CLUTTER: dict[str, tuple[Builder, float]] = {
    "rbc": (_rbc, 25.0),
    "lymphocyte": (_lymphocyte, 12.0),
    "debris": (_debris, 120.0),
    "mucus": (_mucus, 3.0),
}


def build(
    name: str, rng: np.random.Generator, cx: float, cy: float, *, mpp: float, stain: Stain
) -> SynthObject:
    """Build one object of class ``name`` (a key of :data:`BUILDERS`) centred at (cx, cy) level-0 px."""
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ValueError(f"class must be one of {', '.join(BUILDERS)}; got {name!r}") from None
    return builder(rng, cx, cy, mpp=mpp, stain=stain)


def build_clutter(
    rng: np.random.Generator,
    area_mm2: float,
    box: tuple[float, float, float, float],
    *,
    mpp: float,
    stain: Stain,
) -> list[SynthObject]:
    """Unannotated clutter (RBC ghosts, lymphocytes, debris, mucus) scattered uniformly over ``box``
    (x0, y0, x1, y1) level-0 px, at the densities of :data:`CLUTTER` for ``area_mm2``."""
    out = []
    for builder, per_mm2 in CLUTTER.values():
        for _ in range(int(rng.poisson(per_mm2 * area_mm2))):
            x = rng.uniform(box[0], box[2])
            y = rng.uniform(box[1], box[3])
            out.append(builder(rng, x, y, mpp=mpp, stain=stain))
    return out
