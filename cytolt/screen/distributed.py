"""Screen slides on a Dask cluster: one task per slide, and only the client writes the run folder.

    with dask_client(n_workers=2) as (client, threads):              # a LocalCluster of 2 worker processes
        for index, result in screen_on_cluster(client, slides, factory, ...):
            ...                                                      # the client stores and reports each result

Glossary:

- *detector factory*: a picklable callable ``factory(device) -> Detector`` (``device`` a torch device string or
  None for the default). Workers call it once per process and keep the detector for every later slide
  (``load_model`` loads a model folder; tests pass ``functools.partial`` of an oracle).
- *task*: :func:`screen_task`, ``screen_slide`` with no store on one slide; it returns a plain
  :class:`~cytolt.screen.SlideResult` (detections are CPU tensors, which pickle), a failed one when the slide
  fails. SQLite is written by the client alone, so no two processes ever write ``run.sqlite``.
- *worker death* (a segfault, or the nanny killing a worker over its memory limit): the scheduler retries the
  task on another worker ``ALLOWED_FAILURES`` times, then the slide is failed with the message and the run
  goes on.

Devices: with CUDA, worker ``i`` of a LocalCluster (workers are named 0..N-1) uses ``cuda:{i % gpus}``; on an
existing cluster a worker named otherwise gets a GPU by a hash of its name, so give each SLURM job one GPU
(``CUDA_VISIBLE_DEVICES``) and every worker sees ``cuda:0``. Torch threads per LocalCluster worker: the cores
divided among the workers, since the workers share the machine and oversubscribed torch threads slow down badly
(ARCHITECTURE.md, "Facts").
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytolt.screen.engine import SlideResult, error_message, failed_result, screen_slide

if TYPE_CHECKING:
    from distributed import Client

    from cytolt.detect import Detector

__all__ = [
    "ALLOWED_FAILURES",
    "DetectorFactory",
    "dask_client",
    "load_model",
    "screen_on_cluster",
    "screen_task",
]

DetectorFactory = Callable[[str | None], "Detector"]
# Retries of a slide whose worker died: one retry absorbs a death the slide did not cause (a node lost), a
# second death fails the slide instead of killing worker after worker (Dask's default is 3).
ALLOWED_FAILURES = 1

# One detector per worker process, keyed by (model key, device): loading a model costs seconds, a slide's task
# must not pay it again. A new key (another run's model) replaces it, so a worker holds one model at a time.
_DETECTORS: dict[tuple[str, str | None], Detector] = {}


def load_model(model_dir: str, device: str | None = None) -> Detector:
    """The default detector factory: :func:`cytolt.detect.load` of a model folder on ``device``."""
    from cytolt import detect  # looked up at call time, so a test may stand an oracle in for it in-process

    return detect.load(model_dir, device)


@contextmanager
def dask_client(
    *, n_workers: int | None = None, scheduler: str | None = None, memory_limit: str | float | None = "auto"
) -> Iterator[tuple[Client, int | None]]:
    """A Dask client and the torch threads each task should use.

    Args:
        n_workers: start a LocalCluster of this many worker processes (one thread each), closed on exit.
        scheduler: instead, connect to a running scheduler (``tcp://host:port``), left running on exit.
        memory_limit: per LocalCluster worker ("4GiB", bytes, or "auto": the machine's memory divided by
            ``n_workers``); past 95% the nanny restarts the worker and its slide counts as a worker death.

    Yields:
        ``(client, threads)``: threads is cores // n_workers for a LocalCluster, None on an existing cluster
        (its workers were started with their own settings).
    """
    if (n_workers is None) == (scheduler is None):
        raise ValueError("give either n_workers (a local cluster) or scheduler (an existing one)")
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError("screening on Dask needs dask[distributed]: pip install 'cytolt[dask]'") from exc
    if scheduler is not None:
        with Client(scheduler) as client:
            yield client, None
        return
    assert n_workers is not None
    if n_workers < 1:
        raise ValueError(f"n_workers must be at least 1; got {n_workers}")
    # The scheduler of a LocalCluster lives in this process and reads its config when it starts. Saturation 1:
    # a worker holds one slide at a time, so a worker death counts against that slide alone (Dask charges every
    # task a dead worker was processing) and slides queue centrally for whichever worker frees up first.
    config = {
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(config), _workers_ignore_ctrl_c():
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    with cluster, Client(cluster) as client:  # the default client: as_completed looks it up
        yield client, max(1, (os.cpu_count() or 1) // n_workers)


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start processes that ignore SIGINT: Ctrl-C in a terminal reaches the whole process group, and this process
    alone should handle it (cancel, close the cluster) instead of every worker printing a traceback.

    An ignored signal stays ignored in a spawned child, and Python installs its KeyboardInterrupt handler only
    over the default one. Workers a nanny restarts later handle SIGINT as usual.
    """
    if (
        threading.current_thread() is not threading.main_thread()
    ):  # signal.signal works in the main thread only
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def screen_task(
    path: str,
    factory: DetectorFactory,
    model_key: str,
    device: str | None,
    threads: int | None,
    options: dict[str, Any],
) -> SlideResult:
    """Screen one slide on a worker (``screen_slide(path, detector, **options)``, no store).

    A slide that fails (SlideError, a timeout, any exception in its processing) comes back as a failed
    SlideResult with the message, so the task itself never errs; only a worker death does.
    """
    detector = None
    try:
        detector = _worker_detector(factory, model_key, device, threads)
        return screen_slide(path, detector, **options)
    except Exception as exc:
        return failed_result(path, error_message(exc), detector=detector)


def screen_on_cluster(
    client: Client,
    slides: Sequence[Path],
    factory: DetectorFactory,
    *,
    model_key: str,
    device: str | None = None,
    threads: int | None = None,
    options: dict[str, Any] | None = None,
) -> Iterator[tuple[int, SlideResult]]:
    """Submit one :func:`screen_task` per slide; yield ``(index into slides, result)`` as tasks finish.

    ``model_key`` names the model for the workers' detector cache (the model identity). Closing the iterator
    early (Ctrl-C in the loop) cancels the tasks not yet finished.
    """
    from distributed import as_completed

    futures = {
        client.submit(
            screen_task, str(path), factory, model_key, device, threads, dict(options or {}), pure=False
        ): i
        for i, path in enumerate(slides)
    }
    try:
        for future in as_completed(futures):
            i = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # the worker died (KilledWorker after the retries) or the task was lost
                result = failed_result(
                    slides[i], f"worker died while screening this slide ({error_message(exc)})"
                )
            future.release()
            yield i, result
    finally:
        client.cancel(list(futures))


def _worker_detector(
    factory: DetectorFactory, model_key: str, device: str | None, threads: int | None
) -> Detector:
    device = device if device is not None else _worker_device()
    detector = _DETECTORS.get((model_key, device))
    if detector is None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        _DETECTORS.clear()
        detector = _DETECTORS[(model_key, device)] = factory(device)
    return detector


def _worker_device() -> str | None:
    """``cuda:{worker index % gpus}`` when this worker sees GPUs, else None (the factory's default: CPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    from distributed import get_worker

    name = get_worker().name
    index = name if isinstance(name, int) else zlib.crc32(str(name).encode())
    return f"cuda:{index % torch.cuda.device_count()}"
