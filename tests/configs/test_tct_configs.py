"""Every config in configs/tct builds and runs on a tiny generated set; one config of each training group trains one
CPU step and evaluates.

Every config: resolved onto the tiny set as ``cytolt train`` resolves it (``load_config``); its train dataloader
built (dataset, pipeline and the config's own sampler) and one image drawn through it; its custom hooks built; its
model built and initialised; a loss forward on that image gives finite losses, a predict forward on one validation
image gives detections (and masks, for the instance-mask configs).

Training: one step, the validation it triggers (LongTailMetric: lt/AP, lt/APr) and a checkpoint, once per group of
configs that share what a step exercises beyond the forward. The group is read from the resolved config
(``training_key``): the detector, every head and classifier-predictor type, every loss type, the train sampler and
dataset wrappers, the custom hooks, and whether the run starts from a stage-1 checkpoint (``load_from``). Not in the
key, so covered by the forward alone: backbone depth and width (an r50_gpu config trains in its r18 config's
group), optimiser and schedule, and the train pipeline (a copy-paste config's CellCopyPaste runs in the forward's
dataloader). The first config of each group by name trains; a new config with a new key forms its own group and
trains with no change here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mmdet")

from mmengine.hooks import Hook  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "tct").glob("*.py"))


@pytest.fixture(scope="module")
def tiny_tct(tmp_path_factory) -> Path:
    from cytolt.synth import make_patch_dataset

    out = tmp_path_factory.mktemp("tct")
    make_patch_dataset(out, images=24, size=128, imbalance=10, seed=3, split=(0.5, 0.25, 0.25))
    return out


# ---------------------------------------------------------------------------------------------- grouping


def _name(kind: Any) -> str:
    """A registry type as written: a string, or a class (configs may set ``type=GradLibraLoss``)."""
    return kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))


def _types(node: Any, wanted: Callable[[str], bool]) -> set[tuple[str, str]]:
    """``(key, type)`` of every dict (or list of dicts) under a key ``wanted`` accepts, at any depth."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            items = value if isinstance(value, list | tuple) else [value]
            if wanted(key):
                found |= {(key, _name(v["type"])) for v in items if isinstance(v, dict) and "type" in v}
            found |= _types(value, wanted)
    elif isinstance(node, list | tuple):
        for value in node:
            found |= _types(value, wanted)
    return found


def training_key(cfg: Any) -> tuple:
    """What one training step of ``cfg`` exercises beyond a forward (the module docstring says what is left out)."""
    model = cfg.model.to_dict()
    loader = cfg.train_dataloader
    dataset, datasets = loader.dataset, []
    while True:  # wrappers (ClassBalancedDataset, ...) down to the dataset itself
        datasets.append(_name(dataset.type))
        if "dataset" not in dataset:
            break
        dataset = dataset.dataset
    return (
        _name(model["type"]),
        tuple(sorted(_types(model, lambda k: k.endswith("head") or "predictor" in k))),
        tuple(sorted(_types(model, lambda k: k.startswith("loss")))),
        _name(loader.sampler.type),
        _name((loader.get("batch_sampler") or {}).get("type", "")),
        tuple(datasets),
        tuple(sorted(_name(h["type"]) for h in cfg.get("custom_hooks") or [])),
        bool(cfg.get("load_from")),
    )


@cache
def _file_key(config: Path) -> tuple:
    from mmengine.config import Config

    return training_key(Config.fromfile(str(config)))


def training_groups(configs: Iterable[Path]) -> list[list[Path]]:
    """The configs grouped by ``training_key``, each group and the groups in name order."""
    groups: dict[tuple, list[Path]] = {}
    for config in sorted(configs):
        groups.setdefault(_file_key(config), []).append(config)
    return list(groups.values())


GROUPS = training_groups(CONFIGS)


def test_configs_found():
    assert len(CONFIGS) >= 30
    names = {p.stem for p in CONFIGS}
    for det in ("retinanet", "fcos", "atss", "yolof", "reppoints"):
        for method in ("focal", "efl", "eqlv2", "gradlibra", "cdb", "gradlibra_copypaste"):
            assert f"{det}_r18_{method}" in names
    assert "retinanet_r18_ce" in names


