"""Copy-paste augmentation for cells (Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method
for Instance Segmentation", CVPR 2021), with the placement rules cytology needs.

Glossary (all coordinates are pixels of the image being augmented, x to the right, y down):

- ``image``: (H, W, 3) uint8, channel order is the caller's (RGB here, BGR in mmdet; stain matching is a
  per-channel ratio, so the order only has to agree between the image and the cells pasted into it).
- ``boxes``: (N, 4) float32 xyxy with pixel-edge convention: a mask whose pixels span columns ``x0..x1``
  inclusive has the box ``(x0, y0, x1 + 1, y1 + 1)`` (the convention of mmdet's ``BitmapMasks.get_bboxes``).
- ``labels``: (N,) integer class indices (contiguous, 0-based).
- ``masks``: (N, H, W) bool instance masks, or ``None`` for a boxes-only dataset; objects without masks are
  treated as the ellipse inscribed in their box when occlusion is computed.
- ``CellInstance``: one cell cut out of an image with a small context margin: a crop, a soft alpha matte and
  the median background colour of the image it came from (for stain matching); defined in ``cells.py`` with
  the helpers that cut cells, shared with the cell bank.

Rules (paper, Sec. 3): the number of objects taken from a source image is ``m ~ U{0..n}``; a pasted object
overwrites the destination under its mask; destination objects occluded by the pasted union mask get their
box re-derived from the visible mask and are kept if every box coordinate moved by at most
``bbox_occluded_thr`` (10 px) or more than ``mask_occluded_thr`` (300) pixels remain visible, dropped otherwise
(mmdet 3 ``CopyPaste`` uses the same two thresholds).

Cytology additions: cells come from a ``CellBank`` or a source image and are placed at random positions (not
in place as in the paper: the source is another field of view) where they cover at most ``max_overlap`` of
their own area of existing cells; their class is drawn with configurable class weights (rare-biased); each
pasted cell is randomly flipped, rotated and scaled, its edges can be Gaussian-blended and its colours matched
to the destination's background (per-channel ratio of the two background colours, a von Kries-style white
balance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from cytolt.augment.bank import CellBank
from cytolt.augment.cells import CellInstance, background_colour, cut_instances, masks_to_boxes, soft_ellipse
from cytolt.category_stats import RFS_THR, class_repeat_factors, instances_per_class

# Paper / mmdet 3 CopyPaste defaults (Ghiasi et al. 2021; mmdet.datasets.transforms.CopyPaste).
BBOX_OCCLUDED_THR = 10
MASK_OCCLUDED_THR = 300
ROTATIONS = ("free", "90", "none")
CLASS_WEIGHT_MODES = ("instance", "uniform", "inverse", "rfs")


class Pasted(NamedTuple):
    """Result of one copy-paste: the augmented sample plus which destination objects survived.

    image (H, W, 3) uint8; boxes (M, 4) float32 xyxy; labels (M,); masks (M, H, W) bool or None;
    kept: (K,) int64 indices into the destination's objects, in order; the M - K pasted objects follow them.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    kept: np.ndarray


# --------------------------------------------------------------------------------------------- small helpers


def _mask_box(mask: np.ndarray) -> np.ndarray:
    return masks_to_boxes(mask[None])[0]


