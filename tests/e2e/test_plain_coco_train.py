"""A lab's plain COCO dataset with its own 4 classes trains and evaluates with an unchanged config and --data-root.

Through the CLI, as a new user runs it: the class table with frequency groups is printed before training, the head
has 4 outputs, and the validation AP / APr / APc / APf are reported at the end; an exported model names the 4
classes. A broken annotation file fails before the first iteration, naming the file and the entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mmdet")

from click.testing import CliRunner  # noqa: E402

from cytolt.cli import main  # noqa: E402
from tests.mm.test_dataset_fit import CLASSES4, write_plain_coco  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Two iterations: a checkpoint to export and the validation after the last one; what is checked needs no more.
FEW = ["train_cfg.max_iters=2", "train_dataloader.batch_size=2", "default_hooks.checkpoint.interval=2"]


@pytest.mark.slow
def test_plain_coco_with_four_classes_trains_evaluates_and_exports(tmp_path):
    data = write_plain_coco(tmp_path / "lab_coco", images=12)
    assert not any(
        "neg_category_ids" in img for img in json.loads((data / "annotations_val.json").read_text())["images"]
    )
    work = tmp_path / "run"
    args = ["train", str(ROOT / "configs/tct/retinanet_r18_gradlibra.py"), "--data-root", str(data)]
    args += ["--work-dir", str(work)] + [x for kv in FEW for x in ("--cfg-options", kv)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "training classes" in out and "groups by training images: rare (r) 1-10" in out
    for name in CLASSES4:
        assert name in out
    line = next(x for x in out.splitlines() if x.startswith("validation"))
    for key in ("AP", "APr", "APc", "APf"):
        assert f" {key} " in line
    from mmengine.config import Config

    from cytolt.mm.dataset_fit import class_counts_in

    dumped = Config.fromfile(str(work / "retinanet_r18_gradlibra.py"))  # the config the run trained
    assert class_counts_in(dumped.model.to_dict()) == {
        4
    }  # the head and its losses: 4 classes, none of the 11

    model = tmp_path / "model"
    # --no-onnx: the classes are what this test reads; the ONNX export is tests/mm/test_onnx_export.py's
    result = CliRunner().invoke(
        main, ["export-model", str(work), str(model), "--no-onnx"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    info = json.loads((model / "model.json").read_text())
    assert tuple(info["classes"]) == CLASSES4
    assert info["train_instances_per_class"] == [6, 6, 6, 6]


def test_a_broken_annotation_file_fails_in_seconds_naming_file_and_entry(tmp_path):
    data = write_plain_coco(tmp_path / "lab_coco", images=8)
    path = data / "annotations_val.json"
    doc = json.loads(path.read_text())
    doc["annotations"][1]["bbox"] = [80, 80, 40, 40]  # beyond the 96-px image
    path.write_text(json.dumps(doc))
    args = ["train", str(ROOT / "configs/tct/retinanet_r18_focal.py"), "--data-root", str(data)]
    result = CliRunner().invoke(main, [*args, "--work-dir", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert (
        f"{path}: annotation 1 (id {doc['annotations'][1]['id']}): bbox [80, 80, 40, 40] lies outside"
        in result.output
    )
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").rglob("*.pth"))


@pytest.mark.slow
def test_two_trainings_in_one_process_each_report_their_own_validation(tmp_path):
    from cytolt.mm.train import last_val_metrics, train

    data = write_plain_coco(tmp_path / "lab_coco", images=8)
    config = ROOT / "configs/tct/retinanet_r18_focal.py"
    runs = [train(config, work_dir=tmp_path / f"run{k}", data_root=data, cfg_options=FEW) for k in range(2)]
    for run in runs:
        metrics = last_val_metrics(run)
        assert metrics["iter"] == 2 and {"lt/AP", "lt/APr", "lt/APc", "lt/APf"} <= set(metrics)
