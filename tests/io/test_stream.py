"""TileStream: batches equal direct reads, grid order, bounded read-ahead, clean shutdown, errors."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cytolt.io import SlideError, TileGrid, TileStream, TissueMask, open_slide


def _workers_alive() -> list[str]:
    names = [t.name for t in threading.enumerate() if t.name.startswith("cytolt-tiles")]
    return names + [p.name for p in multiprocessing.active_children()]


def _grid(path: Path, **kwargs) -> TileGrid:
    with open_slide(path) as slide:
        return TileGrid(slide, **kwargs)


class CountingGrid(TileGrid):
    """Counts tile reads (thread workers share this object)."""

    reads = 0
    lock = threading.Lock()

    def read(self, slide, index):
        with self.lock:
            type(self).reads += 1
        return super().read(slide, index)


@pytest.mark.parametrize(("workers", "mode"), [(0, "thread"), (1, "thread"), (2, "thread"), (2, "process")])
def test_batches_equal_direct_reads_in_grid_order(generic_tiff: Path, workers: int, mode: str) -> None:
    grid = _grid(generic_tiff, tile_size=128, overlap=16)  # 7 x 5 = 35 tiles
    stream = TileStream(grid, batch_size=8, workers=workers, mode=mode, pin_memory=False)
    batches = list(stream)
    assert len(batches) == len(stream) == 5
    assert [len(b) for b in batches] == [8, 8, 8, 8, 3]
    assert all(b.images.is_contiguous(memory_format=torch.channels_last) for b in batches)
    images = torch.cat([b.images for b in batches])
    assert images.dtype == torch.uint8 and images.shape == (35, 3, 128, 128)
    np.testing.assert_array_equal(torch.cat([b.indices for b in batches]).numpy(), np.arange(35))
    np.testing.assert_array_equal(torch.cat([b.coords for b in batches]).numpy(), grid.xywh)
    with open_slide(generic_tiff) as slide:
        for i, (x, y, w, h) in enumerate(grid.xywh):
            np.testing.assert_array_equal(
                images[i].permute(1, 2, 0).numpy(), slide.read_region((x, y), 0, (w, h))
            )
    assert _workers_alive() == []


def test_mpp_grid_streams_resampled_tiles(generic_tiff: Path) -> None:
    grid = _grid(generic_tiff, tile_size=64, mpp=1.5)
    batches = list(TileStream(grid, batch_size=5, workers=2, pin_memory=False))
    with open_slide(generic_tiff) as slide:
        for batch in batches:
            for image, (x, y, _, _) in zip(batch.images, batch.coords.tolist(), strict=True):
                np.testing.assert_array_equal(
                    image.permute(1, 2, 0).numpy(), slide.read_at_mpp((x, y), 1.5, (64, 64))
                )


def test_read_ahead_is_bounded_by_prefetch(generic_tiff: Path) -> None:
    with open_slide(generic_tiff) as slide:
        grid = CountingGrid(slide, tile_size=64)  # 11 x 9 = 99 tiles
    CountingGrid.reads = 0
    batch, prefetch = 4, 3
    stream = TileStream(grid, batch_size=batch, workers=2, prefetch=prefetch, pin_memory=False)
    for j, _ in enumerate(stream):
        limit = min(len(grid), (j + 1 + prefetch) * batch)
        if j == 0:
            # A slow consumer: workers fill the read-ahead, then stop.
            deadline = time.monotonic() + 10
            while CountingGrid.reads < limit and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.1)
            assert CountingGrid.reads == limit
        assert CountingGrid.reads <= limit
    assert CountingGrid.reads == len(grid)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_break_stops_and_joins_workers(generic_tiff: Path, mode: str) -> None:
    grid = _grid(generic_tiff, tile_size=32)  # 374 tiles
    stream = TileStream(grid, batch_size=4, workers=2, mode=mode, pin_memory=False)
    for j, _ in enumerate(stream):
        if j == 1:
            break
    assert _workers_alive() == []


def test_exception_in_the_loop_stops_workers(generic_tiff: Path) -> None:
    stream = TileStream(_grid(generic_tiff, tile_size=32), batch_size=4, workers=2, pin_memory=False)
    with pytest.raises(KeyError):
        for _ in stream:
            raise KeyError("consumer failed")
    assert _workers_alive() == []


@pytest.mark.parametrize(("workers", "mode"), [(0, "thread"), (2, "thread"), (2, "process")])
def test_corrupt_tile_raises_after_the_batches_before_it(
    tmp_path: Path, synth, workers: int, mode: str
) -> None:
    path = synth.write_generic(tmp_path / "bad.tiff", synth.cells_image(512, 256, seed=2), levels=1)
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[6]  # tile (2, 1): the 7th tile of a 4 x 2 grid
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * 16)
    grid = _grid(path, tile_size=128)
    seen = []
    with pytest.raises(SlideError, match="corrupt tile data") as info:
        for batch in TileStream(grid, batch_size=2, workers=workers, mode=mode, pin_memory=False):
            seen += batch.indices.tolist()
    assert seen == [0, 1, 2, 3, 4, 5]
    assert str(path) in str(info.value)
    assert _workers_alive() == []


def test_missing_file_at_worker_open_raises(tmp_path: Path, synth) -> None:
    path = synth.write_generic(tmp_path / "gone.tiff", synth.cells_image(256, 256), levels=1)
    grid = _grid(path, tile_size=128)
    path.unlink()
    with pytest.raises(SlideError, match="not found"):
        list(TileStream(grid, batch_size=2, workers=2, pin_memory=False))
    assert _workers_alive() == []


def test_progress_and_fresh_iterators(generic_tiff: Path) -> None:
    calls: list[tuple[int, int]] = []
    stream = TileStream(
        _grid(generic_tiff, tile_size=128, overlap=16),
        batch_size=8,
        workers=1,
        pin_memory=False,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert iter(stream) is not iter(stream)
    first = [b.indices.tolist() for b in stream]
    assert calls == [(8, 35), (16, 35), (24, 35), (32, 35), (35, 35)]
    assert [b.indices.tolist() for b in stream] == first


def test_empty_grid_yields_nothing(generic_tiff: Path) -> None:
    with open_slide(generic_tiff) as slide:
        empty = TissueMask(
            mask=np.zeros((5, 7), bool), downsample=(100.0, 106.0), mpp=None, slide_dimensions=(700, 530)
        )
        grid = TileGrid(slide, tile_size=128, mask=empty)
    stream = TileStream(grid, workers=2, pin_memory=False)
    assert len(grid) == 0 and len(stream) == 0 and list(stream) == []


def test_pin_memory(generic_tiff: Path) -> None:
    stream = TileStream(_grid(generic_tiff, tile_size=128), batch_size=4, workers=1, pin_memory=True)
    if torch.cuda.is_available():
        assert next(iter(stream)).images.is_pinned()
    else:
        with pytest.raises(ValueError, match="CUDA"):
            next(iter(stream))


@pytest.mark.parametrize("kwargs", [{"mode": "fork"}, {"batch_size": 0}, {"workers": -1}, {"prefetch": 0}])
def test_bad_arguments(generic_tiff: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TileStream(_grid(generic_tiff, tile_size=128), **kwargs)


def test_mode_error_lists_choices(generic_tiff: Path) -> None:
    with pytest.raises(ValueError, match="'thread', 'process'; got 'fork'"):
        TileStream(_grid(generic_tiff, tile_size=128), mode="fork")


def test_dead_worker_process_becomes_a_slide_error(
    generic_tiff: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import cytolt.io.stream as stream_module

    # Workers that die at once, before sending anything (called with the worker's arguments, os.abort
    # raises TypeError and the process exits with code 1): the consumer must notice, not wait forever.
    monkeypatch.setattr(stream_module, "_process_worker", os.abort)
    stream = TileStream(
        _grid(generic_tiff, tile_size=128), batch_size=4, workers=2, mode="process", pin_memory=False
    )
    with pytest.raises(SlideError, match="worker process died"):
        list(stream)
    assert _workers_alive() == []
