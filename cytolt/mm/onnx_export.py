"""Export a model folder's network to ONNX (``model.onnx``) for the onnx engine, checked and timed against torch.

What goes to ONNX is the network only: the normalised, padded image batch -> the dense head's raw outputs (per
level class logits and box deltas / distances / centerness), exactly what ``bbox_head.forward`` returns. Anchor
or prior generation, box decoding, the score threshold and NMS stay in mmdet/torchvision
(``bbox_head.predict_by_feat``), so both engines share every step after the network.

Exported with torch's TorchScript exporter (``torch.onnx.export(dynamo=False)``, opset 17), falling back to the
torch.export-based one (``dynamo=True``) where the first fails or is gone: on the demo's RetinaNet R18 both gave
outputs within 2.5e-5 of torch and ran equally fast in ONNX Runtime, but the dynamo exporter took 60-75 s against
2.7 s (2 shared cores, 2026-12-02). Batch, height and width are dynamic; the weights are inside the one file.

Supported: single-stage dense detectors whose head's ``predict_by_feat`` takes its ``forward`` outputs in order
(RetinaNet and its cytolt variants, ATSS, FCOS, YOLOF). Two-stage models (Cascade R-CNN: RoI pooling between the
stages) and heads with ops the exporter cannot write (RepPoints' deformable convolution, an mmcv op) raise
:class:`OnnxExportError`; their folders keep the torch engine.

An export is kept only when ONNX Runtime's detections on synthetic patches equal torch's (same labels, boxes
within 1e-3 px, scores within 1e-4); then both engines are timed on the same patches, interleaved, and the
faster becomes the folder's default engine (``model.json["engine"]``).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cytolt.detect.model_folder import ModelFolder
from cytolt.detect.onnx_engine import file_sha256
from cytolt.detect.types import Detections

__all__ = [
    "BOX_TOL_PX",
    "SCORE_TOL",
    "OnnxExportError",
    "coco_detections",
    "compare_detections",
    "export_onnx",
    "sample_tiles",
]

log = logging.getLogger("cytolt")

BOX_TOL_PX = 1e-3
SCORE_TOL = 1e-4
OPSET = 17


class OnnxExportError(ValueError):
    """This model cannot run on the onnx engine (the reason says why); its folder keeps the torch engine."""


class RawHead(nn.Module):
    """A single-stage detector cut after its dense head: ``forward(x)`` returns the head's outputs flattened.

    x: (B, 3, H, W) normalised and padded. Returns, group after group, one tensor per pyramid level.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        groups = self.detector.bbox_head(self.detector.extract_feat(x))
        return tuple(t for group in groups for t in group)


def head_groups(detector: nn.Module, x: torch.Tensor) -> list[int]:
    """Levels per output group of the head's ``forward`` (RetinaNet: [3, 3]); raises OnnxExportError if unfit."""
    from mmdet.models.detectors import SingleStageDetector

    name = type(detector).__name__
    if not isinstance(detector, SingleStageDetector) or not hasattr(detector, "bbox_head"):
        raise OnnxExportError(
            f"{name} is not a single-stage dense detector (two-stage heads pool regions between the stages); "
            "only the torch engine runs it"
        )
    with torch.inference_mode():
        groups = detector.bbox_head(detector.extract_feat(x))
    if not isinstance(groups, tuple | list) or not all(
        isinstance(g, list | tuple) and all(isinstance(t, torch.Tensor) for t in g) for g in groups
    ):
        raise OnnxExportError(
            f"{type(detector.bbox_head).__name__}.forward does not return groups of per-level tensors; "
            "only the torch engine runs it"
        )
    return [len(g) for g in groups]


