"""Post-hoc calibration of classifier scores for long-tailed detection, applied at test time only.

Glossary
    logits               softmax heads: (N, C+1), foreground classes 0..C-1, background last (mmdet order);
                         sigmoid heads: (N, C), no background column.
    instances_per_class  (C,) training instances per foreground class (N_c), all > 0.
    priors               (C,) class prior pi_c > 0 (training label frequencies; need not sum to 1).
    weight               (C, D, ...) classifier weight, one row (or filter) per class.

Functions: :func:`norcal` (Pan et al., NeurIPS 2021), :func:`norcal_sigmoid` (cytolt's one-vs-background
reading of NorCal for sigmoid heads), :func:`tau_norm` (Kang et al., ICLR 2020) and its detector form
:func:`tau_norm_classifier`, :func:`logit_adjust`
(Menon et al., ICLR 2021). All are pure torch and differentiable; none touches the model.
"""

from __future__ import annotations

import torch

__all__ = ["norcal", "norcal_sigmoid", "tau_norm", "tau_norm_classifier", "logit_adjust"]


def _log_positive(values: torch.Tensor, name: str, like: torch.Tensor) -> torch.Tensor:
    """log(values) as ``like``'s dtype/device, after checking values are finite and > 0."""
    values = torch.as_tensor(values, device=like.device, dtype=like.dtype)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per class); got shape {tuple(values.shape)}")
    bad = torch.nonzero(~(torch.isfinite(values) & (values > 0))).flatten()
    if len(bad):
        raise ValueError(f"{name} must be finite and > 0; classes {bad.tolist()[:10]} are not")
    return values.log()


def norcal(logits: torch.Tensor, instances_per_class: torch.Tensor, gamma: float) -> torch.Tensor:
    """NorCal for softmax detectors (Pan et al., "On Model Calibration for Long-Tailed Object Detection
    and Instance Segmentation", NeurIPS 2021).

    Foreground scores become ``exp(z_c) / N_c ** gamma``, the background score ``exp(z_bg)`` is left as is,
    and all C+1 are renormalised: ``softmax(z_c - gamma * log N_c, z_bg)``. ``gamma = 0`` is the plain softmax.

    Args:
        logits: (N, C+1), background last.
        instances_per_class: (C,) training instances per foreground class, > 0.
        gamma: calibration strength >= 0 (the paper tunes it on validation data).

    Returns:
        (N, C+1) probabilities, rows sum to 1.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C+1); got shape {tuple(logits.shape)}")
    log_counts = _log_positive(instances_per_class, "instances_per_class", logits)
    if logits.shape[1] != len(log_counts) + 1:
        raise ValueError(
            f"logits have {logits.shape[1]} columns but instances_per_class has {len(log_counts)} classes; "
            "expected C foreground columns plus background last"
        )
    # Dividing exp(z_c) by N_c**gamma is subtracting gamma*log N_c in log space; the background offset is 0.
    offset = torch.cat([gamma * log_counts, log_counts.new_zeros(1)])
    return torch.softmax(logits - offset, dim=1)


def norcal_sigmoid(logits: torch.Tensor, instances_per_class: torch.Tensor, gamma: float) -> torch.Tensor:
    """NorCal read for sigmoid heads: ``sigmoid(z_c - gamma * log N_c)``, shape (N, C).

    Not from the paper (which treats softmax heads): a sigmoid output is a two-way softmax of class c against
    an implicit background logit 0, so NorCal's rule, "divide the foreground score by N_c ** gamma, keep the
    background, renormalise", gives exactly this. Each class's scores change monotonically, so a per-class AP
    is unchanged; what changes is the ranking across classes (the per-image top-k cap in LVIS evaluation, the
    arg-max label, any cross-class score threshold).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C); got shape {tuple(logits.shape)}")
    log_counts = _log_positive(instances_per_class, "instances_per_class", logits)
    if logits.shape[1] != len(log_counts):
        raise ValueError(
            f"logits have {logits.shape[1]} columns but instances_per_class has {len(log_counts)} classes"
        )
    return torch.sigmoid(logits - gamma * log_counts)


