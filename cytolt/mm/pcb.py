"""mmdet glue for PCB (``cytolt.losses.pcb``, He et al., CVPR 2022): the loss in mmdet's ``MODELS`` and the hook
that switches its regulariser on, in ``HOOKS``.

- ``PCBLoss``: ``loss_cls`` of a softmax head, two-stage ``BBoxHead`` (``C + 1`` outputs, the authors' setting)
  or a softmax dense head (``RetinaHead`` with ``use_sigmoid=False``). Scores stay mmdet's softmax.
- ``PCBHook``: from ``start_epoch`` (mmengine's 0-based ``runner.epoch``; the authors' 17 of 24), ``start_iter``
  or ``start_fraction`` of the schedule on, every ``PCBLoss`` of the model has ``set_enabled(True)``; before it,
  ``False``. Checked before every training iteration, so a resumed run is in the right state.

Config::

    model = dict(roi_head=dict(bbox_head=dict(loss_cls=dict(type='PCBLoss', num_classes=C, alpha=0.4))))
    custom_hooks = [dict(type='PCBHook', start_epoch=17)]
"""

from __future__ import annotations

from typing import Any

from mmdet.registry import HOOKS, MODELS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from cytolt.losses import pcb

__all__ = ["PCBHook", "PCBLoss"]


@MODELS.register_module()
class PCBLoss(pcb.PCBLoss):
    """``cytolt.losses.pcb.PCBLoss`` for mmdet configs (a softmax loss: ``use_sigmoid=False``)."""

    def __init__(self, *, use_sigmoid: bool = False, **kwargs: Any) -> None:
        if use_sigmoid:
            raise ValueError("PCBLoss is a softmax loss (C + 1 outputs): use_sigmoid must be False")
        super().__init__(**kwargs)


def pcb_losses(model: Any) -> list[pcb.PCBLoss]:
    """Every PCB loss of a model (one per box stage of a cascade), unwrapping DDP."""
    model = model.module if is_model_wrapper(model) else model
    return [m for m in model.modules() if isinstance(m, pcb.PCBLoss)]


@HOOKS.register_module()
class PCBHook(Hook):
    """Switch PCB's fight-back regulariser on from a point of the schedule (exactly one of the three).

    Args:
        start_epoch: first epoch (0-based, mmengine's ``runner.epoch``) with the regulariser.
        start_iter: first iteration (0-based ``runner.iter``) with it.
        start_fraction: first iteration ``>= start_fraction * max_iters``: follows a schedule whose length is
            overridden (the TCT benchmark's ``--iters``).
    """

    priority = "NORMAL"

    def __init__(
        self,
        *,
        start_epoch: int | None = None,
        start_iter: int | None = None,
        start_fraction: float | None = None,
    ) -> None:
        given = [v for v in (start_epoch, start_iter, start_fraction) if v is not None]
        if len(given) != 1:
            raise ValueError("PCBHook: give exactly one of start_epoch, start_iter and start_fraction")
        if (start_epoch is not None and start_epoch < 0) or (start_iter is not None and start_iter < 0):
            raise ValueError("PCBHook: start_epoch and start_iter must be >= 0")
        if start_fraction is not None and not 0.0 <= start_fraction <= 1.0:
            raise ValueError(f"PCBHook: start_fraction must be in [0, 1]; got {start_fraction}")
        self.start_epoch = start_epoch
        self.start_iter = start_iter
        self.start_fraction = start_fraction
        self._state: bool | None = None

    def should_enable(self, runner: Any) -> bool:
        """Whether the regulariser is on at the runner's current epoch / iteration."""
        if self.start_epoch is not None:
            return runner.epoch >= self.start_epoch
        if self.start_iter is not None:
            return runner.iter >= self.start_iter
        return runner.iter >= self.start_fraction * runner.max_iters

    def before_train(self, runner: Any) -> None:
        if not pcb_losses(runner.model):
            raise ValueError("PCBHook: the model has no PCBLoss (set loss_cls=dict(type='PCBLoss', ...))")
        self._state = None  # a resumed run re-applies the state at its first iteration

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        state = self.should_enable(runner)
        if state == self._state:
            return
        for loss in pcb_losses(runner.model):
            loss.set_enabled(state)
        self._state = state
        runner.logger.info(
            f"PCBHook: fight-back regulariser {'on' if state else 'off'} at epoch {runner.epoch}, "
            f"iteration {runner.iter}"
        )
