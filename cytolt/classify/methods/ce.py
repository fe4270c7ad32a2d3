"""Plain softmax cross-entropy, the baseline, alone and with the re-balancing samplers.

``ce`` trains with instance sampling (every crop once per epoch). ``class_balanced`` (each class equally likely,
Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR 2020, arXiv
1910.09217), ``sqrt`` (``p_c`` proportional to ``n_c^0.5``, the same paper's square-root sampling) and ``rfs``
(repeat-factor sampling, Gupta et al., "LVIS: A Dataset for Large Vocabulary Instance Segmentation", CVPR 2019,
arXiv 1908.03195) change only the sampler: the rows measure what re-sampling alone does.
"""

from __future__ import annotations

from torch import Tensor, nn

from cytolt.classify.methods.spec import MethodSpec
from cytolt.losses._common import cross_entropy_rows

__all__ = ["CE", "CLASS_BALANCED", "RFS", "SQRT", "CrossEntropyLoss"]


class CrossEntropyLoss(nn.Module):
    """Mean softmax cross-entropy, ``loss(logits (N, K), labels (N,)) -> scalar`` (stateless)."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return cross_entropy_rows(logits, labels).mean()


CE = MethodSpec(name="ce", paper="softmax cross-entropy, instance sampling (baseline)")
CLASS_BALANCED = MethodSpec(
    name="class_balanced",
    paper="Kang et al., Decoupling Representation and Classifier, ICLR 2020 (class-balanced sampling)",
    sampler="class_balanced",
)
SQRT = MethodSpec(
    name="sqrt",
    paper="Kang et al., Decoupling Representation and Classifier, ICLR 2020 (square-root sampling)",
    sampler="sqrt",
)
RFS = MethodSpec(
    name="rfs",
    paper="Gupta et al., LVIS, CVPR 2019 (repeat-factor sampling)",
    sampler="rfs",
)
