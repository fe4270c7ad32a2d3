"""``TrainProgressHook``: one tqdm bar for an iteration-based training run instead of mmengine's log lines.

``cytolt.mm.train.train(..., quiet=True)`` (what ``cytolt demo`` uses) sets ``log_level="WARNING"``, which
silences mmengine's config dump and per-50-iteration lines on the console, and adds this hook so that the run
still shows where it is: iterations done, rate, ETA and the last total loss. Metrics still reach
``work_dir/<timestamp>/vis_data/scalars.json`` through the visualiser.
"""

from __future__ import annotations

from typing import Any

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

__all__ = ["TrainProgressHook"]


@HOOKS.register_module()
class TrainProgressHook(Hook):
    """A tqdm bar over ``runner.max_iters`` training iterations (resumed runs start at their iteration)."""

    priority = "VERY_LOW"

    def __init__(self, desc: str = "training", loss_every: int = 10) -> None:
        self.desc = desc
        self.loss_every = max(1, int(loss_every))
        self._bar: Any = None

    def before_train(self, runner) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=runner.max_iters, initial=runner.iter, desc=self.desc, unit="it", dynamic_ncols=True
        )

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._bar is None:
            return
        self._bar.update(runner.iter + 1 - self._bar.n)
        if outputs and (runner.iter + 1) % self.loss_every == 0 and "loss" in outputs:
            loss = outputs["loss"]
            loss = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
            self._bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
