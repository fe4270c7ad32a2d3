"""Learnable weight scaling, LWS (Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020, arXiv 1910.09217).

The second stage of decoupled training: representation and classifier weights stay as the first stage learned
them (instance-balanced sampling), and only one scale per class is learned, ``z'_c = s_c z_c``, on class-balanced
data. The scales correct the classifier's norm bias (frequent classes get larger weight norms) without moving its
decision directions. ``tau``-normalisation is the training-free counterpart (``cytolt.calibration.tau_norm``).

For a detector's softmax classifier the background output is a class like the others and gets its own scale; the
scale multiplies the whole logit, bias included (Kang et al. drop the bias; a detector's background bias carries
the foreground/background balance, so it is kept and scaled with its class).

Shapes: the wrapped layer's output has its ``K`` classes on dim 1: ``(R, K)`` for a RoI head's ``nn.Linear``,
``(N, R K, H, W)`` for a dense head's conv with ``R`` anchors per location (``scale`` repeats per anchor).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LWSClassifier", "lws_logits"]


def lws_logits(logits: Tensor, scale: Tensor) -> Tensor:
    """``logits * scale`` along dim 1, ``scale (K,)`` repeated over ``R`` anchor groups when dim 1 is ``R K``."""
    k = scale.numel()
    if logits.size(1) % k:
        raise ValueError(f"LWS: {logits.size(1)} outputs are not groups of {k} class scales")
    layout = scale.to(logits.dtype).repeat(logits.size(1) // k)
    return logits * layout.reshape(1, -1, *([1] * (logits.dim() - 2)))


class LWSClassifier(nn.Module):
    """A frozen classifier layer whose outputs are multiplied by learned per-class scales (LWS).

    Args:
        classifier: the layer (``nn.Linear``, ``nn.Conv2d``, a cosine classifier); its parameters are frozen
            (``requires_grad=False``) when ``freeze`` is true.
        num_classes: ``K``, the number of scales (the layer's outputs, or one anchor group of them); the scales
            start at 1, so the wrapped model first scores exactly as the layer does.
        freeze: freeze the layer's own parameters (the method); ``False`` leaves them to the caller.

    ``scale`` is an ``nn.Parameter`` of shape ``(K,)``. A state dict of the bare layer (a first-stage checkpoint:
    ``<prefix>weight``, ``<prefix>bias``) loads into this wrapper: its keys are moved under ``classifier.``.
    """

    def __init__(self, classifier: nn.Module, num_classes: int, *, freeze: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"LWSClassifier: num_classes must be >= 1; got {num_classes}")
        self.classifier = classifier
        self.scale = nn.Parameter(torch.ones(num_classes))
        if freeze:
            for p in classifier.parameters():
                p.requires_grad_(False)
        self._register_load_state_dict_pre_hook(self._from_bare_layer)

    def _from_bare_layer(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        # A first-stage checkpoint holds the layer itself at <prefix>weight; this module holds it one level down.
        for name in list(state):
            rest = name[len(prefix) :]
            if name.startswith(prefix) and "." not in rest and rest != "scale":
                state[f"{prefix}classifier.{rest}"] = state.pop(name)

    @property
    def num_classes(self) -> int:
        return self.scale.numel()

    def forward(self, x: Tensor) -> Tensor:
        return lws_logits(self.classifier(x), self.scale)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"
