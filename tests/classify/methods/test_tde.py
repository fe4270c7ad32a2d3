"""Tests for cytolt.classify.methods.tde: the causal-norm head without background, TDE in eval mode."""

from __future__ import annotations

import torch

from cytolt.classify.methods.tde import TDE, build_tde_head
from cytolt.losses.tde import CausalNormClassifier, causal_norm_logits, tde_logits
from tests.classify.methods import tiny_context


def test_head_is_the_causal_norm_classifier_without_background() -> None:
    ctx = tiny_context()
    head = TDE.build_head(ctx)
    module = head.module
    assert isinstance(module, CausalNormClassifier) and not module.background_exempted
    assert head.config == {
        "type": "tde",
        "num_heads": 2,
        "tau": 16.0,
        "gamma": 1 / 32,
        "alpha": 3.0,
        "momentum": 0.9,
    }
    assert (module.in_features, module.out_features) == (4, 3)
    assert TDE.optimizer == "sgd"  # the paper's argument assumes SGD with momentum


def test_training_mode_scores_plain_and_moves_the_average_eval_mode_subtracts() -> None:
    torch.manual_seed(0)
    module = TDE.build_head(tiny_context()).module
    x = torch.randn(6, 4)
    module.train()
    torch.testing.assert_close(module(x), causal_norm_logits(x, module.weight))
    torch.testing.assert_close(module.mean_feature, x.mean(0))  # m <- 0.9 * 0 + mean(x)
    module.eval()
    out = module(x)
    torch.testing.assert_close(out, tde_logits(x, module.weight, module.mean_feature, alpha=3.0))
    assert not torch.allclose(out, causal_norm_logits(x, module.weight))
    torch.testing.assert_close(module.mean_feature, x.mean(0))  # eval leaves it


def test_alpha_zero_is_the_plain_classifier_and_the_folder_rebuilds_it() -> None:
    head = TDE.build_head(tiny_context(options={"tde_alpha": 0.0}))
    module = head.module
    module.train()
    module(torch.randn(8, 4))
    module.eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(module(x), causal_norm_logits(x, module.weight))
    rebuilt = build_tde_head(4, 3, **{k: v for k, v in head.config.items() if k != "type"})
    rebuilt.load_state_dict(module.state_dict())
    rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), module(x))
