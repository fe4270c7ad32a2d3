"""Training loop of the cell classifier: one function, :func:`train_classifier`, with each long-tail method a switch.

Glossary
    crops       a ``CropSet``: ``images (N, S, S, 3)`` uint8, ``labels (N,)`` int64 in ``0..K-1``.
    method      a :class:`~cytolt.classify.methods.spec.MethodSpec` from :data:`cytolt.classify.methods.METHODS`;
                the loop reads only the spec (head, loss, sampler, optimiser, epoch hook, post-hoc finish).
    stage       1: the whole model trains; 2: a trained stage-1 model (``init``, or ``ce`` trained first for
                ``options["stage1_epochs"]`` epochs) is copied and only its classifier changes.
    sampler     ``"instance"``: every crop once per epoch, shuffled; ``"class_balanced"``: ``p_c`` equal for every
                class, a crop of the class uniformly (Kang et al., ICLR 2020); ``"sqrt"``: ``p_c`` proportional to
                ``n_c^0.5`` (the same paper); ``"rfs"``: :class:`cytolt.samplers.RepeatFactorSampler`, each crop an
                image holding one class, threshold ``options["rfs_thr"]`` (default ``1 / K``, see
                :data:`RFS_THR`); ``"cdb"``: :class:`ClassLevelCDBSampler` (class-level CDB-S over
                :class:`cytolt.samplers.CDBSampler`) with difficulty re-measured on a held-out part of train
                every ``options["cdb_every"]`` epochs (1; CDB-S, Sinha et al., ACCV 2020). Re-balancing
                samplers draw ``N`` crops per epoch with replacement.

Recipe (defaults): AdamW (weight decay 0.05) or, for methods whose argument assumes it, SGD with momentum 0.9
(weight decay 5e-4, learning rate ``options["sgd_lr"]``); a classifier trained on frozen features (stage 2) at
``options["head_lr"]``; cosine learning-rate decay per step to 0; batches of ``batch_size`` crops in sampler order, or
a method's batch sampler's batches as they come (a last batch of one crop is dropped: batch norm needs two); light augmentation suited to cells, which have no orientation: random horizontal flip, random 90-degree rotation and a
brightness factor in ``[0.9, 1.1]``. Everything random draws from generators seeded with ``seed`` (sampler,
augmentation) and ``torch.manual_seed(seed)`` before the weights are initialised, so a run is reproducible on
one machine.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Sampler
from tqdm import tqdm

from cytolt import samplers
from cytolt.category_stats import repeat_factors
from cytolt.classify.methods import cdb, get_method
from cytolt.classify.methods.ce import CrossEntropyLoss
from cytolt.classify.methods.spec import (
    Head,
    MethodContext,
    MethodSpec,
    crop_tensor,
    eval_logits,
    per_class_recall,
    yields_batches,
)
from cytolt.classify.metrics import classification_report
from cytolt.classify.model import CellClassifier
from cytolt.losses.cdb import cdb_weights

__all__ = [
    "LOOP_OPTIONS",
    "SAMPLERS",
    "ClassAwareSampler",
    "ClassLevelCDBSampler",
    "InstanceSampler",
    "Stage",
    "TrainResult",
    "augment",
    "make_sampler",
    "prepare_stage",
    "train_classifier",
]

SAMPLERS = ("instance", "class_balanced", "sqrt", "rfs", "cdb")
# Class-level sampling exponent q of p_c ~ n_c^q (Kang et al. 2020, eq. 1): 0 class-balanced, 1/2 square root.
_CLASS_POWER = {"class_balanced": 0.0, "sqrt": 0.5}
# RFS threshold: None means 1 / K, so the classes with less than a uniform share of the crops are repeated by
# sqrt(t / f_c). LVIS's 0.001 is for 1,203 classes; with K ~ 6 cell classes it would repeat nothing.
RFS_THR = None
ADAMW_WEIGHT_DECAY = 0.05  # the setting ARCHITECTURE.md measured for cytolt's small detectors on CPU
# SGD: momentum 0.9 and weight decay 5e-4, the Causal TDE authors' classification recipe; lr 0.05 for batches of
# 64 from scratch (the usual 0.1 per 256 scaled up for a narrow net; a cytolt choice, options["sgd_lr"]).
SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 5e-4
SGD_LR = 0.05
# AdamW rate of the stages that train a classifier on frozen features (cRT, LWS, MARC): 10x the from-scratch rate.
# Measured once (docs/classify_methods.md): cRT's 5 epochs on ~540 crops are ~45 steps, too few at 1e-3 (balanced
# accuracy 0.24, below the stage-1 model's 0.33) and enough at 1e-2 (0.62) or 3e-2 (0.66).
HEAD_LR = 1e-2
BRIGHTNESS = (
    0.1  # brightness factor drawn in [1 - 0.1, 1 + 0.1]: staining intensity varies a little between slides
)

# Options every method accepts (method options are in each spec's ``options``), with their defaults.
LOOP_OPTIONS: dict[str, Any] = {
    "sampler": None,  # None: the method's own
    "stage1_epochs": None,  # stage-2 methods trained without init: None means ``epochs``
    "sgd_lr": SGD_LR,
    "head_lr": HEAD_LR,  # AdamW rate when only the head trains (stage 2)
    "weight_decay": None,  # None: the method's, else the optimiser's default
    "augment": True,
    "rfs_thr": RFS_THR,
    "cdb_tau": cdb.CDB_TAU,
    "cdb_held_out": cdb.HELD_OUT,
    "cdb_every": 1,  # re-measure CDB difficulty every K epochs (K = 1 in Sinha et al.)
}


@dataclass
class TrainResult:
    """What :func:`train_classifier` returns.

    Attributes:
        model: the trained ``CellClassifier`` (its head possibly replaced by the method), in eval mode.
        method: the method name.
        head: ``{"type": ..., **config}`` for ``ClassifierFolder.write``.
        history: one dict per epoch (``stage``, ``epoch``, ``loss``, ``lr``, ``seconds``, ``samples`` and what
            the method adds); a stage-2 method trained without ``init`` lists stage 1's epochs first.
        val_report: ``classification_report`` of the validation crops, or ``None`` without ``val``.
        seconds: wall time of the whole call.
    """

    model: nn.Module
    method: str
    head: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    val_report: dict[str, Any] | None = None
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------------- samplers


class InstanceSampler(samplers._EpochSampler):
    """Every index of ``0..n-1`` not in ``exclude`` once per epoch, shuffled with the epoch's generator."""

    def __init__(self, n: int, *, seed: int = 0, exclude: list[int] | None = None) -> None:
        super().__init__(seed=seed, rank=0, world_size=1, infinite=False)
        keep = torch.ones(max(int(n), 0), dtype=torch.bool)
        if exclude:
            keep[torch.as_tensor(exclude, dtype=torch.long)] = False
        self.indices = torch.nonzero(keep).flatten()
        if len(self.indices) < 1:
            raise ValueError(
                f"InstanceSampler: need at least one index; got {n}, {len(exclude or [])} excluded"
            )
        self.n = int(n)

    def _epoch_indices(self, generator: torch.Generator) -> Tensor:
        return self.indices[torch.randperm(len(self.indices), generator=generator)]

    def _expected_epoch_size(self) -> float:
        return float(len(self.indices))


