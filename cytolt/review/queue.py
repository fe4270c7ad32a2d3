"""The review queue: per class, the top ``k`` detections of a slide by score, best first.

Decisions go straight into the store (:meth:`DetectionStore.add_review`), never into memory only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cytolt import bethesda
from cytolt.store import DetectionStore, Review

__all__ = ["QueueItem", "ReviewQueue"]


@dataclass(frozen=True)
class QueueItem:
    """One cell to review: store row id, model class, score, box (x0, y0, x1, y1 level-0 px), rank in its class."""

    detection_id: int
    label: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]
    rank: int


class ReviewQueue:
    """The cells a reviewer checks on one slide, class by class, best score first; decisions go to the store.

    ``classes`` (names) chooses the classes and their order; by default every class with detections on the
    slide in :func:`cytolt.bethesda.review_order`: the abnormal classes a cytotechnologist must see first, most
    severe first, then organisms, then the rest. Each class contributes its top ``per_class``
    detections. :meth:`decide` writes a review at once (``DetectionStore.add_review``), so
    nothing is lost when the viewer closes, and reopening the queue shows earlier decisions.
    """

    def __init__(
        self,
        store: DetectionStore,
        slide_id: int,
        *,
        per_class: int = 30,
        classes: Sequence[str] | None = None,
    ) -> None:
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1; got {per_class}")
        self.store = store
        self.slide_id = int(slide_id)
        self.per_class = int(per_class)
        self.index = 0
        names = store.class_names
        counts = store.counts(self.slide_id)
        if classes is None:
            classes = [n for n in bethesda.review_order(names) if counts.get(n, 0) > 0]
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise ValueError(f"{store.path}: unknown classes {unknown}; classes are {names}")
        self.classes: list[str] = list(classes)
        self.items: list[QueueItem] = []
        for name in self.classes:
            dets, ids = store.top_k(self.slide_id, name, self.per_class)
            arr = dets.numpy()
            rows = zip(ids.tolist(), arr["boxes"].tolist(), arr["scores"].tolist(), strict=True)
            for rank, (i, box, score) in enumerate(rows):
                self.items.append(
                    QueueItem(
                        detection_id=int(i),
                        label=names.index(name),
                        class_name=name,
                        score=float(score),
                        box=tuple(box),
                        rank=rank,
                    )
                )
        self._decisions: dict[int, Review] = {}
        self.reload()

    def reload(self) -> None:
        """Re-read the latest decisions from the store (e.g. made by another reviewer meanwhile)."""
        self._decisions = {
            r.detection_id: r
            for r in self.store.reviews(self.slide_id, latest=True)
            if r.detection_id is not None
        }

    def __len__(self) -> int:
        return len(self.items)

    @property
    def current(self) -> QueueItem | None:
        return self.items[self.index] if self.items else None

    def items_of(self, class_name: str) -> list[QueueItem]:
        """The queue's cells of one class, best first."""
        return [it for it in self.items if it.class_name == class_name]

    def go(self, index: int) -> QueueItem | None:
        """Make item ``index`` current (clamped to the queue) and return it."""
        if not self.items:
            return None
        self.index = min(max(int(index), 0), len(self.items) - 1)
        return self.current

    def next(self) -> QueueItem | None:
        return self.go(self.index + 1)

    def previous(self) -> QueueItem | None:
        return self.go(self.index - 1)

    def position(self, detection_id: int) -> int:
        """Queue index of a detection (ValueError if it is not in the queue)."""
        for i, it in enumerate(self.items):
            if it.detection_id == detection_id:
                return i
        raise ValueError(f"detection {detection_id} is not in the review queue of slide {self.slide_id}")

    def decision(self, item: QueueItem) -> Review | None:
        """The latest review of an item, or None."""
        return self._decisions.get(item.detection_id)

    def decide(self, decision: str, *, reviewer: str, new_label: int | str | None = None) -> Review:
        """Record a decision on the current item in the store now; returns the stored review.

        ``decision`` is one of ``cytolt.store.DECISIONS``; ``reclassify`` needs ``new_label`` (index or name).
        """
        item = self.current
        if item is None:
            raise ValueError(f"slide {self.slide_id}: the review queue is empty")
        review_id = self.store.add_review(item.detection_id, decision, reviewer=reviewer, new_label=new_label)
        review = next(r for r in self.store.reviews(self.slide_id) if r.id == review_id)
        self._decisions[item.detection_id] = review
        return review

    @property
    def progress(self) -> tuple[int, int]:
        """(reviewed, total) items of the queue."""
        done = sum(1 for it in self.items if it.detection_id in self._decisions)
        return done, len(self.items)

    def next_unreviewed(self) -> QueueItem | None:
        """Move to the first unreviewed item after the current one (wrapping); stays put if all are reviewed."""
        n = len(self.items)
        for step in range(1, n + 1):
            j = (self.index + step) % n
            if self.items[j].detection_id not in self._decisions:
                return self.go(j)
        return self.current
