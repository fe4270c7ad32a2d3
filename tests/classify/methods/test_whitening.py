"""Tests for cytolt.classify.methods.whitening: identity covariance, running statistics, gradients, limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cytolt.classify.methods.spec import MethodContext
from cytolt.classify.methods.whitening import (
    WHITENING,
    ChannelWhitening,
    WhitenedLinear,
    batch_mean_covariance,
    build_whitened_linear_head,
    group_covariances,
    newton_schulz_matrix,
    whiten,
    zca_matrix,
)


def _correlated(n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=generator, dtype=dtype)
    return torch.randn(n, d, generator=generator, dtype=dtype) @ mixing + 3.0


def test_hand_worked_two_by_two() -> None:
    # cov = [[a, b], [b, a]] has eigenvectors (1, 1)/sqrt2, (1, -1)/sqrt2 with eigenvalues a + b, a - b, so
    # cov^{-1/2} = 1/2 [[p + q, p - q], [p - q, p + q]] with p = (a + b)^{-1/2}, q = (a - b)^{-1/2}.
    a, b = 5.0, 3.0
    p, q = 1 / math.sqrt(a + b), 1 / math.sqrt(a - b)
    expected = 0.5 * torch.tensor([[p + q, p - q], [p - q, p + q]], dtype=torch.float64)
    cov = torch.tensor([[a, b], [b, a]], dtype=torch.float64)
    torch.testing.assert_close(zca_matrix(cov, eps=1e-12), expected)


def test_whitened_batch_has_identity_covariance() -> None:
    x = _correlated(200, 8)
    layer = ChannelWhitening(8, group_size=None, eps=1e-9).double()
    y = layer(x)
    mean, cov = batch_mean_covariance(y)
    torch.testing.assert_close(mean, torch.zeros(8, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(cov, torch.eye(8, dtype=torch.float64), atol=1e-6, rtol=0)


def test_groups_whiten_within_and_leave_cross_group_correlation() -> None:
    x = _correlated(300, 8, seed=1)
    y = ChannelWhitening(8, group_size=4, eps=1e-9).double()(x)
    _, cov = batch_mean_covariance(y)
    blocks = group_covariances(cov, 4)
    torch.testing.assert_close(blocks, torch.eye(4, dtype=torch.float64).expand(2, 4, 4), atol=1e-6, rtol=0)
    # Block-diagonal whitening does not decorrelate channels of different groups.
    assert cov[:4, 4:].abs().max() > 0.05


def test_group_covariances_are_the_diagonal_blocks() -> None:
    cov = torch.arange(36.0).reshape(6, 6)
    blocks = group_covariances(cov, 2)
    assert blocks.shape == (3, 2, 2)
    for g in range(3):
        torch.testing.assert_close(blocks[g], cov[2 * g : 2 * g + 2, 2 * g : 2 * g + 2])


def test_already_white_input_is_only_centred() -> None:
    # Build a batch whose covariance is exactly I: whiten any batch exactly, then shift it.
    white = whiten(_correlated(50, 4), *_exact_stats(_correlated(50, 4))) + 7.0
    eps = 1e-3
    y = ChannelWhitening(4, group_size=None, eps=eps).double()(white)
    # ZCA of I + eps I is (1 + eps)^{-1/2} I: no rotation, the centred input scaled.
    torch.testing.assert_close(y, (white - white.mean(0)) / math.sqrt(1 + eps))


def _exact_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, cov = batch_mean_covariance(x)
    return mean, zca_matrix(cov, eps=0.0)


def test_eval_uses_running_statistics() -> None:
    torch.manual_seed(0)
    layer = ChannelWhitening(4, group_size=2, momentum=None).double()
    batches = [_correlated(32, 4, seed=s) for s in range(3)]
    matrices = []
    for batch in batches:
        matrices.append(layer.batch_statistics(batch)[1].detach())
        layer(batch)
    # momentum None: the cumulative average of the batch means and matrices.
    torch.testing.assert_close(layer.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
    torch.testing.assert_close(layer.running_matrix, torch.stack(matrices).mean(0))
    assert int(layer.num_batches_tracked) == 3
    layer.eval()
    probe = _correlated(5, 4, seed=9)
    expected = whiten(probe, layer.running_mean, layer.running_matrix)
    torch.testing.assert_close(layer(probe), expected)
    # Eval is per-sample: one row alone gives the same output, and the buffers do not move.
    torch.testing.assert_close(layer(probe[:1]), expected[:1])
    assert int(layer.num_batches_tracked) == 3


def test_momentum_update() -> None:
    layer = ChannelWhitening(2, group_size=None, momentum=0.25).double()
    x = _correlated(16, 2)
    mean, matrix = layer.batch_statistics(x)
    layer(x)
    torch.testing.assert_close(layer.running_mean, 0.25 * mean.detach())
    torch.testing.assert_close(
        layer.running_matrix, 0.75 * torch.eye(2, dtype=torch.float64)[None] + 0.25 * matrix.detach()
    )
    layer.reset_running_stats()
    assert int(layer.num_batches_tracked) == 0
    torch.testing.assert_close(layer.running_matrix, torch.eye(2, dtype=torch.float64)[None])


@pytest.mark.parametrize("method", ["zca", "newton"])
def test_gradcheck(method: str) -> None:
    layer = ChannelWhitening(4, group_size=2, eps=0.1, method=method).double()
    x = _correlated(6, 4, seed=3).requires_grad_(True)
    weights = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda t: (layer(t) * weights).sum(), (x,))


def test_zca_gradient_finite_with_repeated_eigenvalues() -> None:
    # Batch smaller than the group: the covariance is singular and cov + eps I has a repeated eigenvalue eps,
    # where eigh's own backward divides by zero. The spectral divided differences stay finite and exact.
    x = _correlated(3, 6, seed=4).requires_grad_(True)
    y = ChannelWhitening(6, group_size=None, eps=1e-2).double()(x)
    (y * torch.linspace(-1, 1, 6, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(x.grad).all()
    cov = torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: zca_matrix((c + c.T) / 2, eps=0.0), (cov,))


def test_newton_schulz_is_iternorm_and_approaches_zca() -> None:
    _, cov = batch_mean_covariance(_correlated(100, 4, seed=5))
    # IterNorm's own form (Huang et al. 2019, Algorithm 1) written out: P_k = (3 P - P^3 S) / 2.
    reg = cov + 1e-3 * torch.eye(4, dtype=torch.float64)
    trace = torch.trace(reg)
    p = torch.eye(4, dtype=torch.float64)
    for _ in range(5):
        p = 1.5 * p - 0.5 * p @ p @ p @ (reg / trace)
    torch.testing.assert_close(newton_schulz_matrix(cov, eps=1e-3, iterations=5), p / trace.sqrt())
    exact = zca_matrix(cov)
    assert (newton_schulz_matrix(cov, iterations=5) - exact).abs().max() > 1e-3  # approximate at T = 5
    # Converged and stable (IterNorm's form itself overflows here after ~20 steps: condition number ~200).
    torch.testing.assert_close(newton_schulz_matrix(cov, iterations=60), exact, atol=1e-10, rtol=1e-8)


def test_whitened_linear_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    head = WhitenedLinear(8, 3, group_size=4)
    head(torch.randn(16, 8))
    keys = set(head.state_dict())
    assert {"whitening.running_mean", "whitening.running_matrix", "linear.weight"} <= keys
    other = WhitenedLinear(8, 3, group_size=4)
    other.load_state_dict(head.state_dict())
    head.eval()
    other.eval()
    probe = torch.randn(4, 8)
    torch.testing.assert_close(head(probe), other(probe))


def test_errors() -> None:
    with pytest.raises(ValueError, match="group_size must divide"):
        ChannelWhitening(10, group_size=4)
    with pytest.raises(ValueError, match="method must be one of"):
        ChannelWhitening(4, method="pca")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more than one sample"):
        ChannelWhitening(4)(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"expects \(N, 4\)"):
        ChannelWhitening(4)(torch.randn(3, 5))
    with pytest.raises(ValueError, match="whiten"):
        whiten(torch.randn(3, 4), torch.zeros(4), torch.eye(3))


def _context(counts: list[int], options: dict | None = None) -> MethodContext:
    model = torch.nn.Module()
    model.feature_dim = 32
    return MethodContext(
        model=model,
        train=None,
        val=None,
        counts=np.asarray(counts),
        options=options or {},
        epochs=1,
        seed=0,
        device=torch.device("cpu"),
    )


def test_method_head_config_builds_the_same_head_back() -> None:
    ctx = _context([30, 5, 2], {"group_size": 8})
    head = WHITENING.build_head(ctx)
    assert head.config == {"type": "whitened_linear", "group_size": 8, "eps": 1e-3, "method": "zca"}
    head.module(torch.randn(16, 32))  # one training batch moves the running statistics
    config = {k: v for k, v in head.config.items() if k != "type"}
    rebuilt = build_whitened_linear_head(32, 3, **config)
    rebuilt.load_state_dict(head.module.state_dict())
    probe = torch.randn(4, 32)
    torch.testing.assert_close(rebuilt.eval()(probe), head.module.eval()(probe))


def test_method_loss_is_logit_adjusted_and_needs_every_class() -> None:
    ctx = _context([30, 5, 2])
    loss = WHITENING.build_loss(ctx)
    logits, labels = torch.zeros(2, 3), torch.tensor([0, 2])
    # Zero logits shifted by log pi: CE = -log pi_y (the priors sum to 1), pi = (30, 5, 2) / 37.
    expected = -(math.log(30 / 37) + math.log(2 / 37)) / 2
    assert loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="every class needs a training crop"):
        WHITENING.build_loss(_context([30, 0, 2]))


def test_whitening_b3rs_method_steps_on_bet_batches() -> None:
    from cytolt.classify.synth_crops import make_crop_set
    from cytolt.classify.train import train_classifier

    crops = make_crop_set(size=32, head=30, imbalance=10)  # 135 crops, 11 classes
    val = make_crop_set(size=32, head=3, imbalance=1, seed=1)
    options = {"embed_size": 8}
    result = train_classifier(
        crops, val, method="whitening_b3rs", epochs=1, batch_size=16, width=4, progress=False, options=options
    )
    assert result.method == "whitening_b3rs" and result.head["type"] == "whitened_linear"
    (row,) = result.history
    # floor(135 / 16) = 8 steps, each 16 instance-sampled + 8 embedded B3RS crops.
    assert row["samples"] == 8 * 24 and np.isfinite(row["loss"])
    assert result.val_report is not None and 0 <= result.val_report["balanced_accuracy"] <= 1
    whitening = result.model.head.whitening
    assert int(whitening.num_batches_tracked) == 8 and not result.model.training
    # Embedding every second step only: 8 steps, 4 of them with 8 extra crops.
    sparse = train_classifier(
        crops,
        None,
        method="whitening_b3rs",
        epochs=1,
        batch_size=16,
        width=4,
        progress=False,
        options={"embed_size": 8, "embed_period": 2},
    )
    assert sparse.history[0]["samples"] == 8 * 16 + 4 * 8
