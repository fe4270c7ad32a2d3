"""One SQLite file per screening run: slides, model detections and human reviews.

Layout (schema version 1):

- ``runs``: model and parameters of a run (``add_run``); ``classes``: label index -> class name.
- ``slides``: path, content hash, status, error, mpp, dimensions, timings (JSON), slide-level label.
- ``detections``: box ``x0, y0, x1, y1`` in level-0 pixels, ``label``, ``score``, ``class_scores`` (float32
  little-endian BLOB of C values) and a *detection key* (below). Triggers mirror every box into
  ``detections_rtree``, an R*Tree on ``(slide, x, y)``, so a viewport query reads only the boxes it needs.
- ``reviews``: decision (accept / reject / reclassify), new label, reviewer, time, note, plus a snapshot of the
  reviewed box. Reviews are never deleted or overwritten: the table is the audit trail.

Reviews refer to detections by *key*, not by row id: ``"{label}:{x0}:{y0}:{x1}:{y1}"`` with coordinates rounded
to whole level-0 pixels (``#n`` appended to the n-th exact duplicate). Re-running a slide with the same model
gives the same keys, so :meth:`DetectionStore.replace_detections` leaves its reviews attached; a review whose key
is gone (new model, moved box) is re-linked to the new detection of the same label with the highest IoU, if that
IoU reaches ``relink_iou``, else it stays in the table with ``detection_id=None``.

Concurrency: WAL mode, so readers (other threads, other processes such as the napari plugin) never block the
writer and always see whole transactions. Each ``DetectionStore`` holds one connection guarded by a lock, so it
may be shared between threads. A store is meant to be written by one process, the screening run; SQLite
serialises writers, so a second writer (a reviewer's napari session adding reviews) works but waits for each of
the run's transactions, at most ``timeout`` seconds, then fails. ``synchronous=NORMAL``: a killed process loses nothing it
committed; a power cut may lose the last transactions but never corrupts the file.
"""

from __future__ import annotations

import gc
import json
import numbers
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cytolt import __version__
from cytolt.detect.types import Detections

__all__ = [
    "DECISIONS",
    "SLIDE_STATUSES",
    "DetectionStore",
    "Review",
    "SlideRecord",
    "detection_keys",
    "no_gc",
]

SCHEMA_VERSION = 1
SLIDE_STATUSES = ("pending", "running", "done", "failed", "skipped")
DECISIONS = ("accept", "reject", "reclassify")

# The slide id is an R-tree dimension so slides sharing coordinates never mix, stored as [id - 0.25, id + 0.25]:
# with zero extent every box has zero volume, the R*Tree's choose-subtree step (least volume enlargement) ties
# everywhere and the tree degenerates: measured 7 ms instead of 0.1 ms per viewport on 100k boxes.
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    model TEXT,
    model_hash TEXT,
    params TEXT,
    cytolt_version TEXT
);
CREATE TABLE IF NOT EXISTS classes (label INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS slides (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    content_hash TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({", ".join(f"'{s}'" for s in SLIDE_STATUSES)})),
    error TEXT,
    mpp_x REAL,
    mpp_y REAL,
    width INTEGER,
    height INTEGER,
    timings TEXT,
    label TEXT,
    run_id INTEGER REFERENCES runs(id),
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS detections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slide_id INTEGER NOT NULL REFERENCES slides(id),
    key TEXT NOT NULL,
    x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    label INTEGER NOT NULL,
    score REAL NOT NULL,
    class_scores BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS detections_slide_key ON detections (slide_id, key);
CREATE INDEX IF NOT EXISTS detections_slide_label_score ON detections (slide_id, label, score DESC);
CREATE VIRTUAL TABLE IF NOT EXISTS detections_rtree USING rtree (id, s0, s1, x0, x1, y0, y1);
CREATE TRIGGER IF NOT EXISTS detections_rtree_insert AFTER INSERT ON detections BEGIN
    INSERT INTO detections_rtree
    VALUES (new.id, new.slide_id - 0.25, new.slide_id + 0.25, new.x0, new.x1, new.y0, new.y1);
END;
CREATE TRIGGER IF NOT EXISTS detections_rtree_delete AFTER DELETE ON detections BEGIN
    DELETE FROM detections_rtree WHERE id = old.id;
END;
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    slide_id INTEGER NOT NULL REFERENCES slides(id),
    detection_key TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ({", ".join(f"'{d}'" for d in DECISIONS)})),
    new_label INTEGER,
    reviewer TEXT NOT NULL,
    time TEXT NOT NULL,
    note TEXT,
    x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    model_label INTEGER NOT NULL,
    model_score REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_slide_key ON reviews (slide_id, detection_key);
