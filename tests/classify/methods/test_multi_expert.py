"""Multi-expert distribution calibration: the experts' logit-adjusted losses and their combination, the class
moments, the variance calibration, the frame-aligned SMOTE replacement, and the limiting cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cytolt.classify.frames import FrameClassifier
from cytolt.classify.methods.multi_expert import (
    ClassMoments,
    IntraClassCalibration,
    MultiExpertHead,
    MultiExpertLoss,
    build_multi_expert_head,
    calibrate_frames,
    calibrated_variance,
    combine_experts,
    expert_taus,
    frame_loss,
    multi_expert_loss,
    replace_probability,
)
from cytolt.losses.logit_adjusted import logit_adjusted_cross_entropy

# ----------------------------------------------------------------------------------------- experts


def test_expert_taus_average_to_one() -> None:
    torch.testing.assert_close(expert_taus(1), torch.tensor([1.0]))
    torch.testing.assert_close(expert_taus(3), torch.tensor([0.0, 1.0, 2.0]))
    taus = expert_taus(4, 0.5)
    torch.testing.assert_close(taus, torch.tensor([0.5, 5 / 6, 7 / 6, 1.5]))
    assert float(taus.mean()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_experts"):
        expert_taus(0)
    with pytest.raises(ValueError, match="spread"):
        expert_taus(2, -1.0)


def test_multi_expert_loss_hand_worked() -> None:
    # Two classes, prior (0.8, 0.2): log pi = (-0.2231, -1.6094). One clip of class 1, both experts z = (1, 0).
    # tau 0: CE((1, 0), 1) = log(e + 1) - 0 = 1.3133.
    # tau 2: z + 2 log pi = (0.5537, -3.2189); CE = log(e^0.5537 + e^-3.2189) + 3.2189 = 3.7951.
    # Mean: 2.5542.
    z = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    prior = torch.tensor([0.8, 0.2])
    loss = multi_expert_loss(z, torch.tensor([1]), prior, torch.tensor([0.0, 2.0]))
    a = math.log(math.e + 1)
    shifted = (1 + 2 * math.log(0.8), 2 * math.log(0.2))
    b = math.log(math.exp(shifted[0]) + math.exp(shifted[1])) - shifted[1]
    assert float(loss) == pytest.approx((a + b) / 2, rel=1e-6)
    assert float(loss) == pytest.approx(2.5542, abs=1e-4)
    with pytest.raises(ValueError, match=r"\(E, N, K\)"):
        multi_expert_loss(z[0], torch.tensor([1]), prior, torch.tensor([1.0]))


def test_one_expert_is_the_logit_adjusted_loss() -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 0])
    prior = torch.tensor([0.5, 0.25, 0.15, 0.1])
    got = multi_expert_loss(z[None], y, prior, expert_taus(1))
    torch.testing.assert_close(got, logit_adjusted_cross_entropy(z, y, prior, tau=1.0))


def test_combined_experts_cancel_the_prior() -> None:
    # If expert e learned z_e = L + (1 - tau_e) log pi (its optimum), the mean of the experts is L: balanced.
    torch.manual_seed(1)
    evidence = torch.randn(5, 3)
    log_prior = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    taus = expert_taus(3)
    experts = torch.stack([evidence + (1 - t) * log_prior for t in taus])
    torch.testing.assert_close(combine_experts(experts), evidence)
    # With taus not averaging to 1, the prior is left in: (1 - mean tau) log pi.
    skewed = torch.tensor([0.0, 0.5, 1.0])
    experts = torch.stack([evidence + (1 - t) * log_prior for t in skewed])
    torch.testing.assert_close(combine_experts(experts), evidence + 0.5 * log_prior)


def test_multi_expert_loss_gradients() -> None:
    torch.manual_seed(2)
    z = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 4, 2, 2])
    prior = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: multi_expert_loss(t, y, prior, expert_taus(3).double()), (z,))


def test_head_scores_the_mean_and_round_trips() -> None:
    torch.manual_seed(3)
    head = MultiExpertHead(6, [50, 20, 5], experts=3)
    x = torch.randn(4, 6)
    experts = head.expert_logits(x)
    assert experts.shape == (3, 4, 3)
    torch.testing.assert_close(head.eval()(x), experts.mean(dim=0))
    assert head.last_input is None  # eval mode keeps nothing
    head.train()(x)
    assert head.last_input is x
    head.eval()
    assert head.last_input is None  # so a trained model deep-copies (a cached non-leaf tensor would not)
    torch.testing.assert_close(head.class_prior, torch.tensor([50, 20, 5]) / 75.0)
    state = head.state_dict()
    assert {"class_prior", "taus"} <= set(state)
    loaded = build_multi_expert_head(6, 3, experts=3, tau_spread=1.0)
    loaded.load_state_dict(state)
    torch.testing.assert_close(loaded.eval()(x), head.eval()(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded.class_prior, head.class_prior)
    with pytest.raises(ValueError, match="positive"):
        MultiExpertHead(6, [3, 0])


# ----------------------------------------------------------------------------------------- class statistics


def test_class_moments_hand_worked() -> None:
    moments = ClassMoments(2, 1, momentum=0.5)
    # Class 0 once per batch: x = 1, then x = 3. First batch sets: m1 = 1, m2 = 1. Second, rate 1 - 0.5 = 0.5:
    # m1 = 1 + 0.5 (3 - 1) = 2, m2 = 1 + 0.5 (9 - 1) = 5, variance 5 - 4 = 1 (across batches).
    moments.update(torch.tensor([[1.0]]), torch.tensor([0]))
    moments.update(torch.tensor([[3.0]]), torch.tensor([0]))
    assert float(moments.means[0, 0]) == pytest.approx(2.0)
    assert float(moments.variances[0, 0]) == pytest.approx(1.0)
    assert moments.seen.tolist() == [True, False]
    # Class 1 twice in one batch (2 and 4): set by its first batch, mean 3, variance 1.
    moments.update(torch.tensor([[2.0], [4.0]]), torch.tensor([1, 1]))
    assert float(moments.means[1, 0]) == pytest.approx(3.0)
    assert float(moments.variances[1, 0]) == pytest.approx(1.0)
    assert float(moments.means[0, 0]) == pytest.approx(2.0)  # absent classes do not move
    # Two clips of class 0 in a batch move it at rate 1 - 0.5^2 = 0.75 towards their mean 6: 2 + 0.75 * 4 = 5.
    moments.update(torch.tensor([[5.0], [7.0]]), torch.tensor([0, 0]))
    assert float(moments.means[0, 0]) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="momentum"):
        ClassMoments(2, 1, momentum=1.0)


def test_calibrated_variance_hand_worked() -> None:
    means = torch.tensor([[0.0], [1.0], [10.0]])
    variances = torch.tensor([[4.0], [2.0], [0.5]])
    counts = torch.tensor([100, 50, 5])
    got = calibrated_variance(means, variances, counts, neighbours=1, prior_strength=10.0)
    # class 0: no class has more samples -> own 4.
    # class 1: donor class 0 -> (50 * 2 + 10 * 4) / 60 = 2.3333.
    # class 2: donors 0 and 1, nearest mean is class 1 (9 < 10) -> (5 * 0.5 + 10 * 2) / 15 = 1.5.
    torch.testing.assert_close(got, torch.tensor([[4.0], [140 / 60], [1.5]]))
    # Two donors for class 2: vbar = 3 -> (2.5 + 30) / 15.
    two = calibrated_variance(means, variances, counts, neighbours=2, prior_strength=10.0)
    assert float(two[2, 0]) == pytest.approx(32.5 / 15)
    # An invalid class (no statistics yet) neither gives nor changes: class 2 falls back to class 0.
    valid = torch.tensor([True, False, True])
    masked = calibrated_variance(means, variances, counts, neighbours=1, prior_strength=10.0, valid=valid)
    assert float(masked[1, 0]) == 2.0 and float(masked[2, 0]) == pytest.approx((2.5 + 40) / 15)


def test_calibrated_variance_limits() -> None:
    torch.manual_seed(4)
    means, variances = torch.randn(4, 3), torch.rand(4, 3)
    counts = torch.tensor([40, 20, 8, 2])
    # kappa = 0: every class keeps its own variance.
    torch.testing.assert_close(calibrated_variance(means, variances, counts, prior_strength=0.0), variances)
    # kappa -> infinity: the tail class takes the mean of its donors' variances (Free Lunch's Sigma').
    far = calibrated_variance(means, variances, counts, neighbours=3, prior_strength=1e12)
    torch.testing.assert_close(far[3], variances[:3].mean(dim=0))
    with pytest.raises(ValueError, match="neighbours"):
        calibrated_variance(means, variances, counts, neighbours=0)


def test_replace_probability() -> None:
    # log(100 / n) / log(100): 0, 0.5, 1 -> times 0.5.
    p = replace_probability(torch.tensor([100, 10, 1]), 0.5)
    torch.testing.assert_close(p, torch.tensor([0.0, 0.25, 0.5]))
    torch.testing.assert_close(replace_probability(torch.tensor([7, 7])), torch.zeros(2))
    with pytest.raises(ValueError, match="positive"):
        replace_probability(torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="max_prob"):
        replace_probability(torch.tensor([3, 1]), 1.5)


# ----------------------------------------------------------------------------------------- calibration


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_calibrate_frames_off_and_alone() -> None:
    torch.manual_seed(5)
    frames = torch.randn(6, 3, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    off = calibrate_frames(frames, labels, prob=torch.zeros(3), noise_var=torch.ones(3, 4), generator=_gen())
    torch.testing.assert_close(off, frames, rtol=0, atol=0)
    # A clip alone in its class with no noise: its partner is itself, nothing moves.
    alone = calibrate_frames(
        frames[:1], labels[:1], prob=torch.ones(3), noise_var=torch.zeros(3, 4), generator=_gen()
    )
    torch.testing.assert_close(alone, frames[:1], rtol=0, atol=0)


def test_calibrate_frames_is_frame_aligned_smote() -> None:
    torch.manual_seed(6)
    frames = torch.randn(2, 5, 3, dtype=torch.float64)
    labels = torch.tensor([0, 0])
    out = calibrate_frames(frames, labels, prob=torch.ones(1), noise_var=torch.zeros(1, 3), generator=_gen(1))
    for i in range(2):
        step = out[i] - frames[i]
        gap = frames[1 - i] - frames[i]
        if step.abs().max() == 0:
            continue  # drew itself as partner
        # One lambda in [0, 1] for every frame and dimension: the point lies on the segment, planes aligned.
        lam = step / gap
        torch.testing.assert_close(lam, lam.flatten()[0].expand_as(lam))
        assert 0 <= float(lam.flatten()[0]) <= 1


def test_calibrate_frames_noise_is_shared_by_frames_with_the_given_variance() -> None:
    n = 4000
    frames = torch.zeros(n, 3, 2)
    labels = torch.arange(n) % 2000  # every class twice, partners identical: only the noise moves a clip
    noise_var = torch.tensor([[1.0, 4.0]]).expand(2000, 2)
    out = calibrate_frames(frames, labels, prob=torch.ones(2000), noise_var=noise_var, generator=_gen(2))
    torch.testing.assert_close(out[:, 0], out[:, 2])  # the T frames of a clip get the same eps
    var = out[:, 0].var(dim=0)
    assert float(var[0]) == pytest.approx(1.0, rel=0.1) and float(var[1]) == pytest.approx(4.0, rel=0.1)


def test_calibrate_frames_deterministic_and_differentiable() -> None:
    torch.manual_seed(7)
    frames = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1])
    prob, noise = torch.tensor([1.0, 0.5]), torch.full((2, 3), 0.1)
    a = calibrate_frames(frames, labels, prob=prob, noise_var=noise, generator=_gen(3))
    b = calibrate_frames(frames, labels, prob=prob, noise_var=noise, generator=_gen(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.autograd.gradcheck(
        lambda f: calibrate_frames(f, labels, prob=prob, noise_var=noise, generator=_gen(3)), (frames,)
    )
    with pytest.raises(ValueError, match="noise_var"):
        calibrate_frames(frames, labels, prob=prob, noise_var=torch.zeros(2, 2))


def test_intra_class_calibration_module() -> None:
    torch.manual_seed(8)
    module = IntraClassCalibration([100, 10, 1], 4, replace_prob=1.0, seed=0)
    frames = torch.randn(6, 2, 4)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    torch.testing.assert_close(module.eval()(frames, labels), frames, rtol=0, atol=0)
    assert not bool(module.moments.seen.any())  # eval mode does not learn statistics
    out = module.train()(frames, labels)
    assert module.moments.seen.tolist() == [True, True, True]
    # The head class is never replaced (probability 0); the tail classes are (probability 0.5 and 1).
    torch.testing.assert_close(out[:3], frames[:3], rtol=0, atol=0)
    assert not torch.equal(out[5], frames[5])  # class 2 alone: moved by the noise of its missing variance
    assert bool((module.noise_variance()[0] == 0).all())


# ----------------------------------------------------------------------------------------- limiting cases


class _Backbone(nn.Module):
    def __init__(self, dim: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


def _model(counts: list[int], *, experts: int, seed: int = 0) -> FrameClassifier:
    torch.manual_seed(seed)
    return FrameClassifier(_Backbone(), MultiExpertHead(5, counts, experts=experts), feature_dim=5)


def test_one_expert_no_calibration_one_frame_is_logit_adjustment() -> None:
    counts = [30, 10, 3]
    model = _model(counts, experts=1)
    calibration = IntraClassCalibration(counts, 5, replace_prob=0.0)
    x = torch.rand(6, 3, 8, 8)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    got = frame_loss(model, calibration, x, y)
    prior = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    expected = logit_adjusted_cross_entropy(model.head.experts[0](model.backbone(x)), y, prior, tau=1.0)
    torch.testing.assert_close(got, expected)
    # T = 1 given as (N, 1, 3, S, S) is the same batch.
    torch.testing.assert_close(frame_loss(model, calibration, x.unsqueeze(1), y), expected)


def test_frame_loss_trains_on_z_stacks() -> None:
    counts = [30, 10, 3]
    model = _model(counts, experts=3, seed=1)
    calibration = IntraClassCalibration(counts, 5, replace_prob=1.0, seed=1).train()
    x = torch.rand(6, 4, 3, 8, 8)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(15):
        loss = frame_loss(model, calibration, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    with pytest.raises(ValueError, match="MultiExpertHead"):
        frame_loss(FrameClassifier(_Backbone(), nn.Linear(5, 3), feature_dim=5), calibration, x, y)


def test_loss_for_a_logits_only_loop_uses_the_cached_features() -> None:
    counts = [30, 10, 3]
    torch.manual_seed(9)
    head = MultiExpertHead(5, counts, experts=2).train()
    loss_fn = MultiExpertLoss(head, IntraClassCalibration(counts, 5, replace_prob=0.0))
    features = torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(RuntimeError, match="training mode"):
        loss_fn(torch.zeros(4, 3), y)
    logits = head(features)
    expected = multi_expert_loss(head.expert_logits(features), y, head.class_prior, head.taus)
    torch.testing.assert_close(loss_fn(logits, y), expected)
    with pytest.raises(RuntimeError, match="this batch"):
        loss_fn(torch.zeros(3, 3), y[:3])
