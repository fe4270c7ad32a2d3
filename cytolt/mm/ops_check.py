"""mmcv's compiled ops as ``cytolt doctor`` reports them: whether they load, what built them, which device runs them.

Lives here because ``cytolt.mm`` is the only package that imports mmcv; importing this module fails (ImportError,
OSError) when the ops are missing or were built against another torch, which is what the doctor reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import mmcv
import torch

# nms: the op every mmdet detector needs; importing it loads the compiled extension (mmcv._ext).
from mmcv.ops import get_compiler_version, get_compiling_cuda_version, nms  # noqa: F401

__all__ = ["MmcvOps", "mmcv_ops"]


@dataclass(frozen=True)
class MmcvOps:
    """version: mmcv's; compiler: what built the ops (e.g. 'GCC 12.2'); cuda: the CUDA version they were compiled
    with ('not available' for a CPU build); device: 'CUDA' when CUDA ops and a GPU are both present, else 'CPU'."""

    version: str
    compiler: str
    cuda: str
    device: str


def mmcv_ops() -> MmcvOps:
    """Describe the loaded mmcv ops (see ``MmcvOps``)."""
    cuda = get_compiling_cuda_version()
    device = "CUDA" if cuda not in ("not available", "") and torch.cuda.is_available() else "CPU"
    return MmcvOps(str(mmcv.__version__), str(get_compiler_version()), str(cuda), device)
