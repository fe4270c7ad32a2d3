"""What a long-tail method is to the training loop: a :class:`MethodSpec`, the :class:`MethodContext` its hooks
receive, and the evaluation helpers the hooks share.

Glossary
    K               number of classes (the crop set's class table).
    D               feature dimension of the backbone (``CellClassifier.feature_dim``).
    stage 1         a method that trains the whole model (from scratch, or from ``init`` when given).
    stage 2         a method that starts from a trained stage-1 model (``init``, or plain ``ce`` trained first) and
                    changes only the classifier: re-trains it (cRT, LWS, MARC) or edits it without training
                    (tau-norm, NCM, post-hoc logit adjustment).
    head            ``model.head``: ``(N, D)`` features -> ``(N, K)`` logits; its softmax gives the probabilities the
                    report, the folder and screening use. A :class:`Head` pairs the module with the ``head`` dict of
                    the model folder (``{"type": ..., **config}``).
    sampler name    ``"instance"``, ``"class_balanced"``, ``"sqrt"``, ``"rfs"``, ``"cdb"`` (see
                    :mod:`cytolt.classify.train`).
    batch sampler   a sampler whose items are whole batches (lists of crop indices) rather than single indices;
                    it says so with a true ``yields_batches`` attribute (:func:`yields_batches`), and the loop then
                    trains on its batches as they come instead of cutting a flat stream into ``batch_size``.

The loop (:func:`cytolt.classify.train.train_classifier`) reads only the spec: build the model (``build_model``,
else a ``CellClassifier``), build the head, build the loss, hold ``held_out`` of the training crops out, train the
parameters ``trains`` names with the spec's sampler (``build_sampler``, else the named one) and optimiser, call
``epoch_end`` after every epoch, then ``finish`` (post-hoc changes to the head). Adding a method is one module with
a spec and one registry line; a method module never imports the loop (the loop imports the methods).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler

__all__ = [
    "BuiltModel",
    "Head",
    "MethodContext",
    "MethodSpec",
    "crop_tensor",
    "eval_features",
    "eval_logits",
    "linear_head",
    "per_class_recall",
    "stage_one_linear",
    "yields_batches",
]

# Crops per forward pass when a hook scores a whole crop set (no gradient, eval mode).
EVAL_BATCH = 256


class Head(NamedTuple):
    """A classifier head and its description for the model folder (``config["type"]`` names its builder)."""

    module: nn.Module
    config: dict[str, Any]


class BuiltModel(NamedTuple):
    """What ``MethodSpec.build_model`` returns: the network (``CellClassifier``'s interface) and the history rows of
    whatever trained it first (e.g. pre-training epochs), listed before the method's own epochs."""

    module: nn.Module
    history: list[dict[str, Any]]


@dataclass
class MethodContext:
    """What a method's hooks see. Built by the training loop; ``sampler`` and ``loss`` are set before training.

    Attributes:
        model: the ``CellClassifier`` being trained (``.backbone``, ``.head``, ``.feature_dim``, ``.num_classes``);
            ``None`` only while ``MethodSpec.build_model`` runs.
        train: the training ``CropSet`` (all of it; held-out crops are listed in ``held_out``).
        val: the validation ``CropSet`` or ``None``.
        counts: ``(K,)`` int64 training crops per class (the whole training set, held-out crops included).
        options: the method's options (validated against ``MethodSpec.options``).
        epochs: epochs of this stage.
        seed: the run's seed.
        device: where the model lives.
        batch_size: crops per step (``train_classifier``'s; a batch sampler may make larger batches).
        width: ``train_classifier``'s ``CellClassifier`` width.
        progress: whether the caller asked for progress bars.
        held_out: sorted indices into ``train`` kept out of training (``MethodSpec.held_out``, or the ``cdb``
            sampler's ``options["cdb_held_out"]``), else empty.
        difficulty: ``(K,)`` per-class difficulty ``1 - recall`` measured on ``held_out`` after the last epoch
            (CDB), else ``None``.
    """

    model: nn.Module | None
    train: Any
    val: Any
    counts: np.ndarray
    options: dict[str, Any]
    epochs: int
    seed: int
    device: torch.device
    batch_size: int = 64
    width: int = 16
    progress: bool = False
    held_out: list[int] = field(default_factory=list)
    difficulty: np.ndarray | None = None
    sampler: Any = None
    loss: nn.Module | None = None

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    @property
    def priors(self) -> Tensor:
        """``(K,)`` float32 training class frequencies ``n_c / N``."""
        counts = torch.as_tensor(self.counts, dtype=torch.float64)
        return (counts / counts.sum()).float()


@dataclass(frozen=True)
class MethodSpec:
    """A long-tail method as the training loop sees it.

    Attributes:
        name: the registry name (``--method``).
        paper: authors, title, venue (one line, for the docs table and ``--help``).
        stage: 1 (trains the model) or 2 (starts from a stage-1 model; see the module glossary).
        sampler: the sampler name used in training (ignored when ``trains == "none"``).
        optimizer: ``"adamw"`` or ``"sgd"`` (SGD with momentum 0.9, for methods whose argument assumes it).
        trains: ``"all"`` parameters, the ``"head"`` only (backbone frozen and in eval mode, so its batch-norm
            statistics stay as stage 1 left them), or ``"none"`` (a training-free second stage).
        weight_decay: of the optimiser; ``None`` is the optimiser's default (:mod:`cytolt.classify.train`), 0 for
            calibration parameters (scales, margins) that must not shrink to 0.
        build_head: ``ctx -> Head`` installed as ``model.head`` before training; ``None`` keeps the model's head.
        build_loss: ``ctx -> loss module``, called as ``loss(logits (N, K), labels (N,)) -> scalar``; ``None`` is
            softmax cross-entropy.
        build_model: ``ctx -> BuiltModel``, the network of a stage-1 method trained without ``init`` (``ctx.model``
            is ``None`` then); ``None`` is a ``CellClassifier`` of ``width``. The folder must be able to save it
            (:class:`cytolt.classify.folder.ClassifierFolder`: the ResNet or the ``TinyViT``).
        build_sampler: ``ctx -> sampler`` replacing the named ``sampler``: a flat index sampler or a batch sampler
            (module glossary), with ``set_epoch(epoch)`` and ``__len__`` (indices, or batches); never draws
            ``ctx.held_out``. An explicit ``options["sampler"]`` still wins.
        held_out: fraction of the training crops (stratified by class, seeded) kept out of training for the
            method's hooks to measure on (``ctx.held_out``), e.g. a meta-update that must not learn on val.
        epoch_end: ``(ctx, epoch) -> dict`` called after each epoch (0-based); its items go into the history.
        finish: ``ctx -> Head`` called after training: the head used at inference (and saved), e.g. a post-hoc
            adjustment; ``None`` keeps the trained head.
        options: the option names this method accepts, with their defaults (documentation and validation).
    """

    name: str
    paper: str
    stage: Literal[1, 2] = 1
    sampler: str = "instance"
    optimizer: Literal["adamw", "sgd"] = "adamw"
    trains: Literal["all", "head", "none"] = "all"
    weight_decay: float | None = None
    build_head: Callable[[MethodContext], Head] | None = None
    build_loss: Callable[[MethodContext], nn.Module] | None = None
    build_model: Callable[[MethodContext], BuiltModel] | None = None
    build_sampler: Callable[[MethodContext], Any] | None = None
    held_out: float | None = None
    epoch_end: Callable[[MethodContext, int], dict[str, Any]] | None = None
    finish: Callable[[MethodContext], Head] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, ctx: MethodContext, name: str) -> Any:
        """``ctx.options[name]``, else this spec's default for it."""
        if name not in self.options:
            raise KeyError(f"method {self.name!r} has no option {name!r}")
        return ctx.options.get(name, self.options[name])