CREATE TABLE IF NOT EXISTS tiles (
    slide_id INTEGER NOT NULL REFERENCES slides(id),
    x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
    sharpness REAL,
    cellular REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tiles_slide ON tiles (slide_id);
"""


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause Python's cyclic GC while building many small tuples, dicts and lists (query results, GeoJSON).

    None of them form cycles, but with the GC on, every few hundred allocations trigger a collection that walks
    all live objects: measured 2.7x slower for a 30k-feature GeoJSON export (docs/store.md).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class SlideRecord:
    """One row of ``slides``; ``mpp`` in microns per level-0 pixel, ``dims`` level-0 (width, height)."""

    id: int
    path: str
    content_hash: str | None
    status: str
    error: str | None
    mpp: tuple[float, float] | None
    dims: tuple[int, int] | None
    timings: dict[str, float]
    label: str | None
    run_id: int | None
    updated: str


@dataclass(frozen=True)
class Review:
    """One review decision; ``detection_id`` is the detection it is linked to now (None if orphaned)."""

    id: int
    slide_id: int
    detection_key: str
    detection_id: int | None
    decision: str
    new_label: int | None
    reviewer: str
    time: str
    note: str | None
    box: tuple[float, float, float, float]
    model_label: int
    model_score: float


class DetectionStore:
    """SQLite detection store of one run; see the module docstring for layout, keys and concurrency.

    ``DetectionStore(path)`` creates the file (and schema) if needed; ``readonly=True`` opens an existing store
    for viewing without taking any write lock. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, readonly: bool = False, timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"{self.path}: no detection store at this path")
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(
                uri, uri=True, timeout=timeout, check_same_thread=False, isolation_level=None
            )
        else:
            if not self.path.parent.is_dir():
                raise FileNotFoundError(f"{self.path}: folder {self.path.parent} does not exist")
            self._conn = sqlite3.connect(
                self.path, timeout=timeout, check_same_thread=False, isolation_level=None
            )
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ValueError(f"{self.path}: not a usable cytolt detection store ({exc})") from exc
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        c = self._conn
        c.execute("PRAGMA foreign_keys = ON")
        if self.readonly:
            self._check_version()
            return
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise ValueError(f"{self.path}: could not switch to WAL mode (journal_mode={mode})")
        c.execute("PRAGMA synchronous = NORMAL")
        with self._write():
            for statement in _split_sql(_SCHEMA):
                c.execute(statement)
            c.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self._check_version()

    def _check_version(self) -> None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            found = None if row is None else row[0]
            raise ValueError(f"{self.path}: store schema version {found}, this cytolt reads {SCHEMA_VERSION}")

    # -- plumbing -------------------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front, so no deadlock upgrade later."""
        if self.readonly:
            raise PermissionError(f"{self.path}: store opened read-only")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so multi-statement reads see one snapshot while a writer commits."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> DetectionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DetectionStore({str(self.path)!r}{', readonly=True' if self.readonly else ''})"

    # -- runs and classes -----------------------------------------------------------------------------------
    def add_run(
        self, *, model: str | None = None, model_hash: str | None = None, params: dict[str, Any] | None = None
    ) -> int:
        """Record a run (model name/path, weights hash, JSON-safe parameters); returns the run id."""
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO runs (started, model, model_hash, params, cytolt_version) VALUES (?, ?, ?, ?, ?)",
                (_now(), model, model_hash, json.dumps(params or {}, sort_keys=True), __version__),
            )
            return int(cur.lastrowid)

    def runs(self) -> list[dict[str, Any]]:
        """All runs as dicts (``params`` decoded)."""
        with self._read() as c:
            rows = c.execute(
                "SELECT id, started, model, model_hash, params, cytolt_version FROM runs ORDER BY id"
            )
            keys = ("id", "started", "model", "model_hash", "params", "cytolt_version")
            out = [dict(zip(keys, r, strict=True)) for r in rows]
        for r in out:
            r["params"] = json.loads(r["params"] or "{}")
        return out

    @property
    def class_names(self) -> list[str]:
        """Class names by label index; empty until detections were added with ``class_names``."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT name FROM classes ORDER BY label")]

    def _label(self, label: int | str) -> int:
        if isinstance(label, str):
            names = self.class_names
            if label not in names:
                raise ValueError(f"{self.path}: unknown class {label!r}; classes are {names}")
            return names.index(label)
        return int(label)

    def _check_classes(
        self, c: sqlite3.Connection, dets: Detections, class_names: Sequence[str] | None
    ) -> None:
        stored = [r[0] for r in c.execute("SELECT name FROM classes ORDER BY label")]
        if class_names is not None:
            class_names = [str(n) for n in class_names]
            if len(set(class_names)) != len(class_names):
                raise ValueError(f"class_names has duplicates: {class_names}")
            if not stored:
                c.executemany("INSERT INTO classes VALUES (?, ?)", enumerate(class_names))
                stored = class_names
            elif stored != class_names:
                raise ValueError(f"{self.path}: store has classes {stored}; got {class_names}")
        if len(dets):
            lo, hi = int(dets.labels.min()), int(dets.labels.max())
            if lo < 0 or (stored and hi >= len(stored)):
                raise ValueError(f"labels must be in [0, {len(stored) or 'C'}); got range [{lo}, {hi}]")
        if stored and dets.class_scores is not None and dets.class_scores.shape[1] != len(stored):
            raise ValueError(
                f"class_scores has {dets.class_scores.shape[1]} columns; the store has {len(stored)} classes"
            )

    # -- slides ---------------------------------------------------------------------------------------------
    def add_slide(
        self,
        path: str | os.PathLike[str],
        *,
        content_hash: str | None = None,
        mpp: float | tuple[float, float] | None = None,
        dims: tuple[int, int] | None = None,
        label: str | None = None,
        run_id: int | None = None,
    ) -> int:
        """Register a slide (or update the one with this path) and return its id.

        Idempotent on ``path`` so a resumed run finds its slides again: the fields given overwrite, those left
        ``None`` are kept. A different ``content_hash`` than stored means the file changed: status goes back to
        ``pending`` so the slide is screened again.
        """
        path = str(path)
        mpp_xy = (mpp, mpp) if isinstance(mpp, numbers.Real) else mpp
        mpp_x, mpp_y = (None, None) if mpp_xy is None else (float(mpp_xy[0]), float(mpp_xy[1]))
        width, height = (None, None) if dims is None else (int(dims[0]), int(dims[1]))
        with self._write() as c:
            row = c.execute("SELECT id, content_hash FROM slides WHERE path = ?", (path,)).fetchone()
            if row is None:
                cur = c.execute(
                    "INSERT INTO slides (path, content_hash, mpp_x, mpp_y, width, height, label, run_id, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (path, content_hash, mpp_x, mpp_y, width, height, label, run_id, _now()),
                )
                return int(cur.lastrowid)
            slide_id, old_hash = int(row[0]), row[1]
            changed = content_hash is not None and old_hash is not None and content_hash != old_hash
            c.execute(
                "UPDATE slides SET content_hash = COALESCE(?, content_hash), mpp_x = COALESCE(?, mpp_x),"
                " mpp_y = COALESCE(?, mpp_y), width = COALESCE(?, width), height = COALESCE(?, height),"
                " label = COALESCE(?, label), run_id = COALESCE(?, run_id), updated = ?,"
                " status = CASE WHEN ? THEN 'pending' ELSE status END WHERE id = ?",
                (content_hash, mpp_x, mpp_y, width, height, label, run_id, _now(), changed, slide_id),
            )
            return slide_id

    def set_slide_status(
        self, slide_id: int, status: str, *, error: str | None = None, timings: dict[str, float] | None = None
    ) -> None:
        """Set a slide's status (one of ``SLIDE_STATUSES``), its error message and stage timings in seconds."""
        if status not in SLIDE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(map(repr, SLIDE_STATUSES))}; got {status!r}")
        with self._write() as c:
            cur = c.execute(
                "UPDATE slides SET status = ?, error = ?, timings = COALESCE(?, timings), updated = ? WHERE id = ?",
                (status, error, None if timings is None else json.dumps(timings), _now(), int(slide_id)),
            )
            if cur.rowcount == 0:
                raise KeyError(f"{self.path}: no slide with id {slide_id}")

    def slide(self, slide_id: int) -> SlideRecord:
        """The slide with this id (KeyError if none)."""
        with self._read() as c:
            row = c.execute(f"SELECT {_SLIDE_COLS} FROM slides WHERE id = ?", (int(slide_id),)).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no slide with id {slide_id}")
        return _slide_record(row)

    def slides(self, *, status: str | None = None) -> list[SlideRecord]:
        """All slides in id order, optionally only those with ``status``."""
        sql, args = f"SELECT {_SLIDE_COLS} FROM slides", ()
        if status is not None:
            sql, args = sql + " WHERE status = ?", (status,)
        with self._read() as c:
            return [_slide_record(r) for r in c.execute(sql + " ORDER BY id", args)]

    def find_slide(self, path: str | os.PathLike[str]) -> int | None:
        """Id of the slide registered with this path, or None."""
        with self._lock:
            row = self._conn.execute("SELECT id FROM slides WHERE path = ?", (str(path),)).fetchone()
        return None if row is None else int(row[0])

    # -- detections -----------------------------------------------------------------------------------------
    def add_detections(
        self, slide_id: int, dets: Detections, class_names: Sequence[str] | None = None
    ) -> np.ndarray:
        """Append detections (boxes in level-0 pixels) to a slide in one transaction; returns their ids (N,).

        ``class_names`` is stored the first time and must match afterwards.
        """
        with self._write() as c, no_gc():
            return self._insert(c, int(slide_id), dets, class_names)

    def replace_tiles(
        self, slide_id: int, xywh: np.ndarray, sharpness: np.ndarray, cellular: np.ndarray
    ) -> None:
        """Replace a slide's tiles read (level-0 ``xywh`` (T, 4)) with their sharpness (T,; NaN: not judged) and
        cellular fraction (T,) (:mod:`cytolt.io.focus`), in one transaction."""
        xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
        if not len(xywh) == len(sharpness) == len(cellular):
            raise ValueError(
                f"got {len(xywh)} tiles, {len(sharpness)} sharpness and {len(cellular)} cellular values"
            )
        rows = [
            (int(slide_id), *map(float, box), None if np.isnan(sh) else float(sh), float(ce))
            for box, sh, ce in zip(xywh, sharpness, cellular, strict=True)
        ]
        with self._write() as c:
            c.execute("DELETE FROM tiles WHERE slide_id = ?", (int(slide_id),))
            c.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def tiles(self, slide_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A slide's tiles as ``xywh`` (T, 4), ``sharpness`` (T,) and ``cellular`` (T,), in the order written.

        Empty for a slide screened before tiles were recorded (and in stores written before then).
        """
        try:
            with self._read() as c:
                rows = c.execute(
                    "SELECT x, y, w, h, sharpness, cellular FROM tiles WHERE slide_id = ? ORDER BY rowid",
                    (int(slide_id),),
                ).fetchall()
        except sqlite3.OperationalError:  # a read-only store from before the tiles table
            rows = []
        arr = np.array([[*r[:4], np.nan if r[4] is None else r[4], r[5]] for r in rows], dtype=np.float64)
        arr = arr.reshape(-1, 6)
        return arr[:, :4], arr[:, 4], arr[:, 5]

    def replace_detections(
        self,
        slide_id: int,
        dets: Detections,
        class_names: Sequence[str] | None = None,
        *,
        relink_iou: float = 0.5,
    ) -> np.ndarray:
        """Replace all model detections of a slide in one transaction, keeping and re-linking its reviews.

        Returns the new ids (N,). A failure leaves the old detections untouched.
        """
        slide_id = int(slide_id)
        with self._write() as c, no_gc():
            c.execute("DELETE FROM detections WHERE slide_id = ?", (slide_id,))
            ids = self._insert(c, slide_id, dets, class_names)
            self._relink(c, slide_id, relink_iou)
            return ids

    def _insert(
        self, c: sqlite3.Connection, slide_id: int, dets: Detections, class_names: Sequence[str] | None
    ) -> np.ndarray:
        if c.execute("SELECT 1 FROM slides WHERE id = ?", (slide_id,)).fetchone() is None:
            raise KeyError(f"{self.path}: no slide with id {slide_id}")
        self._check_classes(c, dets, class_names)
        if len(dets) == 0:
            return np.zeros(0, dtype=np.int64)
        arr = dets.numpy()
        existing = {r[0] for r in c.execute("SELECT key FROM detections WHERE slide_id = ?", (slide_id,))}
        keys = detection_keys(arr["boxes"], arr["labels"], taken=existing)
        boxes = arr["boxes"].astype(np.float64).tolist()
        blobs = (
            [None] * len(dets)
            if dets.class_scores is None
            else [row.tobytes() for row in np.ascontiguousarray(arr["class_scores"], dtype="<f4")]
        )
        # Ids are assigned here so they can be returned (executemany gives no row ids); AUTOINCREMENT's
        # counter never goes back, so ids of replaced detections are never reused. The write lock is held.
        first = c.execute(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'detections'), 0) + 1"
        ).fetchone()[0]
        rows = [
            (first + i, slide_id, keys[i], *boxes[i], int(lab), float(s), blobs[i])
            for i, (lab, s) in enumerate(zip(arr["labels"].tolist(), arr["scores"].tolist(), strict=True))
        ]
        c.executemany("INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return np.arange(first, first + len(rows), dtype=np.int64)

    def _relink(self, c: sqlite3.Connection, slide_id: int, min_iou: float) -> None:
        orphans = c.execute(
            "SELECT DISTINCT r.detection_key, r.x0, r.y0, r.x1, r.y1, r.model_label FROM reviews r"
            " LEFT JOIN detections d ON d.slide_id = r.slide_id AND d.key = r.detection_key"
            " WHERE r.slide_id = ? AND d.id IS NULL",
            (slide_id,),
        ).fetchall()
        for key, x0, y0, x1, y1, label in orphans:
            best, best_iou = None, min_iou
            for d_key, a0, b0, a1, b1 in c.execute(
                "SELECT d.key, d.x0, d.y0, d.x1, d.y1 FROM detections_rtree r CROSS JOIN detections d ON d.id = r.id"
                " WHERE r.s0 <= ? AND r.s1 >= ? AND r.x0 <= ? AND r.x1 >= ? AND r.y0 <= ? AND r.y1 >= ?"
                " AND d.label = ?",
                (slide_id, slide_id, x1, x0, y1, y0, label),
            ):
                iou = _iou((x0, y0, x1, y1), (a0, b0, a1, b1))
                if iou >= best_iou:
                    best, best_iou = d_key, iou
            if best is not None:
                c.execute(
                    "UPDATE reviews SET detection_key = ? WHERE slide_id = ? AND detection_key = ?",
                    (best, slide_id, key),
                )

    def query(
        self,
        slide_id: int,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        min_score: float = 0.0,
        labels: Sequence[int | str] | None = None,
    ) -> tuple[Detections, np.ndarray]:
        """Detections of a slide whose box overlaps ``bbox`` (x0, y0, x1, y1 level-0 px) with positive area.

        Uses the R-tree, so the cost follows the viewport, not the slide. Returns ``(dets, ids)`` sorted by
        descending score; ``ids`` (N,) int64 are row ids for :meth:`add_review`.
        """
        if labels is not None and not labels:
            return Detections.empty(), np.zeros(0, dtype=np.int64)
        sql, args = self._query_sql(slide_id, bbox=bbox, min_score=min_score, labels=labels)
        with self._read() as c, no_gc():
            return _to_detections(c.execute(sql, args).fetchall())

    def _query_sql(
        self,
        slide_id: int,
        *,
        bbox: tuple[float, float, float, float] | None,
        min_score: float,
        labels: Sequence[int | str] | None,
    ) -> tuple[str, list[Any]]:
        where, args = ["d.slide_id = ?", "d.score >= ?"], [int(slide_id), float(min_score)]
        if labels is not None:
            lab = [self._label(x) for x in labels]
            where.append(f"d.label IN ({', '.join('?' * len(lab))})")
            args += lab
        if bbox is None:
            sql = f"SELECT {_DET_COLS} FROM detections d WHERE {' AND '.join(where)}"
        else:
            qx0, qy0, qx1, qy1 = map(float, bbox)
            if not (qx0 <= qx1 and qy0 <= qy1):
                raise ValueError(f"bbox must be (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1; got {bbox}")
            # CROSS JOIN makes the R-tree the outer loop: with a plain JOIN the planner prefers the slide_id
            # index and probes the R-tree once per detection of the slide (measured 0.6 s on 100k boxes).
            # The R-tree stores float32 bounds rounded outwards, so it returns a superset; the exact test runs
            # on the REAL columns of ``detections``.
            sql = (
                f"SELECT {_DET_COLS} FROM detections_rtree r CROSS JOIN detections d ON d.id = r.id"
                " WHERE r.s0 <= ? AND r.s1 >= ? AND r.x0 <= ? AND r.x1 >= ? AND r.y0 <= ? AND r.y1 >= ?"
                " AND d.x0 < ? AND d.x1 > ? AND d.y0 < ? AND d.y1 > ? AND " + " AND ".join(where)
            )
            args = [slide_id, slide_id, qx1, qx0, qy1, qy0, qx1, qx0, qy1, qy0, *args]
        return sql + " ORDER BY d.score DESC, d.id", args

    def top_k(self, slide_id: int, label: int | str, k: int) -> tuple[Detections, np.ndarray]:
        """The ``k`` highest-scoring detections of one class (index or name); returns ``(dets, ids)``."""
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_DET_COLS} FROM detections d WHERE d.slide_id = ? AND d.label = ?"
                " ORDER BY d.score DESC, d.id LIMIT ?",
                (int(slide_id), self._label(label), int(k)),
            ).fetchall()
        return _to_detections(rows)

    def columns(self, slide_id: int, *, min_score: float = 0.0) -> dict[str, Any]:
        """All detections of a slide as columns, for export: ``id, key`` plus the ``Detections`` arrays."""
        with self._read() as c, no_gc():
            rows = c.execute(
                f"SELECT {_DET_COLS}, d.key FROM detections d WHERE d.slide_id = ? AND d.score >= ?"
                " ORDER BY d.score DESC, d.id",
                (int(slide_id), float(min_score)),
            ).fetchall()
            dets, ids = _to_detections([r[:-1] for r in rows])
            return {"id": ids, "key": [r[-1] for r in rows], **dets.numpy()}

    def counts(self, slide_id: int, *, min_score: float = 0.0) -> dict[str, int]:
        """Number of model detections per class name with ``score >= min_score`` (reviews not applied).

        Every known class appears (zero included); labels without a stored name appear as ``"class_<i>"``.
        """
        names = self.class_names
        with self._read() as c:
            rows = c.execute(
                "SELECT label, COUNT(*) FROM detections WHERE slide_id = ? AND score >= ? GROUP BY label",
                (int(slide_id), float(min_score)),
            ).fetchall()
        out = dict.fromkeys(names, 0)
        for lab, n in rows:
            out[names[lab] if lab < len(names) else f"class_{lab}"] = int(n)
        return out

    # -- reviews --------------------------------------------------------------------------------------------
    def add_review(
        self,
        detection_id: int,
        decision: str,
        *,
        reviewer: str,
        new_label: int | str | None = None,
        note: str | None = None,
        time: str | None = None,
    ) -> int:
        """Record a reviewer's decision on a detection; returns the review id. Earlier reviews are kept.

        ``decision`` is one of ``DECISIONS``; ``reclassify`` needs ``new_label`` (index or class name).
        ``time`` defaults to now (UTC, ISO 8601).
        """
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(map(repr, DECISIONS))}; got {decision!r}")
        if decision == "reclassify" and new_label is None:
            raise ValueError("decision 'reclassify' needs new_label")
        if decision != "reclassify" and new_label is not None:
            raise ValueError(f"new_label is only meaningful with 'reclassify'; got decision {decision!r}")
        if not reviewer:
            raise ValueError("reviewer must name who decided (audit trail)")
        label = None if new_label is None else self._label(new_label)
        with self._write() as c:
            row = c.execute(
                "SELECT slide_id, key, x0, y0, x1, y1, label, score FROM detections WHERE id = ?",
                (int(detection_id),),
            ).fetchone()
            if row is None:
                raise KeyError(f"{self.path}: no detection with id {detection_id}")
            n_classes = c.execute("SELECT COUNT(*) FROM classes").fetchone()[0]
            if label is not None and (label < 0 or (n_classes and label >= n_classes)):
                raise ValueError(f"new_label {label} is not a class index in [0, {n_classes})")
            cur = c.execute(
                "INSERT INTO reviews (slide_id, detection_key, decision, new_label, reviewer, time, note,"
                " x0, y0, x1, y1, model_label, model_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row[0], row[1], decision, label, reviewer, time or _now(), note, *row[2:]),
            )
            return int(cur.lastrowid)

    def reviews(self, slide_id: int, *, latest: bool = False) -> list[Review]:
        """Reviews of a slide in the order they were made; ``latest=True`` keeps the last one per detection."""
        with self._read() as c:
            rows = c.execute(
                "SELECT r.id, r.slide_id, r.detection_key, d.id, r.decision, r.new_label, r.reviewer, r.time,"
                " r.note, r.x0, r.y0, r.x1, r.y1, r.model_label, r.model_score FROM reviews r"
                " LEFT JOIN detections d ON d.slide_id = r.slide_id AND d.key = r.detection_key"
                " WHERE r.slide_id = ? ORDER BY r.id",
                (int(slide_id),),
            ).fetchall()
        out = [
            Review(
                id=r[0],
                slide_id=r[1],
                detection_key=r[2],
                detection_id=r[3],
                decision=r[4],
                new_label=r[5],
                reviewer=r[6],
                time=r[7],
                note=r[8],
                box=(r[9], r[10], r[11], r[12]),
                model_label=r[13],
                model_score=r[14],
            )
            for r in rows
        ]
        if latest:
            last = {rev.detection_key: rev for rev in out}
            out = sorted(last.values(), key=lambda rev: rev.id)
        return out


# -- helpers ---------------------------------------------------------------------------------------------------

_SLIDE_COLS = (
    "id, path, content_hash, status, error, mpp_x, mpp_y, width, height, timings, label, run_id, updated"
)
_DET_COLS = "d.id, d.x0, d.y0, d.x1, d.y1, d.label, d.score, d.class_scores"


def detection_keys(boxes: np.ndarray, labels: np.ndarray, *, taken: set[str] | None = None) -> list[str]:
    """Stable review keys ``"{label}:{x0}:{y0}:{x1}:{y1}"`` (boxes rounded to whole level-0 px).

    The n-th repeat of a key (already in ``taken`` or earlier in this batch) gets ``#n`` appended, so keys are
    unique within a slide and deterministic for the same input order.
    """
    taken = set() if taken is None else set(taken)
    rounded = np.rint(np.asarray(boxes, dtype=np.float64)).astype(np.int64).tolist()
    out = []
    for lab, (x0, y0, x1, y1) in zip(np.asarray(labels).tolist(), rounded, strict=True):
        base = key = f"{int(lab)}:{x0}:{y0}:{x1}:{y1}"
        n = 1
        while key in taken:
            key = f"{base}#{n}"
            n += 1
        taken.add(key)
        out.append(key)
    return out


def _split_sql(script: str) -> list[str]:
    """Statements of the schema script; triggers keep their inner ``;`` (sqlite3.complete_statement decides)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [s for s in out if s]


def _slide_record(r: tuple) -> SlideRecord:
    return SlideRecord(
        id=r[0],
        path=r[1],
        content_hash=r[2],
        status=r[3],
        error=r[4],
        mpp=None if r[5] is None else (r[5], r[6]),
        dims=None if r[7] is None else (r[7], r[8]),
        timings=json.loads(r[9]) if r[9] else {},
        label=r[10],
        run_id=r[11],
        updated=r[12],
    )


def _to_detections(rows: list[tuple]) -> tuple[Detections, np.ndarray]:
    if not rows:
        return Detections.empty(), np.zeros(0, dtype=np.int64)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    boxes = np.array([r[1:5] for r in rows], dtype=np.float32)
    labels = np.array([r[5] for r in rows], dtype=np.int64)
    scores = np.array([r[6] for r in rows], dtype=np.float32)
    blobs = [r[7] for r in rows]
    class_scores = None
    if all(b is not None for b in blobs) and len({len(b) for b in blobs}) == 1:
        class_scores = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(rows), -1).astype(np.float32)
    dets = Detections(
        boxes=torch.from_numpy(boxes),
        scores=torch.from_numpy(scores),
        labels=torch.from_numpy(labels),
        class_scores=None if class_scores is None else torch.from_numpy(class_scores),
    )
    return dets, ids


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
