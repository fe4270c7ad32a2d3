"""Let mmengine resume the run's own checkpoints under torch >= 2.6, and nothing else.

torch >= 2.6 loads with ``weights_only=True`` by default. mmengine 0.10.7 never passes ``weights_only``, and the
checkpoints it writes hold ``HistoryBuffer`` objects and numpy arrays, so ``Runner.resume`` fails. The fix is scoped:
only while ``Runner.resume`` reads a file inside the runner's own ``work_dir`` (a file that run wrote) does
``torch.load`` default to ``weights_only=False``. Every other load — a checkpoint a user hands in, a model exported
for screening — keeps ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from mmengine.runner import Runner

log = logging.getLogger("cytolt")


@contextlib.contextmanager
def trusted_torch_load(path: Path) -> Iterator[None]:
    """Within the block, ``torch.load`` defaults to ``weights_only=False`` (callers may still pass it)."""
    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    log.info("cytolt: resuming trusted checkpoint %s from the run's own work_dir (weights_only=False)", path)
    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _patch_runner_resume() -> None:
    if getattr(Runner.resume, "_cytolt_scoped", False):
        return
    original = Runner.resume

    @functools.wraps(original)
    def resume(self, filename, *args, **kwargs):
        path = Path(filename)
        if _is_inside(path, Path(self.work_dir)):
            with trusted_torch_load(path):
                return original(self, filename, *args, **kwargs)
        return original(self, filename, *args, **kwargs)

    resume._cytolt_scoped = True  # type: ignore[attr-defined]
    Runner.resume = resume
    log.info("cytolt: mmengine Runner.resume may read its own work_dir checkpoints with weights_only=False")


_patch_runner_resume()
