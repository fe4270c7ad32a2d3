"""Channel whitening of the classifier's input (Zhang et al., "You Only Need End-to-End Training for Long-Tailed
Recognition", arXiv 2112.05958, withdrawn; extended as "Covariance-corrected Whitening Alleviates Network
Degeneration on Imbalanced Classification", Zhiwei Zhang, arXiv 2408.17197).

The paper's finding: trained end to end on long-tailed data, the features entering the linear classifier are
highly correlated across channels (low rank), which couples the updates of the class weights and skews the
decision boundary towards the head. Its remedy is ZCA whitening of the batch of features right before the
classifier, as batch normalisation but decorrelating: ``x_hat = W (x - mu)`` with ``W = Sigma^{-1/2}`` the
symmetric (ZCA) inverse square root of the batch covariance; running statistics are used at test time.

Two registry methods: ``whitening`` (the whitened head on instance-sampled batches) and ``whitening_b3rs``, the
paper's full method, whose ``build_sampler`` hook gives the loop BET batches with B3RS batches embedded
(:mod:`cytolt.classify.b3rs`).

Glossary
    features  (N, D) float, the backbone's pooled output (the classifier's input).
    group     whitening is block-diagonal over ``G = D / g`` groups of ``g`` consecutive channels (Huang et al.,
              "Decorrelated Batch Normalization", CVPR 2018): a batch of N samples estimates a g x g covariance
              far better than a D x D one, and N < D would leave the full covariance singular.
    mean      (D,) per-channel mean.
    matrix    (G, g, g) whitening matrices, one per group (a (D, D) matrix is read as G = 1).

What was adapted and why (the papers' method sections were not available to us; the abstracts and an open
review of arXiv 2408.17197 were): the paper's ZCA form is kept and computed by ``torch.linalg.eigh`` with a
backward written from the spectral divided differences of ``lambda^{-1/2}`` (exact, and finite where eigenvalues
coincide, where eigh's own backward divides by zero); Newton-Schulz iterations (IterNorm, Huang et al., CVPR
2019) are offered as ``method="newton"``. The group size (16), ``eps`` and the running-matrix average (an
exponential moving average of the batch whitening matrices, DBN's choice) are ours. No affine transform
follows the whitening: the linear classifier after it absorbs one.

Limiting case: ZCA is the only whitening matrix that is symmetric, so features whose batch covariance is
already the identity come out only centred (scaled by ``1 / sqrt(1 + eps)``), not rotated; PCA whitening would
rotate them onto the eigenvectors.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from cytolt.classify import b3rs
from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec
from cytolt.losses.logit_adjusted import TAU, LogitAdjustedLoss

# Whitening groups of 16 channels (DBN's group size for its CNNs, Huang et al. 2018): a batch of 64 crops
# estimates a 16 x 16 covariance well, and a width-16 CellClassifier's 128 features make 8 groups.
GROUP_SIZE = 16
# Added to the covariance's diagonal; larger than DBN's 1e-5 because pooled ReLU features of tiny crop batches
# can leave channels with almost no variance, which a small eps would blow up at test time.
EPS = 1e-3
# Newton-Schulz iterations of IterNorm (Huang et al., CVPR 2019, T = 5).
ITERATIONS = 5
METHODS = ("zca", "newton")


def batch_mean_covariance(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(D,)`` and biased covariance ``(D, D)`` (divided by N, as batch normalisation) of ``(N, D)``."""
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {tuple(features.shape)}")
    mean = features.mean(dim=0)
    centred = features - mean
    return mean, centred.T @ centred / features.shape[0]


def group_covariances(cov: Tensor, group_size: int) -> Tensor:
    """The ``G`` diagonal blocks ``(G, g, g)`` of a ``(D, D)`` covariance, ``g = group_size``, ``D = G g``."""
    d = cov.shape[-1]
    if group_size < 1 or d % group_size:
        raise ValueError(f"group_size must divide the feature dimension {d}; got {group_size}")
    g = d // group_size
    blocks = cov.reshape(g, group_size, g, group_size)
    return torch.diagonal(blocks, dim1=0, dim2=2).permute(2, 0, 1)


