"""cytolt.mm.samplers: ShuffleSampler and SamplerSeedHook in a real mmengine Runner (no loader restart between
passes under an iteration loop, the same seeded order as the restarting loader, finite epochs kept)."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import cytolt.mm  # noqa: F401  (fills the registries)
from cytolt.mm.samplers import ShuffleSampler

N_IMAGES = 6
BATCH = 2


class IndexDataset(Dataset):
    """Item i is its own index; ``metainfo`` as mmengine loops expect."""

    metainfo: dict = {"classes": ("a",)}

    def __len__(self) -> int:
        return N_IMAGES

    def __getitem__(self, idx: int) -> dict:
        return {"inputs": torch.tensor(float(idx))}


class RecordingModel(BaseModel):
    """Records the indices of every training batch; one parameter so the optimiser has work."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []

    def forward(self, inputs: list[torch.Tensor], data_samples=None, mode: str = "tensor"):
        self.seen.extend(int(x) for x in inputs)
        return {"loss": (self.w * torch.stack(inputs)).sum()}


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """mmengine's pass restart sleeps 2 s (mmengine.runner.loops); count the restarts instead of waiting."""
    import mmengine.runner.loops as loops

    calls: list[float] = []
    monkeypatch.setattr(loops.time, "sleep", calls.append)
    return calls


def _runner(
    tmp_path: Path, name: str, *, seed_hook: str, train_cfg: dict, sampler: dict | None = None
) -> Runner:
    return Runner(
        model=RecordingModel(),
        work_dir=str(tmp_path / name),
        experiment_name=f"{name}-{tmp_path.name}",
        train_dataloader=dict(
            batch_size=BATCH,
            num_workers=0,
            sampler=sampler or dict(type="ShuffleSampler"),
            dataset=IndexDataset(),
            collate_fn=dict(type="pseudo_collate"),
        ),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.0)),
        default_hooks=dict(sampler_seed=dict(type=seed_hook), checkpoint=None, logger=None),
        default_scope="mmdet",
        randomness=dict(seed=3),
        log_level="WARNING",
    )


def _passes(seed: int, n: int) -> list[int]:
    """The first ``n`` passes of a finite ShuffleSampler, pass e drawn after ``set_epoch(e)``."""
    sampler = ShuffleSampler(dataset=IndexDataset(), seed=seed)
    out: list[int] = []
    for epoch in range(n):
        sampler.set_epoch(epoch)
        out.extend(sampler)
    return out


def test_pass_boundary_does_not_restart_the_loader(tmp_path, sleeps):
    iters = 10  # 3 batches per pass: 3 pass boundaries
    runner = _runner(
        tmp_path, "cytolt", seed_hook="SamplerSeedHook", train_cfg=dict(by_epoch=False, max_iters=iters)
    )
    runner.train()
    assert sleeps == []  # the loader was never restarted
    assert runner.train_dataloader.sampler.infinite
    seen = runner.model.seen
    assert len(seen) == iters * BATCH
    # the same images in the same seeded order as the restarting loader gives
    assert seen == _passes(3, 4)[: iters * BATCH]
    assert (
        sorted(seen[:N_IMAGES]) == list(range(N_IMAGES)) and seen[:N_IMAGES] != seen[N_IMAGES : 2 * N_IMAGES]
    )


def test_mmengine_hook_restarts_at_every_pass_with_the_same_order(tmp_path, sleeps):
    # the behaviour being fixed: DistSamplerSeedHook leaves the sampler finite, mmengine restarts and sleeps
    runner = _runner(
        tmp_path, "mmengine", seed_hook="DistSamplerSeedHook", train_cfg=dict(by_epoch=False, max_iters=10)
    )
    runner.train()
    assert len(sleeps) == 3
    assert runner.model.seen == _passes(3, 4)[:20]


def test_epoch_loop_keeps_finite_passes(tmp_path, sleeps):
    runner = _runner(
        tmp_path, "epochs", seed_hook="SamplerSeedHook", train_cfg=dict(by_epoch=True, max_epochs=2)
    )
    runner.train()
    sampler = runner.train_dataloader.sampler
    assert not sampler.infinite and runner.iter == 2 * N_IMAGES // BATCH
    assert runner.model.seen == _passes(3, 2)


def test_default_sampler_under_iteration_loop_is_named(tmp_path, sleeps, caplog):
    runner = _runner(
        tmp_path,
        "default",
        seed_hook="SamplerSeedHook",
        train_cfg=dict(by_epoch=False, max_iters=4),
        sampler=dict(type="DefaultSampler", shuffle=True),
    )
    with caplog.at_level(logging.WARNING, logger="cytolt"):
        runner.train()
    assert "ShuffleSampler" in caplog.text
    assert len(sleeps) == 1


@pytest.mark.parametrize("shuffle", [True, False])
def test_endless_stream_is_the_finite_passes_back_to_back(shuffle):
    finite = ShuffleSampler(dataset=IndexDataset(), seed=11, shuffle=shuffle)
    endless = ShuffleSampler(dataset=IndexDataset(), seed=11, shuffle=shuffle, infinite=True)
    passes = []
    for epoch in range(3):
        finite.set_epoch(epoch)
        passes.extend(finite)
    assert list(itertools.islice(endless, 3 * N_IMAGES)) == passes
    assert len(finite) == N_IMAGES
    if not shuffle:
        assert passes == list(range(N_IMAGES)) * 3


def test_same_order_as_mmengine_default_sampler():
    from mmengine.dataset import DefaultSampler

    ours = ShuffleSampler(dataset=IndexDataset(), seed=5)
    theirs = DefaultSampler(IndexDataset(), shuffle=True, seed=5)
    for epoch in range(3):
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs)
    assert list(ours) != list(range(N_IMAGES))
