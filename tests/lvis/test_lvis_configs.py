"""configs/lvis and the train/evaluate scripts: every config parses offline, follows mmdet's published recipe where
it claims to, builds its model, trains two iterations on the mini LVIS set through mmdet's LVISV1Dataset and
scores with mmdet's LVISMetric, whose numbers equal lvis-api's on the same detections."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("mmdet")

from mmengine.config import Config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs" / "lvis"
CONFIGS = sorted(CONFIG_DIR.glob("*.py"))
MMDET_CONFIGS = Path(__import__("mmdet").__file__).parent / ".mim" / "configs"
LVIS_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")

EXPECTED = {
    "mask_rcnn_r50_fpn_random_1x",
    "mask_rcnn_r50_fpn_rfs_1x",
    "mask_rcnn_r50_fpn_rfs_1x_mmdet",
    "mask_rcnn_r50_fpn_eql_1x",
    "mask_rcnn_r50_fpn_eqlv2_1x",
    "mask_rcnn_r50_fpn_eqlv2_c_1x",
    "mask_rcnn_r50_fpn_seesaw_normed_rfs_2x",
    "mask_rcnn_r50_fpn_seesaw_normed_rfs_2x_mmdet",
    "mask_rcnn_r50_fpn_federated_rfs_1x",
    "mask_rcnn_r50_fpn_cdb_1x",
    "mask_rcnn_r50_fpn_copypaste_rfs_1x",
    "mask_rcnn_r50_fpn_norcal_rfs_1x",
    "atss_r50_fpn_focal_rfs_2x",
    "atss_r50_fpn_efl_rfs_2x",
    "atss_r50_fpn_gradlibra_rfs_2x",
    "mask_rcnn_r50_fpn_gol_normed_rfs_2x",
    "mask_rcnn_r50_fpn_iif_rfs_2x",
    "cascade_mask_rcnn_r50_fpn_random_1x",
    "cascade_mask_rcnn_r50_fpn_rfs_1x",
    "cascade_mask_rcnn_r50_fpn_eql_1x",
    "cascade_mask_rcnn_r50_fpn_eqlv2_1x",
    "cascade_mask_rcnn_r50_fpn_federated_rfs_1x",
    "cascade_mask_rcnn_r50_fpn_seesaw_normed_rfs_2x",
    "mask_rcnn_r50_fpn_pcb_rfs_2x",
    "mask_rcnn_r50_fpn_tde_1x",
    "mask_rcnn_r50_fpn_crt_1x",
}


def _load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / f"{name}.py"))


def _walk(node: Any):
    """Every dict in a config tree."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _walk(value)


def _sampler(cfg: Config) -> dict:
    return cfg.train_dataloader.sampler


# ---------------------------------------------------------------------------------------------- structure


def test_every_method_has_a_config():
    assert {p.stem for p in CONFIGS} == EXPECTED


