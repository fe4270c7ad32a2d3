"""mmdet backends of :class:`cytolt.detect.Detector`: an exported model folder -> batched inference.

Two engines share the model's data preprocessor and its head's decoding and NMS, and differ in the network:
:class:`MMDetDetector` runs it in torch (engine ``torch``), :class:`OnnxDetector` runs ``model.onnx`` through
ONNX Runtime on the CPU (engine ``onnx``, see :mod:`cytolt.mm.onnx_export`).

On CUDA the torch engine runs with autocast (fp16) and channels-last. When mmcv was built without CUDA ops, mmcv's NMS is
swapped for torchvision's (same keep set; tested against each other on CPU), so a CPU-built mmcv still screens on
a GPU.
"""

from __future__ import annotations

import logging

import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from safetensors.torch import load_file
from torchvision.ops import nms as tv_nms

import cytolt.mm  # noqa: F401  (registers cytolt's losses so the model config builds)
from cytolt.detect.model_folder import ModelFolder
from cytolt.detect.onnx_engine import OnnxSession, split_groups
from cytolt.detect.types import Detections

log = logging.getLogger("cytolt")


def _mmcv_has_cuda_ops() -> bool:
    from mmcv.ops import get_compiling_cuda_version

    return get_compiling_cuda_version() not in ("not available", "")


def _torchvision_nms(boxes, scores, iou_threshold, offset=0, score_threshold=0, max_num=-1):
    """mmcv.ops.nms's signature and outputs ((K, 5) boxes+scores, (K,) indices) computed with torchvision."""
    if offset != 0:
        raise ValueError("torchvision NMS has no pixel offset; use offset=0 (mmdet 3's default)")
    keep_mask = scores > score_threshold
    idx = keep_mask.nonzero().squeeze(1)
    keep = idx[tv_nms(boxes[idx].float(), scores[idx].float(), float(iou_threshold))]
    if max_num > 0:
        keep = keep[:max_num]
    return torch.cat([boxes[keep], scores[keep, None]], dim=1), keep


def use_torchvision_nms() -> None:
    """Route mmcv's ``nms`` (used by ``batched_nms``) to torchvision; for CUDA without mmcv CUDA ops."""
    import mmcv.ops.nms as mmcv_nms

    if mmcv_nms.nms is not _torchvision_nms:
        mmcv_nms.nms = _torchvision_nms
        log.info("cytolt: mmcv has no CUDA ops; NMS runs through torchvision")


class MMDetDetector:
    """An exported mmdet model on one device; ``predict`` takes RGB uint8 batches (B, 3, H, W)."""

    engine = "torch"

    def __init__(self, folder: ModelFolder, *, device: torch.device, score_thr: float = 0.05) -> None:
        register_all_modules(init_default_scope=True)
        self.info = folder.info
        self.device = device
        cfg = Config.fromfile(str(folder.config_path))
        cfg.model.test_cfg.score_thr = score_thr
        self.model = MODELS.build(cfg.model)
        state = load_file(str(folder.weights_path), device="cpu")
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{folder.weights_path} does not fit {folder.config_path}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        self.model.to(device).eval()
        # mmdet trains on BGR images (cv2) and its preprocessor flips to RGB when bgr_to_rgb is set.
        self._to_bgr = bool(cfg.model.data_preprocessor.get("bgr_to_rgb", False))
        self._amp = device.type == "cuda"
        if self._amp:
            self.model.to(memory_format=torch.channels_last)
            if not _mmcv_has_cuda_ops():
                use_torchvision_nms()

    def preprocess(self, images: torch.Tensor) -> dict:
        """images: (B, 3, H, W) RGB -> the model's data preprocessor output: ``inputs`` (B, 3, H', W') normalised
        and padded, ``data_samples`` with each image's shape (boxes are clipped to it)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W); got {tuple(images.shape)}")
        batch = images.to(self.device, non_blocking=True)
        if self._to_bgr:
            batch = batch.flip(1)
        h, w = batch.shape[-2:]
        samples = [
            DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
            for _ in range(batch.shape[0])
        ]
        return self.model.data_preprocessor({"inputs": list(batch), "data_samples": samples}, False)

    def _instances(self, data: dict) -> list:
        """Preprocessed batch -> one mmdet InstanceData (bboxes, scores, labels) per image."""
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self._amp):
            outputs = self.model.predict(data["inputs"], data["data_samples"])
        return [out.pred_instances for out in outputs]

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> list[Detections]:
        """images: (B, 3, H, W) RGB, uint8 or float in [0, 255]. Returns one Detections per image, boxes xyxy px."""
        return [
            Detections(boxes=out.bboxes.float(), scores=out.scores.float(), labels=out.labels.long())
            for out in self._instances(self.preprocess(images))
        ]


class OnnxDetector(MMDetDetector):
    """The onnx engine: ``model.onnx`` through ONNX Runtime for the network, this model's mmdet head for decoding.

    CPU only. ``threads`` sizes ONNX Runtime [default: ``torch.get_num_threads()``].

    Raises:
        ValueError: the device is not the CPU, or the folder has no usable ONNX export (names the folder and, when
            the export failed, why).
    """

    engine = "onnx"

    def __init__(
        self,
        folder: ModelFolder,
        *,
        device: torch.device,
        score_thr: float = 0.05,
        threads: int | None = None,
    ) -> None:
        if device.type != "cpu":
            raise ValueError(
                f"the onnx engine runs on the CPU only (got device {device}); use --engine torch on a GPU"
            )
        entry = folder.onnx
        if entry is None:
            recorded = folder.meta.get("onnx")
            why = recorded.get("error") if isinstance(recorded, dict) else None
            raise ValueError(
                f"{folder.path} has no ONNX export ({why or folder.ONNX + ' is missing'}); "
                "re-export it with `cytolt export-model`, or use --engine torch"
            )
        # The torch model is still built and loaded: its preprocessor and head decode exactly as the torch engine.
        super().__init__(folder, device=device, score_thr=score_thr)
        self.groups = [int(n) for n in entry["outputs"]]
        self.session = OnnxSession(folder.onnx_path, threads=threads, sha256=entry["sha256"])

    def _instances(self, data: dict) -> list:
        raw = [torch.from_numpy(a) for a in self.session.run(data["inputs"].numpy())]
        metas = [sample.metainfo for sample in data["data_samples"]]
        return self.model.bbox_head.predict_by_feat(
            *split_groups(raw, self.groups), batch_img_metas=metas, rescale=True
        )
