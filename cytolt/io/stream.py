"""Read and decode a TileGrid's tiles in parallel, in order, into uint8 batches for a detector.

    TileBatch.images   (B, 3, H, W) uint8 torch tensor, channels_last memory (a zero-copy view of the
                       decoded (B, H, W, 3) pixels; call .contiguous() for NCHW strides); pinned when
                       CUDA is used
    TileBatch.coords   (B, 4) int64 level-0 xywh of each tile
    TileBatch.indices  (B,) int64 index of each tile in the grid

Batch j holds grid tiles [j * batch_size, (j + 1) * batch_size). Workers (threads, or processes from a
fork server) each open their own slide handle and fill whole batches; at most ``prefetch`` batches are
read ahead of the consumer, so memory is bounded by (prefetch + 1) batches whatever the slide size.
Batches come out in grid order whatever order workers finish in. Iterating creates a new iterator;
leaving the loop early (break, exception, garbage collection) stops and joins the workers.

Threads are the default: the decoders (libjpeg-turbo via imagecodecs, OpenSlide via ctypes) release the
GIL, threads start at once and pay no copy between processes. Processes isolate a crashing decoder (a
worker that dies raises SlideError instead of taking the interpreter down) and pass pixels through shared
memory; each worker re-imports the caller's main module, so scripts keep heavy imports (torch) inside
``main()``. bench/bench_tilestream.py measures both (docs/io.md).
"""

from __future__ import annotations

import math
import queue
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cytolt.io.backends import open_spec
from cytolt.io.errors import SlideError
from cytolt.io.grid import TileGrid

if TYPE_CHECKING:
    import torch

    from cytolt.io.slide import Slide

MODES = ("thread", "process")
_JOIN_TIMEOUT_S = 10.0  # a worker finishes the batch it is reading before it sees the stop sentinel
_POLL_S = 0.5  # how often a waiting consumer checks that worker processes are alive
_PRELOAD = ["cytolt.io.stream", "cytolt.io.tiff_backend", "cytolt.io.openslide_backend"]


@dataclass(frozen=True, eq=False)
class TileBatch:
    """One batch of tiles; see the module docstring for shapes."""

    images: torch.Tensor
    coords: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.shape[0])


