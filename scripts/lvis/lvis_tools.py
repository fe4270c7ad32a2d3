"""LVIS v1 helpers for the reproduction scripts: check a data root, split CDB's held-out set, write a run
config, extract a checkpoint's weights, score dumped results (standard and fixed AP).

Subcommands: ``check`` and ``split-heldout`` (``prepare.sh``), ``config`` (``train.sh``, ``evaluate.sh``),
``weights`` and ``score`` (``evaluate.sh``); ``make_mini_lvis.py`` uses the same functions. ``check``,
``split-heldout`` and ``score`` need no mmdet; ``config`` and ``weights`` import mmengine / torch when called.

Layout of a data root (mmdet's ``LVISV1Dataset`` layout; file names come from each image's ``coco_url``)::

    DATA_ROOT/annotations/lvis_v1_train.json, lvis_v1_val.json
    DATA_ROOT/train2017/000000xxxxxx.jpg     COCO 2017 train images (LVIS v1 train and part of val)
    DATA_ROOT/val2017/000000xxxxxx.jpg       COCO 2017 val images (the rest of LVIS v1 val)
    DATA_ROOT/annotations/lvis_v1_train_cdb.json, lvis_v1_cdb_heldout.json    written by ``split-heldout``

Glossary
    coco_url   ``http://images.cocodataset.org/<split>2017/<12-digit id>.jpg``; mmdet strips the host and reads
               ``DATA_ROOT/<split>2017/<file>``.
    frequency  LVIS group of a category from its training image count: r (1-10), c (11-100), f (> 100).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COCO_HOST = "http://images.cocodataset.org/"
SPLITS = ("train", "val")
HELDOUT_NAME = "lvis_v1_cdb_heldout.json"
CDB_TRAIN_NAME = "lvis_v1_train_cdb.json"

# LVIS v1.0 as published (lvisdataset.org; Gupta et al. 2019, v1 release notes). A mismatch is reported as a
# warning, not an error: the check's job is to find missing or truncated files, and these are the sizes to
# expect from the official downloads.
EXPECTED = {
    "train": {"images": 100_170, "annotations": 1_270_141},
    "val": {"images": 19_809, "annotations": 244_707},
}
EXPECTED_CATEGORIES = 1203
EXPECTED_GROUPS = {"r": 337, "c": 461, "f": 405}
# COCO 2017 image folders (cocodataset.org): 118,287 train and 5,000 val images.
EXPECTED_IMAGE_FILES = {"train2017": 118_287, "val2017": 5_000}


def ann_path(data_root: str | Path, split: str) -> Path:
    """``DATA_ROOT/annotations/lvis_v1_<split>.json``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
    return Path(data_root) / "annotations" / f"lvis_v1_{split}.json"


