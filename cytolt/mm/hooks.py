"""mmengine hooks for cytolt, registered in mmdet's ``HOOKS``: ``CDBHook`` feeds class difficulty to CDB-W/S.

Glossary
    difficulty   (C,) float64, d_c = 1 - A_c; A_c = recall of class c at IoU >= iou_thr on a held-out split.
    recall       a ground-truth box of class c counts as found when a detection labelled c with score >= score_thr
                 overlaps it at IoU >= iou_thr; detections are matched one-to-one in descending score (COCO).
    boxes        (N, 4) xyxy, in the original image's pixels (mmdet's test-time frame).

Config::

    custom_hooks = [dict(type='CDBHook', interval=1, dataloader=held_out_dataloader)]
    custom_hooks = [dict(type='CDBHook', interval=100, by_epoch=False, held_out_fraction=0.15)]  # part of train
    # model: loss_cls=dict(type='CDBLoss', ...); train_dataloader: sampler=dict(type='CDBSampler', tau='dynamic')
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from mmdet.registry import HOOKS
from mmdet.structures.bbox import get_box_tensor
from mmengine.dataset import Compose, pseudo_collate
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch.utils.data import DataLoader
from torchvision.ops import box_iou

from cytolt.samplers import held_out_indices

__all__ = ["CDBHook", "class_recall_counts"]

_LOG_CLASSES = 30  # per-class entries written to the text log; all classes go to the visualizer

_DataBatch = dict | tuple | list | None


@runtime_checkable
class _DifficultyLoss(Protocol):
    """A loss (``cytolt.losses.cdb.CDBLoss`` or any module like it) that re-weights from class difficulty."""

    def set_difficulty(self, difficulty: torch.Tensor) -> Any: ...


@runtime_checkable
class _DifficultySampler(Protocol):
    """A sampler (``cytolt.samplers.CDBSampler``) that redraws its weights from class difficulty."""

    def update_difficulty(self, difficulty: torch.Tensor) -> None: ...

    def exclude(self, indices: Sequence[int]) -> None: ...


def class_recall_counts(
    pred_boxes: torch.Tensor,
    pred_scores: torch.Tensor,
    pred_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    num_classes: int,
    *,
    iou_thr: float = 0.5,
    score_thr: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class found and total ground-truth counts of one image, each (C,) int64.

    Detections with ``score >= score_thr`` are visited in descending score; each takes the unmatched
    ground-truth box of its own class with the highest IoU if that IoU is ``>= iou_thr`` (COCO's greedy rule).

    Args:
        pred_boxes: (P, 4) xyxy; pred_scores (P,); pred_labels (P,) in 0..C-1.
        gt_boxes: (G, 4) xyxy in the same frame; gt_labels (G,) in 0..C-1.
        num_classes: C.
    """
    total = torch.bincount(gt_labels.long().cpu(), minlength=num_classes)[:num_classes]
    found = torch.zeros(num_classes, dtype=torch.long)
    keep = pred_scores >= score_thr
    if len(gt_labels) == 0 or not keep.any():
        return found, total
    order = pred_scores[keep].argsort(descending=True)
    boxes, labels = pred_boxes[keep][order].float().cpu(), pred_labels[keep][order].long().cpu()
    gt_labels = gt_labels.long().cpu()
    iou = box_iou(boxes, gt_boxes.float().cpu())
    # Only same-class pairs above the threshold may match; -1 marks the rest.
    iou = torch.where((labels[:, None] == gt_labels[None, :]) & (iou >= iou_thr), iou, iou.new_tensor(-1.0))
    for row in iou:  # greedy in score order; P is at most the detector's max_per_img (100 in mmdet)
        best = int(row.argmax())
        if row[best] >= 0:
            found[gt_labels[best]] += 1
            iou[:, best] = -1.0
    return found, total