class TileStream:
    """Parallel, bounded, ordered tile reading for a TileGrid.

    Args:
        grid: the tiles to read.
        batch_size: tiles per batch (the last batch may be smaller).
        workers: reader threads or processes; 0 reads in the consumer's thread.
        mode: 'thread' or 'process'.
        prefetch: batches read ahead of the consumer; default 2 per worker (at least 2).
        pin_memory: pin batches for fast host-to-GPU copies; None pins when CUDA is available.
        progress: called as progress(tiles_done, tiles_total) before each batch is yielded.
        slide: with ``workers=0``, read from this open handle of the grid's slide (left open) instead of
            opening the file again; reader threads and processes always open their own.
    """

    def __init__(
        self,
        grid: TileGrid,
        *,
        batch_size: int = 16,
        workers: int = 2,
        mode: str = "thread",
        prefetch: int | None = None,
        pin_memory: bool | None = None,
        progress: Callable[[int, int], Any] | None = None,
        slide: Slide | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODES)}; got {mode!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0; got {workers}")
        prefetch = max(2, 2 * workers) if prefetch is None else prefetch
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1; got {prefetch}")
        self.grid = grid
        self.batch_size = batch_size
        self.workers = workers
        self.mode = mode
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        self.progress = progress
        self.slide = slide

    def __len__(self) -> int:
        """Number of batches."""
        return math.ceil(len(self.grid) / self.batch_size)

    def __iter__(self) -> Iterator[TileBatch]:
        return self._batches()

    def _batches(self) -> Iterator[TileBatch]:
        import torch  # only the consumer needs torch; worker processes never import it

        n_batches = len(self)
        if n_batches == 0:
            return
        pin = torch.cuda.is_available() if self.pin_memory is None else self.pin_memory
        if pin and not torch.cuda.is_available():
            raise ValueError("pin_memory=True needs CUDA, which torch does not see")
        if self.workers == 0:
            pool: _Pool = _InlinePool(self.grid, self.batch_size, self.slide)
        elif self.mode == "thread":
            pool = _ThreadPool(self.grid, self.batch_size, self.workers)
        else:
            pool = _ProcessPool(self.grid, self.batch_size, self.workers, self.prefetch)
        try:
            submitted = 0
            while submitted < min(self.prefetch, n_batches):
                pool.submit(submitted)
                submitted += 1
            pending: dict[int, tuple[Any, BaseException | None]] = {}
            done = 0
            for j in range(n_batches):
                while j not in pending:
                    k, payload, error = pool.get()
                    if k < 0:  # a worker could not even open the slide
                        raise error  # type: ignore[misc]
                    pending[k] = (payload, error)
                payload, error = pending.pop(j)
                if error is not None:
                    raise error
                pixels = pool.take(payload, pin)  # (B, H, W, 3) uint8 tensor; frees the slot it used
                if submitted < n_batches:
                    pool.submit(submitted)
                    submitted += 1
                start = j * self.batch_size
                stop = start + pixels.shape[0]
                coords = torch.from_numpy(np.array(self.grid.xywh[start:stop]))
                batch = TileBatch(
                    images=pixels.permute(0, 3, 1, 2),
                    coords=coords,
                    indices=torch.arange(start, stop, dtype=torch.int64),
                )
                done = stop
                if self.progress is not None:
                    self.progress(done, len(self.grid))
                yield batch
        finally:
            pool.close()


def _batch_range(grid: TileGrid, batch_size: int, j: int) -> range:
    return range(j * batch_size, min(len(grid), (j + 1) * batch_size))


def _fill(grid: TileGrid, slide: Any, batch_size: int, j: int, out: np.ndarray) -> int:
    """Read batch ``j`` into ``out`` (B, H, W, 3); returns the number of tiles."""
    tiles = _batch_range(grid, batch_size, j)
    for i, index in enumerate(tiles):
        out[i] = grid.read(slide, index)
    return len(tiles)


def _portable(exc: BaseException) -> BaseException:
    """An exception that survives pickling back from a worker process."""
    if isinstance(exc, SlideError):
        return exc
    text = "".join(traceback.format_exception(exc)).rstrip()
    return RuntimeError(f"tile worker failed:\n{text}")


class _Pool:
    """Runs batch jobs: submit(j); get() -> (j, payload, error); take(payload, pin) -> tensor; close()."""

    def submit(self, j: int) -> None:
        raise NotImplementedError

    def get(self) -> tuple[int, Any, BaseException | None]:
        raise NotImplementedError

    def take(self, payload: Any, pin: bool) -> torch.Tensor:
        import torch

        tensor = torch.from_numpy(payload)
        return tensor.pin_memory() if pin else tensor

    def close(self) -> None:
        raise NotImplementedError


class _InlinePool(_Pool):
    """workers=0: read each batch in the consumer's thread when it is asked for."""

    def __init__(self, grid: TileGrid, batch_size: int, slide: Slide | None) -> None:
        self.grid, self.batch_size = grid, batch_size
        self.owned = slide is None
        self.slide = open_spec(grid.spec) if slide is None else slide
        self.jobs: deque[int] = deque()

    def submit(self, j: int) -> None:
        self.jobs.append(j)

    def get(self) -> tuple[int, Any, BaseException | None]:
        j = self.jobs.popleft()
        out = np.empty((len(_batch_range(self.grid, self.batch_size, j)), *_tile_shape(self.grid)), np.uint8)
        _fill(self.grid, self.slide, self.batch_size, j, out)
        return j, out, None

    def close(self) -> None:
        if self.owned:
            self.slide.close()


def _tile_shape(grid: TileGrid) -> tuple[int, int, int]:
    return grid.tile_size[1], grid.tile_size[0], 3


def _thread_worker(
    grid: TileGrid, batch_size: int, jobs: queue.SimpleQueue, results: queue.SimpleQueue
) -> None:
    try:
        slide = open_spec(grid.spec)
    except BaseException as exc:
        results.put((-1, None, exc))
        return
    try:
        while (j := jobs.get()) is not None:
            try:
                out = np.empty((len(_batch_range(grid, batch_size, j)), *_tile_shape(grid)), np.uint8)
                _fill(grid, slide, batch_size, j, out)
                results.put((j, out, None))
            except BaseException as exc:
                results.put((j, None, exc))
    finally:
        slide.close()


class _ThreadPool(_Pool):
    def __init__(self, grid: TileGrid, batch_size: int, workers: int) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [
            threading.Thread(
                target=_thread_worker,
                args=(grid, batch_size, self.jobs, self.results),
                name=f"cytolt-tiles-{k}",
                daemon=True,  # never keeps the interpreter alive; close() joins them normally
            )
            for k in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, j: int) -> None:
        self.jobs.put(j)

    def get(self) -> tuple[int, Any, BaseException | None]:
        return self.results.get()

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join(_JOIN_TIMEOUT_S)


def _process_worker(
    grid: TileGrid, batch_size: int, shm_name: str, n_slots: int, jobs: Any, results: Any
) -> None:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=shm_name)
    slots = np.ndarray((n_slots, batch_size, *_tile_shape(grid)), np.uint8, buffer=shm.buf)
    try:
        try:
            slide = open_spec(grid.spec)
        except BaseException as exc:
            results.put((-1, None, _portable(exc)))
            return
        try:
            while (job := jobs.get()) is not None:
                j, slot = job
                try:
                    n = _fill(grid, slide, batch_size, j, slots[slot])
                    results.put((j, (slot, n), None))
                except BaseException as exc:
                    results.put((j, None, _portable(exc)))
        finally:
            slide.close()
    finally:
        del slots  # the buffer must have no views left before close()
        shm.close()


