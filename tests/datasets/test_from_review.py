"""Reviews become training data: accepted and reclassified cells are boxes, rejected ones hard-negative patches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cytolt.datasets import check_coco
from cytolt.datasets.from_review import review_boxes, review_dataset
from cytolt.detect import Detections
from cytolt.review.simulate import simulate_review
from cytolt.store import DetectionStore
from cytolt.synth import CLASSES, make_slide


def _truth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    doc = json.loads((path.parent / (path.name + ".cells.json")).read_text())
    boxes = np.array([c["box"] for c in doc["cells"]], np.float64)
    labels = np.array([CLASSES.index(c["class"]) for c in doc["cells"]], np.int64)
    return boxes, labels


@pytest.fixture(scope="module")
def reviewed_run(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Two slides screened by a 'detector' that finds 6 true cells per slide (2 with the wrong class) and 2 boxes
    of glass, reviewed against ground truth."""
    root = tmp_path_factory.mktemp("review")
    slides = []
    for k, label in enumerate(("HSIL", "LSIL")):
        path = root / "slides" / f"case{k}.tiff"
        make_slide(path, size=(1536, 1536), mpp=0.25, seed=20 + k, label=label)
        slides.append(path)
    run = root / "run"
    run.mkdir()
    with DetectionStore(run / "run.sqlite") as store:
        run_id = store.add_run(model="m")
        for path in slides:
            sid = store.add_slide(path, mpp=0.25, dims=(1536, 1536), run_id=run_id)
            boxes, labels = _truth(path)
            found = labels[:6].copy()
            found[:2] = (found[:2] + 1) % len(CLASSES)  # two wrong classes: to be reclassified
            fp = np.array([[10, 10, 90, 90], [1400, 20, 1480, 100]], np.float64)  # nothing there: rejected
            dets = Detections(
                boxes=np.concatenate([boxes[:6], fp]),
                scores=np.array([0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55], np.float32),
                labels=np.concatenate([found, [8, 9]]),
            )
            store.add_detections(sid, dets, class_names=CLASSES)
            store.set_slide_status(sid, "done")
            review = simulate_review(store, sid, boxes, labels, min_score=0.5)
            assert (review.accepted, review.reclassified, review.rejected) == (4, 2, 2)
    return run, slides


def test_review_boxes_follow_the_decisions(reviewed_run):
    run, slides = reviewed_run
    with DetectionStore(run / "run.sqlite", readonly=True) as store:
        sid = store.slides()[0].id
        rb = review_boxes(store, sid)
        _, truth_labels = _truth(slides[0])
    assert rb.decisions == {"accept": 4, "reclassify": 2, "reject": 2, "unreviewed_kept": 0}
    assert (rb.labels[:6] == truth_labels[:6]).all()  # reclassified cells carry the reviewed class
    assert (rb.labels[6:] == -1).all() and (rb.model_labels[6:] == [8, 9]).all()


def test_review_dataset_is_split_by_slide_and_checked(reviewed_run, tmp_path):
    run, slides = reviewed_run
    summary = review_dataset(run, tmp_path / "ds", mpp=0.5, size=256, splits=(0.5, 0.5, 0.0), seed=0)
    assert set(summary.splits) == {"train", "val"}
    assert sorted(summary.splits["train"] + summary.splits["val"]) == sorted(p.name for p in slides)
    assert summary.decisions == {"accept": 8, "reclassify": 4, "reject": 4, "unreviewed_kept": 0}
    boxes_seen = 0
    for split, path in summary.annotation_files.items():
        doc = json.loads(path.read_text())
        check_coco(doc, source=path, image_root=path.parent)
        slide = next(p for p in slides if p.name == summary.splits[split][0])
        truth_boxes, truth_labels = _truth(slide)
        for ann in doc["annotations"]:
            img = next(i for i in doc["images"] if i["id"] == ann["image_id"])
            x, y, w, h = ann["bbox"]
            (ox, oy), (sx, sy) = img["origin_l0"], img["scale_l0"]
            l0 = torch.tensor([[ox + x * sx, oy + y * sy, ox + (x + w) * sx, oy + (y + h) * sy]])
            from torchvision.ops import box_iou

            iou = box_iou(l0, torch.as_tensor(truth_boxes[:6], dtype=torch.float32))[0]
            k = int(iou.argmax())
            # a box cut by the patch edge is its visible part (at least half the cell): inside the cell's box
            t = truth_boxes[k]
            inter = max(0.0, min(l0[0, 2], t[2]) - max(l0[0, 0], t[0])) * max(
                0.0, min(l0[0, 3], t[3]) - max(l0[0, 1], t[1])
            )
            area = float((l0[0, 2] - l0[0, 0]) * (l0[0, 3] - l0[0, 1]))
            assert inter / area > 0.95 and float(iou[k]) > 0.45 and ann["category_id"] == truth_labels[k] + 1
            boxes_seen += 1
        # a patch around a rejected box holds no box there and lists the rejected class as a negative
        negs = [i for i in doc["images"] if 9 in i["neg_category_ids"] or 10 in i["neg_category_ids"]]
        assert negs, "the rejected detections' classes are negatives of their patches"
        assert all(
            i["not_exhaustive_category_ids"] == sorted(i["not_exhaustive_category_ids"])
            for i in doc["images"]
        )
    assert boxes_seen >= 12  # every accepted and reclassified cell is a box (some in two patches)


def test_a_run_without_reviews_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with DetectionStore(run / "run.sqlite") as store:
        store.add_slide(tmp_path / "a.tiff", mpp=0.25)
    with pytest.raises(ValueError, match="no reviewed detections"):
        review_dataset(run, tmp_path / "ds", mpp=0.5)
    with pytest.raises(ValueError, match="not a cytolt run folder"):
        review_dataset(tmp_path / "nothing", tmp_path / "ds", mpp=0.5)


def test_cli_from_review_prints_the_decisions_used(reviewed_run, tmp_path):
    from click.testing import CliRunner

    from cytolt.cli import main

    run, _ = reviewed_run
    out = tmp_path / "ds"
    args = ["dataset", "from-review", str(run), "--out", str(out), "--mpp-out", "0.5", "--size", "256"]
    result = CliRunner().invoke(main, [*args, "--split", "0.5,0.5,0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "8 accepted, 4 reclassified, 4 rejected (hard negatives)" in result.output
    assert (out / "annotations_train.json").is_file() and (out / "annotations_val.json").is_file()
    again = CliRunner().invoke(main, [*args, "--quiet"])
    assert again.exit_code != 0 and "already holds a dataset" in again.output
