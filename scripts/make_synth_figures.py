"""Make the pictures of docs/synth.md from cytolt.synth (deterministic; about a minute on 2 cores).

    python scripts/make_synth_figures.py [--out docs/images]

Writes synth_classes.jpg (a grid of crops per class), synth_patches.jpg (patches with their ground-truth
boxes), synth_slide_thumb.jpg (a slide thumbnail with ground truth) and synth_slide_zoom.jpg (a level-0 crop).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import tifffile

from cytolt.synth import CLASS_COLORS, CLASSES, make_slide, render_patch
from cytolt.synth import cells as cell_builders
from cytolt.synth.render import Illumination, Stain, Textures, mask_box, object_mask, render_region

ROOT = Path(__file__).resolve().parents[1]
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _save(path: Path, bgr: np.ndarray) -> None:
    # JPEG keeps the repository light (the pictures are photographic); quality 90 shows no artefacts here.
    cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5, color=(20, 20, 20)) -> None:
    cv2.putText(img, text, org, FONT, scale, (255, 255, 255), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, color, 1, cv2.LINE_AA)


def class_grid(
    out: Path, *, examples: int = 5, crop_um: float = 90.0, mpp: float = 0.5, tile: int = 170
) -> None:
    """One row per class, ``examples`` crops of ``crop_um`` microns each, every crop its own stain."""
    side = round(crop_um / mpp)
    label_w = 190
    rows = []
    for k, name in enumerate(CLASSES):
        row = [np.full((tile, label_w, 3), 255, np.uint8)]
        _label(row[0], name, (8, tile // 2), 0.6, CLASS_COLORS[name][::-1])
        _label(row[0], f"class {k + 1}", (8, tile // 2 + 24), 0.45)
        for j in range(examples):
            rng = np.random.default_rng([2024, k, j])
            stain = Stain.sample(rng)
            textures = Textures(rng, mpp=mpp, period=256, max_window=side + 128)
            illum = Illumination.sample(rng, period_px=4 * side)
            obj = cell_builders.build(name, rng, side / 2, side / 2, mpp=mpp, stain=stain)
            clutter = cell_builders.build_clutter(
                rng, (side * mpp / 1000) ** 2, (0, 0, side, side), mpp=mpp, stain=stain
            )
            img = render_region(
                [obj, *clutter],
                x0=0,
                y0=0,
                width=side,
                height=side,
                mpp=mpp,
                stain=stain,
                textures=textures,
                illumination=illum,
            )
            row.append(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)[:, :, ::-1])
        rows.append(np.hstack(row))
    grid = np.vstack(rows)
    bar = np.full((30, grid.shape[1], 3), 255, np.uint8)
    _label(
        bar,
        f"cytolt.synth classes, head (top) to tail (bottom); crops {crop_um:.0f} um, rendered at {mpp} um/px",
        (8, 21),
        0.55,
    )
    _save(out / "synth_classes.jpg", np.vstack([bar, grid]))


def _draw_boxes(img: np.ndarray, boxes: list[tuple[list[float], str]], scale: float, thickness: int) -> None:
    for (x0, y0, x1, y1), name in boxes:
        p0 = (int(x0 * scale), int(y0 * scale))
        p1 = (int(np.ceil(x1 * scale)), int(np.ceil(y1 * scale)))
        cv2.rectangle(img, p0, p1, CLASS_COLORS[name][::-1], thickness, cv2.LINE_AA)


def _legend(width: int, names: list[str]) -> np.ndarray:
    bar = np.full((28, width, 3), 255, np.uint8)
    x = 8
    for name in names:
        cv2.rectangle(bar, (x, 8), (x + 14, 22), CLASS_COLORS[name][::-1], -1)
        _label(bar, name, (x + 18, 20), 0.45)
        x += 26 + cv2.getTextSize(name, FONT, 0.45, 1)[0][0]
    return bar


def patch_examples(out: Path, *, size: int = 384) -> None:
    """Four patches (0.5 um/px) with their ground-truth boxes, one tail class in each."""
    tiles = []
    for i, extra in enumerate(("ascus", "lsil", "hsil", "agc")):
        labels = ["intermediate"] * 3 + ["superficial", "neutrophil_cluster", "parabasal", extra]
        img, objects = render_patch(labels, size=size, mpp=0.5, seed=(77, i))
        img = np.ascontiguousarray(img[:, :, ::-1])
        boxes = [(mask_box(object_mask(o, x0=0, y0=0, width=size, height=size)), o.label) for o in objects]
        _draw_boxes(img, [(list(b), name) for b, name in boxes if b is not None], 1.0, 2)
        tiles.append(img)
    grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    names = ["intermediate", "superficial", "neutrophil_cluster", "parabasal", "ascus", "lsil", "hsil", "agc"]
    _save(out / "synth_patches.jpg", np.vstack([grid, _legend(grid.shape[1], names)]))


def slide_pictures(out: Path, *, size: int = 12000, label: str = "HSIL") -> None:
    """A slide thumbnail with every ground-truth box, and a level-0 zoom on an abnormal cell."""
    with tempfile.TemporaryDirectory() as tmp:
        truth = make_slide(Path(tmp) / "slide.tiff", size=(size, size), label=label, seed=1)
        with tifffile.TiffFile(truth.path) as tf:
            levels = tf.series[0].levels
            k = next(i for i, (w, h) in enumerate(truth.level_sizes) if max(w, h) <= 1600)
            thumb = np.ascontiguousarray(levels[k].asarray()[:, :, ::-1])
            scale = thumb.shape[1] / size
            boxes = [(list(c.box), c.label) for c in truth.cells]
            # Normal cells would hide the picture under a thousand boxes: draw abnormal cells and organisms.
            rare = [
                b
                for b in boxes
                if b[1] not in ("intermediate", "superficial", "neutrophil_cluster", "parabasal")
            ]
            _draw_boxes(thumb, rare, scale, 3)
            counts = truth.counts()
            names = [n for n in CLASSES if counts[n] and n in {b[1] for b in rare}]
            title = np.full((30, thumb.shape[1], 3), 255, np.uint8)
            _label(
                title,
                f"{size}x{size} px at {truth.mpp} um/px, label {label}: {len(boxes)} cells in the ground "
                f"truth; boxed: the {len(rare)} abnormal cells and organisms",
                (8, 21),
                0.5,
            )
            _save(out / "synth_slide_thumb.jpg", np.vstack([title, thumb, _legend(thumb.shape[1], names)]))
            # Level-0 zoom around the first HSIL cell.
            target = next(b for b in rare if b[1] == "hsil")
            cx, cy = (target[0][0] + target[0][2]) // 2, (target[0][1] + target[0][3]) // 2
            half = 400
            x0, y0 = max(cx - half, 0), max(cy - half, 0)
            zoom = np.ascontiguousarray(levels[0].asarray()[y0 : y0 + 2 * half, x0 : x0 + 2 * half, ::-1])
            local = [
                ([b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0], n)
                for b, n in boxes
                if b[2] > x0 and b[0] < x0 + 2 * half and b[3] > y0 and b[1] < y0 + 2 * half
            ]
            _draw_boxes(zoom, local, 1.0, 2)
            title = np.full((30, zoom.shape[1], 3), 255, np.uint8)
            _label(
                title, f"level 0 ({truth.mpp} um/px), 800x800 px around an HSIL cell, all boxes", (8, 21), 0.5
            )
            names = sorted({n for _, n in local}, key=CLASSES.index)
            _save(out / "synth_slide_zoom.jpg", np.vstack([title, zoom, _legend(zoom.shape[1], names)]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    class_grid(args.out)
    patch_examples(args.out)
    slide_pictures(args.out)
    print(f"wrote {', '.join(sorted(p.name for p in args.out.glob('synth_*.jpg')))} to {args.out}")


if __name__ == "__main__":
    main()
