"""A config follows its dataset's classes; broken annotations fail before any model is built."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mmdet")

from cytolt.datasets import AnnotationError  # noqa: E402
from cytolt.mm.dataset_fit import check_training_data, class_counts_in, fit_to_dataset  # noqa: E402
from cytolt.mm.train import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLASSES4 = ("round", "square", "bar", "ring")


def write_plain_coco(out: Path, *, images: int = 12, size: int = 96, seed: int = 0) -> Path:
    """A plain COCO set (no LVIS fields) of 4 shape classes on pale images, split 50/25/25 by image."""
    import cv2

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    # ids 10, 20, 30, 40 in the file: labels follow category-id order, not ids
    cats = [{"id": 10 * (k + 1), "name": n, "supercategory": "shape"} for k, n in enumerate(CLASSES4)]
    docs = {s: {"images": [], "annotations": [], "categories": cats} for s in ("train", "val", "test")}
    ann_id = 0
    for i in range(images):
        split = "train" if i < images // 2 else ("val" if i < 3 * images // 4 else "test")
        img = np.full((size, size, 3), 230, np.uint8)
        name = f"img_{i:03d}.png"
        docs[split]["images"].append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for k in range(4):  # every class in every image, so no split misses one
            x, y = int(rng.integers(4, size - 28)), int(rng.integers(4, size - 28))
            w = h = 20
            color = [(200, 40, 40), (40, 40, 200), (40, 160, 40), (150, 60, 150)][k]
            if k == 0:
                cv2.circle(img, (x + 10, y + 10), 10, color, -1)
            elif k == 1:
                cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, -1)
            elif k == 2:
                h = 8
                cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, -1)
            else:
                cv2.circle(img, (x + 10, y + 10), 10, color, 3)
            ann_id += 1
            docs[split]["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": i + 1,
                    "category_id": cats[k]["id"],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                }
            )
        cv2.imwrite(str(out / name), img)
    for split, doc in docs.items():
        (out / f"annotations_{split}.json").write_text(json.dumps(doc))
    return out


@pytest.fixture(scope="module")
def plain4(tmp_path_factory) -> Path:
    return write_plain_coco(tmp_path_factory.mktemp("plain4"))


@pytest.mark.parametrize(
    "config",
    ["retinanet_r18_gradlibra.py", "cascade_rcnn_r18_eqlv2.py", "atss_r18_cdb.py", "yolof_r18_efl.py"],
)
def test_every_class_count_follows_the_dataset(config, plain4, tmp_path):
    cfg = load_config(ROOT / "configs/tct" / config, work_dir=tmp_path, data_root=plain4)
    assert tuple(cfg.classes) == CLASSES4
    assert class_counts_in(cfg.model.to_dict()) == {4}  # head and losses alike
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        meta = cfg[key].dataset.get("metainfo") or cfg[key].dataset.dataset.metainfo
        assert tuple(meta["classes"]) == CLASSES4 and len(meta["palette"]) == 4
    if "rpn_head" in cfg.model:
        assert cfg.model.rpn_head.get("num_classes", 1) == 1  # objectness is not a class count
    assert cfg.val_evaluator.train_ann_file == str(plain4 / "annotations_train.json")


def test_synthetic_data_leaves_the_config_as_written(tmp_path):
    from cytolt.synth import CLASSES, make_patch_dataset

    data = tmp_path / "tct"
    make_patch_dataset(data, images=16, size=96, imbalance=2, seed=1, split=(0.5, 0.25, 0.25))
    cfg = load_config(ROOT / "configs/tct/retinanet_r18_focal.py", work_dir=tmp_path / "w", data_root=data)
    fit = fit_to_dataset(cfg)
    assert fit is not None and not fit.changed
    assert tuple(cfg.classes) == CLASSES and cfg.model.bbox_head.num_classes == len(CLASSES)


def test_check_training_data_returns_the_class_table(plain4, tmp_path):
    cfg = load_config(ROOT / "configs/tct/retinanet_r18_focal.py", work_dir=tmp_path, data_root=plain4)
    checked = check_training_data(cfg)
    assert [r.name for r in checked.classes] == list(CLASSES4)
    assert all(r.instances == 6 and r.images == 6 and r.group == "r" for r in checked.classes)


def _broken_copy(src: Path, dst: Path, split: str, mutate) -> Path:
    import shutil

    shutil.copytree(src, dst)
    path = dst / f"annotations_{split}.json"
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    return dst


@pytest.mark.parametrize(
    ("split", "mutate", "words"),
    [
        (
            "val",
            lambda d: d["annotations"][2].update(category_id=99),
            r"annotation 2 \(id \d+\): unknown category_id 99",
        ),
        (
            "train",
            lambda d: d["annotations"][0].update(bbox=[90, 90, 20, 20]),
            r"annotation 0 \(id 1\): bbox",
        ),
        (
            "train",
            lambda d: d["images"][1].update(file_name="gone.png"),
            r"image 1 \(id 2\): image file not found",
        ),
        ("test", lambda d: d.update(annotations=[], images=[]), "empty split"),
    ],
)
def test_a_broken_file_fails_before_the_model_is_built(plain4, tmp_path, monkeypatch, split, mutate, words):
    import mmengine.runner

    from cytolt.mm import train as train_mod

    data = _broken_copy(plain4, tmp_path / "data", split, mutate)

    def no_runner(*args, **kwargs):
        raise AssertionError("the Runner was built before the annotations were checked")

    monkeypatch.setattr(mmengine.runner.Runner, "from_cfg", no_runner)
    with pytest.raises(AnnotationError, match=rf"annotations_{split}.json: {words}"):
        train_mod.train(ROOT / "configs/tct/retinanet_r18_focal.py", work_dir=tmp_path / "w", data_root=data)


def test_fine_tuning_from_a_model_of_other_classes_is_refused_before_training(plain4, tmp_path, monkeypatch):
    import mmengine.runner

    from cytolt.detect import ModelFolder, ModelInfo
    from cytolt.mm import train as train_mod
    from cytolt.synth import CLASSES

    model = ModelFolder.write(
        tmp_path / "model",
        config="model = dict()\n",
        weights={"w": __import__("torch").zeros(1)},
        info=ModelInfo(classes=CLASSES),
    )

    def no_runner(*args, **kwargs):
        raise AssertionError("the Runner was built before load_from was checked")

    monkeypatch.setattr(mmengine.runner.Runner, "from_cfg", no_runner)
    with pytest.raises(AnnotationError, match=r"model: classes: the model's classes \['intermediate'"):
        train_mod.train(
            ROOT / "configs/tct/retinanet_r18_focal.py",
            work_dir=tmp_path / "w",
            data_root=plain4,
            load_from=model.path,
        )
