"""Tile triage against the detector: seconds per tile of each on the same tiles, in the same run (issue 21).

The triage classifier (cytolt.classify.triage.TriageModel: the 256-px tile downsampled to 64 px, narrow ResNet-18,
11 sigmoids) runs before the detector and lets a screen skip the tiles it calls free of abnormal cells. Whether
that pays depends on the ratio measured here: a screen that skips a fraction ``s`` of the tiles costs
``t_triage + (1 - s) t_detector`` per tile instead of ``t_detector``, so it is faster when ``s > t_triage /
t_detector`` (the break-even skip fraction printed last). The skip fractions reached at a given abnormal-tile recall
are measured by scripts/triage_study.py (docs/results/triage.md); the weights do not change the cost, so an
untrained TriageModel of the same size is timed.

Rounds interleave the two (triage detector detector triage ...) after an untimed warm-up, on the same synthetic
256-px tiles (cytolt.synth.render_patch), batches of 8 for the detector as screening feeds it; one torch thread by
default. Writes docs/bench/triage.json.

Run: .venv/bin/python bench/bench_triage.py --model MODEL_DIR [--tiles 64] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "bench" / "triage.json"


def tiles(n: int, size: int = 256, mpp: float = 0.5) -> np.ndarray:
    from cytolt.synth import CLASSES, render_patch

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        labels = [CLASSES[j] for j in rng.integers(0, len(CLASSES), size=3)]
        out.append(render_patch(labels, size=size, mpp=mpp, seed=(0, i))[0])
    return np.stack(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "demo_out" / "model", help="detector model folder")
    p.add_argument("--tiles", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if not (args.model / "model.json").is_file():
        print(f"{args.model}: no model folder (make demo writes demo_out/model)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from cytolt.classify.triage import TriageModel
    from cytolt.detect import load

    detector = load(args.model, "cpu")
    triage = TriageModel(list(detector.info.classes)).eval()
    data = tiles(args.tiles)
    batch = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()

    def run_detector() -> None:
        for i in range(0, len(batch), 8):
            detector.predict(batch[i : i + 8])

    def run_triage() -> None:
        triage.predict(data)

    runs = {"triage": run_triage, "detector": run_detector}
    for fn in runs.values():  # warm-up, untimed
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        order = ("triage", "detector") if r % 2 == 0 else ("detector", "triage")
        for name in order:
            t0 = time.perf_counter()
            runs[name]()
            times[name].append((time.perf_counter() - t0) / len(data))
    per_tile = {k: statistics.median(v) for k, v in times.items()}
    ratio = per_tile["triage"] / per_tile["detector"]
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "torch": torch.__version__,
        "threads": args.threads,
        "tiles": len(data),
        "tile_px": int(data.shape[1]),
        "rounds": args.rounds,
        "model": str(args.model),
        "seconds_per_tile": per_tile,
        "rounds_seconds_per_tile": times,
        "triage_over_detector": ratio,
        "break_even_skip_fraction": ratio,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"per 256-px tile: triage {per_tile['triage'] * 1e3:.1f} ms, detector {per_tile['detector'] * 1e3:.1f} ms "
        f"(median of {args.rounds} interleaved rounds, {args.threads} thread(s))"
    )
    print(
        f"triage / detector = {ratio:.3f}: skipping tiles pays once more than {ratio:.1%} of them are skipped"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