class _InverseSqrtPSD(torch.autograd.Function):
    """``A^{-1/2}`` of symmetric positive definite ``A (..., g, g)`` through eigh.

    Backward: for ``F = U f(L) U^T`` the gradient is ``U ((U^T G_sym U) o K) U^T`` with ``K_ij`` the divided
    difference ``(f(l_i) - f(l_j)) / (l_i - l_j)``; for ``f = l^{-1/2}`` it equals
    ``-1 / (sqrt(l_i) sqrt(l_j) (sqrt(l_i) + sqrt(l_j)))``, which has no cancellation and is ``f'(l_i)`` on the
    diagonal, so repeated eigenvalues are no problem.
    """

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:  # type: ignore[override]
        eigenvalues, vectors = torch.linalg.eigh(a)
        # A is covariance + eps I, so eigenvalues are >= eps up to rounding; the clamp only guards the rounding.
        tiny = torch.finfo(a.dtype).eps * eigenvalues.abs().amax(dim=-1, keepdim=True)
        root = eigenvalues.clamp_min(0).clamp_min(tiny).sqrt()
        ctx.save_for_backward(root, vectors)
        return (vectors / root.unsqueeze(-2)) @ vectors.mT

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        root, vectors = ctx.saved_tensors
        sym = (grad + grad.mT) / 2
        inner = vectors.mT @ sym @ vectors
        ri, rj = root.unsqueeze(-1), root.unsqueeze(-2)
        kernel = -1.0 / (ri * rj * (ri + rj))
        out = vectors @ (inner * kernel) @ vectors.mT
        return (out + out.mT) / 2


def zca_matrix(cov: Tensor, *, eps: float = EPS) -> Tensor:
    """ZCA whitening matrix ``(cov + eps I)^{-1/2}`` of ``(..., g, g)`` covariances (symmetric)."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    return _InverseSqrtPSD.apply(cov + eps * eye)


def newton_schulz_matrix(cov: Tensor, *, eps: float = EPS, iterations: int = ITERATIONS) -> Tensor:
    """IterNorm's whitening matrix (Huang et al. 2019): Newton-Schulz steps towards ``(cov + eps I)^{-1/2}``.

    IterNorm: ``S = (cov + eps I) / tr``; ``P_0 = I``; ``P_k = (3 P_{k-1} - P_{k-1}^3 S) / 2``;
    ``W = P_T / sqrt(tr)``. The trace normalisation makes the iteration converge; few iterations whiten only
    approximately (the small eigenvalues converge last), which IterNorm argues also regularises. Computed in
    the coupled form ``T = (3 I - Z Y) / 2``, ``Y <- Y T``, ``Z <- T Z`` (``Y_0 = S``, ``Z_0 = I``; Higham,
    "Functions of Matrices", 2008, eq. 6.35), which gives the same iterates in exact arithmetic but, unlike
    IterNorm's form, does not blow rounding errors up once an ill-conditioned ``S`` has converged.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1; got {iterations}")
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    reg = cov + eps * eye
    trace = torch.diagonal(reg, dim1=-2, dim2=-1).sum(-1)[..., None, None]
    normed = reg / trace
    y, z = normed, eye.expand_as(reg)
    for _ in range(iterations):
        step = 1.5 * eye - 0.5 * z @ y
        y, z = y @ step, step @ z
    return z / trace.sqrt()


def whitening_matrix(
    cov: Tensor, *, method: str = "zca", eps: float = EPS, iterations: int = ITERATIONS
) -> Tensor:
    """The whitening matrix of ``(..., g, g)`` covariances by ``method`` ("zca" or "newton")."""
    if method == "zca":
        return zca_matrix(cov, eps=eps)
    if method == "newton":
        return newton_schulz_matrix(cov, eps=eps, iterations=iterations)
    raise ValueError(f"method must be one of {', '.join(repr(m) for m in METHODS)}; got {method!r}")


