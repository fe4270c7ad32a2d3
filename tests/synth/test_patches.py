"""Tests for cytolt/synth/patches.py: the COCO/LVIS files load with the reference APIs, boxes match masks,
counts follow the requested imbalance, splits partition the images, and output is byte-for-byte repeatable."""

from __future__ import annotations

import json

import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from cytolt._compat import patch_numpy_for_lvis
from cytolt.synth import (
    CLASSES,
    frequency_thresholds,
    long_tail_instances_per_class,
    lvis_frequency,
    make_patch_dataset,
)
from cytolt.synth.render import mask_box

IMBALANCE = 20.0
# pycocotools 2.0.11's decode trips numpy 2's copy-keyword deprecation inside its own code.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("patches")
    # 24 x 10 cells over sum(20 ** (k / 10)) = 74 ratio units: tail 3 instances, head 60.
    summary = make_patch_dataset(out, images=24, size=256, imbalance=IMBALANCE, seed=3, cells_per_image=10)
    return out, summary, json.loads((out / "annotations.json").read_text())


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    summary = make_patch_dataset(
        out, images=30, size=128, imbalance=10, seed=4, split=(0.6, 0.2, 0.2), image_format="png"
    )
    return out, summary


def test_long_tail_instances_per_class_worked_example():
    # 3 classes, imbalance 4: ratios 4, 2, 1 (sum 7); 10 images x 3 cells = 30 -> tail round(30 / 7) = 4.
    assert long_tail_instances_per_class(10, imbalance=4, cells_per_image=3, classes=("a", "b", "c")) == {
        "a": 16,
        "b": 8,
        "c": 4,
    }
    # A set too small for one tail instance still gets one, and the head keeps the ratio.
    assert long_tail_instances_per_class(1, imbalance=100, cells_per_image=1, classes=("a", "b")) == {
        "a": 100,
        "b": 1,
    }
    with pytest.raises(ValueError, match="imbalance must be >= 1"):
        long_tail_instances_per_class(10, imbalance=0.5, cells_per_image=3)


def test_frequency_thresholds_follow_lvis_and_scale_down():
    assert frequency_thresholds(200) == (10, 100) and frequency_thresholds(100_000) == (10, 100)
    assert frequency_thresholds(40) == (2, 20)  # 5 % and 50 % of the images below 200
    assert frequency_thresholds(3) == (1, 2)
    assert [lvis_frequency(n, rare_max=10, common_max=100) for n in (1, 10, 11, 100, 101)] == list("rrccf")


def test_coco_loads_and_has_every_category(dataset):
    out, _, data = dataset
    coco = COCO(str(out / "annotations.json"))
    assert sorted(coco.getCatIds()) == list(range(1, len(CLASSES) + 1))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getImgIds()) == 24
    for img in data["images"]:
        assert (out / img["file_name"]).is_file()
        assert img["coco_url"].split("/")[-2:] == img["file_name"].split(
            "/"
        )  # mmdet / detectron2 LVIS loaders


def test_lvis_api_loads_with_frequency_and_negatives(dataset):
    patch_numpy_for_lvis()
    from lvis import LVIS

    out, summary, data = dataset
    lvis = LVIS(str(out / "annotations.json"))
    assert len(lvis.get_img_ids()) == 24
    cats = lvis.load_cats(None)
    assert {c["frequency"] for c in cats} <= {"r", "c", "f"}
    rare_max, common_max = summary["thresholds"]
    for c in cats:
        assert c["frequency"] == lvis_frequency(c["image_count"], rare_max=rare_max, common_max=common_max)
    all_ids = set(range(1, len(CLASSES) + 1))
    for img in data["images"]:
        present = {a["category_id"] for a in lvis.load_anns(lvis.get_ann_ids(img_ids=[img["id"]]))}
        assert set(img["neg_category_ids"]) == all_ids - present
        assert img["not_exhaustive_category_ids"] == []


def test_boxes_lie_inside_and_equal_the_mask_box(dataset):
    _, _, data = dataset
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    assert data["annotations"]
    for ann in data["annotations"]:
        w, h = sizes[ann["image_id"]]
        x, y, bw, bh = ann["bbox"]
        assert 0 <= x and 0 <= y and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        assert mask.shape == (h, w)
        x0, y0, x1, y1 = mask_box(mask)
        assert [x0, y0, x1 - x0, y1 - y0] == ann["bbox"]
        assert ann["area"] == mask.sum() and ann["iscrowd"] == 0


def test_counts_follow_the_imbalance(dataset):
    _, summary, data = dataset
    counts = [sum(a["category_id"] == k + 1 for a in data["annotations"]) for k in range(len(CLASSES))]
    assert counts == [summary["instance_counts"][n] for n in CLASSES]  # no instance lost
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
    assert counts[-1] >= 3 and counts[0] == round(counts[-1] * IMBALANCE)
    # Geometric in between: each class gets the tail count times IMBALANCE ** (steps from the tail / 10).
    c = len(CLASSES)
    expected = [round(counts[-1] * IMBALANCE ** ((c - 1 - k) / (c - 1))) for k in range(c)]
    assert counts == expected
    cats = {c["name"]: c for c in data["categories"]}
    assert [cats[n]["instance_count"] for n in CLASSES] == counts


