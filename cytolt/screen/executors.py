"""Where a run's slides are screened: an executor turns slide files into results and says when each starts.

    for event in LocalExecutor().run(slides, job):       # or DaskExecutor(workers=2) (cytolt.screen.distributed)
        if isinstance(event, SlideStarted): ...          # slide event.index is handed to a model
        else: ...                                        # SlideFinished: event.result, done or failed

Glossary:

- *job* (:class:`SlideJob`): what every slide of a run is screened with: a detector factory, the model's
  identity (the key of the workers' detector cache), the settings (already :meth:`ScreenSettings.for_model`)
  and the slide scorer. Picklable when its factory is, so it travels to Dask workers as it is.
- *detector factory*: ``factory(device) -> Detector``, ``device`` a torch device string or None (CUDA when
  available). :func:`load_model` loads a model folder; tests pass ``functools.partial`` of an oracle.
- Executors compute only: the :class:`~cytolt.screen.recorder.RunRecorder` writes what they yield. A slide that
  fails comes back as a failed result (:func:`~cytolt.screen.engine.attempt_slide`); what escapes ``run`` is
  what stops a run: a model that does not load, Ctrl-C.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cytolt.screen.engine import SlideResult, attempt_slide

if TYPE_CHECKING:
    from cytolt.aggregate import SlideScorer
    from cytolt.detect import Detector, ModelFolder
    from cytolt.screen.settings import ScreenSettings

__all__ = [
    "DetectorFactory",
    "Executor",
    "GivenDetector",
    "LocalExecutor",
    "SlideEvent",
    "SlideFinished",
    "SlideJob",
    "SlideStarted",
    "load_model",
]

DetectorFactory = Callable[[str | None], "Detector"]


def load_model(model: ModelFolder | str, device: str | None = None, engine: str = "auto") -> Detector:
    """The default detector factory: :func:`cytolt.detect.load` of a model folder on ``device``.

    Given a :class:`~cytolt.detect.ModelFolder` (it pickles), the folder is not read again. ``engine``:
    ``"torch"``, ``"onnx"`` or ``"auto"`` (the folder's measured default; ``functools.partial`` it in).
    """
    from cytolt import detect  # looked up at call time, so a test may stand an oracle in for it

    if engine == "auto":
        return detect.load(model, device)  # oracles standing in for detect.load need not know engines
    return detect.load(model, device, engine=engine)


@dataclass(frozen=True)
class GivenDetector:
    """A factory that returns a detector object already made (in this process only: it is not shipped)."""

    detector: Detector

    def __call__(self, device: str | None = None) -> Detector:
        return self.detector


@dataclass(frozen=True)
class SlideJob:
    """What every slide of a run is screened with (see the module glossary)."""

    factory: DetectorFactory
    model_key: str
    settings: ScreenSettings
    scorer: SlideScorer | None = None

    def screen(
        self, path: str | Path, detector: Detector, progress: Callable[[int, int], Any] | None = None
    ) -> SlideResult:
        """Screen one slide with ``detector``; a failure comes back as a failed result."""
        return attempt_slide(path, detector, self.settings, scorer=self.scorer, progress=progress)


@dataclass(frozen=True)
class SlideStarted:
    """Slide ``index`` (into the run's slides) was handed to a model."""

    index: int


@dataclass(frozen=True)
class SlideFinished:
    """Slide ``index`` came back, done or failed."""

    index: int
    result: SlideResult


SlideEvent = SlideStarted | SlideFinished


class Executor(Protocol):
    """Screens slides: ``run`` yields a SlideStarted before a slide's SlideFinished, for every slide."""

    factory: DetectorFactory | None
    in_process: bool

    def describe(self) -> str: ...

    def run(self, slides: Sequence[Path], job: SlideJob) -> Iterator[SlideEvent]: ...


class LocalExecutor:
    """One slide after another in this process, with one detector made by the job's factory.

    Args:
        factory: makes the detector instead of the run's default (``load_model`` of its model folder).
        progress: called as ``progress(slide_path, tiles_done, tiles_total)`` while a slide is read.
    """

    in_process = True

    def __init__(
        self,
        *,
        factory: DetectorFactory | None = None,
        progress: Callable[[Path, int, int], Any] | None = None,
    ) -> None:
        self.factory = factory
        self.progress = progress

    def describe(self) -> str:
        return "local"

    def run(self, slides: Sequence[Path], job: SlideJob) -> Iterator[SlideEvent]:
        if not slides:
            return
        detector = job.factory(job.settings.device)
        for i, path in enumerate(slides):
            yield SlideStarted(i)
            tick = None if self.progress is None else functools.partial(self.progress, path)
            yield SlideFinished(i, job.screen(path, detector, tick))
