"""CropSet (dataset, subset, files) and the crop cutters: geometry, COCO images, synthetic slides, a reviewed run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cytolt.classify.crops import (
    CropSet,
    border_colour,
    crop_squares,
    crops_from_boxes,
    crops_from_coco,
    crops_from_image,
    crops_from_run,
    crops_from_slides,
)
from cytolt.detect import Detections
from cytolt.io import SlideError, open_slide
from cytolt.store import DetectionStore
from cytolt.synth import CLASSES, make_patch_dataset, make_slide


def _toy(n: int = 6, size: int = 8, k: int = 3) -> CropSet:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    sources = [{"source": f"img{i}.jpg", "box": [i, i, i + 4, i + 4], "id": i} for i in range(n)]
    return CropSet(images, np.arange(n) % k, [f"c{j}" for j in range(k)], 0.5, sources=sources, context=1.5)


# ------------------------------------------------------------------ CropSet


def test_a_crop_set_yields_float_chw_in_unit_range_and_counts_per_class() -> None:
    crops = _toy()
    x, y = crops[4]
    assert x.dtype == torch.float32 and x.shape == (3, 8, 8) and y == 1
    # pixel (row 2, col 5), channel 1 of crop 4, scaled to [0, 1]
    assert x[1, 2, 5].item() == pytest.approx(crops.images[4, 2, 5, 1] / 255.0)
    assert len(crops) == 6 and crops.size == 8
    assert crops.counts().tolist() == [2, 2, 2] and crops.counts().dtype == np.int64


def test_subset_takes_indices_or_a_mask_in_order() -> None:
    crops = _toy()
    sub = crops.subset([5, 0])
    assert sub.labels.tolist() == [2, 0] and [s["id"] for s in sub.sources] == [5, 0]
    assert np.array_equal(sub.images[0], crops.images[5])
    assert sub.class_names == crops.class_names and sub.mpp == crops.mpp and sub.context == 1.5
    masked = crops.subset(crops.labels == 1)
    assert masked.labels.tolist() == [1, 1] and [s["id"] for s in masked.sources] == [1, 4]
    with pytest.raises(ValueError, match="6 entries"):
        crops.subset(np.ones(3, bool))


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), [0, 1], "uint8"),
        (np.zeros((2, 8, 6, 3), np.uint8), [0, 1], r"\(N, S, S, 3\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), [0], "1 labels for 2 crops"),
        (np.zeros((2, 8, 8, 3), np.uint8), [0, 3], r"0\.\.2"),
    ],
)
def test_a_crop_set_refuses_bad_arrays(images: np.ndarray, labels: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CropSet(images, labels, ["a", "b", "c"], 1.0)


def test_write_then_read_gives_the_same_set_memory_mapped(tmp_path: Path) -> None:
    crops = _toy()
    crops.info["seed"] = 7
    crops.write(tmp_path / "set")
    back = CropSet.read(tmp_path / "set")
    assert isinstance(back.images, np.memmap) and not back.images.flags.writeable
    assert np.array_equal(back.images, crops.images) and np.array_equal(back.labels, crops.labels)
    assert back.class_names == crops.class_names and back.mpp == 0.5 and back.context == 1.5
    assert back.sources == crops.sources and back.info == {"seed": 7}
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["crops.json", "crops.npy"]


def test_read_names_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="crops.json is missing"):
        CropSet.read(tmp_path)
    folder = _toy().write(tmp_path / "set")
    meta = json.loads((folder / "crops.json").read_text())
    (folder / "crops.json").write_text(json.dumps({**meta, "labels": meta["labels"][:-1]}))
    with pytest.raises(
        ValueError, match=r"crops\.npy: holds \(6, 8, 8, 3\) uint8; crops\.json describes 5 crops"
    ):
        CropSet.read(folder)
    (folder / "crops.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ValueError, match="format 99 is newer"):
        CropSet.read(folder)
    (folder / "crops.json").write_text(json.dumps({**meta, "labels": [0, 1, 2, 0, 1, 7]}))
    with pytest.raises(ValueError, match=r"crops\.json: labels must be in 0\.\.2"):
        CropSet.read(folder)
    (folder / "crops.json").write_text("{not json")
    with pytest.raises(ValueError, match="crops.json: not a valid crop set description"):
        CropSet.read(folder)


# ------------------------------------------------------------------ geometry


def test_crop_squares_keep_the_field_unless_the_cell_and_its_context_do_not_fit() -> None:
    boxes = np.array([[10, 10, 30, 20], [0, 0, 60, 40]], np.float64)
    centres, sides, crop_mpp = crop_squares(boxes, size=32, mpp=1.0, context=1.5, pixel_mpp=0.5)
    # box 0: 20 x 10 px = 10 um; 1.5 * 10 < 32 um field -> 32 um = 64 px at 0.5 um/px, crop mpp 1
    # box 1: 60 px = 30 um; 1.5 * 30 = 45 um > 32 -> 90 px, crop mpp 45 / 32
    assert centres.tolist() == [[20, 15], [30, 20]]
    assert sides.tolist() == [[64, 64], [90, 90]]
    assert crop_mpp == pytest.approx([1.0, 45 / 32])
    # anisotropic source pixels: the square is physical, its sides in px differ
    _, sides, _ = crop_squares(boxes[:1], size=32, mpp=1.0, context=1.5, pixel_mpp=(0.5, 0.25))
    assert sides.tolist() == [[64, 128]]
    # context 0: fixed scale whatever the box
    _, _, crop_mpp = crop_squares(boxes, size=32, mpp=1.0, context=0.0, pixel_mpp=0.5)
    assert crop_mpp.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="context"):
        crop_squares(boxes, size=32, mpp=1.0, context=-1, pixel_mpp=0.5)


def test_crops_from_image_copy_exactly_at_the_image_scale_and_pad_with_the_border_colour() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    image[0, :] = image[-1, :] = image[:, 0] = image[:, -1] = (200, 190, 180)
    boxes = np.array([[20, 10, 24, 16], [0, 0, 4, 4]], np.float64)  # centres (22, 13) and (2, 2)
    crops, crop_mpp = crops_from_image(image, boxes, size=8, mpp=0.5, pixel_mpp=0.5, context=1.0)
    assert crops.shape == (2, 8, 8, 3) and crop_mpp.tolist() == [0.5, 0.5]
    assert np.array_equal(crops[0], image[9:17, 18:26])  # top-left (22 - 4, 13 - 4)
    assert np.array_equal(crops[1][2:, 2:], image[0:6, 0:6])  # the rest lies outside: padded
    assert (crops[1][:2] == (200, 190, 180)).all() and (crops[1][:, :2] == (200, 190, 180)).all()
    assert border_colour(image).tolist() == [200, 190, 180]
    # at twice the mpp the 16 px square is averaged down 2 x 2 (INTER_AREA)
    half, _ = crops_from_image(image, boxes[:1], size=8, mpp=1.0, pixel_mpp=0.5, context=1.0)
    block = image[5:21, 14:30].astype(np.float64).reshape(8, 2, 8, 2, 3).mean(axis=(1, 3))
    assert np.abs(half[0] - block).max() <= 1


# ------------------------------------------------------------------ COCO


@pytest.fixture(scope="module")
def patches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("patches")
    make_patch_dataset(
        out, images=4, size=128, imbalance=1, mpp=1.0, cells_per_image=3, seed=2, image_format="png"
    )
    return out


def test_crops_from_coco_centre_on_the_boxes_at_the_files_mpp(patches: Path) -> None:
    ann = patches / "annotations.json"
    doc = json.loads(ann.read_text())
    crops = crops_from_coco(ann, patches, size=16, mpp=1.0, context=0.0)
    assert len(crops) == len(doc["annotations"]) and crops.class_names == CLASSES and crops.mpp == 1.0
    assert sorted(crops.labels.tolist()) == sorted(a["category_id"] - 1 for a in doc["annotations"])
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    inside = 0
    for i, a in enumerate(sorted(doc["annotations"], key=lambda a: (a["image_id"], a["id"]))):
        assert crops.sources[i]["id"] == a["id"] and crops.sources[i]["source"] == files[a["image_id"]]
        x, y, w, h = a["bbox"]
        x0, y0 = round(x + w / 2 - 8), round(y + h / 2 - 8)
        pixels = cv2.imread(str(patches / files[a["image_id"]]))[:, :, ::-1]
        if 0 <= x0 and 0 <= y0 and x0 + 16 <= 128 and y0 + 16 <= 128:  # else partly padding
            assert np.array_equal(crops.images[i], pixels[y0 : y0 + 16, x0 : x0 + 16])
            inside += 1
    assert inside >= len(doc["annotations"]) // 2


def test_crops_from_coco_zoom_out_large_cells_and_record_their_mpp(patches: Path) -> None:
    crops = crops_from_coco(patches / "annotations.json", patches, size=16, mpp=1.0, context=1.5)
    zoomed = [s for s in crops.sources if "mpp" in s]
    assert zoomed, "cells of 20-90 um with their context do not fit a 16 um field"
    for s in zoomed:
        x0, y0, x1, y1 = s["box"]
        assert s["mpp"] == pytest.approx(1.5 * max(x1 - x0, y1 - y0) / 16, rel=1e-4)


def test_crops_from_coco_need_an_mpp_and_the_images(patches: Path, tmp_path: Path) -> None:
    doc = json.loads((patches / "annotations.json").read_text())
    del doc["info"]["mpp"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="no microns per pixel.*image_mpp"):
        crops_from_coco(bare, patches, size=16, mpp=1.0)
    assert len(crops_from_coco(bare, patches, size=16, mpp=1.0, image_mpp=1.0)) == len(doc["annotations"])
    with pytest.raises(FileNotFoundError, match="image not found"):
        crops_from_coco(bare, tmp_path, size=16, mpp=1.0, image_mpp=1.0)
    with pytest.raises(ValueError, match="not a COCO instance file"):
        crops_from_coco(patches / "images" / "000001.png", patches, size=16, mpp=1.0)


# ------------------------------------------------------------------ slides and runs


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 512 px at 0.5 um/px (256 um): an HSIL slide plants a few tens of cells; about a second
    path = tmp_path_factory.mktemp("slide") / "case.tiff"
    make_slide(path, size=(512, 512), mpp=0.5, seed=4, label="HSIL")
    return path


def _cells(path: Path) -> list[dict]:
    return json.loads((path.parent / (path.name + ".cells.json")).read_text())["cells"]


def test_crops_from_slides_read_every_ground_truth_cell_at_the_slide_pixels(slide_path: Path) -> None:
    cells = _cells(slide_path)
    crops = crops_from_slides([slide_path], size=16, mpp=0.5, context=0.0)
    assert len(crops) == len(cells) and crops.class_names == CLASSES
    assert crops.labels.tolist() == [CLASSES.index(c["class"]) for c in cells]
    with open_slide(slide_path) as slide:
        for i in (0, len(cells) - 1):
            x0, y0, x1, y1 = cells[i]["box"]
            left, top = int(np.floor((x0 + x1) / 2 - 8 + 0.5)), int(np.floor((y0 + y1) / 2 - 8 + 0.5))
            assert np.array_equal(crops.images[i], slide.read_region((left, top), 0, (16, 16)))
            assert crops.sources[i] == {
                "source": "case.tiff",
                "box": [float(v) for v in cells[i]["box"]],
                "id": i,
            }


def test_crops_from_slides_keep_only_the_classes_asked_for(slide_path: Path, tmp_path: Path) -> None:
    cells = _cells(slide_path)
    crops = crops_from_slides([slide_path], size=16, mpp=1.0, class_names=("hsil", "intermediate"))
    assert crops.class_names == ("hsil", "intermediate")
    assert crops.counts().tolist() == [sum(c["class"] == n for c in cells) for n in ("hsil", "intermediate")]
    with pytest.raises(FileNotFoundError, match="ground truth"):
        crops_from_slides([tmp_path / "none.tiff"], size=16, mpp=1.0)


def test_crops_from_boxes_empty_and_without_mpp(slide_path: Path) -> None:
    with open_slide(slide_path) as slide:
        assert crops_from_boxes(slide, np.zeros((0, 4)), size=16, mpp=1.0).shape == (0, 16, 16, 3)

    class NoMpp:
        mpp = None
        path = Path("x.tiff")

    with pytest.raises(SlideError, match="no microns per pixel"):
        crops_from_boxes(NoMpp(), np.array([[0, 0, 10, 10]]), size=16, mpp=1.0)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def run_dir(slide_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 4 detections of the slide's first cells: accepted, reclassified, rejected, not reviewed."""
    run = tmp_path_factory.mktemp("run")
    cells = _cells(slide_path)[:4]
    with DetectionStore(run / "run.sqlite") as store:
        sid = store.add_slide(slide_path, mpp=0.5, dims=(512, 512), run_id=store.add_run(model="m"))
        store.add_detections(
            sid,
            Detections(
                boxes=np.array([c["box"] for c in cells], np.float64),
                scores=np.array([0.9, 0.8, 0.7, 0.6], np.float32),
                labels=np.array([CLASSES.index(c["class"]) for c in cells], np.int64),
            ),
            class_names=CLASSES,
        )
        ids = store.columns(sid)["id"]
        store.add_review(int(ids[0]), "accept", reviewer="t")
        store.add_review(int(ids[1]), "reclassify", reviewer="t", new_label="scc")
        store.add_review(int(ids[2]), "reject", reviewer="t")
    return run