def tau_norm(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """tau-normalised classifier (Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition",
    ICLR 2020).

    Each class's weight row is divided by its L2 norm raised to tau: ``w_c / ||w_c|| ** tau``. tau = 0 returns
    the weights unchanged, tau = 1 gives unit-norm rows; the paper picks tau in [0, 1] on validation data and
    drops the bias. A convolutional classifier (C, D, kh, kw) is normalised per output filter.

    Args:
        weight: (C, D) or (C, D, ...) classifier weight.
        tau: exponent >= 0.

    Returns:
        tensor of ``weight``'s shape.
    """
    if weight.ndim < 2:
        raise ValueError(f"weight must be (C, D) or (C, D, ...); got shape {tuple(weight.shape)}")
    norms = weight.flatten(1).norm(dim=1).clamp_min(torch.finfo(weight.dtype).tiny)
    return weight / norms.pow(tau).view(-1, *([1] * (weight.ndim - 1)))


def tau_norm_classifier(
    weight: torch.Tensor,
    tau: float,
    *,
    num_classes: int,
    extra: int = 0,
    keep_mean_norm: bool = True,
) -> torch.Tensor:
    """:func:`tau_norm` for a detector's classifier: only the class rows move, background rows stay.

    The rows are ``R`` groups of ``num_classes + extra`` (``R`` anchors per location in a dense head, 1 in a RoI
    head): the ``C`` class rows, then ``extra`` rows (1 for a softmax head's background) that are left as they are.
    Adapted for detection (not in Kang et al., who classify without a background): with ``keep_mean_norm`` each
    class row becomes ``w_c * (mean_k ||w_k||)**tau / ||w_c|| ** tau`` (mean over the class rows), which ranks the
    classes as plain tau-norm does but keeps the class logits' average scale, and so the balance against the
    untouched background row. Biases are not changed (the caller keeps or drops them).

    Args:
        weight: ``(R (C + extra), D)`` or ``(R (C + extra), D, kh, kw)``.
        tau: exponent >= 0 (0: unchanged).
        num_classes: C.
        extra: rows after the C class rows of each group that keep their weights.
        keep_mean_norm: rescale by the mean class-row norm to the power tau (see above).

    Returns:
        tensor of ``weight``'s shape.
    """
    if not tau >= 0:
        raise ValueError(f"tau must be >= 0; got {tau}")
    group = num_classes + extra
    if weight.ndim < 2 or weight.shape[0] % group:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} is not groups of {num_classes} class rows + {extra} extra rows"
        )
    is_class = (torch.arange(weight.shape[0], device=weight.device) % group) < num_classes
    normed = tau_norm(weight, tau)
    if keep_mean_norm:
        norms = weight.flatten(1).norm(dim=1)
        normed = normed * norms[is_class].mean().pow(tau)
    return torch.where(is_class.view(-1, *([1] * (weight.ndim - 1))), normed, weight)


def logit_adjust(logits: torch.Tensor, priors: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021).

    Returns ``z_c - tau * log pi_c`` over the last dimension; arg-max of the result is the balanced-error
    Bayes rule when the model estimates p(y|x) under the training prior (tau = 1).

    Args:
        logits: (..., C); for a softmax detector pass the foreground columns only (or append the background
            prior yourself).
        priors: (C,) class priors > 0; unnormalised counts give the same arg-max (the offset differs by a
            constant).
        tau: scaling of the adjustment, >= 0.
    """
    log_priors = _log_positive(priors, "priors", logits)
    if logits.shape[-1] != len(log_priors):
        raise ValueError(
            f"logits have {logits.shape[-1]} classes in the last dimension; priors have {len(log_priors)}"
        )
    return logits - tau * log_priors
