"""Training-step time of a narrow RetinaNet-R18 with each cytolt loss, as a ratio to sigmoid focal loss.

The baseline is mmdet's own ``FocalLoss`` in the same model. Every configuration is a separate model built
from the same seed and trained (SGD) on the same fixed batch: 2 random 256x256 images with a few boxes each.
After a warm-up, each round times every loss against the baseline in an A-B-B-A block (focal, loss, loss,
focal: adjacent steps share the machine's load, and the symmetric order cancels a load that drifts). The
losses take turns going first from round to round. The table quotes, per loss, the median over rounds of the
wall-clock ratio with its min-max spread, the same for process CPU time, the ratio of the two sides' fastest
steps (the least disturbed ones: on a shared machine the most robust estimate), and the ratio of the loss's
forward + backward alone on RetinaHead-sized logits (fastest of many calls). The last line is the headline: the
worst median wall ratio. JSON goes to ``docs/bench/losses.json`` (or ``--json``).

    .venv/bin/python bench/bench_losses.py                # CPU, 2 torch threads, 7 rounds
    .venv/bin/python bench/bench_losses.py --rounds 9 --device cuda
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 4
# Long-tailed statistics of the synthetic TCT benchmark's four classes (55/30/10/5 %, ARCHITECTURE.md), used
# where a loss needs priors or counts; the values do not change the amount of work.
CLASS_FRACTION = [0.55, 0.30, 0.10, 0.05]
BASELINE = "mmdet FocalLoss"


def loss_configs() -> dict[str, dict]:
    """Row name -> ``loss_cls`` config (the first row is the baseline)."""
    image_freq = [0.9, 0.6, 0.2, 0.0005]
    return {
        BASELINE: dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        "CytoltFocalLoss": dict(type="CytoltFocalLoss", use_sigmoid=True),
        "EqualizedFocalLoss": dict(type="EqualizedFocalLoss", use_sigmoid=True, num_classes=NUM_CLASSES),
        "EQLLoss": dict(type="EQLLoss", use_sigmoid=True, image_freq=image_freq),
        "EQLv2Loss": dict(type="EQLv2Loss", use_sigmoid=True, num_classes=NUM_CLASSES),
        "GradLibraLoss": dict(type="GradLibraLoss", use_sigmoid=True, num_classes=NUM_CLASSES),
        "CytoltSeesawLoss (softmax C+1)": dict(
            type="CytoltSeesawLoss", use_sigmoid=False, num_classes=NUM_CLASSES
        ),
        "CDBLoss (softmax)": dict(type="CDBLoss", use_sigmoid=False, num_classes=NUM_CLASSES),
        "CDBLoss (sigmoid focal)": dict(
            type="CDBLoss", use_sigmoid=True, num_classes=NUM_CLASSES, alpha=0.25, gamma=2.0
        ),
        "FederatedLoss": dict(
            type="FederatedLoss", use_sigmoid=True, image_count=[550, 300, 100, 50], num_sample_classes=2
        ),
        "BalancedBCELoss": dict(
            type="BalancedBCELoss", use_sigmoid=True, class_prior=[f / 50 for f in CLASS_FRACTION]
        ),
        "LogitAdjustedLoss": dict(type="LogitAdjustedLoss", use_sigmoid=False, class_prior=CLASS_FRACTION),
    }


def model_config(loss_cls: dict) -> dict:
    """The narrow RetinaNet-R18 the CPU configs train (configs/tct/_base_/models/retinanet_r18.py: ResNet-18
    with 32 base channels, FPN 64 at strides 8/16/32, a 2-conv GroupNorm head), with ``loss_cls`` and
    NUM_CLASSES swapped in."""
    from mmengine.config import Config

    model = Config.fromfile(str(ROOT / "configs" / "tct" / "_base_" / "models" / "retinanet_r18.py")).model
    model = model.to_dict()
    model["bbox_head"].update(num_classes=NUM_CLASSES, loss_cls=loss_cls)
    return model


def fixed_batch(device: torch.device, *, batch: int = 2, size: int = 256) -> tuple[torch.Tensor, list]:
    """Random but fixed images (normalised) with 3-5 boxes of 20-60 px each, labels drawn long-tailed."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(batch, 3, size, size, generator=g) - 0.5) / 0.25
    samples = []
    for _ in range(batch):
        n = int(torch.randint(3, 6, (1,), generator=g))
        wh = torch.randint(20, 61, (n, 2), generator=g).float()
        xy = torch.rand(n, 2, generator=g) * (size - wh)
        boxes = torch.cat([xy, xy + wh], dim=1)
        labels = torch.multinomial(torch.tensor(CLASS_FRACTION), n, replacement=True, generator=g)
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size),
                batch_input_shape=(size, size),
                scale_factor=(1.0, 1.0),
            )
        )
        sample.gt_instances = InstanceData(bboxes=boxes.to(device), labels=labels.to(device))
        samples.append(sample)
    return images.to(device), samples


