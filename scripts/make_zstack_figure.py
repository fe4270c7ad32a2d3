"""Make docs/images/zstack.png: z-stack crops of a few classes, one row per cell, one column per focal plane.

    python scripts/make_zstack_figure.py [--out docs/images] [--planes 5] [--step 1.5]

Deterministic (cytolt.synth.zstack.render_zstack with fixed seeds); a second or two on 2 cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from make_synth_figures import _label  # scripts/ is on sys.path when this file runs as a script

from cytolt.synth import CLASS_COLORS
from cytolt.synth.zstack import layer_depths, plane_depths, render_zstack

ROOT = Path(__file__).resolve().parents[1]
# (class, seed): cells whose nucleus and cytoplasm sit at clearly different depths, and one that is flat.
ROWS = (("intermediate", 3), ("superficial", 1), ("lsil", 2), ("hsil", 4), ("scc", 0))


def zstack_figure(
    out: Path, *, planes: int = 5, step_um: float = 1.5, size: int = 90, mpp: float = 0.5
) -> Path:
    """One row per (class, seed) of :data:`ROWS`, ``planes`` columns; returns the PNG's path."""
    depths = plane_depths(planes, step_um)
    label_w = 150
    header = np.full((28, label_w + planes * (size + 4), 3), 255, np.uint8)
    for t, z in enumerate(depths):
        _label(header, f"z {z:+.1f} um", (label_w + t * (size + 4) + 18, 19), 0.45)
    rows = [header]
    for name, seed in ROWS:
        stack = render_zstack(name, planes=planes, step_um=step_um, size=size, mpp=mpp, seed=(2026, seed))
        depth = layer_depths(name, size=size, mpp=mpp, seed=(2026, seed))
        row = np.full((size + 4, header.shape[1], 3), 255, np.uint8)
        _label(row, name, (6, size // 2 - 4), 0.55, CLASS_COLORS[name][::-1])
        _label(row, f"cytoplasm {depth.get('cytoplasm', 0.0):+.1f} um", (6, size // 2 + 18), 0.4)
        for t in range(planes):
            x = label_w + t * (size + 4)
            row[2 : 2 + size, x : x + size] = stack[t][:, :, ::-1]
        rows.append(row)
    footer = np.full((26, header.shape[1], 3), 255, np.uint8)
    _label(
        footer,
        f"render_zstack: {size * mpp:.0f} um crops at {mpp} um/px, 40x/0.75 NA, nucleus centre at z = 0",
        (6, 18),
        0.42,
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "zstack.png"
    cv2.imwrite(str(path), np.vstack([*rows, footer]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--planes", type=int, default=5)
    parser.add_argument("--step", type=float, default=1.5, help="plane spacing, microns")
    args = parser.parse_args()
    path = zstack_figure(args.out, planes=args.planes, step_um=args.step)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
