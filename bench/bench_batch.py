"""Batch screening throughput: slides per hour in one process, on 1 Dask worker and on 2 Dask workers.

N synthetic slides (default 6 of 4096 x 4096 px at 0.25 um/px, mixed Bethesda labels) are screened into a fresh
run folder by :func:`cytolt.screen.screen_slides` three ways, with the same model and options:

    process     in this process: torch on every core, tile reading threads beside it
    dask x1     a LocalCluster of 1 worker process (torch on every core)
    dask x2     a LocalCluster of 2 worker processes (torch threads: cores // 2 each)

Wall time covers the whole call: cluster start and stop, every slide, the store and the HTML reports (written by
the client). The speed-up is dask x2 over dask x1. Each setting must give the same detections per slide (checked).

A trained model folder is needed (nothing is trained here): ``--model``, default demo_out/model (``make demo``).
Writes docs/bench/batch.json and the table between the markers of docs/screening.md.
Run: .venv/bin/python bench/bench_batch.py [--model DIR] [--slides 6] [--size 4096]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from cytolt.screen import DaskExecutor, LocalExecutor, screen_slides
from cytolt.store import DetectionStore
from cytolt.synth import make_slide

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "screening.md"
MARK_START, MARK_END = "<!-- bench_batch.py: start -->", "<!-- bench_batch.py: end -->"
# Mixed labels so slides carry different numbers of abnormal cells (the cost of merging and reports varies).
LABELS = ("NILM", "HSIL", "LSIL", "ASC-US", "SCC", "ASC-H")
SETTINGS = (("process", None), ("dask x1", 1), ("dask x2", 2))


def markdown(record: dict) -> str:
    """The benchmark section of docs/screening.md: what ran, where, and a row per setting."""
    m = record["machine"]
    lines = [
        f"Run {record['date']} on {m['cores']} cores ({m['device']}, torch {m['torch']}; load average "
        f"{m['load_before']:.1f} before the run): `{record['command']}`.",
        f"{record['slides']} slides of {record['size']} x {record['size']} px at 0.25 um/px ({', '.join(record['labels'])}),"
        f" {record['tiles']} tiles of 512 px at the model's mpp in all; model {record['model']}; batch 8, HTML reports on;"
        f" {record['rounds']} interleaved rounds. Model time: inside `predict`, summed over the slides.",
        "",
        "| setting | torch threads per process | wall (s), median | rounds (s) | model time (s) | slides / hour | vs dask x1 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = next(r for r in record["settings"] if r["name"] == "dask x1")["wall_s"]
    for row in record["settings"]:
        lines.append(
            f"| {row['name']} | {row['torch_threads']} | {row['wall_s']:.1f} | "
            f"{', '.join(f'{w:.1f}' for w in row['wall_s_rounds'])} | {row['model_s_median']:.1f} | "
            f"{row['slides_per_hour']:.0f} | {base / row['wall_s']:.2f}x |"
        )
    return "\n".join(lines)


def update_docs(page: Path, table: str) -> bool:
    """Put ``table`` between the bench markers of ``page``; False when the page or its markers are missing."""
    head, start, rest = (page.read_text() if page.is_file() else "").partition(MARK_START)
    _, end, tail = rest.partition(MARK_END)
    if start and end:
        page.write_text(f"{head}{start}\n{table}\n{end}{tail}")
    return bool(start and end)


def stored_detections(run_dir: Path) -> dict[str, int]:
    """Detections per slide file name, as the run stored them."""
    with DetectionStore(run_dir / "run.sqlite", readonly=True) as store:
        return {Path(r.path).name: len(store.query(r.id)[1]) for r in store.slides()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "demo_out" / "model", help="trained model folder")
    ap.add_argument("--slides", type=int, default=6)
    ap.add_argument("--size", type=int, default=4096, help="slide side in level-0 px (0.25 um/px)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the table shows medians")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "batch.json")
    ap.add_argument(
        "--docs",
        type=lambda text: Path(text) if text else None,
        default=DOCS,
        help="page whose marked section gets the table ('' for none)",
    )
    args = ap.parse_args()
    if not (args.model / "model.json").is_file():
        print(
            f"no trained model at {args.model}: run `make demo` first, or pass --model DIR", file=sys.stderr
        )
        return 2
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        folder = Path(tmp)
        slides = []
        for i in range(args.slides):
            label = LABELS[i % len(LABELS)]
            slides.append(folder / "slides" / f"{i:02d}_{label.lower()}.tiff")
            slides[-1].parent.mkdir(exist_ok=True)
            make_slide(slides[-1], size=(args.size, args.size), mpp=0.25, seed=100 + i, label=label)
        print(f"{args.slides} slides of {args.size} px in {folder / 'slides'}; model {args.model}")
        found = None
        tiles = 0
        walls: dict[str, list[float]] = {name: [] for name, _ in SETTINGS}
        model_s: dict[str, list[float]] = {name: [] for name, _ in SETTINGS}
        for k in range(args.rounds):
            # Interleaved, the order reversed every other round: a shared machine's load drifts over minutes.
            for name, workers in SETTINGS if k % 2 == 0 else SETTINGS[::-1]:
                torch.set_num_threads(cores)
                run_dir = folder / f"{name.replace(' ', '_')}_{k}"
                t0 = time.perf_counter()
                executor = LocalExecutor() if workers is None else DaskExecutor(workers=workers)
                summary = screen_slides(slides, args.model, run_dir, executor=executor)
                wall = time.perf_counter() - t0
                if not summary.ok:
                    print(f"{name}: failed slides {[r.error for r in summary.failed]}", file=sys.stderr)
                    return 1
                tiles = sum(r.tiles_read for r in summary.results)
                dets = stored_detections(run_dir)
                if found is not None and dets != found:
                    print(f"{name}: detections differ: {dets} vs {found}", file=sys.stderr)
                    return 1
                found = dets
                walls[name].append(wall)
                model_s[name].append(sum(r.timings["model"] for r in summary.results))
                print(f"  round {k + 1} {name}: {wall:.1f} s (model time {model_s[name][-1]:.1f} s)")
    for name, workers in SETTINGS:
        wall = statistics.median(walls[name])
        rows.append(
            {
                "name": name,
                "dask_workers": workers,
                "torch_threads": cores if workers is None else max(1, cores // workers),
                "wall_s": round(wall, 2),
                "wall_s_rounds": [round(w, 2) for w in walls[name]],
                "slides_per_hour": round(args.slides / wall * 3600, 1),
                "model_s_median": round(statistics.median(model_s[name]), 2),
            }
        )

    record = {
        "benchmark": "batch",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cores": cores,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "load_before": load_before,
        },
        "slides": args.slides,
        "size": args.size,
        "rounds": args.rounds,
        "labels": [LABELS[i % len(LABELS)] for i in range(args.slides)],
        "tiles": tiles,
        "model": str(args.model),
        "settings": rows,
        "detections_per_slide": found,
        "speedup_2_over_1_worker": round(rows[1]["wall_s"] / rows[2]["wall_s"], 3),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    table = markdown(record)
    print(table)
    if args.docs is not None and update_docs(args.docs, table):
        print(f"updated the benchmark section of {args.docs}")
    print(f"batch: 2 Dask workers / 1 = {record['speedup_2_over_1_worker']:.2f}x slides per hour")
    return 0


if __name__ == "__main__":
    sys.exit(main())