def test_script_method_table_names_every_config():
    table = dict(re.findall(r"\[(\w+)\]=(\w+)", (ROOT / "scripts/lvis/_common.sh").read_text()))
    assert set(table.values()) == EXPECTED
    assert table["norcal"] == "mask_rcnn_r50_fpn_norcal_rfs_1x" and table["rfs"] == "mask_rcnn_r50_fpn_rfs_1x"


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_offline_with_lvis_settings(config):
    cfg = Config.fromfile(str(config))
    name = config.stem
    assert cfg.model.backbone.init_cfg is None  # nothing to download
    assert cfg.backbone_weights.required and cfg.backbone_weights.name == "resnet50-0676ba61.pth"
    assert {n["num_classes"] for n in _walk(cfg.model.to_dict()) if "num_classes" in n} == {1203}
    datasets = [n for n in _walk(cfg.to_dict()) if "ann_file" in n and "pipeline" in n]
    assert datasets and all(
        n["type"] == "LVISV1Dataset" and n["data_root"] == "data/lvis_v1/" for n in datasets
    )
    assert cfg.test_evaluator.type == "LVISMetric"
    assert cfg.test_evaluator.ann_file == "data/lvis_v1/annotations/lvis_v1_val.json"
    assert cfg.test_evaluator.metric == (["bbox"] if name.startswith("atss") else ["bbox", "segm"])
    test_cfg = cfg.model.test_cfg.get("rcnn", cfg.model.test_cfg)
    assert test_cfg.max_per_img == 300 and test_cfg.score_thr == 0.0001  # the LVIS limit, low scores kept
    assert cfg.train_cfg.max_epochs == (24 if "_2x" in name else 12)
    assert cfg.auto_scale_lr == dict(
        enable=False, base_batch_size=16
    )  # lr never follows the GPU count silently
    expected_sampler = (
        dict(type="DefaultSampler", shuffle=True)  # mmdet's recipe: ClassBalancedDataset (test_recipes.py)
        if name.endswith("_mmdet")
        else dict(type="CDBSampler", tau="dynamic")
        if "cdb" in name
        else dict(type="ClassBalancedSampler")  # cRT's stage 2
        if "crt" in name
        else dict(type="RepeatFactorSampler", thr=0.001)
        if "rfs" in name
        else dict(type="DefaultSampler", shuffle=True)
    )
    assert _sampler(cfg) == expected_sampler
    assert "cytolt.mm" in cfg.custom_imports.imports and "cytolt.mm.lvis" in cfg.custom_imports.imports


def test_mask_rcnn_base_is_mmdets_lvis_baseline():
    ours = _load("mask_rcnn_r50_fpn_random_1x")
    mmdet = Config.fromfile(str(MMDET_CONFIGS / "lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py"))
    a, b = ours.model.to_dict(), mmdet.model.to_dict()
    assert b["backbone"].pop("init_cfg") == dict(type="Pretrained", checkpoint="torchvision://resnet50")
    a["backbone"].pop("init_cfg")
    assert a == b
    # mmdet's RFS wraps the dataset (ClassBalancedDataset); the pipelines and the rest are the same.
    assert mmdet.train_dataloader.dataset.type == "ClassBalancedDataset"
    inner = mmdet.train_dataloader.dataset.dataset
    for key in ("ann_file", "data_prefix", "filter_cfg", "pipeline"):
        assert ours.train_dataloader.dataset[key] == inner[key], key
    assert ours.test_dataloader.dataset.pipeline == mmdet.test_dataloader.dataset.pipeline
    assert ours.param_scheduler == mmdet.param_scheduler
    assert ours.optim_wrapper.optimizer == mmdet.optim_wrapper.optimizer
    assert ours.train_cfg.max_epochs == mmdet.train_cfg.max_epochs == 12


def test_atss_base_is_mmdets_atss_with_lvis_classes_and_limits():
    ours = _load("atss_r50_fpn_focal_rfs_2x")
    mmdet = Config.fromfile(str(MMDET_CONFIGS / "atss/atss_r50_fpn_1x_coco.py"))
    a, b = ours.model.to_dict(), mmdet.model.to_dict()
    for model in (a, b):
        model["backbone"].pop("init_cfg")
        model["bbox_head"].pop("num_classes")
        model.pop("test_cfg")
    assert a == b
    assert ours.optim_wrapper.optimizer == mmdet.optim_wrapper.optimizer  # SGD 0.01


def test_seesaw_config_follows_mmdets_normed_mask_seesaw():
    ours = _load("mask_rcnn_r50_fpn_seesaw_normed_rfs_2x")
    mmdet = Config.fromfile(
        str(
            MMDET_CONFIGS
            / "seesaw_loss/mask-rcnn_r50_fpn_seesaw-loss-normed-mask_sample1e-3-ms-2x_lvis-v1.py"
        )
    )
    ob, mb = ours.model.roi_head.bbox_head, mmdet.model.roi_head.bbox_head
    assert ob.cls_predictor_cfg == mb.cls_predictor_cfg == dict(type="NormedLinear", tempearture=20)
    assert ours.model.roi_head.mask_head.predictor_cfg == mmdet.model.roi_head.mask_head.predictor_cfg
    assert (ob.loss_cls.type, mb.loss_cls.type) == ("CytoltSeesawLoss", "SeesawLoss")
    for key in ("p", "q", "num_classes", "loss_weight"):
        assert ob.loss_cls[key] == mb.loss_cls[key], key
    assert ours.param_scheduler == mmdet.param_scheduler and ours.train_cfg.max_epochs == 24


