"""PolarMask beside Mask R-CNN on synthetic TCT: mask AP on the test split -> docs/results/polarmask.md + a picture.

    .venv/bin/python scripts/polarmask_study.py                    # both models, 1,000 iterations each (CPU)
    .venv/bin/python scripts/polarmask_study.py --iters 500 --models polarmask
    .venv/bin/python scripts/polarmask_study.py --summarise-only   # table and picture from finished runs

Trains configs/tct/polarmask_r18.py and configs/tct/mask_rcnn_r18.py (narrow R18, same data, same schedule),
one after the other, exports each run, and scores it on the test split with the configs' evaluators: COCO mask
AP (mmdet's CocoMetric, segm) and the long-tail box AP (LongTailMetric). Each run's metrics are kept in
WORK_ROOT/<model>/metrics.json, so a finished run is skipped. The picture (docs/images/polarmask_contours.jpg)
draws the contours of the masks each model predicted on a few test images (score >= --picture-score), the ground
truth in white.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"polarmask": "PolarMask R18 (36 rays)", "mask_rcnn": "Mask R-CNN R18"}
CONFIGS = {"polarmask": "polarmask_r18.py", "mask_rcnn": "mask_rcnn_r18.py"}
SEGM_KEYS = ("segm_mAP", "segm_mAP_50", "segm_mAP_75", "segm_mAP_s", "segm_mAP_m")
BOX_KEYS = ("AP", "AP50", "APr", "APc", "APf")
COLOURS = {"polarmask": (0, 220, 0), "mask_rcnn": (255, 120, 0)}  # RGB


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {','.join(MODELS)}")
    p.add_argument("--iters", type=int, default=1000, help="training iterations per model (batch 4)")
    p.add_argument("--images", type=int, default=600, help="synthetic patches (split 0.7/0.15/0.15)")
    p.add_argument(
        "--size",
        type=int,
        default=128,
        help="patch side, px; with --mpp 1.0 a 128 px patch shows the field of a 256 px one at 0.5 um/px "
        "(the benchmark's) at a quarter of the pixels, which is what makes both models fit on 2 shared cores",
    )
    p.add_argument(
        "--mpp", type=float, default=1.0, help="microns per pixel of the patches (cells 8-55 px at 1.0)"
    )
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (generated if missing)")
    p.add_argument("--work-root", type=Path, default=ROOT / "work_dirs" / "polarmask_study")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results", help="where polarmask.md goes")
    p.add_argument("--images-out", type=Path, default=ROOT / "docs" / "images", help="where the picture goes")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: on a shared machine 2 threads spin-wait)",
    )
    p.add_argument("--picture-score", type=float, default=0.3, help="lowest score drawn in the picture")
    p.add_argument("--summarise-only", action="store_true", help="table and picture from finished runs only")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    return args


def ensure_data(args: argparse.Namespace) -> Path:
    from cytolt.synth import make_patch_dataset

    data = args.data or args.work_root / f"data_{args.size}px_{args.mpp:g}mpp"
    if not (data / "annotations_test.json").is_file():
        print(f"generating {args.images} synthetic patches of {args.size} px in {data}", flush=True)
        # 3 cells per field of 128 um x 128 um, the benchmark's density (12 per 256 um x 256 um)
        cells = 3.0 * (args.size * args.mpp / 128.0) ** 2
        make_patch_dataset(
            data,
            images=args.images,
            size=args.size,
            mpp=args.mpp,
            cells_per_image=cells,
            imbalance=50,
            seed=0,
            split=(0.7, 0.15, 0.15),
            progress=True,
        )
    return data


def run_one(name: str, data: Path, args: argparse.Namespace) -> dict:
    """Train, export and test one model (or read its finished record)."""
    from cytolt.mm.evaluate import evaluate
    from cytolt.mm.train import export_model, train

    run_dir = args.work_root / name
    record_file = run_dir / "metrics.json"
    if record_file.is_file():
        return json.loads(record_file.read_text())
    config = ROOT / "configs" / "tct" / CONFIGS[name]
    options = {"randomness.seed": args.seed, "train_cfg.max_iters": args.iters}  # the schedule follows
    print(f"training {name} for {args.iters} iterations in {run_dir}", flush=True)
    start = time.perf_counter()
    train(config, work_dir=run_dir, data_root=data, cfg_options=options, quiet=True)
    train_s = time.perf_counter() - start
    model = export_model(
        run_dir, run_dir / "model"
    )  # evaluation reads safetensors, not the pickled checkpoint
    prefix = run_dir / "test" / "results"  # CocoMetric writes results.segm.json there (the picture reads it)
    start = time.perf_counter()
    metrics = evaluate(
        config,
        model / "model.safetensors",
        split="test",
        data_root=data,
        work_dir=run_dir / "test",
        cfg_options={"test_evaluator.1.outfile_prefix": str(prefix)},
    )
    record = {
        "metrics": metrics,
        "train_seconds": train_s,
        "test_seconds": time.perf_counter() - start,
        "iters": args.iters,
        "config": config.name,
        "threads": args.threads,
        "date": date.today().isoformat(),
        "segm_results": str(prefix) + ".segm.json",
        "data": str(data),
        "images": args.images,
        "size": args.size,
        "mpp": args.mpp,
    }
    record_file.write_text(json.dumps(record, indent=1))
    return record


def _contours(mask: np.ndarray, scale: int) -> list[np.ndarray]:
    """Outer contours of a mask, in the pixels of the picture (``scale`` x the image's)."""
    import cv2

    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [(c * scale + scale // 2).astype(np.int32) for c in found]


def picture(records: dict[str, dict], data: Path, path: Path, *, min_score: float, tiles: int = 4) -> None:
    """Test images in a row per model: ground-truth contours white, predicted contours in the model's colour."""
    import cv2
    from pycocotools import mask as mask_utils

    gt = json.loads((data / "annotations_test.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    # the most crowded test images show touching cells, where instance masks matter
    images = sorted(gt["images"], key=lambda im: -len(by_image.get(im["id"], [])))[:tiles]
    scale = max(1, 256 // images[0]["width"])  # small patches are enlarged so that 1 px contours stay visible
    rows = []
    for name, record in records.items():
        results = Path(record["segm_results"])  # CocoMetric writes none when a model detected nothing
        dets = json.loads(results.read_text()) if results.is_file() else []
        row = []
        for im in images:
            tile = cv2.cvtColor(cv2.imread(str(data / im["file_name"])), cv2.COLOR_BGR2RGB)
            tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            for ann in by_image.get(im["id"], []):
                gt_mask = mask_utils.decode(ann["segmentation"])
                cv2.drawContours(tile, _contours(gt_mask, scale), -1, (255, 255, 255), 1)
            for det in dets:
                if det["image_id"] == im["id"] and det["score"] >= min_score:
                    mask = mask_utils.decode(det["segmentation"])
                    cv2.drawContours(tile, _contours(mask, scale), -1, COLOURS[name], 1)
            cv2.putText(tile, MODELS[name], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, COLOURS[name], 1)
            row.append(tile)
        rows.append(np.concatenate(row, axis=1))
    canvas = np.concatenate(rows, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


def write_markdown(
    records: dict[str, dict], args: argparse.Namespace, data: Path, path: Path, pic: Path
) -> None:
    import torch

    def num(value: float | None) -> str:
        return "n/a" if value is None or value < 0 else f"{value:.3f}"

    first = next(iter(records.values()))  # the data and threads of the runs (older records: this call's)
    images, size, mpp = (first.get(k, getattr(args, k)) for k in ("images", "size", "mpp"))
    threads = first.get("threads", args.threads)

    lines = [
        "# PolarMask beside Mask R-CNN on synthetic TCT",
        "",
        f"Machine: {platform.machine()}, 2 CPU cores shared with other jobs, {threads} torch thread{'s' if threads != 1 else ''}, torch "
        f"{torch.__version__}. One model trained at a time, same data, schedule (AdamW 1e-3, warm-up, cosine) and "
        "batch 4, seed " + str(args.seed) + ".",
        "",
        "Command: `"
        + " ".join(["python", "scripts/polarmask_study.py", *sys.argv[1:]])
        + "`"
        + (f" (the runs: `--iters {first['iters']}`)" if args.summarise_only else ""),
        "",
        f"Data: `{data.name}`, {images} patches of {size} px at {mpp:g} um/px from "
        "`cytolt.synth.make_patch_dataset` (imbalance 50, split 0.7/0.15/0.15, masks the cells' RLE). Mask AP: COCO (pycocotools through mmdet's CocoMetric, "
        "`segm`, 10 IoU thresholds 0.5:0.95, 100 detections per image) on the test split; box AP: lvis-api "
        "(LongTailMetric, federated rules). n/a: no detection above the score threshold (0.05), or no instance "
        "of that size.",
        "",
        "| model | iterations | train min | date | mask AP | mask AP50 | mask AP75 | mask APs | mask APm "
        "| box AP | box AP50 | box APr | box APc | box APf |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rec in records.items():
        m = rec["metrics"]
        segm = [num(m.get(f"coco/{k}")) for k in SEGM_KEYS]
        box = [num(m.get(f"lt/{k}")) for k in BOX_KEYS]
        lines.append(
            f"| {MODELS[name]} | {rec['iters']} | {rec['train_seconds'] / 60:.1f} | {rec['date']} | "
            + " | ".join(segm + box)
            + " |"
        )
    lines += [
        "",
        f"![predicted contours](../images/{pic.name})",
        "",
        f"Predicted mask contours with score >= {args.picture_score} on the four most crowded test patches "
        "(PolarMask green, Mask R-CNN orange; ground truth white).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.work_root.mkdir(parents=True, exist_ok=True)
    data = ensure_data(args)
    records = {}
    for name in args.models:
        finished = (args.work_root / name / "metrics.json").is_file()
        if args.summarise_only and not finished:
            print(f"{name}: no finished run in {args.work_root / name}; left out", flush=True)
            continue
        records[name] = run_one(name, data, args)
        m = records[name]["metrics"]
        print(f"{name}: mask AP {m.get('coco/segm_mAP')}, box AP {m.get('lt/AP')}", flush=True)
    if not records:
        print("nothing to summarise", file=sys.stderr)
        return 1
    pic = args.images_out / "polarmask_contours.jpg"
    picture(records, data, pic, min_score=args.picture_score)
    write_markdown(records, args, data, args.out / "polarmask.md", pic)
    print(f"wrote {args.out / 'polarmask.md'} and {pic}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