def _transform_instance(
    inst: CellInstance,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float],
    rotate: str,
    flip: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Random flip, rotation and scale of one cell. Returns (crop (h, w, 3) uint8, alpha (h, w) float32)."""
    img, alpha = inst.image, inst.alpha
    if flip:
        if rng.random() < 0.5:
            img, alpha = img[:, ::-1], alpha[:, ::-1]
        if rng.random() < 0.5:
            img, alpha = img[::-1], alpha[::-1]
    angle = 0.0
    if rotate == "90":
        k = int(rng.integers(4))
        img, alpha = np.rot90(img, k), np.rot90(alpha, k)
    elif rotate == "free":
        angle = float(rng.uniform(0.0, 360.0))
    lo, hi = scale
    # Log-uniform so that x0.8 and x1.25 are equally likely.
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    img, alpha = np.ascontiguousarray(img), np.ascontiguousarray(alpha)
    if angle == 0.0 and s == 1.0:
        return img, alpha
    h, w = alpha.shape
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, s)
    # Expand the canvas to the rotated, scaled rectangle so no part of the cell is cut off.
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw = max(int(np.ceil(h * sin + w * cos)), 1)
    nh = max(int(np.ceil(h * cos + w * sin)), 1)
    m[0, 2] += nw / 2.0 - w / 2.0
    m[1, 2] += nh / 2.0 - h / 2.0
    img = cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    alpha = cv2.warpAffine(
        alpha, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return img, alpha


# --------------------------------------------------------------------------------------------- core


def _check_inputs(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, masks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8; got shape {image.shape} dtype {image.dtype}")
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels)
    if len(labels) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
    if masks is not None:
        masks = np.asarray(masks).astype(bool, copy=False)
        if masks.shape != (len(boxes), *image.shape[:2]):
            raise ValueError(f"masks must be (N, H, W) = {(len(boxes), *image.shape[:2])}; got {masks.shape}")
    return boxes, labels, masks


def paste_instances(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray | None,
    sources: Sequence[CellInstance],
    *,
    rng: np.random.Generator,
    max_overlap: float = 0.1,
    max_tries: int = 10,
    scale: tuple[float, float] = (0.8, 1.25),
    rotate: str = "free",
    flip: bool = True,
    blend_sigma: float = 1.0,
    match_stain: bool = True,
    bbox_occluded_thr: float = BBOX_OCCLUDED_THR,
    mask_occluded_thr: int = MASK_OCCLUDED_THR,
) -> Pasted:
    """Paste ``sources`` into the image and apply the occlusion rules; see ``paste_cells`` for the arguments.

    Returns a ``Pasted`` that also says which destination objects were kept (``kept``), which the mmdet and
    albumentations adapters need to carry per-object fields (ignore flags) along.
    """
    boxes, labels, masks = _check_inputs(image, boxes, labels, masks)
    if rotate not in ROTATIONS:
        raise ValueError(f"rotate must be one of {ROTATIONS}; got {rotate!r}")
    if not 0.0 <= max_overlap <= 1.0:
        raise ValueError(f"max_overlap must be in [0, 1]; got {max_overlap}")
    h, w = image.shape[:2]
    n_dst = len(boxes)
    # Objects are kept as (y0, x0, local mask) windows so that the work scales with the cells' area, not with
    # objects x image size. Destination windows are the masks' own boxes (or the boxes, for ellipses).
    objs = _destination_windows(boxes, masks, (h, w))
    occupancy = np.zeros((h, w), bool)
    for y0, x0, local in objs:
        occupancy[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] |= local
    dst_bg = background_colour(image, occupancy) if match_stain else None

    out = image.copy()
    pasted_labels: list[int] = []
    for inst in sources:
        crop, alpha = _transform_instance(inst, rng, scale=scale, rotate=rotate, flip=flip)
        hard = alpha >= 0.5
        area = int(hard.sum())
        ch, cw = hard.shape
        if area == 0 or ch > h or cw > w:
            continue  # nothing to paste, or the cell does not fit in this image
        for _ in range(max_tries):
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
            if np.count_nonzero(occupancy[y0 : y0 + ch, x0 : x0 + cw] & hard) <= max_overlap * area:
                break
        else:
            continue  # crowded field: skip this cell rather than bury existing ones
        src = crop.astype(np.float32)
        if dst_bg is not None and inst.background is not None:
            # Per-channel ratio of background colours; clipped so a dark or odd source cannot blow up colours.
            ratio = np.clip(dst_bg / np.maximum(inst.background, 1.0), 0.5, 2.0)
            src = src * ratio
        a = alpha
        if blend_sigma > 0:
            a = cv2.GaussianBlur(alpha, (0, 0), blend_sigma, borderType=cv2.BORDER_CONSTANT)
        a = a[..., None]
        win = out[y0 : y0 + ch, x0 : x0 + cw]
        win[:] = np.clip(a * src + (1.0 - a) * win.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
        occupancy[y0 : y0 + ch, x0 : x0 + cw] |= hard
        objs.append((y0, x0, hard))
        pasted_labels.append(inst.label)

    n_new = len(pasted_labels)
    n_all = n_dst + n_new
    all_labels = np.concatenate([labels, np.asarray(pasted_labels, dtype=labels.dtype)]) if n_new else labels
    old_boxes = np.zeros((n_all, 4), np.float32)
    old_boxes[:n_dst] = boxes
    # Occlusion: an object is covered by everything pasted after it (destination objects by all pasted ones).
    cover = np.zeros((h, w), bool)
    visible: list[np.ndarray] = [np.zeros(0, bool)] * n_all
    touched = np.zeros(n_all, bool)
    for j in range(n_all - 1, -1, -1):
        y0, x0, local = objs[j]
        sl = (slice(y0, y0 + local.shape[0]), slice(x0, x0 + local.shape[1]))
        vis = local & ~cover[sl]
        visible[j] = vis
        if j >= n_dst:
            old_boxes[j] = _mask_box(local) + (x0, y0, x0, y0)
            cover[sl] |= local
        touched[j] = n_new > 0 and np.count_nonzero(vis) != np.count_nonzero(local)
    new_boxes = old_boxes.copy()
    keep = np.ones(n_all, bool)
    for j in np.flatnonzero(touched):
        vis_area = int(np.count_nonzero(visible[j]))
        if vis_area == 0:
            keep[j] = False
            continue
        y0, x0, _ = objs[j]
        nb = _mask_box(visible[j]) + np.array([x0, y0, x0, y0], np.float32)
        moved_ok = bool(np.all(np.abs(nb - old_boxes[j]) <= bbox_occluded_thr))
        keep[j] = moved_ok or vis_area > mask_occluded_thr
        new_boxes[j] = nb
    new_boxes[:, 0::2] = np.clip(new_boxes[:, 0::2], 0, w)
    new_boxes[:, 1::2] = np.clip(new_boxes[:, 1::2], 0, h)
    kept_idx = np.flatnonzero(keep)
    out_masks = None
    if masks is not None:
        out_masks = np.zeros((len(kept_idx), h, w), bool)
        for i, j in enumerate(kept_idx):
            if j < n_dst and not touched[j]:
                out_masks[i] = masks[j]
            else:
                y0, x0, _ = objs[j]
                vis = visible[j]
                out_masks[i, y0 : y0 + vis.shape[0], x0 : x0 + vis.shape[1]] = vis
    return Pasted(out, new_boxes[keep], all_labels[keep], out_masks, np.flatnonzero(keep[:n_dst]))


def _destination_windows(
    boxes: np.ndarray, masks: np.ndarray | None, shape: tuple[int, int]
) -> list[tuple[int, int, np.ndarray]]:
    """Each destination object as (y0, x0, local bool mask): the window of its mask's box, or for boxes-only
    objects the ellipse inscribed in the (clipped) box."""
    h, w = shape
    out = []
    if masks is not None:
        for m, b in zip(masks, masks_to_boxes(masks).astype(int), strict=True):
            x0, y0, x1, y1 = b
            out.append((y0, x0, m[y0:y1, x0:x1]))
        return out
    for b in boxes:
        x0, y0 = min(max(int(np.floor(b[0])), 0), w), min(max(int(np.floor(b[1])), 0), h)
        x1, y1 = max(min(int(np.ceil(b[2])), w), x0), max(min(int(np.ceil(b[3])), h), y0)
        if x1 > x0 and y1 > y0:
            local = soft_ellipse(y1 - y0, x1 - x0, (b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0)) >= 0.5
        else:
            local = np.zeros((0, 0), bool)
        out.append((y0, x0, local))
    return out


def paste_cells(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray | None,
    sources: Sequence[CellInstance],
    *,
    rng: np.random.Generator,
    max_overlap: float = 0.1,
    max_tries: int = 10,
    scale: tuple[float, float] = (0.8, 1.25),
    rotate: str = "free",
    flip: bool = True,
    blend_sigma: float = 1.0,
    match_stain: bool = True,
    bbox_occluded_thr: float = BBOX_OCCLUDED_THR,
    mask_occluded_thr: int = MASK_OCCLUDED_THR,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Paste every cell of ``sources`` at a random free position of ``image``.

    image (H, W, 3) uint8; boxes (N, 4) float32 xyxy; labels (N,); masks (N, H, W) bool or None.
    Each cell is flipped (``flip``), rotated (``rotate``: 'free' angle, '90' quarter turns, 'none') and scaled
    (log-uniform in ``scale``), then placed where it covers at most ``max_overlap`` of its area of existing
    cells (``max_tries`` random positions, then the cell is skipped). Edges are Gaussian-blended with
    ``blend_sigma`` pixels (0: hard paste) and colours matched to the destination background (``match_stain``).
    Occluded objects follow the paper's rule (``bbox_occluded_thr`` px, ``mask_occluded_thr`` pixels).

    Returns (image, boxes, labels, masks): the kept destination objects in order, then the pasted ones; masks
    is None when the input had none. Boxes are clipped to the image.
    """
    r = paste_instances(
        image,
        boxes,
        labels,
        masks,
        sources,
        rng=rng,
        max_overlap=max_overlap,
        max_tries=max_tries,
        scale=scale,
        rotate=rotate,
        flip=flip,
        blend_sigma=blend_sigma,
        match_stain=match_stain,
        bbox_occluded_thr=bbox_occluded_thr,
        mask_occluded_thr=mask_occluded_thr,
    )
    return r.image, r.boxes, r.labels, r.masks


