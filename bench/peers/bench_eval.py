"""COCO and LVIS box AP side by side, in one run: cytolt against pycocotools, lvis-api and faster-coco-eval.

Every side scores the same synthetic ground truth and detections (bench/bench_eval.py's ``make_case``: long-tailed
LVIS-format classes, federated negatives, not-exhaustive classes; fixed seed), handed over as in-memory dicts; a
timed call covers building the index, loading the results, evaluating, accumulating and summarising:

    cytolt                 cytolt.evaluate.coco_eval / lvis_eval (engine="fast": faster-coco-eval inside, with the
                           LVIS per-image cap applied first)
    pycocotools            COCOeval (the COCO reference)
    lvis-api               lvis 0.5.3 LVISEval, np.float restored (the LVIS reference)
    faster-coco-eval       COCOeval_faster used directly; for LVIS with lvis_style=True and maxDets=[300], as its
                           documentation shows (it caps per image *and class*, LVIS per image: above 300
                           detections per image its numbers differ, which the table shows)

Rounds are interleaved after one warm-up (bench/peers/_common.interleaved); rates are detections per second. The
table gives each side's median time with its spread, cytolt's speed ratio to it (> 1: cytolt faster) and the largest
absolute difference of its metrics from the reference library's. Runs with .venv-peers (`make bench-peers`) or with
the product's .venv, which has all four. Writes docs/bench/peers_eval.json (or --json). The last line is the headline.

    .venv-peers/bin/python bench/peers/bench_eval.py [--images 200] [--dets-per-image 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from _common import ROOT, interleaved, peak_rss_mb, peer, table, write_record


def _product_bench() -> ModuleType:
    """bench/bench_eval.py (same name as this file, so loaded from its path): the case and the reference calls."""
    spec = importlib.util.spec_from_file_location("cytolt_bench_eval", ROOT / "bench" / "bench_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_bench = _product_bench()
make_case, cytolt_coco, cytolt_lvis = _bench.make_case, _bench.cytolt_coco, _bench.cytolt_lvis
pycocotools_eval, lvis_api_eval = _bench.pycocotools_eval, _bench.lvis_api_eval

LVIS_MAX_DETS = 300


def faster_coco_eval_direct(gt: dict[str, Any], dets: list[dict[str, Any]], *, lvis: bool) -> list[float]:
    """faster-coco-eval used the documented way; its numbers in pycocotools' (COCO) or lvis-api's (LVIS) order."""
    from faster_coco_eval import COCO, COCOeval_faster

    # Each dict copied once (it writes flags and areas into them), as cytolt copies its inputs: no deepcopy.
    own_gt = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(own_gt)
        ev = COCOeval_faster(
            coco_gt, coco_gt.loadRes([dict(d) for d in dets]), iouType="bbox", lvis_style=lvis
        )
        if lvis:
            ev.params.maxDets = [LVIS_MAX_DETS]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if not lvis:
        return [float(v) for v in ev.stats]
    s = ev.stats_as_dict
    keys = ["AP_all", "AP_50", "AP_75", "AP_small", "AP_medium", "AP_large", "APr", "APc", "APf"]
    keys += ["AR_all", "AR_small", "AR_medium", "AR_large"]
    return [float(s[k]) for k in keys]


def run_task(
    name: str, sides: dict[str, Callable[[], list[float]]], reference: str, rounds: int, n_dets: int
) -> dict[str, Any]:
    """Time the sides interleaved; metrics from each side's last call, compared with the reference's."""
    metrics: dict[str, list[float]] = {}

    def counted(side: str, fn: Callable[[], list[float]]) -> Callable[[], int]:
        def call() -> int:
            metrics[side] = fn()
            return n_dets

        return call

    runs = interleaved({side: counted(side, fn) for side, fn in sides.items()}, rounds)
    ref = metrics[reference]
    out = {}
    for side, r in runs.items():
        out[side] = {
            **r.to_dict(),
            "cytolt_speed_ratio": runs["cytolt"].median_rate / r.median_rate,
            "max_abs_diff_vs_reference": max(abs(a - b) for a, b in zip(metrics[side], ref, strict=True)),
            "AP": metrics[side][0],
        }
    return {"task": name, "reference": reference, "sides": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="images in the synthetic set")
    parser.add_argument("--classes", type=int, default=40, help="categories (long-tailed)")
    parser.add_argument(
        "--dets-per-image", type=int, default=100, help="detections per image (LVIS caps at 300)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "peers_eval.json")
    args = parser.parse_args(argv)

    peers = {
        p.name: p for p in (peer("pycocotools"), peer("lvis"), peer("faster_coco_eval", "faster-coco-eval"))
    }
    gt, dets = make_case(args.images, args.classes, args.dets_per_image)
    print(
        f"{args.images} images, {len(gt['annotations'])} objects, {len(dets)} detections, {args.classes} classes, "
        f"rounds {args.rounds}; peers: "
        + ", ".join(f"{n} {p.version}" if p.ok else f"{n} MISSING ({p.reason})" for n, p in peers.items()),
        flush=True,
    )
    fce = peers["faster-coco-eval"].ok
    coco_sides: dict[str, Callable[[], list[float]]] = {"cytolt": lambda: cytolt_coco(gt, dets)}
    lvis_sides: dict[str, Callable[[], list[float]]] = {"cytolt": lambda: cytolt_lvis(gt, dets)}
    if peers["pycocotools"].ok:
        coco_sides["pycocotools"] = lambda: pycocotools_eval(gt, dets)
    if peers["lvis"].ok:
        lvis_sides["lvis-api"] = lambda: lvis_api_eval(gt, dets)
    if fce:
        coco_sides["faster-coco-eval"] = lambda: faster_coco_eval_direct(gt, dets, lvis=False)
        lvis_sides["faster-coco-eval"] = lambda: faster_coco_eval_direct(gt, dets, lvis=True)
    tasks = []
    for name, sides, reference in (("coco", coco_sides, "pycocotools"), ("lvis", lvis_sides, "lvis-api")):
        if reference not in sides:
            print(f"{name}: skipped, its reference {reference} is missing", flush=True)
            continue
        print(f"{name.upper()} bbox AP: {', '.join(sides)} ...", flush=True)
        tasks.append(run_task(name, sides, reference, args.rounds, len(dets)))

    rows, headline = [], []
    for t in tasks:
        for side, r in t["sides"].items():
            s = r["seconds"]
            rows.append(
                [
                    t["task"],
                    side,
                    f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})",
                    f"{r['items_per_s']['median']:,.0f}",
                    "-" if side == "cytolt" else f"{r['cytolt_speed_ratio']:.2f}x",
                    f"{r['max_abs_diff_vs_reference']:.1e}",
                ]
            )
            if side != "cytolt":
                headline.append(f"{t['task']} cytolt/{side} = {r['cytolt_speed_ratio']:.2f}x")
    print()
    print(
        table(
            rows, ["task", "side", "seconds (min-max)", "dets/s", "cytolt ratio", "max |diff| vs reference"]
        )
    )
    record = dict(
        case=_bench.case_record(gt, dets, args.classes, args.dets_per_image),
        rounds=args.rounds,
        peers={n: p.to_dict() for n, p in peers.items()},
        tasks=tasks,
        peak_rss_mb=round(peak_rss_mb(), 1),
        headline=", ".join(headline),
    )
    write_record(args.json, record)
    print(f"wrote {args.json}")
    print(", ".join(headline) + f" (median of {args.rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
