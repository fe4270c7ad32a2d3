"""Multi-expert distribution calibration on frame features: a reconstruction of Hu, Gao and Xu's method for
z-stack crops (a clip is a cell's focal planes).

Paper: Yufan Hu, Junyu Gao, Changsheng Xu, "Learning Multi-Expert Distribution Calibration for Long-Tailed Video
Classification", IEEE Transactions on Multimedia, pp. 555-567 (DOI 10.1109/TMM.2023.3267887); preprint
arXiv 2205.10788 (2022, titled "Learning Muti-expert ..."). The paper is identified with confidence (title,
authors, venue, DOI); what could be read of it is the abstract and the keywords (long-tailed distribution,
video classification, multi-expert calibration, SMOTE). Its method section, equations and constants could not
be read from this project's machines, so this is NOT a reproduction: it is the closest well-defined reading of
the abstract, built from pieces whose formulas are published, and it is named for the paper only as such.

The abstract's two levels of distribution information, and what stands for each here:

* intra-class distribution ("the distribution of samples in each class"): a tail class has few clips, so its
  feature distribution is both narrow and badly estimated. Training clips of rare classes are replaced, with a
  probability that grows towards the tail, by synthetic clips drawn from a calibrated class distribution:
  SMOTE in feature space (Chawla et al., JAIR 2002; the paper's keyword), frame-aligned so a synthetic z-stack
  keeps its planes in order, ``x~_t = x_t + lambda (x'_t - x_t) + eps`` with ``x'`` another clip of the class in
  the batch, ``lambda ~ U(0, 1)``, and ``eps ~ N(0, diag(max(v^_c - v_c, 0)))`` shared by the T frames. ``v^_c`` is
  the class's variance calibrated towards the variances of the ``k`` nearest classes with more samples
  (``v^_c = (n_c v_c + kappa vbar_c) / (n_c + kappa)``): the variance transfer of Yang, Liu and Xu ("Free Lunch
  for Few-shot Learning: Distribution Calibration", ICLR 2021, arXiv 2101.06395), whose ``Sigma' = mean of the
  nearest base covariances`` is the ``kappa -> inf`` limit, with a shrinkage so a class with many samples keeps
  its own. Only the missing variance is added as noise, so the synthetic clips spread about as ``v^_c`` does.
  Their means are the class's own: pulling a tail class towards head-class means (as Free Lunch does for
  disjoint novel classes) would push ASC-US features onto intermediate cells, the confusion to avoid.
* inter-class distribution (the class frequencies): ``E`` experts, linear heads on the pooled feature, each
  trained with the logit-adjusted loss ``CE(z_e + tau_e log pi, y)`` (Menon et al., ICLR 2021, arXiv 2007.07314;
  :func:`cytolt.losses.logit_adjusted.logit_adjusted_cross_entropy`) with its own ``tau_e``, spread evenly over
  ``[1 - s, 1 + s]``: at the optimum ``z_e = log p(x | y) + (1 - tau_e) log pi + c(x)``, so expert e is fit for a
  test prior ``pi^(1 - tau_e)``: head-leaning (tau < 1), balanced (tau = 1), tail-leaning (tau > 1). The
  prediction is the mean of the experts' logits, ``log p(x | y) + (1 - mean tau) log pi``, balanced because the
  taus average to 1: the argument of the balanced product of experts (Sanchez Aimar et al., "Balanced Product of
  Calibrated Experts for Long-Tailed Recognition", CVPR 2023, arXiv 2206.05260). The experts are diverse through
  their targets and share the backbone, pooling and calibration.

Adapted for cell z-stacks: the clip's frames are focal planes, not time; the class statistics are of the
clip feature (the mean over the T frame features, what mean pooling passes on), updated from every training
batch as exponential moving averages of the first and second moments (so a class seen once per batch still
gets a variance across batches). Limiting cases (tested): ``experts=1`` is the logit-adjusted loss (tau = 1);
``replace_prob=0`` switches the intra-class calibration off; ``T = 1`` is the same method on one-image features;
all three together are exactly the ``logit_adjust`` method. Defaults are choices, not the paper's (unknown):
3 experts, spread 1 (taus 0, 1, 2), replace probability 0.5 at the rarest class, 3 donor classes, kappa 10,
moment momentum 0.9.

Glossary
    N, T, D, K, E   clips, frames per clip, feature dimension, classes, experts.
    frames          ``(N, T, D)`` frame features of a batch (``FrameClassifier.frame_features``).
    n_c, pi         training clips per class, and the class prior ``n_c / N``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec
from cytolt.losses.logit_adjusted import logit_adjusted_cross_entropy

__all__ = [
    "MULTI_EXPERT",
    "OPTIONS",
    "ClassMoments",
    "IntraClassCalibration",
    "MultiExpertHead",
    "MultiExpertLoss",
    "build_calibration",
    "build_method",
    "build_multi_expert_head",
    "calibrate_frames",
    "calibrated_variance",
    "combine_experts",
    "expert_taus",
    "frame_loss",
    "multi_expert_loss",
    "replace_probability",
]

EXPERTS = 3
TAU_SPREAD = 1.0
REPLACE_PROB = 0.5
NEIGHBOURS = 3
PRIOR_STRENGTH = 10.0
MOMENTUM = 0.9
# The method's options and their defaults (the registry spec and cytolt.classify.frames.fit_frames take these).
OPTIONS = {
    "experts": EXPERTS,
    "tau_spread": TAU_SPREAD,
    "replace_prob": REPLACE_PROB,
    "neighbours": NEIGHBOURS,
    "prior_strength": PRIOR_STRENGTH,
    "momentum": MOMENTUM,
}


# ----------------------------------------------------------------------------------------- inter-class level


def expert_taus(num_experts: int, spread: float = TAU_SPREAD) -> Tensor:
    """``(E,)`` float32 logit-adjustment strengths evenly on ``[1 - spread, 1 + spread]`` (mean exactly 1);
    ``[1.0]`` for one expert."""
    if num_experts < 1:
        raise ValueError(f"num_experts must be >= 1; got {num_experts}")
    if not spread >= 0:
        raise ValueError(f"spread must be >= 0; got {spread}")
    if num_experts == 1:
        return torch.ones(1)
    return torch.linspace(1.0 - spread, 1.0 + spread, num_experts)


def multi_expert_loss(expert_logits: Tensor, labels: Tensor, class_prior: Tensor, taus: Tensor) -> Tensor:
    """Mean over experts of ``CE(z_e + tau_e log pi, y)``, each averaged over the N clips.

    Args:
        expert_logits: ``(E, N, K)``.
        labels: ``(N,)`` int64 in ``0..K-1``.
        class_prior: ``(K,)`` positive (the training frequencies).
        taus: ``(E,)``.
    """
    if expert_logits.dim() != 3 or taus.shape != expert_logits.shape[:1]:
        raise ValueError(
            f"expert_logits must be (E, N, K) with taus (E,); got {tuple(expert_logits.shape)}, {tuple(taus.shape)}"
        )
    losses = [
        logit_adjusted_cross_entropy(z, labels, class_prior, tau=float(tau))
        for z, tau in zip(expert_logits, taus, strict=True)
    ]
    return torch.stack(losses).mean()


def combine_experts(expert_logits: Tensor) -> Tensor:
    """``(E, N, K) -> (N, K)``: the mean of the experts' logits (balanced when the taus average to 1)."""
    if expert_logits.dim() != 3:
        raise ValueError(f"expert_logits must be (E, N, K); got {tuple(expert_logits.shape)}")
    return expert_logits.mean(dim=0)


