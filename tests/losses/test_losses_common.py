"""Tests for cytolt.losses._common: mmdet-compatible reductions, label expansion and weight shapes."""

from __future__ import annotations

import pytest
import torch

from cytolt.losses._common import (
    AVG_FACTOR_EPS,
    all_reduce_sum_,
    element_weight,
    expand_labels,
    sample_weight,
    weight_reduce,
)


def test_expand_labels_background_rows_are_zero() -> None:
    one_hot = expand_labels(torch.tensor([2, 0, 3]), 3)
    torch.testing.assert_close(one_hot, torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 0, 0]]))


def test_weight_reduce_follows_mmdet() -> None:
    loss = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    weight = torch.tensor([[1.0], [0.5]])
    torch.testing.assert_close(weight_reduce(loss, weight, "mean", None), torch.tensor((1 + 2 + 1.5 + 2) / 4))
    torch.testing.assert_close(
        weight_reduce(loss, weight, "mean", 2.0), torch.tensor(6.5 / (2 + AVG_FACTOR_EPS))
    )
    torch.testing.assert_close(weight_reduce(loss, None, "sum", None), torch.tensor(10.0))
    torch.testing.assert_close(weight_reduce(loss, weight, "none", 2.0), loss * weight)
    with pytest.raises(ValueError, match="avg_factor can not be used with reduction='sum'"):
        weight_reduce(loss, None, "sum", 2.0)


def test_weight_shapes() -> None:
    shape = torch.Size([4, 3])
    assert element_weight(torch.ones(4), shape).shape == (4, 1)
    assert element_weight(torch.ones(4, 3), shape).shape == (4, 3)
    assert element_weight(torch.arange(12.0), shape)[1, 0] == 3  # flattened per class, row-major
    with pytest.raises(ValueError, match=r"\(4,\), \(4, 3\) or \(12,\)"):
        element_weight(torch.ones(5), shape)
    assert sample_weight(torch.ones(4, dtype=torch.long), 4).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(4,\)"):
        sample_weight(torch.ones(4, 3), 4)


def test_all_reduce_is_a_no_op_without_a_process_group() -> None:
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_sum_(t) is t
    torch.testing.assert_close(t, torch.tensor([1.0, 2.0]))


def _ddp_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        states = _run_losses(*(t[rank::world_size] for t in _ddp_batch()))
        if rank == 0:
            torch.save(states, out_file)
    finally:
        dist.destroy_process_group()


def _ddp_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(12, 5, generator=g),
        torch.randint(0, 4, (12,), generator=g),
        torch.rand(12, generator=g),
    )


def _run_losses(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> dict[str, dict]:
    from cytolt.losses import EQLv2Loss, EqualizedFocalLoss, GradLibraLoss, SeesawLoss

    states = {}
    for loss_fn, k in (
        (EqualizedFocalLoss(3), 3),
        (EQLv2Loss(3), 3),
        (GradLibraLoss(3), 3),
        (SeesawLoss(3), 5),
    ):
        for _ in range(2):  # the second call uses the state the first one left
            loss_fn(logits[:, :k], labels, weight, reduction_override="sum")
        states[type(loss_fn).__name__] = loss_fn.state_dict()
    return states


def test_statistics_are_summed_over_processes(tmp_path) -> None:
    # Two gloo processes, each with half of a batch, must end with the state one process reaches on the whole
    # batch: the statistics are sums (reduction "sum", so no per-process divisor) reduced over the group.
    import torch.multiprocessing as mp

    out_file = tmp_path / "rank0.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    distributed = torch.load(out_file, weights_only=True)  # tensors only, written by this test
    single = _run_losses(*_ddp_batch())
    for name, state in single.items():
        for key, value in state.items():
            # float32 sums over different batch splits differ in the last bits (vectorised exp/log paths)
            torch.testing.assert_close(
                distributed[name][key], value, rtol=1e-5, atol=1e-6, msg=f"{name}.{key}"
            )
