"""A Cascade R-CNN RoI head whose stages are built from one box-head config (Cai and Vasconcelos, "Cascade R-CNN:
Delving into High Quality Object Detection", CVPR 2018).

mmdet's ``CascadeRoIHead`` takes one ``bbox_head`` config per stage, and mmengine configs cannot change one key of
every element of an inherited list, so a config that only switches the classification loss would restate all
three heads. Here the stages share ``bbox_head`` and differ where Cascade R-CNN's stages differ: the bbox coder's
``target_stds`` (one per stage, tighter as the proposals improve); the IoU of each stage's assigner stays in
``train_cfg.rcnn`` as in mmdet. Each stage still builds its own modules, so a stateful loss (EQLv2, Seesaw) keeps
separate statistics per stage.

Registered in mmdet's ``MODELS`` on import: ``SharedConfigCascadeRoIHead``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.registry import MODELS

__all__ = ["SharedConfigCascadeRoIHead", "stage_bbox_heads"]


def stage_bbox_heads(
    bbox_head: Mapping[str, Any], stage_target_stds: Sequence[Sequence[float]]
) -> list[dict]:
    """One ``bbox_head`` config per stage: a copy of ``bbox_head`` with ``bbox_coder.target_stds`` of that stage."""
    if "bbox_coder" not in bbox_head:
        raise ValueError(
            "SharedConfigCascadeRoIHead: bbox_head needs a bbox_coder whose target_stds vary by stage"
        )
    heads = []
    for stds in stage_target_stds:
        if len(stds) != 4:
            raise ValueError(f"SharedConfigCascadeRoIHead: target_stds must have 4 values; got {list(stds)}")
        head = copy.deepcopy(dict(bbox_head))
        head["bbox_coder"] = dict(head["bbox_coder"], target_stds=[float(s) for s in stds])
        heads.append(head)
    return heads


@MODELS.register_module()
class SharedConfigCascadeRoIHead(CascadeRoIHead):
    """mmdet's ``CascadeRoIHead`` with one ``bbox_head`` config for every stage and ``stage_target_stds`` per stage.

    Args:
        num_stages: number of stages (3 in the paper).
        bbox_head: the box head of every stage (``Shared2FCBBoxHead`` config, with its ``loss_cls``).
        stage_target_stds: ``num_stages`` lists of 4, the bbox coder's ``target_stds`` of each stage.
        **kwargs: ``CascadeRoIHead``'s other arguments (``stage_loss_weights``, extractors, mask head, ...).
    """

    def __init__(
        self,
        *,
        num_stages: int,
        bbox_head: Mapping[str, Any],
        stage_target_stds: Sequence[Sequence[float]],
        **kwargs: Any,
    ) -> None:
        if len(stage_target_stds) != num_stages:
            raise ValueError(
                f"SharedConfigCascadeRoIHead: {len(stage_target_stds)} stage_target_stds for {num_stages} stages"
            )
        super().__init__(
            num_stages=num_stages, bbox_head=stage_bbox_heads(bbox_head, stage_target_stds), **kwargs
        )
