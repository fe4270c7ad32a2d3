"""The model folder (what ``cytolt export-model`` writes and screening reads), owned here and nowhere else.

Layout, format version ``MODEL_FORMAT``::

    MODEL_DIR/model.json          format, classes, colors, mpp (of the training images), train_instances_per_class,
                                  source (work_dir, checkpoint, iteration), cytolt_version
    MODEL_DIR/config.py           the mmdet model config (``model=...``, ``custom_imports``)
    MODEL_DIR/model.safetensors   weights (and loss state buffers); never a pickle
    MODEL_DIR/scorer.json         optional: the slide scorer fit for this model (SlideScorer.to_dict())
    MODEL_DIR/model.onnx          optional: the network up to the raw head outputs for the onnx engine; model.json
                                  then has "onnx" (file, sha256, outputs per group, exporter) and "engine"
                                  ({"default": "onnx"|"torch", "measured": {...}}); folders without them load too

    folder = ModelFolder.read("models/retinanet_r18")    # checks the files and the format version, parses once
    folder.info.classes, folder.identity(), folder.scorer()

*Identity*: SHA-256 over ``IDENTITY_FILES`` (names, sizes and bytes): what fixes a model's detections. The
scorer is not part of it: a refit changes the calls, not the detections, and ``--resume`` re-applies it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from cytolt.aggregate import SlideScorer

__all__ = ["MODEL_FORMAT", "ModelFolder", "ModelInfo", "folder_identity"]

# 1: model.json with classes, colors, mpp, train_instances_per_class (earlier: class_counts) and source.
MODEL_FORMAT = 1
_HASH_CHUNK = 1 << 20


def folder_identity(folder: Path, names: Sequence[str], *, what: str) -> str:
    """``"sha256:<hex>"`` over each file's name, size and bytes, in ``names`` order (a model folder's identity;
    the classifier folder's too). Raises FileNotFoundError naming the folder as a ``what`` when a file is missing."""
    digest = hashlib.sha256()
    for name in names:
        try:
            with open(folder / name, "rb") as fh:
                # name and length first, so no two different folders hash the same bytes
                digest.update(f"{name}:{os.fstat(fh.fileno()).st_size}\0".encode())
                while chunk := fh.read(_HASH_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            raise FileNotFoundError(f"{folder} is not a {what}: {name} is missing") from None
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """What a model folder says about its model.

    Attributes:
        classes: class names in label order.
        colors: one (r, g, b) per class, or None.
        mpp: microns per pixel of the images the model was trained on (the tiles it should see), or None.
        train_instances: annotated instances per class in the training set, in label order, or None.
        path: the model folder (an empty path for a detector that has none).
    """

    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...] | None = None
    mpp: float | None = None
    train_instances: tuple[int, ...] | None = None
    path: Path = Path()


