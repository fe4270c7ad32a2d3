"""Tests for cytolt.losses.federated: the category draw (coverage, weights, determinism) and the masked BCE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses.federated import FederatedLoss, draw_seed, federated_class_mask, federated_loss


def _targets(labels: list[int], c: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), c + 1)[:, :c].float()


def test_mask_keeps_positives_and_fills_up_to_k() -> None:
    g = torch.Generator().manual_seed(0)
    targets = _targets([1, 7, 10, 10], 10)  # positives of 1 and 7 (10 = background)
    weight = torch.ones(10)
    for _ in range(20):
        mask = federated_class_mask(targets, weight, num_sample_classes=4, generator=g)
        assert mask[1] and mask[7]
        assert int(mask.sum()) == 4
    many = _targets([0, 1, 2, 3, 4], 10)  # more positive categories than K: all kept, nothing sampled
    mask = federated_class_mask(many, weight, num_sample_classes=3, generator=g)
    torch.testing.assert_close(mask, torch.arange(10) < 5)


def test_zero_weight_categories_are_never_drawn_and_k_ge_c_takes_all() -> None:
    g = torch.Generator().manual_seed(1)
    weight = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    for _ in range(20):
        mask = federated_class_mask(_targets([5], 5), weight, num_sample_classes=4, generator=g)
        assert not mask[1] and not mask[3]
        assert int(mask.sum()) == 3  # only three categories can be drawn
    assert federated_class_mask(_targets([5], 5), weight, num_sample_classes=5).all()


def test_draw_frequency_follows_the_weights() -> None:
    # One draw among weights (1, 3, 6) and no positives: category j is chosen with probability w_j / 10.
    g = torch.Generator().manual_seed(2)
    weight = torch.tensor([1.0, 3.0, 6.0])
    draws = torch.stack(
        [
            federated_class_mask(_targets([3], 3), weight, num_sample_classes=1, generator=g)
            for _ in range(3000)
        ]
    )
    freq = draws.float().mean(0)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.3, 0.6]), atol=0.03, rtol=0)


def test_loss_is_bce_on_chosen_columns() -> None:
    torch.manual_seed(3)
    logits = torch.randn(4, 3, requires_grad=True)
    targets = _targets([0, 3, 3, 0], 3)
    mask = torch.tensor([True, False, True])
    loss = federated_loss(logits, targets, mask, reduction="none")
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(loss, bce * mask)
    loss.sum().backward()
    assert (logits.grad[:, 1] == 0).all() and (logits.grad[:, 0] != 0).all()
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: federated_loss(x, targets.double(), mask, reduction="sum"), (z,)
    )


def test_module_seeded_eval_and_state() -> None:
    torch.manual_seed(4)
    counts = [100, 50, 10, 5, 1, 0]
    logits = torch.randn(8, 6)
    labels = torch.tensor([0, 6, 6, 2, 6, 6, 6, 6])
    a = FederatedLoss(counts, num_sample_classes=3, seed=7)
    b = FederatedLoss(counts, num_sample_classes=3, seed=7)
    for _ in range(3):  # same seed, same draws
        torch.testing.assert_close(a(logits, labels), b(logits, labels))
    mask = a.class_mask(_targets(labels.tolist(), 6))
    assert mask[0] and mask[2] and not mask[5] and int(mask.sum()) == 3
    a.eval()  # every category takes part: plain BCE
    bce = F.binary_cross_entropy_with_logits(logits, _targets(labels.tolist(), 6))
    torch.testing.assert_close(a(logits, labels), bce)
    restored = FederatedLoss([1] * 6)
    restored.load_state_dict(a.state_dict())
    torch.testing.assert_close(restored.sampling_weight, torch.tensor(counts, dtype=torch.float32) ** 0.5)
    with pytest.raises(ValueError, match="non-negative counts"):
        FederatedLoss([1, -1])


# ---------------------------------------------------------------------------------------------- per rank and step

_NUM_CLASSES, _K, _STEPS = 200, 20, 3


def _draws(loss: FederatedLoss) -> torch.Tensor:
    """``_STEPS`` training draws of one batch whose only positive is class 0: (steps, C) bool."""
    targets = _targets([0, _NUM_CLASSES, _NUM_CLASSES], _NUM_CLASSES)
    return torch.stack([loss.class_mask(targets) for _ in range(_STEPS)])


def _federated_worker(rank: int, init_file: str, out_dir: str) -> None:
    """One of two gloo processes: draw, gather both ranks' masks, rank 0 saves them."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        masks = _draws(FederatedLoss([1.0] * _NUM_CLASSES, num_sample_classes=_K, seed=3)).to(torch.uint8)
        gathered = [torch.zeros_like(masks) for _ in range(2)]
        dist.all_gather(gathered, masks)
        if rank == 0:
            torch.save(torch.stack(gathered), f"{out_dir}/masks.pt")
    finally:
        dist.destroy_process_group()


def test_draws_differ_per_step_and_are_reproducible() -> None:
    a = _draws(FederatedLoss([1.0] * _NUM_CLASSES, num_sample_classes=_K, seed=3))
    b = _draws(FederatedLoss([1.0] * _NUM_CLASSES, num_sample_classes=_K, seed=3))
    assert torch.equal(a, b)  # a new module repeats the run
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[1], a[2])  # each step draws anew
    assert (a.sum(1) == _K).all() and a[:, 0].all()  # the positive class, plus K - 1 negatives
    assert draw_seed(3, 0, 0) != draw_seed(3, 1, 0) != draw_seed(3, 0, 1)


def test_two_gloo_processes_draw_different_negatives(tmp_path) -> None:
    """Two ranks under torch.distributed (gloo, CPU) seed each draw with their rank: different negatives, the
    positive class in both; rank 0 draws what a single process draws."""
    import torch.multiprocessing as mp

    mp.spawn(_federated_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    masks = torch.load(tmp_path / "masks.pt", weights_only=True).bool()  # (rank, step, C)
    assert masks.shape == (2, _STEPS, _NUM_CLASSES)
    for step in range(_STEPS):
        assert not torch.equal(masks[0, step], masks[1, step])
        assert masks[:, step, 0].all() and (masks[:, step].sum(1) == _K).all()
    single = _draws(FederatedLoss([1.0] * _NUM_CLASSES, num_sample_classes=_K, seed=3))
    assert torch.equal(masks[0], single)
