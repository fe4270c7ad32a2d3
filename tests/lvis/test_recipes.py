"""The reproduction configs of the rows that carry an mmdet number (configs/lvis/*_mmdet.py) resolve to mmdet 3.3's
shipped config, key by key, except for a documented list of keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mmdet")

from mmengine.config import Config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MMDET_CONFIGS = Path(__import__("mmdet").__file__).parent / ".mim" / "configs"

# cytolt reproduction config -> the mmdet 3.3 config whose published number its row carries.
RECIPES = {
    "mask_rcnn_r50_fpn_rfs_1x_mmdet": "lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py",
    "mask_rcnn_r50_fpn_seesaw_normed_rfs_2x_mmdet": (
        "seesaw_loss/mask-rcnn_r50_fpn_seesaw-loss-normed-mask_sample1e-3-ms-2x_lvis-v1.py"
    ),
}

# Top-level keys (or dotted key prefixes) where a reproduction config may differ from mmdet's, and why. The same
# list is in docs/lvis.md ("Reproduction configs").
DOCUMENTED = {
    "custom_imports": "cytolt's registrations (cytolt.mm, cytolt.mm.lvis); nothing of mmdet's is replaced",
    "default_hooks.checkpoint.max_keep_ckpts": "keep the last 3 epoch checkpoints (disk), mmdet keeps all",
    "model.backbone.init_cfg": (
        "None in the file so that it builds offline; a run sets the verified local copy of the file mmdet's "
        "torchvision://resnet50 downloads (cytolt.mm.lvis_weights)"
    ),
    "backbone_weights": "the spec of that file (name, URL, SHA-256 prefix, version) read by the weights check",
    "train_cfg.val_interval": (
        "evaluate on LVIS v1 val once at the end (mmdet's 1x config evaluates every epoch: 11 more passes over "
        "19,809 val images); the number reported is the last epoch's either way"
    ),
    "num_classes": "a config-file variable (1203) the model section reads; not a runner key",
    "sigmoid_bbox_head_init": "a config-file variable for the sigmoid-loss configs; unused by these models",
    "eql_bbox_head_init": "a config-file variable for the EQL / EQLv2 configs; unused by these models",
    "_fc_init": "a config-file variable the two above share; unused by these models",
}


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b[0].c": leaf}`` of a config tree; an empty list or dict is a leaf."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(node, list | tuple) and node:
        out = {}
        for i, value in enumerate(node):
            out.update(_flat(value, f"{prefix}[{i}]"))
        return out
    return {prefix: list(node) if isinstance(node, tuple) else node}


def _documented_key(path: str) -> str | None:
    for key in DOCUMENTED:
        if path == key or path.startswith((key + ".", key + "[")):
            return key
    return None


def resolved_difference(ours: Config, theirs: Config) -> dict[str, tuple[Any, Any]]:
    """Every leaf path where the resolved configs differ: ``{path: (ours, theirs)}``, missing as ``'<absent>'``."""
    a, b = _flat(ours.to_dict()), _flat(theirs.to_dict())
    absent = "<absent>"
    return {
        k: (a.get(k, absent), b.get(k, absent))
        for k in sorted(a.keys() | b.keys())
        if a.get(k, absent) != b.get(k, absent)
    }


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_reproduction_config_resolves_to_mmdets_except_documented_keys(name):
    ours = Config.fromfile(str(ROOT / "configs" / "lvis" / f"{name}.py"))
    theirs = Config.fromfile(str(MMDET_CONFIGS / RECIPES[name]))
    diff = resolved_difference(ours, theirs)
    undocumented = {k: v for k, v in diff.items() if _documented_key(k) is None}
    assert not undocumented, (
        f"{name} differs from mmdet's {RECIPES[name]} in undocumented keys: {undocumented}"
    )
    # The sampling is mmdet's own: ClassBalancedDataset (ceil(r) repeats) under the DefaultSampler.
    assert ours.train_dataloader.dataset.type == "ClassBalancedDataset"
    assert ours.train_dataloader.dataset.oversample_thr == 1e-3
    assert ours.train_dataloader.sampler == dict(type="DefaultSampler", shuffle=True)
    # The learning rate is mmdet's and does not follow the GPU count unless a run asks (train.sh LR=scale).
    assert ours.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert theirs.model.backbone.init_cfg == dict(type="Pretrained", checkpoint="torchvision://resnet50")
    assert ours.backbone_weights.url.endswith("/" + ours.backbone_weights.name)
    assert ours.backbone_weights.name == "resnet50-0676ba61.pth"  # what torchvision://resnet50 resolves to


def test_documented_keys_are_the_ones_that_differ():
    """Each documented key differs in at least one recipe: the list does not hide more than it must."""
    used = set()
    for name, shipped in RECIPES.items():
        diff = resolved_difference(
            Config.fromfile(str(ROOT / "configs" / "lvis" / f"{name}.py")),
            Config.fromfile(str(MMDET_CONFIGS / shipped)),
        )
        used |= {_documented_key(k) for k in diff}
    assert used == set(DOCUMENTED)


def test_resolved_difference_sees_a_changed_leaf():
    a = Config(dict(model=dict(x=[1, 2], y=dict(z=3)), k=1))
    b = Config(dict(model=dict(x=[1, 2, 4], y=dict(z=3))))
    assert resolved_difference(a, b) == {"model.x[2]": ("<absent>", 4), "k": (1, "<absent>")}


def test_cytolt_sampler_rows_are_not_mmdets_recipe():
    """The stochastic-rounding rows stay their own: same model, cytolt's RepeatFactorSampler, no wrapper."""
    for name in ("mask_rcnn_r50_fpn_rfs_1x", "mask_rcnn_r50_fpn_seesaw_normed_rfs_2x"):
        cfg = Config.fromfile(str(ROOT / "configs" / "lvis" / f"{name}.py"))
        assert cfg.train_dataloader.sampler == dict(type="RepeatFactorSampler", thr=0.001)
        assert cfg.train_dataloader.dataset.type == "LVISV1Dataset"
