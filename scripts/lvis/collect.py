"""Collect the LVIS v1 reproduction results into docs/lvis.md: run records and scores from the run folders, the
published numbers beside them with their sources.

Subcommands:
    record WORK --method M --config RUN_CONFIG --gpus N     (train.sh) write WORK/run.json
    table [--work-dirs work_dirs/lvis] [--doc docs/lvis.md]   rewrite the results table between the markers

Run folder layout (train.sh / evaluate.sh)::

    WORK_DIRS/METHOD/run.json                 commit, config hash, GPUs, date of the training run
    WORK_DIRS/METHOD/backbone_weights.json    the verified ImageNet weights (cytolt.mm.lvis_weights)
    WORK_DIRS/METHOD/eval_<ckpt>/scores.json  lvis_tools.py score: {iou_type: {standard: {...}, fixed: {...}}}

NorCal trains nothing: its scores live in WORK_DIRS/norcal/eval_*/ and its run record is the rfs run's. A row
takes the newest ``eval_*/scores.json`` of its folder. Values in scores.json are fractions; the table shows
percent with one decimal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- collect.py: results table (generated; edit scripts/lvis/collect.py) -->"
END = "<!-- collect.py: end -->"
NOT_RUN = "not run"


@dataclass(frozen=True)
class Row:
    """One results row: METHOD (train.sh), the checkpoint epoch it is scored at, published numbers and source."""

    method: str
    epochs: int
    box: str = "—"
    mask: str = "—"
    source: str = "—"
    run_of: str | None = None  # the method whose training run this row evaluates (NorCal: rfs)
    box_only: bool = False


MMDET_LVIS = "mmdet 3.3 `lvis/metafile.yml` (mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1)"
MMDET_SEESAW = "mmdet 3.3 `seesaw_loss/metafile.yml`, R50 normed-mask sample1e-3 2x row"
EQLV2_README = "authors' README, github.com/tztztztztz/eqlv2 (Mask R-CNN R50-FPN 1x, LVIS v1)"

ROWS: tuple[Row, ...] = (
    Row("random", 12, mask="16.1 (0.0)", source=EQLV2_README + ", Baseline row"),
    Row("rfs_mmdet", 12, box="22.5", mask="21.7", source=MMDET_LVIS + "; this row is mmdet's recipe"),
    Row("rfs", 12, source="cytolt's stochastic-rounding RFS; mmdet's 22.5 / 21.7 belong to `rfs_mmdet`"),
    Row("eql", 12, mask="18.6 (2.1)", source=EQLV2_README + ", EQL row"),
    Row(
        "eqlv2",
        12,
        box="24.2",
        mask="23.7 (14.9)",
        source=EQLV2_README + ": EQLv2 row (mask), the README's example training log (box 0.242)",
    ),
    Row("eqlv2_c", 12, source="no published number: cytolt's C-output variant (no objectness output)"),
    Row("seesaw_mmdet", 24, box="27.6", mask="26.8", source=MMDET_SEESAW + "; this row is mmdet's recipe"),
    Row("seesaw", 24, source="cytolt's Seesaw and RFS sampler; mmdet's 27.6 / 26.8 belong to `seesaw_mmdet`"),
    Row("federated", 12, source="no Mask R-CNN R50 1x number published (Zhou et al. report CenterNet2)"),
    Row("cdb", 12, source="not published for LVIS v1 Mask R-CNN"),
    Row("copypaste", 12, source="not published for this recipe (the paper's LVIS runs use other backbones)"),
    Row(
        "norcal",
        12,
        source="tune gamma first (norcal_sweep.py); the paper's R50 numbers use other bases",
        run_of="rfs",
    ),
    Row("atss", 24, mask="n/a", source="—", box_only=True),
    Row(
        "efl",
        24,
        box="27.5 (APr 20.2)",
        mask="n/a",
        source="Li et al. CVPR 2022 (their one-stage R50, 24 epochs, RFS), via METHODS.md",
        box_only=True,
    ),
    Row("gradlibra", 24, mask="n/a", source="no LVIS result published", box_only=True),
    Row(
        "gol",
        24,
        box="27.5",
        mask="27.7 (21.4)",
        source="authors' GOL_r50_v1 (github.com/kostas1515/GOL README), via METHODS.md; it adds DropLoss",
    ),
    Row("iif", 24, mask="26.2", source="arXiv 2209.04861 abstract; not this exact recipe"),
    Row("pcb", 24, box="28.3", mask="26.5 (18.5)", source="authors' README (github.com/megvii-research/PCB)"),
    Row("tde", 12, source="no Mask R-CNN R50 number found (the authors' LVIS v1 model is HTC R101)"),
    Row("crt", 12, source="Kang et al. report classification only"),
    Row("cascade", 12),
    Row("cascade_rfs", 12),
    Row("cascade_eql", 12),
    Row("cascade_eqlv2", 12),
    Row("cascade_federated", 12),
    Row("cascade_seesaw", 24, source="mmdet's model zoo has the R101 version only"),
)


# ---------------------------------------------------------------------------------------------- run record


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def config_hash(path: str | Path) -> str:
    """SHA-256 of the run config file (the flat config train.sh wrote), hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_run_record(work: str | Path, *, method: str, config: str | Path, gpus: int) -> Path:
    """``WORK/run.json``: method, config file and its hash, git commit (``+dirty`` with uncommitted changes to
    tracked files), GPU count and the UTC date."""
    commit = _git("rev-parse", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    record = {
        "method": method,
        "config": str(config),
        "config_sha256": config_hash(config),
        "commit": commit,
        "gpus": int(gpus),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = Path(work) / "run.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return out


# ---------------------------------------------------------------------------------------------- table


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def latest_scores(folder: Path) -> tuple[Path, dict] | None:
    """The newest ``eval_*/scores.json`` under a method's folder, or None."""
    found = sorted(folder.glob("eval_*/scores.json"), key=lambda p: p.stat().st_mtime)
    return (found[-1], _read_json(found[-1])) if found else None


def _pct(metrics: Mapping[str, float] | None, key: str) -> str:
    if not metrics or key not in metrics or metrics[key] < 0:
        return "—"
    return f"{100 * metrics[key]:.1f}"


def _cells(row: Row, work_dirs: Path) -> list[str]:
    """The cytolt cells of a row: box AP, mask AP (APr), fixed AP (box / mask), run."""
    scored = latest_scores(work_dirs / row.method)
    if scored is None:
        return [NOT_RUN] * 4
    path, scores = scored
    for iou_type, protocols in scores.items():
        if not {"standard", "fixed"} <= set(protocols):
            raise ValueError(f"{path}: {iou_type} lacks 'standard' or 'fixed' scores")
    box = scores.get("bbox", {})
    mask = scores.get("segm", {})
    box_ap = _pct(box.get("standard"), "AP")
    mask_ap = (
        "n/a" if row.box_only else f"{_pct(mask.get('standard'), 'AP')} ({_pct(mask.get('standard'), 'APr')})"
    )
    fixed = " / ".join(_pct(s.get("fixed"), "AP") for s in ((box,) if row.box_only else (box, mask)))
    record_path = work_dirs / (row.run_of or row.method) / "run.json"
    if record_path.is_file():
        rec = _read_json(record_path)
        run = (
            f"`{str(rec.get('commit', '?'))[:10]}` cfg `{str(rec.get('config_sha256', '?'))[:12]}`, "
            f"{rec.get('gpus', '?')} GPU, {str(rec.get('date', '?'))[:10]}"
        )
    else:
        run = f"no run.json in {record_path.parent}"
    return [box_ap, mask_ap, fixed, run]


def render_table(work_dirs: str | Path) -> str:
    """The markdown results table (between and including the markers)."""
    work_dirs = Path(work_dirs)
    head = (
        "| METHOD | published box AP | published mask AP (APr) | source | cytolt box AP | cytolt mask AP (APr) "
        "| cytolt fixed AP (box / mask) | cytolt run (commit, config hash, GPUs, date) |"
    )
    lines = [BEGIN, head, "| " + " | ".join(["---"] * 8) + " |"]
    for row in ROWS:
        cells = [f"`{row.method}`", row.box, row.mask, row.source, *_cells(row, work_dirs)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines)


def update_doc(doc: str | Path, work_dirs: str | Path) -> str:
    """Replace the table between the markers in ``doc``; the new text (written to ``doc``)."""
    doc = Path(doc)
    text = doc.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{doc}: expected one pair of markers:\n{BEGIN}\n{END}")
    new = text[: text.index(BEGIN)] + render_table(work_dirs) + text[text.index(END) + len(END) :]
    doc.write_text(new)
    return new


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="collect.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("record", help="write WORK/run.json for a training run (train.sh calls it)")
    p.add_argument("work")
    p.add_argument("--method", required=True)
    p.add_argument("--config", required=True, help="the run config train.sh wrote")
    p.add_argument("--gpus", type=int, required=True)
    p = sub.add_parser("table", help="rewrite docs/lvis.md's results table from the run folders")
    p.add_argument("--work-dirs", default="work_dirs/lvis")
    p.add_argument("--doc", default=str(ROOT / "docs" / "lvis.md"))
    p.add_argument("--print", action="store_true", help="print the table instead of writing the doc")
    args = parser.parse_args(argv)
    try:
        if args.command == "record":
            print(
                f"run record: {write_run_record(args.work, method=args.method, config=args.config, gpus=args.gpus)}"
            )
        elif args.print:
            print(render_table(args.work_dirs))
        else:
            update_doc(args.doc, args.work_dirs)
            print(f"{args.doc}: results table rewritten from {args.work_dirs}")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
