"""Screen slides on a Dask cluster: one task per slide, and only the client writes the run folder.

    summary = screen_slides(slides, "models/r18", "runs/night", executor=DaskExecutor(workers=2))

Glossary:

- *task*: :func:`screen_task`, :meth:`SlideJob.screen` of one slide on a worker; it returns a plain
  :class:`~cytolt.screen.SlideResult` (detections are CPU tensors, which pickle), a failed one when the slide
  fails. SQLite is written by the client alone (the run recorder), so no two processes ever write ``run.sqlite``.
- *in flight*: the executor hands the cluster one slide per worker thread and the next as one comes back, so a
  slide is ``running`` in the store exactly while a worker has it, as in a local run, and Ctrl-C marks only
  those slides interrupted.
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytolt.screen.engine import SlideResult, error_message, failed_result
from cytolt.screen.executors import DetectorFactory, SlideEvent, SlideFinished, SlideJob, SlideStarted

if TYPE_CHECKING:
    from distributed import Client

    from cytolt.detect import Detector

__all__ = ["ALLOWED_FAILURES", "DaskExecutor", "dask_client", "screen_task"]

# Retries of a slide whose worker died: one retry absorbs a death the slide did not cause (a node lost), a
# second death fails the slide instead of killing worker after worker (Dask's default is 3).
ALLOWED_FAILURES = 1

# One detector per worker process, keyed by (model key, device): loading a model costs seconds, a slide's task
# must not pay it again. A new key (another run's model) replaces it, so a worker holds one model at a time.
_DETECTORS: dict[tuple[str, str | None], Detector] = {}


class DaskExecutor:
    """Screens on Dask: a new LocalCluster of ``workers`` processes, or the running cluster at ``scheduler``.

    Args:
        workers: start a LocalCluster of this many single-thread worker processes (closed at the end).
        scheduler: instead, use the running cluster at this address (``tcp://host:port``).
        memory_limit: per LocalCluster worker ("4GiB", bytes, or "auto": the machine's memory shared).
        factory: makes each worker's detector instead of the run's default (``load_model`` of its model
            folder); must pickle.
    """

    in_process = False

    def __init__(
        self,
        *,
        workers: int | None = None,
        scheduler: str | None = None,
        memory_limit: str | float | None = "auto",
        factory: DetectorFactory | None = None,
    ) -> None:
        if (workers is None) == (scheduler is None):
            raise ValueError(
                "give workers (a local cluster) or scheduler (an existing one), not both or neither"
            )
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1; got {workers}")
        self.workers = workers
        self.scheduler = scheduler
        self.memory_limit = memory_limit
        self.factory = factory

    def describe(self) -> str:
        return self.scheduler or f"LocalCluster({self.workers})"

    def run(self, slides: Sequence[Path], job: SlideJob) -> Iterator[SlideEvent]:
        if not slides:  # everything kept by resume: no cluster to start
            return
        with dask_client(
            n_workers=self.workers, scheduler=self.scheduler, memory_limit=self.memory_limit
        ) as (
            client,
            threads,
        ):
            yield from _screen_on_cluster(client, slides, job, threads)


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


def screen_task(path: str, job: SlideJob, threads: int | None) -> SlideResult:
    """Screen one slide on a worker with the worker's cached detector (:meth:`SlideJob.screen`).

    A slide that fails comes back as a failed SlideResult with the message, so the task itself never errs;
    only a worker death does.
    """
    try:
        detector = _worker_detector(job.factory, job.model_key, job.settings.device, threads)
    except Exception as exc:
        return failed_result(path, error_message(exc))
    return job.screen(path, detector)


def _screen_on_cluster(
    client: Client, slides: Sequence[Path], job: SlideJob, threads: int | None
) -> Iterator[SlideEvent]:
    """Keep one task per worker thread in flight; yield each slide's start and finish.

    Closing the iterator early (Ctrl-C in the loop) cancels the tasks in flight.
    """
    from distributed import as_completed

    slots = max(1, sum(client.nthreads().values()))
    todo = iter(range(len(slides)))
    futures: dict[Any, int] = {}
    pending = as_completed()

    def submit() -> SlideStarted | None:
        i = next(todo, None)
        if i is None:
            return None
        future = client.submit(screen_task, str(slides[i]), job, threads, pure=False)
        futures[future] = i
        pending.add(future)
        return SlideStarted(i)

    try:
        for _ in range(slots):
            started = submit()
            if started is None:
                break
            yield started
        for future in pending:
            i = futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # the worker died (KilledWorker after the retries) or the task was lost
                result = failed_result(
                    slides[i], f"worker died while screening this slide ({error_message(exc)})"
                )
            future.release()
            started = submit()
            if started is not None:
                yield started
            yield SlideFinished(i, result)
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