def image_file(image: Mapping[str, Any]) -> str:
    """Relative image path of an LVIS v1 image record, as mmdet's ``LVISV1Dataset`` derives it from ``coco_url``."""
    url = image.get("coco_url")
    if not isinstance(url, str) or not url.startswith(COCO_HOST):
        raise ValueError(f"image {image.get('id')!r}: coco_url {url!r} does not start with {COCO_HOST}")
    return url[len(COCO_HOST) :]


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (see scripts/lvis/prepare.sh for the layout)")
    with path.open() as f:
        return json.load(f)


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        json.dump(data, f, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------- check


def check_annotations(data: Mapping[str, Any], source: str) -> list[str]:
    """Structural errors of an LVIS v1 annotation dict (empty list when it is sound).

    Checks the LVIS fields the evaluation relies on: categories with ``frequency`` in r/c/f, images with
    ``coco_url``, ``neg_category_ids`` and ``not_exhaustive_category_ids`` naming known categories, a category
    never both annotated in and negative for one image, and annotations pointing at known images and
    categories.
    """
    errors: list[str] = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            errors.append(f"{source}: missing list {key!r}")
    if errors:
        return errors
    cat_ids = {c["id"] for c in data["categories"]}
    bad_freq = [c["id"] for c in data["categories"] if c.get("frequency") not in ("r", "c", "f")]
    if bad_freq:
        errors.append(f"{source}: categories {bad_freq[:5]} have no frequency in r/c/f")
    img_ids = {img["id"] for img in data["images"]}
    positives: dict[int, set[int]] = {}
    for ann in data["annotations"]:
        if ann.get("image_id") not in img_ids or ann.get("category_id") not in cat_ids:
            errors.append(f"{source}: annotation {ann.get('id')} points at an unknown image or category")
            break
        positives.setdefault(ann["image_id"], set()).add(ann["category_id"])
    for img in data["images"]:
        for key in ("coco_url", "neg_category_ids", "not_exhaustive_category_ids", "height", "width"):
            if key not in img:
                errors.append(f"{source}: image {img.get('id')} has no {key!r}")
                return errors
        neg = set(img["neg_category_ids"])
        if not neg <= cat_ids or not set(img["not_exhaustive_category_ids"]) <= cat_ids:
            errors.append(f"{source}: image {img['id']} lists unknown categories")
        both = neg & positives.get(img["id"], set())
        if both:
            errors.append(
                f"{source}: image {img['id']} has categories {sorted(both)[:5]} annotated and negative"
            )
    return errors


def summarize(data: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of an LVIS annotation dict: images, annotations, categories, categories per frequency group."""
    groups = Counter(c.get("frequency") for c in data["categories"])
    return {
        "images": len(data["images"]),
        "annotations": len(data["annotations"]),
        "categories": len(data["categories"]),
        "groups": {g: groups.get(g, 0) for g in ("r", "c", "f")},
    }


def check_data_root(data_root: str | Path, *, expect_full: bool = True) -> tuple[list[str], list[str]]:
    """Check an LVIS v1 data root; returns (errors, warnings).

    Errors: a missing annotation file, a structural problem (:func:`check_annotations`), an image that a
    ``coco_url`` points to and that is missing or empty. Warnings (with ``expect_full``): counts that differ
    from the official LVIS v1 / COCO 2017 release.
    """
    root = Path(data_root)
    errors: list[str] = []
    warnings: list[str] = []
    for split in SPLITS:
        path = ann_path(root, split)
        if not path.is_file():
            errors.append(f"{path}: not found")
            continue
        data = read_json(path)
        problems = check_annotations(data, str(path))
        errors.extend(problems)
        if problems:
            continue
        counts = summarize(data)
        print(
            f"{path.name}: {counts['images']} images, {counts['annotations']} annotations, "
            f"{counts['categories']} categories (r/c/f {counts['groups']['r']}/{counts['groups']['c']}/"
            f"{counts['groups']['f']}), {path.stat().st_size / 2**20:.1f} MiB"
        )
        missing, empty = [], []
        for img in data["images"]:
            file = root / image_file(img)
            if not file.is_file():
                missing.append(str(file))
            elif file.stat().st_size == 0:
                empty.append(str(file))
        if missing:
            errors.append(f"{split}: {len(missing)} images missing, e.g. {missing[:3]}")
        if empty:
            errors.append(f"{split}: {len(empty)} images are empty files, e.g. {empty[:3]}")
        if expect_full:
            for key, want in EXPECTED[split].items():
                if counts[key] != want:
                    warnings.append(f"{path.name}: {counts[key]} {key}, the LVIS v1 release has {want}")
            if counts["categories"] != EXPECTED_CATEGORIES:
                warnings.append(f"{path.name}: {counts['categories']} categories, LVIS v1 has 1203")
            if split == "train" and counts["groups"] != EXPECTED_GROUPS:
                warnings.append(
                    f"{path.name}: r/c/f groups {counts['groups']}, LVIS v1 has {EXPECTED_GROUPS}"
                )
    if expect_full:
        for folder, want in EXPECTED_IMAGE_FILES.items():
            d = root / folder
            n = sum(1 for _ in d.glob("*.jpg")) if d.is_dir() else 0
            print(f"{folder}/: {n} jpg files")
            if n != want:
                warnings.append(f"{folder}/: {n} jpg files, COCO 2017 has {want}")
    return errors, warnings


# ---------------------------------------------------------------------------------------------- CDB split


def split_heldout(
    data: Mapping[str, Any], num_heldout: int, *, seed: int = 0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an LVIS train dict into (train, held-out) by image, for CDB's difficulty measurement.

    CDB (Sinha et al., ACCV 2020) measures class accuracy on data the model does not train on; for LVIS
    that is a held-out part of the training images (METHODS.md). ``num_heldout`` images are drawn uniformly
    with ``random.Random(seed)``; both parts keep every category (with its train-set ``frequency``) and the
    images' federated lists, and the annotations follow their images.
    """
    images = list(data["images"])
    if not 0 < num_heldout < len(images):
        raise ValueError(
            f"num_heldout must be in [1, {len(images) - 1}] for {len(images)} images; got {num_heldout}"
        )
    held_ids = {img["id"] for img in random.Random(seed).sample(images, num_heldout)}
    parts = []
    for keep in (lambda i: i not in held_ids, lambda i: i in held_ids):
        part = {k: v for k, v in data.items() if k not in ("images", "annotations")}
        part["images"] = [img for img in images if keep(img["id"])]
        part["annotations"] = [a for a in data["annotations"] if keep(a["image_id"])]
        parts.append(part)
    return parts[0], parts[1]


def write_heldout_split(data_root: str | Path, num_heldout: int, *, seed: int = 0) -> tuple[Path, Path]:
    """Write ``lvis_v1_train_cdb.json`` and ``lvis_v1_cdb_heldout.json`` next to ``lvis_v1_train.json``."""
    train, held = split_heldout(read_json(ann_path(data_root, "train")), num_heldout, seed=seed)
    out_dir = Path(data_root) / "annotations"
    paths = (out_dir / CDB_TRAIN_NAME, out_dir / HELDOUT_NAME)
    for path, part in zip(paths, (train, held), strict=True):
        write_json(path, part)
        print(f"{path}: {len(part['images'])} images, {len(part['annotations'])} annotations")
    return paths


# ---------------------------------------------------------------------------------------------- score

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


def score(gt: str | Path, results_prefix: str | Path, *, iou_types: Sequence[str] = ("bbox", "segm")) -> dict:
    """Standard LVIS AP and fixed AP (Dave et al. 2021) of dumped results, through cytolt.evaluate (lvis-api).

    Reads ``<results_prefix>.<iou_type>.json`` (mmdet's ``LVISMetric(outfile_prefix=...)`` naming) for each
    iou type whose file exists. Returns ``{iou_type: {"standard": {...}, "fixed": {...}}}``.
    """
    from cytolt.evaluate import fixed_ap, lvis_eval

    out: dict[str, dict[str, dict[str, float]]] = {}
    for iou_type in iou_types:
        path = Path(f"{results_prefix}.{iou_type}.json")
        if not path.is_file():
            continue
        out[iou_type] = {
            "standard": lvis_eval(gt, path, iou_type=iou_type),
            "fixed": fixed_ap(gt, path, iou_type=iou_type),
        }
    if not out:
        raise FileNotFoundError(f"no {results_prefix}.{{{','.join(iou_types)}}}.json found")
    return out


def format_scores(scores: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """A plain-text table: one row per (iou type, protocol), the LVIS columns, values in percent."""
    lines = [f"{'':14}" + "".join(f"{k:>7}" for k in METRIC_KEYS)]
    for iou_type, protocols in scores.items():
        for protocol, metrics in protocols.items():
            row = "".join(f"{100 * metrics[k]:7.1f}" if metrics[k] >= 0 else f"{'-':>7}" for k in METRIC_KEYS)
            lines.append(f"{iou_type + ' ' + protocol:14}{row}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- run config

# Where each detector keeps its per-image detection limit (LVIS: 300).
_DETS_PER_IMG_KEYS = (("rcnn", "max_per_img"), ("max_per_img",))


def write_run_config(
    config: str | Path,
    out: str | Path,
    *,
    data_root: str | Path | None = None,
    pretrained: str | Path | None = None,
    dets_per_img: int | None = None,
    gpus: int | None = None,
    lr_rule: str | None = None,
) -> Path:
    """Write ``config`` with the run's data root, backbone weights and detection limit as one flat config file.

    ``data_root`` moves every path of the config (datasets, evaluators, the CDB hook's held-out set, losses'
    ``train_ann_file``) with ``cytolt.mm.lvis.retarget_config``; ``pretrained`` is a local ImageNet ResNet-50
    state dict for ``init_cfg=dict(type='Pretrained')``; ``dets_per_img`` replaces the test-time limit.
    ``gpus`` (training runs) applies :func:`learning_rate_for` with ``lr_rule``. Needs mmengine (imported here).
    """
    from mmengine.config import Config

    from cytolt.mm.lvis import retarget_config

    cfg = Config.fromfile(str(config))
    if data_root is not None and str(data_root).rstrip("/") + "/" != cfg.get("data_root"):
        cfg = retarget_config(cfg, data_root=data_root)
    if pretrained is not None:
        if not Path(pretrained).is_file():
            raise FileNotFoundError(
                f"{pretrained}: backbone weights not found (see configs/lvis/_base_/models)"
            )
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(pretrained))
    if gpus is not None:
        print(learning_rate_for(cfg, gpus, lr_rule))
    if dets_per_img is not None:
        test_cfg = cfg.model.test_cfg
        for keys in _DETS_PER_IMG_KEYS:
            node = test_cfg
            for key in keys[:-1]:
                node = node.get(key, {})
            if keys[-1] in node:
                node[keys[-1]] = dets_per_img
                break
        else:
            raise ValueError(f"{config}: no max_per_img in model.test_cfg")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(out))
    return Path(out)


LR_RULES = ("keep", "scale")


def learning_rate_for(cfg: Any, gpus: int, rule: str | None) -> str:
    """Check (and with ``rule='scale'`` set) the learning rate of a training run on ``gpus`` GPUs; a summary line.

    The published numbers were trained at ``auto_scale_lr.base_batch_size`` (16 = 8 GPUs x 2 images). At that
    total batch nothing changes. At another one, a full-data run needs a decision: ``'scale'`` turns on
    mmengine's linear rule (``auto_scale_lr.enable=True``: lr x total / 16), ``'keep'`` trains with the config's
    lr at the other batch. Without one it is refused (ValueError), so the lr never changes silently. Configs on
    the mini set (``backbone_weights.required`` False) are smoke tests: they keep the config's lr.
    """
    if rule is not None and rule not in LR_RULES:
        raise ValueError(f"LR must be one of {', '.join(LR_RULES)}; got {rule!r}")
    per_gpu = int(cfg.train_dataloader.batch_size)
    total = gpus * per_gpu
    base = int(cfg.auto_scale_lr.base_batch_size)
    lr = float(cfg.optim_wrapper.optimizer.lr)
    full_data = bool(cfg.get("backbone_weights", {}).get("required", False))
    if total != base and rule is None and full_data:
        raise ValueError(
            f"total batch {gpus} GPUs x {per_gpu} images = {total}, but the published numbers used {base} "
            f"(8 GPUs x 2) at lr {lr}. Say what to do: LR=scale (linear rule: lr {lr * total / base:g}) or "
            f"LR=keep (lr {lr:g} at batch {total}; not the published recipe)."
        )
    if total != base and rule == "scale":
        cfg.auto_scale_lr.enable = True
        lr = lr * total / base
    else:
        cfg.auto_scale_lr.enable = False
    return f"total batch {gpus} GPUs x {per_gpu} images = {total} (published: {base}); lr {lr:g}"


def extract_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the ``state_dict`` of an mmengine training checkpoint as safetensors (what ``cytolt eval`` reads).

    mmengine checkpoints pickle numpy and logging objects that ``torch.load(weights_only=True)`` refuses. As
    ``cytolt export-model`` does, only a run's own file is unpickled: the checkpoint must sit in an mmengine
    run folder (one holding the ``last_checkpoint`` marker the Runner writes); any other file is read with
    ``weights_only=True``.
    """
    import torch
    from safetensors.torch import save_file

    from cytolt.mm._torch_load import trusted_torch_load

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if (path.parent / "last_checkpoint").is_file():
        with trusted_torch_load(path):
            obj = torch.load(path, map_location="cpu")
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: no state dict of tensors found")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(out))
    return Path(out)


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lvis_tools.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="check an LVIS v1 data root (files, structure, counts)")
    p.add_argument("data_root")
    p.add_argument(
        "--mini", action="store_true", help="a mini set: skip the comparison with the full release"
    )
    p = sub.add_parser("split-heldout", help="write the CDB train / held-out split of lvis_v1_train.json")
    p.add_argument("data_root")
    p.add_argument("--num", type=int, default=5000, help="held-out images")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("score", help="standard and fixed AP of dumped results (PREFIX.bbox.json, .segm.json)")
    p.add_argument("gt", help="LVIS ground truth json (lvis_v1_val.json)")
    p.add_argument("results_prefix")
    p.add_argument("--out", help="also write the scores as JSON here")
    p = sub.add_parser("config", help="write a config with the run's data root and backbone weights")
    p.add_argument("config")
    p.add_argument("--out", required=True)
    p.add_argument("--data-root")
    p.add_argument("--pretrained", help="local ImageNet ResNet-50 weights (.pth)")
    p.add_argument("--dets-per-img", type=int)
    p.add_argument("--gpus", type=int, help="training processes; checks the total batch against the recipe's")
    p.add_argument(
        "--lr", choices=LR_RULES, help="at another total batch than the recipe's: scale or keep lr"
    )
    p = sub.add_parser("weights", help="a training checkpoint's state dict as safetensors (for cytolt eval)")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    if args.command == "weights":
        print(f"weights: {extract_weights(args.checkpoint, args.out)}")
        return 0

    if args.command == "config":
        try:
            out = write_run_config(
                args.config,
                args.out,
                data_root=args.data_root,
                pretrained=args.pretrained,
                dets_per_img=args.dets_per_img,
                gpus=args.gpus,
                lr_rule=args.lr or None,
            )
        except ValueError as err:
            print(f"error: {args.config}: {err}", file=sys.stderr)
            return 2
        print(f"run config: {out}")
        return 0

    if args.command == "check":
        errors, warnings = check_data_root(args.data_root, expect_full=not args.mini)
        for w in warnings:
            print(f"warning: {w}")
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        print("OK" if not errors else f"{len(errors)} error(s)")
        return 1 if errors else 0
    if args.command == "split-heldout":
        write_heldout_split(args.data_root, args.num, seed=args.seed)
        return 0
    scores = score(args.gt, args.results_prefix)
    print(format_scores(scores))
    if args.out:
        write_json(args.out, scores)
        print(f"scores written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
