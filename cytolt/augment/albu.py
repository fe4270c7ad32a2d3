"""Albumentations (2.0.x) adapter for ``CellCopyPaste``: a ``DualTransform`` that adds boxes and masks.

Use inside ``A.Compose`` with ``bbox_params``; labels travel in one label field (default ``'labels'``) or, when
``label_fields`` is empty, as the 5th bbox column::

    cp = CellCopyPaste(bank=CellBank.build(ann, img_dir), class_weights="inverse")
    aug = A.Compose([A.HorizontalFlip(), CellCopyPasteAlbu(copy_paste=cp)],
                    bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]), seed=0)
    out = aug(image=img, bboxes=boxes, labels=labels, masks=masks)

``masks`` (N, H, W) must be the instance masks of the N boxes, in order (pass ``np.zeros((0, H, W))``, not
``[]``, for an image without cells: albumentations never hands an empty list to a transform). Pasted cells
are drawn from ``copy_paste.bank``; their labels are class indices, or the bank's class names when the
label field holds strings. Randomness comes from the transform's generator, so ``Compose(seed=...)`` makes
runs repeatable. Albumentations' own box filters (``min_area``, ...) run after this transform and do not touch
masks, so keep them off when masks must stay aligned with boxes.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
from albumentations.core.type_definitions import Targets

from cytolt.augment.copy_paste import CellCopyPaste

__all__ = ["CellCopyPasteAlbu"]


class CellCopyPasteAlbu(A.DualTransform):
    """Albumentations transform pasting cells from a ``CellCopyPaste``'s bank. Targets: image, masks, bboxes.

    copy_paste: the configured ``CellCopyPaste`` (must hold a bank). label_field: the ``BboxParams`` label
    field that carries the class. p: probability of applying (default 1: the count of pasted cells is
    already random, ``U{0..max_pasted}``).
    """

    _targets = (Targets.IMAGE, Targets.MASK, Targets.BBOXES)

    def __init__(self, *, copy_paste: CellCopyPaste, label_field: str = "labels", p: float = 1.0) -> None:
        super().__init__(p=p)
        if not isinstance(copy_paste, CellCopyPaste):
            raise ValueError(f"copy_paste must be a CellCopyPaste; got {type(copy_paste).__name__}")
        if copy_paste.bank is None:
            raise ValueError(
                "CellCopyPasteAlbu pastes from a bank: build CellCopyPaste(bank=CellBank.build(...))"
            )
        self.copy_paste = copy_paste
        self.label_field = label_field

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("copy_paste", "label_field")

    @property
    def targets_as_params(self) -> list[str]:
        return ["image", "bboxes"]

    def _label_column(self, bboxes: np.ndarray) -> tuple[int | None, list[str]]:
        """Index of the class column in the preprocessed bbox array, and the processor's label fields."""
        proc = self.get_processor("bboxes")
        fields = list(proc.params.label_fields or []) if proc is not None else []
        if fields:
            if fields != [self.label_field]:
                raise ValueError(
                    f"CellCopyPasteAlbu knows the label of a pasted cell only: bbox_params.label_fields must be "
                    f"[{self.label_field!r}]; got {fields}"
                )
            return 4, fields
        return (4 if bboxes.shape[1] >= 5 else None), fields

    def _encode_labels(self, labels: np.ndarray, fields: list[str]) -> np.ndarray:
        """(K,) class indices -> (K, 1) label column as albumentations encodes it."""
        if not fields:
            return labels.reshape(-1, 1).astype(np.float32)
        proc = self.get_processor("bboxes")
        manager = proc.label_manager
        meta = manager.metadata.get("bboxes", {}).get(self.label_field)
        values: list[Any]
        if meta is not None and not meta.is_numerical:
            names = self.copy_paste.bank.classes
            values = [names[int(k)] for k in labels]
        else:
            values = [int(k) for k in labels]
        return np.asarray(manager.process_field("bboxes", self.label_field, values), np.float32).reshape(
            -1, 1
        )

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        image = data["image"]
        if image.dtype != np.uint8:
            raise ValueError(
                f"CellCopyPasteAlbu expects a uint8 image; got {image.dtype} (place it before Normalize)"
            )
        h, w = image.shape[:2]
        bboxes = np.asarray(data["bboxes"], np.float32)
        if bboxes.ndim != 2 or bboxes.shape[1] < 4:
            bboxes = bboxes.reshape(0, 4)
        col, fields = self._label_column(bboxes)
        n_cols = 4 + (1 if fields or col is not None else 0)
        if len(bboxes) and bboxes.shape[1] != n_cols:
            raise ValueError(
                f"CellCopyPasteAlbu supports bboxes with 4 coordinates and one label; got {bboxes.shape[1]} columns"
            )
        masks = data.get("masks")
        if isinstance(masks, (list, tuple)):
            masks = np.stack(masks) if len(masks) else None
        if masks is not None and len(masks) != len(bboxes):
            raise ValueError(
                f"masks must be the instance masks of the boxes: {len(masks)} masks for {len(bboxes)} boxes"
            )
        pixel = bboxes[:, :4] * np.array([w, h, w, h], np.float32)
        result = self.copy_paste.apply(
            image,
            pixel,
            np.arange(len(bboxes)),
            None if masks is None else masks.astype(bool),
            rng=self.random_generator,
        )
        n_kept = len(result.kept)
        kept_rows = bboxes[result.kept].copy()
        kept_rows[:, :4] = result.boxes[:n_kept] / np.array([w, h, w, h], np.float32)
        new = result.boxes[n_kept:] / np.array([w, h, w, h], np.float32)
        if n_cols == 5:
            new = np.hstack([new, self._encode_labels(result.labels[n_kept:], fields)])
        if len(kept_rows) == 0:
            kept_rows = kept_rows.reshape(0, n_cols)
        out_boxes = np.vstack([kept_rows, new.astype(np.float32)])
        out_masks = None
        if result.masks is not None:
            out_masks = result.masks.astype(
                data["masks"].dtype if isinstance(data.get("masks"), np.ndarray) else np.uint8
            )
        return {"cp_image": result.image, "cp_bboxes": out_boxes, "cp_masks": out_masks}

    def apply(self, img: np.ndarray, cp_image: np.ndarray, **params: Any) -> np.ndarray:
        return cp_image

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        raise ValueError("CellCopyPasteAlbu works on instance masks: pass masks=(N, H, W), not mask=")

    def apply_to_masks(
        self, masks: np.ndarray, cp_masks: np.ndarray | None = None, **params: Any
    ) -> np.ndarray:
        return masks if cp_masks is None else cp_masks

    def apply_to_bboxes(self, bboxes: np.ndarray, cp_bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return cp_bboxes
