"""The one interface the screening side sees: a ``Detector`` turns image batches into ``Detections``.

glossary:
    images       (B, 3, H, W) uint8 RGB tensor (or float in [0, 255]), as ``cytolt.io.TileStream`` yields.
    Detections   per image: boxes (N, 4) float32 xyxy in that image's pixels, scores (N,), labels (N,) 0-based,
                 optional class_scores (N, C); see :mod:`cytolt.detect.types`.
    model folder what ``cytolt export-model`` writes (:class:`~cytolt.detect.model_folder.ModelFolder`).
    engine       what runs the network: ``"torch"`` (eager, any device) or ``"onnx"`` (ONNX Runtime, CPU, the
                 folder's ``model.onnx``); both decode and suppress with the same torch code. ``"auto"``: the
                 folder's measured default on the CPU (``ModelFolder.default_engine``), torch on a GPU.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import torch

from cytolt.detect.model_folder import MODEL_FORMAT, ModelFolder, ModelInfo
from cytolt.detect.types import Detections

__all__ = [
    "ENGINES",
    "MODEL_FORMAT",
    "Detections",
    "Detector",
    "ModelFolder",
    "ModelInfo",
    "load",
    "pick_engine",
]

ENGINES = ("auto", *ModelFolder.ENGINES)


@runtime_checkable
class Detector(Protocol):
    """Anything with ``info`` and ``predict(images) -> list[Detections]`` (one per image)."""

    info: ModelInfo
    device: torch.device

    def predict(self, images: torch.Tensor) -> list[Detections]: ...


def pick_engine(folder: ModelFolder, device: torch.device, engine: str = "auto") -> str:
    """``engine`` itself, or for ``"auto"`` the folder's measured default on the CPU and torch elsewhere."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine != "auto":
        return engine
    return folder.default_engine if device.type == "cpu" else "torch"


def load(
    model: ModelFolder | str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    score_thr: float = 0.05,
    engine: str = "auto",
) -> Detector:
    """Load an exported model for inference on ``device`` (default: CUDA when available, else CPU).

    ``engine``: ``"torch"``, ``"onnx"`` (CPU only; the folder needs ``model.onnx``) or ``"auto"`` (see the
    module glossary). Weights are read from safetensors and model.onnx is checked against its recorded sha256:
    nothing is unpickled.
    """
    folder = model if isinstance(model, ModelFolder) else ModelFolder.read(model)
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    # the mmdet backends live at the framework edge
    from cytolt.mm.detector import MMDetDetector, OnnxDetector

    backend = OnnxDetector if pick_engine(folder, dev, engine) == "onnx" else MMDetDetector
    return backend(folder, device=dev, score_thr=score_thr)
