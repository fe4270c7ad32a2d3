"""The long-tail grid on synthetic TCT (issue 18): detectors x methods x seeds and the Grad-Libra ablation, resumable.

    nice -n 10 .venv/bin/python scripts/tct_grid.py run --commit     # every missing run, in order, one at a time
    .venv/bin/python scripts/tct_grid.py list                        # what is done, stale or missing
    .venv/bin/python scripts/tct_grid.py summarise                   # tables and plot from the result files
    .venv/bin/python scripts/tct_grid.py run --only retinanet_focal,fcos_ --max-runs 1

Every run trains a narrow R18 detector for 500 iterations (batch 4) on the 600-patch synthetic
set (train/val as in scripts/tct_benchmark.py), one torch thread, and scores it on a separate large test split (1,000 patches, at
least 50 cells of every class, `make_patch_dataset(large_test=(1000, 50))`). A finished run writes
docs/results/runs/<detector>_<method>_s<seed>.json (config hash, seed, commit, iterations, wall time, metrics
with 95% bootstrap intervals over 1,000 image resamples) and .npz (the metrics of each resample, seed 0, so that
any two runs pair up on the same resampled image sets later, and the compact per-image match table). A run whose
result file exists with the same config hash is skipped; `summarise` regenerates docs/results/tct.{md,json,png}
and the ablation table in docs/losses/gradient_balanced.md from the result files alone.

Each run executes in its own process (`one`), so code committed between runs is picked up and memory is freed.
To add a method: one `Method(...)` entry in METHODS (or ABLATION) naming its config suffix and options.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import _resumable  # noqa: E402  (scripts/_resumable.py: the shared command line)

DATA = Path("work_dirs/tct_grid/data")  # relative to ROOT: the config hash must not depend on the checkout
WORK = Path("work_dirs/tct_grid")
RUNS = Path("docs/results/runs")
OUT = Path("docs/results")
ABLATION_DOC = Path("docs/losses/gradient_balanced.md")
TEST_ANN = "annotations_test_large.json"
DATA_SPEC = dict(images=600, size=256, imbalance=50, seed=0, split=(0.7, 0.15, 0.15), large_test=(1000, 50))
ITERS = 500
THREADS = 1  # OMP_NUM_THREADS=1: on 2 shared cores, two threads per run wait on each other (measured 77 s/it)
SEEDS = (0, 1, 2)
N_RESAMPLES = 1000
RESAMPLE_SEED = 0
# RetinaNet first (its row, the other methods' rows, then the ablation), then the four detectors of the Grad-Libra paper.
DETECTORS = {
    "retinanet": "RetinaNet",
    "reppoints": "RepPoints",
    "fcos": "FCOS",
    "atss": "ATSS",
    "yolof": "YOLOF",
}
GAIN_KEYS = ("AP", "APr", "APc", "APf")
READING = "## Reading"
QUIET_MINUTES = 9  # a run's wall time with one thread on a quiet 2-core machine (estimate, see the page)
PAPER_GAIN = 7.8  # Grad-Libra over cross-entropy, mAP points (Liu et al., MICCAI 2022, abstract)


@dataclass(frozen=True)
class Method:
    """One row: ``configs/tct/<detector>_r18_<config>.py`` with ``options`` (dotted cfg keys) on top."""

    name: str
    label: str
    config: str
    options: dict[str, Any] = field(default_factory=dict)
    detectors: tuple[str, ...] | None = None  # None: every detector


METHODS = (
    Method("ce", "cross-entropy (softmax)", "ce", detectors=("retinanet",)),
    Method("focal", "sigmoid focal", "focal"),
    Method("gradlibra", "Grad-Libra", "gradlibra"),
    Method("cdb", "CDB-W + CDB-S", "cdb"),
    Method("gradlibra_copypaste", "Grad-Libra + copy-paste", "gradlibra_copypaste"),
)
# Rows of the other detection methods (issue 19), RetinaNet only; run right after RetinaNet's main row.
EXTRA = (
    Method("gol", "GOL (Gumbel BCE)", "gol", detectors=("retinanet",)),
    Method("iif", "IIF (softmax CE, raw)", "iif", detectors=("retinanet",)),
    Method("pcb", "PCB (softmax CE + fight-back KL)", "pcb", detectors=("retinanet",)),
)
_LOSS = "model.bbox_head.loss_cls."
# Grad-Libra ablation on RetinaNet; the default (beta 1, focal base, loss-weighted mean, momentum 0.1) is the
# `gradlibra` row itself.
ABLATION = (
    Method("gl_beta0", "beta 0", "gradlibra", {_LOSS + "beta": 0.0}, ("retinanet",)),
    Method("gl_beta0.5", "beta 0.5", "gradlibra", {_LOSS + "beta": 0.5}, ("retinanet",)),
    Method("gl_beta2", "beta 2", "gradlibra", {_LOSS + "beta": 2.0}, ("retinanet",)),
    Method(
        "gl_bce",
        "plain BCE base (the spec)",
        "gradlibra",
        {_LOSS + "focal_gamma": 0.0, _LOSS + "focal_alpha": None},
        ("retinanet",),
    ),
    Method(
        "gl_plainmean", "plain hardness mean", "gradlibra", {_LOSS + "hardness_mean": "plain"}, ("retinanet",)
    ),
    Method("gl_m0.01", "momentum 0.01", "gradlibra", {_LOSS + "momentum": 0.01}, ("retinanet",)),
    Method("gl_m0.5", "momentum 0.5", "gradlibra", {_LOSS + "momentum": 0.5}, ("retinanet",)),
)
ALL_METHODS = {m.name: m for m in (*METHODS, *EXTRA, *ABLATION)}


def baseline_of(detector: str) -> str:
    """Cross-entropy where cytolt has a softmax config for the head (RetinaNet), else focal (stated in the docs)."""
    return "ce" if (ROOT / "configs" / "tct" / f"{detector}_r18_ce.py").is_file() else "focal"


@dataclass(frozen=True)
class Run:
    detector: str
    method: Method
    seed: int

    @property
    def name(self) -> str:
        return f"{self.detector}_{self.method.name}_s{self.seed}"

    @property
    def config(self) -> Path:
        return Path("configs/tct") / f"{self.detector}_r18_{self.method.config}.py"

    @property
    def options(self) -> dict[str, Any]:
        return {"randomness.seed": self.seed, "train_cfg.max_iters": ITERS, **self.method.options}


def _row_runs(detector: str, methods: Sequence[Method]) -> list[Run]:
    usable = [m for m in methods if m.detectors is None or detector in m.detectors]
    return [Run(detector, m, s) for s in SEEDS for m in usable]  # seeds outermost: a partial row compares


def plan() -> list[Run]:
    """Every run of the grid in the order they are made."""
    # The RetinaNet rows of the other methods (issue 19) come right after its main row: 9 runs, not 78 later.
    runs = _row_runs("retinanet", METHODS) + _row_runs("retinanet", EXTRA) + _row_runs("retinanet", ABLATION)
    for detector in DETECTORS:
        if detector != "retinanet":
            runs += _row_runs(detector, METHODS)
    return runs


def config_hash(run: Run) -> str:
    """sha256 (16 hex) of the resolved config (bases merged, options applied) and the data, test and budget."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(ROOT / run.config), import_custom_modules=False)
    cfg.merge_from_dict(run.options)
    payload = {
        "config": cfg.to_dict(),
        "data": DATA_SPEC,
        "test": TEST_ANN,
        "iters": ITERS,
        "threads": THREADS,
        "resamples": [N_RESAMPLES, RESAMPLE_SEED],
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def result_path(run: Run) -> Path:
    return RUNS / f"{run.name}.json"


def status(run: Run, cache: dict[Path, str] | None = None) -> str:
    """'done', 'stale' (a result of another config hash) or 'missing'."""
    path = result_path(run)
    if not path.is_file():
        return "missing"
    return "done" if json.loads(path.read_text())["config_hash"] == config_hash(run) else "stale"


# ---------------------------------------------------------------------------------------------- one run


def ensure_data() -> Path:
    from cytolt.synth import make_patch_dataset

    if not (DATA / TEST_ANN).is_file():
        print(f"generating the grid data in {DATA} (600 patches + the 1,000-patch test split)", flush=True)
        make_patch_dataset(DATA, progress=True, **DATA_SPEC)
    return DATA


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def _test_split_summary(gt_file: Path) -> dict[str, Any]:
    gt = json.loads(gt_file.read_text())
    names = {c["id"]: c["name"] for c in gt["categories"]}
    counts = dict.fromkeys(names.values(), 0)
    for ann in gt["annotations"]:
        counts[names[ann["category_id"]]] += 1
    return {
        "file": TEST_ANN,
        "images": len(gt["images"]),
        "instances": counts,
        "frequency": {c["name"]: c["frequency"] for c in gt["categories"]},
    }


def run_one(run: Run) -> Path:
    """Train, export, score on the large test split, bootstrap, and write the run's result files."""
    import numpy as np
    import torch

    from cytolt.evaluate.bootstrap import (
        match_detections,
        metric_keys,
        percentile_interval,
        resample_scores,
        score_table,
    )
    from cytolt.mm.evaluate import evaluate
    from cytolt.mm.train import export_model, train

    torch.set_num_threads(THREADS)
    data = ensure_data()
    digest = config_hash(run)
    run_dir = WORK / run.name
    started = datetime.now(UTC)
    commit = _git("rev-parse", "--short", "HEAD")
    trained = run_dir / "trained.json"  # a crash after training resumes from here, not from scratch
    if trained.is_file() and json.loads(trained.read_text())["config_hash"] == digest:
        train_s = json.loads(trained.read_text())["train_seconds"]
        model = run_dir / "model"
        print(f"{run.name}: reusing the model trained in {train_s / 60:.1f} min", flush=True)
    else:
        t0 = time.perf_counter()
        train(run.config, work_dir=run_dir, data_root=data, cfg_options=run.options, quiet=True)
        train_s = time.perf_counter() - t0
        model = export_model(run_dir, run_dir / "model")  # evaluation reads safetensors, never the pickle
        trained.write_text(json.dumps({"config_hash": digest, "train_seconds": train_s, "commit": commit}))
    detections = run_dir / "detections_test_large.json"
    t1 = time.perf_counter()
    lvis_metrics = evaluate(
        run.config,
        model / "model.safetensors",
        split="test",
        data_root=data,
        work_dir=run_dir / "test",
        cfg_options={
            **run.options,
            "test_dataloader.dataset.ann_file": TEST_ANN,
            "test_evaluator.ann_file": "data/tct/" + TEST_ANN,  # data_root replaces the prefix
            "test_evaluator.results_file": str(detections),
        },
    )
    test_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    table = match_detections(data / TEST_ANN, detections)
    point = score_table(table)
    samples = resample_scores(table, n_resamples=N_RESAMPLES, seed=RESAMPLE_SEED)
    keys = metric_keys(table)
    metrics = {k: percentile_interval(point[k], samples[:, j]).as_dict() for j, k in enumerate(keys)}
    bootstrap_s = time.perf_counter() - t2
    # The re-weighting scorer must agree with lvis-api on the whole test set (it does to 1e-12 in the tests).
    agreement = max(abs(point[k] - lvis_metrics[f"lt/{k}"]) for k in keys if f"lt/{k}" in lvis_metrics)
    RUNS.mkdir(parents=True, exist_ok=True)
    npz = RUNS / f"{run.name}.npz"
    np.savez_compressed(
        npz, resample_metrics=samples.astype(np.float32), keys=np.array(keys), **table.to_arrays()
    )
    record = {
        "run": run.name,
        "detector": run.detector,
        "method": run.method.name,
        "label": run.method.label,
        "seed": run.seed,
        "config": str(run.config),
        "options": run.method.options,
        "config_hash": digest,
        "commit": commit,
        # uncommitted changes to tracked files the run depends on (configs, losses, mm, samplers, augmentation)
        "commit_dirty_paths": _git(
            "status",
            "--porcelain",
            "-uno",
            "--",
            "configs/tct",
            "cytolt/losses",
            "cytolt/mm",
            "cytolt/samplers.py",
        ).splitlines(),
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), torch {torch.__version__}",
        "threads": THREADS,
        "iterations": ITERS,
        "wall_seconds": {
            "train": round(train_s, 1),
            "test": round(test_s, 1),
            "bootstrap": round(bootstrap_s, 1),
        },
        "data": {**DATA_SPEC, "root": str(DATA)},
        "test_split": _test_split_summary(data / TEST_ANN),
        "bootstrap": {
            "resamples": N_RESAMPLES,
            "seed": RESAMPLE_SEED,
            "unit": "test image",
            "level": 0.95,
            "interval": "bias-corrected percentile (Efron 1981)",
        },
        "lvis_api_agreement": agreement,
        "metrics": metrics,
        "resample_file": npz.name,
    }
    path = result_path(run)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{run.name}: AP {point['AP']:.3f}, APr {point['APr']:.3f}; train {train_s / 60:.1f} min -> {path}")
    return path


