"""``LongTailMetric``: mmengine metric that scores detections with lvis-api through ``cytolt.evaluate``.

Reports AP, AP50, AP75, APr, APc, APf, AR@300 and, per class, ``AP-<name>``, using the LVIS fields that
``cytolt.synth`` writes (``frequency`` per category, ``neg_category_ids`` / ``not_exhaustive_category_ids`` per
image). A plain COCO file gets them derived (``cytolt.datasets.with_lvis_fields``: every class absent from an
image is a negative; groups from the training split's ``train_ann_file``). Works with any mmdet dataset whose
``img_id`` is the annotation file's image id (CocoDataset, LVIS). faster-coco-eval computes the AP by default
(``engine="fast"``; ``"reference"`` runs lvis-api: the same numbers, docs/evaluate.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric

from cytolt.datasets import is_lvis, read_coco, with_lvis_fields
from cytolt.evaluate import ENGINES, LVISEvaluator


@METRICS.register_module()
class LongTailMetric(BaseMetric):
    """LVIS-style AP with the rare/common/frequent split and per-class AP.

    Args:
        ann_file: COCO/LVIS json of the split being evaluated.
        max_dets: detections kept per image (LVIS: 300).
        per_class: also report ``AP-<class name>``.
        results_file: if set, the detections are also written there (LVIS results json).
        train_ann_file: the training split, whose counts give a plain COCO file's frequency groups (None: the
            evaluated file's own counts). ``cytolt train`` sets it.
        engine: "fast" (faster-coco-eval) or "reference" (lvis-api); the same numbers.
    """

    default_prefix = "lt"

    def __init__(
        self,
        ann_file: str,
        *,
        max_dets: int = 300,
        per_class: bool = True,
        results_file: str | None = None,
        train_ann_file: str | None = None,
        engine: str = "fast",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = ann_file
        self.max_dets = max_dets
        self.per_class = per_class
        self.results_file = results_file
        self.train_ann_file = train_ann_file
        if engine not in ENGINES:
            raise ValueError(f"LongTailMetric: engine must be one of {ENGINES}; got {engine!r}")
        self.engine = engine

    def _ground_truth(self) -> str | dict[str, Any]:
        doc = read_coco(self.ann_file)
        if is_lvis(doc):
            return self.ann_file
        train = read_coco(self.train_ann_file) if self.train_ann_file else None
        return with_lvis_fields(doc, train=train)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample["pred_instances"]
            self.results.append(
                (
                    int(sample["img_id"]),
                    pred["bboxes"].cpu().numpy(),
                    pred["scores"].cpu().numpy(),
                    pred["labels"].cpu().numpy(),
                )
            )

    def compute_metrics(self, results: list) -> dict[str, float]:
        evaluator = LVISEvaluator(
            self._ground_truth(), max_dets=self.max_dets, per_class=self.per_class, engine=self.engine
        )
        for image_id, boxes, scores, labels in results:
            evaluator.process(image_id, boxes, scores, labels)
        if self.results_file:
            Path(self.results_file).parent.mkdir(parents=True, exist_ok=True)
            Path(self.results_file).write_text(json.dumps(evaluator.results))
        return evaluator.evaluate()
