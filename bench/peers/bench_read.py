"""cytolt's default reader against the peers, on the same tiles, in one run: tiffslide, OpenSlide's own loop,
MONAI's WSIReader (OpenSlide and tifffile backends) and TIAToolbox; then a tissue-masked whole-slide read
against TIAToolbox's Otsu mask.

Two synthetic slides from cytolt.synth (the same cells, seed and size; Aperio SVS and generic tiled TIFF, 256-px
JPEG tiles of quality 90). Every side reads every 512-px level-0 tile of the slide (TileGrid's row-major list,
the same list for all) into (512, 512, 3) uint8 RGB, opening its reader inside the timed round:

    cytolt            open_slide(path) + TileStream(workers=2): the screening default (2 read threads)
    cytolt_1thread    the same with workers=0 (read in the calling thread), for the one-thread peers
    tiffslide         tiffslide.TiffSlide(path).read_region(..., as_array=True), one thread
    openslide         np.asarray(OpenSlide(path).read_region(...))[..., :3], one thread
    monai_openslide   monai.data.WSIReader(backend="openslide").get_data(...), one thread
    tiatoolbox        WSIReader.open(path).read_rect(..., resolution=0, units="level"), one thread
    monai_tifffile    WSIReader(backend="tifffile"): decodes the whole level per call, so it is timed on the
                      first --slow-tiles tiles only, against cytolt_1thread on the same tiles

Rounds interleave the sides after one untimed warm-up; medians and min-max spreads of tiles/s. Every side's
tile count is checked equal, and every peer's pixels are compared with cytolt's (largest and mean absolute
difference, tiles identical). Masked read (SVS): cytolt's tissue_mask + TileGrid(mask) + TileStream against
TIAToolbox's SlidingWindowPatchExtractor(input_mask="otsu"), same tile size and stride: time and tiles kept.

A peer that is not installed is reported as missing (with scripts/setup_peers.sh's reason), not an error.
Goal (issue 23): cytolt >= 2x the fastest peer on both formats, pixels equal. Exits 1 when missed.
Writes docs/bench/peers_read.json. Run: make bench-peers, or .venv-peers/bin/python bench/peers/bench_read.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from _common import ROOT, Peer, interleaved, peak_rss_mb, peer, ratio, table, write_record

from cytolt.io import TileGrid, TileStream, open_slide, tissue_mask
from cytolt.synth import make_slide

TILE = 512
GOAL = 2.0
FORMATS = {"svs": ("aperio", ".svs"), "tiff": ("tiff", ".tiff")}
Xywh = list[tuple[int, int, int, int]]
# A reader: path, tiles -> the tiles' (h, w, 3) uint8 arrays, one at a time.
Reader = Callable[[Path, Xywh], Iterator[np.ndarray]]


# ---------------------------------------------------------------- the readers
def read_cytolt(path: Path, xywh: Xywh, workers: int = 2) -> Iterator[np.ndarray]:
    with open_slide(path) as slide:
        grid = TileGrid(slide, tile_size=TILE)
        assert [tuple(t) for t in grid.xywh] == xywh[: len(grid)], "cytolt's grid is the tile list"
        for batch in TileStream(grid, batch_size=8, workers=workers, pin_memory=False, slide=slide):
            # uint8 (B, 3, H, W) channels_last view of the decoded (B, H, W, 3) pixels: no copy
            yield from batch.images.permute(0, 2, 3, 1).numpy()


def read_cytolt_loop(path: Path, xywh: Xywh) -> Iterator[np.ndarray]:
    """cytolt's Slide.read_region on any tile list (the slow-peer subset)."""
    with open_slide(path) as slide:
        for x, y, w, h in xywh:
            yield slide.read_region((x, y), 0, (w, h))


def readers(peers: dict[str, Peer]) -> dict[str, Reader]:
    """The one-thread peer readers whose library is installed."""
    out: dict[str, Reader] = {}
    if peers["tiffslide"].ok:
        tiffslide = peers["tiffslide"].module

        def read_tiffslide(path: Path, xywh: Xywh) -> Iterator[np.ndarray]:
            with tiffslide.TiffSlide(str(path)) as slide:
                for x, y, w, h in xywh:
                    yield np.asarray(slide.read_region((x, y), 0, (w, h), as_array=True))[..., :3]

        out["tiffslide"] = read_tiffslide
    if peers["openslide-python"].ok:
        openslide = peers["openslide-python"].module

        def read_openslide(path: Path, xywh: Xywh) -> Iterator[np.ndarray]:
            with openslide.OpenSlide(str(path)) as slide:
                for x, y, w, h in xywh:
                    yield np.asarray(slide.read_region((x, y), 0, (w, h)))[..., :3]

        out["openslide"] = read_openslide
    if peers["monai"].ok:
        out["monai_openslide"] = monai_reader(peers["monai"], "openslide")
    if peers["tiatoolbox"].ok:
        from tiatoolbox.wsicore.wsireader import WSIReader

        def read_tiatoolbox(path: Path, xywh: Xywh) -> Iterator[np.ndarray]:
            reader = WSIReader.open(path)
            for x, y, w, h in xywh:
                yield reader.read_rect((x, y), (w, h), resolution=0, units="level")[..., :3]

        out["tiatoolbox"] = read_tiatoolbox
    return out


