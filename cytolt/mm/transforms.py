"""mmdet 3 pipeline transforms built on ``cytolt.augment``.

``CellCopyPasteTransform`` is registered in ``mmdet.registry.TRANSFORMS`` as ``'CellCopyPaste'`` (mmdet's own
``CopyPaste`` keeps its name). A pure-Python config::

    from cytolt.mm.transforms import CellCopyPasteTransform
    train_pipeline = [
        dict(type=LoadImageFromFile), dict(type=LoadAnnotations, with_bbox=True, with_mask=True),
        dict(type=CellCopyPasteTransform, class_weights='inverse', max_pasted=8,
             bank=dict(ann_file='data/tct/train.json', img_dir='data/tct/images')),
        dict(type=PackDetInputs),
    ]

Put it before ``Normalize``/``PackDetInputs`` (it needs the uint8 image). Inside mmdet's
``MultiImageMixDataset`` it pastes from the other image it is handed (``results['mix_results'][0]``, the
paper's setting); otherwise from the bank.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks

from cytolt.augment import CellBank, CellCopyPaste

__all__ = ["CellCopyPasteTransform"]


def _boxes_np(boxes: Any) -> np.ndarray:
    if boxes is None:
        return np.zeros((0, 4), np.float32)
    if hasattr(boxes, "tensor"):
        return boxes.tensor.detach().cpu().numpy().astype(np.float32).reshape(-1, 4)
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def _masks_np(masks: Any, n: int, shape: tuple[int, int]) -> np.ndarray | None:
    if masks is None:
        return None
    if isinstance(masks, (BitmapMasks, PolygonMasks)):
        arr = masks.to_ndarray()
    else:
        arr = np.asarray(masks)
    return arr.astype(bool).reshape(n, *shape)


@TRANSFORMS.register_module(name="CellCopyPaste")
class CellCopyPasteTransform(BaseTransform):
    """Cell copy-paste on an mmdet 3 ``results`` dict (see ``cytolt.augment.CellCopyPaste`` for the rules).

    Required keys: ``img`` (H, W, 3) uint8 BGR, ``gt_bboxes`` (HorizontalBoxes), ``gt_bboxes_labels`` (N,).
    Optional: ``gt_masks`` (BitmapMasks or PolygonMasks; polygons come back as BitmapMasks),
    ``gt_ignore_flags`` (N,) bool (pasted cells get False), ``mix_results`` (a source image).
    Modified: the same keys.

    bank: a ``CellBank``, or a dict of ``CellBank.build`` arguments (``ann_file``, ``img_dir``, ``classes``,
    ``cache_dir``, ``margin``, ``max_per_class``, ``seed``), built once here before workers start; None
    when the transform only pastes from ``mix_results``. ``**options`` are ``CellCopyPaste``'s keyword
    options (``max_pasted``, ``class_weights``, ``max_overlap``, ``scale``, ``rotate``, ``flip``,
    ``blend_sigma``, ``match_stain``, ``bbox_occluded_thr``, ``mask_occluded_thr``, ``seed``, ...).
    """

    def __init__(self, *, bank: CellBank | dict | None = None, **options: Any) -> None:
        if isinstance(bank, dict):
            unknown = set(bank) - {
                "ann_file",
                "img_dir",
                "classes",
                "cache_dir",
                "margin",
                "max_per_class",
                "seed",
            }
            if unknown or not {"ann_file", "img_dir"} <= set(bank):
                raise ValueError(
                    f"bank dict needs 'ann_file' and 'img_dir' (optional: classes, cache_dir, margin, "
                    f"max_per_class, seed); got keys {sorted(bank)}"
                )
            bank = CellBank.build(
                **{k: (list(v) if k == "classes" and v is not None else v) for k, v in bank.items()}
            )
        elif bank is not None and not isinstance(bank, CellBank):
            raise ValueError(
                f"bank must be a CellBank, a dict of CellBank.build arguments or None; got {type(bank).__name__}"
            )
        self.copy_paste = CellCopyPaste(bank=bank, **options)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.copy_paste!r})"

    def get_indexes(self, dataset: Any) -> int:
        """Index of the source image (called by mmdet's ``MultiImageMixDataset``)."""
        return int(np.random.randint(len(dataset)))

    def transform(self, results: dict) -> dict:
        img = results["img"]
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f"CellCopyPaste needs the uint8 (H, W, 3) image; got {img.dtype} {img.shape} "
                "(put it before Normalize / PackDetInputs)"
            )
        h, w = img.shape[:2]
        gt_boxes = results.get("gt_bboxes")
        boxes = _boxes_np(gt_boxes)
        labels = np.asarray(results.get("gt_bboxes_labels", np.zeros(len(boxes), np.int64)), np.int64)
        masks = _masks_np(results.get("gt_masks"), len(boxes), (h, w))

        source = None
        mix = results.get("mix_results")
        if mix:
            s = mix[0]
            s_boxes = _boxes_np(s.get("gt_bboxes"))
            s_img = s["img"]
            s_masks = _masks_np(s.get("gt_masks"), len(s_boxes), s_img.shape[:2])
            s_labels = np.asarray(s.get("gt_bboxes_labels", np.zeros(len(s_boxes), np.int64)), np.int64)
            source = (np.ascontiguousarray(s_img[..., ::-1]), s_boxes, s_labels, s_masks)
        elif self.copy_paste.bank is None:
            raise ValueError(
                "CellCopyPaste has neither a bank nor mix_results: give bank=dict(ann_file=..., img_dir=...)"
            )

        # The bank holds RGB crops; mmdet images are BGR.
        r = self.copy_paste.apply(np.ascontiguousarray(img[..., ::-1]), boxes, labels, masks, source=source)
        results["img"] = np.ascontiguousarray(r.image[..., ::-1])
        box_type = type(gt_boxes) if gt_boxes is not None and hasattr(gt_boxes, "tensor") else HorizontalBoxes
        results["gt_bboxes"] = box_type(r.boxes.reshape(-1, 4))
        results["gt_bboxes_labels"] = r.labels.astype(np.int64)
        n_new = len(r.boxes) - len(r.kept)
        flags = results.get("gt_ignore_flags")
        if flags is None:
            flags = np.zeros(len(boxes), bool)
        results["gt_ignore_flags"] = np.concatenate([np.asarray(flags, bool)[r.kept], np.zeros(n_new, bool)])
        if r.masks is not None:
            results["gt_masks"] = BitmapMasks(r.masks.astype(np.uint8), h, w)
        return results
