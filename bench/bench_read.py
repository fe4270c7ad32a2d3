"""The default reader (open_slide's backend="auto") against OpenSlide forced, on SVS and tiled TIFF, in one run.

Two synthetic slides from cytolt.synth (the same cells, seed and size; Aperio SVS and generic tiled TIFF, JPEG
tiles of 256 px, quality 90); every side reads every 512-px level-0 tile of the slide, as screening does, into
(512, 512, 3) uint8 through TileStream (the screening path's reader; batches of 8):

    auto_t2 / auto_t0            open_slide(path): tifffile here, 2 read threads / read in the calling thread
    openslide_t2 / openslide_t0  open_slide(path, backend="openslide"), the same

Rounds are interleaved after one untimed warm-up round; medians and min-max spreads of tiles/s. After timing,
every tile is read by both and compared: the largest absolute pixel difference is reported (the goal is 0).

Goal (issue 23): auto >= 2x openslide with 2 read threads on both formats, pixels equal. Exits 1 when missed.
Writes docs/bench/read.json. Run: .venv/bin/python bench/bench_read.py [--size 8192] [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from _common import ROOT, interleaved, peak_rss_mb, ratio, table, write_record  # noqa: E402

from cytolt.io import TileGrid, TileStream, open_slide  # noqa: E402
from cytolt.io.backends import explain_backend  # noqa: E402
from cytolt.synth import make_slide  # noqa: E402

TILE = 512
GOAL = 2.0
FORMATS = {"svs": ("aperio", ".svs"), "tiff": ("tiff", ".tiff")}


def stream_tiles(path: Path, backend: str, workers: int) -> int:
    """Read every TILE-px level-0 tile of the slide through TileStream; returns the tile count."""
    with open_slide(path, backend=backend) as slide:
        grid = TileGrid(slide, tile_size=TILE)
        n = 0
        for batch in TileStream(grid, batch_size=8, workers=workers, pin_memory=False, slide=slide):
            n += len(batch)
    return n


def max_difference(path: Path) -> tuple[int, int]:
    """(tiles compared, largest absolute pixel difference) between the default reader and OpenSlide."""
    with open_slide(path) as auto, open_slide(path, backend="openslide") as osl:
        grid = TileGrid(auto, tile_size=TILE)
        worst = 0
        for x, y, w, h in grid.xywh:
            a = auto.read_region((x, y), 0, (w, h))
            b = osl.read_region((x, y), 0, (w, h))
            worst = max(worst, int(np.abs(a.astype(np.int16) - b).max()))
    return len(grid), worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="slide side in level-0 px (default 8192)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "read.json")
    args = parser.parse_args()

    import cv2
    import torch

    torch.set_num_threads(1)  # the consumer only stacks tensors; the read threads get the cores
    cv2.setNumThreads(1)
    print(
        f"torch_threads=1 cv2_threads=1; every {TILE}-px tile of a {args.size}-px slide, TileStream batch 8"
    )
    results, checks = {}, {}
    with tempfile.TemporaryDirectory(prefix="cytolt-bench-read-") as tmp:
        paths = {}
        for name, (fmt, suffix) in FORMATS.items():
            paths[name] = make_slide(
                Path(tmp) / f"slide{suffix}", size=(args.size, args.size), format=fmt, seed=0, tile=256
            ).path
            choice = explain_backend(paths[name])
            print(f"{name}: auto reads it with {choice.backend} ({choice.reason})")
            checks[name] = {"auto_backend": choice.backend, "reason": choice.reason}
        sides = {
            f"{name}/{backend}_t{workers}": (lambda p=path, b=backend, w=workers: stream_tiles(p, b, w))
            for name, path in paths.items()
            for workers in (2, 0)
            for backend in ("auto", "openslide")
        }
        results = interleaved(sides, args.rounds)
        for name, path in paths.items():
            tiles, worst = max_difference(path)
            checks[name] |= {"tiles_compared": tiles, "max_abs_difference": worst}

    rows = [
        [name, f"{r.median_rate:.0f}", f"{min(r.rates):.0f}", f"{max(r.rates):.0f}", r.items[0]]
        for name, r in results.items()
    ]
    print("\n" + table(rows, ["side", "tiles/s median", "min", "max", "tiles"]))
    ratios = {
        f"{name}/auto/openslide_t{w}": ratio(results[f"{name}/auto_t{w}"], results[f"{name}/openslide_t{w}"])
        for name in FORMATS
        for w in (2, 0)
    }
    for key, value in ratios.items():
        print(f"{key} = {value:.2f}x")
    for name, check in checks.items():
        print(
            f"{name}: {check['tiles_compared']} tiles compared, max abs difference {check['max_abs_difference']}"
        )
    counts = {r.items[0] for r in results.values()}
    goals = {
        **{f"{name}_auto_vs_openslide_t2": ratios[f"{name}/auto/openslide_t2"] >= GOAL for name in FORMATS},
        "pixels_equal": all(c["max_abs_difference"] == 0 for c in checks.values()),
        "same_tiles_every_side": len(counts) == 1,
        "auto_is_tifffile": all(c["auto_backend"] == "tifffile" for c in checks.values()),
    }
    write_record(
        args.out,
        {
            "config": {
                "size": args.size,
                "tile": TILE,
                "file_tile": 256,
                "jpeg_quality": 90,
                "rounds": args.rounds,
            },
            "sides": {name: r.to_dict() for name, r in results.items()},
            "ratios": ratios,
            "checks": checks,
            "peak_rss_mb": peak_rss_mb(),
            "goals": goals,
        },
        torch_threads=1,
        cv2_threads=1,
    )
    missed = [name for name, ok in goals.items() if not ok]
    if missed:
        print(f"GOAL MISSED: {', '.join(missed)}")
    worst = min(ratios[f"{name}/auto/openslide_t2"] for name in FORMATS)
    print(
        f"read auto/openslide = {worst:.1f}x (the lower of SVS and TIFF, 2 read threads, median of {args.rounds})"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
