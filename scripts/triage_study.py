"""Tile triage measured on synthetic patches: which tiles could a screen skip before the detector runs?

    .venv/bin/python scripts/triage_study.py                       # 3 losses x 3 seeds (resumable)
    .venv/bin/python scripts/triage_study.py --losses db bce --seeds 0

Steps:
  1. a synthetic patch dataset like the demo's (256 x 256 px tiles at 0.5 um/px, imbalance 50), split
     train / val / test 0.6 / 0.2 / 0.2, written under --data unless there;
  2. per (loss, seed): cytolt.classify.triage.train_triage on train; the threshold on the val tiles that keeps
     the recall of abnormal tiles (ascus, lsil, hsil, scc, agc) >= --recall; on the test tiles at that threshold:
     recall, the fraction of tiles skipped, abnormal cells in skipped tiles, and seconds per tile of the triage
     (from the 256-px tile: resize + forward, one thread). One json per finished run under --runs (skipped when
     there, so a stopped study continues);
  3. the detector's seconds per tile on the same tiles, when --detector (a model folder) exists;
  4. docs/results/triage.md + .json from all run files, with bootstrap intervals that resample val and test tiles
     together (the threshold is re-chosen in every resample).
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
sys.path.insert(0, str(ROOT))

from cytolt.classify.triage import (  # noqa: E402
    abnormal_indices,
    abnormal_scores,
    abnormal_tile_recall,
    coco_class_names,
    load_tiles,
    threshold_for_recall,
    tile_counts,
    train_triage,
)
from cytolt.evaluate.bootstrap import percentile_interval  # noqa: E402

SPLITS = ("train", "val", "test")
LOSS_ORDER = {"db": 0, "bce": 1, "focal": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "work_dirs" / "triage" / "data")
    p.add_argument("--images", type=int, default=3000, help="synthetic tiles in all (split 0.6 / 0.2 / 0.2)")
    p.add_argument("--imbalance", type=float, default=50.0, help="head / tail instances (the demo's 50)")
    p.add_argument("--losses", nargs="+", default=["db", "bce", "focal"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--input-size", type=int, default=64, help="side the 256-px tile is downsampled to")
    p.add_argument("--stem", default="s2", help="backbone stem (cytolt.classify.model.STEMS)")
    p.add_argument("--recall", type=float, default=0.99, help="abnormal-tile recall kept on val")
    p.add_argument("--timing-tiles", type=int, default=200)
    p.add_argument("--detector", type=Path, default=ROOT / "demo_out" / "model", help="model folder to time")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=Path, default=ROOT / "docs" / "results" / "runs_triage")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    return p.parse_args(argv)


def make_data(args: argparse.Namespace) -> dict[str, Path]:
    from cytolt.synth import make_patch_dataset

    files = {s: args.data / f"annotations_{s}.json" for s in SPLITS}
    if not all(f.is_file() for f in files.values()):
        print(f"[1] synthetic tiles -> {args.data}", flush=True)
        t0 = time.perf_counter()
        make_patch_dataset(
            args.data, images=args.images, size=256, imbalance=args.imbalance, seed=0, split=(0.6, 0.2, 0.2)
        )
        print(f"    {args.images} tiles in {time.perf_counter() - t0:.0f} s", flush=True)
    return files


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Non-interpolated AP (mean precision at each positive, ties broken by order); NaN with no positive."""
    if not positive.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def seconds_per_tile(fn, tiles: np.ndarray, repeats: int = 3) -> float:
    fn(tiles[:8])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(tiles)
        best = min(best, time.perf_counter() - t0)
    return best / len(tiles)


def run_one(args, loss: str, seed: int, data: dict, full_tiles: np.ndarray) -> dict:
    names, abnormal = data["class_names"], data["abnormal"]
    result = train_triage(
        data["tiles"]["train"],
        data["targets"]["train"],
        class_names=names,
        loss=loss,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        width=args.width,
        input_size=args.input_size,
        stem=args.stem,
        seed=seed,
        progress=True,
    )
    model = result.model
    probs = {s: model.predict(data["tiles"][s]) for s in ("val", "test")}
    threshold = threshold_for_recall(probs["val"], data["targets"]["val"], abnormal, recall=args.recall)
    test = abnormal_tile_recall(
        probs["test"], data["targets"]["test"], abnormal, threshold, counts=data["counts"]["test"]
    )
    is_abnormal = data["targets"]["test"][:, abnormal].max(1) > 0
    score_test = abnormal_scores(probs["test"], abnormal)
    per_class_ap = {
        n: average_precision(probs["test"][:, k], data["targets"]["test"][:, k] > 0)
        for k, n in enumerate(names)
    }
    s_tile = seconds_per_tile(model.predict, full_tiles)
    return {
        "loss": loss,
        "sampler": result.sampler,
        "seed": seed,
        "train_seconds": round(result.seconds, 1),
        "history": [{k: round(v, 4) for k, v in h.items()} for h in result.history],
        "threshold": threshold,
        "test": {
            "recall": test.recall,
            "skip_fraction": test.skip_fraction,
            "tiles": test.tiles,
            "abnormal_tiles": test.abnormal_tiles,
            "missed_tiles": test.missed_tiles,
            "missed_abnormal_cells": test.missed_cells,
            "abnormal_cells": int(data["counts"]["test"][:, abnormal].sum()),
            "abnormal_tile_ap": average_precision(score_test, is_abnormal),
            "class_ap": per_class_ap,
        },
        "seconds_per_tile": s_tile,
        # Kept so that the summary can bootstrap (and pair runs) without retraining.
        "scores": {s: np.round(abnormal_scores(probs[s], abnormal), 6).tolist() for s in ("val", "test")},
    }