def _cascade_stages(roi_head: dict) -> dict:
    """A SharedConfigCascadeRoIHead config as mmdet's CascadeRoIHead takes it (one bbox_head per stage)."""
    from cytolt.mm.cascade import stage_bbox_heads

    roi_head = dict(roi_head)
    roi_head["bbox_head"] = stage_bbox_heads(roi_head["bbox_head"], roi_head.pop("stage_target_stds"))
    roi_head["type"] = "CascadeRoIHead"
    return roi_head


def test_cascade_base_is_mmdets_cascade_mask_rcnn_with_lvis_classes_and_limits():
    ours = _load("cascade_mask_rcnn_r50_fpn_random_1x")
    mmdet = Config.fromfile(str(MMDET_CONFIGS / "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py"))
    a, b = ours.model.to_dict(), mmdet.model.to_dict()
    a["roi_head"] = _cascade_stages(a["roi_head"])
    for model in (a, b):
        model["backbone"].pop("init_cfg")
        model.pop("test_cfg")
        model["data_preprocessor"].pop("pad_mask", None)  # LVIS pads masks (as our Mask R-CNN base does)
        for head in [*model["roi_head"]["bbox_head"], model["roi_head"]["mask_head"]]:
            head.pop("num_classes")
    assert a == b
    assert ours.model.test_cfg.rcnn == _load("mask_rcnn_r50_fpn_random_1x").model.test_cfg.rcnn  # LVIS limits


def test_gol_config_is_the_published_setting():
    cfg = _load("mask_rcnn_r50_fpn_gol_normed_rfs_2x")
    head = cfg.model.roi_head.bbox_head
    assert head.type == "GumbelShared2FCBBoxHead" and head.loss_cls.type == "RoIGumbelLoss"
    assert math.isclose(-math.log(-math.log(head.prior_prob)), -2.0, abs_tol=1e-3)  # the authors' fc_cls bias
    assert cfg.model.roi_head.mask_head.predictor_cfg == dict(type="NormedConv2d", tempearture=20)
    assert _sampler(cfg) == dict(type="RepeatFactorSampler", thr=0.001) and cfg.train_cfg.max_epochs == 24
    iif = _load("mask_rcnn_r50_fpn_iif_rfs_2x").model.roi_head.bbox_head.cls_predictor_cfg
    assert (iif.type, iif.variant, iif.counts) == ("IIFPredictor", "raw", "images")
    assert iif.train_ann_file == "data/lvis_v1/annotations/lvis_v1_train.json"


# ---------------------------------------------------------------------------------------------- scripts


