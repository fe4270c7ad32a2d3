"""Tiny hand-drawn cytology scenes for the copy-paste tests: light background, dark elliptical cells.

Imported by the tests of this folder (pytest puts the folder on sys.path); not a test module itself.
"""

from __future__ import annotations

import cv2
import numpy as np

from cytolt.augment import CellBank, CellInstance, masks_to_boxes

BACKGROUND = (230, 222, 236)  # RGB, a pale ThinPrep-like background


def draw_scene(
    rng: np.random.Generator, *, size: int = 96, n_cells: int = 4, num_classes: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image (S, S, 3) uint8, boxes (N, 4) = bbox of masks, labels (N,), masks (N, S, S) bool), cells apart."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = BACKGROUND
    image = np.clip(image.astype(np.int16) + rng.integers(-4, 5, image.shape), 0, 255).astype(np.uint8)
    masks, labels = [], []
    taken = np.zeros((size, size), bool)
    for _ in range(200):
        if len(masks) == n_cells:
            break
        ax, ay = int(rng.integers(5, 11)), int(rng.integers(5, 11))
        cx, cy = int(rng.integers(ax + 1, size - ax - 1)), int(rng.integers(ay + 1, size - ay - 1))
        m = np.zeros((size, size), np.uint8)
        cv2.ellipse(m, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        m = m.astype(bool)
        if (cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & taken).any():
            continue
        taken |= m
        label = int(rng.integers(num_classes))
        image[m] = (80 + 40 * label, 60, 120)
        masks.append(m)
        labels.append(label)
    masks_arr = np.stack(masks) if masks else np.zeros((0, size, size), bool)
    return image, masks_to_boxes(masks_arr), np.array(labels, np.int64), masks_arr


def make_cell(
    label: int, *, height: int = 14, width: int = 10, margin: int = 3, colour=(70, 50, 110), background=None
) -> CellInstance:
    """A crop with one dark elliptical cell and ``margin`` background pixels around it."""
    h, w = height + 2 * margin, width + 2 * margin
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (width // 2, height // 2), 0, 0, 360, 1, -1)
    img[m.astype(bool)] = colour
    bg = np.array(BACKGROUND if background is None else background, np.float32)
    return CellInstance(img, m.astype(np.float32), label, bg)


def make_bank(counts: list[int]) -> CellBank:
    cells = [make_cell(c, height=10 + 2 * c, width=8 + c) for c, n in enumerate(counts) for _ in range(n)]
    return CellBank.from_instances(cells, classes=[f"class{c}" for c in range(len(counts))])