def time_detector(args, full_tiles: np.ndarray) -> dict:
    if not (args.detector / "model.json").is_file():
        return {"available": False, "path": str(args.detector)}
    from cytolt.detect import load

    detector = load(args.detector, "cpu")

    def run(tiles):
        images = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
        for i in range(0, len(images), 8):
            detector.predict(images[i : i + 8])

    return {
        "available": True,
        "path": str(args.detector),
        "seconds_per_tile": seconds_per_tile(run, full_tiles, 2),
    }


def bootstrap_run(
    run: dict, val_pos: np.ndarray, test_pos: np.ndarray, recall: float, resamples: int, seed: int
):
    """(resamples, 2) recall and skip fraction, val and test tiles drawn with replacement, threshold re-chosen."""
    rng = np.random.default_rng(seed)
    val_s, test_s = np.asarray(run["scores"]["val"]), np.asarray(run["scores"]["test"])
    out = np.full((resamples, 2), np.nan)
    for r in range(resamples):
        vi = rng.integers(0, len(val_s), len(val_s))
        ti = rng.integers(0, len(test_s), len(test_s))
        pos = val_s[vi][val_pos[vi]]
        if pos.size == 0 or not test_pos[ti].any():
            continue
        k = int(np.ceil(recall * pos.size - 1e-9))
        thr = np.sort(pos)[::-1][k - 1]
        kept = test_s[ti] >= thr
        out[r] = (kept[test_pos[ti]].mean(), 1 - kept.mean())
    return out


OTHER_TARGETS = (0.95, 0.9)  # recall targets reported beside --recall, from the stored scores


def outcome_at(run: dict, val_pos: np.ndarray, test_pos: np.ndarray, recall: float) -> dict:
    """Test recall and skip fraction at the val threshold for another recall target (no retraining)."""
    val_s, test_s = np.asarray(run["scores"]["val"]), np.asarray(run["scores"]["test"])
    pos = np.sort(val_s[val_pos])[::-1]
    thr = pos[int(np.ceil(recall * pos.size - 1e-9)) - 1]
    kept = test_s >= thr
    return {"target": recall, "recall": float(kept[test_pos].mean()), "skip_fraction": float(1 - kept.mean())}


