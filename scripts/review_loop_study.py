"""The review-to-training loop measured on synthetic slides: screen, review (simulated from ground truth), build a
dataset from the reviews, fine-tune, and compare the model before and after on held-out slides.

    .venv/bin/python scripts/review_loop_study.py                    # the demo's model (make demo first)
    .venv/bin/python scripts/review_loop_study.py --train-slides 8 --iters 400

Steps (each skipped when its output exists under --work, so a stopped study continues):
  1. synthetic slides: --train-slides to screen and review, --test-slides held out (other seeds);
  2. cytolt screen of the training slides with MODEL; every detection scoring >= --review-min-score reviewed
     against ground truth (cytolt.review.simulate: match -> accept, wrong class -> reclassify, none -> reject);
  3. cytolt dataset from-review; 4. cytolt train --load-from MODEL on it (--iters), export;
  5. both models screen the held-out slides; per model: LVIS AP / APr over the slides (each slide one image,
     frequency groups from the model's own training set), and false positives per slide at --score-thr.
Writes docs/results/review_loop.md and .json.
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
import torch

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("HSIL", "LSIL", "ASC-US", "NILM", "HSIL", "LSIL", "SCC", "NILM", "HSIL", "ASC-H")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "demo_out" / "model", help="model folder (make demo)")
    p.add_argument(
        "--train-data",
        type=Path,
        default=ROOT / "demo_out" / "data" / "annotations_train.json",
        help="the model's training annotations (frequency groups for APr)",
    )
    p.add_argument("--work", type=Path, default=ROOT / "work_dirs" / "review_loop")
    p.add_argument("--train-slides", type=int, default=6)
    p.add_argument("--test-slides", type=int, default=8)
    p.add_argument("--slide-px", type=int, default=2048)
    p.add_argument("--review-min-score", type=float, default=0.3)
    p.add_argument("--score-thr", type=float, default=0.3, help="score of a counted false positive")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument(
        "--patch", type=int, default=256, help="patch side of the review dataset (the demo trains on 256)"
    )
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (2 wait on each other on a loaded 2-core machine)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    return p.parse_args(argv)


def make_slides(folder: Path, n: int, seed0: int, size: int) -> list[Path]:
    from cytolt.synth import make_slide

    paths = []
    for k in range(n):
        path = folder / f"slide_{seed0 + k}.tiff"
        if not path.is_file():
            make_slide(
                path, size=(size, size), mpp=0.25, seed=seed0 + k, label=LABELS[(seed0 + k) % len(LABELS)]
            )
        paths.append(path)
    return paths


def truth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from cytolt.synth import CLASSES

    doc = json.loads(path.with_name(path.name + ".cells.json").read_text())
    return (
        np.array([c["box"] for c in doc["cells"]], np.float64).reshape(-1, 4),
        np.array([CLASSES.index(c["class"]) for c in doc["cells"]], np.int64),
    )


def screen(paths: list[Path], model: Path, run: Path) -> Path:
    from cytolt.detect import ModelFolder
    from cytolt.screen import ScreenSettings, screen_slides

    if not (run / "summary.csv").is_file():
        screen_slides(paths, ModelFolder.read(model), run, ScreenSettings(html=False), resume=True)
    return run


def evaluate(run: Path, paths: list[Path], train_ann: Path, score_thr: float) -> dict[str, float]:
    """LVIS AP over the held-out slides (one image each) and false positives per slide."""
    from torchvision.ops import box_iou

    from cytolt.datasets import read_coco, with_lvis_fields
    from cytolt.evaluate import LVISEvaluator
    from cytolt.store import DetectionStore
    from cytolt.synth import CLASSES

    images, anns = [], []
    for i, path in enumerate(paths):
        boxes, labels = truth(path)
        images.append({"id": i + 1, "file_name": path.name, "width": 1, "height": 1})
        for b, lab in zip(boxes.tolist(), labels.tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": lab + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    gt = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)],
    }
    train = read_coco(train_ann)
    gt = with_lvis_fields(gt, train=train)
    ev = LVISEvaluator(gt, max_dets=10_000, per_class=True)
    fps, tps, n_abnormal_found, n_abnormal = [], [], 0, 0
    abnormal = [CLASSES.index(c) for c in ("ascus", "lsil", "hsil", "scc", "agc")]
    with DetectionStore(run / "run.sqlite", readonly=True) as store:
        by_name = {Path(r.path).name: r.id for r in store.slides()}
        for i, path in enumerate(paths):
            dets, _ = store.query(by_name[path.name])
            boxes, scores, labels = dets.boxes.numpy(), dets.scores.numpy(), dets.labels.numpy()
            if len(boxes):
                ev.process(i + 1, boxes, scores, labels)
            tb, tl = truth(path)
            keep = scores >= score_thr
            iou = box_iou(torch.as_tensor(boxes[keep]), torch.as_tensor(tb, dtype=torch.float32)).numpy()
            same = iou * (labels[keep][:, None] == tl[None, :])
            matched = (same >= 0.5).any(axis=1) if len(tb) else np.zeros(int(keep.sum()), bool)
            fps.append(int((~matched).sum()))
            tps.append(int(matched.sum()))
            for c in abnormal:
                cells = tl == c
                n_abnormal += int(cells.sum())
                if cells.any() and keep.any():
                    n_abnormal_found += int((same[:, cells] >= 0.5).any(axis=0).sum())
    metrics = ev.evaluate()
    out = {k: float(metrics[k]) for k in ("AP", "AP50", "APr", "APc", "APf")}
    out["fp_per_slide"] = float(np.mean(fps))
    out["tp_per_slide"] = float(np.mean(tps))
    out["abnormal_recall"] = n_abnormal_found / max(n_abnormal, 1)
    out["abnormal_cells"] = n_abnormal
    out.update({f"AP-{k.split('-', 1)[1]}": float(v) for k, v in metrics.items() if k.startswith("AP-")})
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.model / "model.json").is_file():
        print(f"no model folder at {args.model}: run `make demo` first, or pass --model", file=sys.stderr)
        return 2
    from cytolt.datasets.from_review import review_dataset
    from cytolt.mm.train import export_model, train
    from cytolt.review.simulate import simulate_review
    from cytolt.store import DetectionStore

    t0 = time.time()
    work = args.work
    train_slides = make_slides(work / "slides_review", args.train_slides, 300, args.slide_px)
    test_slides = make_slides(work / "slides_heldout", args.test_slides, 400, args.slide_px)
    timings_file = work / "timings.json"  # kept across resumed runs, so a skipped step keeps its time
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}

    def timed(name: str, start: float) -> None:
        if time.time() - start > 1.0 or name not in timings:
            timings[name] = time.time() - start
        timings_file.write_text(json.dumps(timings))

    t = time.time()
    run = screen(train_slides, args.model, work / "run_review")
    timed("screen_review_slides_s", t)
    decisions = {"accept": 0, "reclassify": 0, "reject": 0}
    with DetectionStore(run / "run.sqlite") as store:
        for record in store.slides():
            if not store.reviews(record.id, latest=True):
                simulate_review(store, record.id, *truth(Path(record.path)), min_score=args.review_min_score)
            for review in store.reviews(record.id, latest=True):
                decisions[review.decision] += 1
    data = work / "review_data"
    if not (data / "annotations_train.json").is_file():
        summary = review_dataset(run, data, size=args.patch, splits=(0.8, 0.2, 0.0), seed=0)
        print(summary.format())
    tuned = work / "model_finetuned"
    t = time.time()
    if not (tuned / "model.json").is_file():
        cfg = ROOT / "configs" / "tct" / "retinanet_r18_gradlibra.py"
        options = {
            "train_cfg.max_iters": args.iters,
            "train_cfg.val_interval": args.iters,
            "optim_wrapper.optimizer.lr": args.lr,
            "train_dataloader.dataset.filter_cfg.filter_empty_gt": False,  # hard-negative patches train too
            "default_hooks.checkpoint.interval": args.iters,
        }
        wd = train(
            cfg,
            work_dir=work / "finetune",
            data_root=data,
            cfg_options=options,
            load_from=args.model,
            quiet=True,
        )
        export_model(wd, tuned)
        for name in ("scorer.json",):  # the slide scorer is calibrated per model; keep the original's
            if (args.model / name).is_file():
                (tuned / name).write_text((args.model / name).read_text())
    timed("finetune_s", t)

    t = time.time()
    before = evaluate(
        screen(test_slides, args.model, work / "run_heldout_before"),
        test_slides,
        args.train_data,
        args.score_thr,
    )
    after = evaluate(
        screen(test_slides, tuned, work / "run_heldout_after"), test_slides, args.train_data, args.score_thr
    )
    timed("heldout_s", t)
    review_data = json.loads((data / "annotations_train.json").read_text())
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        "command": "python scripts/review_loop_study.py " + " ".join(argv or sys.argv[1:]),
        "train_slides": args.train_slides,
        "test_slides": args.test_slides,
        "slide_px": args.slide_px,
        "review_min_score": args.review_min_score,
        "decisions": decisions,
        "review_train_images": len(review_data["images"]),
        "review_train_boxes": len(review_data["annotations"]),
        "iters": args.iters,
        "lr": args.lr,
        "before": before,
        "after": after,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "total_s": round(time.time() - t0, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "review_loop.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "review_loop.md").write_text(render(result))
    print(render(result))
    return 0


def render(r: dict) -> str:
    keys = ("AP", "AP50", "APr", "APc", "APf", "fp_per_slide", "abnormal_recall")

    def cell(v: float) -> str:
        return "n/a" if v < 0 else f"{v:.3f}"  # lvis-api's -1: no cell of that group on the held-out slides

    def took(key: str) -> str:
        v = r["timings_s"].get(key, 0.0)
        return f"{v:.0f} s" if v >= 1 else "not timed: done by an earlier, stopped run of the script"

    rows = [
        f"| {name} | " + " | ".join(cell(r[name][k]) for k in keys) + " |" for name in ("before", "after")
    ]
    d = r["decisions"]
    return "\n".join(
        [
            "# The review-to-training loop on synthetic slides",
            "",
            f"Run on {r['date']} ({r['machine']}); command `{r['command'].strip()}`; {r['total_s']:.0f} s in all "
            f"(screening the review slides: {took('screen_review_slides_s')}; fine-tuning: {took('finetune_s')}; "
            f"both models on the held-out slides: {took('heldout_s')}).",
            "",
            f"The demo's model screened {r['train_slides']} synthetic slides of {r['slide_px']} px; every detection "
            f"scoring >= {r['review_min_score']} was reviewed against ground truth ({d['accept']} accepted, "
            f"{d['reclassify']} reclassified, {d['reject']} rejected); `cytolt dataset from-review` made "
            f"{r['review_train_images']} training patches with {r['review_train_boxes']} boxes; `cytolt train "
            f"--load-from` fine-tuned for {r['iters']} iterations (lr {r['lr']}, hard-negative patches kept). "
            f"Both models then screened {r['test_slides']} held-out slides (other seeds). AP is LVIS AP over the "
            "held-out slides (each slide one image; frequency groups from the model's training set); false "
            "positives per slide count detections at score >= 0.3 matching no cell of their class (IoU 0.5); "
            "abnormal recall is the share of ASC-US/LSIL/HSIL/SCC/AGC cells found with their class.",
            "",
            "| model | AP | AP50 | APr | APc | APf | false positives / slide | abnormal recall |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