def whiten(features: Tensor, mean: Tensor, matrix: Tensor) -> Tensor:
    """``W_g (x_g - mu_g)`` for each group ``g``: ``(N, D)`` features, ``(D,)`` mean, ``(G, g, g)`` or ``(D, D)``."""
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {tuple(features.shape)}")
    blocks = matrix.unsqueeze(0) if matrix.ndim == 2 else matrix
    n, d = features.shape
    groups, g, g2 = blocks.shape
    if g != g2 or groups * g != d or mean.shape != (d,):
        raise ValueError(
            f"whiten: features (N, {d}) need mean ({d},) and matrix (G, g, g) with G g = {d}; "
            f"got mean {tuple(mean.shape)}, matrix {tuple(matrix.shape)}"
        )
    centred = (features - mean).reshape(n, groups, g)
    # Each row is multiplied by W_g; W is symmetric for ZCA, but Newton-Schulz is only nearly so: use W, not W^T.
    return torch.einsum("gij,ngj->ngi", blocks, centred).reshape(n, d)


class ChannelWhitening(nn.Module):
    """Group ZCA whitening of ``(N, D)`` features with BatchNorm's train/eval behaviour.

    Training: whitens with the batch's mean and covariance (gradients flow through both) and updates the
    running mean and running whitening matrix, ``r <- (1 - m) r + m batch`` with ``m = momentum`` (or the
    cumulative average when ``momentum`` is None). Eval: whitens with the running statistics, a fixed affine map.

    Args:
        num_features: D.
        group_size: channels per whitening group (must divide D; capped at D); None whitens all D channels
            together.
        eps: added to the covariance's diagonal.
        momentum: of the running statistics, as ``nn.BatchNorm1d``; None for the cumulative average.
        method: "zca" (eigh, exact; the paper's) or "newton" (IterNorm's Newton-Schulz approximation).
        iterations: Newton-Schulz steps (method "newton" only).
    """

    def __init__(
        self,
        num_features: int,
        *,
        group_size: int | None = GROUP_SIZE,
        eps: float = EPS,
        momentum: float | None = 0.1,
        method: Literal["zca", "newton"] = "zca",
        iterations: int = ITERATIONS,
    ) -> None:
        super().__init__()
        group_size = num_features if group_size is None else min(int(group_size), num_features)
        if num_features < 1 or group_size < 1 or num_features % group_size:
            raise ValueError(
                f"ChannelWhitening: group_size must divide num_features; got {group_size} and {num_features}"
            )
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(repr(m) for m in METHODS)}; got {method!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0; got {eps}")
        if momentum is not None and not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1] or None; got {momentum}")
        self.num_features = num_features
        self.group_size = group_size
        self.eps = float(eps)
        self.momentum = momentum
        self.method = method
        self.iterations = int(iterations)
        groups = num_features // group_size
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_matrix", torch.eye(group_size).repeat(groups, 1, 1))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        """Running mean 0, running matrices identity, no batch seen."""
        self.running_mean.zero_()
        self.running_matrix.copy_(torch.eye(self.group_size).expand_as(self.running_matrix))
        self.num_batches_tracked.zero_()

    def batch_statistics(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """This batch's mean ``(D,)`` and whitening matrices ``(G, g, g)``, differentiable."""
        mean, cov = batch_mean_covariance(features)
        blocks = group_covariances(cov, self.group_size)
        return mean, whitening_matrix(blocks, method=self.method, eps=self.eps, iterations=self.iterations)

    def forward(self, features: Tensor) -> Tensor:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"ChannelWhitening expects (N, {self.num_features}) features; got {tuple(features.shape)}"
            )
        if not self.training:
            return whiten(
                features, self.running_mean.to(features.dtype), self.running_matrix.to(features.dtype)
            )
        if features.shape[0] < 2:
            raise ValueError("ChannelWhitening needs more than one sample per batch in training mode")
        mean, matrix = self.batch_statistics(features)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
            self.running_matrix.lerp_(matrix.detach().to(self.running_matrix.dtype), m)
        return whiten(features, mean, matrix)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, group_size={self.group_size}, eps={self.eps}, momentum={self.momentum}, "
            f"method={self.method!r}"
        )


