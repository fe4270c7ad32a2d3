"""The classifier model folder: round trip to identical logits, registered heads, clear errors, identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from cytolt.classify.folder import (
    CLASSIFIER_FORMAT,
    ClassifierFolder,
    build_head,
    head_spec,
    register_head,
    registered_heads,
)
from cytolt.classify.model import CellClassifier
from cytolt.classify.vit import TinyViT, ViTBackbone

CLASSES = ("a", "b", "c")
VIT = {"image_size": 16, "patch_size": 8, "dim": 8, "depth": 1, "heads": 2, "in_channels": 3}


def _trained(width: int = 2, stem: str = "s2") -> CellClassifier:
    """A model whose every parameter and buffer differs from a fresh one (BatchNorm statistics included)."""
    torch.manual_seed(0)
    model = CellClassifier(3, width=width, stem=stem)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.train()(torch.rand(8, 3, 16, 16))  # moves the running statistics
    model.backbone.set_normalization([0.6, 0.5, 0.4], [0.2, 0.3, 0.25])
    return model.eval()


def _write(path: Path, model: nn.Module, **kw) -> ClassifierFolder:
    args = {
        "classes": CLASSES,
        "mpp": 1.0,
        "crop_size": 16,
        "context": 1.5,
        "train_counts": (120, 30, 5),
        "method": "ce",
        "head": {"type": "linear"},
        "metrics": {"accuracy": 0.5},
        **kw,
    }
    return ClassifierFolder.write(path, model, **args)


def test_write_read_load_gives_identical_logits(tmp_path: Path) -> None:
    model = _trained(stem="imagenet")
    folder = _write(tmp_path / "m", model, extra={"source": {"seed": 3}})
    assert sorted(p.name for p in folder.path.iterdir()) == ["classifier.json", "classifier.safetensors"]
    back = ClassifierFolder.read(tmp_path / "m")
    assert back.classes == CLASSES and back.mpp == 1.0 and back.crop_size == 16 and back.context == 1.5
    assert (back.width, back.in_channels, back.stem) == (2, 3, "imagenet")
    assert back.train_counts == (120, 30, 5) and back.method == "ce" and back.head == {"type": "linear"}
    assert back.metrics == {"accuracy": 0.5} and back.meta["source"] == {"seed": 3}
    assert back.meta["format"] == CLASSIFIER_FORMAT
    loaded = back.load()
    assert not loaded.training
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded.backbone.mean, model.backbone.mean)


def test_a_vit_round_trips_with_its_shape_and_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyViT(3, backbone=ViTBackbone(**VIT))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    import cytolt.classify.methods  # noqa: F401  (registers 'sigmoid_norm')
    from cytolt.classify.methods.grad_libra import SigmoidNormHead

    model.head = SigmoidNormHead(nn.Linear(8, 3))
    model.eval()
    folder = _write(tmp_path / "vit", model, head={"type": "sigmoid_norm"}, method="livt")
    meta = json.loads((folder.path / "classifier.json").read_text())
    assert meta["arch"] == {"type": "vit", "name": "tinyvit", **VIT}
    back = ClassifierFolder.read(folder.path)
    assert back.arch_type == "vit" and back.vit == VIT and (back.width, back.stem) == (8, "patch")
    loaded = back.load()
    assert isinstance(loaded, TinyViT) and loaded.backbone.config == VIT
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # A ViT only takes its own crop size; a ResNet folder says it is one.
    with pytest.raises(ValueError, match="the ViT takes 16 px crops; crop_size is 32"):
        _write(tmp_path / "bad", model, head={"type": "sigmoid_norm"}, crop_size=32)
    assert ClassifierFolder.read(_write(tmp_path / "r", _trained()).path).arch_type == "resnet"


class _Scaled(nn.Module):
    """A toy head with a buffer: logits = scale * W f."""

    def __init__(self, feature_dim: int, num_classes: int, *, scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(feature_dim, num_classes, bias=False)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.linear(x)


def _sigmoid(logits: Tensor) -> Tensor:
    return torch.sigmoid(logits)


def test_a_registered_head_is_rebuilt_from_its_record_with_its_state(tmp_path: Path) -> None:
    register_head("test_scaled", _Scaled, probabilities=_sigmoid)
    assert "test_scaled" in registered_heads() and "linear" in registered_heads()
    model = _trained()
    model.head = _Scaled(model.feature_dim, 3, scale=2.0)
    model.head.scale.fill_(5.0)  # state the config does not hold: it comes back from the weights
    folder = _write(tmp_path / "m", model, head={"type": "test_scaled", "scale": 2.0}, method="toy")
    loaded = folder.load()
    assert isinstance(loaded.head, _Scaled) and float(loaded.head.scale) == 5.0
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert folder.probabilities() is _sigmoid
    assert isinstance(build_head({"type": "linear", "bias": False}, 8, 3), nn.Linear)


def test_unknown_heads_fail_when_written_and_when_loaded(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="head type must be one of .*'linear'.*got 'nope'"):
        _write(tmp_path / "w", _trained(), head={"type": "nope"})
    folder = _write(tmp_path / "m", _trained())
    meta = json.loads((folder.path / "classifier.json").read_text())
    (folder.path / "classifier.json").write_text(json.dumps({**meta, "head": {"type": "nope"}}))
    with pytest.raises(ValueError, match="got 'nope'"):
        ClassifierFolder.read(folder.path).load()
    with pytest.raises(ValueError, match="head type"):
        head_spec("")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"classes": ["a", "b"]}, "2 classes"),  # train_counts no longer fit
        ({"mpp": -1}, "mpp -1.0 is not positive"),
        ({"arch": {"width": 2, "stem": "s9"}}, "arch.stem 's9'"),
        ({"arch": {"type": "mlp", "width": 2}}, "arch.type 'mlp' is not one of resnet, vit"),
        ({"arch": {"type": "vit", **VIT, "image_size": 32}}, "arch.image_size 32 differs from crop_size 16"),
        ({"arch": {"type": "vit", **VIT, "patch_size": 5}}, "not a ViT shape"),
        ({"arch": {"type": "vit", "image_size": 16}}, "not a valid classifier description"),
        ({"format": 7}, "format 7 is newer"),
        ({"head": {"kind": "linear"}}, "head has no 'type'"),
        ({"crop_size": "big"}, "not a valid classifier description"),
    ],
)
def test_a_tampered_json_is_a_clear_error_naming_the_file(tmp_path: Path, change: dict, match: str) -> None:
    folder = _write(tmp_path / "m", _trained())
    meta = json.loads((folder.path / "classifier.json").read_text())
    (folder.path / "classifier.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(ValueError, match=match) as err:
        ClassifierFolder.read(folder.path)
    assert "classifier.json" in str(err.value)


def test_weights_that_do_not_fit_and_missing_files(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", _trained())
    meta = json.loads((folder.path / "classifier.json").read_text())
    (folder.path / "classifier.json").write_text(json.dumps({**meta, "arch": {**meta["arch"], "width": 4}}))
    with pytest.raises(ValueError, match="classifier.safetensors: weights do not fit"):
        ClassifierFolder.read(folder.path).load()
    (folder.path / "classifier.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ClassifierFolder.read(folder.path).load()
    (folder.path / "classifier.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="classifier.safetensors is missing"):
        ClassifierFolder.read(folder.path)


def test_write_checks_the_class_table_against_the_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 class names for a model of 3 classes"):
        _write(tmp_path / "m", _trained(), classes=("a", "b"), train_counts=(1, 2))
    with pytest.raises(ValueError, match="2 train_counts for 3 classes"):
        _write(tmp_path / "m", _trained(), train_counts=(1, 2))


def test_identity_changes_with_the_weights_and_the_description(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", _trained())
    b = _write(tmp_path / "b", _trained())
    assert a.identity() == b.identity() and a.identity().startswith("sha256:")
    other = _trained()
    with torch.no_grad():
        other.head.bias.add_(1.0)
    assert _write(tmp_path / "c", other).identity() != a.identity()
    assert _write(tmp_path / "d", _trained(), method="cb").identity() != a.identity()


def test_both_files_get_the_usual_permissions(tmp_path: Path) -> None:
    # safetensors' save_file creates its file owner-only; a lab's shared model folder must be readable
    folder = _write(tmp_path / "m", _trained())
    json_mode = (folder.path / "classifier.json").stat().st_mode & 0o777
    assert (folder.path / "classifier.safetensors").stat().st_mode & 0o777 == json_mode