def make_step(loss_cls: dict, device: torch.device, batch: tuple[torch.Tensor, list]) -> Callable[[], None]:
    """A closure running one SGD training step (zero_grad, forward, backward, step) of a fresh model."""
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict

    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(model_config(loss_cls))).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    inputs, samples = batch

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.parse_losses(model.loss(inputs, samples))
        loss.backward()
        optimizer.step()

    return step


def timed(step: Callable[[], None], steps: int, device: torch.device) -> tuple[float, float]:
    """Seconds per step over ``steps`` steps: (wall clock, process CPU time); GPU synchronised first."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def paired_block(
    base: Callable[[], None], other: Callable[[], None], steps: int, device: torch.device
) -> dict[str, float]:
    """One A-B-B-A block (focal, loss, loss, focal): wall and CPU ratios, and each side's faster step.

    Adjacent steps share the machine's load, and the symmetric order cancels a load that drifts linearly.
    """
    a1, b1, b2, a2 = (
        timed(base, steps, device),
        timed(other, steps, device),
        timed(other, steps, device),
        timed(base, steps, device),
    )
    return dict(
        wall=(b1[0] + b2[0]) / (a1[0] + a2[0]),
        cpu=(b1[1] + b2[1]) / (a1[1] + a2[1]),
        other_s=(b1[0] + b2[0]) / 2,
        other_fastest_s=min(b1[0], b2[0]),
        base_fastest_s=min(a1[0], a2[0]),
    )


def loss_only_ratios(configs: dict[str, dict], device: torch.device, repeats: int) -> dict[str, float]:
    """Ratio of the fastest loss forward + backward to mmdet FocalLoss's, on RetinaHead-sized logits.

    ``N = 2 x 12,096`` anchors (256 px, strides 8/16/32, 9 anchors per place), about 1 % positive; each loss is
    called ``5 * repeats`` times, interleaved with the others, and its minimum kept (the least disturbed call).
    """
    from mmdet.registry import MODELS

    g = torch.Generator().manual_seed(1)
    n = 2 * (32 * 32 + 16 * 16 + 8 * 8) * 9
    labels = torch.full((n,), NUM_CLASSES, dtype=torch.long)
    positive = torch.randperm(n, generator=g)[: n // 100]
    labels[positive] = torch.multinomial(torch.tensor(CLASS_FRACTION), positive.numel(), True, generator=g)
    labels = labels.to(device)
    weight = torch.ones(n, device=device)

    def call(loss_fn: torch.nn.Module, logits: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            z = logits.detach().requires_grad_()
            loss_fn(z, labels, weight, avg_factor=float(positive.numel())).backward()

        return run

    fns = {}
    for name, cfg in configs.items():
        loss_fn = MODELS.build(dict(cfg)).to(device).train()
        width = NUM_CLASSES if cfg.get("use_sigmoid", False) else NUM_CLASSES + 1
        fns[name] = call(loss_fn, torch.randn(n, width, generator=g).to(device))
    fastest = {name: float("inf") for name in fns}
    for _ in range(5 * repeats):
        for name, fn in fns.items():
            fastest[name] = min(fastest[name], timed(fn, 1, device)[0])
    return {name: t / fastest[BASELINE] for name, t in fastest.items() if name != BASELINE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (>= 5); the median is quoted")
    parser.add_argument("--steps", type=int, default=1, help="steps per A or B in each A-B-B-A block")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--goal", type=float, default=1.05, help="every ratio must stay under this")
    parser.add_argument("--only", nargs="*", default=None, help="row names to run (the baseline always runs)")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "losses.json")
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds must be at least 5 (BENCHMARKS.md)")

    torch.set_num_threads(args.threads)
    import mmdet
    from mmdet.utils import register_all_modules

    import cytolt.mm.losses  # noqa: F401  (registers cytolt's losses)

    register_all_modules(init_default_scope=True)
    device = torch.device(args.device)
    configs = loss_configs()
    if args.only:
        unknown = set(args.only) - set(configs)
        if unknown:
            parser.error(f"unknown rows {sorted(unknown)}; choose from {list(configs)}")
        configs = {k: v for k, v in configs.items() if k == BASELINE or k in args.only}
    print(
        f"torch {torch.__version__}, mmdet {mmdet.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"cores {os.cpu_count()}, rounds {args.rounds} x {args.steps} steps, warm-up {args.warmup}",
        flush=True,
    )
    load_before = list(os.getloadavg())
    batch = fixed_batch(device)
    steps = {name: make_step(cfg, device, batch) for name, cfg in configs.items()}
    for step in steps.values():
        timed(step, args.warmup, device)

    others = [name for name in steps if name != BASELINE]
    blocks: dict[str, list[dict[str, float]]] = {name: [] for name in others}
    for r in range(args.rounds):
        for name in others[r % len(others) :] + others[: r % len(others)]:  # rotate: no row always first
            blocks[name].append(paired_block(steps[BASELINE], steps[name], args.steps, device))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    print("timing the losses alone ...", flush=True)
    alone = loss_only_ratios(configs, device, repeats=args.rounds)

    rows = []
    for name in others:
        wall = [b["wall"] for b in blocks[name]]
        cpu = [b["cpu"] for b in blocks[name]]
        rows.append(
            dict(
                name=name,
                loss_cls=configs[name],
                median_step_s=statistics.median(b["other_s"] for b in blocks[name]),
                ratio_median=statistics.median(wall),
                ratio_min=min(wall),
                ratio_max=max(wall),
                cpu_ratio_median=statistics.median(cpu),
                cpu_ratio_min=min(cpu),
                cpu_ratio_max=max(cpu),
                fastest_step_ratio=min(b["other_fastest_s"] for b in blocks[name])
                / min(b["base_fastest_s"] for b in blocks[name]),
                loss_only_ratio=alone[name],
            )
        )
    header = f"loss (baseline: {BASELINE})"
    width = max(len(header), *(len(r["name"]) for r in rows))
    print(
        f"\n{header:<{width}}  step s  wall ratio (min-max)  CPU ratio (min-max)  fastest steps  loss alone"
    )
    for r in rows:
        print(
            f"{r['name']:<{width}}  {r['median_step_s']:6.3f}  {r['ratio_median']:5.3f} "
            f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f})  {r['cpu_ratio_median']:5.3f} "
            f"({r['cpu_ratio_min']:.2f}-{r['cpu_ratio_max']:.2f})  {r['fastest_step_ratio']:13.3f}  "
            f"{r['loss_only_ratio']:10.2f}"
        )
    worst = max(rows, key=lambda r: r["ratio_median"])
    worst_cpu = max(rows, key=lambda r: r["cpu_ratio_median"])
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    verdict = "within" if worst["ratio_median"] <= args.goal else "MISSES"
    result = dict(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        machine=dict(
            cores=os.cpu_count(),
            cpu=platform.processor() or platform.machine(),
            torch=torch.__version__,
            mmdet=mmdet.__version__,
            device=str(device),
            torch_threads=torch.get_num_threads(),
            python=platform.python_version(),
        ),
        model="RetinaNet ResNet-18 (base_channels 32), FPN 64 (strides 8/16/32), 2-conv GN head, 4 classes",
        batch="2 x 3 x 256 x 256 random (fixed seed), 3-5 boxes per image",
        rounds=args.rounds,
        steps_per_round=args.steps,
        warmup_steps=args.warmup,
        goal=args.goal,
        peak_rss_mib=round(peak_rss_mib, 1),
        rows=rows,
        load_average_before=load_before,
        load_average_after=list(os.getloadavg()),
        headline=dict(
            worst=worst["name"],
            ratio=worst["ratio_median"],
            worst_cpu=worst_cpu["name"],
            cpu_ratio=worst_cpu["cpu_ratio_median"],
            verdict=verdict,
        ),
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"peak RSS {peak_rss_mib:.0f} MiB; JSON written to {args.json}")
    print(
        f"losses/focal worst = {worst['ratio_median']:.3f}x wall ({worst['name']}, median of {args.rounds}, spread "
        f"{worst['ratio_min']:.3f}-{worst['ratio_max']:.3f}; CPU time worst {worst_cpu['cpu_ratio_median']:.3f}x "
        f"{worst_cpu['name']}) {verdict} the {args.goal}x goal"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
