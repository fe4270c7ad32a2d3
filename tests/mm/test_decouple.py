"""cytolt/mm/decouple.py: cRT, LWS and tau-norm on mmdet models. Class-balanced weights by hand and in the draw,
the retrain hook freezes all but the classifier (batch norm included) and re-initialises it once, LWS loads a
stage-1 box head, tau-norm finds the classifier rows of RoI and dense heads, and a sweep at tau 0 scores the model
as trained."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("mmdet")

from mmdet.registry import MODELS  # noqa: E402

import cytolt.mm  # noqa: E402,F401  (registers cytolt into mmdet's registries)
from cytolt.mm.decouple import (  # noqa: E402
    ClassBalancedSampler,
    ClassifierRetrainHook,
    apply_tau_norm,
    class_balanced_image_weights,
    classifier_layers,
)
from cytolt.mm.tau_norm import tau_norm_sweep  # noqa: E402
from tests.mm._heads import bbox_head, dense_head, train_step  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
C = 3
CE = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)


@pytest.fixture(scope="module", autouse=True)
def _mmdet_scope() -> None:
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)


def test_class_balanced_weights_by_hand() -> None:
    # Class 0 in images 0, 1, 2 (n = 3); class 1 in image 2 (n = 1); class 2 nowhere; image 3 empty.
    weights = class_balanced_image_weights([{0}, {0}, {0, 1}, set()], 3)
    torch.testing.assert_close(weights, torch.tensor([1 / 3, 1 / 3, 1 / 3 + 1.0, 0.0], dtype=torch.float64))
    # Summed over a class's images, every present class has the same mass: 1.
    with pytest.raises(ValueError, match="no image has an annotated class"):
        class_balanced_image_weights([set(), set()], 2)
    with pytest.raises(ValueError, match="outside 0..1"):
        class_balanced_image_weights([{2}], 2)


class _Dataset:
    metainfo = {"classes": ("a", "b")}

    def __init__(self, image_classes: list[set[int]]) -> None:
        self._classes = image_classes

    def __len__(self) -> int:
        return len(self._classes)

    def get_cat_ids(self, idx: int) -> list[int]:
        return sorted(self._classes[idx])


def test_sampler_draws_each_class_about_equally() -> None:
    # 90 images of class 0, 10 of class 1: uniform sampling sees class 1 in 10% of draws, class-balanced in ~50%.
    sampler = ClassBalancedSampler(dataset=_Dataset([{0}] * 90 + [{1}] * 10), seed=0, num_samples=4000)
    draws = torch.tensor(list(iter(sampler)))
    assert len(sampler) == 4000 and len(draws) == 4000
    assert abs((draws >= 90).float().mean().item() - 0.5) < 0.03
    sampler.set_epoch(1)
    assert not torch.equal(torch.tensor(list(iter(sampler))), draws)  # a new draw each epoch


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4))
        self.roi_head = torch.nn.Module()
        self.roi_head.bbox_head = bbox_head(C, CE)


def _runner(model: torch.nn.Module, **cfg) -> SimpleNamespace:
    return SimpleNamespace(model=model, cfg=dict(cfg), logger=logging.getLogger("t"))


def test_retrain_hook_freezes_all_but_the_classifier_and_reinitialises_it() -> None:
    torch.manual_seed(0)
    model = _Model()
    head = model.roi_head.bbox_head
    head.fc_cls.weight.data.fill_(1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hook = ClassifierRetrainHook()
    hook.before_train(_runner(model, load_from="stage1.pth"))
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["roi_head.bbox_head.fc_cls.bias", "roi_head.bbox_head.fc_cls.weight"]
    assert (
        head.fc_cls.weight.std().item() == pytest.approx(0.01, rel=0.5) and head.fc_cls.bias.abs().max() == 0
    )
    for key in ("roi_head.bbox_head.fc_reg.weight", "backbone.0.weight"):
        assert torch.equal(model.state_dict()[key], before[key])
    # Frozen batch norm stays in eval mode (running statistics of stage 1) whatever model.train() did.
    model.train()
    hook.before_train_iter(_runner(model), 0)
    assert not model.backbone[1].training and head.training
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.05)  # built before the hook ran
    losses = train_step(head)
    assert head.fc_cls.weight.grad is not None and head.fc_reg.weight.grad is None and "loss_cls" in losses
    optimizer.step()  # no gradient, no update and no weight decay for the frozen part
    for key in (
        "roi_head.bbox_head.fc_reg.weight",
        "roi_head.bbox_head.shared_fcs.0.weight",
        "backbone.0.weight",
    ):
        assert torch.equal(model.state_dict()[key], before[key]), key
    assert not torch.equal(head.fc_cls.weight, before["roi_head.bbox_head.fc_cls.weight"])


def test_retrain_hook_does_not_reinitialise_a_resumed_stage_two() -> None:
    model = _Model()
    model.roi_head.bbox_head.fc_cls.weight.data.fill_(0.5)
    hook = ClassifierRetrainHook()
    checkpoint: dict = {}
    hook.before_save_checkpoint(_runner(model), checkpoint)
    hook.after_load_checkpoint(_runner(model), checkpoint)
    hook.before_train(_runner(model, resume=True))
    assert bool((model.roi_head.bbox_head.fc_cls.weight == 0.5).all())
    with pytest.raises(ValueError, match="no parameter matches"):
        ClassifierRetrainHook(trainable=["nothing.here"]).before_train(_runner(_Model()))


def test_lws_predictor_loads_a_stage_one_head_and_trains_only_scales() -> None:
    torch.manual_seed(1)
    stage_one = bbox_head(C, CE)
    lws = bbox_head(C, CE, cls_predictor_cfg=dict(type="LWSPredictor"))
    missing, unexpected = lws.load_state_dict(stage_one.state_dict(), strict=False)
    assert missing == ["fc_cls.scale"] and not unexpected
    x = torch.randn(4, 4, 2, 2)
    torch.testing.assert_close(lws(x)[0], stage_one(x)[0])  # scales at 1: stage 1's logits
    wrapper = _Model()
    wrapper.roi_head.bbox_head = lws
    ClassifierRetrainHook(trainable=["roi_head.bbox_head.fc_cls.scale"], reinit=[]).before_train(
        _runner(wrapper, load_from="x")
    )
    assert [n for n, p in wrapper.named_parameters() if p.requires_grad] == [
        "roi_head.bbox_head.fc_cls.scale"
    ]
    assert classifier_layers(wrapper, "roi_head.bbox_head*fc_cls") == {
        "roi_head.bbox_head.fc_cls.classifier.weight": (C, 1)
    }


def test_classifier_layers_and_tau_norm_on_roi_and_dense_heads() -> None:
    model = _Model()
    layers = classifier_layers(model, "roi_head.bbox_head*fc_cls")
    assert layers == {"roi_head.bbox_head.fc_cls.weight": (C, 1)}  # softmax: C classes + background
    state = model.state_dict()
    normed = apply_tau_norm(state, layers, 1.0)
    norms = normed["roi_head.bbox_head.fc_cls.weight"].norm(dim=1)
    torch.testing.assert_close(
        norms[:C], torch.full((C,), float(state["roi_head.bbox_head.fc_cls.weight"][:C].norm(dim=1).mean()))
    )
    assert torch.equal(
        normed["roi_head.bbox_head.fc_cls.weight"][C], state["roi_head.bbox_head.fc_cls.weight"][C]
    )
    assert torch.equal(normed["roi_head.bbox_head.fc_cls.bias"], state["roi_head.bbox_head.fc_cls.bias"])
    # RetinaNet softmax head with 2 anchors: 2 groups of C + 1 rows.
    retina = torch.nn.Module()
    retina.bbox_head = dense_head("RetinaHead", C, CE, ratios=(0.5, 1.0))
    assert classifier_layers(retina, "bbox_head.retina_cls") == {"bbox_head.retina_cls.weight": (C, 1)}
    with pytest.raises(ValueError, match="no module of the model matches"):
        classifier_layers(model, "bbox_head.retina_cls")
    with pytest.raises(KeyError, match="no 'x.weight'"):
        apply_tau_norm({}, {"x.weight": (C, 1)}, 1.0)


@pytest.mark.slow
def test_sweep_at_tau_zero_scores_the_model_as_trained(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from cytolt.mm.evaluate import evaluate
    from cytolt.synth import make_patch_dataset

    torch.set_num_threads(1)
    data = tmp_path / "tct"
    make_patch_dataset(data, images=16, size=128, imbalance=5, seed=1, split=(0.5, 0.25, 0.25))
    config = ROOT / "configs/tct/retinanet_r18_ce.py"
    from cytolt.mm.train import load_config

    cfg = load_config(config, work_dir=tmp_path / "w", data_root=data)
    from mmengine.registry import DefaultScope

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model)
    model.init_weights()
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    rows = tau_norm_sweep(config, weights, [0.0, 1.0], classifier="bbox_head.retina_cls", data_root=data)
    assert [r["tau"] for r in rows] == [0.0, 1.0] and sum(r["best"] for r in rows) == 1.0
    plain = evaluate(config, weights, split="val", data_root=data)
    assert rows[0]["lt/AP"] == pytest.approx(plain["lt/AP"])


def test_sweep_script_explains_bad_arguments(capsys) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("tau_norm_sweep", ROOT / "scripts" / "tau_norm_sweep.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    config = str(ROOT / "configs/tct/retinanet_r18_ce.py")
    assert script.main([config, "/nonexistent/model", "--taus", "0,x"]) == 2
    assert "comma list of numbers" in capsys.readouterr().err
    assert script.main([config, "/nonexistent/model", "--taus", "-1"]) == 2
    assert script.main([config, "/nonexistent/model"]) == 2
    assert "not found: /nonexistent/model" in capsys.readouterr().err
