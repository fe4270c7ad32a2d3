"""cytolt/datasets/split.py: every slide in exactly one split, seeded, rare classes spread over the splits."""

from __future__ import annotations

import numpy as np
import pytest

from cytolt.datasets.split import check_fractions, split_slides


def _cohort(n=40, seed=0):
    """n slides; class 0 on all, class 1 on a third, classes 2 (3 slides) and 3 (2 slides) and 4 (1) rare."""
    rng = np.random.default_rng(seed)
    slides = {f"s{i:02d}": [0] + ([1] if rng.random() < 1 / 3 else []) for i in range(n)}
    names = list(slides)
    for c, holders in ((2, names[5:8]), (3, names[10:12]), (4, names[20:21])):
        for name in holders:
            slides[name].append(c)
    return slides


def test_each_slide_is_in_exactly_one_split_and_fractions_hold():
    slides = _cohort()
    out = split_slides(slides, (0.7, 0.15, 0.15), seed=0)
    flat = [s for names in out.values() for s in names]
    assert sorted(flat) == sorted(slides) and len(flat) == len(set(flat))
    sizes = {k: len(v) for k, v in out.items()}
    # targets 28 / 6 / 6; a rare class may push a split one or two slides over
    assert abs(sizes["train"] - 28) <= 2 and abs(sizes["val"] - 6) <= 2 and abs(sizes["test"] - 6) <= 2
    assert all(out[k] == [s for s in slides if s in out[k]] for k in out)  # input order kept


def test_rare_classes_reach_every_split_they_can_train_first():
    slides = _cohort()
    for seed in range(5):
        out = split_slides(slides, (0.7, 0.15, 0.15), seed=seed)
        where = {c: {k for k, names in out.items() for s in names if c in slides[s]} for c in range(5)}
        assert where[2] == {"train", "val", "test"}  # 3 slides: one per split
        assert where[3] == {"train", "val"}  # 2 slides: train and val
        assert where[4] == {"train"}  # 1 slide: train
        assert where[1] == {"train", "val", "test"}


def test_the_seed_decides_and_repeats():
    slides = {f"s{i}": [0] for i in range(30)}
    a = split_slides(slides, (0.6, 0.2, 0.2), seed=1)
    assert a == split_slides(slides, (0.6, 0.2, 0.2), seed=1)
    assert a != split_slides(slides, (0.6, 0.2, 0.2), seed=2)
    assert [len(v) for v in a.values()] == [18, 6, 6]


def test_zero_fractions_and_too_few_slides():
    out = split_slides({"a": [0], "b": [1]}, (1, 0, 0))
    assert out == {"train": ["a", "b"], "val": [], "test": []}
    out = split_slides({"a": [0], "b": [0], "c": []}, (0.5, 0.5, 0), seed=0)
    assert len(out["train"]) >= 1 and len(out["val"]) >= 1 and out["test"] == []
    with pytest.raises(ValueError, match="2 slide\\(s\\) cannot fill 3 splits"):
        split_slides({"a": [0], "b": [0]}, (0.7, 0.15, 0.15))


@pytest.mark.parametrize(
    ("fractions", "words"),
    [
        ((0.5, 0.5), "3 fractions"),
        ((0.5, 0.3, 0.3), "sum to 1"),
        ((0, 0.5, 0.5), "train > 0"),
        ((1.2, -0.2, 0), ">= 0"),
    ],
)
def test_bad_fractions(fractions, words):
    with pytest.raises(ValueError, match=words):
        check_fractions(fractions)
