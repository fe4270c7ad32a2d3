"""CropClassifier: a folder in, crops or a slide's boxes to probabilities out, batched, as the model computes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from cytolt.classify.crops import crops_from_boxes
from cytolt.classify.folder import ClassifierFolder, register_head
from cytolt.classify.model import CellClassifier
from cytolt.classify.predict import CropClassifier
from cytolt.io import open_slide
from cytolt.synth import make_slide


def _folder(path: Path, *, head: dict | None = None) -> ClassifierFolder:
    torch.manual_seed(0)
    model = CellClassifier(3, width=2).eval()
    with torch.no_grad():
        model.head.weight.mul_(20.0)  # spread the probabilities, so a wrong softmax would show
    return ClassifierFolder.write(
        path,
        model,
        classes=("a", "b", "c"),
        mpp=1.0,
        crop_size=16,
        context=1.5,
        train_counts=(10, 5, 1),
        method="ce",
        head=head or {"type": "linear"},
    )


def _crops(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)


def test_from_folder_carries_the_crop_geometry_and_identity(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m")
    clf = CropClassifier.from_folder(tmp_path / "m")
    assert (
        clf.class_names == ("a", "b", "c") and clf.mpp == 1.0 and clf.crop_size == 16 and clf.context == 1.5
    )
    assert clf.identity == folder.identity() and not clf.model.training


def test_predict_is_the_softmax_of_the_models_logits_in_any_batch_size(tmp_path: Path) -> None:
    _folder(tmp_path / "m")
    crops = _crops(5)
    probs = CropClassifier.from_folder(tmp_path / "m", batch_size=2).predict(crops)
    assert probs.shape == (5, 3) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    model = ClassifierFolder.read(tmp_path / "m").load()
    with torch.no_grad():
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
        expected = torch.softmax(model(x), dim=1).numpy()
    assert np.allclose(probs, expected, atol=1e-6)
    assert np.allclose(
        CropClassifier.from_folder(tmp_path / "m", batch_size=64).predict(crops), probs, atol=1e-6
    )
    assert probs.max(axis=1).min() < 0.999  # not degenerate: the comparison above means something


def _sigmoid(logits: Tensor) -> Tensor:
    return torch.sigmoid(logits)


def _plain_linear(feature_dim: int, num_classes: int) -> torch.nn.Module:
    return torch.nn.Linear(feature_dim, num_classes)


def test_a_head_that_says_otherwise_gives_its_own_probabilities(tmp_path: Path) -> None:
    register_head("test_sigmoid_linear", _plain_linear, probabilities=_sigmoid)
    _folder(tmp_path / "m", head={"type": "test_sigmoid_linear"})
    clf = CropClassifier.from_folder(tmp_path / "m")
    crops = _crops(3)
    with torch.no_grad():
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
        expected = torch.sigmoid(clf.model(x)).numpy()
    assert np.allclose(clf.predict(crops), expected, atol=1e-6)


def test_predict_refuses_crops_of_another_size_and_type(tmp_path: Path) -> None:
    _folder(tmp_path / "m")
    clf = CropClassifier.from_folder(tmp_path / "m")
    with pytest.raises(ValueError, match=r"\(M, 16, 16, 3\) uint8"):
        clf.predict(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        clf.predict(np.zeros((2, 16, 16, 3), np.float32))
    assert clf.predict(np.zeros((0, 16, 16, 3), np.uint8)).shape == (0, 3)
    with pytest.raises(ValueError, match="batch_size"):
        CropClassifier.from_folder(tmp_path / "m", batch_size=0)


def test_predict_boxes_cuts_the_crops_as_trained_then_predicts(tmp_path: Path) -> None:
    _folder(tmp_path / "m")
    clf = CropClassifier.from_folder(tmp_path / "m")
    truth = make_slide(tmp_path / "s.tiff", size=(256, 256), mpp=0.5, seed=1, label="HSIL")
    boxes = np.array([c.box for c in truth.cells[:3]], np.float64)
    with open_slide(truth.path) as slide:
        probs = clf.predict_boxes(slide, boxes)
        crops = crops_from_boxes(slide, boxes, size=16, mpp=1.0, context=1.5)
        assert clf.predict_boxes(slide, np.zeros((0, 4))).shape == (0, 3)
    assert probs.shape == (len(boxes), 3)
    assert np.array_equal(probs, clf.predict(crops))
