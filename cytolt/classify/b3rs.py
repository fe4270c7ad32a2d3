"""Block-based relatively balanced batch sampling (B3RS) and batch-embedded training (BET) (Zhang et al., "You Only
Need End-to-End Training for Long-Tailed Recognition", arXiv 2112.05958, withdrawn; extended as "Covariance-
corrected Whitening Alleviates Network Degeneration on Imbalanced Classification", arXiv 2408.17197, where B3RS
is renamed GRBS, the group-based relatively balanced batch sampler).

Both exist for the channel whitening of ``cytolt.classify.methods.whitening``: whitening estimates a covariance
from each batch, and an instance-sampled long-tailed batch holds almost no tail sample, so its covariance
fluctuates and ignores the tail; a class-balanced batch instead repeats the few tail samples until the model
over-fits them. B3RS sorts the classes by their count, cuts them into blocks, and gives every block a fixed
share of every batch ("relatively balanced": balanced across blocks, natural frequencies inside a block). BET
embeds such a batch in the ordinary instance-sampled one, so the whitening sees both and the natural
distribution still drives most of the learning.

Glossary
    labels   (N,) int class of each crop, 0..K-1.
    block    a set of classes adjacent in the order of decreasing count; ``num_blocks`` blocks of (nearly) equal
             numbers of classes, so the first holds the head and the last the tail.
    quota    how many places of each batch a block gets: ``q_b ∝ n_b ** power`` with ``n_b`` the block's number of
             crops (``power = 0``: equal shares; ``power = 1``: instance sampling in expectation), rounded by
             largest remainder, at least one place per block while the batch has room.

What was adapted (the method sections were not available to us; the abstracts and an open review of arXiv
2408.17197 were, which say that classes are first divided into groups, that the sampling rule sits between
class-balanced and instance-balanced sampling with several constants, and that BET controls how often the
relatively balanced batches are used): the blocks of equal class numbers, the power-law quota, drawing inside a
block without replacement (every crop of a block once before any twice), and BET as concatenation every
``period`` steps are our reading; constants: 3 blocks (many / medium / few, as the OLTR grouping), power 0,
an embedded batch of half the main batch every step.

Both samplers are batch samplers (``DataLoader(batch_sampler=...)``, or the classifier loop's ``build_sampler``
hook, which trains on their batches as they come) that draw from their own ``torch.Generator`` seeded with
``seed + epoch`` (``set_epoch``), like ``cytolt.samplers``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Sampler

# Three blocks: head, middle, tail, the grouping long-tail benchmarks report (many / medium / few shot).
NUM_BLOCKS = 3
# Equal shares per block: the most balanced setting; 1 would be instance sampling.
POWER = 0.0


def _as_labels(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence; got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0:
        raise ValueError("labels must be non-negative integers")
    return array.astype(np.int64)


def class_blocks(counts: Sequence[int] | np.ndarray, num_blocks: int = NUM_BLOCKS) -> list[np.ndarray]:
    """Classes with a count > 0, by decreasing count (ties: lower index first), cut into ``num_blocks`` blocks.

    Blocks hold ``ceil`` / ``floor`` of ``C / num_blocks`` classes (``np.array_split``), head first; fewer
    blocks when fewer classes are present.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1; got {num_blocks}")
    present = np.flatnonzero(counts > 0)
    if len(present) == 0:
        raise ValueError("class_blocks: no class has a sample")
    order = present[np.lexsort((present, -counts[present]))]
    return list(np.array_split(order, min(num_blocks, len(order))))


def block_quotas(
    block_sizes: Sequence[int] | np.ndarray, batch_size: int, *, power: float = POWER
) -> np.ndarray:
    """Places per block in a batch of ``batch_size``: ``∝ n_b ** power``, largest remainder, >= 1 each if room."""
    sizes = np.asarray(block_sizes, dtype=np.float64)
    if len(sizes) == 0 or (sizes <= 0).any():
        raise ValueError("block_quotas: every block needs at least one sample")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    share = sizes**power
    exact = batch_size * share / share.sum()
    quotas = np.floor(exact).astype(np.int64)
    # Largest remainder; ties go to the tail (later blocks), which the sampler exists to serve.
    remainder = exact - quotas
    for b in sorted(range(len(sizes)), key=lambda b: (-remainder[b], -b))[: batch_size - quotas.sum()]:
        quotas[b] += 1
    # Every block in every batch while the batch has a place for each: the point of the block structure.
    while (quotas == 0).any() and batch_size >= len(sizes):
        quotas[np.argmax(quotas)] -= 1
        quotas[np.flatnonzero(quotas == 0)[-1]] += 1
    return quotas


def _cycled_permutations(members: np.ndarray, total: int, generator: torch.Generator) -> np.ndarray:
    """``total`` draws from ``members``: concatenated random permutations (each member once per round)."""
    rounds = math.ceil(total / len(members)) if total else 0
    perms = [members[torch.randperm(len(members), generator=generator).numpy()] for _ in range(rounds)]
    return np.concatenate(perms)[:total] if perms else members[:0]


class _SeededBatchSampler(Sampler[list[int]]):
    """Shared seed / epoch handling: epoch e draws with ``seed + e``. ``yields_batches`` tells the classifier's
    training loop to train on these batches as they come (:func:`cytolt.classify.methods.spec.yields_batches`)."""

    yields_batches: ClassVar[bool] = True

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, int | np.integer):
            raise ValueError(f"seed must be an int; got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw the next ``__iter__`` yields."""
        self.epoch = int(epoch)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)


