"""Federated loss (Zhou et al., "Probabilistic two-stage detection", arXiv 2103.07461, the LVIS loss of CenterNet2
and Detic).

Binary cross-entropy restricted, per batch, to a subset of categories: every category with a positive in the
batch plus negatives sampled without replacement, with probability proportional to ``image_count^0.5``, until
the subset holds 50 categories. Categories outside the subset get no loss at all, which mimics LVIS's federated
annotation (an image is only checked for some categories).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cytolt.losses._common import (
    check_logits,
    element_weight,
    expand_labels,
    reduce_loss,
    resolve_reduction,
    weight_reduce,
)

# 50 categories per batch, sampling weight image_count^0.5: the settings of CenterNet2's / Detic's LVIS configs
# (Zhou et al. 2021, and METHODS.md).
NUM_SAMPLE_CLASSES = 50
FREQ_POWER = 0.5


def federated_class_mask(
    targets: Tensor,
    sampling_weight: Tensor,
    *,
    num_sample_classes: int = NUM_SAMPLE_CLASSES,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Which categories take part in this batch's loss: a bool ``(C,)``.

    All categories with a positive in ``targets (N, C)``, plus categories drawn without replacement with
    probability proportional to ``sampling_weight (C,)`` (zero: never drawn) until ``num_sample_classes`` are
    chosen (more when the batch itself has more positive categories). The draw is a Gumbel top-k (equivalent
    to successive sampling without replacement) of fixed size, so, unlike ``torch.multinomial`` asked for
    ``50 - #positives`` samples, it needs no count from the host. ``generator`` must live on the targets'
    device.
    """
    num_classes = targets.size(1)
    present = targets.sum(0) > 0
    if num_sample_classes >= num_classes:
        return torch.ones_like(present)
    u = torch.rand(num_classes, generator=generator, device=targets.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(u.clamp(min=torch.finfo(u.dtype).tiny)))
    drawable = sampling_weight > 0
    keys = torch.where(drawable, sampling_weight.float().clamp(min=1e-30).log() + gumbel, float("-inf"))
    # Present categories rank first, so the top-k fills the remaining places with sampled negatives.
    keys = torch.where(present, float("inf"), keys)
    chosen = torch.zeros_like(present).scatter_(0, keys.topk(num_sample_classes).indices, True)
    return present | (chosen & drawable)


def draw_seed(seed: int, rank: int, step: int) -> int:
    """The generator seed of one draw: a hash of (seed, process rank, draw number), so that every GPU and every
    step draws its own negatives (Zhou et al.'s federated loss samples per GPU batch) and a run is reproducible."""
    digest = hashlib.sha256(f"{seed}:{rank}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def federated_loss(logits: Tensor, targets: Tensor, class_mask: Tensor, *, reduction: str = "mean") -> Tensor:
    """BCE on the columns in ``class_mask (C,)`` only (others contribute 0 and no gradient).

    ``logits``, ``targets``: ``(N, C)``; ``reduction`` ``"none"`` gives ``(N, C)``; ``"mean"`` divides by all
    ``N * C`` elements.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return reduce_loss(loss * class_mask.to(logits.dtype), reduction)


class FederatedLoss(nn.Module):
    """Federated loss with mmdet's one-stage call convention.

    ``image_count (C,)``: number of training images containing each category (LVIS's ``image_count``); the
    buffer ``sampling_weight = image_count^power`` is saved in ``state_dict`` and never updated. Each training
    draw reseeds a ``torch.Generator`` on the logits' device with :func:`draw_seed` of ``seed``, this process's
    rank under ``torch.distributed`` (0 without it) and the draw's number in this process (``draws``), so GPUs
    draw different negatives and a run repeats exactly. ``draws`` is not part of ``state_dict``: a resumed run
    starts counting at 0 again. In eval mode every category takes part (a deterministic loss).
    """

    use_sigmoid = True

    def __init__(
        self,
        image_count: Sequence[float] | Tensor,
        *,
        num_sample_classes: int = NUM_SAMPLE_CLASSES,
        power: float = FREQ_POWER,
        seed: int = 0,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        counts = torch.as_tensor(image_count, dtype=torch.float32).flatten()
        if counts.numel() == 0 or bool((counts < 0).any()):
            raise ValueError("FederatedLoss: image_count must be a non-empty sequence of non-negative counts")
        if num_sample_classes < 1:
            raise ValueError(f"FederatedLoss: num_sample_classes must be >= 1; got {num_sample_classes}")
        self.num_sample_classes = num_sample_classes
        self.power = power
        self.seed = seed
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("sampling_weight", counts**power)
        self._generator: torch.Generator | None = None
        self.draws = 0

    @property
    def num_classes(self) -> int:
        return self.sampling_weight.numel()

    def _generator_on(self, device: torch.device) -> torch.Generator | None:
        if device.type == "meta":  # shape-only tensors (used to prove forward never syncs) take no generator
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        self._generator.manual_seed(draw_seed(self.seed, _rank(), self.draws))
        self.draws += 1
        return self._generator

    def class_mask(self, targets: Tensor) -> Tensor:
        """The bool ``(C,)`` of categories that take part in the loss for ``targets (N, C)``."""
        if not self.training:
            return torch.ones(self.num_classes, dtype=torch.bool, device=targets.device)
        return federated_class_mask(
            targets,
            self.sampling_weight,
            num_sample_classes=self.num_sample_classes,
            generator=self._generator_on(targets.device),
        )

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        check_logits(logits, type(self).__name__, self.num_classes)
        reduction = resolve_reduction(self.reduction, reduction_override)
        targets = expand_labels(labels, self.num_classes, logits.dtype)
        loss = federated_loss(logits, targets, self.class_mask(targets), reduction="none")
        return self.loss_weight * weight_reduce(
            loss, element_weight(weight, loss.shape), reduction, avg_factor
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, num_sample_classes={self.num_sample_classes}, power={self.power}, "
            f"seed={self.seed}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"
        )