def monai_reader(monai: Peer, backend: str) -> Reader:
    def read(path: Path, xywh: Xywh) -> Iterator[np.ndarray]:
        reader = monai.module.data.WSIReader(backend=backend, level=0, channel_dim=-1)
        wsi = reader.read(str(path))
        try:
            for x, y, w, h in xywh:
                # MONAI's location and size are (row, column): (y, x) and (h, w)
                patch, _ = reader.get_data(wsi, location=(y, x), size=(h, w), level=0)
                yield np.asarray(patch)
        finally:
            close = getattr(wsi, "close", None)
            if close is not None:
                close()

    return read


def counting(reader: Reader, path: Path, xywh: Xywh) -> Callable[[], int]:
    """A timed side: read every tile (touching one pixel so lazy readers decode), return the count."""

    def run() -> int:
        n = 0
        for tile in reader(path, xywh):
            assert tile.shape[:2] == (TILE, TILE), tile.shape
            n += 1
        return n

    return run


def differences(reference: Reader, other: Reader, path: Path, xywh: Xywh) -> dict[str, float]:
    """Pixel differences of ``other`` against ``reference`` on every tile (untimed)."""
    worst, total, same, n = 0, 0.0, 0, 0
    for a, b in zip(reference(path, xywh), other(path, xywh), strict=True):
        d = np.abs(a.astype(np.int16) - b.astype(np.int16))
        worst, total = max(worst, int(d.max())), total + float(d.mean())
        same += int(not d.any())
        n += 1
    return {"tiles": n, "max_abs": worst, "mean_abs": total / max(n, 1), "tiles_identical": same}


# ---------------------------------------------------------------- masked whole-slide read
def masked_cytolt(path: Path) -> tuple[int, set[tuple[int, int]]]:
    with open_slide(path) as slide:
        grid = TileGrid(slide, tile_size=TILE, mask=tissue_mask(slide))
        n = sum(len(b) for b in TileStream(grid, batch_size=8, workers=2, pin_memory=False, slide=slide))
        return n, {(int(x), int(y)) for x, y, _, _ in grid.xywh}


def masked_tiatoolbox(path: Path) -> tuple[int, set[tuple[int, int]]]:
    from tiatoolbox.tools.patchextraction import SlidingWindowPatchExtractor

    extractor = SlidingWindowPatchExtractor(
        input_img=path,
        patch_size=(TILE, TILE),
        stride=(TILE, TILE),
        input_mask="otsu",
        resolution=0,
        units="level",
    )
    n = sum(1 for _ in extractor)
    return n, {(int(c[0]), int(c[1])) for c in extractor.coordinate_list}


def masked_read(path: Path, rounds: int, tiatoolbox: Peer) -> dict:
    """Tiles kept and wall time of the masked whole-slide read, cytolt against TIAToolbox, interleaved."""
    kept: dict[str, set[tuple[int, int]]] = {}

    def side(fn: Callable[[Path], tuple[int, set[tuple[int, int]]]], name: str) -> Callable[[], int]:
        def run() -> int:
            n, kept[name] = fn(path)
            return n

        return run

    sides = {"cytolt": side(masked_cytolt, "cytolt")}
    if tiatoolbox.ok:
        sides["tiatoolbox"] = side(masked_tiatoolbox, "tiatoolbox")
    res = interleaved(sides, rounds)
    out = {name: {"tiles_kept": len(kept[name]), **r.to_dict()} for name, r in res.items()}
    if "tiatoolbox" in kept:
        both = kept["cytolt"] & kept["tiatoolbox"]
        out["agreement"] = {
            "both": len(both),
            "only_cytolt": len(kept["cytolt"] - both),
            "only_tiatoolbox": len(kept["tiatoolbox"] - both),
        }
        out["speed_ratio"] = res["tiatoolbox"].median_seconds / res["cytolt"].median_seconds
    return out


