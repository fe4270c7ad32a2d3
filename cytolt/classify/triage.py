"""Tile triage: a fast multi-label classifier that says which classes a tile holds, so that a screen could skip
tiles with nothing abnormal before the detector runs on them.

A tile (e.g. 256 x 256 px at the detector's mpp) is downsampled to ``input_size`` (64-128 px) and scored by the
backbone of :class:`cytolt.classify.model.CellClassifier` with a ``K``-way sigmoid head. The target is the set of
classes whose cells lie in the tile (multi-label, from a COCO file such as the synthetic patch dataset,
:func:`cytolt.synth.make_patch_dataset`). Trained with the Distribution-Balanced loss
(:mod:`cytolt.losses.distribution_balanced`; Wu et al., ECCV 2020, arXiv 2007.09654) with class-aware
re-sampling, the setting its re-balanced weights are derived for, or with plain BCE / focal loss and instance
sampling as comparisons.

The triage decision is one number per tile, the largest probability over the abnormal classes (ASC-US and
worse: ``ascus, lsil, hsil, scc, agc`` in cytolt's synthetic table); a threshold is chosen on a validation split
as the highest that keeps the recall of abnormal tiles at a target (0.99), and tiles below it would be skipped.

Glossary
    tiles     (N, H, W, 3) uint8 RGB; resized to (N, S, S, 3) with ``S = input_size`` (area interpolation).
    targets   (N, C) float32 in {0, 1}: tile n holds at least one cell of class c.
    counts    (N, C) int64: cells of class c in tile n (to count the abnormal cells a skip would lose).
    abnormal  column indices of the abnormal classes.

Nothing here imports mmdet or napari.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cytolt import bethesda
from cytolt.classify.model import CellClassifier
from cytolt.losses.distribution_balanced import DistributionBalancedLoss
from cytolt.losses.focal import sigmoid_focal_loss

LOSS_NAMES = ("db", "bce", "focal")
SAMPLERS = ("instance", "class_aware")
# The DB paper trains with class-aware re-sampling (the authors' configs: sampler='ClassAware'); the re-balanced
# weights correct exactly that sampler's over-drawing of co-occurring frequent labels.
DEFAULT_SAMPLER = {"db": "class_aware", "bce": "instance", "focal": "instance"}


def _read_coco(coco: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(coco, Mapping):
        return dict(coco)
    path = Path(coco)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable COCO json ({exc})") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise ValueError(f"{path}: a COCO file needs 'images', 'annotations' and 'categories'")
    return data


def coco_class_names(coco: Mapping[str, Any] | str | Path) -> tuple[str, ...]:
    """Category names in category-id order (the column order of :func:`tile_targets`)."""
    cats = sorted(_read_coco(coco)["categories"], key=lambda c: c["id"])
    return tuple(str(c["name"]) for c in cats)


def tile_counts(coco: Mapping[str, Any] | str | Path) -> np.ndarray:
    """Cells per class in every image of ``coco``: ``(N, C)`` int64, rows in ``coco['images']`` order.

    A category id not in ``categories`` or an annotation of an unknown image raises a ValueError.
    """
    data = _read_coco(coco)
    column = {c["id"]: k for k, c in enumerate(sorted(data["categories"], key=lambda c: c["id"]))}
    row = {img["id"]: n for n, img in enumerate(data["images"])}
    counts = np.zeros((len(row), len(column)), dtype=np.int64)
    for ann in data["annotations"]:
        if ann["category_id"] not in column:
            raise ValueError(
                f"annotation {ann.get('id')}: category_id {ann['category_id']} is not in categories"
            )
        if ann["image_id"] not in row:
            raise ValueError(f"annotation {ann.get('id')}: image_id {ann['image_id']} is not in images")
        counts[row[ann["image_id"]], column[ann["category_id"]]] += 1
    return counts


def tile_targets(coco: Mapping[str, Any] | str | Path) -> np.ndarray:
    """Which classes each image (tile) of ``coco`` holds: ``(N, C)`` float32 in {0, 1}."""
    return (tile_counts(coco) > 0).astype(np.float32)


def load_tiles(
    coco: Mapping[str, Any] | str | Path, image_dir: str | Path | None = None, *, size: int = 64
) -> np.ndarray:
    """The images of ``coco`` read and resized to ``(N, size, size, 3)`` uint8 RGB (area interpolation).

    ``image_dir`` defaults to the COCO file's folder (``file_name`` is relative to it, as
    :func:`cytolt.synth.make_patch_dataset` writes it).
    """
    if image_dir is None:
        if isinstance(coco, Mapping):
            raise ValueError("load_tiles: give image_dir when coco is a dict")
        image_dir = Path(coco).parent
    data = _read_coco(coco)
    out = np.empty((len(data["images"]), size, size, 3), dtype=np.uint8)
    for n, img in enumerate(data["images"]):
        path = Path(image_dir) / img["file_name"]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: image not found or not readable")
        out[n] = resize_tiles(bgr[None, :, :, ::-1], size)[0]
    return out


def resize_tiles(tiles: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, size, size, 3)`` uint8; area interpolation (no aliasing when shrinking)."""
    if tiles.ndim != 4 or tiles.shape[-1] != 3:
        raise ValueError(f"tiles must be (N, H, W, 3); got {tiles.shape}")
    if tiles.shape[1:3] == (size, size):
        return np.ascontiguousarray(tiles)
    return np.stack(
        [cv2.resize(np.ascontiguousarray(t), (size, size), interpolation=cv2.INTER_AREA) for t in tiles]
    )