class WhitenedLinear(nn.Module):
    """The paper's classifier: channel whitening, then ``nn.Linear(D, K)``; ``(N, D) -> (N, K)`` logits."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        group_size: int | None = GROUP_SIZE,
        eps: float = EPS,
        momentum: float | None = 0.1,
        method: Literal["zca", "newton"] = "zca",
    ) -> None:
        super().__init__()
        self.whitening = ChannelWhitening(
            in_features, group_size=group_size, eps=eps, momentum=momentum, method=method
        )
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(self.whitening(features))


def build_whitened_linear_head(
    feature_dim: int, num_classes: int, *, group_size: int, eps: float, method: str
) -> nn.Module:
    """The folder's builder for ``{"type": "whitened_linear", ...}`` (weights and running statistics from the file)."""
    return WhitenedLinear(feature_dim, num_classes, group_size=group_size, eps=eps, method=method)  # type: ignore[arg-type]


def _head(ctx: MethodContext) -> Head:
    module = WhitenedLinear(
        ctx.model.feature_dim,
        ctx.num_classes,
        group_size=int(WHITENING.option(ctx, "group_size")),
        eps=float(WHITENING.option(ctx, "eps")),
        method=WHITENING.option(ctx, "whitening"),
    )
    layer = module.whitening
    config = {
        "type": "whitened_linear",
        "group_size": layer.group_size,
        "eps": layer.eps,
        "method": layer.method,
    }
    return Head(module, config)


def _loss(ctx: MethodContext) -> nn.Module:
    if (ctx.counts <= 0).any():
        raise ValueError(
            "whitening: every class needs a training crop (the logit adjustment takes log n_c / N)"
        )
    return LogitAdjustedLoss(ctx.priors, tau=float(WHITENING.option(ctx, "tau")))


# Channel whitening before a fresh linear classifier, trained end to end with a logit-margin loss: the paper
# pairs whitening with "logits margin-based" training; the logit-adjusted loss (Menon et al. 2021, tau 1) is our
# choice of that family. Instance sampling; whitening_b3rs below is the paper's full method with BET batches.
WHITENING = MethodSpec(
    name="whitening",
    paper="Zhang et al., You Only Need End-to-End Training for Long-Tailed Recognition, arXiv 2112.05958 (channel whitening)",
    build_head=_head,
    build_loss=_loss,
    options={"group_size": GROUP_SIZE, "eps": EPS, "whitening": "zca", "tau": TAU},
)


def _bet_sampler(ctx: MethodContext) -> b3rs.BatchEmbeddedSampler:
    # Held-out crops (none unless options["sampler"] is set, which replaces this sampler anyway) are not drawn:
    # the spec holds none out, and BET's own epoch covers every crop.
    embed = WHITENING_B3RS.option(ctx, "embed_size")
    return b3rs.BatchEmbeddedSampler(
        np.asarray(ctx.train.labels),
        batch_size=ctx.batch_size,
        embed_size=None if embed is None else int(embed),
        period=int(WHITENING_B3RS.option(ctx, "embed_period")),
        num_blocks=int(WHITENING_B3RS.option(ctx, "num_blocks")),
        power=float(WHITENING_B3RS.option(ctx, "block_power")),
        drop_last=True,
        seed=ctx.seed,
    )


# The paper's full method: the whitening head and loss trained on BET steps, each ``batch_size`` instance-sampled
# crops plus an embedded B3RS batch of ``embed_size`` (default ``batch_size // 2``) every ``embed_period`` steps,
# so each step's covariance is estimated from both; an epoch is ``floor(N / batch_size)`` steps.
WHITENING_B3RS = MethodSpec(
    name="whitening_b3rs",
    paper="Zhang et al., You Only Need End-to-End Training for Long-Tailed Recognition, arXiv 2112.05958 (whitening + B3RS/BET)",
    build_head=_head,
    build_loss=_loss,
    build_sampler=_bet_sampler,
    options={
        **WHITENING.options,
        "embed_size": None,
        "embed_period": 1,
        "num_blocks": b3rs.NUM_BLOCKS,
        "block_power": b3rs.POWER,
    },
)
