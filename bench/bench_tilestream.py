"""TileStream throughput against a naive OpenSlide loop and against direct tile decoding, in one run.

On a synthetic tiled-JPEG slide (written here with tifffile: levels as pages, 256-px tiles, cells on pale
glass with scanner noise), every side reads the same level-0 tiles into (256, 256, 3) uint8 RGB:

    openslide   naive loop: np.asarray(OpenSlide.read_region(...))[..., :3], one thread
    direct      os.pread of each tile's bytes + imagecodecs.jpeg8_decode with the JPEGTables, one thread
    stream      TileStream(grid, batch_size=16, workers=2, mode="thread") -> uint8 (B, 3, H, W) tensors
    process     the same with mode="process" (spawn start-up included, and excluded)
    zarr / read_region   TiffSlide.read_region through zarr slicing vs the direct tile path, one thread

Rounds are interleaved (A B C ... A B C ...), after one untimed warm-up round; medians and min-max spreads
of tiles/s. Then a 100,000 x 100,000 slide (sparse: empty glass never written, a band of cells written)
is tissue-masked and streamed in a fresh process whose peak RSS must stay under 1 GB.

Goals (issue 4): stream >= 3x openslide and >= 0.7x direct on 2 cores; RSS < 1 GB for the big slide.
Exits 1 when a goal is missed. Writes docs/bench/tilestream.json. Run: .venv/bin/python bench/bench_tilestream.py
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import tifffile

from cytolt.io import TileGrid, TileStream, open_slide, tissue_mask
from cytolt.io.tiff_backend import TiffSlide

ROOT = Path(__file__).resolve().parents[1]
TILE = 256
MPP = 0.25  # 40x, as Aperio-scanned cytology
GOAL_VS_OPENSLIDE = 3.0
GOAL_VS_DIRECT = 0.7
GOAL_RSS_MB = 1024.0
BIG = 100_000


def cell_tile(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size, 3) uint8: pale glass with sensor noise and stained cells with dark nuclei."""
    tile = np.clip(rng.normal(234, 3.0, (size, size, 3)), 0, 255).astype(np.uint8)
    colours = [(225, 165, 185), (160, 205, 200), (210, 185, 215)]
    for _ in range(cells):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        axes = (int(rng.integers(20, 60)), int(rng.integers(15, 45)))
        colour = colours[int(rng.integers(0, 3))]
        cv2.ellipse(tile, centre, axes, float(rng.integers(0, 180)), 0, 360, colour, -1)
        cv2.ellipse(tile, centre, (axes[0] // 4, axes[1] // 4), 0, 0, 360, (70, 50, 110), -1)
    noise = rng.integers(-4, 5, tile.shape)  # texture inside the cells too, so JPEG has work to do
    return np.clip(tile.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def write_bench_slide(path: Path, tiles_x: int, tiles_y: int, seed: int = 0) -> Path:
    """A tiles_x x tiles_y grid of distinct 256-px JPEG tiles (quality 90), levels 1, 4, 16 as pages."""
    rng = np.random.default_rng(seed)
    image = np.empty((tiles_y * TILE, tiles_x * TILE, 3), np.uint8)
    for ty in range(tiles_y):
        for tx in range(tiles_x):
            image[ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE] = cell_tile(rng, TILE, 6)
    with tifffile.TiffWriter(path) as tw:
        level = image
        for k in range(3):
            tw.write(
                level,
                tile=(TILE, TILE),
                compression="jpeg",
                compressionargs={"level": 90},
                photometric="rgb",
                subfiletype=1 if k else 0,
                metadata=None,
                resolution=(1e4 / MPP, 1e4 / MPP),
                resolutionunit="CENTIMETER",
            )
            level = cv2.resize(
                level, (level.shape[1] // 4, level.shape[0] // 4), interpolation=cv2.INTER_AREA
            )
    return path


def write_big_slide(path: Path, size: int = BIG, band: tuple[int, int] = (40_000, 41_024)) -> Path:
    """A size x size slide where only a vertical band of cells (level-0 columns ``band``) is written; the
    rest is sparse (empty glass, never stored, reads as white). Levels 1, 4, 16, 64 as pages. Tiles are
    encoded once per level and column and repeated down the band, so writing takes seconds."""
    rng = np.random.default_rng(1)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for k, ds in enumerate((1, 4, 16, 64)):
            side = -(-size // ds)
            n = -(-side // TILE)
            # Level pixels of the band, and the tile columns it touches.
            b0, b1 = band[0] // ds, max(band[0] // ds + 1, band[1] // ds)
            encoded = {}
            for col in range(b0 // TILE, (b1 - 1) // TILE + 1):
                variants = []
                for _ in range(4):
                    tile = np.full((TILE, TILE, 3), 255, np.uint8)
                    x0, x1 = max(b0 - col * TILE, 0), min(b1 - col * TILE, TILE)
                    tile[:, x0:x1] = cell_tile(rng, TILE, 6)[:, x0:x1]
                    variants.append(imagecodecs.jpeg8_encode(tile, level=90))
                encoded[col] = variants

            def tiles(n: int = n, encoded: dict = encoded):
                for i in range(n * n):
                    variants = encoded.get(i % n)
                    yield b"" if variants is None else variants[(i // n) % len(variants)]

            tw.write(
                tiles(),
                shape=(side, side, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="jpeg",
                photometric="rgb",
                subfiletype=1 if k else 0,
                metadata=None,
                resolution=(1e4 / MPP, 1e4 / MPP),
                resolutionunit="CENTIMETER",
            )
    return path


# ---------------------------------------------------------------- the sides
def side_openslide(path: Path, xywh: np.ndarray) -> int:
    import openslide

    with openslide.OpenSlide(str(path)) as osr:
        for x, y, w, h in xywh.tolist():
            tile = np.asarray(osr.read_region((x, y), 0, (w, h)))[..., :3]
    assert tile.shape == (TILE, TILE, 3)
    return len(xywh)


def side_direct(path: Path, xywh: np.ndarray) -> int:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offsets, counts, tables = page.dataoffsets, page.databytecounts, page.jpegtables
        cols = -(-page.imagewidth // page.tilewidth)
    fd = os.open(path, os.O_RDONLY)
    try:
        for x, y, _, _ in xywh.tolist():
            i = (y // TILE) * cols + x // TILE
            tile = imagecodecs.jpeg8_decode(os.pread(fd, counts[i], offsets[i]), tables=tables)
    finally:
        os.close(fd)
    assert tile.shape == (TILE, TILE, 3)
    return len(xywh)


def side_stream(
    grid: TileGrid, mode: str, workers: int, timeline: list[tuple[float, float, float]] | None = None
) -> int:
    """Stream the grid; with ``timeline``, record (first batch, last batch, end incl. shutdown) seconds."""
    n = 0
    start = time.perf_counter()
    first = last = 0.0
    for batch in TileStream(grid, batch_size=16, workers=workers, mode=mode, pin_memory=False):
        last = time.perf_counter() - start
        first = first or last
        n += len(batch)
    if timeline is not None:
        timeline.append((first, last, time.perf_counter() - start))
    return n


def side_read_region(slide: TiffSlide, xywh: np.ndarray) -> int:
    for x, y, w, h in xywh.tolist():
        slide.read_region((x, y), 0, (w, h))
    return len(xywh)


def measure(sides: dict[str, Callable[[], int]], rounds: int) -> dict[str, list[float]]:
    """Tiles/s of each side per round; one untimed warm-up round, then rounds interleaved A B C A B C."""
    for fn in sides.values():
        fn()
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            n = fn()
            rates[name].append(n / (time.perf_counter() - t0))
    return rates


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# ---------------------------------------------------------------- big-slide memory check
def big_check(path: Path) -> dict[str, float]:
    """Mask and stream the big slide; runs in its own process so its peak RSS is its own."""
    import torch

    torch.set_num_threads(1)
    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # python + torch + cytolt.io
    t0 = time.perf_counter()
    with open_slide(path) as slide:
        mask = tissue_mask(slide, mpp=8.0)
        grid = TileGrid(slide, tile_size=TILE, mask=mask)
        t_mask = time.perf_counter() - t0
        rss_after_mask = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n = sum(len(b) for b in TileStream(grid, batch_size=16, workers=2, pin_memory=False))
        return {
            "dimensions": list(slide.dimensions),
            "tiles_total": grid.total,
            "tiles_kept": len(grid),
            "tiles_streamed": n,
            "fraction_kept": grid.fraction_kept,
            "mask_seconds": t_mask,
            "stream_seconds": time.perf_counter() - t0 - t_mask,
            "rss_mb_after_imports": rss_imports,
            "peak_rss_mb_after_mask": rss_after_mask,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tiles", type=int, default=32, help="slide is TILES x TILES/2 tiles of 256 px")
    parser.add_argument("--skip-big", action="store_true", help="skip the 100k x 100k memory check")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "tilestream.json")
    parser.add_argument("--big-only", type=Path, help=argparse.SUPPRESS)  # internal: the RSS subprocess
    args = parser.parse_args()

    if args.big_only:
        print(json.dumps(big_check(args.big_only)))
        return 0

    import torch

    torch.set_num_threads(1)  # the consumer only stacks tensors; decode workers get the cores
    cv2.setNumThreads(1)
    cores = os.cpu_count()
    load_before = os.getloadavg()[0]  # the machine is shared: record how busy it was
    print(
        f"cores={cores} torch={torch.__version__} torch_threads=1 cv2_threads=1 stream: batch 16, 2 workers"
    )

    with tempfile.TemporaryDirectory(prefix="cytolt-bench-") as tmp:
        path = write_bench_slide(Path(tmp) / "bench.tiff", args.tiles, args.tiles // 2)
        with open_slide(path) as slide:
            grid = TileGrid(slide, tile_size=TILE)
        xywh = np.array(grid.xywh)
        print(
            f"slide {slide.dimensions[0]}x{slide.dimensions[1]}, {len(grid)} tiles of {TILE} px, "
            f"{os.path.getsize(path) / 1e6:.1f} MB"
        )
        timelines: dict[str, list[tuple[float, float, float]]] = {"thread": [], "process": []}
        zarr_slide, direct_slide = TiffSlide(path, direct=False), TiffSlide(path)
        sides = {
            "openslide": lambda: side_openslide(path, xywh),
            "direct": lambda: side_direct(path, xywh),
            "stream": lambda: side_stream(grid, "thread", 2, timelines["thread"]),
            "stream_1worker": lambda: side_stream(grid, "thread", 1),
            "process": lambda: side_stream(grid, "process", 2, timelines["process"]),
            "read_region_direct": lambda: side_read_region(direct_slide, xywh),
            "read_region_zarr": lambda: side_read_region(zarr_slide, xywh),
        }
        rates = measure(sides, args.rounds)
        zarr_slide.close()
        direct_slide.close()
        # Steady state of each mode: tiles after the first batch over the time from the first to the last
        # batch, leaving out start-up and shutdown (fixed costs, paid once per slide; large for spawned
        # processes). Both modes get the same slight bonus of a read-ahead filled during start-up.
        phases = {}
        for mode, timeline in timelines.items():
            timeline = timeline[1:]  # drop the warm-up round
            phases[mode] = {
                "startup_s": statistics.median(t[0] for t in timeline),
                "shutdown_s": statistics.median(t[2] - t[1] for t in timeline),
                "steady_tiles_per_s": summary([(len(grid) - 16) / (t[1] - t[0]) for t in timeline]),
            }
        rss_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        big = None
        if not args.skip_big:
            big_path = write_big_slide(Path(tmp) / "big.tiff")
            out = subprocess.run(
                [sys.executable, __file__, "--big-only", str(big_path)],
                check=True,
                capture_output=True,
                text=True,
            )
            big = json.loads(out.stdout.strip().splitlines()[-1])

    med = {name: statistics.median(v) for name, v in rates.items()}
    vs_openslide = med["stream"] / med["openslide"]
    vs_direct = med["stream"] / med["direct"]
    print(f"\n{'side':<20}{'tiles/s median':>16}{'min':>10}{'max':>10}")
    for name, values in rates.items():
        s = summary(values)
        print(f"{name:<20}{s['median']:>16.0f}{s['min']:>10.0f}{s['max']:>10.0f}")
    print(
        f"\n{'steady state':<20}{'tiles/s median':>16}{'min':>10}{'max':>10}{'start-up s':>12}{'shutdown s':>12}"
    )
    for mode, phase in phases.items():
        st = phase["steady_tiles_per_s"]
        print(
            f"{mode:<20}{st['median']:>16.0f}{st['min']:>10.0f}{st['max']:>10.0f}"
            f"{phase['startup_s']:>12.2f}{phase['shutdown_s']:>12.2f}"
        )
    thread_vs_process = med["stream"] / med["process"]
    thread_vs_process_steady = (
        phases["thread"]["steady_tiles_per_s"]["median"] / phases["process"]["steady_tiles_per_s"]["median"]
    )
    print(f"\nread_region direct/zarr = {med['read_region_direct'] / med['read_region_zarr']:.2f}x")
    print(
        f"thread/process = {thread_vs_process:.2f}x whole stream, {thread_vs_process_steady:.2f}x steady state"
    )
    print(f"stream/direct = {vs_direct:.2f}x (goal >= {GOAL_VS_DIRECT}x)")
    print(
        f"peak RSS this process: {rss_main:.0f} MB; 1-min load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    goals = {
        "stream_vs_openslide": vs_openslide >= GOAL_VS_OPENSLIDE,
        "stream_vs_direct": vs_direct >= GOAL_VS_DIRECT,
    }
    if big is not None:
        goals["big_slide_rss"] = big["peak_rss_mb"] < GOAL_RSS_MB
        print(
            f"big slide {big['dimensions'][0]}x{big['dimensions'][1]}: kept {big['tiles_kept']}/"
            f"{big['tiles_total']} tiles ({100 * big['fraction_kept']:.2f}%), mask {big['mask_seconds']:.1f} s, "
            f"streamed {big['tiles_streamed']} in {big['stream_seconds']:.1f} s, peak RSS {big['peak_rss_mb']:.0f} MB "
            f"(goal < {GOAL_RSS_MB:.0f} MB; {big['rss_mb_after_imports']:.0f} MB after importing torch and cytolt.io)"
        )

    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cores": cores,
            "cpu": cpu_name(),
            "torch": torch.__version__,
            "device": "cpu",
            "torch_threads": 1,
            "cv2_threads": 1,
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "config": {
            "tiles": len(grid),
            "tile_size": TILE,
            "batch_size": 16,
            "workers": 2,
            "rounds": args.rounds,
            "jpeg_quality": 90,
        },
        "tiles_per_s": {name: summary(v) | {"rounds": v} for name, v in rates.items()},
        "phases": phases,
        "ratios": {
            "stream/openslide": vs_openslide,
            "stream/direct": vs_direct,
            "thread/process": thread_vs_process,
            "thread/process steady": thread_vs_process_steady,
            "read_region direct/zarr": med["read_region_direct"] / med["read_region_zarr"],
        },
        "peak_rss_mb": rss_main,
        "big_slide": big,
        "goals": goals,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    missed = [name for name, ok in goals.items() if not ok]
    if missed:
        print(f"GOAL MISSED: {', '.join(missed)}")
    print(f"tilestream/openslide = {vs_openslide:.1f}x (median of {args.rounds})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
