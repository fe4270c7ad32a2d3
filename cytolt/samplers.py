"""Long-tail samplers over image indices: repeat-factor sampling (RFS) and class-difficulty sampling (CDB-S).

Glossary
    image_classes   list of length N (images); entry i is the set of class indices ``0..C-1`` present in image i.
                    An image without annotations has an empty set.
    repeat factor   r_i >= 1, how many times image i is seen per epoch on average (RFS); ``repeat_factors``
                    computes it (``cytolt.category_stats``, re-exported here because the sampler takes it).
    difficulty      d (C,), d_c = 1 - A_c with A_c a per-class accuracy on a held-out split (CDB).
    class weights   w (C,), mean 1; CDB-S draws image i with probability proportional to max_{c in i} w_c.

Both samplers are plain ``torch.utils.data.Sampler`` objects that draw from their own ``torch.Generator``
seeded with ``seed + epoch`` (never the global RNG), so every rank of a DDP job computes the same global
order and keeps every ``world_size``-th index starting at ``rank`` (detectron2's sharding). The framework
calls ``set_epoch(epoch)`` before each epoch (mmengine's ``DistSamplerSeedHook`` does); the mmengine
adapters that build them from a dataset live in ``cytolt.mm.samplers``.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Sampler

from cytolt.category_stats import repeat_factors  # re-exported: the factors RepeatFactorSampler takes
from cytolt.losses.cdb import cdb_weights

__all__ = ["repeat_factors", "RepeatFactorSampler", "CDBSampler", "held_out_indices"]

log = logging.getLogger("cytolt")


def _resolve_dist(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Rank and world size: the given values, else torch.distributed's, else (0, 1)."""
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialized else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialized else 0
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"need world_size >= 1 and 0 <= rank < world_size; got rank={rank}, world_size={world_size}"
        )
    return rank, world_size


def _pad_to_multiple(indices: torch.Tensor, world_size: int) -> torch.Tensor:
    """Repeat the head of ``indices`` so its length divides by ``world_size``.

    Every rank must take the same number of steps, or DDP's last all-reduce waits forever.
    """
    remainder = len(indices) % world_size
    if remainder == 0 or len(indices) == 0:
        return indices
    extra = world_size - remainder
    reps = math.ceil(extra / len(indices))
    return torch.cat([indices, indices.repeat(reps)[:extra]])


