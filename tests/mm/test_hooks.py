"""Tests for cytolt.mm.hooks: the recall matcher by hand, and CDBHook inside a real mmengine Runner."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import get_box_tensor
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import InstanceData
from torch import nn
from torch.utils.data import BatchSampler, DataLoader

import cytolt.mm  # noqa: F401  (fills the registries)
from cytolt.losses.cdb import CDBLoss, cdb_weights
from cytolt.mm.hooks import CDBHook, class_recall_counts
from cytolt.samplers import CDBSampler

CLASSES = ("normal", "lsil", "hsil")
# COCO image id -> [(category id, x, y)] with 12x12 boxes; ids 1..3 are labels 0..2; image 4 is empty.
IMAGES = {
    1: [(1, 4, 4), (1, 30, 30)],
    2: [(1, 4, 4), (2, 30, 4)],
    3: [(1, 10, 10)],
    4: [],
    5: [(3, 20, 20)],
}


def _box(x: float, y: float) -> list[float]:
    return [x, y, x + 12.0, y + 12.0]


def test_class_recall_counts_by_hand() -> None:
    gt_boxes = torch.tensor([_box(0, 0), _box(40, 0), _box(0, 40)])
    gt_labels = torch.tensor([0, 0, 1])
    pred_boxes = torch.tensor([_box(1, 0), _box(0, 1), _box(40, 0), _box(20, 20), _box(0, 40)])
    pred_scores = torch.tensor([0.9, 0.8, 0.2, 0.9, 0.7])
    pred_labels = torch.tensor([0, 0, 0, 1, 0])
    # Class 0: two detections overlap gt 0 (IoU 0.85) but one-to-one matching finds it once; gt 1 is only hit
    # below score_thr (0.2 < 0.3) -> 1 of 2 found. Class 1: the detection labelled 1 is elsewhere and the one on
    # gt 2 has the wrong label -> 0 of 1. Class 2: no ground truth.
    found, total = class_recall_counts(pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, 3)
    assert found.tolist() == [1, 0, 0]
    assert total.tolist() == [2, 1, 0]
    found, _ = class_recall_counts(
        pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, 3, score_thr=0.1
    )
    assert found.tolist() == [2, 0, 0]
    # IoU 0.9: the two detections on gt 0 (IoU 0.85) no longer count; the exact hit on gt 1 (IoU 1.0) does.
    found, _ = class_recall_counts(
        pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, 3, iou_thr=0.9, score_thr=0.1
    )
    assert found.tolist() == [1, 0, 0]


def test_class_recall_counts_without_detections_or_ground_truth() -> None:
    empty = torch.zeros(0, 4)
    found, total = class_recall_counts(
        empty, torch.zeros(0), torch.zeros(0), torch.tensor([_box(0, 0)]), torch.tensor([2]), 3
    )
    assert found.tolist() == [0, 0, 0] and total.tolist() == [0, 0, 1]
    found, total = class_recall_counts(
        torch.tensor([_box(0, 0)]),
        torch.tensor([0.9]),
        torch.tensor([0]),
        empty,
        torch.zeros(0, dtype=torch.long),
        3,
    )
    assert found.sum() == 0 and total.sum() == 0


class ToyDetector(BaseModel):
    """Finds every "normal" cell except the one at (30, 30); puts "lsil" 10 px off (IoU 0.09); finds "hsil" with
    score 0.2, below the hook's threshold. Held-out recall is then (3/4, 0, 0): difficulty (0.25, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.cls = nn.Linear(1, len(CLASSES) + 1)
        self.loss_cls = CDBLoss(num_classes=len(CLASSES), tau=1.0)

    def forward(self, inputs=None, data_samples=None, mode="tensor"):
        if mode == "loss":
            # one logit row per box; an empty image contributes a background row
            labels = torch.cat(
                [
                    s.gt_instances.labels if len(s.gt_instances) else torch.tensor([len(CLASSES)])
                    for s in data_samples
                ]
            )
            logits = self.cls(torch.ones(len(labels), 1))
            return {"loss_cls": self.loss_cls(logits, labels)}
        for sample in data_samples:
            gt = sample.gt_instances
            boxes, scores = get_box_tensor(gt.bboxes).clone(), torch.full((len(gt),), 0.9)
            miss = (gt.labels == 0) & (boxes[:, 0] == 30)
            boxes[miss] += 20.0
            boxes[gt.labels == 1, 0] += 10.0
            boxes[gt.labels == 1, 2] += 10.0
            scores[gt.labels == 2] = 0.2
            sample.pred_instances = InstanceData(bboxes=boxes, scores=scores, labels=gt.labels.clone())
        return data_samples


EXPECTED_DIFFICULTY = torch.tensor([0.25, 1.0, 1.0], dtype=torch.float64)


def _write_coco(folder: Path) -> str:
    images, annotations = [], []
    for image_id, objects in IMAGES.items():
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 64, "height": 64})
        for category, x, y in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [x, y, 12, 12],
                    "area": 144,
                    "iscrowd": 0,
                }
            )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
    }
    path = folder / "tiny.json"
    path.write_text(json.dumps(coco))
    return str(path)


def _loader_cfg(ann_file: str, sampler: dict) -> dict:
    # No image is read: annotations are loaded and packed, the toy model needs nothing else.
    pipeline = [
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="PackDetInputs", meta_keys=("img_id",)),
    ]
    dataset = dict(
        type="CocoDataset",
        ann_file=ann_file,
        data_prefix=dict(img=""),
        metainfo=dict(classes=CLASSES),
        pipeline=pipeline,
    )
    return dict(
        batch_size=2, num_workers=0, sampler=sampler, dataset=dataset, collate_fn=dict(type="pseudo_collate")
    )


