"""The plain-data result a detector returns and every later stage passes on.

Glossary (N detections, C foreground classes):

- ``boxes``: (N, 4) float32, xyxy with ``x0 <= x1`` and ``y0 <= y1``; tile pixels as a detector returns them,
  level-0 slide pixels once :meth:`Detections.translate` / :meth:`Detections.scale` have moved them into the
  slide's frame.
- ``scores``: (N,) float32, the detector's confidence for ``labels``.
- ``labels``: (N,) int64, 0-based foreground class index (no background class).
- ``class_scores``: optional (N, C) float32 per-class scores, kept so post-hoc calibration (NorCal,
  temperature) can re-rank classes later.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Detections"]


def _as_tensor(value: Any, dtype: torch.dtype, name: str) -> torch.Tensor:
    try:
        if isinstance(value, torch.Tensor):
            return value.to(dtype)
        return torch.as_tensor(np.asarray(value), dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"Detections.{name} cannot be converted to a {dtype} tensor: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class Detections:
    """Boxes, scores and labels of one image (a tile, a region or a whole slide).

    Arrays given as numpy or lists are converted to tensors: boxes and scores to float32, labels to int64,
    class_scores to float32. Shapes are checked on construction; all tensors must be on one device.
    Instances are immutable: every helper returns a new ``Detections``.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    class_scores: torch.Tensor | None = None

    def __post_init__(self) -> None:
        boxes = _as_tensor(self.boxes, torch.float32, "boxes")
        scores = _as_tensor(self.scores, torch.float32, "scores")
        labels = _as_tensor(self.labels, torch.int64, "labels")
        # accept [] / np.empty(0) for "no detections"
        if boxes.numel() == 0 and boxes.dim() < 2:
            boxes = boxes.reshape(0, 4)
        if scores.numel() == 0:
            scores = scores.reshape(0)
        if labels.numel() == 0:
            labels = labels.reshape(0)
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"Detections.boxes must have shape (N, 4) xyxy; got {tuple(boxes.shape)}")
        n = boxes.shape[0]
        if scores.shape != (n,):
            raise ValueError(
                f"Detections.scores must have shape ({n},) to match boxes; got {tuple(scores.shape)}"
            )
        if labels.shape != (n,):
            raise ValueError(
                f"Detections.labels must have shape ({n},) to match boxes; got {tuple(labels.shape)}"
            )
        class_scores = None
        if self.class_scores is not None:
            class_scores = _as_tensor(self.class_scores, torch.float32, "class_scores")
            if class_scores.dim() != 2 or class_scores.shape[0] != n:
                raise ValueError(
                    f"Detections.class_scores must have shape ({n}, C); got {tuple(class_scores.shape)}"
                )
        devices = {t.device for t in (boxes, scores, labels, class_scores) if t is not None}
        if len(devices) > 1:
            raise ValueError(f"Detections tensors must share one device; got {sorted(map(str, devices))}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_scores", class_scores)

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def empty(cls, *, num_classes: int | None = None, device: torch.device | str = "cpu") -> Detections:
        """No detections; with ``num_classes`` the (0, C) ``class_scores`` is present too."""
        class_scores = None if num_classes is None else torch.zeros(0, num_classes, device=device)
        return cls(
            boxes=torch.zeros(0, 4, device=device),
            scores=torch.zeros(0, device=device),
            labels=torch.zeros(0, dtype=torch.int64, device=device),
            class_scores=class_scores,
        )

    @classmethod
    def cat(cls, items: Sequence[Detections]) -> Detections:
        """Concatenate detections (e.g. of all tiles of a slide, already in one frame).

        ``class_scores`` is kept only when every item has it with the same C; mixing items with and without it
        is an error rather than a silent drop. Items without detections are skipped, so an empty tile made
        with ``Detections.empty()`` joins tiles that have ``class_scores``. An empty sequence gives :meth:`empty`.
        """
        items = list(items)
        if not items:
            return cls.empty()
        filled = [d for d in items if len(d)]
        if not filled:
            widths = {d.num_classes for d in items}
            width = widths.pop() if len(widths) == 1 else None
            return cls.empty(num_classes=width, device=items[0].device)
        items = filled
        with_cs = [d.class_scores is not None for d in items]
        if any(with_cs) and not all(with_cs):
            raise ValueError("Detections.cat: some items have class_scores and some do not")
        class_scores = None
        if all(with_cs):
            widths = {d.class_scores.shape[1] for d in items}  # type: ignore[union-attr]
            if len(widths) > 1:
                raise ValueError(f"Detections.cat: class_scores widths differ: {sorted(widths)}")
            class_scores = torch.cat([d.class_scores for d in items])  # type: ignore[misc]
        return cls(
            boxes=torch.cat([d.boxes for d in items]),
            scores=torch.cat([d.scores for d in items]),
            labels=torch.cat([d.labels for d in items]),
            class_scores=class_scores,
        )

    # -- views and transforms -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    @property
    def num_classes(self) -> int | None:
        """C of ``class_scores``, or ``None`` when the detector gave no per-class scores."""
        return None if self.class_scores is None else int(self.class_scores.shape[1])

    def to(self, device: torch.device | str) -> Detections:
        """The same detections on ``device``."""
        return self._replace(
            boxes=self.boxes.to(device),
            scores=self.scores.to(device),
            labels=self.labels.to(device),
            class_scores=None if self.class_scores is None else self.class_scores.to(device),
        )

    def numpy(self) -> dict[str, np.ndarray]:
        """CPU numpy copies: ``{"boxes", "scores", "labels"}`` plus ``"class_scores"`` when present."""
        out = {
            "boxes": self.boxes.detach().cpu().numpy(),
            "scores": self.scores.detach().cpu().numpy(),
            "labels": self.labels.detach().cpu().numpy(),
        }
        if self.class_scores is not None:
            out["class_scores"] = self.class_scores.detach().cpu().numpy()
        return out

    def translate(self, dx: float, dy: float) -> Detections:
        """Shift boxes by (dx, dy) pixels, e.g. a tile's level-0 origin to move tile boxes into the slide frame."""
        offset = torch.tensor([dx, dy, dx, dy], dtype=self.boxes.dtype, device=self.device)
        return self._replace(boxes=self.boxes + offset)

    def scale(self, s: float | tuple[float, float]) -> Detections:
        """Multiply box coordinates by ``s`` (or ``(sx, sy)``), e.g. level-k or resampled pixels to level-0.

        Scale first, then translate: ``tile_dets.scale(downsample).translate(x0, y0)``.
        """
        sx, sy = (s, s) if isinstance(s, numbers.Real) else s
        if not (sx > 0 and sy > 0):
            raise ValueError(f"Detections.scale needs positive factors; got {s!r}")
        factor = torch.tensor([sx, sy, sx, sy], dtype=self.boxes.dtype, device=self.device)
        return self._replace(boxes=self.boxes * factor)

    def select(self, index: torch.Tensor | np.ndarray | Sequence[int] | Sequence[bool] | slice) -> Detections:
        """Subset by a boolean mask of length N, an integer index array or a slice."""
        if not isinstance(index, slice):
            index = torch.as_tensor(np.asarray(index) if not isinstance(index, torch.Tensor) else index)
            if index.dtype == torch.bool:
                if index.shape != (len(self),):
                    raise ValueError(
                        f"Detections.select: mask has shape {tuple(index.shape)}, need ({len(self)},)"
                    )
            elif index.numel() == 0:
                index = index.to(torch.int64)
            elif index.is_floating_point():
                raise ValueError(f"Detections.select: index must be bool or integer; got {index.dtype}")
            index = index.to(self.device)
        return self._replace(
            boxes=self.boxes[index],
            scores=self.scores[index],
            labels=self.labels[index],
            class_scores=None if self.class_scores is None else self.class_scores[index],
        )

    def _replace(self, **changes: Any) -> Detections:
        fields = {
            "boxes": self.boxes,
            "scores": self.scores,
            "labels": self.labels,
            "class_scores": self.class_scores,
        }
        fields.update(changes)
        return Detections(**fields)

    def __repr__(self) -> str:
        cs = "" if self.class_scores is None else f", C={self.class_scores.shape[1]}"
        return f"Detections(n={len(self)}{cs}, device={self.device})"
