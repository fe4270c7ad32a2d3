"""Round trip: synthetic slides' ground truth -> QuPath GeoJSON -> ``cytolt dataset build`` -> the same cells.

The patches' boxes must be the ground-truth boxes at the new mpp (IoU > 0.95 each, the same count per class),
with the expected boxes worked out from the ground truth, the patch's level-0 origin and the nominal scale
(new mpp / slide mpp) alone; the origin itself is checked by reading the slide there with ``Slide.read_at_mpp``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cytolt.cli import main
from cytolt.datasets.annotations import write_qupath_geojson
from cytolt.datasets.coco import check_coco
from cytolt.io import open_slide
from cytolt.store.geojson import check_qupath_geojson
from cytolt.synth import CLASSES, make_slide

SIZE = 256


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    root = tmp_path_factory.mktemp("roundtrip")
    truths = [
        make_slide(root / f"case{i}.tiff", size=(2048, 2048), seed=30 + i, label=label)
        for i, label in enumerate(("HSIL", "LSIL"))
    ]
    (root / "qupath").mkdir()
    for truth in truths:
        # The lab's names: upper case, mapped back by the class map.
        doc = write_qupath_geojson(
            root / "qupath" / f"{truth.path.name}.geojson",
            [c.box for c in truth.cells],
            [c.label.upper() for c in truth.cells],
        )
        check_qupath_geojson(doc)
    class_map = root / "map.json"
    class_map.write_text(json.dumps({"classes": list(CLASSES), "map": {c.upper(): c for c in CLASSES}}))
    return root, truths, class_map


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("mpp_out", [0.5, 0.4])  # from 0.25: level 1 as it is; level 0 resized by 1/1.6
def test_ground_truth_survives_the_round_trip(annotated, mpp_out):
    root, truths, class_map = annotated
    out = root / f"ds_{mpp_out}"
    args = ["dataset", "build", *(str(t.path) for t in truths), "--annotations", str(root / "qupath")]
    args += ["--class-map", str(class_map), "--mpp-out", str(mpp_out), "--size", str(SIZE), "--out", str(out)]
    args += ["--split", "1,0,0", "--image-format", "png", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "train: 2 slide(s)" in result.output
    doc = json.loads((out / "annotations_train.json").read_text())
    check_coco(doc, source="annotations_train.json", image_root=out)
    names = {c["id"]: c["name"] for c in doc["categories"]}
    by_image: dict[int, list] = {img["id"]: [] for img in doc["images"]}
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        by_image[a["image_id"]].append((names[a["category_id"]], (x, y, x + w, y + h)))

    for truth in truths:
        scale = mpp_out / truth.mpp
        images = [img for img in doc["images"] if img["slide"] == truth.path.name]
        expected = {}  # image id -> [(cell index, class, box in patch px, whole)]
        for img in images:
            ox, oy = img["origin_l0"]
            rows = []
            for k, cell in enumerate(truth.cells):
                b = [(cell.box[0] - ox) / scale, (cell.box[1] - oy) / scale]
                b += [(cell.box[2] - ox) / scale, (cell.box[3] - oy) / scale]
                clipped = [min(max(v, 0.0), SIZE) for v in b]
                if clipped[2] > clipped[0] and clipped[3] > clipped[1]:
                    whole = clipped == b
                    rows.append((k, cell.label, clipped, whole))
            expected[img["id"]] = rows
        found_whole: set[int] = set()
        for img in images:
            for name, box in by_image[img["id"]]:
                # every written box is a ground-truth cell of the same class
                match = max(expected[img["id"]], key=lambda r: _iou(r[2], box) if r[1] == name else 0.0)
                assert match[1] == name and _iou(match[2], box) > 0.95, (img["file_name"], name, box)
                if match[3]:
                    found_whole.add(match[0])
        # every cell is whole in some patch: the counts per class equal the ground truth
        assert Counter(truth.cells[k].label for k in found_whole) == Counter(c.label for c in truth.cells)

        with open_slide(truth.path) as slide:
            img = images[len(images) // 2]
            ox, oy = img["origin_l0"]
            assert ox == int(ox) and oy == int(oy)
            reference = slide.read_at_mpp((int(ox), int(oy)), mpp_out, (SIZE, SIZE))
        patch = cv2.imread(str(out / img["file_name"]))[:, :, ::-1]
        assert np.array_equal(patch, reference)
    assert Path(out / "examples.jpg").is_file() and (out / "classes.md").is_file()
