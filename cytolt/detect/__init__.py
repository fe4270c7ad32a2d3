"""The one interface the screening side sees: a ``Detector`` turns image batches into ``Detections``.

glossary:
    images       (B, 3, H, W) uint8 RGB tensor (or float in [0, 255]), as ``cytolt.io.TileStream`` yields.
    Detections   per image: boxes (N, 4) float32 xyxy in that image's pixels, scores (N,), labels (N,) 0-based,
                 optional class_scores (N, C); see :mod:`cytolt.detect.types`.
    model dir    a folder written by ``cytolt export-model``: config.py, model.safetensors, model.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from cytolt.detect.types import Detections

__all__ = ["Detections", "Detector", "ModelInfo", "load", "read_model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """What a model dir says about its model: class names and colours, input mpp, training class counts."""

    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...] | None
    mpp: float | None
    class_counts: tuple[int, ...] | None
    path: Path


@runtime_checkable
class Detector(Protocol):
    """Anything with ``info`` and ``predict(images) -> list[Detections]`` (one per image)."""

    info: ModelInfo
    device: torch.device

    def predict(self, images: torch.Tensor) -> list[Detections]: ...


def read_model_info(model_dir: str | Path) -> ModelInfo:
    """Read ``model.json`` of a model dir; FileNotFoundError/ValueError name the folder and what is wrong."""
    folder = Path(model_dir)
    meta_path = folder / "model.json"
    for name in ("model.json", "model.safetensors", "config.py"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder} is not a cytolt model folder: {name} is missing (see `cytolt export-model`)"
            )
    try:
        meta = json.loads(meta_path.read_text())
        classes = tuple(str(c) for c in meta["classes"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{meta_path}: not a valid model description ({exc})") from exc
    colors = tuple(tuple(int(v) for v in c) for c in meta["colors"]) if meta.get("colors") else None
    counts = tuple(int(n) for n in meta["class_counts"]) if meta.get("class_counts") else None
    return ModelInfo(classes=classes, colors=colors, mpp=meta.get("mpp"), class_counts=counts, path=folder)


def load(
    model_dir: str | Path, device: str | torch.device | None = None, *, score_thr: float = 0.05
) -> Detector:
    """Load an exported model for inference on ``device`` (default: CUDA when available, else CPU).

    Weights are read from safetensors: nothing is unpickled.
    """
    info = read_model_info(model_dir)
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    from cytolt.mm.detector import MMDetDetector  # the mmdet backend lives at the framework edge

    return MMDetDetector(info, device=dev, score_thr=score_thr)
