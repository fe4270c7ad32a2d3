"""cytolt.review.summary: the slide summary from the report, else the run's scorer on the stored cells."""

from __future__ import annotations

import json

from cytolt.review import open_run, slide_summary
from cytolt.store import DetectionStore


def test_summary_prefers_the_report_then_the_run_scorer(run):
    with DetectionStore(run.store_path) as store:
        counts = store.counts(run.slide_id)
        from_scorer = slide_summary(run, store)
        assert from_scorer.source == "scorer"
        assert from_scorer.counts == counts and from_scorer.total == sum(counts.values())
        assert from_scorer.call == "HSIL+" and 0 < from_scorer.score <= 1  # 26 hsil cells, mostly > 0.5
        folder = run.run_dir / "demo_hsil_1"
        folder.mkdir()
        report = {
            "slide": {"name": run.name},
            "score": {"slide_score": 0.42, "category": "ASC-US+", "reason": "made up", "counts": {}},
            "detections": {"total": 3, "per_class": {"hsil": 3}},
        }
        (folder / "report.json").write_text(json.dumps(report))
        summary = slide_summary(open_run(run.run_dir), store)
        assert (summary.source, summary.score, summary.call, summary.total) == ("report", 0.42, "ASC-US+", 3)
        (folder / "report.json").write_text("{broken")
        assert slide_summary(open_run(run.run_dir), store).source == "scorer"
