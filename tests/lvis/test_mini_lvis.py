"""scripts/lvis/make_mini_lvis.py and lvis_tools.py: the mini LVIS set keeps LVIS v1's layout and federated
structure, mmdet's LVISV1Dataset reads it, lvis-api applies its rules to it; check, split, score, run configs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cytolt.evaluate import lvis_eval
from cytolt.synth import frequency_thresholds, lvis_frequency

ROOT = Path(__file__).resolve().parents[2]


def _load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"lvis_v1_{split}.json").read_text())


def _positives(data: dict) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {img["id"]: set() for img in data["images"]}
    for ann in data["annotations"]:
        out[ann["image_id"]].add(ann["category_id"])
    return out


def _perfect_detections(data: dict) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in data["annotations"]
    ]


# ---------------------------------------------------------------------------------------------- structure


def test_group_sizes_follow_lvis_v1(make_mini):
    assert make_mini.group_sizes(1203) == {"r": 337, "c": 461, "f": 405}
    # 12 * (337, 461, 405) / 1203 = (3.36, 4.60, 4.04): floors 3, 4, 4; the largest remainder (c) gets the 12th.
    assert make_mini.group_sizes(12) == {"r": 3, "c": 5, "f": 4}
    assert make_mini.group_sizes(3) == {"r": 1, "c": 1, "f": 1}


@pytest.mark.parametrize(
    "kwargs", [dict(num_classes=2), dict(num_classes=31), dict(train_images=2), dict(val_images=0)]
)
def test_impossible_sets_are_refused(make_mini, tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_mini.make_mini_lvis(tmp_path, **kwargs)


def test_files_sit_where_coco_url_points(mini_lvis, lvis_tools):
    root, _ = mini_lvis
    folders = {}
    for split in ("train", "val"):
        data = _load(root, split)
        assert lvis_tools.check_annotations(data, split) == []
        for img in data["images"]:
            file = root / lvis_tools.image_file(img)
            assert file.is_file(), file
            assert cv2.imread(str(file)).shape == (img["height"], img["width"], 3)
            folders.setdefault(split, set()).add(file.parent.name)
    assert folders["train"] == {"train2017"}
    # LVIS v1 val holds COCO val2017 images and some of train2017.
    assert folders["val"] == {"val2017", "train2017"}


def test_frequency_groups_come_from_train_image_counts(mini_lvis):
    root, summary = mini_lvis
    train, val = _load(root, "train"), _load(root, "val")
    rare_max, common_max = frequency_thresholds(len(train["images"]))
    assert (rare_max, common_max) == (1, 4)  # 8 images: max(1, round(8/20)), round(8/2)
    positives = _positives(train)
    for cat in train["categories"]:
        images = sum(cat["id"] in cats for cats in positives.values())
        assert cat["image_count"] == images >= 1
        assert cat["instance_count"] == sum(a["category_id"] == cat["id"] for a in train["annotations"])
        assert cat["frequency"] == lvis_frequency(images, rare_max=rare_max, common_max=common_max)
    assert val["categories"] == train["categories"]  # LVIS val lists the train-set statistics
    groups = [c["frequency"] for c in train["categories"]]
    assert {g: groups.count(g) for g in "rcf"} == {"r": 3, "c": 5, "f": 4}
    freq = {c["id"]: c["frequency"] for c in val["categories"]}
    assert {freq[a["category_id"]] for a in val["annotations"]} == {"r", "c", "f"}


def test_federated_lists_are_consistent(mini_lvis):
    root, _ = mini_lvis
    for split in ("train", "val"):
        data = _load(root, split)
        positives = _positives(data)
        ids = {c["id"] for c in data["categories"]}
        unverified = 0
        for img in data["images"]:
            pos, neg = positives[img["id"]], set(img["neg_category_ids"])
            assert not pos & neg
            assert set(img["not_exhaustive_category_ids"]) <= pos
            unverified += len(ids - pos - neg)
        assert any(img["neg_category_ids"] for img in data["images"])
        assert any(img["not_exhaustive_category_ids"] for img in data["images"])
        assert unverified > 0  # some categories are neither positive nor negative in some image


def test_polygons_boxes_areas_and_pixels_agree(mini_lvis, make_mini):
    root, summary = mini_lvis
    colors = {name: make_mini.COLORS[name.split("_")[1]] for name in summary["classes"]}
    for split in ("train", "val"):
        data = _load(root, split)
        names = {c["id"]: c["name"] for c in data["categories"]}
        images = {img["id"]: img for img in data["images"]}
        for ann in data["annotations"]:
            img = images[ann["image_id"]]
            poly = np.asarray(ann["segmentation"][0]).reshape(-1, 2)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.02)
            rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], img["height"], img["width"]))
            assert ann["area"] == float(mask_utils.area(rle)) > 0
            pixels = cv2.imread(str(root / img["coco_url"].split("cocodataset.org/")[1]))[..., ::-1]
            inside = mask_utils.decode(rle).astype(bool)
            mean = pixels[inside].astype(float).mean(0)
            assert np.abs(mean - colors[names[ann["category_id"]]]).max() < 40  # drawn in its class colour


def test_not_exhaustive_images_hold_an_unannotated_instance(mini_lvis, make_mini):
    root, _ = mini_lvis
    data = _load(root, "val")
    names = {c["id"]: c["name"] for c in data["categories"]}
    checked = 0
    for img in data["images"]:
        for cat in img["not_exhaustive_category_ids"]:
            pixels = cv2.imread(str(root / img["coco_url"].split("cocodataset.org/")[1]))[..., ::-1].astype(
                int
            )
            color = np.asarray(make_mini.COLORS[names[cat].split("_")[1]])
            painted = np.abs(pixels - color).max(axis=2) < 40
            annotated = np.zeros_like(painted)
            for ann in data["annotations"]:
                if ann["image_id"] == img["id"]:
                    rle = mask_utils.frPyObjects(ann["segmentation"], img["height"], img["width"])
                    annotated |= mask_utils.decode(mask_utils.merge(rle)).astype(bool)
            # Paint of this colour outside every annotated mask: the extra, unannotated instance.
            stray = cv2.erode((painted & ~annotated).astype(np.uint8), np.ones((3, 3), np.uint8))
            assert stray.sum() >= 20, (img["id"], cat)
            checked += 1
    assert checked >= 1


def test_mmdet_lvis_v1_dataset_reads_the_mini_set(mini_lvis):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import LVISV1Dataset
    from mmdet.datasets.transforms import LoadAnnotations

    import cytolt.mm  # noqa: F401  (np.float for lvis-api)

    root, summary = mini_lvis
    val = _load(root, "val")
    ds = LVISV1Dataset(
        data_root=str(root),
        ann_file="annotations/lvis_v1_val.json",
        data_prefix=dict(img=""),
        metainfo=dict(classes=tuple(summary["classes"])),
        test_mode=True,
        pipeline=[dict(type=LoadImageFromFile), dict(type=LoadAnnotations, with_bbox=True, with_mask=True)],
    )
    assert len(ds) == len(val["images"])
    for i, img in enumerate(val["images"]):
        sample = ds[i]
        assert Path(sample["img_path"]) == root / img["coco_url"].split("cocodataset.org/")[1]
        anns = [a for a in val["annotations"] if a["image_id"] == img["id"]]
        assert sample["img"].shape == (128, 128, 3)
        assert len(sample["gt_masks"]) == len(anns)
        assert sorted(sample["gt_bboxes_labels"].tolist()) == sorted(a["category_id"] - 1 for a in anns)


def test_same_seed_same_set(make_mini, tmp_path):
    sets = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        make_mini.make_mini_lvis(
            tmp_path / name, num_classes=6, train_images=4, val_images=2, size=64, seed=seed
        )
        sets.append((tmp_path / name / "annotations" / "lvis_v1_train.json").read_bytes())
    assert sets[0] == sets[1]
    assert sets[0] != sets[2]
    assert (tmp_path / "a/train2017/000000000001.jpg").read_bytes() == (
        tmp_path / "b/train2017/000000000001.jpg"
    ).read_bytes()


# ---------------------------------------------------------------------------------------------- lvis-api


def test_lvis_api_applies_the_federated_rules_to_the_mini_set(mini_lvis):
    """Perfect detections score AP 1; a false detection counts only where its class is verified absent."""
    root, _ = mini_lvis
    val = _load(root, "val")
    gt = root / "annotations" / "lvis_v1_val.json"
    perfect = _perfect_detections(val)
    assert lvis_eval(gt, perfect)["AP"] == pytest.approx(1.0)
    positives = _positives(val)
    in_val = set().union(*positives.values())

    def false_at(img: dict, cat: int) -> dict:  # a tiny box in a corner, where no shape is drawn
        return {"image_id": img["id"], "category_id": cat, "bbox": [0.5, 0.5, 4.0, 4.0], "score": 0.95}

    cases = {"unverified": None, "negative": None, "not_exhaustive": None}
    for img in val["images"]:
        pos, neg = positives[img["id"]], set(img["neg_category_ids"])
        for cat in sorted(in_val):
            kind = "negative" if cat in neg else "unverified" if cat not in pos else None
            if kind and cases[kind] is None:
                cases[kind] = false_at(img, cat)
        if img["not_exhaustive_category_ids"] and cases["not_exhaustive"] is None:
            cases["not_exhaustive"] = false_at(img, img["not_exhaustive_category_ids"][0])
    assert all(cases.values()), cases
    assert lvis_eval(gt, perfect + [cases["unverified"]])["AP"] == pytest.approx(1.0)  # ignored
    assert lvis_eval(gt, perfect + [cases["not_exhaustive"]])["AP"] == pytest.approx(1.0)  # ignored
    assert lvis_eval(gt, perfect + [cases["negative"]])["AP"] < 1.0  # a false positive


def test_score_reports_standard_and_fixed_ap(mini_lvis, lvis_tools, tmp_path):
    root, _ = mini_lvis
    val = _load(root, "val")
    prefix = tmp_path / "results"
    Path(f"{prefix}.bbox.json").write_text(json.dumps(_perfect_detections(val)))
    scores = lvis_tools.score(root / "annotations" / "lvis_v1_val.json", prefix)
    assert set(scores) == {"bbox"}  # no segm file, no segm scores
    assert scores["bbox"]["standard"]["AP"] == pytest.approx(1.0)
    assert scores["bbox"]["fixed"]["AP"] == pytest.approx(1.0)
    assert "AR@10000/cat" in scores["bbox"]["fixed"]
    table = lvis_tools.format_scores(scores)
    assert "bbox standard" in table and "bbox fixed" in table and "APr" in table
    with pytest.raises(FileNotFoundError):
        lvis_tools.score(root / "annotations" / "lvis_v1_val.json", tmp_path / "missing")


# ---------------------------------------------------------------------------------------------- check, split


def test_check_data_root_finds_missing_images(mini_lvis, lvis_tools, tmp_path):
    root, _ = mini_lvis
    errors, warnings = lvis_tools.check_data_root(root, expect_full=False)
    assert errors == [] and warnings == []
    # Compared with the full release, a mini set differs in every count: warnings, not errors.
    errors, warnings = lvis_tools.check_data_root(root, expect_full=True)
    assert errors == [] and any("8 images, the LVIS v1 release has 100170" in w for w in warnings)
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    victim = lvis_tools.image_file(_load(root, "val")["images"][0])
    (broken / victim).unlink()
    errors, _ = lvis_tools.check_data_root(broken, expect_full=False)
    assert len(errors) == 1 and "val: 1 images missing" in errors[0] and victim in errors[0]


def test_check_annotations_flags_a_category_both_annotated_and_negative(mini_lvis, lvis_tools):
    root, _ = mini_lvis
    data = _load(root, "val")
    ann = data["annotations"][0]
    img = next(i for i in data["images"] if i["id"] == ann["image_id"])
    img["neg_category_ids"].append(ann["category_id"])
    errors = lvis_tools.check_annotations(data, "val")
    assert len(errors) == 1 and "annotated and negative" in errors[0]


def test_heldout_split_partitions_train(mini_lvis, lvis_tools):
    root, _ = mini_lvis
    train = _load(root, "train")
    kept = json.loads((root / "annotations" / lvis_tools.CDB_TRAIN_NAME).read_text())
    held = json.loads((root / "annotations" / lvis_tools.HELDOUT_NAME).read_text())
    kept_ids, held_ids = {i["id"] for i in kept["images"]}, {i["id"] for i in held["images"]}
    assert len(held_ids) == 2 and not kept_ids & held_ids  # a quarter of 8, disjoint
    assert kept_ids | held_ids == {i["id"] for i in train["images"]}
    for part, ids in ((kept, kept_ids), (held, held_ids)):
        assert {a["image_id"] for a in part["annotations"]} <= ids
        assert part["categories"] == train["categories"]
    assert len(kept["annotations"]) + len(held["annotations"]) == len(train["annotations"])
    again = lvis_tools.split_heldout(train, 2, seed=0)
    assert {i["id"] for i in again[1]["images"]} == held_ids  # the seed fixes the draw
    with pytest.raises(ValueError):
        lvis_tools.split_heldout(train, len(train["images"]))


def test_prepare_sh_checks_a_data_root(mini_lvis, tmp_path):
    root, _ = mini_lvis
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/lvis/prepare.sh"), str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "lvis_v1_val.json: 4 images" in done.stdout and "OK" in done.stdout
    missing = subprocess.run(
        ["bash", str(ROOT / "scripts/lvis/prepare.sh"), str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "does not exist" in missing.stderr


# ---------------------------------------------------------------------------------------------- configs


def test_mini_config_moves_every_path_and_class_count(make_mini, mini_lvis):
    root, summary = mini_lvis
    cfg = make_mini.mini_config(ROOT / "configs/lvis/mask_rcnn_r50_fpn_cdb_1x.py", root)
    text = json.dumps(cfg.to_dict(), default=str)
    assert "data/lvis_v1" not in text
    hook_ds = cfg.custom_hooks[0]["dataloader"]["dataset"]
    assert hook_ds["data_root"] == f"{root}/" and hook_ds["metainfo"]["classes"] == tuple(summary["classes"])
    assert cfg.model.roi_head.bbox_head.num_classes == cfg.model.roi_head.bbox_head.loss_cls.num_classes == 12
    assert cfg.model.roi_head.mask_head.num_classes == 12
    assert cfg.train_dataloader.dataset.pipeline[2]["scales"] == [(128, 128)]
    assert cfg.test_dataloader.dataset.pipeline[1]["scale"] == (128, 128)
    assert cfg.model.rpn_head.anchor_generator.scales == [8]  # only transforms get the image size
    lsj = make_mini.mini_config(ROOT / "configs/lvis/mask_rcnn_r50_fpn_copypaste_rfs_1x.py", root)
    sizes = {t["type"]: t for t in lsj.train_dataloader.dataset.dataset.pipeline}
    assert (
        sizes["RandomResize"]["scale"]
        == sizes["RandomCrop"]["crop_size"]
        == sizes["Pad"]["size"]
        == (128, 128)
    )


def test_write_run_config_sets_weights_limit_and_root(lvis_tools, mini_lvis, tmp_path):
    from mmengine.config import Config

    root, _ = mini_lvis
    config = ROOT / "configs/lvis/mask_rcnn_r50_fpn_eql_1x.py"
    with pytest.raises(FileNotFoundError, match="backbone weights"):
        lvis_tools.write_run_config(config, tmp_path / "x.py", pretrained=tmp_path / "none.pth")
    weights = tmp_path / "r50.pth"
    weights.write_bytes(b"0")
    out = lvis_tools.write_run_config(
        config, tmp_path / "run.py", data_root=root, pretrained=weights, dets_per_img=1000
    )
    cfg = Config.fromfile(str(out))
    assert cfg.model.backbone.init_cfg == dict(type="Pretrained", checkpoint=str(weights))
    assert cfg.model.test_cfg.rcnn.max_per_img == 1000
    assert cfg.model.roi_head.bbox_head.loss_cls.train_ann_file == f"{root}/annotations/lvis_v1_train.json"
    assert cfg.model.roi_head.bbox_head.num_classes == 1203  # the root moved, the classes did not
    atss = lvis_tools.write_run_config(
        ROOT / "configs/lvis/atss_r50_fpn_efl_rfs_2x.py", tmp_path / "a.py", dets_per_img=7
    )
    assert Config.fromfile(str(atss)).model.test_cfg.max_per_img == 7


def test_extract_weights_unpickles_only_a_runs_own_checkpoint(lvis_tools, tmp_path):
    import torch
    from safetensors.torch import load_file

    state = {"w": torch.arange(3.0), "b": torch.ones(2)}
    ckpt = {"state_dict": state, "meta": {"np": np.float64(1.5), "arr": np.zeros(2)}}
    run = tmp_path / "run"
    run.mkdir()
    torch.save(ckpt, run / "epoch_1.pth")
    (run / "last_checkpoint").write_text(str(run / "epoch_1.pth"))
    out = lvis_tools.extract_weights(run / "epoch_1.pth", tmp_path / "w.safetensors")
    loaded = load_file(str(out))
    assert set(loaded) == {"w", "b"} and torch.equal(loaded["w"], state["w"])
    stray = tmp_path / "elsewhere.pth"
    shutil.copy(run / "epoch_1.pth", stray)  # same content, but not inside a run folder
    with pytest.raises(Exception, match="[Ww]eights only"):
        lvis_tools.extract_weights(stray, tmp_path / "x.safetensors")