class MultiExpertHead(nn.Module):
    """``(N, D) -> (N, K)``: E linear experts, scored as the mean of their logits.

    ``class_prior (K,)`` and ``taus (E,)`` are buffers (saved with the model; the prior is what the loss
    adjusts by). In training mode the head keeps its last input in ``last_input`` (not saved, dropped by
    ``eval()``): a training loop whose loss sees only the logits (:class:`MultiExpertLoss`) reads it to re-score
    calibrated features.
    """

    def __init__(
        self,
        feature_dim: int,
        class_counts: Sequence[int] | Tensor,
        *,
        experts: int = EXPERTS,
        tau_spread: float = TAU_SPREAD,
    ) -> None:
        super().__init__()
        counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
        if counts.numel() < 1 or not bool((counts > 0).all()):
            raise ValueError(
                f"MultiExpertHead: class_counts must be positive (log pi of every class); got {counts.tolist()}"
            )
        self.experts = nn.ModuleList(nn.Linear(feature_dim, counts.numel()) for _ in range(experts))
        self.register_buffer("class_prior", (counts / counts.sum()).float())
        self.register_buffer("taus", expert_taus(experts, tau_spread))
        self.tau_spread = float(tau_spread)
        self.last_input: Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.class_prior.numel()

    def expert_logits(self, x: Tensor) -> Tensor:
        """``(N, D) -> (E, N, K)``."""
        return torch.stack([expert(x) for expert in self.experts])

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.last_input = x
        return combine_experts(self.expert_logits(x))

    def train(self, mode: bool = True) -> MultiExpertHead:
        # Leaving training drops the cached batch (and its graph), so an evaluated model can be deep-copied.
        if not mode:
            self.last_input = None
        return super().train(mode)

    def extra_repr(self) -> str:
        return f"experts={len(self.experts)}, num_classes={self.num_classes}, tau_spread={self.tau_spread}"


