"""CPU inference engines: the onnx engine (ONNX Runtime) against torch eager, same model, same tiles, same run.

Three measurements, each interleaving the engines (torch onnx onnx torch ...) after an untimed warm-up:

    tiles       ``predict`` alone on N synthetic 512-px patches (cytolt.synth) in batches of 8: tiles per second;
                every tile's detections compared between the engines (boxes 1e-3 px, scores 1e-4)
    slides      ``screen_slides`` of one synthetic slide (tissue mask, tile reading threads, merging, store):
                slides per hour; the merged detections compared
    AP          COCO AP of each engine on the model's test split (``--data``), and the int8 cost

``onnx int8`` is ONNX Runtime's dynamic quantisation of the same model.onnx (uint8 weights, activations
quantised per batch: ConvInteger), reported apart: its detections are not the torch ones, its AP cost is shown.
What limits the ratio is profiled: the share of time per op type in both engines, and each engine at 1 thread.

A trained model folder is needed (``--model``, default demo_out/model from ``make demo``); it is copied, never
changed (model.onnx is exported into the copy when the folder has none). Threads are fixed (``--threads``, default
2) for torch and ONNX Runtime alike. Writes docs/bench/engine.json and the table between the markers of
docs/screening.md; the last line is the headline ratio. Exits 1 when onnx is under the goal of 2x torch (tiles/s).
Run: .venv/bin/python bench/bench_engine.py [--model DIR] [--threads 2] [--rounds 5] [--slide-size 4096]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from cytolt.detect import ModelFolder
from cytolt.detect.onnx_engine import file_sha256
from cytolt.evaluate.coco import coco_eval
from cytolt.mm.detector import MMDetDetector, OnnxDetector
from cytolt.mm.onnx_export import coco_detections, compare_detections, export_onnx, sample_tiles
from cytolt.screen import ScreenSettings, screen_slides
from cytolt.synth import make_slide

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "screening.md"
MARKS = ("<!-- bench_engine.py: start -->", "<!-- bench_engine.py: end -->")
GOAL = 2.0
ENGINES = ("torch", "onnx", "onnx int8")


def int8_folder(folder: ModelFolder, out: Path) -> ModelFolder:
    """A copy of ``folder`` whose model.onnx is ONNX Runtime's dynamic int8 quantisation of the original."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    shutil.copytree(folder.path, out)
    # ConvInteger, ORT's dynamically quantised convolution on the CPU, takes uint8 weights and activations.
    quantize_dynamic(folder.onnx_path, out / ModelFolder.ONNX, weight_type=QuantType.QUInt8)
    copy = ModelFolder.read(out)
    return copy.update_meta({"onnx": {**copy.meta["onnx"], "sha256": file_sha256(out / ModelFolder.ONNX)}})


def subset(ann_file: Path, n: int | None, out: Path) -> Path:
    """``ann_file`` itself, or a copy holding its first ``n`` images (file names made absolute)."""
    if n is None:
        return ann_file
    gt = json.loads(ann_file.read_text())
    gt["images"] = gt["images"][:n]
    keep = {im["id"] for im in gt["images"]}
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    for im in gt["images"]:
        im["file_name"] = str(ann_file.parent / im["file_name"])
    out.write_text(json.dumps(gt))
    return out


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def predict_all(detector, tiles: torch.Tensor, batch: int) -> list:
    return [d for i in range(0, len(tiles), batch) for d in detector.predict(tiles[i : i + batch])]


def interleaved(sides: dict, rounds: int, run) -> dict[str, list[float]]:
    """Seconds of ``run(side)`` per side and round, the order reversed every other round; one warm-up first."""
    for side in sides.values():
        run(side)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for k in range(rounds):
        for name in list(sides) if k % 2 == 0 else list(sides)[::-1]:
            times[name].append(timed(run, sides[name])[0])
    return times


def worst_difference(want: list, got: list) -> str | None:
    """None when every image's detections agree (compare_detections), else the first disagreement."""
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        if (why := compare_detections(w, g)) is not None:
            return f"image {i}: {why}"
    return None