def _bash(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_train_sh_refuses_unknown_methods_and_points_norcal_to_evaluation():
    done = _bash("scripts/lvis/train.sh", "focal_typo")
    assert done.returncode == 2 and "METHOD must be one of:" in done.stderr and "eqlv2" in done.stderr
    done = _bash("scripts/lvis/train.sh", "norcal")
    assert done.returncode == 2 and "evaluate.sh norcal" in done.stderr
    done = _bash("scripts/lvis/train.sh", "rfs", "two")
    assert done.returncode == 2 and "GPUS must be a positive integer" in done.stderr


def test_evaluate_sh_needs_a_checkpoint():
    done = _bash("scripts/lvis/evaluate.sh", "rfs", "/nonexistent/epoch_12.pth")
    assert done.returncode == 2 and "CHECKPOINT not found" in done.stderr


# ---------------------------------------------------------------------------------------------- evaluation


def _lvis_api(gt: Path, results: Path, iou_type: str) -> dict[str, float]:
    """lvis-api itself, called the way mmdet's LVISMetric calls it (its default 300 detections per image)."""
    from lvis import LVIS, LVISEval, LVISResults

    import cytolt.mm  # noqa: F401  (np.float for lvis 0.5.3)

    lvis_gt = LVIS(str(gt))
    ev = LVISEval(lvis_gt, LVISResults(lvis_gt, str(results)), iou_type)
    ev.run()
    return {k: float(v) for k, v in ev.get_results().items()}


def _assert_metric_equals_lvis_api(metrics: dict, gt: Path, prefix: Path, iou_types: list[str]) -> None:
    """mmdet's LVISMetric numbers (rounded by it to 3 decimals) and cytolt.evaluate.lvis_eval, on the detections
    the metric dumped, equal lvis-api's: every key, to 1e-6."""
    from cytolt.evaluate import lvis_eval

    for iou_type in iou_types:
        results = Path(f"{prefix}.{iou_type}.json")
        reference = _lvis_api(gt, results, iou_type)
        ours = lvis_eval(gt, results, iou_type=iou_type)
        assert set(ours) == set(reference)
        for key, value in reference.items():
            assert abs(ours[key] - value) < 1e-6, (iou_type, key, ours[key], value)
        for key in LVIS_KEYS:
            assert abs(metrics[f"lvis/{iou_type}_{key}"] - float(f"{reference[key]:.3f}")) < 1e-6, (
                iou_type,
                key,
            )


def test_lvis_metric_equals_lvis_api_on_known_detections(make_mini, mini_lvis, tmp_path):
    """Detections made from the val ground truth (jittered, some missed, some mislabelled, some false) give AP
    strictly between 0 and 1 in every frequency group, so the comparison is not one of zeros."""
    from mmdet.registry import METRICS
    from pycocotools import mask as mask_utils

    root, _ = mini_lvis
    cfg = make_mini.mini_config(CONFIG_DIR / "mask_rcnn_r50_fpn_rfs_1x.py", root)
    cfg.test_evaluator.outfile_prefix = str(tmp_path / "results")
    metric = METRICS.build(cfg.test_evaluator)
    gt_path = root / "annotations" / "lvis_v1_val.json"
    val = json.loads(gt_path.read_text())
    rng = np.random.default_rng(0)
    num_classes = len(val["categories"])
    for img in val["images"]:
        h, w = img["height"], img["width"]
        boxes, scores, labels, masks = [], [], [], []
        for ann in (a for a in val["annotations"] if a["image_id"] == img["id"]):
            if rng.random() < 0.15:
                continue  # missed
            x, y, bw, bh = ann["bbox"]
            jitter = rng.normal(0, 1.5, 4)
            label = ann["category_id"] - 1 if rng.random() > 0.2 else int(rng.integers(num_classes))
            mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w)))
            boxes.append([x + jitter[0], y + jitter[1], x + bw + jitter[2], y + bh + jitter[3]])
            scores.append(float(rng.uniform(0.2, 1.0)))
            labels.append(label)
            masks.append(mask.astype(bool))
        for _ in range(3):  # false positives
            x0, y0 = rng.uniform(0, w - 20, 2)
            boxes.append([x0, y0, x0 + 15, y0 + 15])
            scores.append(float(rng.uniform(0.2, 1.0)))
            labels.append(int(rng.integers(num_classes)))
            masks.append(np.zeros((h, w), bool))
        pred = dict(
            bboxes=torch.tensor(boxes, dtype=torch.float32),
            scores=torch.tensor(scores),
            labels=torch.tensor(labels),
            masks=torch.from_numpy(np.stack(masks)),
        )
        metric.process({}, [dict(img_id=img["id"], ori_shape=(h, w), pred_instances=pred)])
    metrics = metric.evaluate(len(val["images"]))
    _assert_metric_equals_lvis_api(metrics, gt_path, tmp_path / "results", ["bbox", "segm"])
    for iou_type in ("bbox", "segm"):
        assert 0.0 < metrics[f"lvis/{iou_type}_AP"] < 1.0
        for group in ("APr", "APc", "APf"):
            assert metrics[f"lvis/{iou_type}_{group}"] >= 0.0  # every group has ground truth in val