def abnormal_indices(class_names: Sequence[str]) -> list[int]:
    """Columns of the abnormal classes (ASC-US and worse, :data:`cytolt.bethesda.ABNORMAL`)."""
    names = bethesda.classes_in(class_names, bethesda.ABNORMAL)
    return [list(class_names).index(n) for n in names]


class TriageModel(nn.Module):
    """CellClassifier backbone + ``K``-way linear head; sigmoid per class.

    ``forward(x (N, 3, S, S) float in [0, 1]) -> logits (N, K)``; :meth:`predict` takes uint8 tiles of any size.
    """

    def __init__(
        self, class_names: Sequence[str], *, input_size: int = 64, width: int = 16, stem: str = "s2"
    ) -> None:
        super().__init__()
        if not class_names:
            raise ValueError("TriageModel: class_names is empty")
        if input_size < 16:
            raise ValueError(f"TriageModel: input_size must be >= 16 px; got {input_size}")
        self.class_names = tuple(class_names)
        self.input_size = int(input_size)
        self.width = int(width)
        net = CellClassifier(len(self.class_names), width=width, stem=stem)
        self.backbone = net.backbone
        self.head = nn.Linear(net.feature_dim, len(self.class_names))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    @torch.no_grad()
    def predict(self, tiles: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, K)`` float32 of uint8 RGB tiles ``(N, H, W, 3)`` (resized to input_size)."""
        was_training = self.training
        self.eval()
        small = resize_tiles(tiles, self.input_size)
        device = next(self.parameters()).device
        out = []
        for i in range(0, len(small), batch_size):
            out.append(torch.sigmoid(self(_to_tensor(small[i : i + batch_size], device))).cpu())
        self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.class_names)), np.float32)


def _to_tensor(tiles: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(tiles)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def class_aware_indices(targets: np.ndarray, num: int, *, generator: torch.Generator) -> Tensor:
    """Class-aware re-sampling (Shen et al. 2016, as the DB paper uses it): ``num`` draws, each a class uniformly
    among those held by some tile, then a tile uniformly among the tiles holding it. Tiles with no class are
    never drawn."""
    held = [np.flatnonzero(targets[:, c] > 0) for c in range(targets.shape[1])]
    held = [torch.from_numpy(h) for h in held if len(h)]
    if not held:
        raise ValueError("class-aware sampling needs at least one tile with a class")
    classes = torch.randint(len(held), (num,), generator=generator)
    picks = torch.empty(num, dtype=torch.long)
    for c, members in enumerate(held):
        chosen = classes == c
        k = int(chosen.sum())
        if k:
            picks[chosen] = members[torch.randint(len(members), (k,), generator=generator)]
    return picks


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    # Tiles have no orientation: a random element of the dihedral group per sample (flip, then 0-3 quarter turns).
    codes = torch.randint(8, (x.size(0),), generator=generator)
    out = x.clone()
    for code in range(1, 8):
        chosen = codes == code
        if chosen.any():
            part = x[chosen]
            if code >= 4:
                part = part.flip(-1)
            out[chosen] = torch.rot90(part, code % 4, dims=(-2, -1))
    return out


def make_loss(name: str, targets: np.ndarray) -> Callable[[Tensor, Tensor], Tensor]:
    """The training loss called ``name`` (:data:`LOSS_NAMES`); DB takes its class frequencies from ``targets``."""
    if name == "db":
        freq = targets.sum(0)
        if (freq < 1).any():
            missing = np.flatnonzero(freq < 1).tolist()
            raise ValueError(
                f"loss 'db': classes {missing} are in no training tile (the DB weights divide by it)"
            )
        return DistributionBalancedLoss(freq.tolist(), float(len(targets)))
    if name == "bce":
        return F.binary_cross_entropy_with_logits
    if name == "focal":
        return lambda logits, t: sigmoid_focal_loss(logits, t)
    raise ValueError(f"loss must be one of {', '.join(map(repr, LOSS_NAMES))}; got {name!r}")


@dataclass
class TriageResult:
    """A trained triage model and how it got there."""

    model: TriageModel
    loss: str
    sampler: str
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train_triage(
    tiles: np.ndarray,
    targets: np.ndarray,
    *,
    class_names: Sequence[str],
    loss: str = "db",
    sampler: str | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 16,
    input_size: int = 64,
    stem: str = "s2",
    seed: int = 0,
    progress: bool = False,
) -> TriageResult:
    """Train a :class:`TriageModel` on ``tiles (N, H, W, 3)`` uint8 with ``targets (N, C)``.

    ``stem`` is the backbone's (:data:`cytolt.classify.model.STEMS`). AdamW with a cosine learning rate,
    dihedral augmentation; an epoch is ``N`` draws (``sampler`` ``"instance"``
    shuffles, ``"class_aware"`` re-samples; default per loss: :data:`DEFAULT_SAMPLER`). Deterministic from ``seed``.
    """
    if tiles.ndim != 4 or len(tiles) != len(targets):
        raise ValueError(
            f"tiles (N, H, W, 3) and targets (N, C) must agree; got {tiles.shape} and {targets.shape}"
        )
    if targets.ndim != 2 or targets.shape[1] != len(class_names):
        raise ValueError(f"targets must be (N, {len(class_names)}); got {targets.shape}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}")
    sampler = DEFAULT_SAMPLER.get(loss, "instance") if sampler is None else sampler
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))}; got {sampler!r}")
    loss_fn = make_loss(loss, targets)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = TriageModel(class_names, input_size=input_size, width=width, stem=stem)
    small = resize_tiles(tiles, input_size)
    y_all = torch.from_numpy(targets.astype(np.float32))
    steps = epochs * math.ceil(len(small) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        if sampler == "class_aware":
            order = class_aware_indices(targets, len(small), generator=generator)
        else:
            order = torch.randperm(len(small), generator=generator)
        total, batches = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            x = _augment(_to_tensor(small[idx.numpy()]), generator)
            value = loss_fn(model(x), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            schedule.step()
            total, batches = total + value.item(), batches + 1
        history.append({"epoch": epoch + 1, "loss": total / batches, "seconds": time.perf_counter() - t0})
        if progress:
            print(f"triage {loss} epoch {epoch + 1}/{epochs}: loss {total / batches:.4f}", flush=True)
    model.eval()
    return TriageResult(model, loss, sampler, history, time.perf_counter() - start)


def abnormal_scores(probs: np.ndarray, abnormal: Sequence[int]) -> np.ndarray:
    """``(N,)`` the largest probability over the abnormal columns: the tile's triage score."""
    if not len(abnormal):
        raise ValueError("abnormal names no column")
    return np.asarray(probs)[:, list(abnormal)].max(axis=1)