# ----------------------------------------------------------------------------------------- intra-class level


class ClassMoments(nn.Module):
    """Running per-class first and second moments of clip features, ``m1, m2 (K, D)``, and ``seen (K,)``.

    :meth:`update` moves each class present in a batch towards the batch's moments with rate
    ``1 - momentum ** b_c`` (``b_c`` its clips in the batch: as if they came one at a time); a class's first
    batch sets them. ``variances = m2 - m1^2`` (clamped at 0).
    """

    def __init__(self, num_classes: int, feature_dim: int, *, momentum: float = MOMENTUM) -> None:
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        self.momentum = float(momentum)
        self.register_buffer("m1", torch.zeros(num_classes, feature_dim))
        self.register_buffer("m2", torch.zeros(num_classes, feature_dim))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        """Fold a batch of clip features ``(N, D)`` with ``labels (N,)`` into the moments."""
        k = self.m1.size(0)
        labels = labels.long()
        x = features.detach().to(self.m1.dtype)
        b = torch.bincount(labels, minlength=k).to(x.dtype)
        present = b > 0
        s1 = x.new_zeros(self.m1.shape).index_add_(0, labels, x) / b.clamp_min(1)[:, None]
        s2 = x.new_zeros(self.m2.shape).index_add_(0, labels, x * x) / b.clamp_min(1)[:, None]
        rate = torch.where(self.seen, 1.0 - self.momentum**b, torch.ones_like(b))
        rate = torch.where(present, rate, torch.zeros_like(rate))[:, None]
        self.m1.add_(rate * (s1 - self.m1))
        self.m2.add_(rate * (s2 - self.m2))
        self.seen |= present

    @property
    def means(self) -> Tensor:
        return self.m1

    @property
    def variances(self) -> Tensor:
        return (self.m2 - self.m1 * self.m1).clamp_min(0.0)


