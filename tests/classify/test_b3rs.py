"""Tests for cytolt.classify.b3rs: class blocks, quotas, the balance of B3RS batches, BET's embedding, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolt.classify.b3rs import (
    B3RSBatchSampler,
    BatchEmbeddedSampler,
    block_quotas,
    class_blocks,
)
from cytolt.classify.methods.spec import yields_batches


def _long_tail_labels() -> np.ndarray:
    # 6 classes: 200, 100, 50, 20, 8, 2 crops (N = 380), in shuffled order so positions carry no class.
    counts = [200, 100, 50, 20, 8, 2]
    labels = np.repeat(np.arange(6), counts)
    return labels[np.random.default_rng(0).permutation(len(labels))]


def test_class_blocks_order_by_count_and_split_evenly() -> None:
    counts = np.array([5, 50, 0, 20, 50, 1, 9])
    blocks = class_blocks(counts, 3)
    # Present classes by decreasing count, ties by index: 1, 4 (50), 3 (20), 6 (9), 0 (5), 5 (1); class 2 empty.
    assert [b.tolist() for b in blocks] == [[1, 4], [3, 6], [0, 5]]
    assert [b.tolist() for b in class_blocks(counts, 4)] == [[1, 4], [3, 6], [0], [5]]
    assert len(class_blocks([3, 1], 5)) == 2  # never more blocks than classes
    with pytest.raises(ValueError, match="no class"):
        class_blocks([0, 0], 2)


def test_block_quotas_hand_worked() -> None:
    # power 0: 16 places over 3 blocks = 5.33 each; the remainder place goes to the tail block.
    assert block_quotas([300, 70, 10], 16).tolist() == [5, 5, 6]
    # power 1: proportional to sizes, 16 * (300, 70, 10) / 380 = (12.63, 2.95, 0.42) -> (13, 3, 0), then the
    # empty tail block takes a place from the largest: (12, 3, 1).
    assert block_quotas([300, 70, 10], 16, power=1.0).tolist() == [12, 3, 1]
    # power 0.5: sqrt sizes (17.3, 8.4, 3.2) -> 16 * share = (9.45, 4.56, 1.73) -> (9, 5, 2).
    assert block_quotas([300, 70, 10], 16, power=0.5).tolist() == [9, 5, 2]
    assert block_quotas([300, 70, 10], 2).sum() == 2  # fewer places than blocks: no forced place
    with pytest.raises(ValueError, match="at least one sample"):
        block_quotas([3, 0], 4)


def test_every_batch_meets_the_block_quotas() -> None:
    labels = _long_tail_labels()
    sampler = B3RSBatchSampler(labels, batch_size=12, num_blocks=3, seed=1)
    block_of = {c: b for b, block in enumerate(sampler.blocks) for c in block.tolist()}
    assert [b.tolist() for b in sampler.blocks] == [[0, 1], [2, 3], [4, 5]]
    assert sampler.quotas.tolist() == [4, 4, 4]
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32  # ceil(380 / 12)
    for batch in batches:
        blocks = np.bincount([block_of[int(labels[i])] for i in batch], minlength=3)
        assert blocks.tolist() == [4, 4, 4]


def test_within_block_draws_without_replacement_and_natural_frequencies() -> None:
    labels = _long_tail_labels()
    sampler = B3RSBatchSampler(labels, batch_size=12, seed=2)
    drawn = np.concatenate([np.asarray(b) for b in sampler])
    # Head block (300 crops) gets 4 * 32 = 128 places: no crop twice.
    head = drawn[np.isin(labels[drawn], [0, 1])]
    assert len(head) == 128 and len(np.unique(head)) == 128
    # Tail block (10 crops) gets 128 places: each crop 12 or 13 times (full rounds before repeats).
    tail = drawn[np.isin(labels[drawn], [4, 5])]
    per_crop = np.bincount(tail, minlength=len(labels))[np.isin(labels, [4, 5])]
    assert per_crop.min() >= 12 and per_crop.max() <= 13
    # Inside the tail block the classes keep their natural 8 : 2 proportion (exactly, up to one round).
    tail_classes = np.bincount(labels[tail], minlength=6)[4:]
    assert abs(tail_classes[0] / tail_classes.sum() - 0.8) < 0.05
    # Compared with instance sampling, the tail block's share rises from 10/380 to 1/3.
    assert len(tail) / len(drawn) == pytest.approx(1 / 3)


def test_power_one_matches_instance_shares() -> None:
    labels = _long_tail_labels()
    sampler = B3RSBatchSampler(labels, batch_size=38, power=1.0, seed=0)
    # Blocks hold 300, 70, 10 crops: 38 * (300, 70, 10) / 380 = (30, 7, 1) exactly.
    assert sampler.quotas.tolist() == [30, 7, 1]


def test_b3rs_seed_and_epoch_determinism() -> None:
    labels = _long_tail_labels()
    a = B3RSBatchSampler(labels, batch_size=10, seed=5)
    b = B3RSBatchSampler(labels, batch_size=10, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(B3RSBatchSampler(labels, batch_size=10, seed=6)) != first


def test_b3rs_batches_feed_a_dataloader() -> None:
    labels = _long_tail_labels()
    data = torch.utils.data.TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    sampler = B3RSBatchSampler(labels, batch_size=9, num_batches=3, seed=0)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler)
    out = [y for _, y in loader]
    assert len(out) == 3 and all(len(y) == 9 for y in out)


def test_bet_embeds_a_b3rs_batch_every_period_steps() -> None:
    labels = _long_tail_labels()
    sampler = BatchEmbeddedSampler(labels, batch_size=32, embed_size=6, period=2, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 12  # ceil(380 / 32)
    main_parts = []
    for t, batch in enumerate(batches):
        main_len = 32 if t < 11 else 380 - 11 * 32
        assert len(batch) == main_len + (6 if t % 2 == 0 else 0)
        main_parts.append(batch[:main_len])
        if t % 2 == 0:
            # The embedded part: 2 crops of each block (6 places / 3 blocks).
            blocks = np.digitize(labels[batch[main_len:]], [2, 4])
            assert np.bincount(blocks, minlength=3).tolist() == [2, 2, 2]
    # The main parts are one permutation of the crops: instance sampling, each crop once per epoch.
    assert sorted(np.concatenate(main_parts).tolist()) == list(range(len(labels)))


def test_bet_defaults_and_drop_last() -> None:
    labels = _long_tail_labels()
    sampler = BatchEmbeddedSampler(labels, batch_size=64, drop_last=True, seed=0)
    assert sampler.embed_size == 32 and len(sampler) == 5  # floor(380 / 64)
    assert all(len(b) == 96 for b in sampler)
    same = BatchEmbeddedSampler(labels, batch_size=64, drop_last=True, seed=0)
    assert list(same) == list(sampler)
    with pytest.raises(ValueError, match="period"):
        BatchEmbeddedSampler(labels, batch_size=8, period=0)
    with pytest.raises(ValueError, match="no full batch"):
        BatchEmbeddedSampler(labels[:3], batch_size=8, drop_last=True)


def test_bad_labels() -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        B3RSBatchSampler([], batch_size=4)
    with pytest.raises(ValueError, match="non-negative integers"):
        B3RSBatchSampler([0.5, 1.0], batch_size=4)
    with pytest.raises(ValueError, match="seed"):
        B3RSBatchSampler([0, 1], batch_size=4, seed=1.5)  # type: ignore[arg-type]


def test_batch_samplers_say_they_yield_batches() -> None:
    labels = _long_tail_labels()
    assert yields_batches(BatchEmbeddedSampler(labels, batch_size=20, seed=0))
    assert yields_batches(B3RSBatchSampler(labels, batch_size=12, seed=0))
    assert not yields_batches(range(3))