def _is_abnormal(targets: np.ndarray, abnormal: Sequence[int]) -> np.ndarray:
    return np.asarray(targets)[:, list(abnormal)].max(axis=1) > 0


def threshold_for_recall(
    probs: np.ndarray, targets: np.ndarray, abnormal: Sequence[int], *, recall: float = 0.99
) -> float:
    """The highest threshold ``t`` whose kept tiles (score >= t) hold at least ``recall`` of the abnormal tiles.

    With ``m`` abnormal tiles it is the ``ceil(recall m)``-th highest abnormal score: tiles tied with it are kept.
    """
    if not 0 < recall <= 1:
        raise ValueError(f"recall must be in (0, 1]; got {recall}")
    scores = abnormal_scores(probs, abnormal)[_is_abnormal(targets, abnormal)]
    if scores.size == 0:
        raise ValueError("threshold_for_recall: no abnormal tile in targets")
    k = math.ceil(recall * scores.size - 1e-9)
    return float(np.sort(scores)[::-1][k - 1])


@dataclass(frozen=True)
class TriageOutcome:
    """What a threshold does to a set of tiles."""

    threshold: float
    recall: float  # abnormal tiles kept / abnormal tiles (nan when there is none)
    skip_fraction: float  # tiles skipped / tiles
    skipped: np.ndarray  # (N,) bool: score < threshold
    tiles: int
    abnormal_tiles: int
    missed_tiles: int  # abnormal tiles skipped
    missed_cells: int | None = None  # abnormal cells in skipped tiles, when counts were given