# ---------------------------------------------------------------------------------------------- summary


def load_results() -> dict[str, dict[str, Any]]:
    """Result records by run name, each with its per-resample metrics under ``"samples"`` (keys -> array)."""
    import numpy as np

    out = {}
    for path in sorted(RUNS.glob("*.json")):
        record = json.loads(path.read_text())
        with np.load(RUNS / record["resample_file"]) as z:
            record["samples"] = dict(zip([str(k) for k in z["keys"]], z["resample_metrics"].T, strict=True))
        out[record["run"]] = record
    return out


def _cell(iv: dict[str, float], digits: int = 3) -> str:
    if iv is None or iv["value"] != iv["value"] or iv["value"] < 0:  # NaN, or -1: no ground truth
        return "n/a"
    return f"{iv['value']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"


def seed_mean(records: Sequence[dict[str, Any]], key: str, baseline: Sequence[dict] | None = None) -> dict:
    """Mean over seeds of a metric (or of its difference to the same-seed baseline) with the bootstrap interval.

    Every run's resample r drew the same test images (same seed and image count), so averaging row r across
    seeds (and subtracting the baseline's row r) is the paired bootstrap of the seed-mean.
    """
    import numpy as np

    from cytolt.evaluate.bootstrap import percentile_interval

    values = np.array([r["metrics"][key]["value"] for r in records])
    samples = np.stack([r["samples"][key] for r in records]).astype(np.float64)
    if baseline is not None:
        values = values - np.array([b["metrics"][key]["value"] for b in baseline])
        samples = samples - np.stack([b["samples"][key] for b in baseline]).astype(np.float64)
    iv = percentile_interval(float(values.mean()), samples.mean(axis=0)).as_dict()
    iv["per_seed"] = values.tolist()
    return iv