def test_dataset_classes_match_synth():
    from mmengine.config import Config

    from cytolt.synth import CLASSES

    cfg = Config.fromfile(str(ROOT / "configs/tct/_base_/datasets/tct_patches.py"))
    assert tuple(cfg.classes) == CLASSES


def test_training_groups_split_methods_and_join_backbones_and_pipelines():
    group_of = {config.stem: tuple(p.stem for p in group) for group in GROUPS for config in group}
    assert sorted(group_of) == [p.stem for p in CONFIGS]  # every config in exactly one group
    assert sum(len(g) for g in GROUPS) == len(CONFIGS)
    for name in group_of:
        if "_r50_gpu_" in name:  # the wide backbone trains as its r18 config does
            assert name.replace("_r50_gpu_", "_r18_") in group_of[name], name
        if name.endswith("_copypaste"):  # the pipeline is the forward's
            assert name.removesuffix("_copypaste") in group_of[name], name
    assert all("_gpu_" not in group[0].stem for group in GROUPS)  # an r18 config trains for each group
    # Each loss, sampler/hook and head of one detector is its own group; so are the detectors.
    retinanet = [f"retinanet_r18_{m}" for m in ("ce", "focal", "efl", "eqlv2", "gradlibra", "cdb", "pcb")]
    retinanet += ["retinanet_r18_iif", "retinanet_r18_gol"]
    cascade = [f"cascade_rcnn_r18_{m}" for m in ("ce", "crt", "lws", "tde", "eql", "eqlv2", "seesaw", "pcb")]
    detectors = [f"{d}_r18_focal" for d in ("retinanet", "fcos", "atss", "yolof", "reppoints")]
    for names in (retinanet, cascade, detectors):
        assert len({group_of[n] for n in names}) == len(names), names


def test_training_key_follows_the_resolved_config():
    from mmengine.config import Config

    cfg = Config.fromfile(str(ROOT / "configs/tct/retinanet_r18_focal.py"))
    key = training_key(cfg)
    wider = Config.fromfile(str(ROOT / "configs/tct/retinanet_r18_focal.py"))
    wider.model.backbone.depth = 50
    assert training_key(wider) == key
    for change in (
        lambda c: c.model.bbox_head.loss_cls.update(type="EQLv2Loss"),
        lambda c: c.model.bbox_head.update(type="IIFRetinaHead"),
        lambda c: c.train_dataloader.update(sampler=dict(type="RepeatFactorSampler")),
        lambda c: c.update(custom_hooks=[dict(type="PCBHook")]),
        lambda c: c.update(load_from="stage1.pth"),
        lambda c: setattr(
            c.train_dataloader,
            "dataset",
            dict(type="ClassBalancedDataset", dataset=c.train_dataloader.dataset.to_dict()),
        ),
    ):
        other = Config.fromfile(str(ROOT / "configs/tct/retinanet_r18_focal.py"))
        change(other)
        assert training_key(other) != key


# ---------------------------------------------------------------------------------------------- every config


def _one_image(loader_cfg: Any) -> dict:
    return dict(loader_cfg.to_dict(), batch_size=1, num_workers=0, persistent_workers=False)