class ClassAwareSampler(samplers._EpochSampler):
    """Class-level sampling ``p_c ~ n_c^q``, then a crop of the class uniformly: crop ``i`` has weight
    ``n_{y_i}^(q - 1)``; ``num_samples`` draws per epoch with replacement (default: the number of crops).

    ``q = 0`` is class-balanced, ``q = 1/2`` square-root, ``q = 1`` instance sampling with replacement (Kang et
    al., ICLR 2020, eq. 1). Indices in ``exclude`` are never drawn.
    """

    def __init__(
        self,
        labels: np.ndarray | Tensor,
        *,
        power: float,
        seed: int = 0,
        num_samples: int | None = None,
        exclude: list[int] | None = None,
    ) -> None:
        super().__init__(seed=seed, rank=0, world_size=1, infinite=False)
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
        if labels.numel() == 0:
            raise ValueError("ClassAwareSampler: no labels")
        keep = torch.ones(labels.numel(), dtype=torch.bool)
        if exclude:
            keep[torch.as_tensor(exclude, dtype=torch.long)] = False
        counts = torch.bincount(labels[keep], minlength=int(labels.max()) + 1).double()
        weights = counts[labels].clamp_min(1) ** (power - 1.0)
        self.weights = torch.where(keep, weights, torch.zeros_like(weights))
        if not float(self.weights.sum()) > 0:
            raise ValueError("ClassAwareSampler: every crop is excluded")
        self.power = float(power)
        self.num_samples = int(keep.sum()) if num_samples is None else int(num_samples)

    def _epoch_indices(self, generator: torch.Generator) -> Tensor:
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)

    def _expected_epoch_size(self) -> float:
        return float(self.num_samples)


