"""Tune NorCal's gamma on LVIS v1 val for one checkpoint and write the choice next to the run.

    norcal_sweep.py sweep CHECKPOINT [--gammas 0,0.2,0.4,0.6,0.8,1.0] [--metric segm]
    norcal_sweep.py chosen CHECKPOINT        print the chosen gamma (evaluate.sh norcal reads it), or nothing

NorCal (Pan et al., NeurIPS 2021) has one hyper-parameter, gamma in ``N_c ** gamma``; the authors tune it on
held-out data. ``sweep`` runs ``scripts/lvis/evaluate.sh norcal CHECKPOINT`` once per gamma (each a full pass
over val: NorCal rescales the scores before NMS, so dumped detections cannot be recalibrated afterwards), reads
each ``scores.json`` and keeps the gamma with the highest standard AP of ``--metric`` (ties: the smaller gamma).
The choice goes to ``<checkpoint folder>/norcal_gamma.json`` with the whole sweep. Choosing on val and reporting
on val makes the reported number optimistic by the selection; docs/lvis.md says so beside the row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHOICE_NAME = "norcal_gamma.json"
DEFAULT_GAMMAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def parse_gammas(text: str) -> list[float]:
    """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]``; each gamma >= 0, no repeats."""
    try:
        gammas = [float(g) for g in text.split(",") if g.strip()]
    except ValueError as err:
        raise ValueError(f"--gammas must be comma-separated numbers; got {text!r}") from err
    if not gammas or any(g < 0 for g in gammas) or len(set(gammas)) != len(gammas):
        raise ValueError(f"--gammas must be distinct numbers >= 0; got {text!r}")
    return gammas


def choose_gamma(aps: Mapping[float, float]) -> float:
    """The gamma with the highest AP; the smallest of those tied (less calibration when it buys nothing)."""
    if not aps:
        raise ValueError("no gamma was evaluated")
    best = max(aps.values())
    return min(g for g, ap in aps.items() if ap == best)


def sweep(
    gammas: Sequence[float], evaluate: Callable[[float], Mapping], *, metric: str = "segm"
) -> tuple[float, dict[float, float]]:
    """Evaluate every gamma (``evaluate(gamma)`` returns a scores.json dict); (chosen gamma, {gamma: AP})."""
    aps: dict[float, float] = {}
    for i, gamma in enumerate(gammas, 1):
        scores = evaluate(gamma)
        if metric not in scores:
            raise ValueError(f"gamma {gamma}: no {metric!r} scores (have {sorted(scores)})")
        aps[gamma] = float(scores[metric]["standard"]["AP"])
        print(f"[{i}/{len(gammas)}] gamma {gamma:g}: {metric} AP {100 * aps[gamma]:.2f}", flush=True)
    return choose_gamma(aps), aps


def write_choice(checkpoint: str | Path, gamma: float, aps: Mapping[float, float], metric: str) -> Path:
    """``<checkpoint folder>/norcal_gamma.json``: the chosen gamma, the metric, the sweep, where and when."""
    out = Path(checkpoint).parent / CHOICE_NAME
    record = {
        "gamma": gamma,
        "metric": f"{metric} standard AP",
        "split": "LVIS v1 val",
        "sweep": {f"{g:g}": ap for g, ap in aps.items()},
        "checkpoint": str(checkpoint),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    return out


def chosen_gamma(checkpoint: str | Path) -> float | None:
    """The gamma ``sweep`` wrote for this checkpoint's run, or None."""
    path = Path(checkpoint).parent / CHOICE_NAME
    if not path.is_file():
        return None
    try:
        return float(json.loads(path.read_text())["gamma"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: no readable 'gamma' ({err})") from err


def _evaluate_sh(checkpoint: Path, sweep_dir: Path) -> Callable[[float], Mapping]:
    def run(gamma: float) -> Mapping:
        out = sweep_dir / f"gamma_{gamma:g}"
        env = dict(os.environ, OUT=str(out), NORCAL_GAMMA=f"{gamma:g}")
        subprocess.run(
            ["bash", str(ROOT / "scripts/lvis/evaluate.sh"), "norcal", str(checkpoint)], env=env, check=True
        )
        return json.loads((out / "scores.json").read_text())

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="norcal_sweep.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="evaluate every gamma on val, write the best next to the checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--gammas", default=",".join(f"{g:g}" for g in DEFAULT_GAMMAS))
    p.add_argument("--metric", choices=("segm", "bbox"), default="segm")
    p = sub.add_parser("chosen", help="print the gamma chosen for this checkpoint's run (nothing if none)")
    p.add_argument("checkpoint")
    args = parser.parse_args(argv)
    checkpoint = Path(args.checkpoint)
    try:
        if args.command == "chosen":
            gamma = chosen_gamma(checkpoint)
            if gamma is not None:
                print(f"{gamma:g}")
            return 0
        if not checkpoint.is_file():
            raise ValueError(f"{checkpoint}: checkpoint not found")
        gammas = parse_gammas(args.gammas)
        gamma, aps = sweep(
            gammas, _evaluate_sh(checkpoint, checkpoint.parent / "norcal_sweep"), metric=args.metric
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"chosen gamma {gamma:g} ({args.metric} AP {100 * aps[gamma]:.2f}): {write_choice(checkpoint, gamma, aps, args.metric)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
