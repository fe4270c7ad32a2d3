"""The layout of a screening run folder, owned here and nowhere else.

Layout (what ``cytolt screen`` writes, what the report, review and the napari plugin read)::

    RUN_DIR/run.sqlite                 DetectionStore: slides, statuses and errors, detections, reviews
    RUN_DIR/summary.csv                one row per slide (rewritten after each slide, so a stopped run has one)
    RUN_DIR/<slide folder>/report.json slide report (cytolt/report/schema/report.schema.json)
    RUN_DIR/<slide folder>/report.html self-contained page: thumbnail, gallery, histogram

A *slide folder* is the slide's file stem, with ``-2``, ``-3``, ... for repeated stems
(:meth:`RunFolder.slide_folders`).

    run = RunFolder("runs/night")              # or RunFolder.locate("runs/night/HSIL_01/report.json")
    run.store_path, run.report_path("HSIL_01"), run.find_report("HSIL_01.svs")
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

__all__ = ["RunFolder"]


@dataclass(frozen=True)
class RunFolder:
    """A run folder at ``path`` (it need not exist yet: :meth:`create` makes it)."""

    path: Path
    STORE: ClassVar[str] = "run.sqlite"
    SUMMARY: ClassVar[str] = "summary.csv"
    REPORT: ClassVar[str] = "report.json"
    PAGE: ClassVar[str] = "report.html"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    # ----------------------------------------------------------------- paths
    @property
    def store_path(self) -> Path:
        return self.path / self.STORE

    @property
    def summary_path(self) -> Path:
        return self.path / self.SUMMARY

    def slide_dir(self, folder: str) -> Path:
        return self.path / folder

    def report_path(self, folder: str) -> Path:
        return self.path / folder / self.REPORT

    def page_path(self, folder: str) -> Path:
        return self.path / folder / self.PAGE

    def relative_report(self, folder: str) -> str:
        """The report's path relative to the run folder, as summary.csv lists it."""
        return f"{folder}/{self.REPORT}"

    def exists(self) -> bool:
        """Whether the folder holds a run (its store file)."""
        return self.store_path.is_file()

    def create(self) -> RunFolder:
        """Make the folder (and its parents) if missing; returns self."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # ----------------------------------------------------------------- slides
    @staticmethod
    def slide_folders(slides: Sequence[str | os.PathLike[str]]) -> list[str]:
        """A slide folder name per slide, in order: its stem, with ``-2``, ``-3``, ... for repeated stems."""
        out: list[str] = []
        taken: set[str] = set()
        for p in map(Path, slides):
            stem = name = p.stem or p.name
            n = 1
            while name in taken:
                n += 1
                name = f"{stem}-{n}"
            out.append(name)
            taken.add(name)
        return out

    def find_report(self, slide_name: str) -> Path | None:
        """``report.json`` of the slide whose file name is ``slide_name``, or None.

        The stem's folder is tried first, then every other slide folder; the report's own ``slide.name``
        decides, so a renamed folder (or a ``-2`` one) is still found.
        """
        stem = Path(slide_name).stem or slide_name
        first = self.report_path(stem)
        others = sorted(p for p in self.path.glob(f"*/{self.REPORT}") if p != first)
        for path in (first, *others):
            if path.is_file() and report_slide_name(path) == slide_name:
                return path
        return None

    def locate_slide(self, stored_path: str | os.PathLike[str]) -> Path | None:
        """Where a run's slide file is now: its stored path, else a file of that name in or beside the folder."""
        stored = Path(stored_path)
        for candidate in (stored, self.path / stored.name, self.path.parent / stored.name):
            if candidate.is_file():
                return candidate
        return None

    # ----------------------------------------------------------------- from any path inside a run
    @classmethod
    def locate(cls, path: str | os.PathLike[str]) -> tuple[RunFolder, str | None] | None:
        """The run a path belongs to and, when it names one slide's folder or report, that folder's name.

        Accepts ``RUN_DIR``, ``RUN_DIR/run.sqlite``, ``RUN_DIR/<slide folder>`` and
        ``RUN_DIR/<slide folder>/report.json``; None for anything else. Looks at names and files only: the
        store is never opened.
        """
        p = Path(path)
        if p.is_file() and p.name == cls.STORE:
            return cls(p.parent), None
        if p.is_file() and p.name == cls.REPORT and (p.parent.parent / cls.STORE).is_file():
            return cls(p.parent.parent), p.parent.name
        if p.is_dir():
            if (p / cls.STORE).is_file():
                return cls(p), None
            if (p / cls.REPORT).is_file() and (p.parent / cls.STORE).is_file():
                return cls(p.parent), p.name
        return None


def report_slide_name(path: str | os.PathLike[str]) -> str | None:
    """The slide file name a report.json was written for (its ``slide.name``), None if unreadable."""
    try:
        return json.loads(Path(path).read_text())["slide"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