class _BlockDraw:
    """The block structure of a label array and the quota of each block for one batch size."""

    def __init__(self, labels: np.ndarray, batch_size: int, num_blocks: int, power: float) -> None:
        counts = np.bincount(labels)
        self.blocks = class_blocks(counts, num_blocks)
        self.members = [np.flatnonzero(np.isin(labels, block)) for block in self.blocks]
        self.quotas = block_quotas([len(m) for m in self.members], batch_size, power=power)

    def batches(self, num_batches: int, generator: torch.Generator) -> list[np.ndarray]:
        """``num_batches`` batches, each ``quotas[b]`` crops of block b (shuffled within the batch)."""
        streams = [
            _cycled_permutations(m, int(q) * num_batches, generator)
            for m, q in zip(self.members, self.quotas, strict=True)
        ]
        out = []
        for t in range(num_batches):
            batch = np.concatenate(
                [s[t * q : (t + 1) * q] for s, q in zip(streams, self.quotas, strict=True)]
            )
            out.append(batch[torch.randperm(len(batch), generator=generator).numpy()])
        return out


class B3RSBatchSampler(_SeededBatchSampler):
    """Block-based relatively balanced batches: every batch gives block b exactly ``quotas[b]`` places.

    Inside a block crops are drawn without replacement, so over an epoch a block's classes keep their natural
    proportions and each crop of a block appears once before any appears twice (the tail block's crops are
    the ones repeated).

    Args:
        labels: (N,) class of each crop.
        batch_size: crops per batch.
        num_blocks: number of class blocks (head to tail).
        power: block shares ``∝ n_b ** power`` (0 equal, 1 instance-like).
        num_batches: batches per epoch; default ``ceil(N / batch_size)``, the length of an instance-sampled epoch.
        seed: epoch e draws with ``seed + e``.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        *,
        batch_size: int,
        num_blocks: int = NUM_BLOCKS,
        power: float = POWER,
        num_batches: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.labels = _as_labels(labels)
        self.batch_size = int(batch_size)
        self._draw = _BlockDraw(self.labels, self.batch_size, num_blocks, power)
        self.num_batches = (
            math.ceil(len(self.labels) / self.batch_size) if num_batches is None else num_batches
        )
        if self.num_batches < 1:
            raise ValueError(f"num_batches must be >= 1; got {num_batches}")

    @property
    def blocks(self) -> list[np.ndarray]:
        """The class indices of each block, head first."""
        return self._draw.blocks

    @property
    def quotas(self) -> np.ndarray:
        """(num_blocks,) places per batch of each block."""
        return self._draw.quotas

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._draw.batches(self.num_batches, self._generator()):
            yield batch.tolist()

    def __len__(self) -> int:
        return self.num_batches


class BatchEmbeddedSampler(_SeededBatchSampler):
    """Batch-embedded training (BET): instance-sampled batches with a B3RS batch embedded every ``period`` steps.

    An epoch is one random permutation of the N crops cut into batches of ``batch_size`` (the last one shorter
    unless ``drop_last``); at steps ``0, period, 2 period, ...`` a B3RS batch of ``embed_size`` crops is appended
    after the main batch. Channel whitening then estimates that step's covariance from both parts, and the loss
    covers both. The main part comes first in each yielded list.

    Args:
        labels: (N,) class of each crop.
        batch_size: main (instance-sampled) batch size.
        embed_size: crops of the embedded B3RS batch; default ``batch_size // 2`` (at least 1).
        period: embed every ``period``-th step (1: every step).
        num_blocks, power: the B3RS block structure and quotas (see :class:`B3RSBatchSampler`).
        drop_last: drop the last short main batch.
        seed: epoch e draws with ``seed + e``.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        *,
        batch_size: int,
        embed_size: int | None = None,
        period: int = 1,
        num_blocks: int = NUM_BLOCKS,
        power: float = POWER,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.labels = _as_labels(labels)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if period < 1:
            raise ValueError(f"period must be >= 1; got {period}")
        self.batch_size = int(batch_size)
        self.embed_size = max(1, self.batch_size // 2) if embed_size is None else int(embed_size)
        if self.embed_size < 1:
            raise ValueError(f"embed_size must be >= 1; got {embed_size}")
        self.period = int(period)
        self.drop_last = drop_last
        self._draw = _BlockDraw(self.labels, self.embed_size, num_blocks, power)
        n = len(self.labels)
        self.num_batches = n // self.batch_size if drop_last else math.ceil(n / self.batch_size)
        if self.num_batches < 1:
            raise ValueError(f"{n} crops make no full batch of {batch_size} with drop_last")

    def __iter__(self) -> Iterator[list[int]]:
        generator = self._generator()
        order = torch.randperm(len(self.labels), generator=generator).numpy()
        embedded = self._draw.batches(math.ceil(self.num_batches / self.period), generator)
        for t in range(self.num_batches):
            main = order[t * self.batch_size : (t + 1) * self.batch_size].tolist()
            yield (main + embedded[t // self.period].tolist()) if t % self.period == 0 else main

    def __len__(self) -> int:
        return self.num_batches
