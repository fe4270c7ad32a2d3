"""LiVT (Xu et al., "Learning Imbalanced Data with Vision Transformers", CVPR 2023, arXiv 2212.02015): a ViT
pre-trained by masked generative pre-training on the training crops without their labels
(:mod:`cytolt.classify.mgp`), then fine-tuned with the balanced binary cross-entropy, Bal-BCE
(:mod:`cytolt.losses.balanced_bce`).

Bal-BCE is LiVT's loss as its code writes it: K independent sigmoids on one-hot targets, each logit shifted by
its class's prior log-odds ``log(pi_c / (1 - pi_c))`` with ``pi_c = n_c / N``, summed over the K classes and
averaged over the crops (``C * BCE-mean``); inference scores with the raw logits. Two registry methods:
``bal_bce`` is that fine-tuning stage on whatever model the loop trains (a ResNet by default, the loss alone);
``livt`` is LiVT itself, whose ``build_model`` hook pre-trains a :class:`~cytolt.classify.vit.TinyViT` by MGP on
the training crops (its epochs listed first in the history, stage ``"mgp"``) and hands it to the same fine-tuning.
At inference the K sigmoid scores are normalised to sum 1 (grad_libra's ``sigmoid_norm`` head), so the report
and screening get probabilities from a sigmoid-trained classifier.

Adapted for cell crops on CPU (documented in docs/classify_methods_whitening_livt.md): a 0.2 M-parameter ViT on
32-64 px crops instead of ViT-B/16 at 224 px; the training loop's recipe (AdamW, weight decay 0.05 as LiVT,
cosine decay without LiVT's 5 warm-up epochs, flips / rotations / brightness instead of RandAugment, mixup and
cutmix, no label smoothing, no layer-wise learning-rate decay).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from torch import nn

from cytolt.classify.methods.grad_libra import SigmoidNormHead
from cytolt.classify.methods.spec import BuiltModel, Head, MethodContext, MethodSpec, stage_one_linear
from cytolt.classify.mgp import DECODER_SIZES, MASK_RATIO, MGPResult, pretrain_mgp
from cytolt.classify.mgp import LR as MGP_LR
from cytolt.classify.vit import VIT_SIZES, TinyViT
from cytolt.losses.balanced_bce import BalancedBCELoss

__all__ = ["BAL_BCE", "LIVT", "MGP_EPOCHS", "balanced_bce_classification_loss", "pretrained_vit"]

# MGP epochs of livt: 2 shared cores pre-train the cpu-size ViT on ~750 crops of 32 px in about a minute.
MGP_EPOCHS = 20
FINETUNE_WEIGHT_DECAY = 0.05  # LiVT fine-tuning args


def balanced_bce_classification_loss(counts: np.ndarray) -> nn.Module:
    """Bal-BCE over K classes for ``loss(logits (N, K), labels (N,))``: sum over classes, mean over crops.

    ``pi_c = n_c / N`` must lie in (0, 1): every class needs a crop, and there must be at least two classes.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if len(counts) < 2 or (counts <= 0).any():
        raise ValueError(
            f"livt: Bal-BCE needs >= 2 classes, each with a training crop; got counts {counts.tolist()}"
        )
    # loss_weight K turns the element mean into LiVT's sum over the K sigmoids, averaged over crops.
    return BalancedBCELoss(counts / counts.sum(), loss_weight=float(len(counts)))


def _loss(ctx: MethodContext) -> nn.Module:
    return balanced_bce_classification_loss(ctx.counts)


def _finish(ctx: MethodContext) -> Head:
    return Head(
        SigmoidNormHead(copy.deepcopy(stage_one_linear(ctx, "bal_bce / livt"))), {"type": "sigmoid_norm"}
    )


BAL_BCE = MethodSpec(
    name="bal_bce",
    paper="Xu et al., Learning Imbalanced Data with Vision Transformers, CVPR 2023 (Bal-BCE alone; LiVT is livt)",
    weight_decay=FINETUNE_WEIGHT_DECAY,
    build_loss=_loss,
    finish=_finish,
)


def pretrained_vit(
    crops: Any,
    *,
    epochs: int = MGP_EPOCHS,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = MGP_LR,
    mask_ratio: float = MASK_RATIO,
    vit: dict[str, int] | None = None,
    decoder: dict[str, int] | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[TinyViT, MGPResult]:
    """A :class:`TinyViT` over ``crops``' classes whose backbone MGP pre-trained on ``crops.images`` (no labels).

    ``vit`` / ``decoder``: shapes as :func:`cytolt.classify.mgp.pretrain_mgp` takes them (``VIT_SIZES["gpu"]`` and
    ``DECODER_SIZES["gpu"]`` for the GPU setting); the head is a fresh linear layer.
    """
    result = pretrain_mgp(
        np.asarray(crops.images),
        epochs=epochs,
        mask_ratio=mask_ratio,
        seed=seed,
        batch_size=batch_size,
        lr=lr,
        vit=vit,
        decoder=decoder,
        device=device,
        progress=progress,
    )
    return TinyViT(len(crops.class_names), backbone=copy.deepcopy(result.backbone)).to(device), result


def _size(value: str | dict[str, int] | None, sizes: dict[str, dict[str, int]], what: str) -> dict[str, int]:
    if isinstance(value, str):
        if value not in sizes:
            raise ValueError(
                f"livt: {what} must be one of {', '.join(map(repr, sizes))} or a dict; got {value!r}"
            )
        return dict(sizes[value])
    return dict(value or sizes["cpu"])


def _pretrained_model(ctx: MethodContext) -> BuiltModel:
    model, mgp = pretrained_vit(
        ctx.train,
        epochs=int(LIVT.option(ctx, "mgp_epochs")),
        seed=ctx.seed,
        batch_size=ctx.batch_size,
        lr=float(LIVT.option(ctx, "mgp_lr")),
        mask_ratio=float(LIVT.option(ctx, "mask_ratio")),
        vit=_size(LIVT.option(ctx, "vit"), VIT_SIZES, "vit"),
        decoder=_size(LIVT.option(ctx, "decoder"), DECODER_SIZES, "decoder"),
        device=str(ctx.device),
        progress=ctx.progress,
    )
    return BuiltModel(model, [{"stage": "mgp", **row} for row in mgp.history])


# LiVT: MGP pre-training of a TinyViT on the training crops (no labels), then Bal-BCE fine-tuning of the whole ViT
# for ``epochs``. ``vit`` / ``decoder``: a size name ("cpu", "gpu") or a shape dict as pretrain_mgp takes it. With
# ``init`` the given model is fine-tuned and no MGP runs.
LIVT = MethodSpec(
    name="livt",
    paper="Xu et al., Learning Imbalanced Data with Vision Transformers, CVPR 2023 (MGP + Bal-BCE)",
    weight_decay=FINETUNE_WEIGHT_DECAY,
    build_model=_pretrained_model,
    build_loss=_loss,
    finish=_finish,
    options={
        "mgp_epochs": MGP_EPOCHS,
        "mgp_lr": MGP_LR,
        "mask_ratio": MASK_RATIO,
        "vit": "cpu",
        "decoder": "cpu",
    },
)