def summarise(quiet: bool = False) -> dict[str, Any]:
    results = load_results()
    runs = plan()
    by_key = {(r["detector"], r["method"], r["seed"]): r for r in results.values()}
    summary: dict[str, Any] = {"detectors": {}, "ablation": {}, "missing": [], "extra": {}}
    for run in runs:
        if (run.detector, run.method.name, run.seed) not in by_key:
            summary["missing"].append(run.name)

    def row(detector: str, method: Method, base: str) -> dict[str, Any] | None:
        seeds = [s for s in SEEDS if (detector, method.name, s) in by_key]
        if not seeds:
            return None
        recs = [by_key[detector, method.name, s] for s in seeds]
        keys = list(recs[0]["metrics"])
        entry = {"label": method.label, "seeds": seeds, "metrics": {k: seed_mean(recs, k) for k in keys}}
        paired = [s for s in seeds if (detector, base, s) in by_key]
        if method.name != base and paired:
            mine = [by_key[detector, method.name, s] for s in paired]
            theirs = [by_key[detector, base, s] for s in paired]
            entry["gain_seeds"] = paired
            entry["gain"] = {k: seed_mean(mine, k, theirs) for k in keys}
        entry["train_minutes"] = sum(r["wall_seconds"]["train"] for r in recs) / 60
        return entry

    for detector in DETECTORS:
        base = baseline_of(detector)
        rows = {
            m.name: row(detector, m, base) for m in METHODS if m.detectors is None or detector in m.detectors
        }
        block = {"baseline": base, "rows": {k: v for k, v in rows.items() if v}}
        if base != "focal":  # the question beyond the paper's baseline: what a method adds over focal loss
            over_focal = {m.name: row(detector, m, "focal") for m in METHODS if m.name != base}
            block["over_focal"] = {k: v for k, v in over_focal.items() if v}
        summary["detectors"][detector] = block
    for m in (ALL_METHODS["gradlibra"], *ABLATION):
        entry = row("retinanet", m, "gradlibra")
        if entry:
            summary["ablation"][m.name] = entry
    for m in EXTRA:
        entry = row("retinanet", m, baseline_of("retinanet"))
        if entry:
            summary["extra"][m.name] = entry
    summary["cpu_hours"] = (
        sum(sum(r["wall_seconds"].values()) * r["threads"] for r in results.values()) / 3600
    )
    summary["runs_done"] = len(results)
    walls = [sum(r["wall_seconds"].values()) / 60 for r in results.values()]
    summary["wall_minutes_per_run"] = sum(walls) / len(walls) if walls else None
    summary["runs_planned"] = len(runs)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tct.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_markdown(summary, results)
    plot(summary, OUT / "tct.png")
    write_ablation_doc(summary)
    if not quiet:
        print(f"wrote {OUT / 'tct.md'} ({len(results)} of {len(runs)} runs)")
    return summary


