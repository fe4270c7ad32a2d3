"""Tests for cytolt.classify.methods.tde: the causal-norm head without background, TDE in eval mode."""

from __future__ import annotations

import torch

from cytolt.classify.methods.tde import ALPHA_GRID, TDE, build_tde_head, sweep_alpha
from cytolt.losses.tde import CausalNormClassifier, causal_norm_logits, tde_logits
from tests.classify.methods import TinyCrops, tiny_context


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
    ctx = tiny_context(options={"tde_alpha": 0.0})
    ctx.model.head = TDE.build_head(ctx).module
    module = ctx.model.head
    module.train()
    module(torch.randn(8, 4))
    head = TDE.finish(ctx)
    assert head.module is module and module.alpha == 0.0 and head.config["alpha"] == 0.0
    module.eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(module(x), causal_norm_logits(x, module.weight))
    settings = {k: v for k, v in head.config.items() if k != "type"}
    rebuilt = build_tde_head(4, 3, **settings)
    rebuilt.load_state_dict(module.state_dict())
    rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), module(x))


def test_alpha_is_swept_on_val_with_ties_to_the_smaller() -> None:
    ctx = tiny_context(val=TinyCrops([0, 1, 2, 2, 1], seed=5))
    ctx.model.head = TDE.build_head(ctx).module
    # no average feature yet (m = 0): the counterfactual term is 0 and every alpha scores the same -> alpha 0
    head = TDE.finish(ctx)
    assert head.config["alpha"] == 0.0 and len(head.config["sweep_balanced_accuracy"]) == len(ALPHA_GRID)
    assert len(set(head.config["sweep_balanced_accuracy"].values())) == 1
    assert ALPHA_GRID[0] == 0.0 and ALPHA_GRID[-1] == 3.0
    # a hand-made case: class 0's weight lies along the mean feature d = (1, 0, 1, 0) (per head: (1, 0)); the
    # crops of class 1 have a large component along d too, which alpha > 0 removes
    module = CausalNormClassifier(4, 2, background_exempted=False)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]))
        module.mean_feature.copy_(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    features = torch.tensor([[1.0, 0.1, 1.0, 0.1], [1.0, 0.8, 1.0, 0.8]])
    alpha, scores = sweep_alpha(features, torch.tensor([0, 1]), module)
    assert scores[0.0] == 0.5 and alpha > 0 and scores[alpha] == 1.0
    # without val (and no alpha given) the paper's 3
    ctx = tiny_context()
    ctx.model.head = TDE.build_head(ctx).module
    assert TDE.finish(ctx).config["alpha"] == 3.0
