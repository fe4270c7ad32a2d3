"""Tests for cytolt.losses.tde: the normalised multi-head classifier and the counterfactual (TDE) logits on
hand-worked values, their limits (alpha 0, no moving average yet, a feature along the head direction), the
background-exempted probabilities, the moving-average buffer and gradients."""

from __future__ import annotations

import pytest
import torch

from cytolt.losses.tde import (
    CausalNormClassifier,
    background_exempted_probs,
    causal_norm_logits,
    tde_logits,
)

D = torch.float64


def test_normalised_logits_by_hand() -> None:
    # One head: x / ||x|| = [0.6, 0.8]; gamma 0 makes the rows of eye-like weights unit: z = tau [0.6, 0.8].
    x = torch.tensor([[3.0, 4.0]], dtype=D)
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=D)
    torch.testing.assert_close(
        causal_norm_logits(x, w, num_heads=1, tau=16.0, gamma=0.0), 16 * torch.tensor([[0.6, 0.8]], dtype=D)
    )
    # gamma 1: w / (||w|| + 1) = diag(1/2, 2/3).
    torch.testing.assert_close(
        causal_norm_logits(x, w, num_heads=1, tau=16.0, gamma=1.0),
        16 * torch.tensor([[0.3, 0.8 * 2 / 3]], dtype=D),
    )
    # Two heads: the mean of each head's cosine (x and w normalised per head), times tau.
    x2 = torch.tensor([[3.0, 4.0, 1.0, 0.0]], dtype=D)
    w2 = torch.tensor([[1.0, 0.0, 0.0, 5.0]], dtype=D)
    torch.testing.assert_close(
        causal_norm_logits(x2, w2, num_heads=2, tau=16.0, gamma=0.0),
        torch.tensor([[8 * (0.6 + 0.0)]], dtype=D),
    )


def test_tde_logits_by_hand_and_limits() -> None:
    x = torch.tensor([[3.0, 4.0]], dtype=D)
    w = torch.eye(2, dtype=D)
    d = torch.tensor([5.0, 0.0], dtype=D)  # head direction [1, 0]; its length does not matter
    # cos(x, d) = 0.6, d . w_0 = 1, d . w_1 = 0: z^TDE = tau ([0.6, 0.8] - alpha 0.6 [1, 0]).
    torch.testing.assert_close(
        tde_logits(x, w, d, alpha=3.0, num_heads=1, tau=16.0, gamma=0.0),
        16 * torch.tensor([[0.6 - 1.8, 0.8]], dtype=D),
    )
    torch.manual_seed(0)
    x, w, d = torch.randn(5, 8, dtype=D), torch.randn(4, 8, dtype=D), torch.randn(8, dtype=D)
    plain = causal_norm_logits(x, w)
    torch.testing.assert_close(tde_logits(x, w, d, alpha=0.0), plain)  # no subtraction
    torch.testing.assert_close(tde_logits(x, w, torch.zeros(8, dtype=D)), plain)  # no moving average yet
    # A feature along the head direction in every head: the whole logit is the direct effect, (1 - alpha) left.
    torch.testing.assert_close(
        tde_logits(d.expand(2, 8), w, d, alpha=0.5), 0.5 * causal_norm_logits(d.expand(2, 8), w)
    )
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        causal_norm_logits(x, w, num_heads=3)


def test_background_exempted_probabilities() -> None:
    torch.manual_seed(1)
    logits, tde = torch.randn(6, 4, dtype=D), torch.randn(6, 4, dtype=D)
    probs = background_exempted_probs(logits, tde)
    torch.testing.assert_close(probs.sum(1), torch.ones(6, dtype=D))
    torch.testing.assert_close(
        probs[:, -1], torch.softmax(logits, 1)[:, -1]
    )  # background from the plain logits
    torch.testing.assert_close(
        probs[:, :-1] / probs[:, :-1].sum(1, keepdim=True), torch.softmax(tde[:, :-1], 1)
    )


def test_module_moving_average_training_logits_and_test_scores() -> None:
    torch.manual_seed(2)
    clf = CausalNormClassifier(2, 3, num_heads=1).train()
    clf(torch.tensor([[0.0, 4.0], [2.0, 0.0]]))  # batch mean [1, 2]
    torch.testing.assert_close(clf.mean_feature, torch.tensor([1.0, 2.0]))
    x = torch.tensor([[3.0, 0.0], [3.0, 0.0]])
    out = clf(x)  # 0.9 [1, 2] + [3, 0]
    torch.testing.assert_close(clf.mean_feature, torch.tensor([3.9, 1.8]))
    torch.testing.assert_close(out, causal_norm_logits(x, clf.weight.detach(), num_heads=1))
    out.sum().backward()
    assert clf.weight.grad is not None
    clf.eval()
    with torch.no_grad():
        scores = clf(x)
        plain = causal_norm_logits(x, clf.weight, num_heads=1)
        tde = tde_logits(x, clf.weight, clf.mean_feature, num_heads=1)
    torch.testing.assert_close(clf.mean_feature, torch.tensor([3.9, 1.8]))  # eval: no update
    torch.testing.assert_close(torch.softmax(scores, 1), background_exempted_probs(plain, tde))
    clf.use_effect = False
    torch.testing.assert_close(clf(x), plain)
    clf.use_effect, clf.background_exempted = True, False
    torch.testing.assert_close(clf(x), tde)
    assert set(clf.state_dict()) == {"weight", "mean_feature"}


def test_module_errors_and_no_host_reads() -> None:
    with pytest.raises(ValueError, match="do not split into 3 heads"):
        CausalNormClassifier(4, 3, num_heads=3)
    with pytest.raises(ValueError, match="momentum"):
        CausalNormClassifier(4, 3, momentum=1.0)
    clf = CausalNormClassifier(8, 5).to("meta").train()
    clf(torch.empty(6, 8, device="meta")).sum().backward()
    clf.eval()(torch.empty(6, 8, device="meta"))


def test_weighted_and_deferred_updates_average_the_chosen_rows() -> None:
    clf = CausalNormClassifier(2, 3, num_heads=1, momentum=0.5).train()
    x = torch.tensor([[2.0, 0.0], [0.0, 4.0], [8.0, 8.0]])
    clf.update(x, torch.tensor([1.0, 1.0, 0.0]))  # rows 0 and 1: mean [1, 2]
    torch.testing.assert_close(clf.mean_feature, torch.tensor([1.0, 2.0]))
    clf.update(x, torch.zeros(3))  # no chosen row: only the decay, 0.5 [1, 2]
    torch.testing.assert_close(clf.mean_feature, torch.tensor([0.5, 1.0]))
    clf.defer_update = True
    clf(x)  # kept for later, not folded in yet
    torch.testing.assert_close(clf.mean_feature, torch.tensor([0.5, 1.0]))
    clf.update_pending(torch.tensor([0.0, 0.0, 1.0]))  # 0.5 [0.5, 1] + [8, 8]
    torch.testing.assert_close(clf.mean_feature, torch.tensor([8.25, 8.5]))
    with pytest.raises(RuntimeError, match="no training forward"):
        clf.update_pending()
