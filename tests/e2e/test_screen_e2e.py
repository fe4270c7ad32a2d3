"""End to end: ``cytolt screen`` with a real (untrained) mmdet model folder on a synthetic slide.

The model is the narrow RetinaNet-R18 of configs/tct, freshly initialised and exported the way
``cytolt export-model`` writes a folder (config.py, model.safetensors, model.json). Its classification bias is set
to 0 so every anchor scores sigmoid(0) = 0.5: an untrained model then still reports boxes all over each tile, and
the whole path (mmdet inference, tile -> level-0 mapping, merging, store, reports) carries real data.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cytolt.cli.screen import screen
from cytolt.report import validate_report
from cytolt.store import DetectionStore
from cytolt.synth import CLASS_COLORS, CLASSES, make_slide

ROOT = Path(__file__).resolve().parents[2]
MODEL_CONFIG = ROOT / "configs" / "tct" / "_base_" / "models" / "retinanet_r18.py"


def export_untrained_retinanet(out: Path, *, mpp: float = 0.5) -> Path:
    """Write a model folder holding the narrow RetinaNet-R18 with fresh weights (classification bias 0)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from cytolt.detect import ModelFolder, ModelInfo

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(MODEL_CONFIG))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    logger = logging.getLogger("mmengine")
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter's initialiser
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    torch.nn.init.zeros_(model.bbox_head.retina_cls.bias)
    config = Config(dict(model=cfg.model.to_dict(), custom_imports=dict(imports=["cytolt.mm"])))
    info = ModelInfo(classes=tuple(CLASSES), colors=tuple(CLASS_COLORS[c] for c in CLASSES), mpp=mpp)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    return ModelFolder.write(out, config=config.pretty_text, weights=weights, info=info).path


@pytest.mark.slow
def test_screen_with_an_exported_mmdet_model(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    slide = tmp_path / "slides" / "case1.tiff"
    make_slide(slide, size=(2048, 2048), mpp=0.25, seed=11, label="HSIL")
    model = export_untrained_retinanet(tmp_path / "model")
    run = tmp_path / "run"
    args = [
        str(slide),
        "-o",
        str(run),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--read-threads",
        "1",
        "--quiet",
    ]
    result = CliRunner().invoke(screen, args)
    assert result.exit_code == 0, result.output

    report = json.loads((run / "case1" / "report.json").read_text())
    validate_report(report)
    assert report["status"] == "done" and report["model"]["name"] == "model"
    # 1024 x 1024 px at 0.5 um/px in 512 px tiles overlapping by 128 px (64 um): 3 x 3 tiles, all with cells
    assert report["tiles"] == {"read": 9, "total": 9, "size": 512, "overlap": 128, "mpp": [0.5, 0.5]}
    assert report["detections"]["total"] > 100
    html = (run / "case1" / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and html.count("data:image/") > 10

    with DetectionStore(run / "run.sqlite", readonly=True) as store:
        (record,) = store.slides()
        dets, _ = store.query(record.id)
    assert record.status == "done" and len(dets) == report["detections"]["total"]
    boxes = dets.boxes.numpy()
    # tile boxes were scaled by 2 into level 0: they cover the whole 2048 px slide, not its top-left quarter
    assert boxes[:, 0].min() < 300 and boxes[:, 2].max() > 1750 and boxes[:, 3].max() > 1750
    assert (boxes[:, :2] >= -1).all() and (boxes[:, 2:] <= 2048 + 1).all()
    assert (dets.scores.numpy() > 0.4).all()  # about sigmoid(0) = 0.5: the bias set above