def calibrated_variance(
    means: Tensor,
    variances: Tensor,
    counts: Tensor,
    *,
    neighbours: int = NEIGHBOURS,
    prior_strength: float = PRIOR_STRENGTH,
    valid: Tensor | None = None,
) -> Tensor:
    """``(K, D)`` class variances shrunk towards those of the ``neighbours`` nearest classes with more samples.

    ``v^_c = (n_c v_c + kappa vbar_c) / (n_c + kappa)``, ``vbar_c`` the mean variance of the donor classes:
    the ``neighbours`` classes nearest to c (Euclidean distance of the means) among the valid ones with
    ``counts > n_c``. A class with no donor (the head, or nothing valid) keeps its own variance, as does an
    invalid class.

    Args:
        means, variances: ``(K, D)``; counts: ``(K,)`` training clips per class (>= 0);
        valid: ``(K,)`` bool, the classes whose statistics exist (``ClassMoments.seen``); None: all.
    """
    if means.shape != variances.shape or means.dim() != 2 or counts.shape != means.shape[:1]:
        raise ValueError(
            f"means and variances must be (K, D) and counts (K,); got {tuple(means.shape)}, "
            f"{tuple(variances.shape)}, {tuple(counts.shape)}"
        )
    if neighbours < 1 or not prior_strength >= 0:
        raise ValueError(
            f"neighbours must be >= 1 and prior_strength >= 0; got {neighbours}, {prior_strength}"
        )
    k = means.size(0)
    valid = torch.ones(k, dtype=torch.bool, device=means.device) if valid is None else valid.bool()
    n = counts.to(means.dtype)
    donor = (n[None, :] > n[:, None]) & valid[None, :] & valid[:, None]
    dist = torch.where(donor, torch.cdist(means, means), torch.full((k, k), float("inf"), dtype=means.dtype))
    near, index = dist.topk(min(neighbours, k), dim=1, largest=False)
    use = torch.isfinite(near).to(means.dtype)  # (K, k)
    used = use.sum(dim=1)
    vbar = (variances[index] * use[..., None]).sum(dim=1) / used.clamp_min(1)[:, None]
    weight = (n + prior_strength).clamp_min(torch.finfo(means.dtype).tiny)
    shrunk = (n[:, None] * variances + prior_strength * vbar) / weight[:, None]
    return torch.where((used > 0)[:, None], shrunk, variances)


def replace_probability(counts: Tensor, max_prob: float = REPLACE_PROB) -> Tensor:
    """``(K,)`` probability that a training clip of class c is replaced by a synthetic one:
    ``max_prob * log(n_max / n_c) / log(n_max / n_min)``: 0 for the head, ``max_prob`` for the rarest class,
    linear in log count between (the tails here are geometric); all 0 when every class is as large."""
    n = counts.to(torch.float64)
    if n.dim() != 1 or n.numel() < 1 or not bool((n > 0).all()):
        raise ValueError(f"counts must be (K,) positive; got {counts.tolist()}")
    if not 0 <= max_prob <= 1:
        raise ValueError(f"max_prob must be in [0, 1]; got {max_prob}")
    span = float(torch.log(n.max() / n.min()))
    if span == 0:
        return torch.zeros_like(n, dtype=torch.float32)
    return (max_prob * torch.log(n.max() / n) / span).float()


