"""Tests for cytolt.mm.samplers: the samplers build from mmdet's registry with a tiny COCO dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.datasets import CocoDataset
from mmdet.registry import DATA_SAMPLERS
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import cytolt.mm  # noqa: F401  (fills the registries)
from cytolt import samplers
from cytolt.mm.samplers import CDBSampler, RepeatFactorSampler, dataset_image_classes

CLASSES = ("normal", "lsil", "hsil")
# image -> category ids (COCO ids 1..3 map to labels 0..2); image 4 has no annotation.
IMAGE_CATEGORIES = {1: [1, 1], 2: [1, 2], 3: [1], 4: [], 5: [3]}


def _write_coco(folder: Path) -> Path:
    images, annotations = [], []
    for image_id, categories in IMAGE_CATEGORIES.items():
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 64, "height": 64})
        for k, category in enumerate(categories):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [4 + 10 * k, 4, 12, 12],
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
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> CocoDataset:
    # lazy_init: the samplers must load annotations themselves; an empty pipeline never opens an image.
    return CocoDataset(
        ann_file=str(_write_coco(tmp_path)),
        data_prefix={"img": ""},
        metainfo={"classes": CLASSES},
        pipeline=[],
        lazy_init=True,
    )


EXPECTED_CLASSES = [{0}, {0, 1}, {0}, set(), {2}]


def test_image_classes_come_from_get_cat_ids(dataset: CocoDataset) -> None:
    assert dataset_image_classes(dataset) == EXPECTED_CLASSES


def test_repeat_factor_sampler_builds_from_mmdet_scope(dataset: CocoDataset) -> None:
    with DefaultScope.overwrite_default_scope("mmdet"):
        sampler = MMENGINE_DATA_SAMPLERS.build(
            dict(type="RepeatFactorSampler", thr=0.5), default_args=dict(dataset=dataset, seed=3)
        )
    assert isinstance(sampler, RepeatFactorSampler)
    expected = samplers.repeat_factors(EXPECTED_CLASSES, thr=0.5)
    np.testing.assert_allclose(sampler.repeat_factors.numpy(), expected)
    assert expected.max() > 1  # class 1 and 2 (1 image in 5) are repeated: sqrt(0.5 / 0.2) = 1.58
    assert sampler.seed == 3 and (sampler.rank, sampler.world_size) == (0, 1)


def test_samplers_build_by_scoped_name_and_seed_none(dataset: CocoDataset) -> None:
    sampler = MMENGINE_DATA_SAMPLERS.build(
        dict(type="mmdet.CDBSampler", tau="dynamic"), default_args=dict(dataset=dataset, seed=None)
    )
    assert isinstance(sampler, CDBSampler)
    assert sampler.num_classes == len(CLASSES) and isinstance(sampler.seed, int)
    assert len(sampler) == len(dataset)


def test_runner_dataloader_with_cdb_sampler_follows_difficulty(dataset: CocoDataset) -> None:
    # A Runner builds under its config's default_scope, 'mmdet' in every mmdet config.
    with DefaultScope.overwrite_default_scope("mmdet"):
        loader = Runner.build_dataloader(
            dict(
                batch_size=5,
                num_workers=0,
                sampler=dict(type="CDBSampler", num_samples=4000),
                dataset=dataset,
                collate_fn=list,  # keep the data_info dicts as they are
            ),
            seed=0,
        )
    sampler = loader.sampler
    assert isinstance(sampler, CDBSampler)
    sampler.update_difficulty(torch.tensor([0.0, 0.0, 1.0]))  # only "hsil" is hard: weights (0, 0, 3)
    sampler.set_epoch(1)
    ids = [info["img_id"] for batch in loader for info in batch]
    counts = np.bincount(ids, minlength=6)
    # w_hsil = 3, the empty image weighs empty_weight = 1, the others 0: p(image 5) = 3/4, p(image 4) = 1/4.
    assert counts[1:4].sum() == 0
    np.testing.assert_allclose(counts[[4, 5]] / 4000, [0.25, 0.75], atol=0.03)


def test_mm_samplers_are_in_mmdet_registry() -> None:
    assert DATA_SAMPLERS.get("RepeatFactorSampler") is RepeatFactorSampler
    assert DATA_SAMPLERS.get("CDBSampler") is CDBSampler


def test_cdb_sampler_without_classes_metainfo_asks_for_num_classes() -> None:
    class NoClasses:
        metainfo: dict = {}

        def __len__(self) -> int:
            return 1

        def get_cat_ids(self, idx: int) -> list[int]:
            return [0]

    with pytest.raises(ValueError, match="num_classes"):
        CDBSampler(dataset=NoClasses())
    assert CDBSampler(dataset=NoClasses(), num_classes=1).num_classes == 1
    with pytest.raises(TypeError, match="get_cat_ids"):
        RepeatFactorSampler(dataset=[1, 2, 3])
