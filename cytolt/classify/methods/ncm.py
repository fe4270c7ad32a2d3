"""Nearest class mean classifier, NCM (Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020, arXiv 1910.09217).

A training-free second stage: the class means of the L2-normalised stage-1 features of the training crops
(eval mode, no augmentation) replace the linear classifier, and a crop goes to the class whose mean is nearest in
cosine similarity. Each class counts once whatever its size, which is why NCM is hardly biased to head classes.

Adapted for cell crops: the logits are ``cos(f, mu_c) / temperature`` so that a softmax gives usable probabilities
for the report and for screening (Kang et al. only take the arg-max); ``temperature = 1/16`` puts the logits on the
scale of the cosine classifiers of the long-tail literature (Causal TDE's ``tau = 16``). The arg-max, and so every
accuracy, does not depend on it; the calibration (ECE, NLL) does. A class without a training crop has a zero mean
and scores a cosine of 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec, eval_features

__all__ = ["NCM", "TEMPERATURE", "NCMHead", "build_ncm_head", "class_means", "ncm_logits"]

TEMPERATURE = 1.0 / 16.0


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def class_means(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``(K, D)`` mean of the L2-normalised ``features (N, D)`` of each class (``labels (N,)`` in ``0..K-1``);
    a row of zeros for a class without samples. The means are not re-normalised (``ncm_logits`` does it)."""
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"class_means: features must be (N, D) and labels (N,); got {tuple(features.shape)}, {tuple(labels.shape)}"
        )
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"class_means: labels must lie in 0..{num_classes - 1}")
    sums = features.new_zeros(num_classes, features.size(1)).index_add_(0, labels, _unit(features))
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    return sums / counts.clamp_min(1).reshape(-1, 1)


def ncm_logits(features: Tensor, means: Tensor, *, temperature: float = TEMPERATURE) -> Tensor:
    """``(N, K)`` cosine similarity of each feature ``(N, D)`` to each class mean ``(K, D)``, over ``temperature``."""
    if not temperature > 0:
        raise ValueError(f"ncm_logits: temperature must be > 0; got {temperature}")
    return _unit(features) @ _unit(means).t() / temperature


class NCMHead(nn.Module):
    """``(N, D) -> (N, K)`` NCM logits; the class means live in the ``means`` buffer (saved with the model)."""

    def __init__(self, means: Tensor, *, temperature: float = TEMPERATURE) -> None:
        super().__init__()
        if means.dim() != 2:
            raise ValueError(f"NCMHead: means must be (K, D); got {tuple(means.shape)}")
        if not temperature > 0:
            raise ValueError(f"NCMHead: temperature must be > 0; got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("means", means.detach().clone().float())

    def forward(self, x: Tensor) -> Tensor:
        return ncm_logits(x, self.means, temperature=self.temperature)

    def extra_repr(self) -> str:
        k, d = self.means.shape
        return f"num_classes={k}, feature_dim={d}, temperature={self.temperature}"


def _finish(ctx: MethodContext) -> Head:
    features = eval_features(ctx.model, ctx.train, device=ctx.device)
    labels = torch.as_tensor(np.asarray(ctx.train.labels), device=features.device)
    temperature = float(NCM.option(ctx, "temperature"))
    means = class_means(features, labels, ctx.num_classes)
    return Head(NCMHead(means, temperature=temperature), {"type": "ncm", "temperature": temperature})


def build_ncm_head(feature_dim: int, num_classes: int, *, temperature: float) -> nn.Module:
    """The folder's builder for ``{"type": "ncm", "temperature": t}`` (means from the file)."""
    return NCMHead(torch.zeros(num_classes, feature_dim), temperature=float(temperature))


NCM = MethodSpec(
    name="ncm",
    paper="Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020 (NCM)",
    stage=2,
    trains="none",
    finish=_finish,
    options={"temperature": TEMPERATURE},
)
