"""cytolt.category_stats on hand-made records, expected values worked out in the comments (detectron2's
test_sampler.py style)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cytolt.category_stats import (
    class_repeat_factors,
    coco_category_stats,
    images_per_class,
    instances_per_class,
    lvis_frequency,
    repeat_factors,
)

# Three images, three classes; one instance per entry, (label, image):
#   image 10: class 0 twice, class 1 once
#   image 11: class 0 once
#   image 12: class 2 once
LABELS = [0, 0, 1, 0, 2]
IMAGE_IDS = [10, 10, 10, 11, 12]


def test_instances_per_class_counts_every_instance() -> None:
    # class 0: two in image 10 + one in image 11 = 3; class 1: 1; class 2: 1; class 3 has none.
    np.testing.assert_array_equal(instances_per_class(LABELS, 4), [3, 1, 1, 0])
    assert instances_per_class([], 2).tolist() == [0, 0]
    assert instances_per_class(np.array(LABELS), 3).dtype == np.int64


def test_images_per_class_counts_each_image_once() -> None:
    # class 0 is in images 10 and 11 (twice in 10, counted once) = 2; class 1 in 10 = 1; class 2 in 12 = 1.
    np.testing.assert_array_equal(images_per_class(LABELS, IMAGE_IDS, 3), [2, 1, 1])
    # Image ids need not be ints: any hashable names an image.
    np.testing.assert_array_equal(images_per_class([1, 1], ["a.png", "b.png"], 2), [0, 2])


def test_counts_refuse_labels_out_of_range_and_ragged_records() -> None:
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        instances_per_class([0, 2], 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        instances_per_class([-1], 2)
    with pytest.raises(ValueError, match="differ in length"):
        images_per_class([0, 1], [5], 2)


def test_lvis_frequency_groups() -> None:
    # LVIS: rare 1-10 training images, common 11-100, frequent > 100.
    assert [lvis_frequency(n) for n in (1, 10, 11, 100, 101)] == list("rrccf")
    # Scaled thresholds (a small synthetic set): rare <= 2, common <= 20.
    assert [lvis_frequency(n, rare_max=2, common_max=20) for n in (2, 3, 20, 21)] == list("rccf")


def test_class_repeat_factors_by_hand() -> None:
    # t = 0.01 over 1000 images: f = [0.5, 0.01, 0.001] -> r = [max(1, sqrt(0.02)), sqrt(1), sqrt(10)].
    r = class_repeat_factors([500, 10, 1], 1000, thr=0.01)
    np.testing.assert_allclose(r, [1.0, 1.0, math.sqrt(10)])
    # A class in no image keeps a finite factor: sqrt(0.01 / 1e-12) = 1e5.
    assert class_repeat_factors([0], 1000, thr=0.01)[0] == pytest.approx(1e5)
    with pytest.raises(ValueError, match="thr"):
        class_repeat_factors([1], 10, thr=0.0)


def test_repeat_factors_three_hand_made_images() -> None:
    # Images {0}, {0, 1}, {} with t = 1.0:
    #   f_0 = 2/3 -> r_0 = sqrt(1.5) = 1.2247;  f_1 = 1/3 -> r_1 = sqrt(3) = 1.7321
    #   image 0: r_0; image 1: max(r_0, r_1) = r_1; image 2 holds no class: 1.
    factors = repeat_factors([{0}, {0, 1}, set()], thr=1.0)
    np.testing.assert_allclose(factors, [math.sqrt(1.5), math.sqrt(3.0), 1.0])
    # Repeated labels in an image (one per instance) count the image once: the same factors.
    np.testing.assert_array_equal(repeat_factors([[0, 0], [0, 1, 1], []], thr=1.0), factors)
    assert repeat_factors([], thr=0.5).shape == (0,)
    with pytest.raises(ValueError, match="thr"):
        repeat_factors([{0}], thr=0.0)


def test_frequent_classes_are_not_repeated() -> None:
    # Every class is in at least half the images, far above t = 0.001: all factors are exactly 1.
    np.testing.assert_array_equal(repeat_factors([{0}, {0, 1}, {1}, {0, 1}], thr=0.001), np.ones(4))


def test_image_factor_is_the_max_of_its_class_factors() -> None:
    # One class per image, 990 / 9 / 1 images of 1000 with t = 0.01: each image's factor is its class's.
    image_classes = [{0}] * 990 + [{1}] * 9 + [{2}]
    per_image = repeat_factors(image_classes, thr=0.01)
    per_class = class_repeat_factors([990, 9, 1], 1000, thr=0.01)
    np.testing.assert_array_equal(per_class, [per_image[0], per_image[990], per_image[999]])
    # f = 0.009 -> sqrt(0.01 / 0.009) = 1.0541; f = 0.001 -> sqrt(10) = 3.1623.
    np.testing.assert_allclose(per_class, [1.0, math.sqrt(0.01 / 0.009), math.sqrt(10)])


def test_coco_category_stats_in_file_order() -> None:
    # Category 7 is listed first (label 0): instances in images 1, 1, 2 -> 3 instances, 2 images. Category 3
    # (label 1): one instance in image 3 -> 1 and 1. Four images, so image_freq = [2/4, 1/4].
    dataset = {
        "images": [{"id": i} for i in (1, 2, 3, 4)],
        "categories": [{"id": 7, "name": "seven", "frequency": "f"}, {"id": 3, "name": "three"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7},
            {"id": 2, "image_id": 1, "category_id": 7},
            {"id": 3, "image_id": 2, "category_id": 7, "iscrowd": 1},  # crowd regions count too
            {"id": 4, "image_id": 3, "category_id": 3},
        ],
    }
    stats = coco_category_stats(dataset)
    assert stats.ids == (7, 3) and stats.names == ("seven", "three") and stats.frequency == ("f", "")
    assert stats.instances_per_class.tolist() == [3, 1]
    assert stats.images_per_class.tolist() == [2, 1]
    assert stats.num_images == 4 and stats.image_freq.tolist() == [0.5, 0.25]
    bad = dict(dataset, annotations=[{"id": 9, "image_id": 1, "category_id": 99}])
    with pytest.raises(ValueError, match="train.json: annotation 9 has unknown category_id 99"):
        coco_category_stats(bad, source="train.json")
    with pytest.raises(ValueError, match="no categories"):
        coco_category_stats({"images": [], "annotations": []})