def sample_tiles(n: int = 4, size: int = 512, *, mpp: float = 0.5, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) uint8 RGB synthetic patches (:func:`cytolt.synth.render_patch`), abnormal cells in each."""
    from cytolt.synth import render_patch

    labels = ("intermediate", "superficial", "hsil", "lsil", "ascus", "parabasal")
    images = [render_patch(labels, size=size, mpp=mpp, seed=(seed, i))[0] for i in range(n)]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def compare_detections(a: Detections, b: Detections) -> str | None:
    """None when ``b`` holds the same detections as ``a`` (labels equal, boxes within BOX_TOL_PX, scores within
    SCORE_TOL), matched one to one regardless of order (near-equal scores may sort either way); else why not."""
    if len(a) != len(b):
        return f"{len(a)} detections against {len(b)}"
    if not len(a):
        return None
    box_gap = (a.boxes[:, None, :] - b.boxes[None, :, :]).abs().amax(-1)  # (N, N) px
    box_gap[a.labels[:, None] != b.labels[None, :]] = float("inf")
    match = box_gap.argmin(1)
    if len(set(match.tolist())) != len(a):
        return "detections do not pair one to one"
    worst_box = float(box_gap[torch.arange(len(a)), match].max())
    worst_score = float((a.scores - b.scores[match]).abs().max())
    if worst_box > BOX_TOL_PX or worst_score > SCORE_TOL:
        return f"largest box difference {worst_box:.2e} px, score difference {worst_score:.2e}"
    return None


def coco_detections(detector: Any, ann_file: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A detector's COCO results list (image_id, category_id, bbox xywh, score) on every image of ``ann_file``
    (files relative to its folder; the detector's classes matched to the categories by name), one image per call:
    what the engine parity checks score with :func:`cytolt.evaluate.coco.coco_eval`."""
    from PIL import Image

    ann = Path(ann_file)
    gt = json.loads(ann.read_text())
    by_name = {c["name"]: c["id"] for c in gt["categories"]}
    category = [by_name[name] for name in detector.info.classes]
    results = []
    for image in gt["images"]:
        rgb = np.array(Image.open(ann.parent / image["file_name"]).convert("RGB"))  # writable: from_numpy
        (det,) = detector.predict(torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous())
        for (x0, y0, x1, y1), score, label in zip(
            det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(), strict=True
        ):
            box = [x0, y0, x1 - x0, y1 - y0]
            results.append(dict(image_id=image["id"], category_id=category[label], bbox=box, score=score))
    return results


def _time_predict(detector: Any, tiles: torch.Tensor) -> float:
    t0 = time.perf_counter()
    detector.predict(tiles)
    return time.perf_counter() - t0


def measure_engines(detectors: dict[str, Any], tiles: torch.Tensor, rounds: int = 3) -> dict[str, float]:
    """Median ms per tile of each engine's ``predict`` on ``tiles``: one untimed warm-up, then rounds interleaved."""
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for det in detectors.values():
        det.predict(tiles[:1])  # warm-up: allocator, ORT's first-run shape inference
    for k in range(rounds):
        for name in list(detectors) if k % 2 == 0 else list(detectors)[::-1]:
            times[name].append(_time_predict(detectors[name], tiles))
    return {name: round(statistics.median(ts) * 1000 / len(tiles), 2) for name, ts in times.items()}


def _export_graph(net: nn.Module, example: torch.Tensor, path: Any, n_outputs: int) -> str:
    """Write the ONNX graph with the TorchScript exporter, else the dynamo one; returns which one wrote it."""
    import warnings

    names = {"input_names": ["input"], "output_names": [f"out{i}" for i in range(n_outputs)]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice: the fallback below is the successor
            torch.onnx.export(
                net,
                (example,),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}},
                **names,
            )
        return f"torch.onnx.export(dynamo=False, opset {OPSET})"
    except Exception as exc:
        log.info("cytolt: the TorchScript ONNX exporter failed (%s); trying the dynamo exporter", exc)
    dim = torch.export.Dim.DYNAMIC
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes={"x": {0: dim, 2: dim, 3: dim}},
        external_data=False,  # one file: its sha256 in model.json covers every weight
        optimize=True,
        verbose=False,
        **names,
    )
    return "torch.onnx.export(dynamo=True)"