# --------------------------------------------------------------------------------------------- class weights


def class_probabilities(
    class_weights: str | Sequence[float] | np.ndarray,
    instances_per_class: np.ndarray,
    *,
    images_per_class: np.ndarray | None = None,
    num_images: int | None = None,
    rfs_thr: float = RFS_THR,
) -> np.ndarray:
    """Probability (C,) that a pasted cell is of class c, over the classes with ``instances_per_class[c] > 0``.

    instances_per_class: (C,) instances per class available to paste (n_c). ``class_weights``:

    - 'instance': proportional to n_c (every instance equally likely: generic copy-paste, mostly head);
    - 'uniform': every available class equally likely (class-balanced);
    - 'inverse': proportional to ``1 / n_c`` (inverse frequency: rarest first);
    - 'rfs': proportional to ``n_c * r_c`` with the LVIS repeat factor ``r_c = max(1, sqrt(t / f_c))``,
      ``f_c = images_per_class[c] / num_images`` (Gupta et al., CVPR 2019; ``cytolt.category_stats``): the class
      mix that repeat-factor sampling of the source images would produce;
    - an array (C,) of non-negative class weights, e.g. CDB weights ``w_c`` (Sinha et al., ACCV 2020; CDB-S
      samples class c with probability proportional to ``w_c``).
    """
    counts = np.asarray(instances_per_class, np.float64)
    avail = counts > 0
    if isinstance(class_weights, str):
        if class_weights == "instance":
            w = counts.copy()
        elif class_weights == "uniform":
            w = np.ones_like(counts)
        elif class_weights == "inverse":
            w = np.divide(1.0, counts, out=np.zeros_like(counts), where=avail)
        elif class_weights == "rfs":
            if images_per_class is None or not num_images:
                raise ValueError("class_weights='rfs' needs per-class image counts (paste from a CellBank)")
            w = counts * class_repeat_factors(images_per_class, num_images, thr=rfs_thr)
        else:
            raise ValueError(
                f"class_weights must be one of {CLASS_WEIGHT_MODES} or an array; got {class_weights!r}"
            )
    else:
        w = np.asarray(class_weights, np.float64).reshape(-1)
        if w.shape != counts.shape:
            raise ValueError(f"class_weights array has {w.size} entries for {counts.size} classes")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("class_weights array must be finite and non-negative")
    w = np.where(avail, w, 0.0)
    total = w.sum()
    if total <= 0:
        return np.zeros_like(w)
    return w / total