def _runner(
    tmp_path: Path,
    name: str,
    *,
    max_epochs: int,
    interval: int,
    resume: bool = False,
    hook: dict | None = None,
    sampler: dict | None = None,
) -> Runner:
    ann_file = _write_coco(tmp_path)
    hook = hook or dict(dataloader=_loader_cfg(ann_file, dict(type="DefaultSampler", shuffle=False)))
    return Runner(
        model=ToyDetector(),
        work_dir=str(tmp_path / "work"),
        experiment_name=f"{name}-{tmp_path.name}",
        train_dataloader=_loader_cfg(ann_file, sampler or dict(type="CDBSampler", tau=1.0)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        custom_hooks=[dict(type="CDBHook", interval=interval, **hook)],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1)),
        default_scope="mmdet",
        resume=resume,
        log_level="WARNING",
    )


def _hook(runner: Runner) -> CDBHook:
    (hook,) = [h for h in runner.hooks if isinstance(h, CDBHook)]
    return hook


def test_hook_measures_and_pushes_to_loss_and_sampler_then_resumes(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    runner = _runner(tmp_path, "train", max_epochs=2, interval=1)
    runner.train()
    hook = _hook(runner)
    torch.testing.assert_close(hook.difficulty, EXPECTED_DIFFICULTY)
    weights = cdb_weights(EXPECTED_DIFFICULTY, 1.0)  # (0.25, 1, 1) / 2.25 * 3
    torch.testing.assert_close(runner.model.loss_cls.class_weights, weights)
    sampler = runner.train_dataloader.sampler
    assert isinstance(sampler, CDBSampler)
    torch.testing.assert_close(sampler.difficulty, EXPECTED_DIFFICULTY)
    torch.testing.assert_close(sampler.class_weights, weights.double())
    assert runner.model.training  # the hook put the model back in train mode

    checkpoint = torch.load(tmp_path / "work" / "epoch_2.pth", weights_only=False)
    assert checkpoint["cdb_hook"]["difficulty"] == EXPECTED_DIFFICULTY.tolist()
    scalars = list((tmp_path / "work").glob("*/vis_data/scalars.json"))
    logged = [json.loads(line) for path in scalars for line in path.read_text().splitlines()]
    assert any(row.get("cdb/d/lsil") == 1.0 and "cdb/w_sampler/normal" in row for row in logged)

    # Resume for a third epoch with a hook that will not measure again (interval 10): the saved difficulty
    # must still reach the freshly built sampler before training continues.
    resumed = _runner(tmp_path, "resume", max_epochs=3, interval=10, resume=True)
    resumed.train()
    assert resumed.epoch == 3
    torch.testing.assert_close(_hook(resumed).difficulty, EXPECTED_DIFFICULTY)
    torch.testing.assert_close(resumed.train_dataloader.sampler.difficulty, EXPECTED_DIFFICULTY)


def test_hook_finds_the_sampler_behind_a_batch_sampler() -> None:
    cdb = CDBSampler([{0}, {1}, {2}], num_classes=3)
    loader = DataLoader(range(3), batch_sampler=BatchSampler(cdb, batch_size=2, drop_last=False))
    runner = SimpleNamespace(train_dataloader=loader)
    assert CDBHook._sampler_target(runner) is cdb


def test_hook_rejects_bad_arguments_and_samples_without_ground_truth() -> None:
    with pytest.raises(ValueError, match="interval"):
        CDBHook(interval=0)
    with pytest.raises(ValueError, match="iou_thr"):
        CDBHook(iou_thr=0.0)
    sample = DetDataSample(
        pred_instances=InstanceData(
            bboxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long)
        )
    )
    with pytest.raises(ValueError, match="LoadAnnotations"):
        CDBHook()._sample_counts(sample, 3)


def test_hook_holds_out_part_of_train_measures_there_and_never_trains_on_it(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    runner = _runner(tmp_path, "held", max_epochs=2, interval=1, hook=dict(held_out_fraction=0.4))
    runner.train()
    hook = _hook(runner)
    # Five images; only "normal" has two images to spare one (a class's only image stays in training).
    assert hook.held_out is not None and len(hook.held_out) == 1 and hook.held_out[0] in (0, 2)
    sampler = runner.train_dataloader.sampler
    assert sampler.excluded.nonzero().flatten().tolist() == hook.held_out
    for epoch in range(5):
        sampler.set_epoch(epoch)
        assert hook.held_out[0] not in list(sampler)
    # Image 1 (index 0) holds normal cells at (4, 4) and the missed (30, 30): recall 1/2; image 3 (index 2)
    # one found cell: recall 1. lsil and hsil have no held-out ground truth and keep difficulty 1.
    normal = 0.5 if hook.held_out == [0] else 0.0
    torch.testing.assert_close(hook.difficulty, torch.tensor([normal, 1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(sampler.difficulty, hook.difficulty)


def test_held_out_fraction_needs_a_sampler_that_can_exclude(tmp_path: Path) -> None:
    runner = _runner(
        tmp_path,
        "default-sampler",
        max_epochs=1,
        interval=1,
        hook=dict(held_out_fraction=0.4),
        sampler=dict(type="DefaultSampler", shuffle=True),
    )
    with pytest.raises(ValueError, match="exclude"):
        runner.train()
    with pytest.raises(ValueError, match="not both"):
        CDBHook(held_out_fraction=0.2, dataloader=dict(batch_size=1))
    with pytest.raises(ValueError, match="held_out_fraction"):
        CDBHook(held_out_fraction=1.0)
