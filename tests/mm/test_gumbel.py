"""cytolt/mm/gumbel.py: GOL in mmdet. The loss builds from a config, the dense and RoI heads start at the Gumbel
prior and emit Gumbel scores (not sigmoid, not softmax), and both train a step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")

from mmdet.registry import MODELS  # noqa: E402

import cytolt.mm  # noqa: E402,F401  (registers cytolt into mmdet's registries)
from cytolt.losses.gol import GumbelLoss as PureGumbelLoss  # noqa: E402
from cytolt.losses.gol import gumbel_bias_init, gumbel_cdf  # noqa: E402
from cytolt.mm.gumbel import GumbelLoss, GumbelRetinaHead, RoIGumbelLoss  # noqa: E402
from tests.mm._heads import bbox_head, dense_head, dense_scores, rcnn_scores, train_step  # noqa: E402

C = 3
GUMBEL = dict(type="GumbelLoss", use_sigmoid=True)


@pytest.fixture(scope="module", autouse=True)
def _mmdet_scope() -> None:
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)


def test_loss_builds_from_a_config_and_is_cytolts() -> None:
    loss = MODELS.build(dict(type="GumbelLoss", use_sigmoid=True, num_classes=C))
    assert type(loss) is GumbelLoss and isinstance(loss, PureGumbelLoss) and loss.use_sigmoid
    with pytest.raises(ValueError, match="set use_sigmoid=True"):
        MODELS.build(dict(type="GumbelLoss", use_sigmoid=False))


def test_retina_head_starts_at_the_gumbel_prior() -> None:
    head = dense_head("GumbelRetinaHead", C, GUMBEL, prior_prob=0.02)
    head.init_weights()
    bias = head.retina_cls.bias
    torch.testing.assert_close(bias, torch.full_like(bias, gumbel_bias_init(0.02)))
    bias.data.fill_(3.0)
    head.init_weights()  # a second call (mmengine warns) must not reset a trained bias
    assert bool((head.retina_cls.bias == 3.0).all())
    with pytest.raises(ValueError, match="loss_cls must be GumbelLoss"):
        dense_head("GumbelRetinaHead", C, dict(type="FocalLoss", use_sigmoid=True))
    with pytest.raises(ValueError, match="prior must be in"):
        dense_head("GumbelRetinaHead", C, GUMBEL, prior_prob=1.0)


def test_dense_head_scores_are_gumbel_not_sigmoid() -> None:
    head = dense_head("GumbelRetinaHead", C, GUMBEL).eval()
    torch.manual_seed(0)
    cls_scores, got = dense_scores(head, [torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2)])
    logits = torch.cat([s[0].permute(1, 2, 0).reshape(-1, C) for s in cls_scores])
    assert got.numel() == logits.numel()  # every (anchor, class) pair kept
    torch.testing.assert_close(
        got, gumbel_cdf(logits).flatten().sort(descending=True).values, rtol=1e-5, atol=1e-7
    )
    assert not torch.allclose(got, torch.sigmoid(logits).flatten().sort(descending=True).values)


def test_roi_head_has_one_logit_per_class_starts_at_the_prior_and_scores_gumbel() -> None:
    head = bbox_head(C, type="GumbelShared2FCBBoxHead", prior_prob=0.05)
    head.init_weights()
    assert isinstance(head.loss_cls, RoIGumbelLoss) and head.fc_cls.out_features == C
    torch.testing.assert_close(head.fc_cls.bias, torch.full((C,), gumbel_bias_init(0.05)))
    cls_score = torch.tensor([[-1.0, 2.0, 0.0], [0.5, -3.0, 1.5]])
    got = rcnn_scores(head, cls_score)
    # Six (RoI, class) pairs scored exp(-exp(-z)): the best, z = 2, gets 0.8734 (sigmoid 0.8808, softmax 0.6652).
    torch.testing.assert_close(got, gumbel_cdf(cls_score).flatten().sort(descending=True).values)
    assert got[0].item() == pytest.approx(math.exp(-math.exp(-2.0)), rel=1e-6)


def test_roi_loss_is_the_gumbel_bce_and_its_accuracy_uses_the_gumbel_half() -> None:
    loss = RoIGumbelLoss(num_classes=C)
    logits = torch.tensor([[-3.0, 0.5, -3.0], [0.2, -3.0, -4.0], [5.0, -1.0, -1.0]])
    labels = torch.tensor([1, 3, 2])
    pure = PureGumbelLoss(C)
    torch.testing.assert_close(loss(logits, labels, avg_factor=3.0), pure(logits, labels, avg_factor=3.0))
    # p = 1/2 at z = -log(log 2) = 0.367: row 0 predicts class 1 (z 0.5, right), row 1 background (0.2 < 0.367,
    # right), row 2 class 0 (wrong).
    assert loss.get_accuracy(logits, labels)["acc"].item() == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="needs loss_cls RoIGumbelLoss"):
        bbox_head(C, dict(type="CrossEntropyLoss", use_sigmoid=False), type="GumbelShared2FCBBoxHead")


def test_roi_head_trains_a_step() -> None:
    head = bbox_head(C, type="GumbelShared2FCBBoxHead")
    head.init_weights()
    losses = train_step(head)
    assert {"loss_cls", "acc"} <= set(losses) and head.fc_cls.weight.grad.abs().sum() > 0


def test_tct_gol_config_builds_the_gumbel_head() -> None:
    from mmengine.config import Config

    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / "configs/tct/retinanet_r18_gol.py"))
    assert (
        cfg.model.bbox_head.type == "GumbelRetinaHead" and cfg.model.bbox_head.loss_cls.type == "GumbelLoss"
    )
    assert isinstance(MODELS.build(cfg.model).bbox_head, GumbelRetinaHead)
