"""cytolt.review.queue: rare classes first, best scores first, decisions straight into the store."""

from __future__ import annotations

import pytest

from cytolt import bethesda
from cytolt.review import ReviewQueue
from cytolt.store import DetectionStore


def test_queue_ranks_the_most_severe_classes_first_and_best_scores_first(run):
    with DetectionStore(run.store_path) as store:
        names = store.class_names
        counts = store.counts(run.slide_id)
        queue = ReviewQueue(store, run.slide_id, per_class=4)
        present = [n for n in names if counts[n]]
        # abnormal classes most severe first (cytolt.bethesda.review_order), then organisms, then the rest
        assert queue.classes == [n for n in bethesda.review_order(names) if n in present]
        assert queue.classes[:2] == [c for c in ("scc", "hsil") if c in present][:2]
        assert len(queue) == sum(min(4, counts[n]) for n in present)
        for name in queue.classes:
            items = queue.items_of(name)
            _, ids = store.top_k(run.slide_id, name, 4)
            assert [it.detection_id for it in items] == ids.tolist()
            assert [it.rank for it in items] == list(range(len(items)))
            assert all(a.score >= b.score for a, b in zip(items, items[1:], strict=False))
        assert ReviewQueue(store, run.slide_id, classes=["hsil"]).classes == ["hsil"]
        with pytest.raises(ValueError, match="unknown classes"):
            ReviewQueue(store, run.slide_id, classes=["HSIL"])
        with pytest.raises(ValueError, match="per_class"):
            ReviewQueue(store, run.slide_id, per_class=0)


def test_queue_decisions_reach_the_store_and_survive_reopening(run):
    with DetectionStore(run.store_path) as store:
        queue = ReviewQueue(store, run.slide_id, per_class=3)
        first = queue.current
        queue.decide("accept", reviewer="ann")
        second = queue.next()
        queue.decide("reclassify", reviewer="ann", new_label="lsil")
        queue.decide("reject", reviewer="bob")  # a later decision on the same cell wins
        assert queue.progress == (2, len(queue))
        with pytest.raises(ValueError, match="reviewer"):
            queue.decide("accept", reviewer="")
        assert queue.go(-5) is queue.items[0] and queue.go(10**6) is queue.items[-1]
    with DetectionStore(run.store_path, readonly=True) as store:
        latest = {r.detection_id: r for r in store.reviews(run.slide_id, latest=True)}
        assert latest[first.detection_id].decision == "accept"
        assert (latest[second.detection_id].decision, latest[second.detection_id].reviewer) == (
            "reject",
            "bob",
        )
        assert len(store.reviews(run.slide_id)) == 3  # the audit trail keeps every decision
        again = ReviewQueue(store, run.slide_id, per_class=3)
        assert again.progress == (2, len(again))
        assert again.decision(again.items[0]).decision == "accept"
        assert again.next_unreviewed() is again.items[2]
