"""What a reviewer reads first about a slide: its score, call and counts, from the report or the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cytolt.adequacy import SlideQuality
from cytolt.review.run import RunSlide, run_params
from cytolt.store import DetectionStore

if TYPE_CHECKING:
    from cytolt.aggregate import SlideScorer

__all__ = ["SlideSummary", "slide_summary"]


@dataclass(frozen=True)
class SlideSummary:
    """What a reviewer reads first: slide score in [0, 1], category call, the rule that fired, counts per class.

    ``source`` says where it came from: ``"report"`` (the run's report.json), ``"scorer"`` (the run's slide
    scorer re-applied to the stored detections) or ``"store"`` (counts only; score and call are None).
    """

    name: str
    score: float | None
    call: str | None
    reason: str | None
    counts: dict[str, int]
    total: int
    source: str


def slide_summary(run: RunSlide, store: DetectionStore) -> SlideSummary:
    """The summary of a run's slide: from its report.json, else computed from the store.

    Without a report, counts are the store's detections per class (no threshold) and, when the run recorded
    its slide scorer (``params["scorer"]`` of the run, as ``cytolt screen`` does), score and call are that
    scorer applied to the stored detections.
    """
    if run.report_path is not None:
        try:
            report = json.loads(run.report_path.read_text())
            score = report.get("score") or {}
            counts = {str(k): int(v) for k, v in report["detections"]["per_class"].items()}
            return SlideSummary(
                name=run.name,
                score=None if score.get("slide_score") is None else float(score["slide_score"]),
                call=score.get("category"),
                reason=score.get("reason"),
                counts=counts,
                total=int(report["detections"]["total"]),
                source="report",
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged report must not hide the slide: fall back to the store
    counts = store.counts(run.slide_id)
    scorer = _run_scorer(store, run.slide_id)
    if scorer is None:
        return SlideSummary(run.name, None, None, None, counts, sum(counts.values()), "store")
    dets, _ = store.query(run.slide_id)
    # adequacy from the tiles the run recorded: a slide is never summarised as NILM unexamined (a store from
    # before tiles were recorded has none, so such a slide reads "no cellular area", i.e. Unsatisfactory)
    result = scorer.score(dets, SlideQuality(*store.tiles(run.slide_id)))
    return SlideSummary(
        run.name, result.slide_score, result.category, result.reason, counts, sum(counts.values()), "scorer"
    )


def _run_scorer(store: DetectionStore, slide_id: int) -> SlideScorer | None:
    from cytolt.aggregate import SlideScorer  # only needed without a report

    data = run_params(store, slide_id).get("scorer")
    if not data:
        return None
    try:
        return SlideScorer.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None