def summarise(args, runs: list[dict], detector: dict, data_info: dict) -> dict:
    val_pos, test_pos = np.asarray(data_info["val_abnormal"]), np.asarray(data_info["test_abnormal"])
    rows, samples = [], {}
    for run in runs:
        boot = bootstrap_run(run, val_pos, test_pos, args.recall, args.resamples, seed=run["seed"])
        samples[(run["loss"], run["seed"])] = boot
        t = run["test"]
        rows.append(
            {
                "loss": run["loss"],
                "sampler": run["sampler"],
                "seed": run["seed"],
                "threshold": run["threshold"],
                "recall": percentile_interval(t["recall"], boot[:, 0]).as_dict(),
                "skip_fraction": percentile_interval(t["skip_fraction"], boot[:, 1]).as_dict(),
                "missed_tiles": t["missed_tiles"],
                "abnormal_tiles": t["abnormal_tiles"],
                "missed_abnormal_cells": t["missed_abnormal_cells"],
                "abnormal_cells": t["abnormal_cells"],
                "abnormal_tile_ap": t["abnormal_tile_ap"],
                "class_map": float(np.nanmean(list(t["class_ap"].values()))),
                "class_ap": t["class_ap"],
                "seconds_per_tile": run["seconds_per_tile"],
                "train_seconds": run["train_seconds"],
                "other_targets": [outcome_at(run, val_pos, test_pos, t) for t in OTHER_TARGETS],
            }
        )
    # Paired differences against BCE, per seed: the same resampled tiles (same seed -> same draws).
    diffs = []
    for run in runs:
        base = samples.get(("bce", run["seed"]))
        if run["loss"] == "bce" or base is None:
            continue
        b = next(r for r in runs if r["loss"] == "bce" and r["seed"] == run["seed"])
        d = samples[(run["loss"], run["seed"])] - base
        diffs.append(
            {
                "loss": run["loss"],
                "seed": run["seed"],
                "skip_fraction_minus_bce": percentile_interval(
                    run["test"]["skip_fraction"] - b["test"]["skip_fraction"], d[:, 1]
                ).as_dict(),
                "recall_minus_bce": percentile_interval(
                    run["test"]["recall"] - b["test"]["recall"], d[:, 0]
                ).as_dict(),
            }
        )
    means = {}
    for loss in dict.fromkeys(r["loss"] for r in rows):
        mine = [r for r in rows if r["loss"] == loss]
        means[loss] = {
            "seeds": [r["seed"] for r in mine],
            **{
                key: float(np.mean([get(r) for r in mine]))
                for key, get in (
                    ("recall", lambda r: r["recall"]["value"]),
                    ("skip_fraction", lambda r: r["skip_fraction"]["value"]),
                    ("abnormal_tile_ap", lambda r: r["abnormal_tile_ap"]),
                    ("class_map", lambda r: r["class_map"]),
                    ("seconds_per_tile", lambda r: r["seconds_per_tile"]),
                    ("missed_abnormal_cells", lambda r: r["missed_abnormal_cells"]),
                )
            },
        }
    return {"rows": rows, "paired_vs_bce": diffs, "means": means, "detector": detector}


def fmt(iv: dict) -> str:
    return f"{iv['value']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]"


