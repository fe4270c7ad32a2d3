"""tau-norm sweep (Kang et al., ICLR 2020) for a trained detector: tau-normalise its classifier, score each tau.

    .venv/bin/python scripts/tau_norm_sweep.py configs/tct/cascade_rcnn_r18_ce.py models/cascade_ce \\
        --data-root data/tct --taus 0,0.25,0.5,0.75,1
    .venv/bin/python scripts/tau_norm_sweep.py configs/tct/retinanet_r18_ce.py run/model.safetensors \\
        --classifier bbox_head.retina_cls --split test --taus 0.5

No training: for each tau the class rows of the classifier weight become ``w_c (mean ||w||)^tau / ||w_c||^tau``
(background rows and biases untouched, cytolt.calibration.tau_norm_classifier), and the model is scored with the
config's evaluator. Choose tau on the val split (the default), then report it once on test. The table (and a
JSON file with every metric, --out) is printed; tau = 0 is the model as trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path, help="the training config (model, datasets, evaluator)")
    p.add_argument(
        "weights", type=Path, help="a model folder (model.safetensors), .safetensors or weights-only .pth"
    )
    p.add_argument(
        "--taus", default="0,0.25,0.5,0.75,1", help="comma list of tau values >= 0 (default %(default)s)"
    )
    p.add_argument(
        "--classifier",
        default="roi_head.bbox_head*fc_cls",
        help="fnmatch pattern of the classifier modules (default: every two-stage box classifier, %(default)s; "
        "RetinaNet: bbox_head.retina_cls)",
    )
    p.add_argument(
        "--split", choices=("val", "test"), default="val", help="split to score (default %(default)s)"
    )
    p.add_argument(
        "--data-root", type=Path, default=None, help="dataset folder, as `cytolt train --data-root`"
    )
    p.add_argument("--metric", default="AP", help="metric that picks the best tau (default %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="write every row's metrics to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        taus = [float(t) for t in args.taus.split(",") if t.strip()]
    except ValueError:
        print(f"--taus must be a comma list of numbers; got {args.taus!r}", file=sys.stderr)
        return 2
    if not taus or any(t < 0 for t in taus):
        print(f"--taus must list values >= 0; got {args.taus!r}", file=sys.stderr)
        return 2
    for path in (args.config, args.weights):
        if not path.exists():
            print(f"not found: {path}", file=sys.stderr)
            return 2
    from cytolt.mm.tau_norm import tau_norm_sweep

    rows = tau_norm_sweep(
        args.config,
        args.weights,
        taus,
        classifier=args.classifier,
        split=args.split,
        data_root=args.data_root,
        key=args.metric,
    )
    keys = [k for k in ("lt/AP", "lt/AP50", "lt/APr", "lt/APc", "lt/APf") if k in rows[0]] or [
        k for k in rows[0] if k not in ("tau", "best")
    ][:5]
    print(f"tau-norm sweep of {args.weights} on {args.split} ({args.config.name})")
    print("| tau | " + " | ".join(keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for row in rows:
        mark = " (best)" if row["best"] else ""
        print(f"| {row['tau']:g}{mark} | " + " | ".join(f"{row[k]:.4f}" for k in keys) + " |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