def test_split_partitions_images_and_instances(split_dataset):
    out, summary = split_dataset
    files = summary["annotation_files"]
    assert set(files) == {"train", "val", "test"}
    loaded = {name: json.loads((out / f"annotations_{name}.json").read_text()) for name in files}
    ids = [{img["id"] for img in d["images"]} for d in loaded.values()]
    assert sum(len(i) for i in ids) == 30 and len(set().union(*ids)) == 30
    assert [len(i) for i in ids] == [18, 6, 6]
    for k, name in enumerate(CLASSES):
        per_split = [sum(a["category_id"] == k + 1 for a in d["annotations"]) for d in loaded.values()]
        assert sum(per_split) == summary["instance_counts"][name]
        assert per_split[0] >= 1 and per_split[0] >= max(per_split[1:])
    # LVIS v1 style: every split file carries the training frequencies.
    freq = [[c["frequency"] for c in d["categories"]] for d in loaded.values()]
    assert freq[0] == freq[1] == freq[2]
    for d in loaded.values():
        COCO(str(out / f"annotations_{d['info']['split']}.json"))
        assert all(
            (out / img["file_name"]).is_file() and img["file_name"].endswith(".png") for img in d["images"]
        )


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kw = dict(images=4, size=128, imbalance=3, cells_per_image=5, image_format="jpg")
    make_patch_dataset(tmp_path / "a", seed=11, **kw)
    make_patch_dataset(tmp_path / "b", seed=11, **kw)
    make_patch_dataset(tmp_path / "c", seed=12, **kw)
    read = lambda d, f: (tmp_path / d / f).read_bytes()  # noqa: E731
    for f in ("annotations.json", "images/000001.jpg", "images/000004.jpg"):
        assert read("a", f) == read("b", f)
    assert read("a", "images/000001.jpg") != read("c", "images/000001.jpg")
    assert read("a", "annotations.json") != read("c", "annotations.json")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(images=2, imbalance=1000), "needs at least"),
        (dict(images=10, split=(0.5, 0.5)), "three fractions"),
        (dict(images=10, split=(0.5, 0.3, 0.3)), "summing to 1"),
        (dict(images=10, image_format="tif"), "jpg, png"),
        (dict(images=0), "images must be >= 1"),
        (dict(images=3, split=(0.9, 0.05, 0.05), cells_per_image=20), "no image"),
        (dict(images=10, mpp=0.01), "mpp must be between"),
    ],
)
def test_bad_arguments_are_explained(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_patch_dataset(tmp_path, size=128, **kwargs)


def test_frequency_groups_come_from_image_counts(dataset):
    # 24 images -> rare <= 1 image, common <= 12 (frequency_thresholds); 60 head instances over 24 images
    # make the head frequent, 3 tail instances in at most 3 images make the tail common.
    _, summary, _ = dataset
    assert summary["thresholds"] == (1, 12)
    assert summary["frequency"][CLASSES[0]] == "f"
    assert summary["frequency"][CLASSES[-1]] == "c"
    assert 1 <= summary["image_counts"][CLASSES[-1]] <= summary["instance_counts"][CLASSES[-1]]


def test_large_test_split_has_the_minimum_per_class_and_leaves_the_others_unchanged(tmp_path):
    kw = dict(images=30, size=128, imbalance=10, seed=4, split=(0.6, 0.2, 0.2))
    make_patch_dataset(tmp_path / "plain", **kw)
    summary = make_patch_dataset(tmp_path / "large", large_test=(12, 5), **kw)
    assert set(summary["annotation_files"]) == {"train", "val", "test", "test_large"}
    large = json.loads((tmp_path / "large" / "annotations_test_large.json").read_text())
    assert len(large["images"]) == 12
    per_class = [sum(a["category_id"] == k + 1 for a in large["annotations"]) for k in range(len(CLASSES))]
    assert min(per_class) >= 5 and per_class[0] > per_class[-1]  # the tail raised, the head still first
    for name in ("train", "val", "test"):
        plain = json.loads((tmp_path / "plain" / f"annotations_{name}.json").read_text())
        assert json.loads((tmp_path / "large" / f"annotations_{name}.json").read_text()) == plain
        assert max(img["id"] for img in plain["images"]) < min(img["id"] for img in large["images"])
    assert [c["frequency"] for c in large["categories"]] == [c["frequency"] for c in plain["categories"]]
    first = large["images"][0]["file_name"]
    assert (tmp_path / "large" / first).is_file()
    with pytest.raises(ValueError, match="large_test"):
        make_patch_dataset(tmp_path / "bad", large_test=(0, 5), **kw)
