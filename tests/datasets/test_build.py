"""cytolt/datasets/build.py: a COCO + LVIS set from annotated synthetic slides, split by slide, checked."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from cytolt.datasets.build import build_dataset
from cytolt.datasets.class_map import UnmappedClassError
from cytolt.datasets.coco import AnnotationError, check_coco, is_lvis
from cytolt.synth import CLASSES

SPLIT = (0.5, 0.25, 0.25)


@pytest.fixture(scope="module")
def built(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "ds"
    summary = build_dataset(
        cohort.slides,
        cohort.geojson,
        out,
        class_map=cohort.class_map,
        mpp=0.5,
        size=256,
        splits=SPLIT,
        seed=0,
    )
    docs = {s: json.loads(p.read_text()) for s, p in summary.annotation_files.items()}
    return summary, docs


def test_every_split_passes_check_coco_with_lvis_fields(built):
    summary, docs = built
    assert set(docs) == {"train", "val", "test"}
    for split, doc in docs.items():
        check_coco(doc, source=split, image_root=summary.out_dir)
        assert is_lvis(doc)
        assert [c["name"] for c in doc["categories"]] == list(CLASSES)
        for img in doc["images"]:
            present = {a["category_id"] for a in doc["annotations"] if a["image_id"] == img["id"]}
            assert not present & set(img["neg_category_ids"])
            assert not set(img["not_exhaustive_category_ids"]) & set(img["neg_category_ids"])
            assert img["width"] == img["height"] == 256 and img["mpp"] == 0.5
            assert img["scale_l0"] == [2.0, 2.0]  # 0.5 um/px from the slides' 0.25
    # frequency groups come from the training split in every file
    groups = [[c["frequency"] for c in doc["categories"]] for doc in docs.values()]
    assert groups[0] == groups[1] == groups[2]


def test_slides_are_split_whole(built, cohort):
    summary, docs = built
    per_split = {s: {img["slide"] for img in doc["images"]} for s, doc in docs.items()}
    assert per_split == {s: set(v) for s, v in summary.splits.items()}
    everything = [name for names in per_split.values() for name in names]
    assert sorted(everything) == sorted(p.name for p in cohort.slides) and len(everything) == len(
        set(everything)
    )


def test_every_ground_truth_cell_is_counted(built, cohort):
    summary, docs = built
    # Each cell lies whole in at least one patch, so the table's instances can only exceed the truth by the
    # copies in overlapping patches; every class with a cell on a training slide has training instances.
    truth = {c: sum(t.counts()[c] for t in cohort.truths) for c in CLASSES}
    rows = {r.name: r for r in summary.rows}
    for name, n in truth.items():
        assert sum(rows[name].instances.values()) >= n
        assert rows[name].slides == sum(t.counts()[name] > 0 for t in cohort.truths)
    assert summary.not_whole == 0 and summary.clipped_to_slide == 0


def test_table_picture_and_class_map_are_written(built):
    summary, _ = built
    md, table = summary.table_files
    assert "| class | group | slides | train instances |" in md.read_text()
    rows = list(csv.DictReader(table.open()))
    assert [r["class"] for r in rows] == list(CLASSES)
    by_name = {r.name: r for r in summary.rows}
    assert all(int(r["train_instances"]) == by_name[r["class"]].instances["train"] for r in rows)
    picture = cv2.imread(str(summary.examples))
    assert picture is not None and picture.shape[0] >= 96 * sum(
        r.instances["train"] > 0 for r in summary.rows
    )
    assert json.loads((summary.out_dir / "class_map.json").read_text())["classes"] == list(CLASSES)
    text = summary.format()
    assert "train: 2 slide(s)" in text and "hsil" in text


def test_unmapped_names_are_refused_before_any_patch(cohort, tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(UnmappedClassError, match="'HSIL'"):
        build_dataset(cohort.slides, cohort.geojson, out, splits=SPLIT, class_map=_partial_map(tmp_path))
    assert not (out / "images").exists()


def _partial_map(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(
        json.dumps({"classes": ["intermediate", "superficial"], "map": {"INTERMEDIATE": "intermediate"}})
    )
    return path


def test_an_annotation_for_an_unknown_slide_is_named(cohort, tmp_path):
    bad = tmp_path / "nowhere.geojson"
    bad.write_text(cohort.geojson[0].read_text())
    with pytest.raises(
        AnnotationError, match=r"nowhere.geojson: feature 0: names slide 'nowhere', which is none"
    ):
        build_dataset(cohort.slides, [bad], tmp_path / "ds", class_map=cohort.class_map, splits=SPLIT)


def test_points_mpp_override_dropping_and_not_exhaustive(cohort, tmp_path):
    table = tmp_path / "points.csv"
    truth = cohort.truths[0]
    rows = ["slide,x,y,class"] + [
        f"{truth.path.name},{(c.box[0] + c.box[2]) / 2},{(c.box[1] + c.box[3]) / 2},{c.label.upper()}"
        for c in truth.cells
    ]
    table.write_text("\n".join(rows) + "\n")
    cmap = tmp_path / "map.yaml"
    cmap.write_text("classes: [hsil]\nmap: {HSIL: hsil}\npoint_box_um: 12\n")
    summary = build_dataset(
        [truth.path],
        [table],
        tmp_path / "ds",
        class_map=cmap,
        mpp=0.5,
        size=128,
        splits=(1, 0, 0),
        slide_mpp=0.5,  # pretend the slide is 0.5 um/px: patches are then read at level 0 unscaled
        drop_unmapped=True,
        exhaustive=False,
    )
    (doc,) = (json.loads(p.read_text()) for p in summary.annotation_files.values())
    assert summary.dropped_unmapped == {c.upper(): n for c, n in truth.counts().items() if n and c != "hsil"}
    assert {img["scale_l0"][0] for img in doc["images"]} == {1.0}
    inner = [a["bbox"] for a in doc["annotations"] if min(a["bbox"][:2]) > 0 and max(_ends(a["bbox"])) < 128]
    sides = {(w, h) for _, _, w, h in inner}
    assert sides == {(24.0, 24.0)}  # 12 um at 0.5 um/px, whole boxes
    for img in doc["images"]:
        assert img["neg_category_ids"] == []
        present = {a["category_id"] for a in doc["annotations"] if a["image_id"] == img["id"]}
        assert set(img["not_exhaustive_category_ids"]) >= present
    assert summary.images["train"] == len(doc["images"]) and list(summary.splits) == ["train"]
    assert np.isclose(sum(r.instances["train"] for r in summary.rows), len(doc["annotations"]))


def _ends(bbox):
    return bbox[0] + bbox[2], bbox[1] + bbox[3]


def test_an_existing_dataset_folder_is_refused(built, cohort):
    summary, _ = built
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        build_dataset(cohort.slides, cohort.geojson, summary.out_dir, class_map=cohort.class_map)


def test_a_slide_without_mpp_needs_it_given(tmp_path):
    import tifffile

    image = np.full((512, 512, 3), 240, np.uint8)
    image[100:200, 100:200] = (120, 60, 140)
    slide = tmp_path / "plain.tiff"
    tifffile.imwrite(slide, image, tile=(256, 256), photometric="rgb")  # no resolution tags: no mpp
    table = tmp_path / "cells.csv"
    table.write_text("slide,x0,y0,x1,y1,class\nplain.tiff,100,100,200,200,hsil\n")
    with pytest.raises(
        AnnotationError, match=r"plain.tiff: the slide records no microns per pixel; give it with --mpp"
    ):
        build_dataset([slide], [table], tmp_path / "a", splits=(1, 0, 0))
    summary = build_dataset(
        [slide], [table], tmp_path / "b", splits=(1, 0, 0), slide_mpp=0.25, mpp=0.5, size=64
    )
    (doc,) = (json.loads(p.read_text()) for p in summary.annotation_files.values())
    (ann,) = doc["annotations"]
    assert ann["bbox"] == [
        50 - doc["images"][0]["origin_l0"][0] / 2,
        50 - doc["images"][0]["origin_l0"][1] / 2,
        50,
        50,
    ]