def abnormal_tile_recall(
    probs: np.ndarray,
    targets: np.ndarray,
    abnormal: Sequence[int],
    threshold: float,
    *,
    counts: np.ndarray | None = None,
) -> TriageOutcome:
    """Recall of abnormal tiles and the tiles skipped when tiles scoring below ``threshold`` are skipped."""
    probs, targets = np.asarray(probs), np.asarray(targets)
    if probs.shape != targets.shape:
        raise ValueError(f"probs and targets must have one shape; got {probs.shape} and {targets.shape}")
    skipped = abnormal_scores(probs, abnormal) < threshold
    positive = _is_abnormal(targets, abnormal)
    missed = int((skipped & positive).sum())
    cells = None
    if counts is not None:
        cells = int(np.asarray(counts)[skipped][:, list(abnormal)].sum())
    return TriageOutcome(
        threshold=float(threshold),
        recall=float(1 - missed / positive.sum()) if positive.any() else float("nan"),
        skip_fraction=float(skipped.mean()) if len(skipped) else float("nan"),
        skipped=skipped,
        tiles=len(skipped),
        abnormal_tiles=int(positive.sum()),
        missed_tiles=missed,
        missed_cells=cells,
    )


__all__ = [
    "DEFAULT_SAMPLER",
    "LOSS_NAMES",
    "SAMPLERS",
    "TriageModel",
    "TriageOutcome",
    "TriageResult",
    "abnormal_indices",
    "abnormal_scores",
    "abnormal_tile_recall",
    "class_aware_indices",
    "coco_class_names",
    "load_tiles",
    "make_loss",
    "resize_tiles",
    "threshold_for_recall",
    "tile_counts",
    "tile_targets",
    "train_triage",
]