class ModelFolder:
    """An exported model folder: read with :meth:`read` (checked), written with :meth:`write`."""

    META: ClassVar[str] = "model.json"
    CONFIG: ClassVar[str] = "config.py"
    WEIGHTS: ClassVar[str] = "model.safetensors"
    SCORER: ClassVar[str] = "scorer.json"
    ONNX: ClassVar[str] = "model.onnx"
    ENGINES: ClassVar[tuple[str, ...]] = ("torch", "onnx")
    IDENTITY_FILES: ClassVar[tuple[str, ...]] = (META, CONFIG, WEIGHTS)

    def __init__(self, path: Path, info: ModelInfo, meta: Mapping[str, Any]) -> None:
        self.path = path
        self.info = info
        self.meta = dict(meta)

    def __repr__(self) -> str:
        return f"ModelFolder({str(self.path)!r}, classes={len(self.info.classes)}, mpp={self.info.mpp})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def weights_path(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def scorer_path(self) -> Path:
        return self.path / self.SCORER

    @property
    def onnx_path(self) -> Path:
        return self.path / self.ONNX

    @property
    def onnx(self) -> dict[str, Any] | None:
        """model.json's ``onnx`` entry when the export wrote one with its file present, else None."""
        entry = self.meta.get("onnx")
        if not isinstance(entry, dict) or "sha256" not in entry or not self.onnx_path.is_file():
            return None
        return entry

    @property
    def default_engine(self) -> str:
        """The engine model.json recorded as the faster at export (``"torch"`` for older folders or no onnx)."""
        engine = self.meta.get("engine")
        choice = engine.get("default") if isinstance(engine, dict) else None
        return "onnx" if choice == "onnx" and self.onnx is not None else "torch"

    # ----------------------------------------------------------------- reading
    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ModelFolder:
        """Check and parse a model folder.

        Raises:
            FileNotFoundError: the folder or one of its files is missing (named).
            ValueError: ``model.json`` is not valid, or was written by a newer format than this cytolt reads.
        """
        folder = Path(path)
        for name in cls.IDENTITY_FILES:
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"{folder} is not a cytolt model folder: {name} is missing (see `cytolt export-model`)"
                )
        meta_path = folder / cls.META
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise TypeError(f"expected a JSON object, got {type(meta).__name__}")
            fmt = int(meta.get("format", MODEL_FORMAT))
            classes = tuple(str(c) for c in meta["classes"])
            colors = tuple(tuple(int(v) for v in c) for c in meta["colors"]) if meta.get("colors") else None
            # "class_counts" is what format 1 called the training instances per class before this name
            counts_field = meta.get("train_instances_per_class", meta.get("class_counts"))
            counts = tuple(int(n) for n in counts_field) if counts_field else None
            mpp = None if meta.get("mpp") is None else float(meta["mpp"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{meta_path}: not a valid model description ({exc})") from exc
        if fmt > MODEL_FORMAT:
            raise ValueError(
                f"{meta_path}: model format {fmt} is newer than this cytolt reads ({MODEL_FORMAT}); upgrade cytolt"
            )
        if not classes:
            raise ValueError(f"{meta_path}: the model has no classes")
        if colors is not None and len(colors) != len(classes):
            raise ValueError(f"{meta_path}: {len(colors)} colours for {len(classes)} classes")
        if counts is not None and len(counts) != len(classes):
            raise ValueError(
                f"{meta_path}: {len(counts)} training instance counts for {len(classes)} classes"
            )
        info = ModelInfo(classes=classes, colors=colors, mpp=mpp, train_instances=counts, path=folder)  # type: ignore[arg-type]
        return cls(folder, info, meta)

    def identity(self) -> str:
        """``"sha256:<hex>"`` over the names, sizes and bytes of ``IDENTITY_FILES`` (weights included)."""
        return self._identity

    @cached_property
    def _identity(self) -> str:
        return folder_identity(self.path, self.IDENTITY_FILES, what="cytolt model folder")

    def scorer(self) -> SlideScorer | None:
        """The slide scorer fit for this model (``scorer.json``), None when there is none.

        Raises ValueError naming the file when it is not a valid scorer.
        """
        if not self.scorer_path.is_file():
            return None
        from cytolt.aggregate import SlideScorer

        try:
            data = json.loads(self.scorer_path.read_text())
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object, got {type(data).__name__}")
            return SlideScorer.from_dict(data)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.scorer_path}: not a valid slide scorer ({exc})") from exc

    # ----------------------------------------------------------------- writing
    def write_scorer(self, scorer: SlideScorer) -> Path:
        """Save ``scorer`` as this model's ``scorer.json`` atomically (a reader never sees half a file)."""
        tmp = self.scorer_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(scorer.to_dict(), indent=2) + "\n")
        tmp.replace(self.scorer_path)
        return self.scorer_path

    def update_meta(self, entries: Mapping[str, Any]) -> ModelFolder:
        """Add or replace ``model.json`` entries atomically and read the folder back (its identity changes)."""
        meta = {**self.meta, **entries}
        tmp = self.path / (self.META + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(self.path / self.META)
        return self.read(self.path)

    @classmethod
    def write(
        cls,
        path: str | os.PathLike[str],
        *,
        config: str,
        weights: Mapping[str, torch.Tensor],
        info: ModelInfo,
        extra: Mapping[str, Any] | None = None,
    ) -> ModelFolder:
        """Write a model folder and read it back.

        Args:
            path: the folder, created if missing (its files are replaced).
            config: the text of ``config.py``.
            weights: tensors saved with safetensors (contiguous, on the CPU).
            info: classes, colours, mpp and training instances per class (``info.path`` is ignored).
            extra: more ``model.json`` entries (e.g. ``source``, ``cytolt_version``).
        """
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / cls.CONFIG).write_text(config)
        save_file(dict(weights), str(out / cls.WEIGHTS), metadata={"format": str(MODEL_FORMAT)})
        meta: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "classes": list(info.classes),
            "colors": _lists(info.colors),
            "mpp": info.mpp,
            "train_instances_per_class": None if info.train_instances is None else list(info.train_instances),
        }
        meta.update(extra or {})
        (out / cls.META).write_text(json.dumps(meta, indent=2))
        return cls.read(out)


def _lists(colors: Sequence[Sequence[int]] | None) -> list[list[int]] | None:
    return None if colors is None else [list(map(int, c)) for c in colors]
