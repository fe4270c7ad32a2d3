"""Tests for cytolt.classify.methods.spec: crop tensors from read-only (memory-mapped) crops, batch samplers."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, SequentialSampler

from cytolt.classify.methods.spec import MethodSpec, crop_tensor, yields_batches


def test_crop_tensor_of_a_read_only_memory_map_copies_without_a_warning(tmp_path: Path) -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    np.save(tmp_path / "crops.npy", images)
    mapped = np.load(tmp_path / "crops.npy", mmap_mode="r")
    assert not mapped.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a non-writable array
        out = crop_tensor(mapped[0:2])
    assert out.shape == (2, 3, 4, 4) and out.dtype == torch.float32
    # (B, S, S, 3) -> (B, 3, S, S), scaled to [0, 1]: pixel (row 1, column 2) of crop 1, channel 0.
    assert out[1, 0, 1, 2].item() == pytest.approx(images[1, 1, 2, 0] / 255.0)
    out.add_(1.0)  # the tensor owns its memory: the file is untouched
    assert np.array_equal(np.load(tmp_path / "crops.npy"), images)


def test_yields_batches_reads_the_attribute_or_torchs_batch_sampler() -> None:
    assert yields_batches(BatchSampler(SequentialSampler(range(4)), batch_size=2, drop_last=False))
    assert not yields_batches(SequentialSampler(range(4)))

    class Marked:
        yields_batches = True

    assert yields_batches(Marked())


def test_option_reads_the_context_then_the_default_and_refuses_unknown_names() -> None:
    spec = MethodSpec(name="x", paper="-", options={"tau": 1.0})

    class Ctx:
        options = {"tau": 2.0}

    assert spec.option(Ctx(), "tau") == 2.0
    Ctx.options = {}
    assert spec.option(Ctx(), "tau") == 1.0
    with pytest.raises(KeyError, match="no option 'beta'"):
        spec.option(Ctx(), "beta")