class _EpochSampler(Sampler[int]):
    """Shared machinery: per-epoch generator, DDP sharding, finite or infinite iteration.

    Subclasses implement ``_epoch_indices(generator) -> LongTensor`` (the global order of one epoch) and
    ``_expected_epoch_size() -> float``.
    """

    def __init__(self, *, seed: int, rank: int | None, world_size: int | None, infinite: bool) -> None:
        if not isinstance(seed, int | np.integer):
            raise ValueError(f"seed must be an int; got {seed!r}")
        self.seed = int(seed)
        self.rank, self.world_size = _resolve_dist(rank, world_size)
        self.infinite = infinite
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw the next ``__iter__`` yields (seeds the generator with seed + epoch)."""
        self.epoch = int(epoch)

    def _generator(self, epoch: int) -> torch.Generator:
        generator = torch.Generator()
        generator.manual_seed(self.seed + epoch)
        return generator

    def _epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _expected_epoch_size(self) -> float:
        raise NotImplementedError

    def _shard(self, epoch: int) -> Iterator[int]:
        indices = _pad_to_multiple(self._epoch_indices(self._generator(epoch)), self.world_size)
        return itertools.islice(indices.tolist(), self.rank, None, self.world_size)

    def __iter__(self) -> Iterator[int]:
        if not self.infinite:
            yield from self._shard(self.epoch)
            return
        # Infinite stream for iteration-based loops: consecutive epochs, each with its own draw.
        epoch = self.epoch
        while True:
            yield from self._shard(epoch)
            epoch += 1

    def __len__(self) -> int:
        """Expected number of indices this rank yields per epoch (the draw may differ by a few)."""
        return math.ceil(round(self._expected_epoch_size()) / self.world_size)


class RepeatFactorSampler(_EpochSampler):
    """Repeat-factor sampling (Gupta et al., LVIS, CVPR 2019) with stochastic rounding per epoch.

    Each epoch image i appears ``floor(r_i) + Bernoulli(frac(r_i))`` times, so its mean count is r_i; with
    ``shuffle`` the repeated list is permuted. The epoch's size varies around ``sum(r)`` (its standard deviation
    is at most ``sqrt(N) / 2``); ``len(sampler)`` reports the expected per-rank size.

    Args:
        repeat_factors: (N,) factors >= 0, e.g. from :func:`repeat_factors`.
        seed: base seed; epoch e draws with ``seed + e``. Must be equal on every rank.
        shuffle: permute the epoch's indices (else repeated indices come in ascending order).
        rank, world_size: DDP shard; ``None`` reads torch.distributed (or 0 and 1 when it is not initialised).
        infinite: yield epoch after epoch without end (iteration-based loops); ``len`` stays one epoch.
    """

    def __init__(
        self,
        repeat_factors: Sequence[float] | np.ndarray | torch.Tensor,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        infinite: bool = False,
    ) -> None:
        super().__init__(seed=seed, rank=rank, world_size=world_size, infinite=infinite)
        factors = torch.as_tensor(np.asarray(repeat_factors, dtype=np.float64))
        if factors.ndim != 1:
            raise ValueError(f"repeat_factors must be 1-D (one per image); got shape {tuple(factors.shape)}")
        if not torch.isfinite(factors).all() or (factors < 0).any():
            raise ValueError("repeat_factors must be finite and >= 0")
        self.repeat_factors = factors
        self.shuffle = shuffle
        self._int_part = torch.floor(factors)
        self._frac_part = factors - self._int_part

    def _epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        # Stochastic rounding: add one more copy with probability equal to the fractional part.
        draws = torch.rand(len(self._frac_part), generator=generator, dtype=torch.float64)
        counts = (self._int_part + (draws < self._frac_part)).long()
        indices = torch.repeat_interleave(torch.arange(len(counts)), counts)
        if self.shuffle:
            indices = indices[torch.randperm(len(indices), generator=generator)]
        return indices

    def _expected_epoch_size(self) -> float:
        return float(self.repeat_factors.sum())


def held_out_indices(image_classes: Sequence[set[int]], fraction: float, *, seed: int = 0) -> list[int]:
    """Images to hold out of training for CDB's difficulty: ``round(fraction * N)``, stratified by rarest class.

    Each image is filed under its rarest class (fewest images holding it; ``-1`` for an image without
    classes) and every group gives up its share (largest remainder), at least one image of a group of two or
    more, so that tail classes appear in the held-out part whenever the data allow. Seeded; returns sorted
    indices into ``image_classes``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1); got {fraction}")
    n = len(image_classes)
    counts: dict[int, int] = {}
    for classes in image_classes:
        for c in classes:
            counts[c] = counts.get(c, 0) + 1
    groups: dict[int, list[int]] = {}
    for i, classes in enumerate(image_classes):
        rarest = min(classes, key=lambda c: (counts[c], c)) if classes else -1
        groups.setdefault(rarest, []).append(i)
    generator = torch.Generator().manual_seed(int(seed))
    target = round(fraction * n)
    shares = {g: fraction * len(members) for g, members in groups.items()}
    take = {g: max(int(shares[g]), 1 if len(groups[g]) > 1 else 0) for g in groups}
    # Hand the images still missing to the groups with the largest remainders (rarest classes first on ties).
    for g in sorted(groups, key=lambda g: (int(shares[g]) - shares[g], counts.get(g, n + 1))):
        if sum(take.values()) >= target:
            break
        if take[g] < len(groups[g]) - 1:
            take[g] += 1
    chosen: list[int] = []
    for g in sorted(groups):
        members = groups[g]
        order = torch.randperm(len(members), generator=generator).tolist()
        chosen += [members[j] for j in order[: take[g]]]
    if not chosen or len(chosen) >= n:
        raise ValueError(
            f"held-out fraction {fraction} of {n} images leaves no held-out or no training image"
        )
    return sorted(chosen)