class _ProcessPool(_Pool):
    """Spawned worker processes writing batches into ``prefetch`` shared-memory slots."""

    def __init__(self, grid: TileGrid, batch_size: int, workers: int, n_slots: int) -> None:
        import multiprocessing as mp
        from multiprocessing import shared_memory

        # Not fork: the parent may hold threads (torch, OpenSlide) that fork would copy mid-lock. A fork
        # server is a clean single-threaded process started once per interpreter with the I/O modules
        # preloaded, so after the first stream a worker starts in milliseconds instead of re-importing
        # numpy, OpenCV, tifffile and zarr (seconds on 2 busy cores).
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        self.grid, self.batch_size = grid, batch_size
        slot_shape = (batch_size, *_tile_shape(grid))
        self.shm = shared_memory.SharedMemory(create=True, size=n_slots * int(np.prod(slot_shape)))
        self.slots = np.ndarray((n_slots, *slot_shape), np.uint8, buffer=self.shm.buf)
        self.free = list(range(n_slots))
        self.jobs = ctx.Queue()
        self.results = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=_process_worker,
                args=(grid, batch_size, self.shm.name, n_slots, self.jobs, self.results),
                name=f"cytolt-tiles-{k}",
                daemon=True,
            )
            for k in range(workers)
        ]
        try:
            for proc in self.procs:
                proc.start()
        except BaseException:
            self.close()
            raise

    def submit(self, j: int) -> None:
        self.jobs.put((j, self.free.pop()))

    def get(self) -> tuple[int, Any, BaseException | None]:
        while True:
            try:
                return self.results.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [p for p in self.procs if not p.is_alive()]
                if dead:
                    raise SlideError(
                        self.grid.spec.path,
                        f"a tile worker process died (exit code {dead[0].exitcode}) while reading; its "
                        "error is on stderr (scripts using mode='process' need an "
                        "`if __name__ == '__main__':` guard)",
                    ) from None

    def take(self, payload: Any, pin: bool) -> torch.Tensor:
        import torch

        slot, n = payload
        source = torch.from_numpy(self.slots[slot, :n])
        out = torch.empty(source.shape, dtype=torch.uint8, pin_memory=pin)
        out.copy_(source)
        self.free.append(slot)
        return out

    def close(self) -> None:
        started = [p for p in self.procs if p.pid is not None]
        for _ in started:
            self.jobs.put(None)
        for proc in started:
            proc.join(_JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.terminate()
                proc.join(_JOIN_TIMEOUT_S)
        for q in (self.jobs, self.results):
            q.cancel_join_thread()  # leftover sentinels or results are not needed
            q.close()
        del self.slots
        self.shm.close()
        self.shm.unlink()