def calibrate_frames(
    frames: Tensor,
    labels: Tensor,
    *,
    prob: Tensor,
    noise_var: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Replace clips by frame-aligned SMOTE points of their class plus calibrated noise (module docstring).

    Clip i (class c) is replaced with probability ``prob[c]`` by ``x_i + lambda (x_j - x_i) + eps``: j a clip of
    class c in the batch drawn uniformly (i itself when alone: then only the noise moves it), ``lambda ~ U(0, 1)``,
    ``eps ~ N(0, diag(noise_var[c]))`` the same for its T frames. Every draw is made for every clip whether it is
    replaced or not, so the result depends only on the generator's state and the batch.

    Args:
        frames: ``(N, T, D)``; labels: ``(N,)``; prob: ``(K,)``; noise_var: ``(K, D)`` >= 0.
        generator: a CPU ``torch.Generator`` (draws are made on the CPU, then moved).

    Returns:
        ``(N, T, D)``; gradients flow to the frames of both clips of a pair.
    """
    if frames.dim() != 3 or labels.shape != frames.shape[:1]:
        raise ValueError(
            f"frames must be (N, T, D) and labels (N,); got {tuple(frames.shape)}, {tuple(labels.shape)}"
        )
    n, _, d = frames.shape
    if noise_var.shape != (prob.numel(), d):
        raise ValueError(f"noise_var must be ({prob.numel()}, {d}); got {tuple(noise_var.shape)}")
    labels_cpu = labels.long().cpu()
    u = torch.rand(n, generator=generator)
    lam = torch.rand(n, generator=generator)
    eps = torch.randn(n, d, generator=generator)
    pick = torch.rand(n, generator=generator)
    # Partner of clip i: the floor(pick_i * m)-th of the m clips of its class, in batch order.
    partner = torch.arange(n)
    for c in torch.unique(labels_cpu):
        members = torch.nonzero(labels_cpu == c).flatten()
        chosen = (pick[members] * len(members)).long().clamp_max(len(members) - 1)
        partner[members] = members[chosen]
    device, dtype = frames.device, frames.dtype
    labels_dev = labels.long().to(device)
    replace = (u.to(device) < prob.to(device)[labels_dev])[:, None, None]
    noise = eps.to(device, dtype) * noise_var.to(device, dtype)[labels_dev].sqrt()
    partner = partner.to(device)
    synthetic = frames + lam.to(device, dtype)[:, None, None] * (frames[partner] - frames) + noise[:, None, :]
    return torch.where(replace, synthetic, frames)


class IntraClassCalibration(nn.Module):
    """The intra-class level as a module: class moments in buffers, calibration in training mode only.

    ``forward(frames (N, T, D), labels (N,)) -> (N, T, D)``: in training mode it folds the batch's clip features
    (the frame mean) into :class:`ClassMoments`, calibrates the variances (:func:`calibrated_variance`) and
    replaces clips (:func:`calibrate_frames`, noise = the missing variance ``max(v^ - v, 0)``); in eval mode it
    returns the frames unchanged. Its generator is seeded at construction (``seed``).
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor,
        feature_dim: int,
        *,
        replace_prob: float = REPLACE_PROB,
        neighbours: int = NEIGHBOURS,
        prior_strength: float = PRIOR_STRENGTH,
        momentum: float = MOMENTUM,
        seed: int = 0,
    ) -> None:
        super().__init__()
        counts = torch.as_tensor(class_counts, dtype=torch.float32).flatten()
        self.register_buffer("counts", counts)
        self.register_buffer("prob", replace_probability(counts, replace_prob))
        self.moments = ClassMoments(counts.numel(), feature_dim, momentum=momentum)
        self.neighbours = int(neighbours)
        self.prior_strength = float(prior_strength)
        self.generator = torch.Generator().manual_seed(int(seed))

    def noise_variance(self) -> Tensor:
        """``(K, D)`` the variance each class's synthetic clips add: ``max(v^_c - v_c, 0)`` (0 where unseen)."""
        own = self.moments.variances
        calibrated = calibrated_variance(
            self.moments.means,
            own,
            self.counts,
            neighbours=self.neighbours,
            prior_strength=self.prior_strength,
            valid=self.moments.seen,
        )
        return (calibrated - own).clamp_min(0.0)

    def forward(self, frames: Tensor, labels: Tensor) -> Tensor:
        if not self.training:
            return frames
        self.moments.update(frames.mean(dim=1), labels)
        return calibrate_frames(
            frames, labels, prob=self.prob, noise_var=self.noise_variance(), generator=self.generator
        )


# ----------------------------------------------------------------------------------------- both levels


def frame_loss(model: nn.Module, calibration: IntraClassCalibration, x: Tensor, labels: Tensor) -> Tensor:
    """The training loss of a batch of frames through a ``FrameClassifier`` whose head is a
    :class:`MultiExpertHead`: frame features -> intra-class calibration -> pooling -> experts' logit-adjusted
    losses. ``x`` is ``(N, T, 3, S, S)`` or ``(N, 3, S, S)``."""
    head = model.head
    if not isinstance(head, MultiExpertHead):
        raise ValueError(f"frame_loss needs a MultiExpertHead as model.head; got {type(head).__name__}")
    frames = calibration(model.frame_features(x), labels)
    pooled = model.pool_frames(frames)
    return multi_expert_loss(head.expert_logits(pooled), labels, head.class_prior, head.taus)