@HOOKS.register_module()
class CDBHook(Hook):
    """Measure class difficulty on a held-out split and push it to CDB-W losses and CDB-S samplers.

    Class-Difficulty Based methods (Sinha et al., ACCV 2020; IJCV 2022): every ``interval`` epochs (K=1 in the
    paper) the model runs in test mode on the held-out split, ``d_c = 1 - recall_c`` (see module glossary) is
    computed, and every module of the model that has ``set_difficulty(d)`` (``CDBLoss``) and the train
    sampler's ``update_difficulty(d)`` (``CDBSampler``) receive it; each turns it into weights with its own
    tau. Difficulty starts at ones (uniform weights, nothing pushed) and is replaced, not averaged. Classes with
    no ground truth in the split keep their previous difficulty. The last difficulty is saved in checkpoints
    (key ``'cdb_hook'``) and pushed again when a run resumes.

    Recall at IoU 0.5 rather than per-class AP: it is the detection analogue of the paper's per-class accuracy
    (a ground-truth object of class c "classified correctly"), needs no AP re-implementation, and a few images
    per class give a usable estimate.

    Args:
        interval: measure every ``interval`` epochs (iterations when ``by_epoch=False``).
        dataloader: held-out split; an mmengine dataloader config (built with ``runner.build_dataloader``), a
            ``DataLoader``, or ``None`` for the run's val dataloader. Its pipeline must load annotations
            after ``Resize`` (mmdet's test-pipeline convention, as ``VOCMetric`` needs) so that
            ``gt_instances`` and predictions share the original image frame.
        held_out_fraction: instead of ``dataloader``, hold out this fraction of the *training* images
            (:func:`cytolt.samplers.held_out_indices`, stratified by rarest class, seeded by the run's seed),
            measure on them and remove them from the train sampler's draw (which must then have
            ``exclude``: ``CDBSampler``), as METHODS.md asks for detection. They are read with
            ``pipeline``, default the val dataloader's (the config's test pipeline), else the train one's.
        pipeline: the held-out images' pipeline with ``held_out_fraction`` (see there).
        iou_thr: IoU for a match (0.5).
        score_thr: minimum detection score for a ground truth to count as found.
        by_epoch: count ``interval`` in epochs (default) or in training iterations.
    """

    priority = "NORMAL"  # before CheckpointHook (VERY_LOW), so the saved state holds the new difficulty

    def __init__(
        self,
        *,
        interval: int = 1,
        dataloader: dict | DataLoader | None = None,
        iou_thr: float = 0.5,
        score_thr: float = 0.3,
        by_epoch: bool = True,
        held_out_fraction: float | None = None,
        pipeline: Sequence[dict] | None = None,
    ) -> None:
        if interval < 1:
            raise ValueError(f"CDBHook: interval must be >= 1; got {interval}")
        if held_out_fraction is not None:
            if dataloader is not None:
                raise ValueError("CDBHook: give either dataloader or held_out_fraction, not both")
            if not 0 < held_out_fraction < 1:
                raise ValueError(f"CDBHook: held_out_fraction must be in (0, 1); got {held_out_fraction}")
        if not 0.0 < iou_thr <= 1.0:
            raise ValueError(f"CDBHook: iou_thr must be in (0, 1]; got {iou_thr}")
        self.interval = interval
        self.iou_thr = iou_thr
        self.score_thr = score_thr
        self.by_epoch = by_epoch
        self._dataloader_cfg = dataloader
        self._dataloader: DataLoader | None = dataloader if isinstance(dataloader, DataLoader) else None
        self.held_out_fraction = held_out_fraction
        self._pipeline = list(pipeline) if pipeline is not None else None
        self.held_out: list[int] | None = None  # train indices held out (held_out_fraction), set before_train
        self._classes: Sequence[str] | None = None
        self.difficulty: torch.Tensor | None = None

    # ------------------------------------------------------------------ mmengine events

    def before_train(self, runner: Any) -> None:
        if self.held_out_fraction is not None:
            self._hold_out_train_part(runner)
        if not self._loss_targets(runner) and self._sampler_target(runner) is None:
            runner.logger.warning(
                "CDBHook: neither a loss with set_difficulty (CDBLoss) nor a train sampler with "
                "update_difficulty (CDBSampler) found; the measured difficulty will only be logged"
            )
        if self.difficulty is not None:  # restored from a checkpoint: resume where the run left off
            self._push(runner, self.difficulty, step=runner.epoch if self.by_epoch else runner.iter)

    def after_train_epoch(self, runner: Any) -> None:
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self.update(runner, step=runner.epoch + 1)  # runner.epoch counts from 0 until the epoch ends

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: _DataBatch = None, outputs: dict | None = None
    ) -> None:
        if not self.by_epoch and self.every_n_train_iters(runner, self.interval):
            self.update(runner, step=runner.iter + 1)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if self.difficulty is not None:
            checkpoint["cdb_hook"] = {"difficulty": self.difficulty.tolist()}

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state = checkpoint.get("cdb_hook")
        if state is not None:
            self.difficulty = torch.tensor(state["difficulty"], dtype=torch.float64)

    # ------------------------------------------------------------------ work

    def update(self, runner: Any, *, step: int = 0) -> torch.Tensor:
        """Measure difficulty now, push it to the loss(es) and the sampler, log it at ``step``; returns d (C,)."""
        difficulty = self.measure(runner)
        self.difficulty = difficulty
        self._push(runner, difficulty, step=step)
        return difficulty

    def measure(self, runner: Any) -> torch.Tensor:
        """Run the model in test mode on the held-out split and return d = 1 - recall, (C,) float64."""
        num_classes = self._num_classes(runner)
        found = torch.zeros(num_classes, dtype=torch.float64)
        total = torch.zeros(num_classes, dtype=torch.float64)
        model = runner.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for data_batch in self._held_out(runner):
                    for sample in model.test_step(data_batch):
                        f, t = self._sample_counts(sample, num_classes)
                        found += f
                        total += t
        finally:
            model.train(was_training)
        # Each rank saw its shard of the split; sum the counts (no-op without DDP).
        all_reduce(found, op="sum")
        all_reduce(total, op="sum")
        previous = (
            self.difficulty if self.difficulty is not None else torch.ones(num_classes, dtype=torch.float64)
        )
        seen = total > 0
        difficulty = previous.clone()
        difficulty[seen] = 1.0 - found[seen] / total[seen]
        if not seen.all():
            missing = torch.nonzero(~seen).flatten().tolist()
            runner.logger.warning(
                f"CDBHook: classes {missing[:20]} have no ground truth in the held-out split; kept their difficulty"
            )
        return difficulty

    def _sample_counts(self, sample: Any, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        if "gt_instances" not in sample:
            raise ValueError(
                "CDBHook: held-out predictions carry no gt_instances; its pipeline must include "
                "LoadAnnotations (after Resize) and PackDetInputs"
            )
        gt, pred = sample.gt_instances, sample.pred_instances
        # mmdet keeps ground truth as HorizontalBoxes (LoadAnnotations' box_type='hbox'), predictions as tensors.
        return class_recall_counts(
            get_box_tensor(pred.bboxes),
            pred.scores,
            pred.labels,
            get_box_tensor(gt.bboxes),
            gt.labels,
            num_classes,
            iou_thr=self.iou_thr,
            score_thr=self.score_thr,
        )

    def _hold_out_train_part(self, runner: Any) -> None:
        """Choose the held-out training images, take them out of the train draw, build their loader."""
        sampler = self._sampler_target(runner)
        if sampler is None or not hasattr(sampler, "exclude"):
            raise ValueError(
                "CDBHook: held_out_fraction needs a train sampler that can exclude images (CDBSampler), or "
                "the held-out images would still be trained on; give a dataloader of another split instead"
            )
        train_set = runner.train_dataloader.dataset
        if hasattr(train_set, "full_init"):
            train_set.full_init()
        classes = [{int(c) for c in train_set.get_cat_ids(i)} for i in range(len(train_set))]
        self.held_out = held_out_indices(classes, self.held_out_fraction, seed=int(runner.seed or 0))
        sampler.exclude(self.held_out)
        held = copy.deepcopy(train_set)  # the same index space as the sampler's
        held.get_subset_(self.held_out)
        pipeline = self._pipeline
        if pipeline is None:
            val = runner.cfg.get("val_dataloader") or {}
            pipeline = (val.get("dataset") or {}).get("pipeline")
        if pipeline is not None:
            held.pipeline = Compose(copy.deepcopy(list(pipeline)))
        self._classes = train_set.metainfo.get("classes")
        batch = int((runner.cfg.get("val_dataloader") or {}).get("batch_size", 8))
        self._dataloader = DataLoader(held, batch_size=batch, shuffle=False, collate_fn=pseudo_collate)
        runner.logger.info(
            f"CDBHook: difficulty measured on {len(self.held_out)} of {len(train_set)} training images "
            f"({self.held_out_fraction:.0%}, stratified by rarest class), which are no longer trained on"
        )

    def _held_out(self, runner: Any) -> DataLoader:
        if self._dataloader is None:
            if self._dataloader_cfg is None:
                self._dataloader = runner.val_dataloader
            else:
                self._dataloader = runner.build_dataloader(self._dataloader_cfg, seed=runner.seed)
        return self._dataloader

    def _metainfo_classes(self, runner: Any) -> Sequence[str] | None:
        if self._classes is not None:
            return self._classes
        dataset = self._held_out(runner).dataset
        return getattr(dataset, "metainfo", {}).get("classes")

    def _num_classes(self, runner: Any) -> int:
        classes = self._metainfo_classes(runner)
        if not classes:
            raise ValueError("CDBHook: the held-out dataset's metainfo has no 'classes'")
        return len(classes)

    # ------------------------------------------------------------------ consumers

    @staticmethod
    def _loss_targets(runner: Any) -> list[_DifficultyLoss]:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return [m for m in model.modules() if isinstance(m, _DifficultyLoss)]

    @staticmethod
    def _sampler_target(runner: Any) -> _DifficultySampler | None:
        loader = runner.train_dataloader
        # With a batch_sampler (mmdet's AspectRatioBatchSampler) DataLoader.sampler is a stand-in.
        batch_sampler = getattr(loader, "batch_sampler", None)
        for sampler in (loader.sampler, getattr(batch_sampler, "sampler", None)):
            if isinstance(sampler, _DifficultySampler):
                return sampler
        return None

    def _push(self, runner: Any, difficulty: torch.Tensor, *, step: int) -> None:
        losses = self._loss_targets(runner)
        loss_weights = None
        for loss in losses:
            # CDBLoss returns its new weights; kept for the log (the first loss's, if several).
            returned = loss.set_difficulty(difficulty)
            if loss_weights is None and isinstance(returned, torch.Tensor):
                loss_weights = returned.detach().cpu()
        sampler = self._sampler_target(runner)
        if sampler is not None:
            sampler.update_difficulty(difficulty)
        self._log(runner, difficulty, sampler, loss_weights, num_losses=len(losses), step=step)

    def _log(
        self,
        runner: Any,
        difficulty: torch.Tensor,
        sampler: Any,
        loss_weights: torch.Tensor | None,
        *,
        num_losses: int,
        step: int,
    ) -> None:
        classes: Sequence[str] = self._metainfo_classes(runner) or []
        names = (
            [str(n) for n in classes]
            if len(classes) == len(difficulty)
            else [str(i) for i in range(len(difficulty))]
        )
        columns = {"d": difficulty.tolist()}
        if loss_weights is not None:
            columns["w_loss"] = loss_weights.tolist()
        if sampler is not None:
            columns["w_sampler"] = sampler.class_weights.tolist()
        # the hardest first; a long-tail dataset (LVIS: 1203 classes) writes only its 30 hardest to the text log
        order = difficulty.argsort(descending=True, stable=True)[:_LOG_CLASSES].tolist()
        rows = [f"{names[i]}: " + " ".join(f"{k}={v[i]:.3f}" for k, v in columns.items()) for i in order]
        more = f" (+{len(names) - len(order)} easier classes)" if len(names) > len(order) else ""
        runner.logger.info(
            f"CDBHook: difficulty pushed to {num_losses} loss(es) and "
            f"{'the' if sampler is not None else 'no'} sampler; " + ", ".join(rows) + more
        )
        scalars = {
            f"cdb/{key}/{name}": value
            for key, values in columns.items()
            for name, value in zip(names, values, strict=True)
        }
        runner.visualizer.add_scalars(scalars, step=step)
