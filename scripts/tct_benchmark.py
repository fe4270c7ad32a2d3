"""Long-tail benchmark on synthetic TCT: methods x seeds with the same budget (RetinaNet-R18, the small test split).

Superseded for issue 18 by scripts/tct_grid.py (five detectors, a 1,000-patch test split, bootstrap intervals,
resumable result files in docs/results/runs/); kept for the earlier table it produced, now at the end of
docs/results/tct.md. Its page now goes to work_dirs/tct_benchmark/report/ (``--out``), not over the grid's.

    .venv/bin/python scripts/tct_benchmark.py                  # CPU size: RetinaNet-R18, 500 iterations per run
    .venv/bin/python scripts/tct_benchmark.py --gpu            # GPU size: RetinaNet-R50, 12 epochs, larger set
    .venv/bin/python scripts/tct_benchmark.py --methods focal,gradlibra --seeds 0

Each run's test metrics are kept in WORK_ROOT/<method>_s<seed>/metrics.json, so an interrupted benchmark
continues where it stopped. The table reports mean +- standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "ce": "cross-entropy (softmax)",
    "focal": "sigmoid focal",
    "efl": "EFL",
    "eqlv2": "EQLv2",
    "gradlibra": "Grad-Libra",
    "cdb": "CDB-W + CDB-S",
    "gradlibra_copypaste": "Grad-Libra + copy-paste",
    "gol": "GOL (Gumbel BCE)",
    "iif": "IIF (softmax CE, raw)",
    "pcb": "PCB (softmax CE + fight-back KL)",
}
KEYS = ("AP", "AP50", "APr", "APc", "APf")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {','.join(METHODS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    p.add_argument(
        "--iters",
        type=int,
        default=500,
        help="training iterations per run (CPU size: 7 methods x 3 seeds took 49 min on a quiet 2-core machine)",
    )
    p.add_argument("--images", type=int, default=600, help="synthetic patches (CPU size)")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (generated if missing)")
    p.add_argument("--work-root", type=Path, default=ROOT / "work_dirs" / "tct_benchmark")
    p.add_argument("--out", type=Path, default=ROOT / "work_dirs" / "tct_benchmark" / "report")
    p.add_argument(
        "--gpu", action="store_true", help="GPU size: R50 configs, 12 epochs, 5,000 images of 512 px"
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--summarise-only",
        action="store_true",
        help="write the table from the runs already finished; train nothing",
    )
    return p.parse_args(argv)


def ensure_data(args: argparse.Namespace) -> Path:
    from cytolt.synth import make_patch_dataset

    data = args.data or args.work_root / ("data_gpu" if args.gpu else "data")
    if not (data / "annotations_test.json").is_file():
        images, size = (5000, 512) if args.gpu else (args.images, 256)
        print(f"generating {images} synthetic patches of {size} px in {data}", flush=True)
        make_patch_dataset(data, images=images, size=size, imbalance=50, seed=0, split=(0.7, 0.15, 0.15))
    return data


def run_one(method: str, seed: int, data: Path, args: argparse.Namespace) -> dict[str, float]:
    from cytolt.mm.evaluate import evaluate
    from cytolt.mm.train import export_model, train

    run_dir = args.work_root / f"{method}_s{seed}"
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())["metrics"]
    if args.gpu:
        config = ROOT / "configs" / "tct" / f"retinanet_r50_gpu_{method}.py"
        options: dict = {"randomness.seed": seed}
    else:
        config = ROOT / "configs" / "tct" / f"retinanet_r18_{method}.py"
        options = {"randomness.seed": seed, "train_cfg.max_iters": args.iters}  # schedule follows max_iters
    if not config.is_file():
        raise FileNotFoundError(f"no config for method {method!r}: {config}")
    start = time.perf_counter()
    train(config, work_dir=run_dir, data_root=data, cfg_options=options)
    train_s = time.perf_counter() - start
    model = export_model(
        run_dir, run_dir / "model"
    )  # evaluation reads safetensors, never the pickled checkpoint
    metrics = evaluate(
        config, model / "model.safetensors", split="test", data_root=data, work_dir=run_dir / "test"
    )
    metrics = {k.removeprefix("lt/"): v for k, v in metrics.items()}
    record = {"metrics": metrics, "train_seconds": train_s, "config": config.name, "threads": args.threads}
    metrics_file.write_text(json.dumps(record))
    return metrics


def summarise(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    out = {}
    for method, runs in results.items():
        keys = [k for k in runs[0] if k in KEYS or k.startswith("AP-")]
        out[method] = {
            k: (
                statistics.fmean(r[k] for r in runs),
                statistics.stdev(r[k] for r in runs) if len(runs) > 1 else 0.0,
            )
            for k in keys
        }
    return out


def plot(summary: dict, classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    groups = ["APf", "APc", "APr"]
    width = 0.8 / max(1, len(summary))
    for i, (method, stats) in enumerate(summary.items()):
        xs = [g + i * width for g in range(len(groups))]
        ax1.bar(
            xs,
            [stats[k][0] for k in groups],
            width,
            yerr=[stats[k][1] for k in groups],
            label=METHODS[method],
            capsize=2,
        )
        ax2.plot(
            range(len(classes)), [stats[f"AP-{c}"][0] for c in classes], marker="o", label=METHODS[method]
        )
    ax1.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], ["frequent", "common", "rare"])
    ax1.set_ylabel("box AP (test split)")
    ax1.set_title("AP by LVIS frequency group (mean +- sd over seeds)")
    ax2.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax2.set_title("AP per class, head -> tail")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_markdown(
    summary: dict,
    classes: list[str],
    args: argparse.Namespace,
    path: Path,
    seeds: dict[str, list[int]],
    data: Path,
    train_minutes: float,
    threads: str,
) -> None:
    import torch

    def cell(stats, key):
        mean, sd = stats[key]
        return f"{mean:.3f} ± {sd:.3f}" if mean >= 0 else "n/a"

    lines = [
        "# Long-tail benchmark on synthetic TCT",
        "",
        f"Run on {date.today().isoformat()}, {platform.machine()} with {threads} torch threads per run "
        f"({'GPU' if args.gpu else 'CPU'}; torch {torch.__version__}), "
        f"{'12 epochs of RetinaNet-R50' if args.gpu else f'{args.iters} iterations of the narrow RetinaNet-R18'} per run, "
        f"{train_minutes:.0f} minutes of training in all (machine shared with other jobs).",
        "",
        "Command: `" + " ".join(["python", "scripts/tct_benchmark.py", *sys.argv[1:]]) + "`",
        "",
        f"Data: `{data.name}` from `cytolt.synth.make_patch_dataset` (imbalance 50, split 0.7/0.15/0.15); "
        "metrics on the test split with lvis-api (federated rules), mean ± standard deviation over seeds.",
        "",
        "| method | seeds | AP | AP50 | APr | APc | APf |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for method, stats in summary.items():
        used = ", ".join(map(str, seeds[method]))
        lines.append(f"| {METHODS[method]} | {used} | " + " | ".join(cell(stats, k) for k in KEYS) + " |")
    lines += [
        "",
        "Per-class AP (mean over seeds), head to tail:",
        "",
        "| method | " + " | ".join(classes) + " |",
        "| --- |" + " --- |" * len(classes),
    ]
    for method, stats in summary.items():
        lines.append(
            f"| {METHODS[method]} | " + " | ".join(f"{stats[f'AP-{c}'][0]:.2f}" for c in classes) + " |"
        )
    lines += [
        "",
        f"![AP by group and per class]({path.stem}.png)",
        "",
        "## Reading",
        "",
        "_(written after the run)_",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from cytolt.synth import CLASSES

    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    data = ensure_data(args)
    results: dict[str, list[dict[str, float]]] = {}
    seeds_done: dict[str, list[int]] = {}
    for seed in seeds:  # seeds outermost: a partial run already compares every method
        for method in methods:
            done = args.work_root / f"{method}_s{seed}" / "metrics.json"
            if args.summarise_only and not done.is_file():
                continue
            if not args.summarise_only:
                print(f"== {method} seed {seed}", flush=True)
            results.setdefault(method, []).append(run_one(method, seed, data, args))
            seeds_done.setdefault(method, []).append(seed)
    records = [
        json.loads((args.work_root / f"{m}_s{s}" / "metrics.json").read_text())
        for m, ss in seeds_done.items()
        for s in ss
    ]
    train_minutes = sum(r.get("train_seconds", 0) for r in records) / 60
    threads = ", ".join(sorted({str(r["threads"]) for r in records if "threads" in r})) or "(not recorded)"
    summary = summarise(results)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "tct_gpu" if args.gpu else "tct"
    (args.out / f"{name}.json").write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    plot(summary, list(CLASSES), args.out / f"{name}.png")
    write_markdown(
        summary, list(CLASSES), args, args.out / f"{name}.md", seeds_done, data, train_minutes, threads
    )
    print(f"wrote {args.out / (name + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