class ClassLevelCDBSampler(samplers.CDBSampler):
    """CDB-S for single-label crops: class ``c`` is drawn with probability proportional to its CDB weight ``w_c``,
    then one of its crops uniformly (crop weight ``w_y / n_y``, ``n_y`` its crops outside ``held_out``).

    Sinha et al.'s class-level sampling; :class:`cytolt.samplers.CDBSampler` (whose image draw, exclusion and
    seeding this reuses) weighs a detection image by ``max w_c`` without the class sizes, which on single-class crops
    would leave the draw instance-dominated. With uniform weights (before the first measurement) this is
    class-balanced sampling. ``class_weights`` holds the per-crop class factors ``w_c / n_c``; ``cdb_weights`` holds
    ``w``. ``num_samples``: the crops outside ``held_out``.
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        num_classes: int,
        tau: float | str = cdb.CDB_TAU,
        seed: int = 0,
        held_out: list[int] | None = None,
    ) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        super().__init__(
            [{int(y)} for y in labels], num_classes=num_classes, tau=tau, seed=seed, rank=0, world_size=1
        )
        held_out = list(held_out or [])
        if held_out:
            self.exclude(held_out)
        keep = np.ones(len(labels), bool)
        keep[held_out] = False
        self.class_sizes = torch.as_tensor(
            np.bincount(labels[keep], minlength=num_classes), dtype=torch.float64
        )
        self.num_samples = int(keep.sum())
        self.update_difficulty(torch.ones(num_classes, dtype=torch.float64))

    def update_difficulty(self, difficulty: Tensor | np.ndarray) -> None:
        """Set the difficulty ``d (K,)`` and redraw: class weights ``w = cdb_weights(d, tau)``, crop weights
        ``w_y / n_y``."""
        d = torch.as_tensor(np.asarray(difficulty), dtype=torch.float64)
        if d.shape != (self.num_classes,):
            raise ValueError(f"difficulty must have shape ({self.num_classes},); got {tuple(d.shape)}")
        self.difficulty = d.clone()
        self.cdb_weights = cdb_weights(d, self.tau).double()
        self.set_class_weights(self.cdb_weights / self.class_sizes.clamp_min(1))


def make_sampler(
    name: str,
    labels: np.ndarray,
    num_classes: int,
    *,
    seed: int = 0,
    held_out: list[int] | None = None,
    rfs_thr: float | None = RFS_THR,
    cdb_tau: float | str = cdb.CDB_TAU,
) -> Sampler[int]:
    """The sampler called ``name`` (module glossary) over crops with ``labels (N,)``; ``held_out`` crops are never
    drawn (the rfs sampler, whose repeat factors count every crop, refuses them)."""
    held_out = list(held_out or [])
    labels = np.asarray(labels, dtype=np.int64)
    if name == "instance":
        return InstanceSampler(len(labels), seed=seed, exclude=held_out)
    if name in _CLASS_POWER:
        return ClassAwareSampler(labels, power=_CLASS_POWER[name], seed=seed, exclude=held_out)
    image_classes = [{int(y)} for y in labels]
    if name == "rfs":
        if held_out:
            raise ValueError("make_sampler: the rfs sampler takes no held-out crops")
        thr = 1.0 / num_classes if rfs_thr is None else float(rfs_thr)
        return samplers.RepeatFactorSampler(
            repeat_factors(image_classes, thr), seed=seed, rank=0, world_size=1
        )
    if name == "cdb":
        return ClassLevelCDBSampler(
            labels, num_classes=num_classes, tau=cdb_tau, seed=seed, held_out=held_out
        )
    raise ValueError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))}; got {name!r}")


# ----------------------------------------------------------------------------------------------- augmentation


def augment(x: Tensor, generator: torch.Generator, *, brightness: float = BRIGHTNESS) -> Tensor:
    """Random horizontal flip, 90-degree rotation (k in 0..3) and brightness factor per crop of ``x (B, 3, S, S)``
    in ``[0, 1]``; draws from ``generator`` (CPU) only. Returns a new tensor, clamped to ``[0, 1]``."""
    if x.dim() != 4 or x.size(-1) != x.size(-2):
        raise ValueError(f"augment: x must be (B, C, S, S) square crops; got {tuple(x.shape)}")
    n = x.size(0)
    k = torch.randint(0, 4, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    factor = (1 + (2 * torch.rand(n, generator=generator) - 1) * brightness).to(x.device, x.dtype)
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    turns = torch.stack([torch.rot90(x, r, dims=(-2, -1)) for r in range(4)])  # (4, B, C, S, S)
    x = turns[k, torch.arange(n, device=x.device)]
    return (x * factor.view(-1, 1, 1, 1)).clamp_(0, 1)


# ----------------------------------------------------------------------------------------------- one stage


class Stage:
    """One method's stage, set up: the model with the method's head, the loss, sampler and optimiser.

    :meth:`step` trains on one batch; :meth:`run_epoch` on one epoch of the sampler; :meth:`finish` applies the
    method's post-hoc head. ``head`` is the folder's head dict of the model as it stands.
    """

    def __init__(
        self,
        spec: MethodSpec,
        ctx: MethodContext,
        head: dict[str, Any],
        *,
        lr: float,
        batch_size: int,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.spec, self.ctx, self.head = spec, ctx, head
        self.batch_size = int(batch_size)
        self.history: list[dict[str, Any]] = list(history or [])
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.optimizer: torch.optim.Optimizer | None = None
        self._step = 0
        if spec.trains == "none":
            return
        params = self._parameters()
        if not params:
            raise ValueError(f"method {spec.name!r} has no parameter to train")
        wd = ctx.options.get("weight_decay")
        if wd is None:
            wd = spec.weight_decay
        if spec.optimizer == "sgd":
            lr = float(ctx.options.get("sgd_lr", SGD_LR))
            self.optimizer = torch.optim.SGD(
                params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=SGD_WEIGHT_DECAY if wd is None else wd
            )
        else:
            if spec.trains == "head":
                lr = float(ctx.options.get("head_lr", HEAD_LR))
            self.optimizer = torch.optim.AdamW(
                params, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY if wd is None else wd
            )
        self.base_lr = lr
        self.total_steps = max(1, ctx.epochs * self._batches_per_epoch())

    def _parameters(self) -> list[nn.Parameter]:
        module = self.ctx.model.head if self.spec.trains == "head" else self.ctx.model
        if self.spec.trains == "head":
            for p in self.ctx.model.backbone.parameters():
                p.requires_grad_(False)
        return [p for p in module.parameters() if p.requires_grad]

    def _batches_per_epoch(self) -> int:
        if yields_batches(self.ctx.sampler):
            return len(self.ctx.sampler)
        n = len(self.ctx.sampler)
        full, rest = divmod(n, self.batch_size)
        return full + (rest > 1)

    def _epoch_batches(self) -> list[np.ndarray]:
        """This epoch's batches: the batch sampler's as they come, else the flat order cut into ``batch_size``."""
        if yields_batches(self.ctx.sampler):
            return [np.asarray(list(batch), dtype=np.int64) for batch in self.ctx.sampler]
        order = np.fromiter(iter(self.ctx.sampler), dtype=np.int64)
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _set_lr(self) -> float:
        # cosine decay per step from base_lr to 0 over the stage (held at 0 if an epoch draws more batches)
        lr = (
            0.5
            * self.base_lr
            * (1 + math.cos(math.pi * min(self._step, self.total_steps) / self.total_steps))
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _train_mode(self) -> None:
        self.ctx.model.train()
        if self.spec.trains == "head":
            self.ctx.model.backbone.eval()  # frozen representation: batch-norm statistics stay

    def step(self, images: Tensor, labels: Tensor) -> float:
        """One optimiser step on ``images (B, 3, S, S)`` float in ``[0, 1]`` (already augmented) and ``labels``;
        returns the loss."""
        if self.optimizer is None:
            raise RuntimeError(f"method {self.spec.name!r} does not train")
        model, loss_fn = self.ctx.model, self.ctx.loss
        self._train_mode()
        self._set_lr()
        if self.spec.trains == "head":
            with torch.no_grad():
                features = model.backbone(images)
            logits = model.head(features)
        else:
            logits = model(images)
        loss = loss_fn(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._step += 1
        return float(loss.detach())

    def run_epoch(self, epoch: int, *, progress: Any = None) -> dict[str, Any]:
        """Train one epoch (0-based ``epoch``), re-measure CDB difficulty, call the method's hook; returns the
        history row (also appended to :attr:`history`)."""
        ctx, start = self.ctx, time.perf_counter()
        ctx.sampler.set_epoch(epoch)
        labels_all = np.asarray(ctx.train.labels, dtype=np.int64)
        losses, seen = [], 0
        for batch in self._epoch_batches():
            if len(batch) < 2:
                continue  # batch norm cannot train on one crop
            x = crop_tensor(ctx.train.images[batch], ctx.device)
            if ctx.options.get("augment", True):
                x = augment(x, self.generator)
            y = torch.as_tensor(labels_all[batch], device=ctx.device)
            losses.append(self.step(x, y))
            seen += len(batch)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(epoch=f"{epoch + 1}/{ctx.epochs}", loss=f"{losses[-1]:.3f}")
        row: dict[str, Any] = {
            "stage": self.spec.stage,
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "lr": self.optimizer.param_groups[0]["lr"],
            "samples": seen,
        }
        every = int(ctx.options.get("cdb_every", 1))
        if isinstance(ctx.sampler, samplers.CDBSampler) and (epoch + 1) % every == 0:
            ctx.difficulty = held_out_difficulty(ctx)
            ctx.sampler.update_difficulty(ctx.difficulty)
            row["cdb_difficulty"] = [round(float(d), 4) for d in ctx.difficulty]
        if self.spec.epoch_end is not None:
            row.update(self.spec.epoch_end(ctx, epoch))
        row["seconds"] = round(time.perf_counter() - start, 3)
        self.history.append(row)
        return row

    def finish(self) -> None:
        """Apply the method's post-hoc head (if any) and put the model in eval mode."""
        if self.spec.finish is not None:
            head: Head = self.spec.finish(self.ctx)
            self.ctx.model.head = head.module
            self.head = head.config
        self.ctx.model.eval()


