"""Z-stack crops vs one plane, cross-entropy vs multi-expert calibration, on synthetic long-tailed cells.

    python scripts/zstack_study.py [--seeds 0 1 2] [--epochs 30] [--out docs/bench/zstack_study.json]
    python scripts/zstack_study.py --ablation [--out docs/bench/zstack_ablation.json]

Train: ``make_zstack_crop_set(head=80, imbalance=20, planes=5, size=48, mpp=0.5, seed=0)`` (11 classes, 80 down
to 4 crops); test: 15 crops per class (``seed=1000``). Arms: the 5-plane stacks (mean pooling) or their middle
plane alone (T = 1, in focus on the nucleus), each with ``ce`` and ``multi_expert``, every arm with each training
seed (initialisation, order, augmentation). A narrow CellClassifier (width 8), AdamW, ``fit_frames``'s recipe.
``--ablation`` runs instead the method's parts alone on the middle plane: one expert without calibration (=
logit adjustment), three experts without calibration, one expert with calibration. Reported per run: balanced accuracy and the many / medium / few-shot means (many > 40 training crops, few < 10)
with 95 % bootstrap intervals over the test crops (1,000 resamples); and per seed the paired differences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from cytolt.classify.frames import fit_frames, predict_frames
from cytolt.classify.metrics import bootstrap_report, classification_report
from cytolt.synth.zstack import make_zstack_crop_set

ROOT = Path(__file__).resolve().parents[1]
DATA = {"planes": 5, "size": 48, "mpp": 0.5}
TRAIN = {"head": 80, "imbalance": 20, "seed": 0}
TEST_PER_CLASS, TEST_SEED = 15, 1000
MANY, FEW = 40, 10
# (view, name, method, options)
ARMS = (
    ("T5", "ce", "ce", None),
    ("T5", "multi_expert", "multi_expert", None),
    ("T1", "ce", "ce", None),
    ("T1", "multi_expert", "multi_expert", None),
)
ABLATION = (
    ("T1", "logit_adjust", "multi_expert", {"experts": 1, "replace_prob": 0.0}),
    ("T1", "experts_only", "multi_expert", {"replace_prob": 0.0}),
    ("T1", "calibration_only", "multi_expert", {"experts": 1}),
)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument(
        "--ablation", action="store_true", help="the method's parts alone, on the middle plane"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    arms = ABLATION if args.ablation else ARMS
    name = "zstack_ablation.json" if args.ablation else "zstack_study.json"
    args.out = args.out or ROOT / "docs" / "bench" / name
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    t0 = time.perf_counter()
    train, y_train, names = make_zstack_crop_set(**TRAIN, **DATA)
    test, y_test, _ = make_zstack_crop_set(per_class=[TEST_PER_CLASS] * len(names), seed=TEST_SEED, **DATA)
    counts = np.bincount(y_train, minlength=len(names))
    data_seconds = time.perf_counter() - t0
    print(
        f"data: {len(y_train)} train / {len(y_test)} test stacks in {data_seconds:.1f} s; counts {counts.tolist()}"
    )
    middle = DATA["planes"] // 2
    views = {"T5": (train, test), "T1": (train[:, middle : middle + 1], test[:, middle : middle + 1])}

    runs = []
    for seed in args.seeds:
        for view, arm, method, options in arms:
            tr, te = views[view]
            fit = fit_frames(
                tr,
                y_train,
                len(names),
                method=method,
                options=options,
                epochs=args.epochs,
                width=args.width,
                seed=seed,
            )
            logits = predict_frames(fit.model, te)
            report = classification_report(
                logits, y_test, counts, many=MANY, few=FEW, class_names=names, logits=True
            )
            intervals = bootstrap_report(logits, y_test, counts, many=MANY, few=FEW, seed=seed, logits=True)
            run = {
                "view": view,
                "arm": arm,
                "method": method,
                "options": options,
                "seed": seed,
                "train_seconds": round(fit.seconds, 1),
                "final_loss": fit.history[-1]["loss"],
                "accuracy": report["accuracy"],
                "balanced_accuracy": report["balanced_accuracy"],
                "many_shot": report["many_shot"],
                "medium_shot": report["medium_shot"],
                "few_shot": report["few_shot"],
                "ece": report["ece"],
                "per_class_recall": report["per_class_recall"],
                "intervals": intervals,
            }
            runs.append(run)
            ci = intervals["balanced_accuracy"]
            print(
                f"seed {seed} {view} {arm:16s} bal {run['balanced_accuracy']:.3f} "
                f"[{ci['low']:.3f}, {ci['high']:.3f}] many {run['many_shot']:.3f} medium {run['medium_shot']:.3f} "
                f"few {run['few_shot']:.3f}  ({fit.seconds:.0f} s)",
                flush=True,
            )

    def values(view: str, arm: str, key: str = "balanced_accuracy") -> list[float]:
        return [r[key] for r in runs if r["view"] == view and r["arm"] == arm]

    summary = {}
    for view, arm, _, _ in arms:
        summary[f"{view}/{arm}"] = {
            key: {"mean": float(np.mean(values(view, arm, key))), "per_seed": values(view, arm, key)}
            for key in ("balanced_accuracy", "many_shot", "medium_shot", "few_shot", "ece")
        }
    pairs = (
        [(("T1", a), ("T1", "logit_adjust")) for a in ("experts_only", "calibration_only")]
        if args.ablation
        else [
            (("T5", "multi_expert"), ("T5", "ce")),
            (("T1", "multi_expert"), ("T1", "ce")),
            (("T5", "ce"), ("T1", "ce")),
            (("T5", "multi_expert"), ("T1", "multi_expert")),
        ]
    )
    paired = {
        f"{v1}/{a1} - {v2}/{a2}": np.subtract(values(v1, a1), values(v2, a2)).tolist()
        for (v1, a1), (v2, a2) in pairs
    }
    out = {
        "what": __doc__.splitlines()[0],
        "data": {**DATA, "train": TRAIN, "test_per_class": TEST_PER_CLASS, "test_seed": TEST_SEED},
        "train_counts": dict(zip(names, counts.tolist(), strict=True)),
        "groups": {"many": f"> {MANY}", "few": f"< {FEW}"},
        "epochs": args.epochs,
        "width": args.width,
        "seeds": args.seeds,
        "summary": summary,
        "paired_balanced_accuracy": paired,
        "runs": runs,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "commit": _git_commit(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
