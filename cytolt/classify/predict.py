"""What screening calls: a loaded classifier that turns crops, or a slide's boxes, into class probabilities.

clf = CropClassifier.from_folder("models/cells")
probs = clf.predict_boxes(slide, boxes)          # (M, K) float32; crops cut as the classifier was trained
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cytolt.classify.crops import crops_from_boxes
from cytolt.classify.folder import ClassifierFolder, Probabilities, softmax

if TYPE_CHECKING:
    from cytolt.io import Slide

__all__ = ["CropClassifier"]


class CropClassifier:
    """A loaded classifier: crops in, class probabilities out (softmax over K, or what the head says).

    Attributes:
        model: the network, (N, 3, S, S) in [0, 1] -> (N, K) logits, in eval mode on ``device``.
        class_names: K names; mpp, crop_size, context: how its crops are cut (:mod:`cytolt.classify.crops`).
        identity: the model folder's identity (``"sha256:..."``), None for a model not read from a folder.
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
                batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + self.batch_size]))
                x = batch.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
                out[start : start + len(batch)] = self.probabilities(self.model(x)).float().cpu().numpy()
        return out

    def predict_boxes(self, slide: Slide, boxes_level0: np.ndarray) -> np.ndarray:
        """(M, K) float32 probabilities of the cells in level-0 boxes (M, 4) xyxy of an open slide
        (:func:`~cytolt.classify.crops.crops_from_boxes` with this classifier's geometry, then :meth:`predict`)."""
        crops = crops_from_boxes(slide, boxes_level0, size=self.crop_size, mpp=self.mpp, context=self.context)
        return self.predict(crops)