def _gain_table(rows: dict[str, Any], base: str) -> list[str]:
    lines = [
        "| method | seeds | AP | gain AP | gain APr | gain APc | gain APf | per-seed gain AP |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in rows.items():
        ap = _cell(entry["metrics"]["AP"])
        if name == base:
            gains = ["(baseline)"] * 4 + [""]
        elif "gain" in entry:
            g = entry["gain"]
            gains = [_mark(g[k]) for k in GAIN_KEYS]
            gains.append(", ".join(f"{v:+.3f}" for v in g["AP"]["per_seed"]))
        else:
            gains = ["(no baseline run yet)"] * 4 + [""]
        seeds = ", ".join(map(str, entry["seeds"]))
        lines.append(f"| {entry['label']} | {seeds} | {ap} | " + " | ".join(gains) + " |")
    return lines


def _mark(iv: dict[str, float]) -> str:
    """A gain with its interval, in bold when the interval excludes 0 (a real difference)."""
    text = (
        f"{iv['value']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}]" if iv["value"] == iv["value"] else "n/a"
    )
    return f"**{text}**" if iv["low"] > 0 or iv["high"] < 0 else text


def _metric_table(rows: dict[str, Any], keys: Sequence[str]) -> list[str]:
    lines = ["| method | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for entry in rows.values():
        cells = [_cell(entry["metrics"].get(k), 2 if k.startswith("AP-") else 3) for k in keys]
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return lines


def write_markdown(summary: dict[str, Any], results: dict[str, Any]) -> None:
    any_record = next(iter(results.values()), None)
    split = any_record["test_split"] if any_record else None
    lines = [
        "# Long-tail grid on synthetic TCT (issue 18)",
        "",
        "_Generated by `scripts/tct_grid.py summarise` from the result files in `docs/results/runs/`, down to the "
        "reading, which is written by hand and kept across regenerations._",
        "",
        f"Runs done: {summary['runs_done']} of {summary['runs_planned']} planned; "
        f"{summary['cpu_hours']:.1f} CPU hours so far (wall time of training + test + bootstrap times "
        f"{THREADS} torch thread(s) per run; the 2-core machine was shared with other jobs).",
        "",
        "Budget per run: "
        f"{ITERS} iterations of batch 4 of a narrow R18 detector on 420 training patches of 256 px (CDB: about 357, "
        f"15% held out), one torch thread, then inference on the 1,000 test patches and {N_RESAMPLES} "
        "bootstrap resamples. "
        + (
            f"Measured: {summary['wall_minutes_per_run']:.0f} min of wall time per run on average here, so the "
            f"{len(summary['missing'])} missing runs need about "
            f"{summary['wall_minutes_per_run'] * len(summary['missing']) / 60:.0f} hours at this rate; "
            if summary["runs_done"]
            else ""
        )
        + f"on a quiet machine about {QUIET_MINUTES} min per run (estimate: tct_benchmark's 4.3 min of RetinaNet "
        f"training on 2 quiet cores, plus the test and bootstrap), {summary['runs_planned'] * QUIET_MINUTES / 60:.0f} "
        "CPU hours for the whole plan.",
        "",
        "Continue with one command: `nice -n 10 .venv/bin/python scripts/tct_grid.py run --commit` (skips "
        "every run whose result file exists with the same config hash; commits each result file as it finishes).",
        "",
    ]
    if split:
        inst = ", ".join(f"{k} {v}" for k, v in split["instances"].items())
        rare = [k for k, f in split["frequency"].items() if f == "r"]
        lines += [
            f"Test split: `{split['file']}`, {split['images']} patches from `make_patch_dataset(large_test=(1000, 50))`, "
            f"instances: {inst}. LVIS groups from the training counts: rare = {', '.join(rare)}; so APr is "
            "one class's AP.",
            "",
        ]
    lines += [
        "Intervals: 95% bias-corrected percentile bootstrap (Efron 1981) over "
        f"{N_RESAMPLES} resamples of the test images (with replacement, seed {RESAMPLE_SEED}; each resample scored "
        "with lvis-api's rules by `cytolt.evaluate.bootstrap`). A value averaged over seeds gets the interval of "
        "the seed-mean on the same resampled image sets; a gain is the seed-mean of (method - baseline) at equal "
        "seeds, paired on the same resampled image sets, and is **bold** only when its interval excludes 0. The "
        "intervals cover test-set sampling, not training noise: the per-seed gains beside them show that.",
        "",
        "## Gain over the baseline, per detector",
        "",
    ]
    for detector, block in summary["detectors"].items():
        base = block["baseline"]
        base_label = ALL_METHODS[base].label
        note = (
            "cross-entropy (the Grad-Libra paper's baseline)"
            if base == "ce"
            else "sigmoid focal (no softmax config for this head in cytolt: focal is the baseline)"
        )
        lines += [f"### {DETECTORS[detector]} — baseline: {note}", ""]
        if not block["rows"]:
            lines += ["_No run yet._", ""]
            continue
        lines += _gain_table(block["rows"], base) + [""]
        if len(block.get("over_focal", {})) > 1:
            lines += [f"The same runs, gains over sigmoid focal instead of {base_label}:", ""]
            lines += _gain_table(block["over_focal"], "focal") + [""]
    lines += ["## AP by frequency group (seed mean, 95% interval)", ""]
    for detector, block in summary["detectors"].items():
        if block["rows"]:
            lines += [f"### {DETECTORS[detector]}", ""]
            lines += _metric_table(block["rows"], ("AP", "AP50", "APr", "APc", "APf")) + [""]
    classes = [k for k in (any_record or {"metrics": {}})["metrics"] if k.startswith("AP-")]
    if classes:
        lines += ["## Per-class AP (seed mean, 95% interval), head to tail", ""]
        for detector, block in summary["detectors"].items():
            if block["rows"]:
                lines += [f"### {DETECTORS[detector]}", ""]
                lines += _metric_table(block["rows"], classes) + [""]
    if summary["ablation"]:
        lines += ["## Grad-Libra ablation (RetinaNet; gains over the default Grad-Libra)", ""]
        lines += _gain_table(summary["ablation"], "gradlibra") + [""]
    if summary["extra"]:
        lines += ["## Other methods (RetinaNet)", ""]
        lines += _gain_table(summary["extra"], baseline_of("retinanet")) + [""]
    lines += ["## Missing runs", ""]
    missing = summary["missing"]
    lines += [
        f"{len(missing)} runs: " + ", ".join(f"`{m}`" for m in missing) if missing else "None.",
        "",
        "![AP by group per method, with intervals](tct.png)",
        "",
    ]
    # The hand-written part (the reading, earlier runs) starts at READING and is kept as it is.
    page = OUT / "tct.md"
    old = page.read_text() if page.is_file() else ""
    if READING in old:
        lines += [READING + old.split(READING, 1)[1].rstrip(), ""]
    else:
        lines += [READING, "", "_(written by hand after the runs)_", ""]
    page.write_text("\n".join(lines))


def write_ablation_doc(summary: dict[str, Any]) -> None:
    """Replace the block between the ablation markers in docs/losses/gradient_balanced.md, if present."""
    start, end = "<!-- tct_grid ablation: start -->", "<!-- tct_grid ablation: end -->"
    if not ABLATION_DOC.is_file():
        return
    text = ABLATION_DOC.read_text()
    if start not in text or end not in text:
        return
    if summary["ablation"]:
        body = _gain_table(summary["ablation"], "gradlibra")
    else:
        body = ["_No ablation run yet._"]
    missing = [m for m in summary["missing"] if m.startswith("retinanet_gl_")]
    body += ["", f"Ablation runs still missing: {len(missing)} of {len(ABLATION) * len(SEEDS)}."]
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    ABLATION_DOC.write_text(head + start + "\n" + "\n".join(body) + "\n" + end + tail)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Per detector, each method's seed-mean AP / APr / APc / APf with its 95% bootstrap interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = [(d, b) for d, b in summary["detectors"].items() if b["rows"]]
    fig, axes = plt.subplots(1, max(1, len(blocks)), figsize=(4.5 * max(1, len(blocks)), 4), squeeze=False)
    for ax, (detector, block) in zip(axes[0], blocks, strict=False):
        rows = list(block["rows"].values())
        for i, key in enumerate(GAIN_KEYS):
            xs = [j + i * 0.18 for j in range(len(rows))]
            ivs = [r["metrics"][key] for r in rows]
            ax.errorbar(
                xs,
                [v["value"] for v in ivs],
                yerr=[[v["value"] - v["low"] for v in ivs], [v["high"] - v["value"] for v in ivs]],
                fmt="o",
                capsize=3,
                label=key,
            )
        ax.set_xticks(
            [j + 0.27 for j in range(len(rows))], [r["label"] for r in rows], rotation=30, ha="right"
        )
        ax.set_title(f"{DETECTORS[detector]} (baseline: {ALL_METHODS[block['baseline']].label})", fontsize=9)
        ax.set_ylabel("box AP, large test split (95% bootstrap)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- CLI


def select(runs: Sequence[Run], only: str | None) -> list[Run]:
    if not only:
        return list(runs)
    prefixes = tuple(k for k in only.split(",") if k)
    return [r for r in runs if r.name.startswith(prefixes)]


def _commit_for(name: str) -> tuple[list[Path], str]:
    run = {r.name: r for r in plan()}[name]
    rec = json.loads(result_path(run).read_text())
    m = rec["metrics"]
    return (
        [result_path(run), RUNS / rec["resample_file"]],
        f"tct grid: {run.name} (AP {m['AP']['value']:.3f} [{m['AP']['low']:.3f}, {m['AP']['high']:.3f}], "
        f"APr {m['APr']['value']:.3f}; {rec['wall_seconds']['train'] / 60:.0f} min training, commit "
        f"{rec['commit']})",
    )


def cmd_run(args: argparse.Namespace) -> int:
    runs = {r.name: r for r in select(plan(), args.only)}
    return _resumable.run_missing(
        args,
        list(runs),
        lambda name: status(runs[name]),
        script=__file__,
        threads=THREADS,
        summarise=summarise,
        commit_for=_commit_for,
        failed_hint=lambda name: f"; see {WORK / name}",
    )


def cmd_one(args: argparse.Namespace) -> int:
    runs = {r.name: r for r in plan()}
    if args.run not in runs:
        raise SystemExit(f"unknown run {args.run!r}; see `scripts/tct_grid.py list`")
    run_one(runs[args.run])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    runs = {r.name: r for r in select(plan(), args.only)}
    return _resumable.list_runs(list(runs), lambda name: status(runs[name]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _resumable.parser(
        __doc__,
        only_help="comma list of run-name prefixes, e.g. retinanet_focal,fcos_ (default: all)",
        run_example="retinanet_focal_s0",
        outputs="docs/results/tct.{md,json,png}",
    ).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    return _resumable.dispatch(
        args, {"run": cmd_run, "one": cmd_one, "list": cmd_list, "summarise": summarise}
    )


if __name__ == "__main__":
    raise SystemExit(main())