# ----------------------------------------------------------------------------------------- shared helpers


def linear_head(module: nn.Linear) -> Head:
    """A plain ``nn.Linear`` head, ``{"type": "linear"}`` in the folder."""
    return Head(module, {"type": "linear"})


def stage_one_linear(ctx: MethodContext, method: str) -> nn.Linear:
    """The model's ``nn.Linear`` head (the stage-1 classifier every stage-2 method builds on); a clear error otherwise."""
    head = ctx.model.head
    if not isinstance(head, nn.Linear):
        raise ValueError(
            f"method {method!r} works on a linear classifier; the model's head is "
            f"{type(head).__name__} (train stage 1 with method 'ce', or pass such a model as init)"
        )
    return head


def yields_batches(sampler: Any) -> bool:
    """Whether ``sampler``'s items are whole batches (module glossary: batch sampler)."""
    return bool(getattr(sampler, "yields_batches", False)) or isinstance(sampler, BatchSampler)


def crop_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """``(B, S, S, 3)`` uint8 crops -> ``(B, 3, S, S)`` float32 in ``[0, 1]`` on ``device``."""
    array = np.ascontiguousarray(images)
    if not array.flags.writeable:
        array = array.copy()  # a slice of a memory-mapped crop set is read-only, which torch will not wrap
    batch = torch.from_numpy(array).to(device)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


def _batches(crops: Any, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(crops), batch_size):
        yield crops.images[start : start + batch_size]


@torch.no_grad()
def eval_features(model: nn.Module, crops: Any, *, device: torch.device | str = "cpu") -> Tensor:
    """``(N, D)`` backbone features of every crop of a ``CropSet``, model in eval mode, no augmentation.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        parts = [model.features(crop_tensor(b, device)) for b in _batches(crops, EVAL_BATCH)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, model.feature_dim, device=device)


@torch.no_grad()
def eval_logits(model: nn.Module, crops: Any, *, device: torch.device | str = "cpu") -> Tensor:
    """``(N, K)`` logits of every crop of a ``CropSet`` under ``model`` in eval mode (mode restored after)."""
    was_training = model.training
    model.eval()
    try:
        parts = [model(crop_tensor(b, device)) for b in _batches(crops, EVAL_BATCH)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, model.num_classes, device=device)


def per_class_recall(predicted: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``(K,)`` float64 recall (per-class accuracy) of arg-max predictions; NaN for a class with no sample."""
    labels = labels.reshape(-1).long().cpu()
    hits = (predicted.reshape(-1).long().cpu() == labels).double()
    total = torch.bincount(labels, minlength=num_classes).double()
    correct = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, hits)
    return torch.where(total > 0, correct / total.clamp_min(1), torch.full_like(total, float("nan")))
