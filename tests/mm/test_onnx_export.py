"""cytolt.mm.onnx_export and the onnx engine (cytolt.mm.detector.OnnxDetector) against torch, on a tiny trained
RetinaNet: raw head outputs, detections after NMS, COCO AP on the synthetic test split; and the models it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmdet")

from cytolt.detect import Detections, ModelFolder, load  # noqa: E402
from cytolt.mm.onnx_export import (  # noqa: E402
    BOX_TOL_PX,
    SCORE_TOL,
    OnnxExportError,
    coco_detections,
    compare_detections,
    export_onnx,
    sample_tiles,
)
from tests.mm.conftest import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def trained(tiny_model, tiny_tct) -> tuple[ModelFolder, Path]:
    """The user's path on the tiny set (tests/mm/conftest.py): train, then `cytolt export-model` with its default
    --onnx (export, check, timing). Returns (the model folder, the dataset's folder)."""
    return ModelFolder.read(tiny_model), tiny_tct


@pytest.fixture(scope="module")
def model(trained) -> ModelFolder:
    return trained[0]


def test_export_records_the_file_its_hash_and_the_faster_engine(model) -> None:
    from cytolt.detect.onnx_engine import file_sha256

    entry = model.onnx
    assert entry is not None and model.onnx_path.is_file()
    assert entry["sha256"] == file_sha256(model.onnx_path) and entry["outputs"] == [3, 3]
    assert entry["exporter"].startswith("torch.onnx.export(")
    measured = model.meta["engine"]["measured"]
    ms = measured["ms_per_tile"]
    assert set(ms) == {"torch", "onnx"} and all(v > 0 for v in ms.values())
    assert model.default_engine == min(ms, key=ms.__getitem__)


def test_raw_head_outputs_match_torch(model) -> None:
    from cytolt.detect.onnx_engine import OnnxSession
    from cytolt.mm.detector import MMDetDetector
    from cytolt.mm.onnx_export import RawHead

    torch_det = MMDetDetector(model, device=torch.device("cpu"))
    session = OnnxSession(model.onnx_path, sha256=model.onnx["sha256"])
    # 200 x 300 is padded to 224 x 320 by the preprocessor: a size the export never saw
    x = torch_det.preprocess(sample_tiles(2, 300, seed=3)[:, :, :200])["inputs"]
    assert tuple(x.shape[-2:]) == (224, 320)
    with torch.no_grad():
        want = RawHead(torch_det.model).eval()(x)
    got = session.run(x.numpy())
    assert len(got) == len(want) == 6
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize(("size", "score_thr"), [((256, 256), 0.0), ((200, 328), 0.0), ((256, 256), 0.02)])
def test_detections_after_nms_are_the_same(model, size, score_thr) -> None:
    tiles = sample_tiles(3, max(size), seed=11)[:, :, : size[0], : size[1]]
    want = load(model, "cpu", engine="torch", score_thr=score_thr).predict(tiles)
    onnx_det = load(model, "cpu", engine="onnx", score_thr=score_thr)
    assert type(onnx_det).__name__ == "OnnxDetector"
    got = onnx_det.predict(tiles)
    assert sum(len(d) for d in want) > 0, "the comparison must hold detections"
    for w, g in zip(want, got, strict=True):
        assert compare_detections(w, g) is None
        assert torch.equal(w.labels.sort().values, g.labels.sort().values)


def test_coco_ap_differs_by_less_than_0_002(trained) -> None:
    from cytolt.evaluate.coco import coco_eval

    model, data = trained
    ap = {}
    for engine in ("torch", "onnx"):
        ann = data / "annotations_test.json"
        results = coco_detections(load(model, "cpu", engine=engine, score_thr=0.0), ann)
        assert results
        ap[engine] = coco_eval(ann, results)
    for key in ("AP", "AP50", "AR@100"):
        assert abs(ap["torch"][key] - ap["onnx"][key]) < 0.002, (key, ap)


def test_compare_detections_pairs_in_any_order_and_names_a_difference() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0]])
    a = Detections(boxes=boxes, scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([0, 1]))
    swapped = Detections(boxes=boxes.flip(0), scores=torch.tensor([0.8, 0.9]), labels=torch.tensor([1, 0]))
    assert compare_detections(a, swapped) is None
    moved = Detections(boxes=boxes + 2 * BOX_TOL_PX, scores=a.scores, labels=a.labels)
    assert "box difference" in compare_detections(a, moved)
    rescored = Detections(boxes=boxes, scores=a.scores + 2 * SCORE_TOL, labels=a.labels)
    assert "score difference" in compare_detections(a, rescored)
    relabelled = Detections(boxes=boxes, scores=a.scores, labels=torch.tensor([1, 0]))
    assert compare_detections(a, relabelled) is not None
    assert "2 detections against 1" in compare_detections(a, a.select([0]))


def _untrained_folder(config: str, out: Path) -> ModelFolder:
    """A model folder of ``config``'s model with its initial weights (what export checks needs no training)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from cytolt.detect import ModelInfo
    from cytolt.synth import CLASSES

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(ROOT / "configs" / "tct" / config))
    net = MODELS.build(cfg.model)
    text = Config(dict(model=cfg.model.to_dict(), custom_imports=cfg.get("custom_imports"))).pretty_text
    weights = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    return ModelFolder.write(out, config=text, weights=weights, info=ModelInfo(classes=CLASSES, mpp=0.5))


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ("cascade_rcnn_r18_ce.py", "not a single-stage dense detector"),
        ("reppoints_r18_focal.py", "ONNX"),
    ],
)
def test_models_it_cannot_export_keep_the_torch_engine_and_say_why(config, why, tmp_path) -> None:
    folder = _untrained_folder(config, tmp_path / "m")
    with pytest.raises(OnnxExportError, match=why):
        export_onnx(folder, tiles=sample_tiles(2, 64), measure=False)
    again = ModelFolder.read(folder.path)
    assert not again.onnx_path.exists() and again.onnx is None and again.default_engine == "torch"
    assert why in again.meta["onnx"]["error"]
    assert type(load(again, "cpu")).__name__ == "MMDetDetector"
    with pytest.raises(ValueError, match="has no ONNX export"):
        load(again, "cpu", engine="onnx")


def test_an_fcos_head_exports_too(tmp_path) -> None:
    folder = export_onnx(
        _untrained_folder("fcos_r18_focal.py", tmp_path / "m"), tiles=sample_tiles(2, 64), measure=False
    )
    assert folder.onnx["outputs"] == [3, 3, 3]  # class scores, distances, centerness per level
    assert folder.default_engine == "torch"  # nothing measured: torch stays


def test_onnx_engine_refuses_a_gpu_and_auto_keeps_torch_there(model) -> None:
    from cytolt.detect import pick_engine

    with pytest.raises(ValueError, match="CPU only"):
        load(model, "cuda", engine="onnx")
    assert pick_engine(model, torch.device("cuda")) == "torch"
    assert pick_engine(model, torch.device("cpu")) == model.default_engine
    with pytest.raises(ValueError, match="engine must be one of"):
        pick_engine(model, torch.device("cpu"), "tensorrt")