# ---------------------------------------------------------------------------------------------- mini runs

_WIDTH = {256: 32, 1024: 64}


def _shrink(node: Any) -> None:
    """Narrow the model for CPU tests: ResNet-18 with 16 base channels, 32-channel FPN and heads, one conv per
    head tower. The structure (heads, losses, classifier layouts) is the config's."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key in (
                "in_channels",
                "out_channels",
                "feat_channels",
                "conv_out_channels",
                "fc_out_channels",
            ):
                if isinstance(value, int):
                    node[key] = _WIDTH.get(value, value)
            else:
                _shrink(value)
        if node.get("type") == "ResNet":
            node.update(depth=18, base_channels=16)
        if node.get("type") == "FPN":
            node["in_channels"] = [16, 32, 64, 128]
        if "stacked_convs" in node:
            node["stacked_convs"] = 1
        if node.get("type") == "FCNMaskHead":
            node["num_convs"] = 1
    elif isinstance(node, list):
        for value in node:
            _shrink(value)


def _cpu_run_config(cfg: Config, work_dir: Path) -> Config:
    """Two iterations (4 train images, batch 2, one epoch) and a test pass with few proposals and detections."""
    tree = cfg.to_dict()
    _shrink(tree["model"])
    model = tree["model"]
    if "roi_head" in model:
        model["train_cfg"]["rpn_proposal"].update(nms_pre=300, max_per_img=100)
        rcnn = model["train_cfg"]["rcnn"]
        for stage in rcnn if isinstance(rcnn, list) else [rcnn]:  # a list: one per cascade stage
            stage["sampler"]["num"] = 64
        model["test_cfg"]["rpn"].update(nms_pre=200, max_per_img=50)
        model["test_cfg"]["rcnn"]["max_per_img"] = 30
    else:
        model["test_cfg"].update(nms_pre=200, max_per_img=30)
    for node in _walk(tree):
        if "num_workers" in node:  # every dataloader, the CDB hook's included
            node.update(num_workers=0, persistent_workers=False)
    dataset = tree["train_dataloader"]["dataset"]
    while "dataset" in dataset:
        dataset = dataset["dataset"]
    dataset["indices"] = 4
    tree["train_dataloader"]["batch_size"] = 2
    tree["train_cfg"].update(max_epochs=1)
    tree["test_dataloader"]["batch_size"] = 2
    tree.update(val_cfg=None, val_dataloader=None, val_evaluator=None, work_dir=str(work_dir))
    tree["test_evaluator"]["outfile_prefix"] = str(work_dir / "results")
    tree["default_hooks"]["checkpoint"] = dict(type="CheckpointHook", interval=100, save_last=False)
    tree["default_hooks"]["logger"]["interval"] = 1
    tree["default_hooks"]["visualization"] = dict(type="DetVisualizationHook", draw=False)
    if tree.get("load_from"):  # a second stage (cRT): a stage-1 checkpoint of the narrowed model
        tree["load_from"] = str(_stage_one_checkpoint(tree["model"], work_dir))
    return Config(tree, cfg_text="# cpu test run\n", filename=cfg.filename)


def _stage_one_checkpoint(model_cfg: dict, work_dir: Path) -> Path:
    """A weights-only checkpoint of the model at its initialisation, standing in for the stage-1 run."""
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(ConfigDict(model_cfg))
    model.init_weights()
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "stage1.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def _bbox_heads(model) -> list:
    """The box heads of a two-stage model: one, or one per cascade stage."""
    heads = model.roi_head.bbox_head
    return list(heads) if isinstance(heads, torch.nn.ModuleList) else [heads]


def _first(head: torch.nn.Module) -> torch.nn.Module:
    """A head, or the first stage's of a cascade (a ModuleList)."""
    return head[0] if isinstance(head, torch.nn.ModuleList) else head


