"""Sliced detection on a whole slide: cytolt's screening path against SAHI, with the same model, in one run.

One synthetic slide from cytolt.synth (HSIL, --size px square at the model's mpp, so SAHI's image pixels are
the slide's level-0 pixels and the planted cells' boxes apply to both). Both sides slice it into 512-px tiles
overlapping by cytolt's default (64 um at the model's mpp: 128 px, SAHI's overlap ratio 0.25) and merge the tiles'
detections by class-aware NMS at IoU 0.5, through the same detector object (:func:`cytolt.detect.load`, the
engine given by --engine):

    cytolt   cytolt.screen.screen_slide(path, detector): tissue mask, tiles read in 2 threads while the model
             runs, batches of 8, cross-tile NMS; nothing written
    sahi     the slide read into memory (cytolt.io, level 0), then sahi.predict.get_sliced_prediction with a
             sahi DetectionModel that calls the same detector on each slice (one slice per call, SAHI's
             way); perform_standard_pred=False (no extra whole-image pass), postprocess NMS / IOU 0.5,
             class-aware; confidence_threshold the detector's own 0.05

Each side runs in its own process per round (so its peak RSS is its own), rounds interleaved after one warm-up
round; wall time is measured inside the process from the slide path to the merged boxes (model loading
excluded). Against the planted cells (the slide's .cells.json): recall and precision at IoU 0.5 (class-aware and
class-agnostic) and duplicates (detections on a cell another detection already took).

Needs .venv-peers (scripts/setup_peers.sh: SAHI beside cytolt) and a model folder (default demo_out/model,
`make demo`). SAHI missing is reported, not an error. Writes docs/bench/peers_sahi.json.
Run: make bench-peers, or .venv-peers/bin/python bench/peers/bench_sahi.py [--size 8192] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT, Rounds, peak_rss_mb, peer, summary, table, write_record

TILE = 512
SIDES = ("cytolt", "sahi")
IOU = 0.5


# ------------------------------------------------------------------ one side, in its own process
def sahi_model(detector: Any, score_thr: float) -> Any:
    """A sahi DetectionModel that runs a cytolt Detector on one RGB slice at a time."""
    import torch
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    class CytoltSahiModel(DetectionModel):
        def load_model(self) -> None:  # the detector is given, nothing to load
            self.set_model(detector)

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model
            self.category_mapping = {str(i): name for i, name in enumerate(model.info.classes)}

        def perform_inference(self, image: np.ndarray, *args: Any, **kwargs: Any) -> None:
            batch = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None]
            self._original_predictions = self.model.predict(batch)

        @property
        def num_categories(self) -> int:
            return len(self.category_mapping)

        @property
        def has_mask(self) -> bool:
            return False

        @property
        def category_names(self) -> list[str]:
            return list(self.category_mapping.values())

        def _create_object_prediction_list_from_original_predictions(
            self, shift_amount_list: Any = None, full_shape_list: Any = None
        ) -> None:
            shift = (shift_amount_list or [[0, 0]])[0]
            shift = shift if isinstance(shift, list | tuple) else shift_amount_list
            full = None if not full_shape_list else full_shape_list[0]
            full = full if full is None or isinstance(full, list | tuple) else full_shape_list
            (det,) = self._original_predictions
            keep = det.scores >= self.confidence_threshold
            preds = [
                ObjectPrediction(
                    bbox=box,
                    category_id=int(label),
                    category_name=self.category_mapping[str(int(label))],
                    score=float(score),
                    shift_amount=list(shift),
                    full_shape=None if full is None else list(full),
                )
                for box, score, label in zip(
                    det.boxes[keep].tolist(),
                    det.scores[keep].tolist(),
                    det.labels[keep].tolist(),
                    strict=True,
                )
            ]
            self._object_prediction_list_per_image = [preds]

    return CytoltSahiModel(model=detector, confidence_threshold=score_thr, device="cpu", load_at_init=True)


def run_side(args: argparse.Namespace) -> None:
    """Child process: screen the slide one way, write its boxes (.npz) and print its timing and memory."""
    import torch

    torch.set_num_threads(args.threads)
    from cytolt.detect import load

    detector = load(args.model, "cpu", engine=args.engine)
    rss_model = peak_rss_mb()
    t0 = time.perf_counter()
    if args.side == "cytolt":
        from cytolt.screen import screen_slide

        result = screen_slide(args.slide, detector)
        det = result.detections
        boxes, scores, labels = det.boxes.numpy(), det.scores.numpy(), det.labels.numpy()
        tiles = result.tiles_read
    else:
        from sahi.predict import get_sliced_prediction

        from cytolt.io import open_slide

        with open_slide(args.slide) as slide:
            w, h = slide.dimensions
            image = np.asarray(slide.read_region((0, 0), 0, (w, h)))[..., :3]
        pred = get_sliced_prediction(
            image,
            sahi_model(detector, 0.05),
            slice_height=TILE,
            slice_width=TILE,
            overlap_height_ratio=args.overlap / TILE,
            overlap_width_ratio=args.overlap / TILE,
            perform_standard_pred=False,
            postprocess_type="NMS",
            postprocess_match_metric="IOU",
            postprocess_match_threshold=IOU,
            postprocess_class_agnostic=False,
            verbose=0,
        )
        items = pred.object_prediction_list
        boxes = np.array([p.bbox.to_xyxy() for p in items], np.float32).reshape(-1, 4)
        scores = np.array([p.score.value for p in items], np.float32)
        labels = np.array([p.category.id for p in items], np.int64)
        tiles = None
    wall = time.perf_counter() - t0
    np.savez(args.boxes, boxes=boxes, scores=scores, labels=labels)
    print(
        json.dumps(
            {"wall_s": wall, "peak_rss_mb": peak_rss_mb(), "rss_after_load_mb": rss_model, "tiles": tiles}
        )
    )


# ------------------------------------------------------------------ scoring against the planted cells
def match(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, truth: Any, *, class_aware: bool
) -> dict:
    """Greedy matching by score at IoU >= 0.5: recall, precision and duplicates against the planted cells."""
    import torch
    from torchvision.ops import box_iou

    from cytolt.synth import CLASSES

    t_boxes = torch.tensor([c.box for c in truth.cells], dtype=torch.float32).reshape(-1, 4)
    t_labels = torch.tensor([CLASSES.index(c.label) for c in truth.cells])
    iou = box_iou(torch.from_numpy(boxes), t_boxes)
    if class_aware:
        iou[torch.from_numpy(labels)[:, None] != t_labels[None, :]] = 0
    taken = torch.zeros(len(t_boxes), dtype=torch.bool)
    tp = dup = 0
    for i in np.argsort(-scores, kind="stable"):
        hits = iou[int(i)] >= IOU
        if not hits.any():
            continue
        free = hits & ~taken
        if free.any():
            taken[int(torch.where(free, iou[int(i)], -1).argmax())] = True
            tp += 1
        else:
            dup += 1
    n = len(boxes)
    return {
        "recall": round(tp / max(len(t_boxes), 1), 4),
        "precision": round(tp / max(n, 1), 4),
        "duplicates": dup,
        "detections": n,
        "cells": len(t_boxes),
    }


def child(args: argparse.Namespace, side: str, slide: Path, out: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--slide",
        str(slide),
        "--boxes",
        str(out),
        "--model",
        str(args.model),
        "--engine",
        args.engine,
        "--threads",
        str(args.threads),
        "--overlap",
        str(args.overlap),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "demo_out" / "model")
    parser.add_argument(
        "--engine", default="auto", choices=("auto", "torch", "onnx"), help="the detector engine"
    )
    parser.add_argument("--size", type=int, default=8192, help="slide side in px at the model's mpp")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime threads of each side")
    parser.add_argument("--overlap", type=int, default=128, help="tile overlap in px (cytolt's 64 um at 0.5)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "peers_sahi.json")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--slide", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--boxes", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        run_side(args)
        return 0
    sahi = peer("sahi")
    if not sahi.ok:
        print(f"SAHI is not available: {sahi.reason}; nothing measured", file=sys.stderr)
        write_record(args.out, {"benchmark": "peers_sahi", "peers": {"sahi": sahi.to_dict()}})
        return 0
    if not (args.model / "model.json").is_file():
        print(f"no model folder at {args.model}: run `make demo` first, or pass --model DIR", file=sys.stderr)
        return 2
    from cytolt.detect import ModelFolder, pick_engine
    from cytolt.synth import make_slide

    folder = ModelFolder.read(args.model)
    import torch

    engine = pick_engine(folder, torch.device("cpu"), args.engine)
    mpp = folder.info.mpp or 0.5
    rounds = {side: Rounds() for side in SIDES}
    memory: dict[str, list[float]] = {side: [] for side in SIDES}
    scores: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_sahi_") as tmp:
        slide = Path(tmp) / "slide.tiff"
        truth = make_slide(slide, size=(args.size, args.size), mpp=mpp, seed=23, label="HSIL")
        print(f"slide {args.size} px at {mpp} um/px, {len(truth.cells)} planted cells; engine {engine}")
        tiles_cytolt = None
        for k in range(args.rounds + 1):  # round 0 is the untimed warm-up
            for side in SIDES if k % 2 == 0 else SIDES[::-1]:
                out = Path(tmp) / f"{side}.npz"
                got = child(args, side, slide, out)
                if side == "cytolt":
                    tiles_cytolt = got["tiles"]
                if k == 0:
                    continue
                n_tiles = got["tiles"] or sahi_tiles(args.size, args.overlap)
                rounds[side].seconds.append(got["wall_s"])
                rounds[side].items.append(n_tiles)
                memory[side].append(got["peak_rss_mb"])
                print(f"  round {k} {side}: {got['wall_s']:.1f} s, peak RSS {got['peak_rss_mb']:.0f} MB")
        for side in SIDES:
            with np.load(Path(tmp) / f"{side}.npz") as z:
                b, s, lab = z["boxes"], z["scores"], z["labels"]
            scores[side] = {
                "class_aware": match(b, s, lab, truth, class_aware=True),
                "class_agnostic": match(b, s, lab, truth, class_aware=False),
            }
    speedup = rounds["sahi"].median_seconds / rounds["cytolt"].median_seconds
    rows = []
    for side in SIDES:
        ca, cg = scores[side]["class_aware"], scores[side]["class_agnostic"]
        rows.append(
            [
                side,
                f"{rounds[side].median_seconds:.1f}",
                f"{min(rounds[side].seconds):.1f}-{max(rounds[side].seconds):.1f}",
                rounds[side].items[0],
                f"{max(memory[side]):.0f}",
                f"{ca['recall']:.3f} / {cg['recall']:.3f}",
                f"{ca['precision']:.3f} / {cg['precision']:.3f}",
                cg["duplicates"],
                ca["detections"],
            ]
        )
    headers = [
        "side",
        "wall s",
        "min-max",
        "tiles",
        "peak RSS MB",
        "recall aware/agnostic",
        "precision aware/agnostic",
        "duplicates",
        "detections",
    ]
    print(table(rows, headers))
    record = {
        "benchmark": "peers_sahi",
        "peers": {"sahi": sahi.to_dict()},
        "model": str(args.model),
        "engine": engine,
        "slide": {"size": args.size, "mpp": mpp, "cells": len(truth.cells), "label": "HSIL", "seed": 23},
        "tiles": {
            "size": TILE,
            "overlap": args.overlap,
            "cytolt": tiles_cytolt,
            "sahi": sahi_tiles(args.size, args.overlap),
        },
        "rounds": args.rounds,
        "sides": {
            side: {
                **rounds[side].to_dict(),
                "wall_s": summary(rounds[side].seconds),
                "peak_rss_mb": max(memory[side]),
                **scores[side],
            }
            for side in SIDES
        },
        "speedup_cytolt_over_sahi": round(speedup, 3),
    }
    write_record(args.out, record, threads=args.threads, engine=engine)
    print(f"sahi: cytolt / SAHI = {speedup:.2f}x wall time (median of {args.rounds}, engine {engine})")
    return 0


def sahi_tiles(size: int, overlap: int) -> int:
    """Slices SAHI cuts a size x size image into (its last slice in a row is moved back to end at the edge)."""
    step = TILE - overlap
    per_side = max(1, -(-(size - overlap) // step))
    return per_side * per_side


if __name__ == "__main__":
    sys.exit(main())