def export_onnx(
    folder: ModelFolder, *, tiles: torch.Tensor | None = None, measure: bool = True
) -> ModelFolder:
    """Write ``folder/model.onnx`` and record it (and the faster engine) in model.json; returns the re-read folder.

    Args:
        folder: a model folder with config and weights (``cytolt export-model``).
        tiles: (B, 3, H, W) uint8 RGB patches to check and time on [default: 4 synthetic 512-px patches at the
            model's mpp]; B >= 2 (the exporter fixes a dimension traced at size 1).
        measure: time both engines and make the faster the default; False records ``torch`` as the default.

    Raises:
        OnnxExportError: the model cannot be exported, or ONNX Runtime's detections differ from torch's; nothing
            is left in the folder but model.json's ``onnx.error``, and the torch engine stays the default.
    """
    from cytolt.mm.detector import MMDetDetector, OnnxDetector

    if tiles is None:
        tiles = sample_tiles(mpp=folder.info.mpp or 0.5)
    if tiles.shape[0] < 2:
        raise ValueError(f"export_onnx needs at least 2 sample tiles, got {tuple(tiles.shape)}")
    cpu = torch.device("cpu")
    reference = MMDetDetector(folder, device=cpu)
    path = folder.onnx_path
    try:
        data = reference.preprocess(tiles)
        groups = head_groups(reference.model, data["inputs"])
        t0 = time.perf_counter()
        try:
            exporter = _export_graph(RawHead(reference.model).eval(), data["inputs"], path, sum(groups))
        except (
            Exception
        ) as exc:  # torch.export raises many kinds: an unsupported op, data-dependent control flow
            raise OnnxExportError(
                f"{type(reference.model.bbox_head).__name__}: both ONNX exporters failed "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); only the torch engine runs it"
            ) from exc
        export_s = time.perf_counter() - t0
        entry = {
            "file": folder.ONNX,
            "sha256": file_sha256(path),
            "outputs": groups,
            "exporter": exporter,
            "torch": torch.__version__,
        }
        folder = folder.update_meta({"onnx": entry, "engine": {"default": "torch"}})
        try:
            candidate = OnnxDetector(folder, device=cpu)
        except ValueError as exc:  # e.g. an mmcv custom op the exporter wrote but ONNX Runtime does not have
            raise OnnxExportError(f"ONNX Runtime cannot run the export: {exc}") from exc
        for i, (want, got) in enumerate(zip(reference.predict(tiles), candidate.predict(tiles), strict=True)):
            if (why := compare_detections(want, got)) is not None:
                raise OnnxExportError(
                    f"ONNX Runtime's detections differ from torch's on sample tile {i}: {why}"
                )
    except OnnxExportError as exc:
        path.unlink(missing_ok=True)
        folder.update_meta({"onnx": {"error": str(exc)}, "engine": {"default": "torch"}})
        raise
    engine: dict[str, Any] = {"default": "torch"}
    if measure:
        ms = measure_engines({"torch": reference, "onnx": candidate}, tiles)
        engine = {
            "default": min(ms, key=ms.__getitem__),
            "measured": {
                "ms_per_tile": ms,
                "tiles": list(tiles.shape),
                "threads": torch.get_num_threads(),
                "date": time.strftime("%Y-%m-%d", time.gmtime()),
            },
        }
    log.info("onnx export %.1f s -> %s; engine %s", export_s, path, engine)
    return folder.update_meta({"engine": engine})


def onnx_status(folder: ModelFolder) -> str:
    """One line for the CLI: the engine a folder defaults to and why."""
    entry = folder.meta.get("onnx")
    if isinstance(entry, dict) and entry.get("error"):
        return f"engine: torch (no ONNX export: {entry['error']})"
    measured = (folder.meta.get("engine") or {}).get("measured") or {}
    ms = measured.get("ms_per_tile")
    timing = "" if not ms else " (" + ", ".join(f"{k} {v:.0f} ms/tile" for k, v in ms.items()) + ")"
    return f"engine: {folder.default_engine}{timing}"
