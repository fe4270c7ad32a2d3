"""Fit a config to the dataset it trains on, and check that dataset before the first iteration.

A config names its classes once (``classes`` in ``configs/tct/_base_/datasets/tct_patches.py``) and writes
``num_classes`` in its head and losses; a lab's COCO dataset brings its own ``categories``. ``fit_to_dataset``
makes the config follow the dataset: the class list (category-id order, which is mmdet's ``CocoDataset`` label
order), the palette, and every ``num_classes`` equal to the config's class count (an RPN's single objectness
class is left alone). ``check_training_data`` reads every split's annotation file with
:func:`cytolt.datasets.check_coco` and :func:`~cytolt.datasets.check_splits`, so a broken file fails in seconds,
naming the file and the entry, and returns the training split's class table (instances, images, LVIS group).

Glossary
    split files  the ``ann_file`` of the train / val / test datasets joined to their ``data_root``; images are
                 ``data_root + data_prefix.img + file_name``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmengine.config import Config

from cytolt.datasets import ClassRow, check_coco, check_splits, class_table, read_coco
from cytolt.store.geojson import DEFAULT_COLORS

__all__ = [
    "ClassFit",
    "DataCheck",
    "check_training_data",
    "class_counts_in",
    "fit_to_dataset",
    "retarget_classes",
    "split_files",
]

log = logging.getLogger("cytolt")

_SPLITS = ("train", "val", "test")
_DATALOADERS = {s: f"{s}_dataloader" for s in _SPLITS}


def class_counts_in(node: Any, found: set[int] | None = None) -> set[int]:
    """Every ``num_classes`` value above 1 in a config tree (1 is an RPN's objectness, not the class count)."""
    found = set() if found is None else found
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "num_classes" and isinstance(value, int) and value > 1:
                found.add(value)
            class_counts_in(value, found)
    elif isinstance(node, list | tuple):
        for value in node:
            class_counts_in(value, found)
    return found


def retarget_classes(
    node: Any, old: int, classes: tuple[str, ...], palette: Sequence[Sequence[int]] | None = None
) -> Any:
    """A copy of a config tree where every ``num_classes == old`` is ``len(classes)`` and every dataset (a dict
    with an ``ann_file`` and a ``pipeline``) lists ``classes`` (and ``palette``, when given) in its metainfo."""
    if isinstance(node, Mapping):
        out = {k: retarget_classes(v, old, classes, palette) for k, v in node.items()}
        if out.get("num_classes") == old:
            out["num_classes"] = len(classes)
        if "ann_file" in out and "pipeline" in out:
            meta = dict(out.get("metainfo") or {}, classes=classes)
            if palette is not None:
                meta["palette"] = [tuple(c) for c in palette]
            out["metainfo"] = meta
        return out
    if isinstance(node, list | tuple):
        return type(node)(retarget_classes(v, old, classes, palette) for v in node)
    return node


def _unwrap(dataset: Mapping[str, Any]) -> Mapping[str, Any]:
    while "dataset" in dataset and "ann_file" not in dataset:  # ClassBalancedDataset, mix datasets, ...
        dataset = dataset["dataset"]
    return dataset


def split_files(cfg: Config) -> dict[str, tuple[Path, Path]]:
    """``{split: (annotation file, image folder)}`` of the config's train / val / test datasets."""
    out: dict[str, tuple[Path, Path]] = {}
    for split, key in _DATALOADERS.items():
        loader = cfg.get(key)
        if not loader or not loader.get("dataset"):
            continue
        dataset = _unwrap(loader["dataset"])
        if "ann_file" not in dataset:
            continue
        root = Path(dataset.get("data_root") or "")
        prefix = (dataset.get("data_prefix") or {}).get("img", "")
        out[split] = (root / dataset["ann_file"], root / prefix)
    return out


def _palette(categories: Sequence[Mapping[str, Any]], old_classes: Sequence[str], old_palette: Any) -> list:
    old = dict(zip(old_classes, old_palette or [], strict=False))
    out = []
    for k, cat in enumerate(categories):
        color = cat.get("color")
        if isinstance(color, Sequence) and len(color) == 3 and not isinstance(color, str):
            out.append(tuple(int(v) for v in color))
        else:
            out.append(tuple(old.get(cat["name"], DEFAULT_COLORS[k % len(DEFAULT_COLORS)])))
    return out


def _point_metrics_at(cfg: Config, train_file: Path) -> None:
    """LongTailMetric derives a plain COCO split's frequency groups from the training split's counts."""
    for key in ("val_evaluator", "test_evaluator"):
        evaluators = cfg.get(key)
        for ev in evaluators if isinstance(evaluators, list) else [evaluators]:
            if (
                isinstance(ev, Mapping)
                and ev.get("type") == "LongTailMetric"
                and not ev.get("train_ann_file")
            ):
                ev["train_ann_file"] = str(train_file)


@dataclass(frozen=True)
class ClassFit:
    """What ``fit_to_dataset`` changed: the config's classes before and after, from ``source``."""

    source: str
    old_classes: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.old_classes != self.classes


def fit_to_dataset(cfg: Config) -> ClassFit | None:
    """Make ``cfg`` (in place) train the classes of its training annotation file, when that file exists and its
    datasets are COCO-style with a class list in the config (LVIS configs keep their dataset's own classes).

    Returns what changed, or None when there is no file to read or nothing to fit.
    """
    files = split_files(cfg)
    if "train" not in files or not files["train"][0].is_file():
        return None
    if cfg.get("dataset_type", "CocoDataset") != "CocoDataset" or not cfg.get("classes"):
        return None
    train_file = files["train"][0]
    categories = sorted(read_coco(train_file).get("categories") or [], key=lambda c: c["id"])
    if not categories:
        return None  # check_training_data names the problem
    _point_metrics_at(cfg, train_file)
    classes = tuple(str(c["name"]) for c in categories)
    old_classes = tuple(cfg.classes)
    fit = ClassFit(str(train_file), old_classes, classes)
    if not fit.changed:
        return fit
    counts = class_counts_in(cfg.get("model", {}))
    if len(counts) > 1:
        raise ValueError(
            f"{cfg.filename}: the model writes several class counts {sorted(counts)}; cannot tell which one to "
            f"fit to the {len(classes)} classes of {train_file}"
        )
    old = counts.pop() if counts else len(old_classes)
    palette = _palette(categories, old_classes, (cfg.get("metainfo") or {}).get("palette"))
    for key in ("model", "custom_hooks", *_DATALOADERS.values()):
        if cfg.get(key) is not None:
            value = cfg[key].to_dict() if hasattr(cfg[key], "to_dict") else cfg[key]
            cfg[key] = retarget_classes(value, old, classes, palette)
    cfg.classes = classes
    cfg.metainfo = dict(cfg.get("metainfo") or {}, classes=classes, palette=palette)
    log.info("cytolt: %d classes from %s (the config had %d): %s", len(classes), train_file, old, classes)
    return fit


@dataclass(frozen=True)
class DataCheck:
    """The checked dataset: split files by name, and the training split's class table."""

    files: dict[str, Path]
    classes: tuple[ClassRow, ...]


def check_training_data(cfg: Config, *, splits: Sequence[str] = _SPLITS) -> DataCheck:
    """Check every split's annotation file (and its image files) before training starts.

    The train and val files must exist (training reads both); a test file is checked when it exists (a set made
    for fine-tuning, ``cytolt dataset from-review``, may hold none).

    Raises :class:`cytolt.datasets.AnnotationError` naming the file and the entry; FileNotFoundError when a split
    file is missing, naming what the config expects (``data_root`` + ``ann_file``).
    """
    files = {s: f for s, f in split_files(cfg).items() if s in splits}
    if "train" not in files:
        raise ValueError(f"{cfg.filename}: no train_dataloader.dataset.ann_file to check")
    docs = {}
    for split, (ann_file, image_root) in list(files.items()):
        if split == "test" and not ann_file.is_file():
            del files[split]
            continue
        if not ann_file.is_file():
            raise FileNotFoundError(
                f"{split} annotation file not found: {ann_file} (the config reads data_root + "
                f"'{ann_file.name}'; a dataset folder holds annotations_train.json, annotations_val.json, "
                "annotations_test.json and the images they name)"
            )
        doc = read_coco(ann_file)
        check_coco(doc, source=ann_file, image_root=image_root)
        docs[split] = doc
    others = {str(files[s][0]): docs[s] for s in docs if s != "train"}
    # the test split is often val's file again
    others = {k: v for k, v in others.items() if k != str(files["train"][0])}
    check_splits(docs["train"], others, train_source=str(files["train"][0]))
    return DataCheck(files={s: f[0] for s, f in files.items()}, classes=tuple(class_table(docs["train"])))