class MultiExpertLoss(nn.Module):
    """The method as a loss of ``(logits, labels)`` for a loop on one-frame crops (:mod:`cytolt.classify.train`):
    it takes the features the head last saw (``head.last_input``, ``(N, D)``, i.e. ``T = 1``), calibrates them
    and scores them with every expert; the combined logits it is given only check that the cache is this batch's.
    """

    def __init__(self, head: MultiExpertHead, calibration: IntraClassCalibration) -> None:
        super().__init__()
        self.head = head
        self.calibration = calibration

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        x = self.head.last_input
        if x is None or x.shape[0] != logits.shape[0]:
            raise RuntimeError(
                "MultiExpertLoss: call the MultiExpertHead in training mode on this batch first"
            )
        features = self.calibration(x.unsqueeze(1), labels).squeeze(1)
        return multi_expert_loss(
            self.head.expert_logits(features), labels, self.head.class_prior, self.head.taus
        )


# ----------------------------------------------------------------------------------------- registry glue


def build_multi_expert_head(
    feature_dim: int, num_classes: int, *, experts: int = EXPERTS, tau_spread: float = TAU_SPREAD
) -> MultiExpertHead:
    """The folder's builder for ``{"type": "multi_expert", "experts": E, "tau_spread": s}``; the class prior
    placeholder is overwritten by the saved buffer."""
    return MultiExpertHead(
        feature_dim, np.ones(num_classes), experts=int(experts), tau_spread=float(tau_spread)
    )


def _resolve(options: dict | None) -> dict:
    unknown = sorted(set(options or {}) - set(OPTIONS))
    if unknown:
        raise ValueError(f"multi_expert: unknown option(s) {unknown}; known: {sorted(OPTIONS)}")
    return {**OPTIONS, **(options or {})}


def build_calibration(
    feature_dim: int, class_counts: Sequence[int] | Tensor, options: dict | None = None, *, seed: int = 0
) -> IntraClassCalibration:
    """The intra-class calibration for ``options`` (names of :data:`OPTIONS`, the missing ones at their
    defaults; an unknown one is a ValueError)."""
    opt = _resolve(options)
    return IntraClassCalibration(
        class_counts,
        feature_dim,
        replace_prob=float(opt["replace_prob"]),
        neighbours=int(opt["neighbours"]),
        prior_strength=float(opt["prior_strength"]),
        momentum=float(opt["momentum"]),
        seed=seed,
    )


def build_method(
    feature_dim: int, class_counts: Sequence[int] | Tensor, options: dict | None = None, *, seed: int = 0
) -> tuple[MultiExpertHead, IntraClassCalibration, dict]:
    """The head, the intra-class calibration and the folder's head dict for ``options`` (as
    :func:`build_calibration`)."""
    opt = _resolve(options)
    experts, spread = int(opt["experts"]), float(opt["tau_spread"])
    head = MultiExpertHead(feature_dim, class_counts, experts=experts, tau_spread=spread)
    config = {"type": "multi_expert", "experts": experts, "tau_spread": spread}
    return head, build_calibration(feature_dim, class_counts, opt, seed=seed), config


def _head(ctx: MethodContext) -> Head:
    head, _, config = build_method(ctx.model.feature_dim, ctx.counts, _options(ctx), seed=ctx.seed)
    return Head(head.to(ctx.device), config)


def _loss(ctx: MethodContext) -> nn.Module:
    head = ctx.model.head
    if not isinstance(head, MultiExpertHead):
        raise ValueError(
            f"multi_expert: the model's head must be its MultiExpertHead; got {type(head).__name__}"
        )
    calibration = build_calibration(ctx.model.feature_dim, ctx.counts, _options(ctx), seed=ctx.seed)
    return MultiExpertLoss(head, calibration.to(ctx.device))


def _options(ctx: MethodContext) -> dict:
    return {name: MULTI_EXPERT.option(ctx, name) for name in OPTIONS}


MULTI_EXPERT = MethodSpec(
    name="multi_expert",
    paper=(
        "Hu, Gao & Xu, Learning Multi-Expert Distribution Calibration for Long-Tailed Video Classification, "
        "IEEE TMM (arXiv 2205.10788); reconstructed from the abstract"
    ),
    stage=1,
    sampler="instance",
    build_head=_head,
    build_loss=_loss,
    options=dict(OPTIONS),
)