def _inner_loss(runner) -> torch.nn.Module:
    """The classification loss (of the first stage, for a cascade), out of RoISigmoidLoss when wrapped."""
    from cytolt.mm.lvis import RoISigmoidLoss

    model = runner.model
    loss = (
        _first(model.roi_head.bbox_head).loss_cls if hasattr(model, "roi_head") else model.bbox_head.loss_cls
    )
    return loss.loss if isinstance(loss, RoISigmoidLoss) else loss


def _train_sampler(runner):
    loader = runner.train_dataloader
    return getattr(loader.batch_sampler, "sampler", loader.sampler)


def _check_method(name: str, runner, stats) -> None:
    """What each config must have put in place, seen on the trained runner."""
    from cytolt.mm.lvis import eql_image_freq

    model = runner.model
    loss = _inner_loss(runner)
    sampler = type(_train_sampler(runner)).__name__
    num_classes = len(stats.names)
    if "mask_rcnn" in name:
        # Softmax heads: classes + background; Seesaw: + objectness; sigmoid (RoISigmoidLoss, GOL): one per class.
        sigmoid = any(f"_{m}_" in name for m in ("eql", "eqlv2", "eqlv2_c", "federated", "gol"))
        objectness = "_eqlv2_1x" in name  # the authors' EQLv2: C classes + a background sigmoid
        expected = (
            num_classes + 1
            if objectness
            else num_classes
            if sigmoid
            else num_classes + 2
            if "_seesaw_" in name
            else num_classes + 1
        )
        for head in _bbox_heads(model):
            fc_cls = getattr(head.fc_cls, "classifier", head.fc_cls)  # IIF wraps the linear layer
            assert fc_cls.out_features == expected
            # Sigmoid classifiers start at p = 0.01 (bias log(0.01/0.99) = -4.6), EQL / EQLv2's at the authors'
            # p = 0.001 (-6.9), GOL's at the Gumbel prior exp(-e^2) (bias -2); two steps barely move them.
            if sigmoid:
                bias = -2.0 if "_gol_" in name else -6.907 if "_eql" in name else -4.595
                assert fc_cls.bias.mean().item() == pytest.approx(bias, abs=0.2)
    assert sampler == (
        "CDBSampler"
        if "cdb" in name
        else "ClassBalancedSampler"
        if "crt" in name
        else "RepeatFactorSampler"
        if "rfs" in name and not name.endswith("_mmdet")  # mmdet's RFS is a dataset wrapper
        else "DefaultSampler"
    )
    checks = {
        "random_1x": lambda: type(loss).__name__ == "CrossEntropyLoss",
        "rfs_1x": lambda: type(loss).__name__ == "CrossEntropyLoss",
        "rfs_1x_mmdet": lambda: (
            type(loss).__name__ == "CrossEntropyLoss"
            and type(runner.train_dataloader.dataset).__name__ == "ClassBalancedDataset"
        ),
        "seesaw_normed_rfs_2x_mmdet": lambda: (
            type(loss).__name__ == "SeesawLoss"
            and type(runner.train_dataloader.dataset).__name__ == "ClassBalancedDataset"
        ),
        "eql_1x": lambda: torch.allclose(  # the authors' f_j: over images with an annotation
            loss.image_freq.double(),
            torch.from_numpy(eql_image_freq(runner.cfg.model.roi_head.bbox_head.loss_cls.train_ann_file)),
            atol=1e-7,
        ),
        "eqlv2_1x": lambda: (
            type(loss).__name__ == "EQLv2Loss"
            and loss.objectness
            and _first(model.roi_head.bbox_head).fc_cls.out_features == num_classes + 1
            and loss.pos_grad.sum() > 0
        ),
        "eqlv2_c_1x": lambda: (
            not loss.objectness and model.roi_head.bbox_head.fc_cls.out_features == num_classes
        ),
        "seesaw_normed_rfs_2x": lambda: (
            type(_first(model.roi_head.bbox_head).fc_cls).__name__ == "NormedLinear"
            and type(_first(model.roi_head.mask_head).conv_logits).__name__ == "NormedConv2d"
            and loss.cum_samples.sum() > 0
        ),
        "federated_rfs_1x": lambda: torch.allclose(
            loss.sampling_weight.double(), torch.from_numpy(stats.images_per_class.astype(float)) ** 0.5
        ),
        "cdb_1x": lambda: (
            type(loss).__name__ == "CDBLoss"
            and next(h for h in runner.hooks if type(h).__name__ == "CDBHook").difficulty.shape
            == (num_classes,)
        ),
        "copypaste_rfs_1x": lambda: (
            type(runner.train_dataloader.dataset).__name__ == "ClassAwareMixDataset"
            and "CopyPaste" in runner.train_dataloader.dataset.pipeline_types
        ),
        "norcal_rfs_1x": lambda: torch.equal(  # the authors' N_c: images per class
            model.roi_head.bbox_head.class_counts,
            torch.tensor(stats.images_per_class, dtype=torch.float32).clamp_min(1),
        ),
        "focal_rfs_2x": lambda: type(loss).__name__ == "FocalLoss",
        "efl_rfs_2x": lambda: type(loss).__name__ == "EqualizedFocalLoss" and loss.pos_grad.sum() > 0,
        "gradlibra_rfs_2x": lambda: type(loss).__name__ == "GradLibraLoss" and loss.pos_count.sum() > 0,
        "gol_normed_rfs_2x": lambda: (
            type(loss).__name__ == "GumbelLoss"
            and type(model.roi_head.mask_head.conv_logits).__name__ == "NormedConv2d"
        ),
        "pcb_rfs_2x": lambda: (
            type(loss).__name__ == "PCBLoss"
            and loss.instance_count.sum() > 0
            and any(type(h).__name__ == "PCBHook" for h in runner.hooks)
        ),
        "tde_1x": lambda: (
            type(model.roi_head.bbox_head.fc_cls).__name__ == "TDEPredictor"
            and model.roi_head.bbox_head.fc_cls.mean_feature.abs().sum() > 0
        ),
        "crt_1x": lambda: (
            [n for n, p in model.named_parameters() if p.requires_grad]
            == ["roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_cls.bias"]
        ),
        "iif_rfs_2x": lambda: torch.allclose(
            model.roi_head.bbox_head.fc_cls.iif.double(),
            torch.log(stats.num_images / torch.from_numpy(stats.images_per_class.astype(float))),
        ),
    }
    key = max((k for k in checks if name.endswith(k)), key=len)  # "federated_rfs_1x" before "rfs_1x"
    assert checks[key](), f"{name}: {key} check failed"


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds_trains_two_iterations_and_scores_like_lvis_api(config, make_mini, mini_lvis, tmp_path):
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from cytolt.mm.lvis import lvis_category_stats

    torch.set_num_threads(1)
    root, _ = mini_lvis
    cfg = make_mini.mini_config(config, root)
    with DefaultScope.overwrite_default_scope("mmdet"):  # as the Runner builds it
        MODELS.build(cfg.model)  # the config's own model, full width, builds
    runner = Runner.from_cfg(_cpu_run_config(cfg, tmp_path / "run"))
    runner.train()
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar("train/loss").current()
    assert math.isfinite(loss)
    _check_method(config.stem, runner, lvis_category_stats(root / "annotations" / "lvis_v1_train.json"))
    metrics = runner.test()
    iou_types = ["bbox"] if config.stem.startswith("atss") else ["bbox", "segm"]
    assert {f"lvis/{t}_{k}" for t in iou_types for k in LVIS_KEYS} <= set(metrics)
    _assert_metric_equals_lvis_api(
        metrics, root / "annotations" / "lvis_v1_val.json", tmp_path / "run/results", iou_types
    )
