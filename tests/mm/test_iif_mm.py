"""cytolt/mm/iif.py: IIF in mmdet. Factors counted from a training json, the dense head and the RoI predictor scale
their logits by them in training and at test, and the scores a head emits are the softmax of the scaled logits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")

import cytolt.mm  # noqa: E402,F401  (registers cytolt into mmdet's registries)
from cytolt.losses.iif import IIFClassifier  # noqa: E402
from cytolt.mm.iif import IIFPredictor, iif_from_annotations  # noqa: E402
from tests.mm._heads import bbox_head, dense_head, dense_scores, rcnn_scores, train_step  # noqa: E402

C = 3
CE = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
FACTORS = [3.0, 2.0, 1.5]


@pytest.fixture(scope="module", autouse=True)
def _mmdet_scope() -> None:
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)


@pytest.fixture
def train_json(tmp_path: Path) -> Path:
    # 4 images; class 1 in all 4 (twice in image 1), class 2 in 2, class 3 in 1 (two instances).
    anns = [(1, 1), (1, 1), (2, 1), (3, 1), (4, 1), (1, 2), (3, 2), (2, 3), (2, 3)]
    data = dict(
        images=[dict(id=i, width=32, height=32, file_name=f"{i}.png") for i in range(1, 5)],
        categories=[dict(id=k, name=f"c{k}") for k in (1, 2, 3)],
        annotations=[
            dict(id=j, image_id=img, category_id=cat, bbox=[0, 0, 4, 4], area=16, iscrowd=0)
            for j, (img, cat) in enumerate(anns, 1)
        ],
    )
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    return path


def test_factors_counted_from_the_training_json(train_json: Path) -> None:
    # images per class 4, 2, 1 of N = 4: smooth log(5/5) + 1 = 1, log(5/3) + 1 = 1.51083, log(5/2) + 1 = 1.91629.
    smooth = iif_from_annotations(str(train_json), variant="smooth")
    torch.testing.assert_close(smooth, torch.tensor([1.0, math.log(5 / 3) + 1, math.log(5 / 2) + 1]))
    # instances per class 5, 2, 2 of 9 (IOF): raw log(9/5), log(9/2), log(9/2).
    iof = iif_from_annotations(str(train_json), variant="raw", counts="instances")
    torch.testing.assert_close(iof, torch.tensor([math.log(9 / 5), math.log(9 / 2), math.log(9 / 2)]))
    # raw on images: class 1 is in every image -> factor 0, refused with a pointer to 'smooth'.
    with pytest.raises(ValueError, match="variant='smooth'"):
        iif_from_annotations(str(train_json), variant="raw")
    with pytest.raises(ValueError, match="counts must be one of 'images', 'instances'"):
        iif_from_annotations(str(train_json), counts="boxes")


def _retina(**extra) -> torch.nn.Module:
    return dense_head("IIFRetinaHead", C, CE, ratios=(0.5, 1.0), **{"iif": FACTORS, **extra})


def test_dense_head_scales_every_anchor_group_and_keeps_background() -> None:
    head = _retina()
    head.init_weights()  # RetinaHead's init reaches the wrapped conv
    assert isinstance(head.retina_cls, IIFClassifier) and head.retina_cls.extra == 1
    conv = head.retina_cls.classifier
    assert conv.out_channels == 2 * (C + 1)  # 2 anchors x (3 classes + background)
    assert conv.bias.mean().item() == pytest.approx(-math.log(99), abs=1e-4)  # bias_prob 0.01 reached it
    x = torch.randn(1, 8, 4, 4)
    scale = torch.tensor([*FACTORS, 1.0] * 2).reshape(1, 8, 1, 1)
    torch.testing.assert_close(head.retina_cls(x), conv(x) * scale)
    assert "retina_cls.iif" in head.state_dict()


def test_dense_head_scores_are_the_softmax_of_the_scaled_logits() -> None:
    head = _retina().eval()
    torch.manual_seed(0)
    feats = [torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2)]
    _, got = dense_scores(head, feats)
    with torch.no_grad():
        raw = [head.retina_cls.classifier(head.cls_convs[0](f)) for f in feats]  # the unscaled logits
    raw = torch.cat([r[0].permute(1, 2, 0).reshape(-1, C + 1) for r in raw])
    expected = (
        torch.softmax(raw * torch.tensor([*FACTORS, 1.0]), 1)[:, :C].flatten().sort(descending=True).values
    )
    assert got.numel() == expected.numel()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(got, torch.softmax(raw, 1)[:, :C].flatten().sort(descending=True).values)


def test_dense_head_checks_the_factor_count() -> None:
    with pytest.raises(ValueError, match="2 IIF factors for a head with 3 classes"):
        _retina(iif=[2.0, 1.0])
    with pytest.raises(ValueError, match="exactly one of iif and train_ann_file"):
        _retina(iif=None)


def test_roi_predictor_scales_classes_and_the_head_scores_with_it(train_json: Path) -> None:
    head = bbox_head(
        C, CE, cls_predictor_cfg=dict(type="IIFPredictor", train_ann_file=str(train_json), variant="smooth")
    )
    head.init_weights()
    assert isinstance(head.fc_cls, IIFPredictor) and head.fc_cls.extra == 1
    factors = torch.cat([iif_from_annotations(str(train_json), variant="smooth"), torch.ones(1)])
    x = torch.randn(5, 16)
    torch.testing.assert_close(head.fc_cls(x), head.fc_cls.classifier(x) * factors)
    cls_score = torch.tensor(
        [[-1.0, 2.0, 0.0, 0.5], [0.5, -3.0, 1.5, 0.0]]
    )  # already scaled, as forward emits
    expected = torch.softmax(cls_score, 1)[:, :C].flatten().sort(descending=True).values
    torch.testing.assert_close(rcnn_scores(head, cls_score), expected)


def test_roi_predictor_trains_through_the_factors_and_wraps_a_cosine_classifier() -> None:
    cosine = dict(
        type="IIFPredictor", iif=[4.0, 2.0, 1.0], predictor=dict(type="NormedLinear", tempearture=20)
    )
    head = bbox_head(C, CE, cls_predictor_cfg=cosine)
    assert type(head.fc_cls.classifier).__name__ == "NormedLinear"
    train_step(head)
    assert head.fc_cls.classifier.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="1 IIF factors for 4 outputs"):  # 3 extra columns: no known layout
        bbox_head(C, CE, cls_predictor_cfg=dict(type="IIFPredictor", iif=[2.0]))


def test_tct_iif_config_counts_from_the_training_split() -> None:
    from mmengine.config import Config

    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / "configs/tct/retinanet_r18_iif.py"))
    head = cfg.model.bbox_head
    assert head.type == "IIFRetinaHead" and head.iif_variant == "raw" and head.loss_cls.use_sigmoid is False
    assert (
        head.train_ann_file == cfg.data_root + "annotations_train.json"
    )  # moved by --data-root with the rest
