"""ONNX Runtime session for an exported network: normalised image batch in, raw head outputs out (no framework).

glossary:
    model.onnx   the detector's network from the normalised, padded input to the dense head's raw outputs (per
                 level class logits, box deltas, ...), written by ``cytolt export-model``
                 (:mod:`cytolt.mm.onnx_export`); decoding and NMS stay in torch so results match the torch engine.
    input        (B, 3, H, W) float32, already normalised and padded the way the model's data preprocessor does.
    outputs      float32 arrays in the order the head's ``forward`` returns them, flattened group by group
                 (e.g. RetinaNet: 3 levels of (B, A*C, h, w) logits, then 3 levels of (B, A*4, h, w) deltas).

    session = OnnxSession("models/retinanet_r18/model.onnx", threads=2, sha256="...")
    outs = session.run(batch)                       # list[np.ndarray]
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OnnxSession", "file_sha256", "split_groups"]

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


class OnnxSession:
    """One ONNX Runtime CPU session over ``model.onnx``.

    Args:
        path: the ONNX file.
        threads: intra-op threads [default: ``torch.get_num_threads()``, so the settings that size torch (a Dask
            worker's share of the cores) size this engine too]. Inter-op parallelism stays off: the graph is a
            chain of convolutions and a second pool would only fight the first for the same cores.
        sha256: when given, the file must hash to it (the value ``model.json`` recorded at export), so a stale or
            foreign ``model.onnx`` is refused rather than run beside weights it does not match.

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: the file does not hash to ``sha256``, or onnxruntime cannot load it (both name the file).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, threads: int | None = None, sha256: str | None = None
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"{self.path} is missing (re-export the model with `cytolt export-model`)"
            )
        if sha256 is not None and (found := file_sha256(self.path)) != sha256:
            raise ValueError(
                f"{self.path} does not match its model folder (sha256 {found}, model.json says {sha256}); "
                "re-export the model with `cytolt export-model`"
            )
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        self.threads = int(threads)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"{self.path}: onnxruntime cannot load it ({exc})") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: expected one input (the image batch), found {len(inputs)}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self._session.get_outputs()]

    def __repr__(self) -> str:
        return f"OnnxSession({str(self.path)!r}, threads={self.threads}, outputs={len(self.output_names)})"

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, 3, H, W) normalised float32 (H, W as the model's padding makes them). Returns the raw outputs."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"batch must be (B, 3, H, W); got {tuple(batch.shape)}")
        return self._session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})


def split_groups(outputs: Sequence[Any], groups: Sequence[int]) -> list[list[Any]]:
    """Flat outputs -> one list per group (``groups`` levels each), the order the head's forward returned them."""
    if len(outputs) != sum(groups):
        raise ValueError(f"{len(outputs)} ONNX outputs for head groups {list(groups)}")
    out, start = [], 0
    for n in groups:
        out.append(list(outputs[start : start + n]))
        start += n
    return out
