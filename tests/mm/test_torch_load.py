"""mmengine resumes its own work_dir checkpoints; anything else still loads with weights_only=True."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

pytest.importorskip("mmengine")


def _runner(work_dir, **kwargs):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    import cytolt.mm  # noqa: F401  (applies the scoped resume fix)

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, inputs, targets=None, mode="tensor"):
            out = self.linear(inputs)  # default_collate stacked the batch
            if mode == "loss":
                return {"loss": ((out.squeeze(1) - targets) ** 2).mean()}
            return out

    data = [(torch.tensor([float(i), 1.0]), torch.tensor(float(i % 3))) for i in range(8)]
    return Runner(
        model=Toy(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type="DefaultSampler", shuffle=False),
            batch_size=2,
            collate_fn=dict(type="default_collate"),
        ),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=4, val_interval=100),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False)),
        default_scope="mmengine",
        **kwargs,
    )


def test_resume_from_own_work_dir(tmp_path):
    runner = _runner(tmp_path / "run")
    runner.train()
    ckpt = tmp_path / "run" / "iter_2.pth"
    assert ckpt.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt)  # weights_only=True by default: the raw file is not a plain state dict
    resumed = _runner(tmp_path / "run", resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 4


def test_checkpoint_outside_work_dir_keeps_weights_only(tmp_path):
    runner = _runner(tmp_path / "run")
    runner.train()
    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes((tmp_path / "run" / "iter_2.pth").read_bytes())
    other = _runner(tmp_path / "other", resume=True, load_from=str(foreign))
    with pytest.raises(pickle.UnpicklingError):
        other.train()
