"""Long-tailed cell classification benchmark (issue 20 item 4): every method of the cell classifier x 3 seeds.

    nice -n 5 .venv/bin/python scripts/classify_benchmark.py run --commit   # every missing run, in order
    .venv/bin/python scripts/classify_benchmark.py list                     # done / stale / missing
    .venv/bin/python scripts/classify_benchmark.py summarise                # table and plot from the result files
    .venv/bin/python scripts/classify_benchmark.py run --only ce,crt --max-runs 2

Data (cytolt.classify.synth_crops.make_crop_set, 64-px crops at 1 um/px, the 11 synthetic TCT classes): a
long-tailed training set (500 crops of the head class down to 5 of the tail, imbalance 100, geometric), a balanced
validation set (20 per class: tau-norm's sweep, CDB's and PCB's measurements use it only where the method says) and a
balanced test set (100 per class, as long-tail benchmarks test). Shot groups by training count: many > 100, few < 20
(OLTR's thresholds; here 4 many, 4 medium, 3 few classes).

A run trains the narrow ResNet-18 (width 16) with one method and seed, one torch thread, and scores it on the test
set: accuracy, balanced accuracy, many/medium/few-shot accuracy, ECE and NLL, with 95% bootstrap intervals over
1,000 resamples of the test crops (seed 0, so every run sees the same resampled sets and any two pair up). Stage-2
methods (cRT, tau-norm, LWS, NCM, MARC, post-hoc logit adjustment) start from the `ce` model of the same seed, the
decoupling protocol (Kang et al. 2020): it is trained first when missing. A finished run writes
docs/results/runs_classify/<method>_s<seed>.json (config hash, commit, seconds, metrics) and .npz (test
probabilities, float16); a run whose file exists with the same config hash is skipped. `summarise` regenerates
docs/results/classify.{md,json,png}: per method the mean over seeds with the interval of that mean (the seeds' runs
scored on the same resampled test sets), and the paired difference from `ce` with its interval.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import _resumable  # noqa: E402  (scripts/_resumable.py: the shared command line)

WORK = Path("work_dirs/classify_bench")
RUNS = Path("docs/results/runs_classify")
OUT = Path("docs/results")
CROPS = dict(size=64, mpp=1.0)
DATA = {
    "train": dict(imbalance=100.0, head=500, seed=0, **CROPS),
    "val": dict(per_class=20, seed=1, **CROPS),
    "test": dict(per_class=100, seed=2, **CROPS),
}
EPOCHS = {1: 12, 2: 4}  # stage-1 epochs; stage-2 epochs (classifier only; training-free methods ignore it)
TRAIN = dict(batch_size=64, lr=1e-3, width=16)
THREADS = 1
SEEDS = (0, 1, 2)
N_RESAMPLES = 1000
RESAMPLE_SEED = 0
BASELINE = "ce"
# Issue 20's methods first (the baseline first: the stage-2 methods start from it), then issue 21's.
METHODS = (
    "ce",
    "focal",
    "class_balanced",
    "sqrt",
    "rfs",
    "crt",
    "tau_norm",
    "lws",
    "ncm",
    "logit_adjust",
    "logit_adjust_posthoc",
    "iif",
    "marc",
    "tde",
    "pcb",
    "cdb",
    "grad_libra",
)
METRICS = ("accuracy", "balanced_accuracy", "many", "medium", "few")
LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "many": "many-shot",
    "medium": "medium-shot",
    "few": "few-shot",
}


def registry() -> dict[str, Any]:
    from cytolt.classify.methods import METHODS as registered

    return registered


def planned_methods() -> list[str]:
    """METHODS, then every other registered method (issue 21's as they land), in registry order."""
    names = registry()
    extra = [m for m in names if m not in METHODS]
    return [m for m in METHODS if m in names] + extra


def plan() -> list[tuple[str, int]]:
    """(method, seed) in the order runs are made: seeds outermost, so a partial table compares."""
    return [(m, s) for s in SEEDS for m in planned_methods()]


def run_name(method: str, seed: int) -> str:
    return f"{method}_s{seed}"


def stage_of(method: str) -> int:
    return int(registry()[method].stage)


def config_hash(method: str, seed: int) -> str:
    """sha256 (16 hex) of what fixes a run's result: data, budget, training settings, method and its defaults."""
    spec = registry()[method]
    payload = {
        "data": DATA,
        "epochs": EPOCHS[stage_of(method)],
        "stage1_epochs": EPOCHS[1],
        "train": TRAIN,
        "threads": THREADS,
        "method": method,
        "options": getattr(spec, "options", None),
        "seed": seed,
        "resamples": [N_RESAMPLES, RESAMPLE_SEED],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def result_path(method: str, seed: int) -> Path:
    return RUNS / f"{run_name(method, seed)}.json"


def status(method: str, seed: int) -> str:
    path = result_path(method, seed)
    if not path.is_file():
        return "missing"
    return "done" if json.loads(path.read_text())["config_hash"] == config_hash(method, seed) else "stale"


# ---------------------------------------------------------------------------------------------- one run


def crop_sets() -> dict[str, Any]:
    """The three crop sets, generated once into WORK/data and read back memory-mapped."""
    from cytolt.classify import CropSet
    from cytolt.classify.synth_crops import make_crop_set
    from cytolt.synth import CLASSES

    out = {}
    for split, spec in DATA.items():
        folder = WORK / "data" / split
        if not (folder / "crops.json").is_file():
            spec = dict(spec)
            per_class = spec.pop("per_class", None)
            if per_class is not None:
                spec["per_class"] = [per_class] * len(CLASSES)
            print(f"generating the {split} crops in {folder}", flush=True)
            make_crop_set(**spec, progress=True).write(folder)
        out[split] = CropSet.read(folder)
    return out


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def _train(method: str, seed: int, sets: dict[str, Any], init: Any = None) -> Any:
    from cytolt.classify.train import train_classifier

    return train_classifier(
        sets["train"],
        sets["val"],
        method=method,
        epochs=EPOCHS[stage_of(method)],
        seed=seed,
        progress=True,
        init=init,
        options={"stage1_epochs": EPOCHS[1]} if stage_of(method) == 2 else None,
        **TRAIN,
    )


def baseline_model(seed: int, sets: dict[str, Any]) -> Any:
    """The `ce` model of ``seed`` (the stage-2 methods' start): read from WORK/models, else trained and kept."""
    from cytolt.classify import ClassifierFolder

    folder = WORK / "models" / run_name(BASELINE, seed)
    digest = config_hash(BASELINE, seed)
    stamp = folder / "config_hash.txt"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return ClassifierFolder.read(folder).load()
    result = _train(BASELINE, seed, sets)
    save_model(folder, result, sets)
    stamp.write_text(digest + "\n")
    return result.model


def save_model(folder: Path, result: Any, sets: dict[str, Any]) -> None:
    from cytolt.classify import CONTEXT, ClassifierFolder

    train = sets["train"]
    ClassifierFolder.write(
        folder,
        result.model,
        classes=train.class_names,
        mpp=train.mpp,
        crop_size=train.size,
        context=CONTEXT if train.context is None else float(train.context),
        train_counts=[int(c) for c in train.counts()],
        method=result.method,
        head=result.head,
    )


def run_one(method: str, seed: int) -> Path:
    import numpy as np
    import torch

    from cytolt.classify import bootstrap_report, classification_report
    from cytolt.classify.methods.spec import eval_logits

    torch.set_num_threads(THREADS)
    sets = crop_sets()
    digest = config_hash(method, seed)
    started = datetime.now(UTC)
    commit = _git("rev-parse", "--short", "HEAD")
    t0 = time.perf_counter()
    init = baseline_model(seed, sets) if stage_of(method) == 2 else None
    init_s = time.perf_counter() - t0
    result = _train(method, seed, sets, init=init)
    if method == BASELINE:
        folder = WORK / "models" / run_name(BASELINE, seed)
        save_model(folder, result, sets)
        (folder / "config_hash.txt").write_text(digest + "\n")
    test = sets["test"]
    probs = torch.softmax(eval_logits(result.model, test).double(), dim=1).numpy()
    counts = [int(c) for c in sets["train"].counts()]
    report = classification_report(probs, test.labels, counts, class_names=test.class_names)
    intervals = bootstrap_report(probs, test.labels, counts, n_resamples=N_RESAMPLES, seed=RESAMPLE_SEED)
    RUNS.mkdir(parents=True, exist_ok=True)
    npz = RUNS / f"{run_name(method, seed)}.npz"
    np.savez_compressed(npz, probs=probs.astype(np.float16), labels=np.asarray(test.labels, dtype=np.int16))
    record = {
        "run": run_name(method, seed),
        "method": method,
        "stage": stage_of(method),
        "seed": seed,
        "config_hash": digest,
        "commit": commit,
        "commit_dirty_paths": _git("status", "--porcelain", "-uno", "--", "cytolt/classify").splitlines(),
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), torch {torch.__version__}",
        "threads": THREADS,
        "epochs": EPOCHS[stage_of(method)],
        "train_settings": TRAIN,
        "seconds": {"train": round(result.seconds, 1), "stage1_load_or_train": round(init_s, 1)},
        "data": DATA,
        "train_counts": dict(zip(test.class_names, counts, strict=True)),
        "head": result.head,
        "metrics": report,
        "intervals": intervals,
        "bootstrap": {"resamples": N_RESAMPLES, "seed": RESAMPLE_SEED, "unit": "test crop", "level": 0.95},
        "predictions_file": npz.name,
    }
    path = result_path(method, seed)
    path.write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(
        f"{run_name(method, seed)}: accuracy {report['accuracy']:.3f}, balanced {report['balanced_accuracy']:.3f}; "
        f"{result.seconds:.0f} s -> {path}",
        flush=True,
    )
    return path


# ---------------------------------------------------------------------------------------------- summary


def resampled_metrics(probs: Any, labels: Any, counts: Sequence[int]) -> Any:
    """(R, len(METRICS)) metrics of each bootstrap resample of the test crops (the same resamples for every run)."""
    import numpy as np

    from cytolt.classify import shot_groups
    from cytolt.evaluate.bootstrap import resample_weights

    labels = np.asarray(labels, dtype=np.int64)
    k = probs.shape[1]
    w = resample_weights(len(labels), N_RESAMPLES, RESAMPLE_SEED).astype(np.float64)  # (R, N)
    onehot = np.eye(k)[labels]  # (N, K)
    correct = (np.asarray(probs).argmax(1) == labels).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = (w @ (onehot * correct[:, None])) / (w @ onehot)  # (R, K), NaN for a class not drawn
    groups = shot_groups(counts)
    cols = [(w @ correct) / w.sum(1), np.nanmean(recall, axis=1)]
    for name in ("many", "medium", "few"):
        idx = [i for i, g in enumerate(groups) if g == name]
        cols.append(np.nanmean(recall[:, idx], axis=1) if idx else np.full(len(w), np.nan))
    return np.stack(cols, axis=1)


def point_metrics(probs: Any, labels: Any, counts: Sequence[int]) -> Any:
    import numpy as np

    from cytolt.classify import shot_groups

    labels = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(probs).argmax(1)
    recall = np.array([(pred[labels == c] == c).mean() for c in range(probs.shape[1])])
    groups = np.array(shot_groups(counts))
    shots = [recall[groups == g].mean() if (groups == g).any() else np.nan for g in ("many", "medium", "few")]
    return np.array([(pred == labels).mean(), recall.mean(), *shots])


def load_runs() -> dict[str, list[dict[str, Any]]]:
    """Result records by method (done ones only), each with its test probabilities under ``"probs"``."""
    import numpy as np

    out: dict[str, list[dict[str, Any]]] = {}
    for method, seed in plan():
        if status(method, seed) != "done":
            continue
        rec = json.loads(result_path(method, seed).read_text())
        arrays = np.load(RUNS / rec["predictions_file"])
        rec["probs"] = arrays["probs"].astype(np.float64)
        rec["labels"] = arrays["labels"].astype(np.int64)
        out.setdefault(method, []).append(rec)
    return out


def _cell(iv: dict[str, float] | None) -> str:
    if iv is None or iv.get("value") is None or iv["value"] != iv["value"]:  # None or NaN: an empty group
        return "—"
    return f"{iv['value']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]"


def summarise(quiet: bool = False) -> dict[str, Any]:
    import numpy as np

    from cytolt.evaluate.bootstrap import percentile_interval

    runs = load_runs()
    table: dict[str, Any] = {}
    samples: dict[str, dict[int, Any]] = {}
    for method, recs in runs.items():
        counts = list(recs[0]["train_counts"].values())
        per_seed = {r["seed"]: resampled_metrics(r["probs"], r["labels"], counts) for r in recs}
        points = {r["seed"]: point_metrics(r["probs"], r["labels"], counts) for r in recs}
        samples[method] = per_seed
        mean_s = np.mean(list(per_seed.values()), axis=0)
        mean_p = np.mean(list(points.values()), axis=0)
        row = {
            "seeds": sorted(per_seed),
            "stage": recs[0]["stage"],
            "train_seconds": [r["seconds"]["train"] for r in recs],
            "ece": float(np.mean([r["metrics"]["ece"] for r in recs])),
        }
        for j, key in enumerate(METRICS):
            row[key] = percentile_interval(float(mean_p[j]), mean_s[:, j]).as_dict()
        table[method] = row
    # Paired differences from the baseline over the seeds both have, on the same resampled test sets.
    if BASELINE in samples:
        for method, per_seed in samples.items():
            common = sorted(set(per_seed) & set(samples[BASELINE]))
            if method == BASELINE or not common:
                continue
            diff = np.mean([per_seed[s] - samples[BASELINE][s] for s in common], axis=0)
            p_m = np.mean(
                [
                    point_metrics(r["probs"], r["labels"], list(r["train_counts"].values()))
                    for r in runs[method]
                    if r["seed"] in common
                ],
                axis=0,
            )
            p_b = np.mean(
                [
                    point_metrics(r["probs"], r["labels"], list(r["train_counts"].values()))
                    for r in runs[BASELINE]
                    if r["seed"] in common
                ],
                axis=0,
            )
            table[method]["gain"] = {
                key: percentile_interval(float(p_m[j] - p_b[j]), diff[:, j]).as_dict()
                for j, key in enumerate(METRICS)
            }
            table[method]["gain_seeds"] = common
    counts = next((list(r[0]["train_counts"].values()) for r in runs.values()), None)
    write_docs(table, counts)
    if not quiet:
        print(
            f"summarised {sum(len(r) for r in runs.values())} runs of {len(runs)} methods -> {OUT}/classify.md"
        )
    return table


def _real(iv: dict[str, float]) -> str:
    if iv["low"] > 0:
        return "better"
    if iv["high"] < 0:
        return "worse"
    return "not separable"


def _data_line(counts: Sequence[int] | None) -> str:
    from cytolt.classify import shot_groups

    s = DATA["train"]
    head = (
        f"{max(counts)} -> {min(counts)} crops per class"
        if counts
        else f"{s['head']} crops of the head class"
    )
    groups = shot_groups(counts) if counts else []
    sizes = ", ".join(f"{g} {groups.count(g)}" for g in ("many", "medium", "few"))
    return (
        f"Data: {CROPS['size']}-px crops at {CROPS['mpp']:g} um/px of the 11 synthetic TCT classes; training set "
        f"long-tailed {head} (imbalance {s['imbalance']:g}, geometric), balanced validation "
        f"({DATA['val']['per_class']} per class) and test ({DATA['test']['per_class']} per class) sets. Narrow "
        f"ResNet-18 (width {TRAIN['width']}) from scratch, batch {TRAIN['batch_size']}, AdamW {TRAIN['lr']:g} with "
        f"a cosine schedule (SGD where the method says), {EPOCHS[1]} epochs for stage-1 methods, {EPOCHS[2]} "
        "classifier epochs for stage-2 methods on the `ce` model of the same seed; one torch thread on a shared "
        f"2-core CPU. Shot groups by training count: many > 100, few < 20, medium between (classes: {sizes})."
    )


def write_docs(table: dict[str, Any], counts: Sequence[int] | None = None) -> None:
    order = [m for m in planned_methods() if m in table]
    total = sum(sum(r["train_seconds"]) for r in table.values())
    done = sum(len(r["seeds"]) for r in table.values())
    missing = [run_name(m, s) for m, s in plan() if status(m, s) != "done"]
    lines = [
        "# Long-tailed cell classification on synthetic TCT crops",
        "",
        "Generated by `scripts/classify_benchmark.py summarise` from the result files in "
        "`docs/results/runs_classify/` (one per finished run); do not edit by hand.",
        "",
        _data_line(counts),
        "",
        "Each cell: the mean over seeds, with the 95% bootstrap interval of that mean "
        f"({N_RESAMPLES:,} resamples of the "
        "test crops, the same resamples for every run, bias-corrected percentile). The gain column is the paired "
        "difference in balanced accuracy from `ce` over the same seeds and resamples; a gain is called real "
        "only when its interval excludes 0.",
        "",
        f"Runs done: {done} of {len(plan())}; training time of the done runs {total / 3600:.2f} CPU hours "
        "(one thread; the machine was shared, so these are upper bounds).",
        "",
        "| method | stage | seeds | accuracy | balanced acc. | many-shot | medium-shot | few-shot | ECE | "
        "balanced acc. gain over ce | reading |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in order:
        r = table[m]
        gain = r.get("gain", {}).get("balanced_accuracy")
        lines.append(
            f"| `{m}` | {r['stage']} | {len(r['seeds'])} | "
            + " | ".join(_cell(r[k]) for k in METRICS)
            + f" | {r['ece']:.3f} | {_cell(gain) if gain else '—'} | {_real(gain) if gain else '—'} |"
        )
    if missing:
        lines += [
            "",
            f"Not yet run ({len(missing)}): " + ", ".join(f"`{n}`" for n in missing) + ".",
            "Continue with `nice -n 5 .venv/bin/python scripts/classify_benchmark.py run --commit`.",
        ]
    lines += ["", "![balanced and few-shot accuracy per method](classify.png)", ""]
    (OUT / "classify.md").write_text("\n".join(lines) + "\n")
    (OUT / "classify.json").write_text(json.dumps(table, indent=1, default=float) + "\n")
    plot(table, order, OUT / "classify.png")


def plot(table: dict[str, Any], order: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not order:
        return
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(order) + 2), 4.2))
    for j, (key, shift) in enumerate((("balanced_accuracy", -0.15), ("few", 0.15))):
        ivs = [table[m][key] for m in order]
        xs = [i + shift for i in range(len(order))]
        ax.errorbar(
            xs,
            [v["value"] for v in ivs],
            yerr=[[v["value"] - v["low"] for v in ivs], [v["high"] - v["value"] for v in ivs]],
            fmt="o",
            capsize=3,
            label=LABELS[key],
            color=f"C{j}",
        )
    base = table.get(BASELINE, {}).get("balanced_accuracy")
    if base:
        ax.axhline(base["value"], color="C0", lw=0.8, ls="--")
    ax.set_xticks(range(len(order)), order, rotation=40, ha="right")
    ax.set_ylabel("test accuracy (mean of seeds, 95% bootstrap)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("cell classifier on long-tailed synthetic crops (imbalance 100)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- CLI


def select(runs: Sequence[tuple[str, int]], only: str | None) -> list[tuple[str, int]]:
    if not only:
        return list(runs)
    names = {k for k in only.split(",") if k}
    return [(m, s) for m, s in runs if m in names or run_name(m, s) in names]


def _runs() -> dict[str, tuple[str, int]]:
    return {run_name(m, s): (m, s) for m, s in plan()}


def _commit_for(name: str) -> tuple[list[Path], str]:
    method, seed = _runs()[name]
    rec = json.loads(result_path(method, seed).read_text())
    bal = rec["intervals"]["balanced_accuracy"]
    return (
        [result_path(method, seed), RUNS / rec["predictions_file"]],
        f"classify benchmark: {name} (balanced accuracy {bal['value']:.3f} [{bal['low']:.3f}, "
        f"{bal['high']:.3f}]; {rec['seconds']['train']:.0f} s, commit {rec['commit']})",
    )


def cmd_run(args: argparse.Namespace) -> int:
    runs = _runs()
    return _resumable.run_missing(
        args,
        [run_name(m, s) for m, s in select(plan(), args.only)],
        lambda name: status(*runs[name]),
        script=__file__,
        threads=THREADS,
        summarise=summarise,
        commit_for=_commit_for,
    )


def cmd_one(args: argparse.Namespace) -> int:
    runs = _runs()
    if args.run not in runs:
        raise SystemExit(f"unknown run {args.run!r}; see `scripts/classify_benchmark.py list`")
    run_one(*runs[args.run])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    runs = _runs()
    names = [run_name(m, s) for m, s in select(plan(), args.only)]
    return _resumable.list_runs(names, lambda name: status(*runs[name]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _resumable.parser(
        __doc__,
        only_help="comma list of methods or run names, e.g. ce,crt or ncm_s1 (default: all)",
        run_example="ce_s0",
        outputs="docs/results/classify.{md,json,png}",
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
