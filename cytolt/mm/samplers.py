"""mmengine adapters of cytolt.samplers, registered in mmdet's ``DATA_SAMPLERS``.

mmengine's Runner builds a sampler as ``DATA_SAMPLERS.build(cfg, default_args=dict(dataset=..., seed=...))``
inside the config's default scope (``'mmdet'``), so these classes take the dataset and read each image's
classes with ``dataset.get_cat_ids(idx)`` (mmdet's ``BaseDetDataset``; mmengine's dataset wrappers have it too).
mmdet's registry is a child of mmengine's: a name registered here is found from ``default_scope='mmdet'`` and as
``'mmdet.RepeatFactorSampler'``. Config::

    train_dataloader = dict(sampler=dict(type='RepeatFactorSampler', thr=0.001), ...)
    train_dataloader = dict(sampler=dict(type='CDBSampler', tau='dynamic'), ...)  # with custom_hooks CDBHook
"""

from __future__ import annotations

from typing import Any, Literal

from mmdet.registry import DATA_SAMPLERS
from mmengine.dist import get_dist_info, sync_random_seed

from cytolt import samplers

__all__ = ["RepeatFactorSampler", "CDBSampler", "dataset_image_classes"]


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
            samplers.repeat_factors(dataset_image_classes(dataset), thr=thr),
            seed=_seed(seed),
            shuffle=shuffle,
            rank=rank,
            world_size=world_size,
            infinite=infinite,
        )
        self.dataset = dataset


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
