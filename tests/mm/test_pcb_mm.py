"""cytolt/mm/pcb.py: PCB in mmdet. The loss builds from a config, is mmdet's softmax cross-entropy until the hook
switches it on, trains a two-stage box head and a softmax RetinaHead, and the hook follows epoch, iteration and
fraction starts."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("mmdet")

from mmdet.registry import MODELS  # noqa: E402

import cytolt.mm  # noqa: E402,F401  (registers cytolt into mmdet's registries)
from cytolt.losses.pcb import PCBLoss as PurePCBLoss  # noqa: E402
from cytolt.mm.pcb import PCBHook, PCBLoss, pcb_losses  # noqa: E402
from tests.mm._heads import bbox_head, dense_head, train_step  # noqa: E402

C = 3
PCB = dict(type="PCBLoss", num_classes=C, alpha=0.4)


@pytest.fixture(scope="module", autouse=True)
def _mmdet_scope() -> None:
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)


def test_builds_from_a_config_and_refuses_sigmoid() -> None:
    loss = MODELS.build(dict(PCB, use_sigmoid=False))
    assert type(loss) is PCBLoss and isinstance(loss, PurePCBLoss)
    with pytest.raises(ValueError, match="use_sigmoid must be False"):
        MODELS.build(dict(PCB, use_sigmoid=True))


def test_disabled_equals_mmdets_cross_entropy_with_weights_and_avg_factor() -> None:
    torch.manual_seed(0)
    ours, mmdet_ce = MODELS.build(PCB).train(), MODELS.build(dict(type="CrossEntropyLoss", use_sigmoid=False))
    logits, labels = torch.randn(8, C + 1), torch.tensor([0, 1, 2, 3, 3, 0, 2, 3])
    weight = torch.tensor([1.0, 1, 1, 1, 0, 1, 1, 1])
    torch.testing.assert_close(
        ours(logits, labels, weight, avg_factor=7.0), mmdet_ce(logits, labels, weight, avg_factor=7.0)
    )
    ours.set_enabled(True)  # every class was seen in that call: the regulariser now changes the loss
    assert not torch.allclose(
        ours(logits, labels, weight, avg_factor=7.0), mmdet_ce(logits, labels, weight, avg_factor=7.0)
    )


def test_two_stage_head_trains_and_learns_its_confusion_matrix() -> None:
    head = bbox_head(C, PCB)
    assert head.fc_cls.out_features == C + 1 and not head.custom_cls_channels  # mmdet's softmax layout
    head.loss_cls.set_enabled(True)
    losses = train_step(head)
    assert head.loss_cls.instance_count.tolist() == [
        1.0,
        1.0,
        1.0,
    ]  # train_step's labels 0, 1, 2 + background
    torch.testing.assert_close(head.loss_cls.confusion.sum(1), torch.ones(C))
    assert head.fc_cls.weight.grad is not None and "acc" in losses


def test_softmax_retina_head_trains_a_step() -> None:
    train_cfg = dict(
        assigner=dict(
            type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1
        ),
        sampler=dict(type="PseudoSampler"),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
    )
    head = dense_head("RetinaHead", C, dict(PCB, use_sigmoid=False), train_cfg=train_cfg)
    assert head.retina_cls.out_channels == C + 1
    feats = [torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2)]
    from mmengine.structures import InstanceData

    gt = InstanceData(bboxes=torch.tensor([[2.0, 2.0, 20.0, 20.0]]), labels=torch.tensor([1]))
    meta = dict(img_shape=(32, 32), pad_shape=(32, 32), scale_factor=(1.0, 1.0))
    losses = head.loss_by_feat(*head(feats), [gt], [meta])
    total = sum(v.sum() for v in losses["loss_cls"])
    total.backward()
    assert torch.isfinite(total) and head.loss_cls.instance_count[1] > 0


def _runner(model: torch.nn.Module, *, epoch: int = 0, it: int = 0, max_iters: int = 100) -> SimpleNamespace:
    return SimpleNamespace(
        model=model, epoch=epoch, iter=it, max_iters=max_iters, logger=logging.getLogger("t")
    )


def test_hook_switches_every_pcb_loss_at_its_start() -> None:
    model = torch.nn.ModuleList([MODELS.build(PCB), MODELS.build(PCB)])  # e.g. two cascade stages
    assert len(pcb_losses(model)) == 2
    hook = PCBHook(start_fraction=0.7)
    hook.before_train(_runner(model))
    for it, expected in ((0, 0.0), (69, 0.0), (70, 1.0), (99, 1.0)):
        hook.before_train_iter(_runner(model, it=it), it)
        assert [loss.enabled.item() for loss in model] == [expected, expected], it
    assert PCBHook(start_epoch=17).should_enable(_runner(model, epoch=17))
    assert not PCBHook(start_epoch=17).should_enable(_runner(model, epoch=16, it=10**6))
    assert PCBHook(start_iter=5).should_enable(_runner(model, it=5))
    # A run resumed past the start: the first iteration switches it on again.
    fresh = torch.nn.ModuleList([MODELS.build(PCB)])
    hook.before_train(_runner(fresh))
    hook.before_train_iter(_runner(fresh, it=80), 0)
    assert fresh[0].enabled.item() == 1.0


def test_hook_errors() -> None:
    for kwargs in ({}, dict(start_epoch=1, start_iter=2), dict(start_fraction=1.5), dict(start_iter=-1)):
        with pytest.raises(ValueError):
            PCBHook(**kwargs)
    with pytest.raises(ValueError, match="no PCBLoss"):
        PCBHook(start_iter=0).before_train(_runner(torch.nn.Linear(2, 2)))