def op_shares_onnx(folder: ModelFolder, inputs: torch.Tensor, threads: int, top: int = 6) -> dict[str, float]:
    """Share of kernel time per ONNX op type in one batch (ONNX Runtime's profiler; the warm-up run left out)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / "bench_engine_ort")
    session = ort.InferenceSession(str(folder.onnx_path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: inputs.numpy()}
    session.run(None, feed)
    counted_from_us = (time.time_ns() - session.get_profiling_start_time_ns()) / 1000
    session.run(None, feed)
    trace = Path(session.end_profiling())
    per_op: Counter[str] = Counter()
    for event in json.loads(trace.read_text()):
        op = (event.get("args") or {}).get("op_name")
        if event.get("cat") == "Node" and op and event.get("ts", 0) >= counted_from_us:
            if event.get("name", "").endswith("_kernel_time"):
                per_op[op] += event.get("dur", 0)
    trace.unlink(missing_ok=True)
    total = sum(per_op.values()) or 1
    return {op: round(t / total, 3) for op, t in per_op.most_common(top)}


def op_shares_torch(detector: MMDetDetector, tiles: torch.Tensor, top: int = 6) -> dict[str, float]:
    """Share of self CPU time per aten op in one batch of the torch engine (torch.profiler, after a warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    detector.predict(tiles)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        detector.predict(tiles)
    rows = sorted(prof.key_averages(), key=lambda r: r.self_cpu_time_total, reverse=True)
    total = sum(r.self_cpu_time_total for r in rows) or 1
    return {r.key: round(r.self_cpu_time_total / total, 3) for r in rows[:top]}


def markdown(record: dict) -> str:
    m, t, s = record["machine"], record["tiles"], record["slides"]
    lines = [
        f"Run {record['date']} on {m['cores']} cores ({m['platform']}; torch {m['torch']}, onnxruntime "
        f"{m['onnxruntime']}; load average {m['load_before']:.1f} before the run): `{record['command']}`.",
        f"Model {record['model']}; {record['threads']} threads for torch and ONNX Runtime alike; "
        f"{t['count']} synthetic 512-px patches in batches of {t['batch']}, and {s['count']} synthetic slide of "
        f"{s['size']} px at 0.25 um/px ({s['tiles']} tiles) through `screen_slides`; {record['rounds']} "
        "interleaved rounds, medians (min-max).",
        "",
        "| engine | tiles / s | ms / tile | vs torch | slides / hour | vs torch | COCO AP | AP50 | "
        "detections vs torch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in record["engines"]:
        lines.append(
            f"| {row['engine']} | {row['tiles_per_s']:.2f} ({row['tiles_per_s_min']:.2f}-{row['tiles_per_s_max']:.2f})"
            f" | {row['ms_per_tile']:.0f} | {row['tiles_speedup']:.2f}x | {row.get('slides_per_hour', '-')} | "
            f"{row.get('slides_speedup', '-')} | {row['ap']['AP']:.4f} | {row['ap']['AP50']:.4f} | "
            f"{row['same_as_torch']} |"
        )
    lines += [
        "",
        f"At 1 thread: {', '.join(f'{k} {v:.0f} ms/tile' for k, v in record['one_thread_ms_per_tile'].items())}. "
        "Time per op type (one batch): onnx "
        + ", ".join(f"{k} {v:.0%}" for k, v in record["profile"]["onnx"].items())
        + "; torch "
        + ", ".join(f"{k} {v:.0%}" for k, v in record["profile"]["torch"].items())
        + ".",
    ]
    return "\n".join(lines)


def update_docs(page: Path, table: str, marks: tuple[str, str] = MARKS) -> bool:
    """Replace what stands between ``marks`` in ``page``; False (page untouched) when a mark is missing."""
    text = page.read_text() if page.is_file() else ""
    if marks[0] not in text or marks[1] not in text:
        return False
    head, rest = text.split(marks[0], 1)
    page.write_text(f"{head}{marks[0]}\n{table}\n{marks[1]}{rest.split(marks[1], 1)[1]}")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "demo_out" / "model", help="trained model folder")
    ap.add_argument(
        "--data",
        type=Path,
        default=ROOT / "demo_out" / "data" / "annotations_test.json",
        help="COCO test split for AP",
    )
    ap.add_argument("--ap-images", type=int, default=None, help="score AP on the first N test images [all]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiles", type=int, default=16, help="512-px patches per round")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--slide-size", type=int, default=4096, help="slide side in level-0 px (0.25 um/px)")
    ap.add_argument("--slide-rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "engine.json")
    ap.add_argument(
        "--docs",
        type=lambda text: Path(text) if text else None,
        default=DOCS,
        help="page to update ('' for none)",
    )
    args = ap.parse_args()
    if not (args.model / "model.json").is_file():
        print(
            f"no trained model at {args.model}: run `make demo` first, or pass --model DIR", file=sys.stderr
        )
        return 2
    import onnxruntime

    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        work = Path(tmp)
        shutil.copytree(args.model, work / "model")
        folder = ModelFolder.read(work / "model")
        if folder.onnx is None:
            print(f"{args.model} has no model.onnx: exporting into a copy")
            folder = export_onnx(folder, measure=False)
        quantised = int8_folder(folder, work / "int8")
        detectors = {
            "torch": MMDetDetector(folder, device=cpu),
            "onnx": OnnxDetector(folder, device=cpu, threads=args.threads),
            "onnx int8": OnnxDetector(quantised, device=cpu, threads=args.threads),
        }
        mpp = folder.info.mpp or 0.5
        tiles = sample_tiles(args.tiles, 512, mpp=mpp, seed=1)
        print(f"model {args.model}, {args.threads} threads, {args.tiles} tiles x {args.rounds} rounds")

        tile_s = interleaved(detectors, args.rounds, lambda det: predict_all(det, tiles, args.batch))
        outputs = {name: predict_all(det, tiles, args.batch) for name, det in detectors.items()}

        slide = work / "slide.tiff"
        make_slide(slide, size=(args.slide_size, args.slide_size), mpp=0.25, seed=7, label="HSIL")
        settings = ScreenSettings(batch_size=args.batch)
        slide_runs: dict[str, list] = {name: [] for name in ("torch", "onnx")}

        def screen(name: str) -> None:
            run = work / f"run_{name.replace(' ', '_')}_{len(slide_runs[name])}"
            summary = screen_slides([slide], detectors[name], run, settings)
            if not summary.ok:
                raise RuntimeError(f"{name}: {[r.error for r in summary.failed]}")
            slide_runs[name].append(summary.results[0])

        slide_s = interleaved({n: n for n in slide_runs}, args.slide_rounds, screen)
        merged_same = compare_detections(
            slide_runs["torch"][-1].detections, slide_runs["onnx"][-1].detections
        )

        gt = subset(args.data, args.ap_images, work / "gt.json")
        ap_scores = {name: coco_eval(gt, coco_detections(det, gt)) for name, det in detectors.items()}
        one_thread = {}
        torch.set_num_threads(1)  # what each engine gains from its second thread
        one = {
            "torch": MMDetDetector(folder, device=cpu),
            "onnx": OnnxDetector(folder, device=cpu, threads=1),
        }
        for name, ts in interleaved(one, 3, lambda det: det.predict(tiles[: args.batch])).items():
            one_thread[name] = round(statistics.median(ts) * 1000 / args.batch, 1)
        torch.set_num_threads(args.threads)
        batch = tiles[: args.batch]
        profile = {
            "onnx": op_shares_onnx(folder, detectors["torch"].preprocess(batch)["inputs"], args.threads),
            "torch": op_shares_torch(detectors["torch"], batch),
        }

    base = statistics.median(tile_s["torch"])
    slide_base = statistics.median(slide_s["torch"])
    rows = []
    for name in ENGINES:
        med = statistics.median(tile_s[name])
        why = worst_difference(outputs["torch"], outputs[name])
        row = {
            "engine": name,
            "tiles_per_s": round(args.tiles / med, 3),
            "tiles_per_s_min": round(args.tiles / max(tile_s[name]), 3),
            "tiles_per_s_max": round(args.tiles / min(tile_s[name]), 3),
            "ms_per_tile": round(med * 1000 / args.tiles, 1),
            "tiles_speedup": round(base / med, 3),
            "rounds_s": [round(t, 3) for t in tile_s[name]],
            "same_as_torch": "same" if why is None else f"differ ({why})",
            "detections": sum(len(d) for d in outputs[name]),
            "ap": {k: round(v, 5) for k, v in ap_scores[name].items()},
        }
        if name in slide_s:
            wall = statistics.median(slide_s[name])
            row.update(
                slides_per_hour=round(3600 / wall, 1),
                slides_speedup=f"{slide_base / wall:.2f}x",
                slide_rounds_s=[round(t, 2) for t in slide_s[name]],
            )
        rows.append(row)
    record = {
        "benchmark": "engine",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "load_before": load_before,
        },
        "model": str(args.model),
        "threads": args.threads,
        "rounds": args.rounds,
        "tiles": {"count": args.tiles, "batch": args.batch, "size": 512},
        "slides": {
            "count": 1,
            "size": args.slide_size,
            "tiles": slide_runs["torch"][-1].tiles_read,
            "merged_detections": len(slide_runs["torch"][-1].detections),
            "merged_same": "same" if merged_same is None else merged_same,
        },
        "engines": rows,
        "one_thread_ms_per_tile": one_thread,
        "profile": profile,
        "ap_difference_onnx": round(abs(ap_scores["onnx"]["AP"] - ap_scores["torch"]["AP"]), 5),
        "ap_cost_int8": round(ap_scores["torch"]["AP"] - ap_scores["onnx int8"]["AP"], 5),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    table = markdown(record)
    print(table)
    if args.docs is not None and update_docs(args.docs, table):
        print(f"updated the engine section of {args.docs}")
    onnx = rows[1]
    print(
        f"engine: onnx/torch = {onnx['tiles_speedup']:.2f}x tiles per second, {onnx['slides_speedup']} slides per "
        f"hour ({args.threads} threads, median of {args.rounds}); goal {GOAL:.0f}x "
        f"{'met' if onnx['tiles_speedup'] >= GOAL else 'missed'}"
    )
    ok = onnx["same_as_torch"] == "same" and merged_same is None
    if not ok:
        print("onnx detections differ from torch's", file=sys.stderr)
    return 0 if ok and onnx["tiles_speedup"] >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