def write_report(args, summary: dict, data_info: dict) -> None:
    cfg = data_info["config"]
    lines = [
        "# Tile triage: recall of abnormal tiles and the tiles a screen could skip",
        "",
        f"Generated by `scripts/triage_study.py` on {date.today().isoformat()} ({platform.machine()}, "
        f"{args.threads} torch thread(s), a shared 2-core machine under load: timings are indicative). "
        "Method and plug-in: [docs/classify_methods_multilabel.md](../classify_methods_multilabel.md).",
        "",
        f"Data: synthetic patches like the demo's, {cfg['images']} tiles of 256 x 256 px at 0.5 um/px, imbalance "
        f"{cfg['imbalance']:g}, split 0.6 / 0.2 / 0.2 (train {data_info['n']['train']}, val {data_info['n']['val']}, "
        f"test {data_info['n']['test']}); a tile is abnormal when it holds an ascus, lsil, hsil, scc or agc cell "
        f"(val {int(np.sum(data_info['val_abnormal']))}, test {int(np.sum(data_info['test_abnormal']))} abnormal "
        "tiles). "
        f"Model: CellClassifier backbone (narrow ResNet-18, width {cfg['width']}, stem {cfg['stem']!r}) + 11-way sigmoid head on the tile "
        f"downsampled to {cfg['input_size']} px; {cfg['epochs']} epochs, AdamW lr {cfg['lr']:g}, batch "
        f"{cfg['batch_size']}. Threshold: the highest that keeps abnormal-tile recall >= {cfg['recall']} on val; "
        "the numbers below are on test at that threshold. Intervals: 95% bias-corrected percentile over "
        f"{args.resamples} resamples of val and test tiles together (the threshold re-chosen in each).",
        "",
        "| loss | sampler | seed | test recall | tiles skipped | abnormal cells lost | abnormal-tile AP | "
        "class mAP | ms / tile | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['loss']} | {r['sampler']} | {r['seed']} | {fmt(r['recall'])} | {fmt(r['skip_fraction'])} | "
            f"{r['missed_abnormal_cells']} / {r['abnormal_cells']} | {r['abnormal_tile_ap']:.3f} | "
            f"{r['class_map']:.3f} | {1000 * r['seconds_per_tile']:.2f} | {r['train_seconds']:.0f} |"
        )
    lines += [
        "",
        "Means over seeds:",
        "",
        "| loss | seeds | test recall | tiles skipped | abnormal-tile AP | class mAP | ms / tile |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for loss, m in summary["means"].items():
        lines.append(
            f"| {loss} | {len(m['seeds'])} | {m['recall']:.3f} | {m['skip_fraction']:.3f} | "
            f"{m['abnormal_tile_ap']:.3f} | {m['class_map']:.3f} | {1000 * m['seconds_per_tile']:.2f} |"
        )
    lines += [
        "",
        "Lower recall targets (val threshold, test point estimates; no interval):",
        "",
        "| loss | seed | " + " | ".join(f"target {t}: recall, skipped" for t in OTHER_TARGETS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in OTHER_TARGETS) + " |",
    ]
    for r in summary["rows"]:
        cells = " | ".join(f"{o['recall']:.3f}, {o['skip_fraction']:.3f}" for o in r["other_targets"])
        lines.append(f"| {r['loss']} | {r['seed']} | {cells} |")
    if summary["paired_vs_bce"]:
        lines += [
            "",
            "Paired against BCE (same seed, same resampled tiles):",
            "",
            "| loss | seed | tiles skipped - BCE | recall - BCE |",
            "| --- | --- | --- | --- |",
        ]
        for d in summary["paired_vs_bce"]:
            lines.append(
                f"| {d['loss']} | {d['seed']} | {fmt(d['skip_fraction_minus_bce'])} | {fmt(d['recall_minus_bce'])} |"
            )
    det = summary["detector"]
    lines += [""]
    if det.get("available"):
        lines.append(
            f"Detector ({det['path']}): {1000 * det['seconds_per_tile']:.2f} ms per 256-px tile on the same tiles "
            "(cytolt.detect.load(...).predict, batches of 8, decode and NMS included)."
        )
    else:
        lines.append(
            f"Detector: no model folder at {det['path']} (`make demo` writes demo_out/model), so only the triage "
            "time is stated; a screen saves roughly (tiles skipped) x (detector time per tile) - (triage time per "
            "tile) x (all tiles)."
        )
    (args.out / "triage.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.runs.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    files = make_data(args)
    names = coco_class_names(files["train"])
    abnormal = abnormal_indices(names)
    data = {"class_names": names, "abnormal": abnormal, "tiles": {}, "targets": {}, "counts": {}}
    for s, f in files.items():
        data["counts"][s] = tile_counts(f)
        data["targets"][s] = (data["counts"][s] > 0).astype(np.float32)
        data["tiles"][s] = load_tiles(f, size=args.input_size)
    full_tiles = load_tiles(files["test"], size=256)[: args.timing_tiles]
    config = {
        k: getattr(args, k)
        for k in (
            "images",
            "imbalance",
            "epochs",
            "batch_size",
            "lr",
            "width",
            "input_size",
            "stem",
            "recall",
        )
    }
    data_info = {
        "config": config,
        "n": {s: len(data["targets"][s]) for s in SPLITS},
        "val_abnormal": (data["targets"]["val"][:, abnormal].max(1) > 0).tolist(),
        "test_abnormal": (data["targets"]["test"][:, abnormal].max(1) > 0).tolist(),
        "train_tiles_per_class": dict(
            zip(names, data["targets"]["train"].sum(0).astype(int).tolist(), strict=True)
        ),
    }
    runs = []
    for seed in args.seeds:
        for loss in args.losses:
            path = args.runs / f"{loss}_s{seed}.json"
            if path.is_file():
                run = json.loads(path.read_text())
                if run.get("config") == config:
                    print(f"[2] {loss} seed {seed}: reusing {path.name}", flush=True)
                    runs.append(run)
                    continue
                print(f"[2] {loss} seed {seed}: {path.name} has another config; running again", flush=True)
            print(f"[2] {loss} seed {seed}: training", flush=True)
            run = {**run_one(args, loss, seed, data, full_tiles), "config": config}
            path.write_text(json.dumps(run, indent=1) + "\n")
            t = run["test"]
            print(
                f"    recall {t['recall']:.3f}, skipped {t['skip_fraction']:.3f}, "
                f"{1000 * run['seconds_per_tile']:.2f} ms/tile, {run['train_seconds']:.0f} s",
                flush=True,
            )
            runs.append(run)
    # The summary covers every finished run of this config, also those of earlier invocations (other seeds).
    done = {(r["loss"], r["seed"]) for r in runs}
    for path in sorted(args.runs.glob("*_s*.json")):
        run = json.loads(path.read_text())
        if run.get("config") == config and (run["loss"], run["seed"]) not in done:
            runs.append(run)
    runs.sort(key=lambda r: (LOSS_ORDER.get(r["loss"], 99), r["seed"]))
    det_path = args.runs / "detector.json"
    detector = json.loads(det_path.read_text()) if det_path.is_file() else time_detector(args, full_tiles)
    if detector.get("available"):
        det_path.write_text(json.dumps(detector, indent=1) + "\n")
    summary = summarise(args, runs, detector, data_info)
    out = {"data": {k: v for k, v in data_info.items() if not k.endswith("_abnormal")}, **summary}
    (args.out / "triage.json").write_text(json.dumps(out, indent=1) + "\n")
    write_report(args, summary, data_info)
    print(f"[4] wrote {args.out / 'triage.md'} and triage.json", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
