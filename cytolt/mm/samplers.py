"""mmengine adapters of cytolt.samplers, registered in mmdet's ``DATA_SAMPLERS``.

mmengine's Runner builds a sampler as ``DATA_SAMPLERS.build(cfg, default_args=dict(dataset=..., seed=...))``
inside the config's default scope (``'mmdet'``), so these classes take the dataset and read each image's
classes with ``dataset.get_cat_ids(idx)`` (mmdet's ``BaseDetDataset``; mmengine's dataset wrappers have it too).
mmdet's registry is a child of mmengine's: a name registered here is found from ``default_scope='mmdet'`` and as
``'mmdet.RepeatFactorSampler'``. Config::

    train_dataloader = dict(sampler=dict(type='RepeatFactorSampler', thr=0.001), ...)
    train_dataloader = dict(sampler=dict(type='CDBSampler', tau='dynamic'), ...)  # with custom_hooks CDBHook
    train_dataloader = dict(sampler=dict(type='ShuffleSampler'), ...)  # every image once per pass
    default_hooks = dict(sampler_seed=dict(type='SamplerSeedHook'), ...)

No stall between passes. mmengine's ``IterBasedTrainLoop`` restarts a finite loader at the end of each pass over
the data, and sleeps 2 s while doing so (``_InfiniteDataloaderIterator``, "prevent possible deadlock"): on the
demo's training that was ten stalls in 1,000 iterations. ``SamplerSeedHook`` (``DistSamplerSeedHook`` plus one
step) switches a cytolt sampler to its endless stream when the loop counts iterations, so the loader is never
restarted; under ``EpochBasedTrainLoop`` the sampler stays finite (the loop needs the end of each epoch). The
endless stream is the finite passes back to back (pass e drawn with ``seed + e``, as ``set_epoch(e)`` would), so
the order of images is the one the restarting loader gave, and stays seeded. docs/training.md has the numbers.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from mmdet.registry import DATA_SAMPLERS, HOOKS
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.hooks import DistSamplerSeedHook
from mmengine.runner import IterBasedTrainLoop

from cytolt import samplers

__all__ = ["RepeatFactorSampler", "CDBSampler", "ShuffleSampler", "SamplerSeedHook", "dataset_image_classes"]

log = logging.getLogger("cytolt")


def dataset_image_classes(dataset: Any) -> list[set[int]]:
    """The set of category labels (0..C-1) in each image of an mmengine/mmdet dataset, via ``get_cat_ids``."""
    if not hasattr(dataset, "get_cat_ids"):
        raise TypeError(
            f"{type(dataset).__name__} has no get_cat_ids(idx); the long-tail samplers need an mmdet "
            "BaseDetDataset (or an mmengine wrapper of one)"
        )
    if hasattr(dataset, "full_init"):
        dataset.full_init()  # a lazy_init dataset has not read its annotations yet
    return [{int(c) for c in dataset.get_cat_ids(i)} for i in range(len(dataset))]


def _seed(seed: int | None) -> int:
    # mmengine passes seed=None when ranks use different seeds; the order must still agree, as DefaultSampler does.
    return sync_random_seed() if seed is None else int(seed)


@DATA_SAMPLERS.register_module(name="RepeatFactorSampler")
class RepeatFactorSampler(samplers.RepeatFactorSampler):
    """:class:`cytolt.samplers.RepeatFactorSampler` built from a dataset (factors from ``get_cat_ids``).

    Args:
        dataset: mmdet dataset; given by the Runner.
        thr: RFS frequency threshold t (0.001 for LVIS, Gupta et al. 2019).
        seed: given by the Runner; ``None`` draws one seed shared by all ranks.
        shuffle, infinite: as in the core sampler (``infinite=False`` suits epoch and iteration loops alike:
            mmengine restarts a finite loader and calls ``set_epoch`` itself).
    """

    def __init__(
        self,
        *,
        dataset: Any,
        thr: float = 0.001,
        seed: int | None = None,
        shuffle: bool = True,
        infinite: bool = False,
    ) -> None:
        rank, world_size = get_dist_info()
        super().__init__(
            self._factors(dataset, thr),
            seed=_seed(seed),
            shuffle=shuffle,
            rank=rank,
            world_size=world_size,
            infinite=infinite,
        )
        self.dataset = dataset

    @staticmethod
    def _factors(dataset: Any, thr: float) -> list[float]:
        return samplers.repeat_factors(dataset_image_classes(dataset), thr=thr)


@DATA_SAMPLERS.register_module(name="CDBSampler")
class CDBSampler(samplers.CDBSampler):
    """:class:`cytolt.samplers.CDBSampler` built from a dataset; ``CDBHook`` pushes difficulty into it.

    Args:
        dataset: mmdet dataset; given by the Runner. Classes come from ``get_cat_ids``.
        num_classes: C; ``None`` takes ``len(dataset.metainfo['classes'])``.
        tau: float or ``'dynamic'`` (paper eq. 3-4).
        seed: given by the Runner; ``None`` draws one seed shared by all ranks.
        num_samples, empty_weight, infinite: as in the core sampler.
    """

    def __init__(
        self,
        *,
        dataset: Any,
        num_classes: int | None = None,
        tau: float | Literal["dynamic"] = 1.0,
        seed: int | None = None,
        num_samples: int | None = None,
        empty_weight: float = 1.0,
        infinite: bool = False,
    ) -> None:
        if num_classes is None:
            classes = dataset.metainfo.get("classes")
            if not classes:
                raise ValueError(
                    f"CDBSampler: {type(dataset).__name__}.metainfo has no 'classes'; pass num_classes explicitly"
                )
            num_classes = len(classes)
        rank, world_size = get_dist_info()
        super().__init__(
            dataset_image_classes(dataset),
            num_classes=num_classes,
            tau=tau,
            seed=_seed(seed),
            rank=rank,
            world_size=world_size,
            infinite=infinite,
            num_samples=num_samples,
            empty_weight=empty_weight,
        )
        self.dataset = dataset


@DATA_SAMPLERS.register_module(name="ShuffleSampler")
class ShuffleSampler(RepeatFactorSampler):
    """Every image once per pass, in a seeded random order: mmengine's ``DefaultSampler`` (shuffle) that can also
    run endless (``SamplerSeedHook`` switches it on under an iteration loop).

    Each pass is ``torch.randperm`` from a generator seeded with ``seed + pass``, sharded by padding with the head
    of the pass, exactly as ``DefaultSampler(shuffle=True, round_up=True)`` does it: switching a config from
    ``DefaultSampler`` keeps its image order (tests/mm/test_samplers.py checks it).

    Args:
        dataset: the dataset; given by the Runner (only its length is used).
        seed: given by the Runner; ``None`` draws one seed shared by all ranks.
        shuffle: permute each pass (else ascending order).
        infinite: yield pass after pass without end.
    """

    def __init__(
        self, *, dataset: Any, seed: int | None = None, shuffle: bool = True, infinite: bool = False
    ) -> None:
        super().__init__(dataset=dataset, thr=0.0, seed=seed, shuffle=shuffle, infinite=infinite)

    @staticmethod
    def _factors(dataset: Any, thr: float) -> list[float]:
        return [1.0] * len(dataset)

    def _epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        # DefaultSampler's draw (no stochastic-rounding draw first: every factor is 1).
        n = len(self.repeat_factors)
        return torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)


@HOOKS.register_module()
class SamplerSeedHook(DistSamplerSeedHook):
    """mmengine's ``DistSamplerSeedHook`` (``set_epoch`` before each epoch), and under ``IterBasedTrainLoop`` a
    cytolt sampler (``ShuffleSampler``, ``RepeatFactorSampler``, ``CDBSampler``) is switched to its endless
    stream before the first batch, so the loop never restarts the loader (a 2-s stall each pass).

    The loop built its loader iterator already (with worker processes it has prefetched from the finite
    stream), so the iterator is built once more, before any batch was used. A sampler without an ``infinite``
    switch is left alone; mmengine's ``DefaultSampler`` gets a warning naming the fix.
    """

    def before_train(self, runner: Any) -> None:
        loop = runner.train_loop
        if not isinstance(loop, IterBasedTrainLoop):
            return
        sampler = loop.dataloader.sampler
        if getattr(sampler, "infinite", None) is False:
            sampler.infinite = True
            loop.dataloader_iterator = type(loop.dataloader_iterator)(loop.dataloader)
        elif type(sampler).__name__ == "DefaultSampler":
            log.warning(
                "cytolt: DefaultSampler under IterBasedTrainLoop restarts the loader each pass over the data "
                "(mmengine sleeps 2 s there); use sampler=dict(type='ShuffleSampler') or 'InfiniteSampler'"
            )
