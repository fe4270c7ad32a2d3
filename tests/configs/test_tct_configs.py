"""Every config in configs/tct builds, trains one CPU step and evaluates on a tiny generated set."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmdet")

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "tct").glob("*.py"))


@pytest.fixture(scope="module")
def tiny_tct(tmp_path_factory) -> Path:
    from cytolt.synth import make_patch_dataset

    out = tmp_path_factory.mktemp("tct")
    make_patch_dataset(out, images=24, size=128, imbalance=10, seed=3, split=(0.5, 0.25, 0.25))
    return out


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


def _stage_one_checkpoint(cfg, tmp_path: Path) -> Path:
    """A weights-only checkpoint of ``cfg``'s model at its initialisation, standing in for a stage-1 run."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model)
    model.init_weights()
    path = tmp_path / "stage1.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_trains_one_step_and_evaluates(config, tiny_tct, tmp_path):
    import torch
    from mmengine.runner import Runner

    from cytolt.mm.train import load_config

    torch.set_num_threads(1)
    options = {
        "train_cfg": dict(type="IterBasedTrainLoop", max_iters=1, val_interval=1, _delete_=True),
        "train_dataloader.batch_size": 2,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "val_dataloader.batch_size": 2,
        "default_hooks.checkpoint.interval": 1,
        "default_hooks.checkpoint.by_epoch": False,
        "default_hooks.logger.interval": 1,
        "log_processor.by_epoch": False,
        "param_scheduler": [],
    }
    cfg = load_config(config, work_dir=tmp_path / "run", data_root=tiny_tct)
    if cfg.get("load_from"):  # a second-stage config (cRT, LWS): a stage-1 checkpoint of its own model
        cfg.load_from = str(_stage_one_checkpoint(cfg, tmp_path))
    if cfg.get("custom_hooks"):
        for hook in cfg.custom_hooks:
            if hook["type"] == "CDBHook":
                hook.update(interval=1)  # fire after the one step so the test exercises it
    for key, value in options.items():
        if key == "train_cfg":
            cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=1, val_interval=1)
        else:
            cfg.merge_from_dict({key: value})
    cfg.param_scheduler = []
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run() if runner.val_loop is not None else {}
    assert "lt/AP" in metrics and "lt/APr" in metrics, metrics
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
