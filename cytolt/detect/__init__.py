"""The one interface the screening side sees: a ``Detector`` turns image batches into ``Detections``.

glossary:
    images       (B, 3, H, W) uint8 RGB tensor (or float in [0, 255]), as ``cytolt.io.TileStream`` yields.
    Detections   per image: boxes (N, 4) float32 xyxy in that image's pixels, scores (N,), labels (N,) 0-based,
                 optional class_scores (N, C); see :mod:`cytolt.detect.types`.
    model folder what ``cytolt export-model`` writes (:class:`~cytolt.detect.model_folder.ModelFolder`).
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import torch

from cytolt.detect.model_folder import MODEL_FORMAT, ModelFolder, ModelInfo
from cytolt.detect.types import Detections

__all__ = ["MODEL_FORMAT", "Detections", "Detector", "ModelFolder", "ModelInfo", "load"]


@runtime_checkable
class Detector(Protocol):
    """Anything with ``info`` and ``predict(images) -> list[Detections]`` (one per image)."""

    info: ModelInfo
    device: torch.device

    def predict(self, images: torch.Tensor) -> list[Detections]: ...


def load(
    model: ModelFolder | str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    score_thr: float = 0.05,
) -> Detector:
    """Load an exported model for inference on ``device`` (default: CUDA when available, else CPU).

    Weights are read from safetensors: nothing is unpickled.
    """
    folder = model if isinstance(model, ModelFolder) else ModelFolder.read(model)
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    from cytolt.mm.detector import MMDetDetector  # the mmdet backend lives at the framework edge

    return MMDetDetector(folder, device=dev, score_thr=score_thr)
