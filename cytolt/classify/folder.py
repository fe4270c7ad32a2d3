"""The classifier model folder (what ``cytolt classify train`` writes, screening's second stage reads).

Layout, format version ``CLASSIFIER_FORMAT``; like the detector's (:mod:`cytolt.detect.model_folder`), safetensors
and JSON, never a pickle::

    MODEL_DIR/classifier.json           format, classes, mpp, crop_size, context, arch, train_counts, method,
                                        head ({"type": ..., its config}), metrics, extra
    MODEL_DIR/classifier.safetensors    the model's state dict: weights and buffers (input normalisation, head state)

    folder = ClassifierFolder.read("models/cells")     # checks the files and fields, parses once
    model = folder.load()                               # CellClassifier with the head named in folder.head

*Architectures*: ``arch["type"]`` is ``"resnet"`` (the default when absent: ``CellClassifier``, with ``width``,
``in_channels``, ``stem``) or ``"vit"`` (:class:`~cytolt.classify.vit.TinyViT`, with its backbone's
``ViTBackbone.config``: ``image_size`` (= ``crop_size``), ``patch_size``, ``dim``, ``depth``, ``heads``,
``in_channels``; LiVT's model).

*Heads*: ``head["type"]`` names a builder in a small registry (:func:`register_head`); ``"linear"`` (the plain
``nn.Linear``) is built in. A long-tail method registers its head when its module is imported; :meth:`load`
imports :mod:`cytolt.classify.methods`, when that package exists, before it gives up on an unknown type. A head may
also say how its logits become probabilities (default: softmax over K).

*Identity*: SHA-256 over the names, sizes and bytes of both files, as the detector's.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from cytolt.classify.model import STEMS, CellClassifier
from cytolt.classify.vit import TinyViT, ViTBackbone
from cytolt.detect.model_folder import folder_identity

__all__ = [
    "CLASSIFIER_FORMAT",
    "ClassifierFolder",
    "HeadSpec",
    "build_head",
    "head_spec",
    "register_head",
    "registered_heads",
]

# 1: classifier.json + classifier.safetensors as in the module docstring.
CLASSIFIER_FORMAT = 1
ARCH_TYPES = ("resnet", "vit")
_VIT_KEYS = ("image_size", "patch_size", "dim", "depth", "heads", "in_channels")
METHODS_PACKAGE = "cytolt.classify.methods"  # imported on demand: its modules register their heads

HeadBuilder = Callable[..., nn.Module]
Probabilities = Callable[[Tensor], Tensor]


def softmax(logits: Tensor) -> Tensor:
    """(N, K) logits -> (N, K) softmax probabilities."""
    return torch.softmax(logits, dim=1)


@dataclass(frozen=True)
class HeadSpec:
    """A registered head: ``builder(feature_dim, num_classes, **config) -> nn.Module`` mapping (N, D) features to
    (N, K) logits, and ``probabilities`` mapping its logits to (N, K) class probabilities."""

    builder: HeadBuilder
    probabilities: Probabilities = softmax


_HEADS: dict[str, HeadSpec] = {}


def register_head(type_name: str, builder: HeadBuilder, *, probabilities: Probabilities = softmax) -> None:
    """Make ``head={"type": type_name, **config}`` loadable: ``builder(feature_dim, num_classes, **config)``.

    The built module gets its weights and buffers from the state dict, so the builder only needs the shapes and
    config. Registering a name again replaces it (a reloaded module).
    """
    if not type_name or not isinstance(type_name, str):
        raise ValueError(f"type_name must be a non-empty string; got {type_name!r}")
    _HEADS[type_name] = HeadSpec(builder, probabilities)


def registered_heads() -> tuple[str, ...]:
    """The head types registered so far, sorted."""
    return tuple(sorted(_HEADS))


def head_spec(type_name: str) -> HeadSpec:
    """The registration of a head type; imports :data:`METHODS_PACKAGE` once if the type is not known yet.

    Raises ValueError listing the known types.
    """
    if type_name not in _HEADS and importlib.util.find_spec(METHODS_PACKAGE) is not None:
        importlib.import_module(METHODS_PACKAGE)
    try:
        return _HEADS[type_name]
    except KeyError:
        raise ValueError(
            f"head type must be one of {', '.join(map(repr, registered_heads()))}; got {type_name!r}"
        ) from None


def build_head(head: Mapping[str, Any], feature_dim: int, num_classes: int) -> nn.Module:
    """The module a ``head`` record (``{"type": ..., **config}``) describes, freshly initialised."""
    config = dict(head)
    type_name = config.pop("type", None)
    if not isinstance(type_name, str):
        raise ValueError(f"a head record needs a 'type' string; got {dict(head)}")
    return head_spec(type_name).builder(feature_dim, num_classes, **config)


def _linear(feature_dim: int, num_classes: int, *, bias: bool = True) -> nn.Module:
    return nn.Linear(feature_dim, num_classes, bias=bias)


register_head("linear", _linear)


class ClassifierFolder:
    """A classifier model folder: read with :meth:`read` (checked), written with :meth:`write`.

    Attributes:
        path: the folder. classes: K class names in label order. mpp, crop_size, context: how crops are cut for
        it (:mod:`cytolt.classify.crops`). arch_type: ``"resnet"`` or ``"vit"``. width, in_channels, stem: the
        ResNet backbone (a ViT's ``width`` is its ``dim``, its ``stem`` ``"patch"``). vit: the ViT backbone's
        config, or None. train_counts: (K,) training
        crops per class. method: the long-tail method's name. head: ``{"type": ..., config}``. metrics: the
        evaluation written at train time, or None. meta: the whole classifier.json.
    """

    META: ClassVar[str] = "classifier.json"
    WEIGHTS: ClassVar[str] = "classifier.safetensors"
    IDENTITY_FILES: ClassVar[tuple[str, ...]] = (META, WEIGHTS)

    def __init__(self, path: Path, meta: Mapping[str, Any]) -> None:
        meta_path = path / self.META
        try:
            self.classes = tuple(str(c) for c in meta["classes"])
            self.mpp = float(meta["mpp"])
            self.crop_size = int(meta["crop_size"])
            self.context = float(meta["context"])
            arch = meta["arch"]
            self.arch_type = str(arch.get("type", "resnet"))
            self.vit: dict[str, int] | None = None
            if self.arch_type == "vit":
                self.vit = {key: int(arch[key]) for key in _VIT_KEYS}
                self.width, self.in_channels, self.stem = self.vit["dim"], self.vit["in_channels"], "patch"
            else:
                self.width = int(arch["width"])
                self.in_channels = int(arch.get("in_channels", 3))
                self.stem = str(arch.get("stem", "s2"))
            self.train_counts = tuple(int(n) for n in meta["train_counts"])
            self.method = str(meta["method"])
            self.head = dict(meta["head"])
            metrics = meta.get("metrics")
            self.metrics = None if metrics is None else dict(metrics)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{meta_path}: not a valid classifier description ({exc!r})") from exc
        problems = []
        if not self.classes:
            problems.append("no classes")
        if len(self.train_counts) != len(self.classes):
            problems.append(f"{len(self.train_counts)} train_counts for {len(self.classes)} classes")
        if not (math.isfinite(self.mpp) and self.mpp > 0):
            problems.append(f"mpp {self.mpp} is not positive")
        if self.crop_size < 1 or self.width < 1 or self.in_channels < 1:
            problems.append("crop_size, arch.width and arch.in_channels must be >= 1")
        if not (math.isfinite(self.context) and self.context >= 0):
            problems.append(f"context {self.context} is negative")
        if self.arch_type not in ARCH_TYPES:
            problems.append(f"arch.type {self.arch_type!r} is not one of {', '.join(ARCH_TYPES)}")
        elif self.vit is not None:
            if self.vit["image_size"] != self.crop_size:
                problems.append(
                    f"arch.image_size {self.vit['image_size']} differs from crop_size {self.crop_size}"
                )
            if min(self.vit.values()) < 1 or self.vit["image_size"] % self.vit["patch_size"]:
                problems.append(f"arch {self.vit} is not a ViT shape (sizes >= 1, patches tiling the crop)")
        elif self.stem not in STEMS:
            problems.append(f"arch.stem {self.stem!r} is not one of {', '.join(STEMS)}")
        if not isinstance(self.head.get("type"), str):
            problems.append("head has no 'type'")
        if problems:
            raise ValueError(f"{meta_path}: not a valid classifier description: {'; '.join(problems)}")
        self.path = path
        self.meta = dict(meta)

    def __repr__(self) -> str:
        return (
            f"ClassifierFolder({str(self.path)!r}, classes={len(self.classes)}, method={self.method!r}, "
            f"head={self.head.get('type')!r}, {self.crop_size} px at {self.mpp:g} um/px)"
        )

    @property
    def weights_path(self) -> Path:
        return self.path / self.WEIGHTS

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ClassifierFolder:
        """Check and parse a classifier folder.

        Raises:
            FileNotFoundError: the folder or one of its files is missing (named).
            ValueError: ``classifier.json`` is not valid, or its format is newer than this cytolt reads.
        """
        folder = Path(path)
        for name in cls.IDENTITY_FILES:
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"{folder} is not a cytolt classifier folder: {name} is missing (see `cytolt classify train`)"
                )
        meta_path = folder / cls.META
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise TypeError(f"expected a JSON object, got {type(meta).__name__}")
            fmt = int(meta["format"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{meta_path}: not a valid classifier description ({exc!r})") from exc
        if fmt > CLASSIFIER_FORMAT:
            raise ValueError(
                f"{meta_path}: classifier format {fmt} is newer than this cytolt reads ({CLASSIFIER_FORMAT}); "
                "upgrade cytolt"
            )
        return cls(folder, meta)

    def build(self) -> CellClassifier | TinyViT:
        """The model this folder describes, freshly initialised (weights not loaded)."""
        if self.vit is not None:
            model: CellClassifier | TinyViT = TinyViT(len(self.classes), backbone=ViTBackbone(**self.vit))
        else:
            model = CellClassifier(
                len(self.classes), width=self.width, in_channels=self.in_channels, stem=self.stem
            )
        model.head = build_head(self.head, model.feature_dim, model.num_classes)
        return model

    def load(self, *, device: str | torch.device = "cpu") -> CellClassifier | TinyViT:
        """The trained model in eval mode on ``device``: :meth:`build`, then the weights (strictly).

        Raises:
            ValueError: the head type is unknown, or the weights do not fit the model (keys named).
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        model = self.build()
        try:
            state = load_file(str(self.weights_path))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{self.weights_path}: not a readable safetensors file ({exc})") from exc
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{self.weights_path}: weights do not fit {self.META}'s model: {exc}") from exc
        return model.to(device).eval()

    def probabilities(self) -> Probabilities:
        """How this folder's head turns logits into class probabilities (softmax unless the head says else)."""
        return head_spec(str(self.head["type"])).probabilities

    def identity(self) -> str:
        """``"sha256:<hex>"`` over the names, sizes and bytes of ``IDENTITY_FILES``."""
        return self._identity

    @cached_property
    def _identity(self) -> str:
        return folder_identity(self.path, self.IDENTITY_FILES, what="cytolt classifier folder")

    @classmethod
    def write(
        cls,
        path: str | os.PathLike[str],
        model: CellClassifier | TinyViT,
        *,
        classes: Sequence[str],
        mpp: float,
        crop_size: int,
        context: float,
        train_counts: Sequence[int],
        method: str,
        head: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ClassifierFolder:
        """Write a classifier folder (files replaced atomically) and read it back.

        ``head`` must describe ``model.head`` (``{"type": "linear"}`` for the default) with a registered type;
        ``metrics`` and ``extra`` must be JSON-serialisable (``extra`` adds top-level entries).
        """
        from safetensors.torch import save

        from cytolt import __version__

        if len(classes) != model.num_classes:
            raise ValueError(f"{len(classes)} class names for a model of {model.num_classes} classes")
        if len(train_counts) != len(classes):
            raise ValueError(f"{len(train_counts)} train_counts for {len(classes)} classes")
        head_spec(str(dict(head).get("type")))  # an unknown type fails here, not when screening loads it
        if isinstance(model, TinyViT) and model.backbone.image_size != int(crop_size):
            raise ValueError(f"the ViT takes {model.backbone.image_size} px crops; crop_size is {crop_size}")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
        meta: dict[str, Any] = {
            "format": CLASSIFIER_FORMAT,
            "classes": list(classes),
            "mpp": float(mpp),
            "crop_size": int(crop_size),
            "context": float(context),
            "arch": _arch(model),
            "train_counts": [int(n) for n in train_counts],
            "method": str(method),
            "head": dict(head),
            "metrics": None if metrics is None else dict(metrics),
            "cytolt_version": __version__,
        }
        meta.update(extra or {})
        text = json.dumps(meta, indent=2) + "\n"
        tmp_weights = out / (cls.WEIGHTS + ".tmp")
        # bytes written by us, so the file gets the usual permissions (save_file creates it owner-only)
        tmp_weights.write_bytes(save(state, metadata={"format": str(CLASSIFIER_FORMAT)}))
        tmp_meta = out / (cls.META + ".tmp")
        tmp_meta.write_text(text)
        tmp_weights.replace(out / cls.WEIGHTS)
        tmp_meta.replace(out / cls.META)
        return cls.read(out)


def _arch(model: CellClassifier | TinyViT) -> dict[str, Any]:
    """``classifier.json``'s ``arch`` record of ``model`` (module docstring, *Architectures*)."""
    if isinstance(model, TinyViT):
        return {"type": "vit", "name": "tinyvit", **model.backbone.config}
    if isinstance(model, CellClassifier):
        return {
            "type": "resnet",
            "name": "resnet18",
            "width": model.width,
            "in_channels": model.in_channels,
            "stem": model.stem,
        }
    raise TypeError(f"ClassifierFolder saves a CellClassifier or a TinyViT; got {type(model).__name__}")