def test_crops_from_run_take_the_reviewed_class_or_the_models(run_dir: Path, slide_path: Path) -> None:
    cells = _cells(slide_path)[:4]
    reviewed = crops_from_run(run_dir, size=16, mpp=1.0)
    assert reviewed.class_names == CLASSES
    assert reviewed.labels.tolist() == [CLASSES.index(cells[0]["class"]), CLASSES.index("scc")]
    assert [s["box"] for s in reviewed.sources] == [[float(v) for v in c["box"]] for c in cells[:2]]
    assert reviewed.info["labels"] == "reviewed"
    model = crops_from_run(run_dir, size=16, mpp=1.0, labels="model", min_score=0.65)
    assert model.labels.tolist() == [CLASSES.index(c["class"]) for c in cells[:3]]
    assert [s["score"] for s in model.sources] == pytest.approx([0.9, 0.8, 0.7])
    with open_slide(slide_path) as slide:  # the same pixels as cutting the boxes by hand
        by_hand = crops_from_boxes(slide, np.array([c["box"] for c in cells[:2]]), size=16, mpp=1.0)
    assert np.array_equal(reviewed.images, by_hand)


def test_crops_from_run_errors(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a cytolt run folder"):
        crops_from_run(tmp_path, size=16, mpp=1.0)
    with pytest.raises(ValueError, match="labels must be one of 'reviewed', 'model'"):
        crops_from_run(run_dir, size=16, mpp=1.0, labels="truth")
    with pytest.raises(ValueError, match="no detections scoring >= 0.95"):
        crops_from_run(run_dir, size=16, mpp=1.0, labels="model", min_score=0.95)


def test_format_prints_the_class_table_with_shot_groups() -> None:
    images = np.zeros((125, 4, 4, 3), np.uint8)
    crops = CropSet(images, [0] * 101 + [1] * 20 + [2] * 4, ["head", "mid", "tail"], 0.5)
    lines = crops.format().splitlines()
    assert lines[0].startswith("125 crops of 4 px at 0.5 um/px, 3 classes")
    assert [line.split() for line in lines[2:]] == [
        ["head", "101", "many"],
        ["mid", "20", "medium"],
        ["tail", "4", "few"],
    ]
