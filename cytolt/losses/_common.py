"""Helpers shared by the loss modules: reductions, label expansion, DDP reduction of statistics.

Shapes: ``logits (N, C)``; ``labels (N,)`` int64 in ``0..C`` where ``C`` is background (mmdet's one-stage
convention); ``targets (N, C)`` float one-hot, background rows all zero; ``weight`` ``(N,)`` or ``(N, C)``
(or ``(N * C,)``, flattened per class, as mmdet's FocalLoss accepts).

Nothing here reads a tensor value on the host: every helper stays asynchronous on a GPU.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")

# mmdet divides by ``avg_factor + eps`` with this eps (mmdet.models.losses.utils.weight_reduce_loss);
# keeping it makes cytolt's losses match mmdet's numerically under the same avg_factor.
AVG_FACTOR_EPS = torch.finfo(torch.float32).eps


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` or raise a ValueError that lists the choices."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduction!r}")
    return reduction


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """Reduce an element-wise loss: ``"none"`` keeps its shape, ``"mean"`` averages, ``"sum"`` adds."""
    check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def weight_reduce(
    loss: Tensor,
    weight: Tensor | None,
    reduction: str,
    avg_factor: float | Tensor | None,
) -> Tensor:
    """Weight, then reduce, as mmdet's ``weight_reduce_loss`` does.

    ``weight`` must already broadcast to ``loss``. With ``avg_factor``, ``"mean"`` is ``sum / (avg_factor + eps)``
    and ``"sum"`` is refused (mmdet refuses it too: the two disagree on what the total is).
    """
    check_reduction(reduction)
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return reduce_loss(loss, reduction)
    if reduction == "mean":
        return loss.sum() / (avg_factor + AVG_FACTOR_EPS)
    if reduction == "sum":
        raise ValueError("avg_factor can not be used with reduction='sum' (use 'mean' or 'none')")
    return loss


def resolve_reduction(default: str, override: str | None) -> str:
    """mmdet's ``reduction_override``: ``None`` keeps the module's default."""
    return check_reduction(override if override is not None else default)


def expand_labels(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``labels (N,)`` in ``0..C`` (``C`` = background) -> one-hot ``(N, C)``, background rows all zero.

    Built by comparison rather than ``F.one_hot`` or ``scatter`` so that a background index equal to ``C``
    needs no extra column and nothing is checked on the host.
    """
    classes = torch.arange(num_classes, device=labels.device)
    return (labels.reshape(-1, 1) == classes).to(dtype)


def element_weight(weight: Tensor | None, shape: torch.Size) -> Tensor | None:
    """Bring an mmdet label weight to the element-wise loss shape ``(N, C)``.

    ``(N,)`` is a weight per sample (anchor), ``(N, C)`` per element, ``(N * C,)`` per element flattened.
    """
    if weight is None:
        return None
    n, c = shape
    if weight.shape == shape:
        return weight.float()
    if weight.dim() == 1 and weight.numel() == n:
        return weight.float().reshape(n, 1)
    if weight.numel() == n * c:
        return weight.float().reshape(n, c)
    raise ValueError(f"weight must have shape ({n},), ({n}, {c}) or ({n * c},); got {tuple(weight.shape)}")


def sample_weight(weight: Tensor | None, n: int) -> Tensor | None:
    """Bring an mmdet label weight to a per-sample shape ``(N,)`` (softmax losses)."""
    if weight is None:
        return None
    if weight.dim() == 1 and weight.numel() == n:
        return weight.float()
    raise ValueError(f"weight of a softmax loss must have shape ({n},); got {tuple(weight.shape)}")


def check_logits(logits: Tensor, loss: str, expected: int | tuple[int, ...] | None = None) -> None:
    """Raise a ValueError unless ``logits`` is ``(N, K)``, with ``K`` in ``expected`` when given (static shapes)."""
    allowed = (expected,) if isinstance(expected, int) else expected
    if logits.dim() != 2 or (allowed is not None and logits.size(1) not in allowed):
        want = " or ".join(f"(N, {k})" for k in allowed) if allowed else "(N, C)"
        raise ValueError(f"{loss}: logits must have shape {want}; got {tuple(logits.shape)}")


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` in place over all processes when ``torch.distributed`` is initialised; else no-op.

    Used on detached statistics only, so every rank keeps the same loss state.
    """
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


# Softmax helpers. On CPU, torch 2.14's log_softmax and cross_entropy over a narrow last dimension (a dense
# head's K = C + 1 = 5) run several times slower than the same maths from max, exp, sum, log and gather: on
# 24,192 x 5 logits, one thread, cross_entropy forward + backward took 2.83 ms and this form 0.75 ms
# (2026-11-24, 2-core CPU, timeit-style minimum of 50). On a GPU both are negligible.


def row_logsumexp(logits: Tensor) -> Tensor:
    """``log sum_k exp(z_ik)`` over the last dimension, ``(N, K) -> (N,)``; the shift by the row max is detached
    (it cancels in the value, and the gradient is the softmax either way)."""
    shift = logits.detach().amax(dim=1, keepdim=True)
    return (logits - shift).exp().sum(1).log() + shift.reshape(-1)


def cross_entropy_rows(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax cross-entropy per row, ``(N, K), (N,) -> (N,)``; equals ``F.cross_entropy(..., reduction='none')``."""
    return row_logsumexp(logits) - logits.gather(1, labels.reshape(-1, 1)).reshape(-1)


def stable_softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` computed as ``max(x, 0) + log(1 + exp(-|x|))`` (faster than ``F.softplus`` on CPU)."""
    return x.clamp(min=0) + torch.log(1 + torch.exp(-x.abs()))