# --------------------------------------------------------------------------------------------- the transform


class CellCopyPaste:
    """Copy-paste of cells into an image, from a ``CellBank`` or from a source image.

    Keyword-only options (defaults in brackets):

    - bank [None]: ``CellBank`` to draw cells from when no source image is given.
    - max_pasted [10]: at most this many cells per call; the count is drawn uniformly in ``[0, n]`` with
      ``n = max_pasted`` for a bank and ``n = min(objects in the source, max_pasted)`` for a source image
      (the paper's rule).
    - class_weights ['uniform']: see ``class_probabilities`` ('instance', 'uniform', 'inverse', 'rfs' or an
      array). With a source image, objects are picked without replacement with weight ``p_c / n_c``.
    - rfs_thr [0.001]: the repeat-factor threshold t for 'rfs'.
    - max_overlap [0.1], max_tries [10], scale [(0.8, 1.25)], rotate ['free' | '90' | 'none'; True means
      'free', False 'none'], flip [True], blend_sigma [1.0], match_stain [True], bbox_occluded_thr [10],
      mask_occluded_thr [300]: see ``paste_cells``.
    - margin [4]: context pixels kept around the cells cut from a source image.
    - seed [None]: an int gives the transform its own ``numpy.random.Generator``; None draws a fresh generator
      from numpy's global RNG on each call, so frameworks that seed numpy per worker (mmengine) stay
      reproducible. In a multi-worker data loader leave it None: every worker holds a copy of a seeded
      generator and would paste the same cells.

    Call: ``cp(image, boxes, labels, masks=None, *, source=None) -> (image, boxes, labels, masks)``, where
    ``source`` is an ``(image, boxes, labels, masks)`` tuple of another sample; ``apply`` returns a ``Pasted``.
    """

    def __init__(
        self,
        *,
        bank: CellBank | None = None,
        max_pasted: int = 10,
        class_weights: str | Sequence[float] | np.ndarray = "uniform",
        rfs_thr: float = RFS_THR,
        max_overlap: float = 0.1,
        max_tries: int = 10,
        scale: tuple[float, float] = (0.8, 1.25),
        rotate: bool | str = "free",
        flip: bool = True,
        blend_sigma: float = 1.0,
        match_stain: bool = True,
        bbox_occluded_thr: float = BBOX_OCCLUDED_THR,
        mask_occluded_thr: int = MASK_OCCLUDED_THR,
        margin: int = 4,
        seed: int | None = None,
    ) -> None:
        if rotate is True:
            rotate = "free"
        elif rotate is False:
            rotate = "none"
        if rotate not in ROTATIONS:
            raise ValueError(f"rotate must be one of {ROTATIONS} (or True/False); got {rotate!r}")
        if isinstance(class_weights, str) and class_weights not in CLASS_WEIGHT_MODES:
            raise ValueError(
                f"class_weights must be one of {CLASS_WEIGHT_MODES} or an array; got {class_weights!r}"
            )
        if max_pasted < 0:
            raise ValueError(f"max_pasted must be >= 0; got {max_pasted}")
        lo, hi = scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high; got {scale}")
        if not 0.0 <= max_overlap <= 1.0:
            raise ValueError(f"max_overlap must be in [0, 1]; got {max_overlap}")
        if blend_sigma < 0:
            raise ValueError(f"blend_sigma must be >= 0; got {blend_sigma}")
        self.bank = bank
        self.max_pasted = int(max_pasted)
        self.class_weights = (
            class_weights if isinstance(class_weights, str) else np.asarray(class_weights, np.float64)
        )
        self.rfs_thr = rfs_thr
        self.max_overlap = max_overlap
        self.max_tries = max_tries
        self.scale = (float(lo), float(hi))
        self.rotate = rotate
        self.flip = flip
        self.blend_sigma = blend_sigma
        self.match_stain = match_stain
        self.bbox_occluded_thr = bbox_occluded_thr
        self.mask_occluded_thr = mask_occluded_thr
        self.margin = margin
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._bank_probs = self._probs_for_bank() if bank is not None else None

    def __repr__(self) -> str:
        bank = f"CellBank({len(self.bank)} cells)" if self.bank is not None else None
        weights = self.class_weights if isinstance(self.class_weights, str) else "array"
        return (
            f"CellCopyPaste(bank={bank}, max_pasted={self.max_pasted}, class_weights={weights!r}, "
            f"max_overlap={self.max_overlap}, scale={self.scale}, rotate={self.rotate!r}, flip={self.flip}, "
            f"blend_sigma={self.blend_sigma}, match_stain={self.match_stain})"
        )

    def _probs_for_bank(self) -> np.ndarray:
        bank = self.bank
        # Weights follow the dataset's statistics; classes the bank holds no cell of cannot be drawn.
        probs = class_probabilities(
            self.class_weights,
            bank.dataset_instances_per_class,
            images_per_class=bank.dataset_images_per_class,
            num_images=bank.num_images,
            rfs_thr=self.rfs_thr,
        )
        probs = np.where(bank.cells_per_class > 0, probs, 0.0)
        return probs / probs.sum() if probs.sum() > 0 else probs

    def _next_rng(self) -> np.random.Generator:
        if self._rng is not None:
            return self._rng
        return np.random.default_rng(np.random.randint(0, 2**31 - 1))

    def choose_from_bank(self, rng: np.random.Generator) -> list[CellInstance]:
        """Draw ``k ~ U{0..max_pasted}`` cells from the bank, each class with ``class_probabilities``."""
        if self.bank is None:
            raise ValueError("CellCopyPaste has no bank: pass bank=CellBank.build(...) or a source image")
        probs = self._bank_probs
        k = int(rng.integers(0, self.max_pasted + 1))
        if k == 0 or probs.sum() <= 0:
            return []
        classes = rng.choice(len(probs), size=k, p=probs)
        return [self.bank.sample(int(c), rng) for c in classes]

    def choose_from_source(
        self, instances: Sequence[CellInstance], rng: np.random.Generator
    ) -> list[CellInstance]:
        """Pick ``m ~ U{0..n}`` of a source image's cells without replacement (Ghiasi et al. 2021)."""
        n = min(len(instances), self.max_pasted)
        m = int(rng.integers(0, n + 1))
        if m == 0:
            return []
        labels = np.array([inst.label for inst in instances])
        num_classes = int(labels.max()) + 1
        if not isinstance(self.class_weights, str):
            num_classes = max(num_classes, len(self.class_weights))
        counts = instances_per_class(labels, num_classes).astype(np.float64)
        if isinstance(self.class_weights, str) and self.class_weights == "rfs":
            if self.bank is None:
                raise ValueError(
                    "class_weights='rfs' with a source image needs a bank for the dataset frequencies"
                )
            # Each source object weighs its class's repeat factor, as RFS weighs the images holding it.
            r = np.ones(num_classes)
            bank_r = class_repeat_factors(
                self.bank.dataset_images_per_class, self.bank.num_images, thr=self.rfs_thr
            )
            r[: min(num_classes, len(bank_r))] = bank_r[:num_classes]
            probs = class_probabilities(counts * r, counts)
        else:
            weights = self.class_weights
            if not isinstance(weights, str):
                weights = np.pad(weights, (0, num_classes - len(weights)))
            probs = class_probabilities(weights, counts)
        inst_w = probs[labels] / counts[labels]
        if inst_w.sum() <= 0:
            return []
        m = min(m, int(np.count_nonzero(inst_w)))
        idx = rng.choice(len(instances), size=m, replace=False, p=inst_w / inst_w.sum())
        return [instances[i] for i in idx]

    def apply(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        masks: np.ndarray | None = None,
        *,
        source: tuple | None = None,
        rng: np.random.Generator | None = None,
    ) -> Pasted:
        """Augment one sample; returns a ``Pasted`` (see ``paste_instances``)."""
        rng = rng if rng is not None else self._next_rng()
        if source is not None:
            if len(source) not in (3, 4):
                raise ValueError("source must be an (image, boxes, labels[, masks]) tuple")
            s_img, s_boxes, s_labels, *rest = source
            s_masks = rest[0] if rest else None
            s_boxes, s_labels, s_masks = _check_inputs(s_img, s_boxes, s_labels, s_masks)
            chosen = self.choose_from_source(
                cut_instances(s_img, s_boxes, s_labels, s_masks, margin=self.margin), rng
            )
        else:
            chosen = self.choose_from_bank(rng)
        return paste_instances(
            image,
            boxes,
            labels,
            masks,
            chosen,
            rng=rng,
            max_overlap=self.max_overlap,
            max_tries=self.max_tries,
            scale=self.scale,
            rotate=self.rotate,
            flip=self.flip,
            blend_sigma=self.blend_sigma,
            match_stain=self.match_stain,
            bbox_occluded_thr=self.bbox_occluded_thr,
            mask_occluded_thr=self.mask_occluded_thr,
        )

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        masks: np.ndarray | None = None,
        *,
        source: tuple | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Augment one sample: (image, boxes, labels, masks) in, the same four out."""
        r = self.apply(image, boxes, labels, masks, source=source)
        return r.image, r.boxes, r.labels, r.masks
