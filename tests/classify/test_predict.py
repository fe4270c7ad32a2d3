"""CropClassifier: a folder in, crops or a slide's boxes to probabilities out, batched, as the model computes them."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from cytolt.classify.crops import CropSet, crops_from_boxes
from cytolt.classify.folder import ClassifierFolder, register_head
from cytolt.classify.metrics import classification_report
from cytolt.classify.model import CellClassifier
from cytolt.classify.predict import CropClassifier, write_predictions_csv
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


def _crop_set(n: int, *, size: int = 16, mpp: float = 1.0, classes=("a", "b", "c")) -> CropSet:
    return CropSet(
        _crops(n) if size == 16 else np.zeros((n, size, size, 3), np.uint8), np.arange(n) % 3, classes, mpp
    )


def test_evaluate_reports_on_the_predictions_with_the_folders_train_counts(tmp_path: Path) -> None:
    _folder(tmp_path / "m")
    clf = CropClassifier.from_folder(tmp_path / "m")
    assert clf.train_counts == (10, 5, 1)
    crops = _crop_set(6)
    report = clf.evaluate(crops)
    expected = classification_report(
        clf.predict(crops.images), crops.labels, (10, 5, 1), class_names=("a", "b", "c")
    )
    assert report == expected and report["groups"]["few"] == ["a", "b", "c"]
    assert clf.evaluate(crops, train_counts=(500, 50, 5))["groups"] == {
        "many": ["a"],
        "medium": ["b"],
        "few": ["c"],
    }


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"classes": ("a", "b", "x")}, r"classes \['a', 'b', 'x'\] are not the classifier's"),
        ({"size": 8}, "crops of 8 px, the classifier takes 16 px"),
        ({"mpp": 0.5}, "crops at 0.5 um/px, the classifier's at 1 um/px"),
    ],
)
def test_check_crops_names_what_does_not_fit(tmp_path: Path, kw: dict, match: str) -> None:
    _folder(tmp_path / "m")
    with pytest.raises(ValueError, match=match):
        CropClassifier.from_folder(tmp_path / "m").check_crops(_crop_set(3, **kw))


def test_write_predictions_csv_has_a_row_per_crop(tmp_path: Path) -> None:
    crops = _crop_set(2)
    crops.sources[0].update({"source": "s.tiff", "box": [1.0, 2.0, 3.0, 4.0], "id": 7})
    probs = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], np.float32)
    path = write_predictions_csv(tmp_path / "p.csv", crops, probs, ("a", "b", "c"))
    rows = list(csv.DictReader(path.open()))
    assert rows[0] == {
        "index": "0", "source": "s.tiff", "id": "7", "x0": "1.0", "y0": "2.0", "x1": "3.0", "y1": "4.0",
        "true": "a", "predicted": "b", "score": "0.700000", "p_a": "0.200000", "p_b": "0.700000", "p_c": "0.100000",
    }  # fmt: skip
    assert rows[1]["true"] == "b" and rows[1]["predicted"] == "a" and rows[1]["x0"] == ""
    with pytest.raises(ValueError, match=r"probs must be \(2, 3\)"):
        write_predictions_csv(tmp_path / "p.csv", crops, probs[:1], ("a", "b", "c"))


def test_predict_reads_a_memory_mapped_crop_set_without_warnings(tmp_path: Path) -> None:
    _folder(tmp_path / "m")
    _crop_set(4).write(tmp_path / "set")
    crops = CropSet.read(tmp_path / "set")
    clf = CropClassifier.from_folder(tmp_path / "m", batch_size=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when handed a read-only array
        probs = clf.predict(crops.images)
    assert np.allclose(probs, clf.predict(np.array(crops.images)))
