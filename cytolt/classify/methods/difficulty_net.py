"""Difficulty-Net (Sinha and Ohashi, "Difficulty-Net: Learning to Predict Difficulty for Long-Tailed
Recognition", WACV 2023, arXiv 2209.02960; authors' code github.com/hitachi-rd-cv/Difficulty_Net).

A small MLP ``phi`` reads the vector of per-class accuracies ``a (K,)`` measured on held-out data and predicts
each class's difficulty ``d = sigmoid(MLP(a))`` in ``(0, 1)``; the class weights of the cross-entropy are
``w_c = K d_c / sum_j d_j`` (mean 1). Two ideas make the prediction sensible:

- relative difficulty: the net sees every class's accuracy at once, so a class is hard *relative to the others*;
  its target form is ``r_c = 1 - a_c / sum_j a_j``;
- driver loss: ``L_drive = mean_c (d_c - r_c)^2`` steers ``phi`` towards that relative difficulty, so that the
  meta-gradient alone (which is noisy and has no notion of "harder") does not lead it astray.

``phi`` is meta-learned: a virtual SGD step of the classifier on a training batch with the weights ``w(phi)``,
``theta' = theta - lr grad_theta mean_i w_{y_i} CE_i(theta)``, then the held-out loss
``L_meta = CE(theta'; held-out batch) + lambda L_drive`` is minimised over ``phi`` (Adam), and the real step uses
the updated weights. Because the weighted loss is linear in ``w``, the hypergradient
``dL_meta / dw_c = -lr grad L_CE(theta')^T grad_theta L_c(theta)`` needs no Hessian of the classifier: this module
computes it exactly (the authors' one-step look-ahead with ``create_graph=True``); cost on CPU about three
forward/backward passes of the classifier per meta-step.

Constants from the authors' code (CIFAR-LT ``cifar_train_exaugment.py``, ``meta_resnet32.VNet``): MLP
``K -> 128 -> 128 -> K`` without biases, ReLU, sigmoid output; accuracies start at 0 (so the first weights are all 1);
driver-loss weight ``lambda = 0.3``; Adam with weight decay 1e-4; the virtual step is plain SGD at the classifier's
learning rate (0.1 there); the driver target is ``1 - a_c / (sum_j a_j + 1e-12)``.

Adapted, and why:
- The authors update ``phi`` once per training iteration; here :class:`DifficultyNetWeighter` is loop-agnostic and
  the cytolt training loop calls it from an epoch hook: after each epoch it re-measures the accuracies and runs a
  few meta-steps, and the weights stay fixed during the next epoch (the loop has no per-step hook).
- Adam's learning rate is 1e-3 instead of the authors' 1e-5: they take ~1e5 meta-steps (one per iteration of a
  CIFAR schedule); a cell-crop run takes tens to hundreds, at which 1e-5 leaves ``phi`` at its random start.
- The held-out data are ``HELD_OUT`` (10 %, CDB's share) of the training crops, stratified by class
  (``MethodSpec.held_out``: the loop never trains on them), not a separate meta set or the validation crops, so the
  meta-update does not learn on what the model is evaluated on.
- The virtual step's learning rate is an explicit ``inner_lr`` (default 0.1, the authors' SGD rate) rather than
  the real optimiser's: cytolt trains with AdamW at 1e-3, whose rate would make the hypergradient vanish next to
  the driver loss.

Compared with CDB-W (:func:`cytolt.losses.cdb.cdb_weights`, ``w ~ (1 - a)^tau``): both give the harder class the
larger weight, but CDB-W's rule is fixed, while Difficulty-Net's is learned, and its driver target
``1 - a_c / sum a`` is milder (it tends to 1 for every class as ``K`` grows); the meta-gradient moves the weights
from there towards what lowers the held-out loss (tests/classify/methods/test_difficulty_net.py works one case).

Glossary: ``accuracy (K,)`` per-class accuracy (recall) in ``[0, 1]``; ``difficulty (K,)`` the net's output in
``(0, 1)``; ``class_weights (K,)`` mean 1; a batch is ``(x, labels (N,))`` for the classifier ``model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from cytolt.classify.methods.spec import MethodContext, MethodSpec, crop_tensor, eval_logits, per_class_recall
from cytolt.losses.cdb import cdb_cross_entropy

__all__ = [
    "DIFFICULTY_NET",
    "DRIVER_WEIGHT",
    "HELD_OUT",
    "HIDDEN",
    "INNER_LR",
    "META_BATCH",
    "META_LR",
    "META_STEPS",
    "META_WEIGHT_DECAY",
    "DifficultyNet",
    "DifficultyNetLoss",
    "DifficultyNetWeighter",
    "difficulty_weights",
    "driver_loss",
    "meta_gradient",
    "relative_difficulty",
]

HIDDEN = 128  # VNet(K, 128, 128, K)
DRIVER_WEIGHT = 0.3  # --lamda 0.3
META_WEIGHT_DECAY = 1e-4
META_LR = 1e-3  # authors: 1e-5 over ~1e5 meta-steps (see the module docstring)
INNER_LR = 0.1  # authors' SGD learning rate, used for their virtual step
ACCURACY_EPS = 1e-12  # authors' guard in 1 - a / (sum a + eps)

Batch = tuple[Tensor, Tensor]


class DifficultyNet(nn.Module):
    """``accuracy (K,) or (B, K) -> difficulty`` of the same shape in ``(0, 1)``: MLP ``K -> h -> h -> K`` without
    biases, ReLU between, sigmoid out (the authors' ``VNet``)."""

    def __init__(self, num_classes: int, *, hidden: int = HIDDEN) -> None:
        super().__init__()
        if num_classes < 2 or hidden < 1:
            raise ValueError(
                f"DifficultyNet: need num_classes >= 2, hidden >= 1; got {num_classes}, {hidden}"
            )
        self.num_classes = num_classes
        self.layers = nn.Sequential(
            nn.Linear(num_classes, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, num_classes, bias=False),
        )

    def forward(self, accuracy: Tensor) -> Tensor:
        if accuracy.shape[-1] != self.num_classes:
            raise ValueError(
                f"DifficultyNet: accuracy must end in {self.num_classes}; got {tuple(accuracy.shape)}"
            )
        return torch.sigmoid(self.layers(accuracy))


def relative_difficulty(accuracy: Tensor) -> Tensor:
    """``1 - a_c / (sum_j a_j + 1e-12)`` over the last dim: the driver loss's target, in ``[0, 1]``.

    All accuracies 0 (before the first measurement) -> all ones: every class equally, and fully, difficult.
    """
    return 1 - accuracy / (accuracy.sum(-1, keepdim=True) + ACCURACY_EPS)


def driver_loss(difficulty: Tensor, accuracy: Tensor) -> Tensor:
    """``mean_c (d_c - relative_difficulty(a)_c)^2`` (0-d); the target carries no gradient."""
    return F.mse_loss(difficulty, relative_difficulty(accuracy).detach())


def difficulty_weights(difficulty: Tensor) -> Tensor:
    """Class weights ``K d_c / sum_j d_j`` (mean 1) over the last dim."""
    return difficulty / difficulty.sum(-1, keepdim=True) * difficulty.shape[-1]


def _trainable(model: nn.Module, prefixes: Sequence[str] | None) -> dict[str, Tensor]:
    params = {
        name: p
        for name, p in model.named_parameters()
        if p.requires_grad and (prefixes is None or name.startswith(tuple(prefixes)))
    }
    if not params:
        raise ValueError(f"meta_gradient: no trainable parameter of the model matches prefixes={prefixes}")
    return params


def meta_gradient(
    model: nn.Module,
    class_weights: Tensor,
    train_batch: Batch,
    held_out_batch: Batch,
    *,
    inner_lr: float = INNER_LR,
    prefixes: Sequence[str] | None = None,
) -> tuple[Tensor, Tensor]:
    """Hypergradient of the held-out loss after one virtual SGD step, with respect to the class weights.

    ``theta' = theta - inner_lr grad_theta mean_i w[y_i] CE_i(theta)`` on ``train_batch``; returns
    ``(dL / dw (K,), L)`` with ``L = CE(theta'; held_out_batch)`` (both detached). The virtual step uses the
    model's current mode and copies of its buffers (batch-norm statistics are left as they were); the model's
    parameters and gradients are not touched.

    Args:
        model: the classifier, ``x -> logits (N, K)``.
        class_weights: ``(K,)``.
        train_batch, held_out_batch: ``(x, labels)``.
        inner_lr: learning rate of the virtual step.
        prefixes: only parameters whose names start with one of these take the virtual step (e.g. ``("head.",)``
            to make it cheap); ``None``: every trainable parameter.
    """
    # oneDNN's convolution double backward crashes torch 2.14 on CPU with more than one thread (a segfault in
    # autograd.grad below, reproduced with 2 threads, never with 1); the native kernels give the same gradients.
    with torch.backends.mkldnn.flags(enabled=False):
        return _meta_gradient(model, class_weights, train_batch, held_out_batch, inner_lr, prefixes)


def _meta_gradient(
    model: nn.Module,
    class_weights: Tensor,
    train_batch: Batch,
    held_out_batch: Batch,
    inner_lr: float,
    prefixes: Sequence[str] | None,
) -> tuple[Tensor, Tensor]:
    params = _trainable(model, prefixes)
    w = class_weights.detach().clone().requires_grad_(True)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    x, y = train_batch
    loss = cdb_cross_entropy(functional_call(model, {**params, **buffers}, (x,)), y, w)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
    stepped = {
        name: p if g is None else p - inner_lr * g for (name, p), g in zip(params.items(), grads, strict=True)
    }
    x_held, y_held = held_out_batch
    meta_loss = F.cross_entropy(functional_call(model, {**stepped, **buffers}, (x_held,)), y_held)
    (grad_w,) = torch.autograd.grad(meta_loss, w)
    return grad_w.detach(), meta_loss.detach()


class DifficultyNetWeighter(nn.Module):
    """Difficulty-Net's class weights for a training loop: :meth:`set_accuracy` after measuring, :meth:`meta_step`
    on a training and a held-out batch, :meth:`weights` for the loss.

    Holds the net, its Adam optimiser, and buffers ``accuracy (K,)`` (starts at 0) and ``class_weights (K,)``
    (the net's weights for the current accuracy, refreshed by both calls; all 1 at the start). ``forward`` is not
    used. Seeded: the net's initial weights depend on ``seed`` only.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        hidden: int = HIDDEN,
        lr: float = META_LR,
        weight_decay: float = META_WEIGHT_DECAY,
        driver_weight: float = DRIVER_WEIGHT,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not lr > 0 or weight_decay < 0 or driver_weight < 0:
            raise ValueError(
                f"DifficultyNetWeighter: need lr > 0, weight_decay >= 0, driver_weight >= 0; got {lr}, "
                f"{weight_decay}, {driver_weight}"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = DifficultyNet(num_classes, hidden=hidden)
        self.driver_weight = float(driver_weight)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        self.register_buffer("accuracy", torch.zeros(num_classes))
        self.register_buffer("class_weights", torch.ones(num_classes))
        self._refresh()

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    def _refresh(self) -> None:
        with torch.no_grad():
            self.class_weights.copy_(difficulty_weights(self.net(self.accuracy)))

    def set_accuracy(self, accuracy: Sequence[float] | Tensor) -> Tensor:
        """Store the per-class accuracies ``(K,)`` in ``[0, 1]`` measured on held-out data; returns the new
        weights."""
        a = torch.as_tensor(accuracy, dtype=self.accuracy.dtype, device=self.accuracy.device)
        if a.shape != self.accuracy.shape:
            raise ValueError(f"accuracy must have shape ({self.num_classes},); got {tuple(a.shape)}")
        if not bool(((a >= 0) & (a <= 1)).all()):
            raise ValueError(f"accuracy must lie in [0, 1]; got {a.tolist()}")
        self.accuracy.copy_(a)
        self._refresh()
        return self.weights()

    def weights(self) -> Tensor:
        """``(K,)`` class weights (mean 1), detached."""
        return self.class_weights.detach().clone()

    def meta_step(
        self,
        model: nn.Module,
        train_batch: Batch,
        held_out_batch: Batch,
        *,
        inner_lr: float = INNER_LR,
        prefixes: Sequence[str] | None = None,
    ) -> dict[str, float]:
        """One Adam step of the net on ``L_meta + driver_weight * L_drive`` (see :func:`meta_gradient` for the
        arguments); returns ``{"meta_loss", "driver_loss"}`` as measured before the step."""
        difficulty = self.net(self.accuracy)
        weights = difficulty_weights(difficulty)
        grad_w, meta_loss = meta_gradient(
            model, weights, train_batch, held_out_batch, inner_lr=inner_lr, prefixes=prefixes
        )
        drive = driver_loss(difficulty, self.accuracy)
        # Chain rule through w(phi): d L_meta / d phi = (dL/dw)^T dw/dphi.
        surrogate = (weights * grad_w.to(weights.dtype)).sum() + self.driver_weight * drive
        self.optimizer.zero_grad(set_to_none=True)
        surrogate.backward(inputs=list(self.net.parameters()))
        self.optimizer.step()
        self._refresh()
        return {"meta_loss": float(meta_loss), "driver_loss": float(drive.detach())}


class DifficultyNetLoss(nn.Module):
    """``loss(logits (N, K), labels (N,)) -> mean_i w[y_i] CE_i`` with ``w`` the weighter's current class weights.

    The weighter is a submodule (moved with ``.to()``); its state changes only through its own calls.
    """

    def __init__(self, weighter: DifficultyNetWeighter) -> None:
        super().__init__()
        self.weighter = weighter

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return cdb_cross_entropy(logits, labels, self.weighter.class_weights)


# ----------------------------------------------------------------------------------------- the training loop's spec

# Meta-steps after each epoch: one costs about 4x a training step of CellClassifier(width=16) on 64 crops of 64 px
# (measured on 2 shared CPU cores); the authors take one per training iteration.
META_STEPS = 5
META_BATCH = 64
HELD_OUT = (
    0.1  # fraction of train held out for the accuracies and meta-steps (CDB's, cytolt.classify.methods.cdb)
)


def _meta_split(ctx: MethodContext) -> tuple[Any, str]:
    """The crops the accuracies and meta-steps use: the loop's held-out part of train (``HELD_OUT``), never val."""
    if not ctx.held_out:
        raise ValueError(
            "difficulty_net needs held-out training crops to measure per-class accuracy and take meta-steps on "
            "(the loop holds out DIFFICULTY_NET.held_out of train; too few crops?)"
        )
    return ctx.train.subset(ctx.held_out), "held_out"


def _weighter(ctx: MethodContext) -> DifficultyNetWeighter:
    if not isinstance(ctx.loss, DifficultyNetLoss):
        raise RuntimeError("difficulty_net: the loop's loss is not the method's DifficultyNetLoss")
    return ctx.loss.weighter


def _build_loss(ctx: MethodContext) -> nn.Module:
    weighter = DifficultyNetWeighter(
        ctx.num_classes,
        hidden=int(DIFFICULTY_NET.option(ctx, "hidden")),
        lr=float(DIFFICULTY_NET.option(ctx, "meta_lr")),
        driver_weight=float(DIFFICULTY_NET.option(ctx, "driver_weight")),
        seed=ctx.seed,
    )
    return DifficultyNetLoss(weighter)


def _epoch_end(ctx: MethodContext, epoch: int) -> dict[str, Any]:
    weighter = _weighter(ctx)
    meta, split = _meta_split(ctx)
    meta_labels = np.asarray(meta.labels, dtype=np.int64)
    recall = per_class_recall(
        eval_logits(ctx.model, meta, device=ctx.device).argmax(1),
        torch.as_tensor(meta_labels),
        ctx.num_classes,
    )
    # A class with no held-out crop cannot be measured: accuracy 0, the hardest (as CDB's difficulty 1).
    accuracy = torch.nan_to_num(recall, nan=0.0).float()
    weighter.set_accuracy(accuracy)
    held = set(ctx.held_out)
    pool = np.array([i for i in range(len(ctx.train)) if i not in held], dtype=np.int64)
    train_labels = np.asarray(ctx.train.labels, dtype=np.int64)
    generator = torch.Generator().manual_seed(ctx.seed * 100_003 + epoch)
    batch = int(DIFFICULTY_NET.option(ctx, "meta_batch"))
    steps = int(DIFFICULTY_NET.option(ctx, "meta_steps"))
    prefixes = ("head.",) if DIFFICULTY_NET.option(ctx, "meta_head_only") else None
    was_training = ctx.model.training
    ctx.model.train()  # the virtual step sees batch statistics, as a training step does
    logs = []
    try:
        for _ in range(steps):
            t = pool[torch.randperm(len(pool), generator=generator)[:batch].numpy()]
            h = torch.randperm(len(meta), generator=generator)[:batch].numpy()
            logs.append(
                weighter.meta_step(
                    ctx.model,
                    (
                        crop_tensor(ctx.train.images[t], ctx.device),
                        torch.as_tensor(train_labels[t], device=ctx.device),
                    ),
                    (
                        crop_tensor(meta.images[h], ctx.device),
                        torch.as_tensor(meta_labels[h], device=ctx.device),
                    ),
                    inner_lr=float(DIFFICULTY_NET.option(ctx, "inner_lr")),
                    prefixes=prefixes,
                )
            )
    finally:
        ctx.model.train(was_training)
    row: dict[str, Any] = {
        "dn_split": split,
        "dn_accuracy": [round(float(a), 4) for a in accuracy],
        "dn_weights": [round(float(w), 4) for w in weighter.weights()],
    }
    if logs:
        row["dn_meta_loss"] = float(np.mean([log["meta_loss"] for log in logs]))
        row["dn_driver_loss"] = float(np.mean([log["driver_loss"] for log in logs]))
    return row


DIFFICULTY_NET = MethodSpec(
    name="difficulty_net",
    paper="Sinha and Ohashi, Difficulty-Net: Learning to Predict Difficulty for Long-Tailed Recognition, WACV 2023",
    held_out=HELD_OUT,
    build_loss=_build_loss,
    epoch_end=_epoch_end,
    options={
        "meta_steps": META_STEPS,
        "meta_batch": META_BATCH,
        "meta_lr": META_LR,
        "inner_lr": INNER_LR,
        "driver_weight": DRIVER_WEIGHT,
        "hidden": HIDDEN,
        "meta_head_only": False,
    },
)
