"""Tests for cytolt.classify.methods.ncm: class means of normalised features, cosine logits, the saved head."""

from __future__ import annotations

import pytest
import torch

from cytolt.classify.methods.ncm import NCM, TEMPERATURE, NCMHead, build_ncm_head, class_means, ncm_logits
from cytolt.classify.methods.spec import eval_features
from tests.classify.methods import tiny_context


def test_class_means_of_unit_features_hand_worked() -> None:
    features = torch.tensor([[3.0, 4.0], [2.0, 0.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 1])
    means = class_means(features, labels, 3)
    # class 0: mean of (0.6, 0.8) and (1, 0) = (0.8, 0.4); class 1: (0, 1); class 2 has no sample: zeros
    torch.testing.assert_close(means, torch.tensor([[0.8, 0.4], [0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="labels must lie in"):
        class_means(features, torch.tensor([0, 3, 1]), 3)
    with pytest.raises(ValueError, match="must be \\(N, D\\)"):
        class_means(features, torch.tensor([0, 1]), 3)


def test_logits_are_cosines_over_the_temperature() -> None:
    means = torch.tensor([[0.8, 0.4], [0.0, 1.0], [0.0, 0.0]])
    x = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    cos_0 = 0.8 / (0.8**2 + 0.4**2) ** 0.5
    expected = torch.tensor([[cos_0, 0.0, 0.0], [-0.4 / (0.8**2 + 0.4**2) ** 0.5, -1.0, 0.0]])
    torch.testing.assert_close(ncm_logits(x, means, temperature=1.0), expected)
    torch.testing.assert_close(ncm_logits(x, means), expected / TEMPERATURE)
    # the temperature never changes the arg-max; the feature's length never matters
    torch.testing.assert_close(ncm_logits(3 * x, means, temperature=0.5).argmax(1), expected.argmax(1))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ncm_logits(x, means, temperature=0.0)


def test_head_keeps_its_means_in_a_buffer() -> None:
    head = NCMHead(torch.eye(3, 4), temperature=0.25)
    assert set(head.state_dict()) == {"means"} and not list(head.parameters())
    rebuilt = build_ncm_head(4, 3, temperature=0.25)
    rebuilt.load_state_dict(head.state_dict())
    x = torch.randn(2, 4)
    torch.testing.assert_close(rebuilt(x), head(x))
    with pytest.raises(ValueError, match="means must be"):
        NCMHead(torch.zeros(3))


def test_finish_uses_the_training_features() -> None:
    ctx = tiny_context()
    head = NCM.finish(ctx)
    assert head.config == {"type": "ncm", "temperature": TEMPERATURE}
    features = eval_features(ctx.model, ctx.train)
    torch.testing.assert_close(head.module.means, class_means(features, torch.as_tensor(ctx.train.labels), 3))
    assert NCM.finish(tiny_context(options={"temperature": 0.5})).module.temperature == 0.5