class CDBSampler(_EpochSampler):
    """Class-difficulty based sampling, CDB-S (Sinha et al., ACCV 2020; IJCV 2022), for detection.

    Class weights ``w = cdb_weights(difficulty, tau)`` (``w_c = d_c ** tau`` normalised to mean 1); image i is
    drawn with probability proportional to ``max_{c in i} w_c`` (``empty_weight`` for an image without
    classes), with replacement, ``num_samples`` draws per epoch (default: the dataset size). Difficulty starts
    at ones (uniform sampling); call :meth:`update_difficulty` when it is re-measured (every K epochs, K=1 in
    the paper; ``cytolt.mm.hooks.CDBHook`` does it in mmdet) or :meth:`set_class_weights` with weights
    computed elsewhere. Changes apply from the next ``__iter__``.
    :meth:`exclude` removes images from the draw for good (CDB's held-out part of train, see
    :func:`held_out_indices`).

    Args:
        image_classes: length N, the set of class indices in each image.
        num_classes: C.
        tau: exponent of the difficulty, a float (1 or 1.5 in the paper) or ``"dynamic"`` (paper eq. 3-4).
        seed, rank, world_size, infinite: as in :class:`RepeatFactorSampler`.
        num_samples: draws per epoch over all ranks (default N); padded up to a multiple of world_size.
        empty_weight: sampling weight of images with no classes; 1.0 is the mean class weight.
    """

    def __init__(
        self,
        image_classes: Sequence[set[int]],
        *,
        num_classes: int,
        tau: float | Literal["dynamic"] = 1.0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        infinite: bool = False,
        num_samples: int | None = None,
        empty_weight: float = 1.0,
    ) -> None:
        super().__init__(seed=seed, rank=rank, world_size=world_size, infinite=infinite)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}")
        if isinstance(tau, str) and tau != "dynamic":
            raise ValueError(f"tau must be a number or 'dynamic'; got {tau!r}")
        if len(image_classes) == 0:
            raise ValueError("image_classes is empty: nothing to sample")
        if not empty_weight >= 0:
            raise ValueError(f"empty_weight must be >= 0; got {empty_weight}")
        self.num_classes = num_classes
        self.tau = tau
        self.empty_weight = float(empty_weight)
        self.num_samples = len(image_classes) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples}")
        # CSR layout of the image -> classes relation, so an update costs one scatter, not a Python loop.
        flat, image_of = [], []
        for i, classes in enumerate(image_classes):
            for c in sorted(set(classes)):
                if not 0 <= c < num_classes:
                    raise ValueError(f"image {i} has class {c}, outside 0..{num_classes - 1}")
                flat.append(c)
                image_of.append(i)
        self._flat_classes = torch.tensor(flat, dtype=torch.long)
        self._image_of = torch.tensor(image_of, dtype=torch.long)
        self._num_images = len(image_classes)
        self._excluded = torch.zeros(self._num_images, dtype=torch.bool)
        self.difficulty = torch.ones(num_classes, dtype=torch.float64)
        self.set_class_weights(torch.ones(num_classes, dtype=torch.float64))

    def update_difficulty(self, difficulty: torch.Tensor | Sequence[float]) -> None:
        """Set class difficulty d (C,) in [0, 1] and redraw class weights with ``cdb_weights(d, tau)``."""
        d = torch.as_tensor(difficulty, dtype=torch.float64).detach().cpu()
        if d.shape != (self.num_classes,):
            raise ValueError(f"difficulty must have shape ({self.num_classes},); got {tuple(d.shape)}")
        self.difficulty = d.clone()
        self.set_class_weights(cdb_weights(d, self.tau))

    def exclude(self, indices: Sequence[int]) -> None:
        """Never draw these images again (weight 0 whatever the class weights); e.g. CDB's held-out images."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if len(idx) and (idx.min() < 0 or idx.max() >= self._num_images):
            raise ValueError(f"exclude: indices must lie in 0..{self._num_images - 1}")
        excluded = self._excluded.clone()
        excluded[idx] = True
        if excluded.all():
            raise ValueError("CDBSampler.exclude: no image would be left to draw")
        self._excluded = excluded
        self.set_class_weights(self.class_weights)

    @property
    def excluded(self) -> torch.Tensor:
        """(N,) bool, images never drawn."""
        return self._excluded.clone()

    def set_class_weights(self, weights: torch.Tensor | Sequence[float]) -> None:
        """Set class weights w (C,) >= 0 directly; image weight = max over its classes."""
        w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
        if w.shape != (self.num_classes,):
            raise ValueError(f"class weights must have shape ({self.num_classes},); got {tuple(w.shape)}")
        if not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"class weights must be finite and >= 0; got {w.tolist()}")
        if w.sum() <= 0:
            # All difficulties 0 (perfect held-out accuracy): nothing to rebalance, so sample as at the start.
            log.warning("CDBSampler: every class weight is 0; using uniform class weights")
            w = torch.ones_like(w)
        self.class_weights = w.clone()
        image_w = torch.full((self._num_images,), self.empty_weight, dtype=torch.float64)
        if len(self._flat_classes):
            has_classes = torch.zeros(self._num_images, dtype=torch.bool)
            has_classes[self._image_of] = True
            image_w[has_classes] = 0.0
            image_w.scatter_reduce_(0, self._image_of, w[self._flat_classes], reduce="amax")
        image_w[self._excluded] = 0.0
        if image_w.sum() <= 0:
            raise ValueError(
                "CDBSampler: every image has sampling weight 0 (images without classes and empty_weight=0?)"
            )
        self.image_weights = image_w

    def _epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.image_weights, self.num_samples, replacement=True, generator=generator)

    def _expected_epoch_size(self) -> float:
        return float(self.num_samples)
