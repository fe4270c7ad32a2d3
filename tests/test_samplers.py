"""Tests for cytolt.samplers: stochastic rounding, DDP sharding, determinism, CDB-S (the repeat factors
themselves: tests/test_category_stats.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolt.samplers import CDBSampler, RepeatFactorSampler, held_out_indices


def _cdb_weights_reference(difficulty: torch.Tensor, tau: float | str) -> torch.Tensor:
    """CDB weights written out from the paper (Sinha et al. ACCV 2020; dynamic tau eq. 3-4) to cross-check the sampler."""
    d = difficulty.double()
    if tau == "dynamic":
        acc = 1.0 - d
        b = acc.max() / (acc.min() + 0.01) - 1.0
        tau = float(2.0 * torch.sigmoid(b))
    w = d**tau
    return w / w.sum() * len(w)


def _counts(indices: list[int], n: int) -> np.ndarray:
    return np.bincount(np.asarray(indices, dtype=np.int64), minlength=n)


# ---------------------------------------------------------------- RepeatFactorSampler


def test_stochastic_rounding_mean_equals_factor() -> None:
    factors = np.array([0.5, 1.0, 1.25, 2.0, 3.7])
    sampler = RepeatFactorSampler(factors, seed=7, shuffle=False)  # order does not change the counts
    epochs = 1000
    total = np.zeros(len(factors))
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        counts = _counts(list(sampler), len(factors))
        # Each epoch an image appears floor(r) or ceil(r) times, never anything else.
        assert np.all((counts == np.floor(factors)) | (counts == np.ceil(factors)))
        total += counts
    # Bernoulli(p) mean over 1000 epochs has std <= 0.5 / sqrt(1000) = 0.016; allow ~4 std.
    np.testing.assert_allclose(total / epochs, factors, atol=0.065)


def test_len_is_expected_per_rank_size() -> None:
    factors = np.array([1.0, 2.5, 1.5, 1.0, 3.0])  # sum 9
    assert len(RepeatFactorSampler(factors, rank=0, world_size=1)) == 9
    assert len(RepeatFactorSampler(factors, rank=1, world_size=2)) == 5  # ceil(9 / 2)


@pytest.mark.parametrize("factors", [np.ones(10), np.array([1.0, 2.5, 1.5, 1.0, 3.0, 1.2, 1.0])])
def test_ddp_shards_are_disjoint_and_cover_the_epoch(factors: np.ndarray) -> None:
    world_size = 3
    full = list(RepeatFactorSampler(factors, seed=3, rank=0, world_size=1))
    shards = [
        list(RepeatFactorSampler(factors, seed=3, rank=r, world_size=world_size)) for r in range(world_size)
    ]
    # Equal lengths on every rank, or DDP's last all-reduce would hang.
    assert len({len(s) for s in shards}) == 1
    padded = len(shards[0]) * world_size
    assert len(full) <= padded < len(full) + world_size
    # Interleaving the shards position by position gives back the single-process order, then the padding:
    # each position of the epoch goes to exactly one rank.
    interleaved = [shards[p % world_size][p // world_size] for p in range(padded)]
    assert interleaved[: len(full)] == full
    assert set(interleaved[len(full) :]) <= set(full)
    if np.all(factors == 1) and len(factors) % world_size == 1:
        # A plain permutation of 10 images over 3 ranks: 4+4+4 with 2 padded repeats, every image seen.
        assert set().union(*map(set, shards)) == set(range(len(factors)))


def test_same_seed_and_epoch_reproduce_and_others_differ() -> None:
    factors = np.linspace(1.0, 3.0, 40)

    def draw(seed: int, epoch: int) -> list[int]:
        sampler = RepeatFactorSampler(factors, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(0, 5) == draw(0, 5)
    assert draw(0, 5) != draw(0, 6)
    assert draw(0, 5) != draw(1, 5)


def test_sampler_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    list(RepeatFactorSampler(np.linspace(1.0, 2.0, 20), seed=0))
    list(CDBSampler([{0}, {1}, {0, 1}], num_classes=2, seed=0))
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_no_shuffle_keeps_repeats_in_index_order() -> None:
    indices = list(RepeatFactorSampler(np.array([2.0, 1.0, 3.0]), shuffle=False))
    assert indices == [0, 0, 1, 2, 2, 2]


def test_infinite_mode_chains_consecutive_epochs() -> None:
    factors = np.array([1.0, 1.5, 2.5, 1.0])
    finite = RepeatFactorSampler(factors, seed=2)
    epochs = []
    for epoch in (4, 5):
        finite.set_epoch(epoch)
        epochs.extend(finite)
    infinite = RepeatFactorSampler(factors, seed=2, infinite=True)
    infinite.set_epoch(4)
    stream = iter(infinite)
    assert [next(stream) for _ in range(len(epochs))] == epochs


def test_repeat_factor_sampler_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        RepeatFactorSampler(np.ones((2, 2)))
    with pytest.raises(ValueError, match=">= 0"):
        RepeatFactorSampler(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="rank"):
        RepeatFactorSampler(np.ones(3), rank=2, world_size=2)


# ---------------------------------------------------------------- CDBSampler

IMAGES = [{0}, {1}, {2}, {0, 2}, set()]


def _frequencies(sampler: CDBSampler, epoch: int = 0) -> np.ndarray:
    sampler.set_epoch(epoch)
    return _counts(list(sampler), len(IMAGES)) / sampler.num_samples


def test_cdb_sampler_starts_uniform() -> None:
    sampler = CDBSampler(IMAGES, num_classes=3, num_samples=20000, seed=0)
    torch.testing.assert_close(sampler.image_weights, torch.ones(len(IMAGES), dtype=torch.float64))
    np.testing.assert_allclose(_frequencies(sampler), np.full(len(IMAGES), 0.2), atol=0.015)


def test_cdb_sampler_histogram_follows_class_weights() -> None:
    sampler = CDBSampler(IMAGES, num_classes=3, num_samples=20000, seed=1, empty_weight=0.5)
    sampler.set_class_weights([0.5, 2.0, 1.0])
    # Image weight = max over its classes: {0} 0.5, {1} 2.0, {2} 1.0, {0,2} max(0.5,1.0)=1.0, {} empty_weight 0.5.
    expected = np.array([0.5, 2.0, 1.0, 1.0, 0.5]) / 5.0
    # Multinomial frequency over 20000 draws: std <= 0.0035; tolerance ~4 std.
    np.testing.assert_allclose(_frequencies(sampler), expected, atol=0.015)


@pytest.mark.parametrize("tau", [1.0, 1.5, "dynamic"])
def test_cdb_update_difficulty_changes_the_draw(tau: float | str) -> None:
    sampler = CDBSampler(IMAGES, num_classes=3, num_samples=20000, seed=2, tau=tau)
    before = _frequencies(sampler)
    difficulty = torch.tensor([0.1, 0.3, 0.9])
    sampler.update_difficulty(difficulty)
    w = _cdb_weights_reference(difficulty, tau)
    torch.testing.assert_close(sampler.class_weights, w, rtol=1e-5, atol=1e-6)  # cdb_weights is float32
    torch.testing.assert_close(sampler.difficulty, difficulty.double())
    image_w = np.array([w[0], w[1], w[2], max(w[0], w[2]), 1.0])
    after = _frequencies(sampler)
    np.testing.assert_allclose(after, image_w / image_w.sum(), atol=0.015)
    # The hardest class (2) now dominates: its images are drawn more than before, the easy class 0's less.
    assert after[2] > before[2] + 0.05 and after[0] < before[0] - 0.05


def test_cdb_ddp_shards_partition_one_global_draw() -> None:
    kwargs = dict(num_classes=3, num_samples=11, seed=4)
    full = list(CDBSampler(IMAGES, rank=0, world_size=1, **kwargs))
    shards = [list(CDBSampler(IMAGES, rank=r, world_size=2, **kwargs)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 6 == len(CDBSampler(IMAGES, rank=1, world_size=2, **kwargs))
    interleaved = [shards[p % 2][p // 2] for p in range(12)]
    assert interleaved[:11] == full


def test_cdb_all_zero_weights_fall_back_to_uniform() -> None:
    sampler = CDBSampler(IMAGES, num_classes=3)
    sampler.set_class_weights([0.0, 0.0, 0.0])
    torch.testing.assert_close(sampler.class_weights, torch.ones(3, dtype=torch.float64))


def test_cdb_sampler_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="'dynamic'"):
        CDBSampler(IMAGES, num_classes=3, tau="auto")
    with pytest.raises(ValueError, match="outside 0..2"):
        CDBSampler([{3}], num_classes=3)
    sampler = CDBSampler(IMAGES, num_classes=3)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        sampler.update_difficulty([0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        sampler.set_class_weights([1.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="empty_weight=0"):
        CDBSampler([set(), set()], num_classes=1, empty_weight=0.0)


def test_cdb_exclude_keeps_images_out_of_every_draw() -> None:
    classes = [{0}, {0}, {1}, {2}, set()]
    sampler = CDBSampler(classes, num_classes=3, num_samples=400, seed=1)
    sampler.exclude([1, 3])
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert not {1, 3} & set(sampler)
    sampler.update_difficulty([0.1, 0.5, 1.0])  # re-weighting does not bring them back
    assert not {1, 3} & set(sampler)
    assert sampler.excluded.tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match="no image"):
        sampler.exclude([0, 2, 4])
    with pytest.raises(ValueError, match="0..4"):
        sampler.exclude([5])


def test_held_out_indices_are_stratified_seeded_and_spare_single_images() -> None:
    classes = [{0} for _ in range(80)] + [{0, 1} for _ in range(15)] + [{2}, {2}, {2}, {2}, {3}] + [set()] * 5
    held = held_out_indices(classes, 0.2, seed=3)
    assert held == held_out_indices(classes, 0.2, seed=3) and held != held_out_indices(classes, 0.2, seed=4)
    assert abs(len(held) - round(0.2 * len(classes))) <= 2
    assert len(set(held)) == len(held) and held == sorted(held)
    rare = {i for i, c in enumerate(classes) if c == {2}}
    assert 1 <= len(rare & set(held)) < len(rare)  # the tail class is held out, but not all of it
    assert 100 not in held  # the only image of class 3 stays in training
    assert any(80 <= i < 95 for i in held)  # images filed under their rarest class (1) are held out too
    with pytest.raises(ValueError, match="fraction"):
        held_out_indices(classes, 0.0)