def _quietly(fn: Callable[[], Any]) -> Any:
    """Call ``fn`` with mmengine's logger at WARNING (init_weights logs every parameter's initialiser)."""
    logger = logging.getLogger("mmengine")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        return fn()
    finally:
        logger.setLevel(level)


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds_and_runs_a_forward(config, tiny_tct, tmp_path):
    import torch
    from mmdet.registry import HOOKS, MODELS
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from cytolt.mm.train import load_config

    torch.set_num_threads(1)
    cfg = load_config(config, work_dir=tmp_path / "run", data_root=tiny_tct)
    with DefaultScope.overwrite_default_scope("mmdet"):  # as the Runner builds them
        train_loader = Runner.build_dataloader(_one_image(cfg.train_dataloader), seed=0)
        val_loader = Runner.build_dataloader(_one_image(cfg.val_dataloader), seed=0)
        sampler = getattr(train_loader.batch_sampler, "sampler", train_loader.sampler)
        assert type(sampler).__name__ == _name(cfg.train_dataloader.sampler.type)
        hooks = [HOOKS.build(dict(h)) for h in cfg.get("custom_hooks") or []]
        assert [type(h).__name__ for h in hooks] == [_name(h["type"]) for h in cfg.get("custom_hooks") or []]
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        _quietly(model.init_weights)
        model.train()
        losses = model(**model.data_preprocessor(next(iter(train_loader)), True), mode="loss")
        total, _ = model.parse_losses(losses)
        assert torch.isfinite(total), losses
        model.eval()
        with torch.no_grad():
            (pred,) = model.test_step(next(iter(val_loader)))
    found = pred.pred_instances
    assert found.bboxes.shape == (len(found), 4) and found.labels.lt(len(cfg.classes)).all()
    if cfg.model.type in ("MaskRCNN", "PolarMask"):
        assert "masks" in found and found.masks.shape[0] == len(found)


# ---------------------------------------------------------------------------------------------- one per group


class _KeepMetrics(Hook):
    """A hook that keeps the metrics of the validation the training loop runs."""

    def __init__(self) -> None:
        self.metrics: dict = {}

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = dict(metrics or {})


def _stage_one_checkpoint(cfg, tmp_path: Path) -> Path:
    """A weights-only checkpoint of ``cfg``'s model at its initialisation, standing in for a stage-1 run."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model)
    _quietly(model.init_weights)
    path = tmp_path / "stage1.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS, ids=[g[0].stem for g in GROUPS])
def test_group_trains_one_step_and_evaluates(group, tiny_tct, tmp_path):
    import torch
    from mmengine.runner import Runner

    from cytolt.mm.train import load_config

    torch.set_num_threads(1)
    options = {
        "train_dataloader.batch_size": 2,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "val_dataloader.batch_size": 2,
        "default_hooks.checkpoint.interval": 1,
        "default_hooks.checkpoint.by_epoch": False,
        "default_hooks.logger.interval": 1,
        "log_processor.by_epoch": False,
    }
    cfg = load_config(group[0], work_dir=tmp_path / "run", data_root=tiny_tct)
    if cfg.get("load_from"):  # a second-stage config (cRT, LWS): a stage-1 checkpoint of its own model
        cfg.load_from = str(_stage_one_checkpoint(cfg, tmp_path))
    for hook in cfg.get("custom_hooks") or []:
        if hook["type"] == "CDBHook":
            hook.update(interval=1)  # fire after the one step so the test exercises it
    # One iteration; the loop validates after its last one (mmengine's IterBasedTrainLoop).
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=1, val_interval=1)
    cfg.merge_from_dict(options)
    cfg.param_scheduler = []
    runner = Runner.from_cfg(cfg)
    kept = _KeepMetrics()
    runner.register_hook(kept, priority="LOWEST")
    runner.train()
    assert runner.iter == 1 and (tmp_path / "run" / "iter_1.pth").is_file()
    metrics = kept.metrics
    assert "lt/AP" in metrics and "lt/APr" in metrics, (metrics, [p.stem for p in group])
    assert -1.0 <= metrics["lt/AP"] <= 1.0


@pytest.mark.parametrize("name", ["polarmask_r18", "mask_rcnn_r18"])
def test_instance_mask_configs_load_masks_and_score_segm(name):
    from mmengine.config import Config

    cfg = Config.fromfile(str(ROOT / "configs" / "tct" / f"{name}.py"))
    loads = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "LoadAnnotations"]
    assert len(loads) == 1 and loads[0]["with_mask"] is True
    for evaluator, loader in (
        (cfg.val_evaluator, cfg.val_dataloader),
        (cfg.test_evaluator, cfg.test_dataloader),
    ):
        metrics = {e["type"]: e for e in evaluator}
        assert set(metrics) == {"LongTailMetric", "CocoMetric"} and metrics["CocoMetric"]["metric"] == [
            "segm"
        ]
        assert {e["ann_file"] for e in evaluator} == {cfg.data_root + loader.dataset.ann_file}