def held_out_difficulty(ctx: MethodContext) -> np.ndarray:
    """``(K,)`` difficulty ``1 - recall`` on ``ctx.held_out`` (eval mode); 1 for a class with no held-out crop."""
    held = ctx.train.subset(ctx.held_out)
    logits = eval_logits(ctx.model, held, device=ctx.device)
    recall = per_class_recall(logits.argmax(1), torch.as_tensor(np.asarray(held.labels)), ctx.num_classes)
    return np.nan_to_num(1.0 - recall.numpy(), nan=1.0).clip(0.0, 1.0)


def _check_options(spec: MethodSpec, options: dict[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    allowed = {**LOOP_OPTIONS, **spec.options}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"method {spec.name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(map(repr, sorted(allowed)))}"
        )
    sampler = options.get("sampler")
    if sampler is not None and sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))}; got {sampler!r}")
    return options


def _new_model(num_classes: int, width: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return CellClassifier(num_classes, width=width)


def _check_crops(train: Any, val: Any) -> int:
    k = len(train.class_names)
    if len(train) < 2:
        raise ValueError(f"train_classifier: need at least 2 training crops; got {len(train)}")
    if k < 2:
        raise ValueError(f"train_classifier: need at least 2 classes; got {k}")
    if val is not None and tuple(val.class_names) != tuple(train.class_names):
        raise ValueError(
            f"train_classifier: val classes {list(val.class_names)} differ from train classes {list(train.class_names)}"
        )
    return k


def prepare_stage(
    method: str,
    train: Any,
    val: Any = None,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    width: int = 16,
    seed: int = 0,
    progress: bool = False,
    options: dict[str, Any] | None = None,
    init: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> Stage:
    """Set up ``method``'s stage (arguments as :func:`train_classifier`): the model (a copy of ``init``; for a
    stage-2 method without ``init``, a ``ce`` model trained first; the method's ``build_model``; else a new
    ``CellClassifier``), the method's head, loss, held-out crops, sampler and optimiser. Nothing of this stage is
    trained yet (a ``build_model`` may have pre-trained the network)."""
    spec = get_method(method)
    options = _check_options(spec, options)
    num_classes = _check_crops(train, val)
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0; got {epochs}")
    device = torch.device(device)
    history: list[dict[str, Any]] = []
    ctx = MethodContext(
        model=None,
        train=train,
        val=val,
        counts=np.asarray(train.counts(), dtype=np.int64),
        options=options,
        epochs=int(epochs),
        seed=int(seed),
        device=device,
        batch_size=int(batch_size),
        width=int(width),
        progress=bool(progress),
    )
    if init is not None:
        if int(getattr(init, "num_classes", -1)) != num_classes:
            raise ValueError(
                f"init has {getattr(init, 'num_classes', '?')} classes; the crops have {num_classes}"
            )
        model = copy.deepcopy(init).to(device)
    elif spec.stage == 2:
        stage1_options = {
            k: v for k, v in options.items() if k in LOOP_OPTIONS and k not in ("sampler", "stage1_epochs")
        }
        first = train_classifier(
            train,
            None,
            method="ce",
            epochs=int(options.get("stage1_epochs") or epochs),
            batch_size=batch_size,
            lr=lr,
            width=width,
            seed=seed,
            progress=progress,
            options=stage1_options,
            device=device,
        )
        model, history = first.model, first.history
    elif spec.build_model is not None:
        built = spec.build_model(ctx)
        model, history = built.module.to(device), list(built.history)
        if int(getattr(model, "num_classes", -1)) != num_classes:
            raise ValueError(
                f"method {spec.name!r} built a model of {getattr(model, 'num_classes', '?')} classes"
            )
    else:
        model = _new_model(num_classes, width, seed).to(device)
    ctx.model = model
    if spec.build_head is not None:
        torch.manual_seed(seed)
        head = spec.build_head(ctx)
        model.head = head.module.to(device)
        head_config = head.config
    elif isinstance(model.head, nn.Linear):
        head_config = {"type": "linear"}
    else:
        raise ValueError(
            f"method {spec.name!r} trains a linear head; init's head is {type(model.head).__name__}"
        )
    ctx.loss = (spec.build_loss(ctx) if spec.build_loss is not None else CrossEntropyLoss()).to(device)
    if spec.trains != "none":
        sampler = options.get("sampler") or spec.sampler
        held = float(options.get("cdb_held_out", cdb.HELD_OUT)) if sampler == "cdb" else spec.held_out
        if held:
            ctx.held_out = samplers.held_out_indices([{int(y)} for y in train.labels], held, seed=seed)
        if spec.build_sampler is not None and not options.get("sampler"):
            ctx.sampler = spec.build_sampler(ctx)
        else:
            ctx.sampler = make_sampler(
                sampler,
                np.asarray(train.labels),
                num_classes,
                seed=seed,
                held_out=ctx.held_out,
                rfs_thr=options.get("rfs_thr", RFS_THR),
                cdb_tau=options.get("cdb_tau", cdb.CDB_TAU),
            )
    return Stage(spec, ctx, head_config, lr=lr, batch_size=batch_size, history=history)


def train_classifier(
    train: Any,
    val: Any = None,
    *,
    method: str = "ce",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    width: int = 16,
    seed: int = 0,
    progress: bool = True,
    options: dict[str, Any] | None = None,
    init: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train a cell classifier on ``train`` (a ``CropSet``) with ``method``; report on ``val`` when given.

    Args:
        train, val: crop sets with the same class table.
        method: a name of :data:`cytolt.classify.methods.METHODS` (docs/classify_methods.md).
        epochs: epochs of the method's stage (for a stage-2 method, of the second stage; a training-free one
            ignores it).
        batch_size, lr: crops per step; AdamW learning rate (SGD methods use ``options["sgd_lr"]``, stages that
            train the head alone ``options["head_lr"]``).
        width: ``CellClassifier`` width (features ``8 * width``); ignored with ``init``.
        seed: seeds the weights, the sampler and the augmentation.
        progress: a tqdm bar over the steps (stderr).
        options: loop options (:data:`LOOP_OPTIONS`) and the method's (``MethodSpec.options``); an unknown name
            is an error.
        init: a trained ``CellClassifier`` to start from (copied, never changed): the stage-1 model of a stage-2
            method, else the initial weights.
        device: where to train.
    """
    start = time.perf_counter()
    stage = prepare_stage(
        method,
        train,
        val,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        width=width,
        seed=seed,
        progress=progress,
        options=options,
        init=init,
        device=device,
    )
    if stage.optimizer is not None and epochs > 0:
        with tqdm(total=stage.total_steps, desc=method, disable=not progress, leave=False) as bar:
            for epoch in range(epochs):
                stage.run_epoch(epoch, progress=bar)
    stage.finish()
    report = None
    if val is not None and len(val):
        probs = torch.softmax(eval_logits(stage.ctx.model, val, device=stage.ctx.device).double(), dim=1)
        report = classification_report(
            probs.cpu().numpy(), np.asarray(val.labels), stage.ctx.counts, class_names=train.class_names
        )
    return TrainResult(
        model=stage.ctx.model,
        method=method,
        head=stage.head,
        history=stage.history,
        val_report=report,
        seconds=time.perf_counter() - start,
    )
