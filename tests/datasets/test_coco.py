import json

import pytest

from cytolt.datasets.coco import (
    AnnotationError,
    check_coco,
    check_splits,
    class_table,
    format_class_table,
    is_lvis,
    read_coco,
    with_lvis_fields,
)
from cytolt.evaluate import LVISEvaluator


def _doc(n_images=3, boxes=None, categories=("a", "b", "c")):
    images = [{"id": i + 1, "file_name": f"im{i}.png", "width": 100, "height": 80} for i in range(n_images)]
    boxes = (
        boxes
        if boxes is not None
        else [(1, 1, [10, 10, 20, 20]), (1, 2, [50, 30, 10, 10]), (2, 1, [0, 0, 5, 5])]
    )
    anns = [
        {"id": k + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
        for k, (img, cat, box) in enumerate(boxes)
    ]
    cats = [{"id": k + 1, "name": name} for k, name in enumerate(categories)]
    return {"images": images, "annotations": anns, "categories": cats}


def test_a_good_file_passes_and_files_are_found(tmp_path):
    doc = _doc()
    for img in doc["images"]:
        (tmp_path / img["file_name"]).write_bytes(b"x")
    check_coco(doc, source="train.json", image_root=tmp_path)


@pytest.mark.parametrize(
    ("mutate", "entry", "words"),
    [
        (lambda d: d["annotations"][1].update(category_id=9), "annotation 1 (id 2)", "unknown category_id 9"),
        (
            lambda d: d["annotations"][0].update(bbox=[90, 10, 20, 20]),
            "annotation 0 (id 1)",
            "outside its image",
        ),
        (lambda d: d["annotations"][2].update(bbox=[0, 0, 0, 5]), "annotation 2 (id 3)", "no area"),
        (
            lambda d: d["annotations"][2].update(bbox=[0, 0, "5", 5]),
            "annotation 2 (id 3)",
            "4 finite numbers",
        ),
        (lambda d: d["annotations"][0].update(image_id=42), "annotation 0 (id 1)", "image_id 42"),
        (lambda d: d["annotations"][0].pop("bbox"), "annotation 0 (id 1)", "lacks ['bbox']"),
        (lambda d: d["images"][1].update(id=1), "image 1 (id 1)", "duplicate image id"),
        (
            lambda d: d["categories"].append({"id": 1, "name": "z"}),
            "category 3 (id 1)",
            "duplicate category id",
        ),
        (lambda d: d.pop("categories"), "", "missing list 'categories'"),
        (lambda d: d.update(annotations=[]), "", "empty split"),
    ],
)
def test_a_broken_file_names_the_file_and_the_entry(mutate, entry, words):
    doc = _doc()
    mutate(doc)
    with pytest.raises(AnnotationError) as err:
        check_coco(doc, source="val.json")
    assert err.value.source == "val.json"
    assert err.value.entry == entry
    assert words in str(err.value)
    assert str(err.value).startswith("val.json")


def test_a_missing_image_file_is_named(tmp_path):
    doc = _doc()
    (tmp_path / "im0.png").write_bytes(b"x")
    with pytest.raises(AnnotationError, match=r"image 1 \(id 2\): image file not found: .*im1.png"):
        check_coco(doc, source="train.json", image_root=tmp_path)


def test_read_coco_reports_bad_json_with_its_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{"images": [\n  1,\n  oops\n]}')
    with pytest.raises(AnnotationError, match=r"train.json: line 3: not valid JSON"):
        read_coco(path)
    with pytest.raises(AnnotationError, match="annotation file not found"):
        read_coco(tmp_path / "absent.json")


def test_splits_must_share_categories_and_train_every_val_class():
    train = _doc()
    val = _doc(boxes=[(1, 3, [1, 1, 5, 5])])  # class c never appears in train
    with pytest.raises(
        AnnotationError, match=r"val.json: categories: classes \['c'\] .* none in the training split"
    ):
        check_splits(train, {"val.json": val}, train_source="train.json")
    other = _doc(categories=("a", "b", "x"))
    with pytest.raises(AnnotationError, match="differ from the training split"):
        check_splits(train, {"test.json": other}, train_source="train.json")
    check_splits(train, {"val.json": _doc(boxes=[(3, 2, [1, 1, 5, 5])])}, train_source="train.json")


def test_plain_coco_gets_exhaustive_negatives_and_groups_from_train():
    train = _doc()
    assert not is_lvis(train)
    out = with_lvis_fields(train)
    assert is_lvis(out) and not is_lvis(train)  # a copy; the input is untouched
    by_id = {img["id"]: img for img in out["images"]}
    assert by_id[1]["neg_category_ids"] == [3]  # a and b are in image 1
    assert by_id[2]["neg_category_ids"] == [2, 3]
    assert by_id[3]["neg_category_ids"] == [1, 2, 3]  # an empty image rules every class out
    assert all(img["not_exhaustive_category_ids"] == [] for img in out["images"])
    cats = {c["name"]: c for c in out["categories"]}
    assert (cats["a"]["image_count"], cats["a"]["instance_count"]) == (2, 2)
    assert (cats["c"]["image_count"], cats["c"]["frequency"]) == (0, "r")
    # a validation split takes its counts and groups from the training split, not from itself
    val = _doc(boxes=[(1, 2, [1, 1, 5, 5])] * 1)
    val_out = with_lvis_fields(val, train=train, rare_max=0, common_max=1)
    groups = {c["name"]: c["frequency"] for c in val_out["categories"]}
    assert groups == {"a": "f", "b": "c", "c": "r"}


def test_derived_fields_make_plain_coco_scoreable_by_the_lvis_evaluator():
    train = _doc()
    gt = with_lvis_fields(train)
    ev = LVISEvaluator(gt, max_dets=300, per_class=False)
    for img in gt["images"]:
        boxes = [
            [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
            for a in gt["annotations"]
            if a["image_id"] == img["id"]
        ]
        labels = [a["category_id"] - 1 for a in gt["annotations"] if a["image_id"] == img["id"]]
        if boxes:
            ev.process(img["id"], boxes, [0.9] * len(boxes), labels)
    metrics = ev.evaluate()
    assert metrics["AP"] == pytest.approx(1.0)


def test_class_table_lists_groups_and_thresholds():
    rows = class_table(_doc())
    assert [(r.name, r.instances, r.images, r.group) for r in rows] == [
        ("a", 2, 2, "r"),
        ("b", 1, 1, "r"),
        ("c", 0, 0, "r"),
    ]
    text = format_class_table(rows)
    assert "rare (r) 1-10 or none: 3" in text and "frequent (f) > 100: 0" in text
    json.dumps([r.__dict__ for r in rows])  # plain data
