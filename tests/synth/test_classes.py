"""Tests for cytolt/synth/classes.py: the class tables are consistent with each other."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cytolt.synth import cells
from cytolt.synth.classes import (
    ABNORMAL_CLASSES,
    CLASS_COLORS,
    CLASS_DEFINITIONS,
    CLASSES,
    NORMAL_DENSITY_PER_MM2,
    ORGANISM_RATES,
    SLIDE_LABELS,
    SQUAMOUS_CLASSES,
    SUPERCATEGORY,
    check_label,
)


def test_at_least_eight_unique_classes_with_a_builder_each():
    assert len(CLASSES) >= 8
    assert len(set(CLASSES)) == len(CLASSES)
    assert set(cells.BUILDERS) == set(CLASSES)


@pytest.mark.parametrize("table", [CLASS_COLORS, CLASS_DEFINITIONS, SUPERCATEGORY])
def test_per_class_tables_cover_exactly_the_classes(table):
    assert set(table) == set(CLASSES)


def test_colors_are_distinct_rgb_triples():
    colors = list(CLASS_COLORS.values())
    assert len(set(colors)) == len(colors)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colors)


def test_slide_labels_name_abnormal_classes_with_valid_ranges():
    assert "NILM" in SLIDE_LABELS and SLIDE_LABELS["NILM"] == {}
    for label, table in SLIDE_LABELS.items():
        for name, (lo, hi) in table.items():
            assert SUPERCATEGORY[name] == "abnormal", (label, name)
            assert 0 <= lo <= hi, (label, name)
    for name, (p, (lo, hi)) in ORGANISM_RATES.items():
        assert SUPERCATEGORY[name] == "organism" and 0 <= p <= 1 and 0 <= lo <= hi
    assert all(SUPERCATEGORY[name] in ("normal", "inflammatory") for name in NORMAL_DENSITY_PER_MM2)


def test_tail_is_abnormal_and_head_is_normal():
    assert SUPERCATEGORY[CLASSES[0]] == "normal"
    assert SUPERCATEGORY[CLASSES[-1]] == "abnormal"


def test_check_label_lists_the_choices():
    assert check_label("HSIL") == "HSIL"
    with pytest.raises(ValueError, match="NILM, ASC-US") as err:
        check_label("hsil")
    assert "'hsil'" in str(err.value)


def test_import_pulls_in_no_framework():
    # cytolt.synth must stay usable without mmdet/mmengine/mmcv/napari/torch (ARCHITECTURE.md, boundaries).
    code = (
        "import sys, cytolt.synth, cytolt.cli.synth; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mmdet', 'mmengine', 'mmcv', 'napari', 'torch'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_squamous_and_abnormal_classes():
    assert set(SQUAMOUS_CLASSES) <= set(CLASSES) and set(ABNORMAL_CLASSES) <= set(CLASSES)
    assert set(ABNORMAL_CLASSES) == {n for spans in SLIDE_LABELS.values() for n in spans}
    assert "agc" in ABNORMAL_CLASSES and "agc" not in SQUAMOUS_CLASSES  # glandular
    assert not set(SQUAMOUS_CLASSES) & set(ORGANISM_RATES)


def test_squamous_classes_agree_with_the_bethesda_vocabulary():
    from cytolt import bethesda

    assert set(SQUAMOUS_CLASSES) == {c for c in CLASSES if bethesda.class_key(c) in bethesda.SQUAMOUS}
