"""mmdet glue for the LVIS reproduction (configs/lvis): dataset statistics, sigmoid losses in a two-stage head,
NorCal at test time, a class-aware mix dataset, and moving a config onto another LVIS-format data root.

Registered in mmdet's registries on import:

- ``MODELS``: ``RoISigmoidLoss`` (a cytolt sigmoid loss in mmdet's ``BBoxHead``), ``NorCalShared2FCBBoxHead``.
- ``DATASETS``: ``ClassAwareMixDataset`` (``MultiImageMixDataset`` that answers ``get_cat_ids``).

Glossary
    label order   the order of ``categories`` in the annotation file, which is mmdet's ``LVISV1Dataset``
                  label order (``cat2label``); LVIS v1 lists categories by ascending id.
    images_per_class     (C,) training images that contain the category (LVIS's ``image_count``): NorCal's
                         ``N_c`` and the federated loss's ``image_count``.
    annotated images     training images with at least one annotation: the denominator of EQL's ``f_j`` in the
                         authors' code (``eql_image_freq``).
    instances_per_class  (C,) training instances (annotations) of the category: NorCal's ``count_by='instances'``
                         variant.
    logits        two-stage ``BBoxHead``: (R, C + 1) for softmax heads (background last); ``RoISigmoidLoss``
                  makes the head emit (R, C), one sigmoid per class.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmdet.datasets import MultiImageMixDataset
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from torch import Tensor, nn

from cytolt.calibration import norcal
from cytolt.category_stats import CategoryStats, coco_category_stats
from cytolt.mm.dataset_fit import class_counts_in, retarget_classes

__all__ = [
    "ClassAwareMixDataset",
    "NorCalShared2FCBBoxHead",
    "RoISigmoidLoss",
    "eql_image_freq",
    "lvis_category_stats",
    "retarget_config",
]


# ---------------------------------------------------------------------------------------------- statistics


def lvis_category_stats(ann_file: str | Path) -> CategoryStats:
    """Category statistics (``cytolt.category_stats.CategoryStats``) of an LVIS (or COCO) json, counted once per
    file version and cached.

    Reading LVIS v1 train (about 1 GB) takes tens of seconds, so models that need statistics at build time
    (EQL, federated loss, NorCal) share one read per process; the cache key includes the file's size and
    modification time.
    """
    path = Path(ann_file)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: training annotation file not found (needed for class statistics; see scripts/lvis/prepare.sh)"
        )
    return _read_stats(path)[0]


def _read_stats(path: Path) -> tuple[CategoryStats, int]:
    stat = path.stat()
    return _category_stats(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _category_stats(path: str, mtime_ns: int, size: int) -> tuple[CategoryStats, int]:
    """(statistics, number of images with at least one annotation) of one file version."""
    with open(path) as f:
        data = json.load(f)
    annotated = len({ann["image_id"] for ann in data.get("annotations", [])})
    return coco_category_stats(data, source=path), annotated


def eql_image_freq(ann_file: str | Path) -> np.ndarray:
    """EQL's ``f_j`` (C,) as the authors' code counts it: images containing category ``j`` divided by the
    training images that have at least one annotation (not all images; Tan et al.'s
    ``lvis_v1_0_categories.py``: ``image_count / len(set(ann['image_id']))``)."""
    lvis_category_stats(ann_file)  # the file checks and the error message
    stats, annotated = _read_stats(Path(ann_file))
    return stats.images_per_class / max(annotated, 1)


# ---------------------------------------------------------------------------------------------- losses

# Inner loss type -> (its constructor keyword, how it is counted from ``train_ann_file``): losses whose
# hyper-parameters are dataset statistics.
STAT_ARGUMENTS: dict[str, tuple[str, Callable[[str], np.ndarray]]] = {
    "EQLLoss": ("image_freq", eql_image_freq),  # EQL: f_j over annotated images (Tan et al. 2020, their code)
    # sampling weight image_count^0.5 (Zhou et al. 2021)
    "FederatedLoss": ("image_count", lambda ann: lvis_category_stats(ann).images_per_class),
}


@MODELS.register_module()
class RoISigmoidLoss(nn.Module):
    """A cytolt sigmoid loss (EQL, EQLv2, federated, ...) as the ``loss_cls`` of mmdet's two-stage ``BBoxHead``.

    mmdet's ``BBoxHead`` always builds a softmax classifier (C + 1 outputs) unless its loss declares its own
    channels (the ``custom_cls_channels`` hooks that mmdet's Seesaw uses). This adapter declares C outputs,
    one logit per class and no background column, which is the layout cytolt's sigmoid losses take (a
    background RoI is an all-zero target row; EQL's and the federated loss's papers use this form). At test
    time scores are ``sigmoid(z)`` with a zero background column appended, as mmdet's NMS expects (R, C + 1).

    An inner loss built with ``objectness=True`` (``EQLv2Loss``, as the authors' released mmdet code) gets C + 1
    outputs instead: the last is a background sigmoid (target 1 for background RoIs), and test-time class scores
    are ``sigmoid(z_c) (1 - sigmoid(z_bg))`` (the loss's ``scores``), followed by ``sigmoid(z_bg)`` in the last
    column, which mmdet's NMS ignores.

    Args:
        loss: config of the inner loss, e.g. ``dict(type='EQLv2Loss', num_classes=1203)``; ``use_sigmoid=True``
            is added.
        train_ann_file: training annotation file; required when the inner loss takes a dataset statistic
            (:data:`STAT_ARGUMENTS`: EQL's ``image_freq``, the federated loss's ``image_count``), which is then
            counted from it.
    """

    # mmdet's BBoxHead looks these up on its loss_cls (getattr probing is mmdet's interface, not cytolt's).
    custom_cls_channels = True
    custom_activation = True
    custom_accuracy = True

    def __init__(self, *, loss: Mapping[str, Any], train_ann_file: str | None = None) -> None:
        super().__init__()
        cfg = dict(loss)
        kind = cfg.get("type")
        stat = STAT_ARGUMENTS.get(kind) if isinstance(kind, str) else None
        if stat is not None:
            keyword, count = stat
            if keyword in cfg and train_ann_file is not None:
                raise ValueError(f"RoISigmoidLoss: give {kind}'s {keyword} or train_ann_file, not both")
            if keyword not in cfg:
                if train_ann_file is None:
                    raise ValueError(
                        f"RoISigmoidLoss: {kind} needs {keyword}; set train_ann_file (the training annotation "
                        "json it is counted from)"
                    )
                cfg[keyword] = count(train_ann_file).tolist()
        elif train_ann_file is not None:
            raise ValueError(
                f"RoISigmoidLoss: train_ann_file is only used by {sorted(STAT_ARGUMENTS)}; {kind} takes no "
                "dataset statistic"
            )
        cfg.setdefault("use_sigmoid", True)
        self.loss = MODELS.build(cfg)
        self.num_classes = int(getattr(self.loss, "num_classes", 0)) or None
        self.objectness = bool(getattr(self.loss, "objectness", False))

    def get_cls_channels(self, num_classes: int) -> int:
        """C (one logit per class), or C + 1 with an objectness output; called by ``BBoxHead`` with its class
        count."""
        if self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(
                f"RoISigmoidLoss: the head has {num_classes} classes but {type(self.loss).__name__} was built for "
                f"{self.num_classes}"
            )
        return num_classes + int(self.objectness)

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """(R, C) or (R, C + 1) logits -> (R, C + 1) scores: per-class sigmoids, then a zero background column;
        with objectness the loss's ``scores`` (classes times ``1 - sigmoid(z_bg)``), then ``sigmoid(z_bg)``."""
        if self.objectness:
            return torch.cat([self.loss.scores(cls_score), cls_score[:, -1:].sigmoid()], dim=1)
        return torch.cat([cls_score.sigmoid(), cls_score.new_zeros((cls_score.size(0), 1))], dim=1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Percent of RoIs whose predicted label is right; a RoI whose best class score is < 0.5 predicts
        background."""
        scores = self.get_activation(cls_score)[:, :-1]
        best, pred = scores.max(dim=1)
        pred = torch.where(best >= 0.5, pred, torch.full_like(pred, scores.size(1)))
        return {"acc": (pred == labels).float().mean() * 100}

    def forward(
        self,
        cls_score: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        """``cls_score`` (R, C) or (R, C + 1), ``labels`` (R,) with C = background, ``weight`` (R,): the inner
        loss."""
        return self.loss(
            cls_score, labels, weight, avg_factor=avg_factor, reduction_override=reduction_override
        )


# ---------------------------------------------------------------------------------------------- NorCal


@MODELS.register_module()
class NorCalShared2FCBBoxHead(Shared2FCBBoxHead):
    """mmdet's ``Shared2FCBBoxHead`` whose test-time class scores are NorCal-calibrated.

    NorCal (Pan et al., "On Model Calibration for Long-Tailed Object Detection and Instance Segmentation",
    NeurIPS 2021): each RoI's foreground scores become ``exp(z_c) / N_c ** gamma``, the background score stays,
    and the C + 1 scores are renormalised (``cytolt.calibration.norcal``). ``N_c`` is the number of training
    images that contain class c, as in the authors' code (``_get_frequencies(by="image")``, LVIS's
    ``image_count``); ``count_by="instances"`` is the variant with annotation counts. Training is unchanged (the
    loss sees the raw logits), so a checkpoint of the plain head loads as is: ``class_counts`` is a
    non-persistent buffer.

    Args:
        gamma: calibration strength >= 0 (0 is the plain softmax); tune it on held-out data
            (``scripts/lvis/norcal_sweep.py``).
        train_ann_file: training annotation file the counts come from.
        count_by: ``"images"`` (the authors') or ``"instances"``.
        class_counts: (C,) counts given directly instead of ``train_ann_file``.
        **kwargs: ``Shared2FCBBoxHead``'s arguments (``num_classes``, ``loss_cls``, ...). The loss must be a
            softmax one (C + 1 outputs): NorCal's rule needs the background column.
    """

    COUNT_BY = {"images": "images_per_class", "instances": "instances_per_class"}

    def __init__(
        self,
        *,
        gamma: float,
        train_ann_file: str | None = None,
        count_by: str = "images",
        class_counts: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.custom_cls_channels:
            raise ValueError(
                f"NorCalShared2FCBBoxHead needs a softmax loss_cls with C + 1 outputs; "
                f"{type(self.loss_cls).__name__} declares its own channels"
            )
        if (train_ann_file is None) == (class_counts is None):
            raise ValueError("NorCalShared2FCBBoxHead: give exactly one of train_ann_file and class_counts")
        if count_by not in self.COUNT_BY:
            raise ValueError(
                f"NorCalShared2FCBBoxHead: count_by must be one of {sorted(self.COUNT_BY)}; got {count_by!r}"
            )
        if not gamma >= 0:
            raise ValueError(f"NorCalShared2FCBBoxHead: gamma must be >= 0; got {gamma}")
        counts = (
            getattr(lvis_category_stats(train_ann_file), self.COUNT_BY[count_by])
            if train_ann_file is not None
            else class_counts
        )
        counts_t = torch.as_tensor(np.asarray(counts, dtype=np.float64), dtype=torch.float32)
        if counts_t.shape != (self.num_classes,):
            raise ValueError(
                f"NorCalShared2FCBBoxHead: {len(counts_t)} class counts for a head with {self.num_classes} classes"
            )
        self.gamma = float(gamma)
        self.count_by = count_by
        # A class absent from training would get an infinite boost; count it as one.
        self.register_buffer("class_counts", counts_t.clamp_min(1.0), persistent=False)

    def _predict_by_feat_single(
        self,
        roi: Tensor,
        cls_score: Tensor,
        bbox_pred: Tensor,
        img_meta: dict,
        rescale: bool = False,
        rcnn_test_cfg: Any = None,
    ) -> Any:
        if cls_score is not None and cls_score.numel() > 0:
            # mmdet turns cls_score into scores with a softmax; handing it the log of NorCal's probabilities
            # makes that softmax return them unchanged (each row already sums to 1).
            cls_score = norcal(cls_score, self.class_counts, self.gamma).log()
        return super()._predict_by_feat_single(roi, cls_score, bbox_pred, img_meta, rescale, rcnn_test_cfg)


# ---------------------------------------------------------------------------------------------- datasets


@DATASETS.register_module()
class ClassAwareMixDataset(MultiImageMixDataset):
    """mmdet's ``MultiImageMixDataset`` (used by ``CopyPaste``) that also answers ``get_cat_ids(idx)``.

    cytolt's ``RepeatFactorSampler`` and ``CDBSampler`` read each image's classes through ``get_cat_ids``,
    which mmdet's wrapper does not forward; this one asks the wrapped dataset.
    """

    def get_cat_ids(self, idx: int) -> list[int]:
        self.full_init()
        return self.dataset.get_cat_ids(idx)


# ---------------------------------------------------------------------------------------------- configs


def _replace_prefix(node: Any, old: str, new: str) -> Any:
    if isinstance(node, str):
        return new + node[len(old) :] if node.startswith(old) else node
    if isinstance(node, Mapping):
        return {k: _replace_prefix(v, old, new) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return type(node)(_replace_prefix(v, old, new) for v in node)
    return node


def retarget_config(
    cfg: Config,
    *,
    data_root: str | Path,
    classes: Sequence[str] | None = None,
    old_root: str | None = None,
) -> Config:
    """``cfg`` moved onto another LVIS-format data root, optionally with another class list (a new Config).

    Every string in the config that starts with the old root (``old_root``, default ``cfg.data_root``) now
    starts with ``data_root``: datasets, evaluators, the CDB hook's held-out set and the ``train_ann_file`` of
    losses and heads alike (``cytolt train --data-root`` rewrites only the dataloaders and evaluators). With
    ``classes``, every ``num_classes`` equal to the config's class count (1203 for LVIS v1) becomes
    ``len(classes)`` and every dataset's ``metainfo`` lists ``classes`` (label order of the new annotation
    files).
    """
    old = old_root if old_root is not None else cfg.get("data_root")
    if not old:
        raise ValueError("retarget_config: the config has no data_root; pass old_root")
    new = str(data_root).rstrip("/") + "/"
    tree = _replace_prefix(cfg.to_dict(), old, new)
    tree["data_root"] = new
    if classes is not None:
        classes = tuple(str(c) for c in classes)
        counts = class_counts_in(tree.get("model", {}))
        if len(counts) != 1:
            raise ValueError(
                f"retarget_config: expected one class count in the model, found {sorted(counts)}"
            )
        tree = retarget_classes(tree, counts.pop(), classes)
    # cfg_text keeps mmengine from re-reading the original file as this config's text; filename names the
    # copy the Runner dumps into its work_dir.
    note = f"# {cfg.filename or 'config'} moved to {new} by cytolt.mm.lvis.retarget_config\n"
    return Config(tree, cfg_text=note, filename=cfg.filename)
