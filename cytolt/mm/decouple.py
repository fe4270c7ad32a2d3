"""Decoupled training for detectors (Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020): cRT, LWS and tau-norm on an mmdet model.

Stage 1 trains the whole detector with the usual (instance-balanced) sampling. Stage 2 starts from its checkpoint
(``load_from``) and re-balances only the classifier:

- **cRT**: the classifier is re-initialised and retrained, everything else frozen, on class-balanced image
  sampling: ``ClassifierRetrainHook`` + ``ClassBalancedSampler``.
- **LWS**: the classifier is kept and a scale per class is learned on top of it, everything else frozen:
  ``LWSPredictor`` (a ``cls_predictor_cfg``) + ``ClassifierRetrainHook(trainable=[...scale], reinit=[])``.
- **tau-norm**: no training; the class rows of the classifier weight are divided by their norms to the power
  tau, tau swept on the val split: :func:`cytolt.mm.tau_norm.tau_norm_sweep` (``scripts/tau_norm_sweep.py``).

Registered on import: ``HOOKS`` ``ClassifierRetrainHook``; ``DATA_SAMPLERS`` ``ClassBalancedSampler``; ``MODELS``
``LWSPredictor``.

Glossary
    module pattern   an ``fnmatch`` pattern over ``model.named_modules()`` / ``named_parameters()`` names, e.g.
                     ``roi_head.bbox_head.fc_cls`` (Mask / Faster R-CNN), ``roi_head.bbox_head.*.fc_cls`` (every
                     Cascade stage), ``bbox_head.retina_cls`` (RetinaNet).
    class-balanced   an image is drawn with probability ``(1 / C') sum_{c in image} 1 / n_c`` (``n_c`` training
                     images holding class ``c``, ``C'`` classes present): pick a class uniformly, then one of its
                     images uniformly, Kang et al.'s class-balanced sampling for multi-label images.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmdet.registry import DATA_SAMPLERS, HOOKS, MODELS
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from cytolt import samplers
from cytolt.calibration import tau_norm_classifier
from cytolt.losses.lws import LWSClassifier
from cytolt.mm.samplers import _seed, dataset_image_classes

__all__ = [
    "ClassBalancedSampler",
    "ClassifierRetrainHook",
    "LWSPredictor",
    "apply_tau_norm",
    "class_balanced_image_weights",
    "classifier_layers",
]

_CHECKPOINT_KEY = "classifier_retrain"


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


# ---------------------------------------------------------------------------------------------- sampling


def class_balanced_image_weights(image_classes: Sequence[set[int]], num_classes: int) -> Tensor:
    """``(N,)`` float64 image weights ``sum_{c in image} 1 / n_c`` (summing to the number of present classes).

    ``n_c`` is the number of images holding class ``c``; an image without classes gets 0 (it cannot be reached by
    picking a class first). Raises a ValueError when no image has a class.
    """
    # (image, class) pairs, one per class present in an image: one bincount and one scatter, no loop over tensors.
    pairs = [(i, c) for i, classes in enumerate(image_classes) for c in set(classes)]
    bad = next(((i, c) for i, c in pairs if not 0 <= c < num_classes), None)
    if bad is not None:
        raise ValueError(f"image {bad[0]} has class {bad[1]}, outside 0..{num_classes - 1}")
    if not pairs:
        raise ValueError("class-balanced sampling: no image has an annotated class")
    image_of, class_of = torch.tensor(pairs, dtype=torch.long).t()
    counts = torch.bincount(class_of, minlength=num_classes).double()
    weights = torch.zeros(len(image_classes), dtype=torch.float64)
    return weights.scatter_add_(0, image_of, 1.0 / counts[class_of])


@DATA_SAMPLERS.register_module(name="ClassBalancedSampler")
class ClassBalancedSampler(samplers._EpochSampler):
    """Class-balanced image sampling (module glossary), with replacement, ``num_samples`` per epoch.

    Args:
        dataset: mmdet dataset; given by the Runner (classes from ``get_cat_ids``).
        num_classes: C; ``None`` takes ``len(dataset.metainfo['classes'])``.
        num_samples: draws per epoch over all ranks (default: the dataset size).
        seed: given by the Runner; ``None`` draws one seed shared by all ranks.
        infinite: as cytolt's other samplers.
    """

    def __init__(
        self,
        *,
        dataset: Any,
        num_classes: int | None = None,
        num_samples: int | None = None,
        seed: int | None = None,
        infinite: bool = False,
    ) -> None:
        rank, world_size = get_dist_info()
        super().__init__(seed=_seed(seed), rank=rank, world_size=world_size, infinite=infinite)
        if num_classes is None:
            classes = dataset.metainfo.get("classes")
            if not classes:
                raise ValueError(
                    f"ClassBalancedSampler: {type(dataset).__name__}.metainfo has no 'classes'; pass num_classes"
                )
            num_classes = len(classes)
        self.dataset = dataset
        self.image_weights = class_balanced_image_weights(dataset_image_classes(dataset), num_classes)
        self.num_samples = len(self.image_weights) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"ClassBalancedSampler: num_samples must be >= 1; got {num_samples}")

    def _epoch_indices(self, generator: torch.Generator) -> Tensor:
        return torch.multinomial(self.image_weights, self.num_samples, replacement=True, generator=generator)

    def _expected_epoch_size(self) -> float:
        return float(self.num_samples)


# ---------------------------------------------------------------------------------------------- cRT / LWS


@HOOKS.register_module()
class ClassifierRetrainHook(Hook):
    """Stage 2 of decoupled training: freeze all but the classifier, and (cRT) re-initialise it.

    At ``before_train`` (after ``load_from`` has loaded the stage-1 weights) every parameter whose name does not
    match ``trainable`` (itself, or a module it lies in) gets ``requires_grad=False``; the optimiser then skips it
    (no gradient, so no update and no weight decay). Layers matching ``reinit`` get ``normal(0, init_std)``
    weights and ``bias_init`` biases. Batch-norm layers with no trainable parameter are held in eval mode before
    every iteration, so their running statistics stay stage 1's too (a frozen representation).

    A checkpoint of stage 2 records that the classifier was re-initialised (key ``'classifier_retrain'``):
    resuming it does not re-initialise again.

    Args:
        trainable: module or parameter patterns left to train (default mmdet's two-stage classifier).
        reinit: module patterns re-initialised (default: ``trainable``; ``[]`` for LWS).
        init_std: std of the new weights (0.01, mmdet's ``fc_cls`` init).
        bias_init: value of the new biases (0 for softmax heads).
    """

    priority = "NORMAL"

    def __init__(
        self,
        *,
        trainable: Sequence[str] = ("roi_head.bbox_head.fc_cls",),
        reinit: Sequence[str] | None = None,
        init_std: float = 0.01,
        bias_init: float = 0.0,
    ) -> None:
        if not trainable:
            raise ValueError("ClassifierRetrainHook: trainable must name at least one module or parameter")
        self.trainable = list(trainable)
        self.reinit = list(self.trainable if reinit is None else reinit)
        self.init_std = init_std
        self.bias_init = bias_init
        self._frozen_norms: list[nn.Module] = []
        self._resumed_stage_two = False

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        self._resumed_stage_two = bool(checkpoint.get(_CHECKPOINT_KEY, {}).get("reinitialised"))

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        checkpoint[_CHECKPOINT_KEY] = {"reinitialised": bool(self.reinit)}

    def before_train(self, runner: Any) -> None:
        model = _unwrap(runner.model)
        if not runner.cfg.get("load_from") and not runner.cfg.get("resume"):
            runner.logger.warning(
                "ClassifierRetrainHook: no load_from checkpoint; the classifier is retrained on a randomly "
                "initialised, frozen network (set load_from to the stage-1 checkpoint)"
            )
        kept = self.freeze(model)
        if self.reinit and not self._resumed_stage_two:
            names = self.reinitialise(model)
            runner.logger.info(f"ClassifierRetrainHook: re-initialised {names}")
        runner.logger.info(
            f"ClassifierRetrainHook: training {sum(p.numel() for p in kept)} parameters "
            f"({len(kept)} tensors); the rest is frozen"
        )

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        for norm in self._frozen_norms:  # the loop's model.train() would update their running statistics
            norm.eval()

    def freeze(self, model: nn.Module) -> list[nn.Parameter]:
        """Set ``requires_grad`` from ``trainable``; returns the trainable parameters (an error if none)."""
        modules = [n for n, _ in model.named_modules() if n and _matches(n, self.trainable)]
        kept = []
        for name, param in model.named_parameters():
            train = _matches(name, self.trainable) or any(name.startswith(m + ".") for m in modules)
            param.requires_grad_(train)
            if train:
                kept.append(param)
        if not kept:
            raise ValueError(
                f"ClassifierRetrainHook: no parameter matches trainable={self.trainable}; module names look like "
                f"{[n for n, _ in model.named_modules()][1:6]}"
            )
        self._frozen_norms = [
            m
            for m in model.modules()
            if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters())
        ]
        return kept

    def reinitialise(self, model: nn.Module) -> list[str]:
        """Fresh weights for the layers matching ``reinit``; returns their names."""
        names = []
        for name, module in model.named_modules():
            if not (name and _matches(name, self.reinit)):
                continue
            layer = getattr(module, "classifier", module)  # an IIF / LWS wrapper: its inner layer
            if not isinstance(getattr(layer, "weight", None), Tensor):
                raise ValueError(f"ClassifierRetrainHook: {name} has no weight to re-initialise")
            nn.init.normal_(layer.weight, 0.0, self.init_std)
            if getattr(layer, "bias", None) is not None:
                nn.init.constant_(layer.bias, self.bias_init)
            names.append(name)
        if not names:
            raise ValueError(f"ClassifierRetrainHook: no module matches reinit={self.reinit}")
        return names


@MODELS.register_module()
class LWSPredictor(LWSClassifier):
    """The class predictor of a two-stage ``BBoxHead`` with learned per-class scales (LWS, Kang et al. 2020):
    ``cls_predictor_cfg=dict(type='LWSPredictor')``. One scale per output (classes and background).

    A stage-1 checkpoint's ``fc_cls.weight`` / ``fc_cls.bias`` load into it (``LWSClassifier``); the scales start
    at 1. Train with ``ClassifierRetrainHook(trainable=['roi_head.bbox_head.fc_cls.scale'], reinit=[])``.

    Args:
        in_features, out_features: from the head.
        predictor: config of the wrapped layer, default ``dict(type='Linear')``.
        freeze: freeze the wrapped layer (default).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        predictor: Mapping[str, Any] | None = None,
        freeze: bool = True,
    ) -> None:
        layer = MODELS.build(
            dict(predictor or dict(type="Linear"), in_features=in_features, out_features=out_features)
        )
        super().__init__(layer, out_features, freeze=freeze)


# ---------------------------------------------------------------------------------------------- tau-norm


def classifier_layers(model: nn.Module, pattern: str) -> dict[str, tuple[int, int]]:
    """``{weight key: (num_classes, extra rows per group)}`` of the classifier layers matching ``pattern``.

    The class count is the nearest enclosing head's ``num_classes``; a dense head's ``num_base_priors`` anchors
    each hold ``C + extra`` rows (extra = 1 for a softmax head's background, 0 for sigmoid).
    """
    model = _unwrap(model)
    modules = dict(model.named_modules())
    found = {}
    for name, module in modules.items():
        if not (name and fnmatch.fnmatchcase(name, pattern)):
            continue
        inner = "classifier." if isinstance(getattr(module, "classifier", None), nn.Module) else ""
        layer = getattr(module, "classifier", module)
        parts = name.split(".")
        head = next(
            (
                modules[".".join(parts[:k])]
                for k in range(len(parts) - 1, 0, -1)
                if hasattr(modules[".".join(parts[:k])], "num_classes")
            ),
            None,
        )
        if head is None or not isinstance(getattr(layer, "weight", None), Tensor):
            raise ValueError(f"tau-norm: {name} is not a classifier layer inside a head with num_classes")
        groups = int(getattr(head, "num_base_priors", 1))
        rows = layer.weight.shape[0]
        extra = rows // groups - head.num_classes
        if rows % groups or extra < 0:
            raise ValueError(
                f"tau-norm: {name} has {rows} rows, not {groups} groups of >= {head.num_classes}"
            )
        found[f"{name}.{inner}weight"] = (int(head.num_classes), int(extra))
    if not found:
        raise ValueError(f"tau-norm: no module of the model matches {pattern!r}")
    return found


def apply_tau_norm(
    state: Mapping[str, Tensor], layers: Mapping[str, tuple[int, int]], tau: float
) -> dict[str, Tensor]:
    """A copy of ``state`` whose classifier weights (``layers``, from :func:`classifier_layers`) are tau-normalised
    (``cytolt.calibration.tau_norm_classifier``: class rows only, mean class norm kept; biases unchanged)."""
    out = dict(state)
    for key, (num_classes, extra) in layers.items():
        if key not in out:
            raise KeyError(f"tau-norm: the weights have no {key!r}")
        out[key] = tau_norm_classifier(out[key], tau, num_classes=num_classes, extra=extra)
    return out