# ---------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="slide side in level-0 px (default 8192)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slow-tiles", type=int, default=4, help="tiles MONAI's tifffile reader is timed on")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "peers_read.json")
    args = parser.parse_args()

    import cv2
    import torch

    torch.set_num_threads(1)  # the consumer only stacks tensors; cytolt's read threads get the cores
    cv2.setNumThreads(1)
    peers = {
        "tiffslide": peer("tiffslide"),
        "openslide-python": peer("openslide", "openslide-python"),
        "monai": peer("monai"),
        "tiatoolbox": peer("tiatoolbox"),
    }
    for p in peers.values():
        print(f"peer {p.name}: {p.version if p.ok else 'MISSING (' + p.reason + ')'}")
    peer_readers = readers(peers)
    record: dict = {"peers": {name: p.to_dict() for name, p in peers.items()}, "formats": {}}
    goals: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="cytolt-peers-read-") as tmp:
        for name, (fmt, suffix) in FORMATS.items():
            path = make_slide(
                Path(tmp) / f"slide{suffix}", size=(args.size, args.size), format=fmt, seed=0, tile=256
            ).path
            with open_slide(path) as slide:
                backend = slide.backend
                xywh = [tuple(int(v) for v in t) for t in TileGrid(slide, tile_size=TILE).xywh]
            print(
                f"\n== {name}: {args.size} px, {len(xywh)} tiles of {TILE} px; cytolt reads it with {backend}"
            )
            sides = {
                "cytolt": counting(read_cytolt, path, xywh),
                "cytolt_1thread": counting(lambda p, t: read_cytolt(p, t, workers=0), path, xywh),
            }
            sides |= {peer_name: counting(fn, path, xywh) for peer_name, fn in peer_readers.items()}
            res = interleaved(sides, args.rounds)
            counts = {side: r.items[0] for side, r in res.items()}
            diffs = {side: differences(read_cytolt, fn, path, xywh) for side, fn in peer_readers.items()}
            slow: dict = {}
            if peers["monai"].ok:
                subset = xywh[: args.slow_tiles]
                slow_res = interleaved(
                    {
                        "cytolt_1thread": counting(read_cytolt_loop, path, subset),
                        "monai_tifffile": counting(monai_reader(peers["monai"], "tifffile"), path, subset),
                    },
                    max(1, min(args.rounds, 3)),
                )
                slow = {side: r.to_dict() for side, r in slow_res.items()}
                slow["ratio"] = ratio(slow_res["cytolt_1thread"], slow_res["monai_tifffile"])
                slow["differences"] = differences(
                    read_cytolt_loop, monai_reader(peers["monai"], "tifffile"), path, subset
                )
            rows = [
                [side, f"{r.median_rate:.0f}", f"{min(r.rates):.0f}-{max(r.rates):.0f}", counts[side]]
                + (
                    [f"{diffs[side]['max_abs']}", f"{diffs[side]['tiles_identical']}"]
                    if side in diffs
                    else ["", ""]
                )
                for side, r in res.items()
            ]
            print(table(rows, ["side", "tiles/s", "min-max", "tiles", "max abs diff", "identical"]))
            fastest = max(peer_readers, key=lambda s: res[s].median_rate) if peer_readers else None
            ratios = {f"cytolt/{side}": ratio(res["cytolt"], res[side]) for side in peer_readers}
            ratios |= {
                f"cytolt_1thread/{side}": ratio(res["cytolt_1thread"], res[side]) for side in peer_readers
            }
            for key, value in ratios.items():
                print(f"{key} = {value:.2f}x")
            if slow:
                print(
                    f"monai_tifffile on the first {len(subset)} tiles: "
                    f"{slow['monai_tifffile']['items_per_s']['median']:.2f} tiles/s; "
                    f"cytolt_1thread/monai_tifffile = {slow['ratio']:.0f}x"
                )
            goals[f"{name}_same_tile_count"] = len(set(counts.values())) == 1 and counts["cytolt"] == len(
                xywh
            )
            goals[f"{name}_pixels_equal_openslide"] = diffs.get("openslide", {"max_abs": 0})["max_abs"] == 0
            if fastest is not None:
                goals[f"{name}_vs_fastest_peer"] = ratios[f"cytolt/{fastest}"] >= GOAL
            record["formats"][name] = {
                "size": args.size,
                "tiles": len(xywh),
                "cytolt_backend": backend,
                "sides": {side: r.to_dict() for side, r in res.items()},
                "differences_vs_cytolt": diffs,
                "ratios": ratios,
                "fastest_peer": fastest,
                "slow_peers": slow,
            }
            if name == "svs":
                t0 = time.perf_counter()
                record["masked_svs"] = masked = masked_read(
                    path, max(1, min(args.rounds, 3)), peers["tiatoolbox"]
                )
                print(f"\nmasked whole-slide read (SVS, {time.perf_counter() - t0:.0f} s for all rounds):")
                for side in ("cytolt", "tiatoolbox"):
                    if side in masked:
                        m = masked[side]
                        print(
                            f"  {side}: {m['tiles_kept']} of {len(xywh)} tiles kept, {m['seconds']['median']:.2f} s"
                        )
                if "agreement" in masked:
                    print(
                        f"  kept by both {masked['agreement']}; tiatoolbox/cytolt time = {masked['speed_ratio']:.2f}x"
                    )

    record["goals"] = goals
    record["peak_rss_mb"] = peak_rss_mb()
    write_record(args.out, record, torch_threads=1, cv2_threads=1, cytolt_read_threads=2)
    missed = [name for name, ok in goals.items() if not ok]
    if missed:
        print(f"GOAL MISSED: {', '.join(missed)}")
    heads = [
        (name, f["fastest_peer"], f["ratios"][f"cytolt/{f['fastest_peer']}"])
        for name, f in record["formats"].items()
        if f["fastest_peer"]
    ]
    if heads:
        name, fastest, value = min(heads, key=lambda h: h[2])
        print(f"read cytolt/fastest peer = {value:.1f}x ({name}, vs {fastest}; median of {args.rounds})")
    else:
        print("read cytolt/fastest peer: no peer installed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
