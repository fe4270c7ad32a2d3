"""COCO and LVIS box AP: cytolt's evaluator (engine="fast", faster-coco-eval inside) against the reference libraries.

The references are the libraries themselves, used as their documentation shows: pycocotools' ``COCOeval`` for
COCO, lvis-api 0.5.3's ``LVISEval`` (``np.float`` restored) for LVIS. Every side gets the same synthetic ground
truth and detections (``make_case``: a long-tailed LVIS-format set with federated negatives and not-exhaustive
classes, jittered hits, confusions and false positives, fixed seed) as in-memory dicts, and each timed call
includes everything a user pays: building the index from the dicts, loading the results, evaluating,
accumulating and summarising (cytolt also copies and checks its inputs). After one untimed warm-up round the
sides alternate (A B, then B A, ...) for ``--rounds`` rounds; the table quotes medians with the min-max spread,
the median of the per-round ratios, and the largest absolute difference between the two sides' metrics (which
must stay below 1e-6). JSON goes to ``docs/bench/eval.json`` (or ``--json``). The last line is the headline.

    .venv/bin/python bench/bench_eval.py                      # 200 images, 100 detections each, 5 rounds
    .venv/bin/python bench/bench_eval.py --dets-per-image 400 # above LVIS's 300-per-image cap
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import io
import json
import logging
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

TOLERANCE = 1e-6


def make_case(
    n_images: int = 200, n_classes: int = 40, dets_per_image: int = 100, seed: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A synthetic long-tailed LVIS-format set (COCO-compatible: ``iscrowd`` 0) and detections for it.

    Classes follow a Zipf-like frequency (the first are "f", the tail "r"); each image holds 1-8 objects of
    8-200 px; a third of the absent classes are verified negatives and a fifth of the present ones are not
    exhaustively annotated. Detections: a jittered hit for 80% of the objects (10% of them in a confused
    class), then false positives of any class up to ``dets_per_image`` per image, with random scores.
    """
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_classes + 1) ** 1.2
    weights /= weights.sum()
    n_f, n_c = max(1, n_classes // 5), max(1, n_classes // 3)
    freq = ["f"] * n_f + ["c"] * n_c + ["r"] * (n_classes - n_f - n_c)
    categories = [{"id": c + 1, "name": f"class{c + 1}", "frequency": freq[c]} for c in range(n_classes)]
    images, anns, dets = [], [], []
    side = 1024.0
    for img_id in range(1, n_images + 1):
        present: set[int] = set()
        hits = []
        for _ in range(int(rng.integers(1, 9))):
            cat = int(rng.choice(n_classes, p=weights)) + 1
            w, h = rng.uniform(8, 200, 2)
            x, y = rng.uniform(0, side - w), rng.uniform(0, side - h)
            box = [float(x), float(y), float(w), float(h)]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat,
                    "bbox": box,
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
            present.add(cat)
            if rng.random() < 0.8:
                jit = np.asarray(box) + rng.normal(0, 0.08, 4) * np.array([w, h, w, h])
                jit[2:] = np.maximum(jit[2:], 1.0)
                det_cat = cat if rng.random() < 0.9 else int(rng.integers(1, n_classes + 1))
                hits.append({"image_id": img_id, "category_id": det_cat, "bbox": jit.tolist()})
        absent = [c for c in range(1, n_classes + 1) if c not in present]
        images.append(
            {
                "id": img_id,
                "width": int(side),
                "height": int(side),
                "neg_category_ids": [c for c in absent if rng.random() < 1 / 3],
                "not_exhaustive_category_ids": [c for c in sorted(present) if rng.random() < 0.2],
            }
        )
        n_fp = max(0, dets_per_image - len(hits))
        wh = rng.uniform(8, 200, (n_fp, 2))
        xy = rng.uniform(0, side - 200, (n_fp, 2))
        fp_cats = rng.choice(n_classes, size=n_fp, p=weights) + 1
        fps = [
            {"image_id": img_id, "category_id": int(c), "bbox": [*map(float, p), *map(float, s)]}
            for c, p, s in zip(fp_cats, xy, wh, strict=True)
        ]
        for det in hits + fps:
            det["score"] = float(rng.random())
            dets.append(det)
    return {"images": images, "annotations": anns, "categories": categories}, dets


def case_record(
    gt: dict[str, Any], dets: list[dict[str, Any]], classes: int, dets_per_image: int
) -> dict[str, Any]:
    """What ``make_case`` built, for the JSON record."""
    return dict(
        images=len(gt["images"]),
        classes=classes,
        objects=len(gt["annotations"]),
        detections=len(dets),
        dets_per_image=dets_per_image,
        seed=0,
    )


def pycocotools_eval(gt: dict[str, Any], dets: list[dict[str, Any]]) -> list[float]:
    """pycocotools' COCOeval on in-memory dicts; its 12 summary numbers."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)  # COCOeval writes flags into it, as into the results
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def lvis_api_eval(gt: dict[str, Any], dets: list[dict[str, Any]], max_dets: int = 300) -> list[float]:
    """lvis-api 0.5.3's LVISEval on in-memory dicts (``np.float`` restored first); its result values."""
    from cytolt._compat import patch_numpy_for_lvis

    patch_numpy_for_lvis()
    from lvis import LVIS, LVISEval, LVISResults

    class InMemoryLVIS(LVIS):  # lvis 0.5.3's LVIS only reads files
        def __init__(self, dataset: dict[str, Any]) -> None:
            self.logger = logging.getLogger("lvis")
            self.dataset = dataset
            self._create_index()

    lvis_gt = InMemoryLVIS(copy.deepcopy(gt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        results = LVISResults(lvis_gt, copy.deepcopy(dets), max_dets=max_dets)
    ev = LVISEval(lvis_gt, results, iou_type="bbox")
    ev.params.max_dets = max_dets
    ev.run()
    return [float(v) for v in ev.get_results().values()]


def cytolt_coco(gt: dict[str, Any], dets: list[dict[str, Any]]) -> list[float]:
    from cytolt.evaluate import coco_eval

    return list(coco_eval(gt, dets).values())


def cytolt_lvis(gt: dict[str, Any], dets: list[dict[str, Any]]) -> list[float]:
    from cytolt.evaluate import lvis_eval

    return list(lvis_eval(gt, dets).values())


def timed(fn: Callable[[], list[float]]) -> tuple[float, list[float]]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def interleaved(sides: dict[str, Callable[[], list[float]]], rounds: int) -> dict[str, Any]:
    """One untimed warm-up call per side, then ``rounds`` rounds in rotating order; seconds and results per side."""
    names = list(sides)
    results = {name: sides[name]() for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            s, out = timed(sides[name])
            seconds[name].append(s)
            results[name] = out
        print(
            f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {seconds[n][-1]:.2f} s" for n in names),
            flush=True,
        )
    return {"seconds": seconds, "results": results}


def summarise(task: str, cytolt_name: str, ref_name: str, run: dict[str, Any]) -> dict[str, Any]:
    sec = run["seconds"]
    ratios = [r / c for r, c in zip(sec[ref_name], sec[cytolt_name], strict=True)]
    diff = max(abs(a - b) for a, b in zip(run["results"][cytolt_name], run["results"][ref_name], strict=True))
    return dict(
        task=task,
        cytolt=cytolt_name,
        reference=ref_name,
        cytolt_s_median=statistics.median(sec[cytolt_name]),
        cytolt_s_min=min(sec[cytolt_name]),
        cytolt_s_max=max(sec[cytolt_name]),
        reference_s_median=statistics.median(sec[ref_name]),
        reference_s_min=min(sec[ref_name]),
        reference_s_max=max(sec[ref_name]),
        speedup_median=statistics.median(ratios),
        speedup_min=min(ratios),
        speedup_max=max(ratios),
        max_abs_metric_diff=diff,
        AP=run["results"][cytolt_name][0],
    )


def machine() -> dict[str, Any]:
    import faster_coco_eval

    return dict(
        cores=os.cpu_count(),
        cpu=platform.processor() or platform.machine(),
        python=platform.python_version(),
        numpy=np.__version__,
        faster_coco_eval=faster_coco_eval.__version__,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="images in the synthetic set")
    parser.add_argument("--classes", type=int, default=40, help="categories (long-tailed)")
    parser.add_argument(
        "--dets-per-image", type=int, default=100, help="detections per image (LVIS caps at 300)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (>= 5); medians are quoted")
    parser.add_argument("--only", choices=["coco", "lvis"], default=None, help="run one task")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "eval.json")
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds must be at least 5 (BENCHMARKS.md)")
    gt, dets = make_case(args.images, args.classes, args.dets_per_image)
    info = machine()
    print(
        f"{args.images} images, {len(gt['annotations'])} objects, {len(dets)} detections, {args.classes} classes; "
        f"cores {info['cores']}, faster-coco-eval {info['faster_coco_eval']}, rounds {args.rounds}",
        flush=True,
    )
    load_before = list(os.getloadavg())
    tasks = {
        "coco": ("cytolt coco_eval", "pycocotools", cytolt_coco, pycocotools_eval),
        "lvis": ("cytolt lvis_eval", "lvis-api", cytolt_lvis, lvis_api_eval),
    }
    rows = []
    for task, (c_name, r_name, c_fn, r_fn) in tasks.items():
        if args.only and task != args.only:
            continue
        print(f"{task.upper()} bbox AP: {c_name} (fast) vs {r_name}", flush=True)
        run = interleaved(
            {c_name: lambda f=c_fn: f(gt, dets), r_name: lambda f=r_fn: f(gt, dets)}, args.rounds
        )
        rows.append(summarise(task, c_name, r_name, run))

    print(
        f"\n{'task':<5} {'cytolt s (min-max)':<22} {'reference s (min-max)':<24} speed-up (min-max)  max |diff|"
    )
    for r in rows:
        print(
            f"{r['task']:<5} {r['cytolt_s_median']:6.2f} ({r['cytolt_s_min']:.2f}-{r['cytolt_s_max']:.2f})"
            f"{'':<6} {r['reference_s_median']:6.2f} ({r['reference_s_min']:.2f}-{r['reference_s_max']:.2f})"
            f"{'':<7} {r['speedup_median']:5.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})"
            f"  {r['max_abs_metric_diff']:.1e}"
        )
    equal = all(r["max_abs_metric_diff"] < TOLERANCE for r in rows)
    headline = ", ".join(f"{r['reference']}/cytolt = {r['speedup_median']:.2f}x" for r in rows)
    headline += f" (median of {args.rounds}; metrics {'equal' if equal else 'DIFFER'} to {TOLERANCE:g})"
    result = dict(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        machine=info,
        case=case_record(gt, dets, args.classes, args.dets_per_image),
        rounds=args.rounds,
        rows=rows,
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        load_average_before=load_before,
        load_average_after=list(os.getloadavg()),
        headline=headline,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    print(headline)
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
