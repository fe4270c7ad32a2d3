"""Long-tailed synthetic cell crops, for tests and the classifier benchmark.

Each crop is a small field rendered with :mod:`cytolt.synth` (the same cell builders, stain, textures,
illumination and clutter as :func:`cytolt.synth.render_patch`): the labelled cell at the centre, neighbouring cells
around it at the density of a patch (``CELLS_PER_UM2``), and unannotated clutter (RBC ghosts, lymphocytes, debris,
mucus). The field is only as large as the crop square (:func:`cytolt.classify.crops.crop_squares`), so a crop
costs about a millisecond instead of a 512 px patch; it is then cut and resampled by the same code as
:func:`~cytolt.classify.crops.crops_from_coco`, so synthetic crops have the geometry of real ones.

Every crop has its own random stream ``(seed, class position, index in class)``: a crop does not depend on the
others, so raising a class's count adds crops and changes none, and the same seed gives identical arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from cytolt.classify.crops import CONTEXT, CropSet, crop_squares, crops_from_image
from cytolt.synth import CLASSES, long_tail_counts
from cytolt.synth import cells as synth_cells
from cytolt.synth.render import Illumination, Stain, SynthObject, Textures, blur_margin, render_region

__all__ = ["CELLS_PER_UM2", "long_tail_counts", "make_crop_set"]

# Cells per square micron of a synthetic patch: make_patch_dataset's default of 12 cells per 512 x 512 px at
# 0.5 um/px (256 um)^2. A 64 um field then holds 0.75 neighbours on average.
CELLS_PER_UM2 = 12.0 / 256.0**2
# The largest synthetic object (a candida tangle or an AGC sheet) spans about 120 um; a field is never larger
# than CONTEXT_CAP_UM times the context factor, which bounds the texture window (an object beyond it is cut).
CONTEXT_CAP_UM = 160.0
# Distance between the labelled cell's centre and a neighbour's, as a fraction of the sum of their radii:
# the neighbours touch or overlap the cell a little, as in a thin layer, and never cover its centre.
NEIGHBOUR_DISTANCE = (0.75, 1.15)
_STREAM = 0xC209  # separates the crops' random streams from other users of the same seed


def make_crop_set(
    *,
    per_class: Sequence[int] | None = None,
    imbalance: float = 100.0,
    head: int = 500,
    size: int = 64,
    mpp: float = 1.0,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
    context: float = CONTEXT,
    progress: bool = False,
) -> CropSet:
    """A long-tailed :class:`~cytolt.classify.crops.CropSet` of synthetic cells (module docstring).

    Args:
        per_class: crops per class, in ``classes`` order; None: :func:`long_tail_counts` of ``head`` and
            ``imbalance``.
        size: crop side (px); mpp: microns per pixel of the crops (and of the rendered fields).
        classes: class names of :mod:`cytolt.synth` (labels are positions in this sequence); neighbours are drawn
            from them in proportion to the counts, as a field's population would be.
        context: the crop context factor (:mod:`cytolt.classify.crops`).
    """
    classes = tuple(classes)
    unknown = [c for c in classes if c not in synth_cells.BUILDERS]
    if not classes or unknown:
        raise ValueError(f"classes must be names of {', '.join(synth_cells.BUILDERS)}; got {list(classes)}")
    counts = list(per_class) if per_class is not None else long_tail_counts(len(classes), head, imbalance)
    if len(counts) != len(classes) or any(int(n) < 0 for n in counts) or sum(counts) == 0:
        raise ValueError(
            f"per_class must give {len(classes)} counts >= 0, not all 0, in classes order; got {counts}"
        )
    if size < 8:
        raise ValueError(f"size must be >= 8 px; got {size}")
    if not 0.05 <= mpp <= 10:
        raise ValueError(f"mpp must be between 0.05 and 10 microns per pixel; got {mpp}")
    max_field = max(size, math.ceil(max(context, 1.0) * CONTEXT_CAP_UM / mpp))
    # render_region draws a margin of at least 8 px, more for the focus blur (at most 0.45 um, Stain.sample).
    margin = max(8, blur_margin(0.45 / mpp))
    textures = Textures(
        np.random.default_rng([seed, _STREAM, 0x7E4]), mpp=mpp, period=512, max_window=max_field + 2 * margin
    )
    population = np.asarray(counts, np.float64) / sum(counts)
    images = np.empty((sum(counts), size, size, 3), np.uint8)
    labels, sources = [], []
    bar = tqdm(total=sum(counts), desc="crops", unit="crop", disable=not progress)
    for k, (name, n) in enumerate(zip(classes, counts, strict=True)):
        for j in range(int(n)):
            rng = np.random.default_rng([seed, _STREAM, k, j])
            image, box, crop_mpp = _render_crop(
                rng, name, classes, population, size=size, mpp=mpp, context=context,
                max_field=max_field, textures=textures,
            )  # fmt: skip
            images[len(labels)] = image
            record = {"source": "synthetic", "box": [round(v, 3) for v in box], "id": f"{name}:{j}"}
            if crop_mpp > mpp * (1 + 1e-9):
                record["mpp"] = round(crop_mpp, 6)
            labels.append(k)
            sources.append(record)
            bar.update()
    bar.close()
    info = {
        "generator": "cytolt.classify.synth_crops",
        "seed": seed,
        "per_class": [int(n) for n in counts],
        "imbalance": imbalance if per_class is None else None,
        "head": head if per_class is None else None,
    }
    return CropSet(images, labels, classes, mpp, sources=sources, context=context, info=info)


def _render_crop(
    rng: np.random.Generator,
    name: str,
    classes: tuple[str, ...],
    population: np.ndarray,
    *,
    size: int,
    mpp: float,
    context: float,
    max_field: int,
    textures: Textures,
) -> tuple[np.ndarray, list[float], float]:
    """One crop: (image (S, S, 3) uint8, the labelled cell's box in the field, the crop's mpp)."""
    stain = Stain.sample(rng)
    cell = synth_cells.build(name, rng, 0.0, 0.0, mpp=mpp, stain=stain)
    _, sides, _ = crop_squares(np.array(cell.bbox), size=size, mpp=mpp, context=context, pixel_mpp=mpp)
    field = min(max(1, round(float(sides[0, 0]))), max_field)
    # The cell stays where it was built (moving an object copies all its prims); the window moves instead.
    cx, cy = cell.center
    x0, y0 = round(cx - field / 2.0), round(cy - field / 2.0)
    window = (float(x0), float(y0), float(x0 + field), float(y0 + field))
    objects = [cell, *_neighbours(rng, cell, classes, population, field=field, mpp=mpp, stain=stain)]
    objects += synth_cells.build_clutter(rng, (field * mpp / 1000.0) ** 2, window, mpp=mpp, stain=stain)
    illumination = Illumination.sample(rng, period_px=rng.uniform(2.0, 4.0) * max(field, 256))
    offset = tuple(int(v) for v in rng.integers(0, textures.period, size=2))
    image = render_region(
        objects,
        x0=x0,
        y0=y0,
        width=field,
        height=field,
        mpp=mpp,
        stain=stain,
        textures=textures,
        illumination=illumination,
        texture_offset=offset,
    )
    box = np.array(cell.bbox) - (x0, y0, x0, y0)
    crop, crop_mpp = crops_from_image(image, box, size=size, mpp=mpp, pixel_mpp=mpp, context=context)
    return crop[0], box.tolist(), float(crop_mpp[0])


def _neighbours(
    rng: np.random.Generator,
    cell: SynthObject,
    classes: tuple[str, ...],
    population: np.ndarray,
    *,
    field: int,
    mpp: float,
    stain: Stain,
) -> list[SynthObject]:
    """Unlabelled cells around ``cell``, Poisson in number at ``CELLS_PER_UM2`` over the field."""
    out = []
    radius = _radius(cell)
    cx, cy = cell.center
    for _ in range(int(rng.poisson(CELLS_PER_UM2 * (field * mpp) ** 2))):
        other = synth_cells.build(str(rng.choice(classes, p=population)), rng, 0.0, 0.0, mpp=mpp, stain=stain)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        distance = rng.uniform(*NEIGHBOUR_DISTANCE) * (radius + _radius(other))
        ox, oy = other.center
        out.append(other.moved(cx + distance * np.cos(angle) - ox, cy + distance * np.sin(angle) - oy))
    return out


def _radius(obj: SynthObject) -> float:
    x0, y0, x1, y1 = obj.bbox
    return max(x1 - x0, y1 - y0) / 2.0
