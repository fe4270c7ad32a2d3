"""Whole-slide screening time against the model's own time on the same tiles: the pipeline overhead.

On a synthetic slide (default 8192 x 8192 px at 0.25 um/px, HSIL, read at the model's 0.5 um/px in 512 px tiles
overlapping by 128 px), one round times two sides on the same tiles in the same batches:

    slide   screen_slide(): open, tissue mask, tile reading in threads (prefetch) while the model runs,
            tile -> level-0 boxes, cross-tile merging, SQLite store, slide score
    model   detector.predict() alone on the same batches, decoded into memory beforehand

The ratio slide / model is the overhead of everything that is not the model (goal: at most 1.15x on CPU, issue 8).
Rounds interleave the sides (slide model slide model ...) after one untimed warm-up round; medians and min-max.
Each thread setting ("T x R": T torch threads, R tile reading threads) is measured in the same run, since
on 2 cores torch threads and decode threads compete (BENCHMARKS.md).

The model is demo_out/model when present (what `make demo` trains and exports), else a freshly initialised
narrow RetinaNet-R18 (configs/tct, same cost per tile). On CUDA it reports slides per hour and the GPU busy
fraction (model time over wall time) instead, with the model in fp16 (MMDetDetector uses autocast on CUDA).

Writes docs/bench/screen.json and the table between the markers of docs/screening.md; the last line is the
headline ratio. Exits 1 when the headline misses the goal.
Run: .venv/bin/python bench/bench_screen.py [--size 8192] [--rounds 7] [--threads 2x2,2x1,1x1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from cytolt.detect import load
from cytolt.io import TileStream, open_slide
from cytolt.screen.engine import default_scorer, screen_slide, tile_grid
from cytolt.screen.settings import ScreenSettings, default_overlap
from cytolt.store import DetectionStore
from cytolt.synth import CLASS_COLORS, CLASSES, make_slide

ROOT = Path(__file__).resolve().parents[1]
GOAL = 1.15
TRAINED_MODEL = ROOT / "demo_out" / "model"  # what `make demo` trains and exports
MODEL_CONFIG = ROOT / "configs" / "tct" / "_base_" / "models" / "retinanet_r18.py"
DOCS = ROOT / "docs" / "screening.md"
MARK_START, MARK_END = "<!-- bench_screen.py: start -->", "<!-- bench_screen.py: end -->"


def fresh_model(out: Path, *, mpp: float = 0.5) -> Path:
    """A model folder with the narrow RetinaNet-R18 at its initial weights (same cost as a trained one)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from safetensors.torch import save_file

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(MODEL_CONFIG))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    logging.getLogger("mmengine").setLevel(logging.WARNING)
    model.init_weights()
    out.mkdir(parents=True, exist_ok=True)
    Config(dict(model=cfg.model.to_dict(), custom_imports=dict(imports=["cytolt.mm"]))).dump(
        str(out / "config.py")
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    meta = {"format": 1, "classes": list(CLASSES), "colors": [CLASS_COLORS[c] for c in CLASSES], "mpp": mpp}
    (out / "model.json").write_text(json.dumps(meta))
    return out


def markdown(record: dict) -> str:
    """The benchmark section of docs/screening.md: what ran, where, and a row per thread setting."""
    m, t = record["machine"], record["tiles"]
    lines = [
        f"Run {record['date']} on {m['cores']} cores ({m['device']}, torch {m['torch']}): `{record['command']}`.",
        f"Slide {record['slide']['size'][0]} x {record['slide']['size'][1]} px at {record['slide']['mpp']} um/px "
        f"({record['slide']['label']}); model {record['model']}; {t['read']} of {t['total']} tiles of {t['size']} px "
        f"at {t['mpp']} um/px, overlap {t['overlap']} px, batch {record['batch_size']}; {record['rounds']} interleaved "
        f"rounds after a warm-up; peak RSS {record['peak_rss_mb']:.0f} MB.",
        "",
        "| torch x read threads | whole slide (s) | model only (s) | slide / model, median (min-max) "
        "| read wait (s) | merge (s) | store (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in record["settings"]:
        st = row["stages_median_s"]
        lines.append(
            f"| {row['torch_threads']} x {row['read_threads']} | {row['slide_median_s']:.2f} | "
            f"{row['model_median_s']:.2f} | {row['ratio_median']:.3f} ({row['ratio_min']:.3f}-{row['ratio_max']:.3f}) "
            f"| {st['read']:.2f} | {st['merge']:.2f} | {st['store']:.2f} |"
        )
    return "\n".join(lines)


def update_docs(page: Path, table: str) -> bool:
    """Replace the text between the bench markers of ``page``; False when the page or its markers are missing."""
    if not page.is_file():
        return False
    text = page.read_text()
    start, end = text.find(MARK_START), text.find(MARK_END)
    if start < 0 or end < start:
        return False
    page.write_text(text[: start + len(MARK_START)] + "\n" + table + "\n" + text[end:])
    return True


def parse_threads(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        t, _, r = item.partition("x")
        out.append((int(t), int(r)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192, help="slide side in level-0 px (0.25 um/px)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--threads",
        default="2x2,2x1,1x1",
        help="torch x reading threads; the first (the CLI default) is the headline",
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model folder (default: demo_out/model from `make demo`, else a fresh one)",
    )
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "screen.json")
    ap.add_argument(
        "--docs", type=Path, default=DOCS, help="page whose marked section gets the table ('' for none)"
    )
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    settings = parse_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_screen_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        slide_path = tmp / "slide.tiff"
        make_slide(slide_path, size=(args.size, args.size), mpp=0.25, seed=0, label="HSIL", workers=2)
        print(f"slide {args.size}x{args.size} px at 0.25 um/px written in {time.perf_counter() - t0:.1f} s")
        if args.model is not None:
            model_dir, model_kind = args.model, f"given: {args.model}"
        elif TRAINED_MODEL.is_dir():
            model_dir, model_kind = TRAINED_MODEL, f"trained: {TRAINED_MODEL}"
        else:
            model_dir, model_kind = fresh_model(tmp / "model"), "fresh narrow RetinaNet-R18 (untrained)"
        detector = load(model_dir, device)
        mpp = detector.info.mpp
        overlap = default_overlap(mpp)
        scorer = default_scorer(detector.info)
        with open_slide(slide_path) as slide:
            grid = tile_grid(slide, tile_size=args.tile_size, overlap=overlap, mpp=mpp)
        # The model side's input: the very batches screen_slide builds, decoded once into memory.
        batches = [b.images.clone() for b in TileStream(grid, batch_size=args.batch_size, workers=1)]
        print(
            f"model: {model_kind}; device {device}; {len(grid)} of {grid.total} tiles of {args.tile_size} px at "
            f"{mpp} um/px, overlap {overlap} px, batch {args.batch_size}"
        )

        def run_model() -> float:
            t = time.perf_counter()
            for images in batches:
                [d.to("cpu") for d in detector.predict(images)]
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - t

        store = DetectionStore(tmp / "run.sqlite")
        slide_id = store.add_slide(slide_path)

        def run_slide(workers: int) -> tuple[float, dict[str, float]]:
            t = time.perf_counter()
            run = ScreenSettings(
                tile_size=args.tile_size, overlap=overlap, batch_size=args.batch_size, read_threads=workers
            )
            result = screen_slide(slide_path, detector, run, scorer=scorer)
            # what the run recorder then writes for the slide
            store.replace_detections(slide_id, result.detections, result.class_names)
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - t, result.timings

        rows = []
        for torch_threads, readers in settings:
            torch.set_num_threads(torch_threads)
            run_slide(readers)  # warm-up: imports, allocator, page cache, mmdet's first-call set-up
            run_model()
            slide_s, model_s, stage = [], [], []
            for _ in range(args.rounds):
                s, timings = run_slide(readers)
                slide_s.append(s)
                stage.append(timings)
                model_s.append(run_model())
            ratios = [s / m for s, m in zip(slide_s, model_s, strict=True)]
            row = {
                "torch_threads": torch_threads,
                "read_threads": readers,
                "slide_s": slide_s,
                "model_s": model_s,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "slide_median_s": statistics.median(slide_s),
                "model_median_s": statistics.median(model_s),
                "stages_median_s": {k: statistics.median(t[k] for t in stage) for k in stage[0]},
                "tiles_per_s": len(grid) / statistics.median(slide_s),
            }
            if cuda:
                row["slides_per_hour"] = 3600 / row["slide_median_s"]
                row["busy_fraction"] = statistics.median(t["model"] / t["total"] for t in stage)
            rows.append(row)
            st = row["stages_median_s"]
            print(
                f"  {torch_threads}x{readers}: slide {row['slide_median_s']:.2f} s, model {row['model_median_s']:.2f} s,"
                f" ratio {row['ratio_median']:.3f} ({row['ratio_min']:.3f}-{row['ratio_max']:.3f}); stages: "
                + ", ".join(f"{k} {v:.2f}" for k, v in st.items())
                + (
                    f"; {row['slides_per_hour']:.0f} slides/h, busy {row['busy_fraction']:.2f}"
                    if cuda
                    else ""
                )
            )
        store.close()

    head = rows[0]
    record = {
        "benchmark": "screen",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if cuda else "cpu",
        },
        "slide": {"size": [args.size, args.size], "mpp": 0.25, "label": "HSIL"},
        "model": model_kind,
        "tiles": {
            "read": len(grid),
            "total": grid.total,
            "size": args.tile_size,
            "overlap": overlap,
            "mpp": mpp,
        },
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "goal_ratio": GOAL,
        "settings": rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(f"peak RSS {record['peak_rss_mb']:.0f} MB; wrote {args.json}")
    table = markdown(record)
    print(table)
    if args.docs is not None and update_docs(args.docs, table):
        print(f"updated the benchmark section of {args.docs}")
    ok = head["ratio_median"] <= GOAL
    if not ok:
        print(f"goal missed: whole slide / model = {head['ratio_median']:.3f}x > {GOAL}x", file=sys.stderr)
    label = f"{head['torch_threads']}x{head['read_threads']} threads"
    print(
        f"screen/model = {head['ratio_median']:.3f}x ({label}, median of {args.rounds}, "
        f"{head['ratio_min']:.3f}-{head['ratio_max']:.3f})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
