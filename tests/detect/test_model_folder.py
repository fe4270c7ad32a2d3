"""Tests of cytolt.detect.model_folder: the one owner of the model folder's files and format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cytolt.aggregate import SlideScorer
from cytolt.detect import MODEL_FORMAT, ModelFolder, ModelInfo

INFO = ModelInfo(
    classes=("nilm", "hsil"), colors=((0, 0, 255), (255, 0, 0)), mpp=0.5, train_instances=(90, 10)
)


def write(folder: Path, *, weight: float = 0.0, classes: tuple[str, ...] = INFO.classes) -> ModelFolder:
    info = ModelInfo(classes=classes, colors=None, mpp=INFO.mpp)
    return ModelFolder.write(
        folder, config="model = dict()\n", weights={"w": torch.full((3,), weight)}, info=info
    )


def test_write_then_read_round_trips_the_model_description(tmp_path: Path) -> None:
    folder = ModelFolder.write(
        tmp_path / "m",
        config="model = dict()\n",
        weights={"w": torch.zeros(2)},
        info=INFO,
        extra={"note": "x"},
    )
    again = ModelFolder.read(tmp_path / "m")
    assert again.info == ModelInfo(**{**INFO.__dict__, "path": tmp_path / "m"}) == folder.info
    assert again.meta["format"] == MODEL_FORMAT and again.meta["note"] == "x"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(ModelFolder.IDENTITY_FILES)
    assert again.name == "m" and again.config_path.read_text() == "model = dict()\n"


def test_identity_follows_every_model_file_but_not_the_scorer(tmp_path: Path) -> None:
    a, same = write(tmp_path / "a"), write(tmp_path / "same")
    other_weights = write(tmp_path / "w", weight=1.0)
    other_meta = write(tmp_path / "c", classes=("nilm", "lsil"))
    assert a.identity() == same.identity() and a.identity().startswith("sha256:")  # content, not the name
    assert len({f.identity() for f in (a, other_weights, other_meta)}) == 3
    scorer = SlideScorer(class_names=a.info.classes, abnormal_classes=["hsil"])
    ModelFolder.read(a.path).write_scorer(scorer)  # re-applied on resume: not part of the identity
    assert ModelFolder.read(a.path).identity() == same.identity()
    assert ModelFolder.read(a.path).scorer().to_dict() == scorer.to_dict() and same.scorer() is None


def test_bad_folders_are_refused_with_the_file_named(tmp_path: Path) -> None:
    folder = write(tmp_path / "m")
    meta = json.loads((folder.path / "model.json").read_text())
    (folder.path / "model.json").write_text(json.dumps({**meta, "format": MODEL_FORMAT + 1}))
    with pytest.raises(ValueError, match=r"model.json: model format 2 is newer than this cytolt reads \(1\)"):
        ModelFolder.read(folder.path)
    (folder.path / "model.json").write_text(json.dumps({**meta, "colors": [[1, 2, 3]]}))
    with pytest.raises(ValueError, match="1 colours for 2 classes"):
        ModelFolder.read(folder.path)
    (folder.path / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="model.json: not a valid model description"):
        ModelFolder.read(folder.path)
    (folder.path / "scorer.json").write_text("[]")
    (folder.path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="scorer.json: not a valid slide scorer"):
        ModelFolder.read(folder.path).scorer()
    (folder.path / "config.py").unlink()
    with pytest.raises(FileNotFoundError, match="config.py is missing"):
        ModelFolder.read(folder.path)


def test_engine_fields_are_optional_and_read_tolerantly(tmp_path: Path) -> None:
    folder = write(tmp_path / "m")
    assert folder.onnx is None and folder.default_engine == "torch"  # a folder from before the onnx engine
    said_onnx = folder.update_meta({"onnx": {"sha256": "sha256:0"}, "engine": {"default": "onnx"}})
    assert said_onnx.default_engine == "torch", "model.json names an onnx file that is not there"
    said_onnx.onnx_path.write_bytes(b"graph")
    assert ModelFolder.read(folder.path).default_engine == "onnx"
    for odd in ({"engine": "onnx"}, {"engine": {"default": "tensorrt"}}, {"onnx": {"error": "no export"}}):
        assert folder.update_meta(odd).default_engine == "torch", odd
    assert not list(folder.path.glob("*.tmp"))


def test_update_meta_keeps_the_other_entries_and_changes_the_identity(tmp_path: Path) -> None:
    folder = write(tmp_path / "m")
    before = folder.identity()
    again = folder.update_meta({"engine": {"default": "torch"}})
    assert again.meta["classes"] == list(INFO.classes) and again.meta["engine"] == {"default": "torch"}
    assert again.identity() != before
