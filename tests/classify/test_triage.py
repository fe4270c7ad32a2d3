"""Tests for cytolt.classify.triage: COCO -> tile targets, tiles, class-aware sampling, augmentation, the
threshold and recall arithmetic, losses, and a tiny training run."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from cytolt.classify.triage import (
    TriageModel,
    _augment,
    abnormal_indices,
    abnormal_scores,
    abnormal_tile_recall,
    class_aware_indices,
    coco_class_names,
    load_tiles,
    make_loss,
    resize_tiles,
    threshold_for_recall,
    tile_counts,
    tile_targets,
    train_triage,
)
from cytolt.losses.distribution_balanced import DistributionBalancedLoss
from cytolt.synth import CLASSES, make_patch_dataset

COCO = {
    "images": [
        {"id": 7, "file_name": "a.png"},
        {"id": 3, "file_name": "b.png"},
        {"id": 9, "file_name": "c.png"},
    ],
    # Non-contiguous ids: columns follow the id order (1 -> 0, 4 -> 1), not the list order.
    "categories": [{"id": 4, "name": "hsil"}, {"id": 1, "name": "intermediate"}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 1},
        {"id": 2, "image_id": 7, "category_id": 1},
        {"id": 3, "image_id": 7, "category_id": 4},
        {"id": 4, "image_id": 3, "category_id": 1},
    ],
}


def test_tile_counts_and_targets_by_hand() -> None:
    assert coco_class_names(COCO) == ("intermediate", "hsil")
    np.testing.assert_array_equal(tile_counts(COCO), [[2, 1], [1, 0], [0, 0]])
    targets = tile_targets(COCO)
    assert targets.dtype == np.float32
    np.testing.assert_array_equal(targets, [[1, 1], [1, 0], [0, 0]])


def test_tile_counts_errors(tmp_path) -> None:
    bad = {**COCO, "annotations": [{"id": 5, "image_id": 7, "category_id": 2}]}
    with pytest.raises(ValueError, match="category_id 2 is not in categories"):
        tile_counts(bad)
    bad = {**COCO, "annotations": [{"id": 5, "image_id": 8, "category_id": 1}]}
    with pytest.raises(ValueError, match="image_id 8 is not in images"):
        tile_counts(bad)
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="x.json: a COCO file needs"):
        tile_counts(path)


def test_targets_and_tiles_of_a_synthetic_patch_dataset(tmp_path) -> None:
    summary = make_patch_dataset(
        tmp_path, images=12, size=128, imbalance=3, seed=0, cells_per_image=3.0, image_format="png"
    )
    ann = summary["annotation_files"]["all"]
    targets = tile_targets(ann)
    data = json.loads(open(ann).read())
    assert coco_class_names(ann) == CLASSES
    # make_patch_dataset lists each image's absent categories: the complement of our targets' row.
    for row, img in zip(targets, data["images"], strict=True):
        assert sorted(np.flatnonzero(row == 0) + 1) == sorted(img["neg_category_ids"])
    tiles = load_tiles(ann, size=32)
    assert tiles.shape == (12, 32, 32, 3) and tiles.dtype == np.uint8
    first = cv2.imread(str(tmp_path / data["images"][0]["file_name"]))[:, :, ::-1]
    np.testing.assert_array_equal(tiles[0], cv2.resize(first, (32, 32), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match="give image_dir"):
        load_tiles(data, size=32)


def test_resize_keeps_a_flat_tile_flat_and_checks_shape() -> None:
    flat = np.full((2, 40, 40, 3), (10, 20, 30), dtype=np.uint8)
    small = resize_tiles(flat, 20)
    assert small.shape == (2, 20, 20, 3)
    assert (small == np.array([10, 20, 30], dtype=np.uint8)).all()
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        resize_tiles(np.zeros((40, 40, 3), np.uint8), 20)


def test_abnormal_indices_of_the_synthetic_table() -> None:
    idx = abnormal_indices(CLASSES)
    assert [CLASSES[i] for i in idx] == ["ascus", "lsil", "hsil", "scc", "agc"]


def test_class_aware_sampling_balances_classes_and_skips_empty_tiles() -> None:
    # 90 tiles hold class 0, 10 hold class 1, 20 hold nothing. Instance sampling would draw class 1 a tenth of
    # the time among labelled tiles; class-aware draws it half the time and never an empty tile.
    targets = np.zeros((120, 2), np.float32)
    targets[:90, 0] = 1
    targets[90:100, 1] = 1
    picks = class_aware_indices(targets, 4000, generator=torch.Generator().manual_seed(0))
    assert picks.max() < 100
    share = float((picks >= 90).float().mean())
    assert abs(share - 0.5) < 0.03
    again = class_aware_indices(targets, 4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(picks, again)
    with pytest.raises(ValueError, match="at least one tile"):
        class_aware_indices(np.zeros((3, 2)), 5, generator=torch.Generator())


def test_augment_applies_a_dihedral_transform_per_sample() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = _augment(x, torch.Generator().manual_seed(1))
    for i in range(2):
        candidates = [torch.rot90(v, k, dims=(-2, -1)) for v in (x[i], x[i].flip(-1)) for k in range(4)]
        assert any(torch.equal(out[i], c) for c in candidates)


def test_threshold_and_recall_by_hand() -> None:
    # Columns: normal, abnormal. Abnormal tiles score 0.9, 0.8, 0.3, 0.1; normal tiles 0.5, 0.2, 0.05.
    probs = np.array([[0.1, s] for s in (0.9, 0.8, 0.3, 0.1, 0.5, 0.2, 0.05)])
    targets = np.array([[0, 1]] * 4 + [[1, 0]] * 3, dtype=np.float32)
    assert threshold_for_recall(probs, targets, [1], recall=0.75) == 0.3  # 3rd highest of 4
    assert threshold_for_recall(probs, targets, [1], recall=1.0) == 0.1
    assert threshold_for_recall(probs, targets, [1], recall=0.5) == 0.8
    counts = np.array([[0, 2], [0, 1], [0, 1], [0, 3], [4, 0], [1, 0], [2, 0]])
    out = abnormal_tile_recall(probs, targets, [1], 0.3, counts=counts)
    # Skipped: scores < 0.3 -> 0.1 (abnormal, 3 cells), 0.2, 0.05 -> 3 of 7 tiles, 1 of 4 abnormal tiles missed.
    assert out.recall == 0.75 and out.missed_tiles == 1 and out.missed_cells == 3
    assert out.skip_fraction == pytest.approx(3 / 7) and out.abnormal_tiles == 4 and out.tiles == 7
    np.testing.assert_array_equal(out.skipped, [False, False, False, True, False, True, True])
    np.testing.assert_array_equal(abnormal_scores(probs, [0, 1]), probs.max(1))


def test_threshold_and_recall_errors() -> None:
    probs, targets = np.zeros((2, 2)), np.zeros((2, 2))
    with pytest.raises(ValueError, match="no abnormal tile"):
        threshold_for_recall(probs, targets, [1])
    with pytest.raises(ValueError, match=r"recall must be in \(0, 1\]"):
        threshold_for_recall(probs, targets, [1], recall=0.0)
    with pytest.raises(ValueError, match="one shape"):
        abnormal_tile_recall(probs, np.zeros((2, 3)), [1], 0.5)
    with pytest.raises(ValueError, match="no column"):
        abnormal_scores(probs, [])
    assert np.isnan(abnormal_tile_recall(probs, targets, [1], 0.5).recall)


def test_make_loss() -> None:
    targets = np.array([[1, 0], [1, 1], [0, 0]], np.float32)
    db = make_loss("db", targets)
    assert isinstance(db, DistributionBalancedLoss)
    torch.testing.assert_close(db.class_freq, torch.tensor([2.0, 1.0]))
    assert db.num_samples == 3
    with pytest.raises(ValueError, match=r"classes \[1\] are in no training tile"):
        make_loss("db", targets[:1])
    with pytest.raises(ValueError, match="'db', 'bce', 'focal'"):
        make_loss("softmax", targets)


def _tiny_set(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    # Class 1 tiles carry a bright square: learnable in a few steps.
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 60, size=(n, 32, 32, 3), dtype=np.uint8)
    targets = np.zeros((n, 2), np.float32)
    targets[:, 0] = 1
    targets[::3, 1] = 1
    tiles[::3, 8:24, 8:24] = 250
    return tiles, targets


@pytest.mark.parametrize("loss", ["db", "bce", "focal"])
def test_train_triage_tiny(loss: str) -> None:
    torch.set_num_threads(1)
    tiles, targets = _tiny_set()
    kwargs = dict(class_names=("a", "b"), loss=loss, epochs=6, batch_size=8, width=4, input_size=16, seed=3)
    result = train_triage(tiles, targets, **kwargs)
    assert result.sampler == ("class_aware" if loss == "db" else "instance")
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 6 and np.isfinite(losses).all() and losses[-1] < losses[0]
    probs = result.model.predict(tiles)
    assert probs.shape == (24, 2) and probs.dtype == np.float32 and ((probs >= 0) & (probs <= 1)).all()
    again = train_triage(tiles, targets, **kwargs)
    for a, b in zip(result.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_train_triage_and_model_errors() -> None:
    tiles, targets = _tiny_set(6)
    with pytest.raises(ValueError, match="must agree"):
        train_triage(tiles[:5], targets, class_names=("a", "b"))
    with pytest.raises(ValueError, match=r"targets must be \(N, 3\)"):
        train_triage(tiles, targets, class_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="sampler must be one of"):
        train_triage(tiles, targets, class_names=("a", "b"), sampler="sqrt")
    with pytest.raises(ValueError, match="class_names is empty"):
        TriageModel(())
    with pytest.raises(ValueError, match="input_size must be >= 16"):
        TriageModel(("a",), input_size=8)
