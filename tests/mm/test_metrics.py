"""LongTailMetric (cytolt/mm/metrics.py): both engines give lvis-api's numbers on mmdet-style predictions."""

from __future__ import annotations

import pytest
import torch

from cytolt.mm.metrics import LongTailMetric
from tests.evaluate._eval_cases import random_lvis_case, write_json

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


def _samples(gt: dict, dets: list[dict]) -> list[dict]:
    """One mmdet data sample per image: xyxy boxes, scores, 0-based labels (category id - 1 in this case)."""
    out = []
    for img in gt["images"]:
        mine = [d for d in dets if d["image_id"] == img["id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)]).reshape(
            -1, 4
        )
        out.append(
            {
                "img_id": img["id"],
                "pred_instances": {
                    "bboxes": boxes,
                    "scores": torch.tensor([d["score"] for d in mine]),
                    "labels": torch.tensor([d["category_id"] - 1 for d in mine], dtype=torch.long),
                },
            }
        )
    return out


def _metrics(ann_file: str, samples: list[dict], engine: str) -> dict[str, float]:
    metric = LongTailMetric(ann_file, engine=engine)
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_engines_agree_on_every_metric(tmp_path):
    gt, dets = random_lvis_case(6, n_images=12)
    ann_file = str(write_json(tmp_path / "val.json", gt))
    samples = _samples(gt, dets)
    fast, ref = _metrics(ann_file, samples, "fast"), _metrics(ann_file, samples, "reference")
    assert list(fast) == list(ref)
    assert {"AP", "APr", "APc", "APf", "AP-c1"} <= set(fast)
    for key in ref:
        assert fast[key] == pytest.approx(ref[key], abs=1e-6), key
    assert 0 < ref["AP"] < 1


def test_bad_engine_is_named():
    with pytest.raises(ValueError, match="'fast', 'reference'.*'turbo'"):
        LongTailMetric("val.json", engine="turbo")
