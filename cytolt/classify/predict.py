"""What screening calls: a loaded classifier that turns crops, or a slide's boxes, into class probabilities.

clf = CropClassifier.from_folder("models/cells")
probs = clf.predict_boxes(slide, boxes)          # (M, K) float32; crops cut as the classifier was trained
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cytolt.classify.crops import CropSet, crops_from_boxes
from cytolt.classify.folder import ClassifierFolder, Probabilities, softmax
from cytolt.classify.metrics import classification_report

if TYPE_CHECKING:
    from cytolt.io import Slide

__all__ = ["CropClassifier", "write_predictions_csv"]


class CropClassifier:
    """A loaded classifier: crops in, class probabilities out (softmax over K, or what the head says).

    Attributes:
        model: the network, (N, 3, S, S) in [0, 1] -> (N, K) logits, in eval mode on ``device``.
        class_names: K names; mpp, crop_size, context: how its crops are cut (:mod:`cytolt.classify.crops`).
        identity: the model folder's identity (``"sha256:..."``), None for a model not read from a folder.
        train_counts: (K,) training crops per class (what the shot groups of :meth:`evaluate` rest on), or None.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        class_names: tuple[str, ...],
        mpp: float,
        crop_size: int,
        context: float,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        probabilities: Probabilities = softmax,
        identity: str | None = None,
        train_counts: Sequence[int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.class_names = tuple(class_names)
        self.mpp = float(mpp)
        self.crop_size = int(crop_size)
        self.context = float(context)
        self.batch_size = int(batch_size)
        self.probabilities = probabilities
        self.identity = identity
        self.train_counts = None if train_counts is None else tuple(int(n) for n in train_counts)

    @classmethod
    def from_folder(
        cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu", batch_size: int = 64
    ) -> CropClassifier:
        """Load a classifier folder (:class:`~cytolt.classify.folder.ClassifierFolder`)."""
        folder = ClassifierFolder.read(path)
        return cls(
            folder.load(device=device),
            class_names=folder.classes,
            mpp=folder.mpp,
            crop_size=folder.crop_size,
            context=folder.context,
            device=device,
            batch_size=batch_size,
            probabilities=folder.probabilities(),
            identity=folder.identity(),
            train_counts=folder.train_counts,
        )

    def __repr__(self) -> str:
        return (
            f"CropClassifier({len(self.class_names)} classes, {self.crop_size} px at {self.mpp:g} um/px, "
            f"device={self.device})"
        )

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """(M, S, S, 3) uint8 RGB crops -> (M, K) float32 probabilities, in batches of ``batch_size``."""
        crops = np.asarray(crops)
        s = self.crop_size
        if crops.ndim != 4 or crops.shape[1:] != (s, s, 3) or crops.dtype != np.uint8:
            raise ValueError(
                f"crops must be (M, {s}, {s}, 3) uint8 for this classifier; got {crops.shape} {crops.dtype}"
            )
        out = np.empty((len(crops), len(self.class_names)), np.float32)
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                # a copy: crops may be a read-only memory map, which torch will not wrap
                batch = torch.from_numpy(np.array(crops[start : start + self.batch_size]))
                x = batch.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
                out[start : start + len(batch)] = self.probabilities(self.model(x)).float().cpu().numpy()
        return out

    def predict_boxes(self, slide: Slide, boxes_level0: np.ndarray) -> np.ndarray:
        """(M, K) float32 probabilities of the cells in level-0 boxes (M, 4) xyxy of an open slide
        (:func:`~cytolt.classify.crops.crops_from_boxes` with this classifier's geometry, then :meth:`predict`)."""
        crops = crops_from_boxes(slide, boxes_level0, size=self.crop_size, mpp=self.mpp, context=self.context)
        return self.predict(crops)

    def check_crops(self, crops: CropSet) -> None:
        """Raise ValueError when a crop set was not cut as this classifier's crops are (classes, size, mpp)."""
        problems = []
        if tuple(crops.class_names) != self.class_names:
            problems.append(
                f"classes {list(crops.class_names)} are not the classifier's {list(self.class_names)}"
            )
        if crops.size != self.crop_size:
            problems.append(f"crops of {crops.size} px, the classifier takes {self.crop_size} px")
        if not math.isclose(crops.mpp, self.mpp, rel_tol=1e-6):
            problems.append(f"crops at {crops.mpp:g} um/px, the classifier's at {self.mpp:g} um/px")
        if problems:
            raise ValueError("; ".join(problems))

    def evaluate(self, crops: CropSet, *, train_counts: Sequence[int] | None = None) -> dict[str, Any]:
        """:func:`~cytolt.classify.metrics.classification_report` of this classifier on a labelled crop set
        (checked with :meth:`check_crops`); shot groups by ``train_counts`` (default: the folder's)."""
        self.check_crops(crops)
        counts = train_counts if train_counts is not None else self.train_counts
        if counts is None:
            raise ValueError(
                "evaluate needs train_counts (the shot groups rest on them): this classifier has none"
            )
        probs = self.predict(crops.images)
        return classification_report(probs, crops.labels, counts, class_names=self.class_names, logits=False)


def write_predictions_csv(
    path: str | os.PathLike[str], crops: CropSet, probs: np.ndarray, class_names: Sequence[str]
) -> Path:
    """One row per crop: ``index, source, id, x0, y0, x1, y1, true, predicted, score, p_<class>...``.

    ``true`` is the crop set's label (its class name), ``predicted`` the most probable class, ``score`` its
    probability; boxes as the crop set records them (level-0 or image px).
    """
    probs = np.asarray(probs)
    if probs.shape != (len(crops), len(class_names)):
        raise ValueError(f"probs must be ({len(crops)}, {len(class_names)}); got {probs.shape}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = ["index", "source", "id", "x0", "y0", "x1", "y1", "true", "predicted", "score"]
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header + [f"p_{c}" for c in class_names])
        for i, (record, label, row) in enumerate(zip(crops.sources, crops.labels, probs, strict=True)):
            box = record.get("box") or [""] * 4
            best = int(row.argmax())
            writer.writerow(
                [i, record.get("source", ""), record.get("id", ""), *box, crops.class_names[int(label)]]
                + [class_names[best], f"{row[best]:.6f}"]
                + [f"{p:.6f}" for p in row]
            )
    return out
