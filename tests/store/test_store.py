"""Tests of cytolt.store.store.DetectionStore: round trip, WAL, R-tree queries, reviews, concurrency, crashes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cytolt.detect.types import Detections
from cytolt.store.store import DetectionStore, detection_keys

CLASSES = ["NILM", "ASC-US", "LSIL", "HSIL"]


def _random_dets(
    rng: np.random.Generator, n: int, *, extent: float = 10_000, c: int | None = 4
) -> Detections:
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(5, 80, (n, 2))
    cs = None if c is None else rng.dirichlet(np.ones(c), n).astype(np.float32)
    return Detections(
        boxes=np.concatenate([xy, xy + wh], 1),
        scores=rng.uniform(0.05, 1, n),
        labels=rng.integers(0, c or 4, n),
        class_scores=cs,
    )


@pytest.fixture
def store(tmp_path: Path):
    with DetectionStore(tmp_path / "run.sqlite") as s:
        yield s


def test_round_trip_of_run_slide_and_detections(store: DetectionStore) -> None:
    rng = np.random.default_rng(0)
    run = store.add_run(model="retinanet_r18", model_hash="abc123", params={"tile": 512, "overlap": 64})
    sid = store.add_slide(
        "/data/s1.svs", content_hash="h1", mpp=(0.25, 0.26), dims=(40_000, 30_000), run_id=run
    )
    dets = _random_dets(rng, 50)
    ids = store.add_detections(sid, dets, CLASSES)
    assert ids.shape == (50,) and len(set(ids.tolist())) == 50

    got, got_ids = store.query(sid)
    order = np.argsort(-dets.scores.numpy(), kind="stable")
    assert (got_ids == ids[order]).all()
    torch.testing.assert_close(got.boxes, dets.boxes[order])
    torch.testing.assert_close(got.scores, dets.scores[order])
    torch.testing.assert_close(got.labels, dets.labels[order])
    torch.testing.assert_close(got.class_scores, dets.class_scores[order])  # float32 BLOB round trip is exact

    assert store.class_names == CLASSES
    assert store.runs()[0]["params"] == {"tile": 512, "overlap": 64}
    store.set_slide_status(sid, "done", timings={"read": 1.5, "detect": 10.0})
    rec = store.slide(sid)
    assert rec.path == "/data/s1.svs" and rec.status == "done" and rec.run_id == run
    assert rec.mpp == (0.25, 0.26) and rec.dims == (40_000, 30_000) and rec.timings["detect"] == 10.0
    assert [s.id for s in store.slides(status="done")] == [sid]
    assert store.slides(status="failed") == []


def test_store_is_in_wal_mode_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    with DetectionStore(path) as s:
        sid = s.add_slide("a.tiff")
        s.add_detections(sid, _random_dets(np.random.default_rng(1), 5), CLASSES)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with DetectionStore(path) as s:
        assert len(s.query(sid)[0]) == 5 and s.class_names == CLASSES


def test_viewport_query_matches_brute_force(store: DetectionStore) -> None:
    rng = np.random.default_rng(2)
    per_slide = {}
    for name in ("a", "b"):  # two slides share the coordinate space; a query must not mix them
        sid = store.add_slide(name)
        dets = _random_dets(rng, 1500, extent=5000)
        per_slide[sid] = (store.add_detections(sid, dets, CLASSES), dets.boxes.double().numpy(), dets)
    for _ in range(40):
        sid = int(rng.choice(list(per_slide)))
        ids, boxes, dets = per_slide[sid]
        x0, y0 = rng.uniform(-100, 5000, 2)
        x1, y1 = x0 + rng.uniform(0, 1500), y0 + rng.uniform(0, 1500)
        min_score = float(rng.choice([0.0, 0.5]))
        labels = None if rng.random() < 0.5 else [1, "HSIL"]
        got, got_ids = store.query(sid, bbox=(x0, y0, x1, y1), min_score=min_score, labels=labels)
        hit = (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
        hit &= dets.scores.numpy() >= np.float32(min_score)
        if labels is not None:
            hit &= np.isin(dets.labels.numpy(), [1, 3])
        assert set(got_ids.tolist()) == set(ids[hit].tolist())
        assert len(got) == len(got_ids)


def test_viewport_query_reads_only_the_viewport(store: DetectionStore) -> None:
    # The R-tree must drive the query: a viewport holding a handful of boxes costs far less than reading the
    # slide. A plan that scans the slide's rows and probes the R-tree per row costs the same for both.
    sid = store.add_slide("big")
    store.add_detections(sid, _random_dets(np.random.default_rng(3), 12_000, extent=100_000), CLASSES)
    sql, args = store._query_sql(sid, bbox=(0, 0, 1, 1), min_score=0.0, labels=None)
    plan = [row[-1] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
    assert plan[0].startswith("SCAN r VIRTUAL TABLE INDEX") and "INDEX 1:" not in plan[0], plan

    def best_of(fn, reps: int = 3) -> float:
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    small = best_of(lambda: store.query(sid, bbox=(50_000, 50_000, 51_000, 51_000)))
    whole = best_of(lambda: store.query(sid, bbox=(-1, -1, 1e6, 1e6)))
    assert small * 20 < whole, (small, whole)

    # The tree itself must be spatially sorted: a degenerate tree (all boxes of zero volume) answers a tiny
    # window by visiting nearly every node, as slowly as counting the whole tree.
    def tiny_windows() -> None:
        for x in range(0, 100_000, 5_000):
            store._conn.execute(
                "SELECT COUNT(*) FROM detections_rtree WHERE s0 <= ? AND s1 >= ? AND x0 <= ? AND x1 >= ?"
                " AND y0 <= ? AND y1 >= ?",
                (sid, sid, x + 100, x, x + 100, x),
            ).fetchone()

    def count_all() -> None:
        for _ in range(20):
            store._conn.execute(
                "SELECT COUNT(*) FROM detections_rtree WHERE s0 <= ? AND s1 >= ?", (sid, sid)
            ).fetchone()

    assert best_of(tiny_windows) * 10 < best_of(count_all)


def test_reviews_survive_replace_detections(store: DetectionStore) -> None:
    sid = store.add_slide("s")
    boxes = np.array([[100, 100, 140, 150], [300, 300, 330, 330], [500, 500, 560, 540]], dtype=np.float32)
    first = Detections(boxes=boxes, scores=[0.9, 0.8, 0.7], labels=[3, 1, 2])
    ids = store.add_detections(sid, first, CLASSES)
    store.add_review(int(ids[0]), "accept", reviewer="ann")
    store.add_review(int(ids[1]), "reclassify", new_label="LSIL", reviewer="bob", note="koilocyte")
    store.add_review(int(ids[2]), "reject", reviewer="ann")
    store.add_review(int(ids[0]), "reject", reviewer="bob")  # a later decision on the same cell

    # re-run: cell 0 identical, cell 1 moved by 3 px (new key, same object), cell 2 gone
    moved = boxes[:2] + np.array([[0, 0, 0, 0], [3, 3, 3, 3]], dtype=np.float32)
    new_ids = store.replace_detections(sid, Detections(boxes=moved, scores=[0.95, 0.85], labels=[3, 1]))
    assert set(new_ids.tolist()).isdisjoint(ids.tolist())  # row ids are never reused
    reviews = store.reviews(sid)
    assert len(reviews) == 4  # nothing erased
    by_reviewer = {(r.reviewer, r.decision): r for r in reviews}
    assert by_reviewer[("ann", "accept")].detection_id == new_ids[0]
    assert by_reviewer[("bob", "reject")].detection_id == new_ids[0]
    relinked = by_reviewer[("bob", "reclassify")]
    assert relinked.detection_id == new_ids[1] and relinked.new_label == 2 and relinked.note == "koilocyte"
    assert relinked.box == tuple(float(v) for v in boxes[1])  # snapshot of what the reviewer saw
    orphan = by_reviewer[("ann", "reject")]
    assert orphan.detection_id is None and orphan.model_label == 2

    latest = store.reviews(sid, latest=True)
    assert [r.decision for r in latest if r.detection_id == new_ids[0]] == ["reject"]


def test_replace_is_atomic(store: DetectionStore) -> None:
    sid = store.add_slide("s")
    store.add_detections(sid, _random_dets(np.random.default_rng(4), 10), CLASSES)
    bad = Detections(boxes=[[0, 0, 1, 1]], scores=[0.5], labels=[7])  # label outside the 4 classes
    with pytest.raises(ValueError, match="labels must be in"):
        store.replace_detections(sid, bad)
    assert len(store.query(sid)[0]) == 10


def test_concurrent_reader_sees_only_whole_transactions(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    writer = DetectionStore(path)
    sid = writer.add_slide("s")
    writer.add_detections(sid, Detections.empty(num_classes=4), CLASSES)
    batch, n_batches = 100, 30
    rng = np.random.default_rng(5)
    batches = [_random_dets(rng, batch) for _ in range(n_batches)]
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for d in batches:
                writer.add_detections(sid, d)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    seen = []
    with DetectionStore(path, readonly=True) as reader:
        t = threading.Thread(target=write)
        t.start()
        while t.is_alive():
            seen.append(len(reader.query(sid)[1]))
        t.join()
        seen.append(len(reader.query(sid)[1]))
    writer.close()
    assert not errors, errors
    assert all(n % batch == 0 for n in seen), sorted(set(seen))
    assert seen == sorted(seen) and seen[-1] == batch * n_batches
    assert len(set(seen)) > 2  # the reader really ran while the writer committed


def test_store_survives_a_kill_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    with DetectionStore(path) as s:
        s.add_detections(s.add_slide("s"), Detections.empty(), CLASSES)
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        from cytolt.detect.types import Detections
        from cytolt.store.store import DetectionStore
        s = DetectionStore({str(path)!r})
        rng = np.random.default_rng(0)
        i = 0
        while True:
            xy = rng.uniform(0, 1e4, (500, 2))
            s.add_detections(1, Detections(boxes=np.c_[xy, xy + 20], scores=rng.random(500), labels=np.zeros(500)))
            i += 1
            if i == 3:
                print("writing", flush=True)
        """
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=repo)
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.3)
    finally:
        proc.kill()  # SIGKILL: no cleanup, possibly inside a transaction
        proc.wait()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with DetectionStore(path) as s:
        n = len(s.query(1)[1])
        assert n >= 1500 and n % 500 == 0
        # the R-tree mirrors exactly the committed rows
        assert s._conn.execute("SELECT COUNT(*) FROM detections_rtree").fetchone()[0] == n


def test_add_slide_is_idempotent_and_notices_changed_files(store: DetectionStore) -> None:
    sid = store.add_slide("s.svs", content_hash="h1", label="NILM")
    store.set_slide_status(sid, "done")
    assert store.add_slide("s.svs", content_hash="h1") == sid
    assert store.slide(sid).status == "done" and store.slide(sid).label == "NILM"
    assert store.add_slide("s.svs", content_hash="h2") == sid
    assert store.slide(sid).status == "pending" and store.slide(sid).content_hash == "h2"
    assert store.find_slide("s.svs") == sid and store.find_slide("other.svs") is None


def test_top_k_and_counts(store: DetectionStore) -> None:
    sid = store.add_slide("s")
    scores = [0.9, 0.2, 0.7, 0.6, 0.95, 0.4]
    labels = [3, 3, 3, 1, 0, 3]
    boxes = [[i * 50, 0, i * 50 + 30, 30] for i in range(6)]
    ids = store.add_detections(sid, Detections(boxes=boxes, scores=scores, labels=labels), CLASSES)
    top, top_ids = store.top_k(sid, "HSIL", 2)
    assert top_ids.tolist() == [ids[0], ids[2]]
    torch.testing.assert_close(top.scores, torch.tensor([0.9, 0.7]))
    assert store.counts(sid) == {"NILM": 1, "ASC-US": 1, "LSIL": 0, "HSIL": 4}
    assert store.counts(sid, min_score=0.5) == {"NILM": 1, "ASC-US": 1, "LSIL": 0, "HSIL": 2}
    assert len(store.query(sid, labels=[])[1]) == 0


def test_detection_keys_are_rounded_and_unique() -> None:
    keys = detection_keys(
        np.array([[0.4, 1.6, 10.2, 20.5], [0.4, 1.6, 10.2, 20.5], [0, 2, 10, 20]]), np.array([1, 1, 1])
    )
    assert keys == ["1:0:2:10:20", "1:0:2:10:20#1", "1:0:2:10:20#2"]
    assert detection_keys(np.array([[0, 2, 10, 20]]), np.array([1]), taken={"1:0:2:10:20"}) == [
        "1:0:2:10:20#1"
    ]


def test_adding_to_a_slide_twice_keeps_keys_unique(store: DetectionStore) -> None:
    sid = store.add_slide("s")
    d = Detections(boxes=[[0, 0, 10, 10]], scores=[0.5], labels=[0])
    store.add_detections(sid, d, CLASSES)
    store.add_detections(sid, d)
    assert len(store.columns(sid)["key"]) == len(set(store.columns(sid)["key"])) == 2


def test_errors_are_clear(store: DetectionStore, tmp_path: Path) -> None:
    sid = store.add_slide("s")
    ids = store.add_detections(sid, Detections(boxes=[[0, 0, 5, 5]], scores=[0.5], labels=[0]), CLASSES)
    with pytest.raises(KeyError, match="no slide with id 99"):
        store.add_detections(99, Detections.empty())
    with pytest.raises(ValueError, match="store has classes"):
        store.add_detections(sid, Detections.empty(), ["a", "b"])
    with pytest.raises(ValueError, match="class_scores has 2 columns"):
        store.add_detections(
            sid, Detections(boxes=[[0, 0, 1, 1]], scores=[1], labels=[0], class_scores=[[0, 1]])
        )
    with pytest.raises(ValueError, match="'pending', 'running', 'done', 'failed', 'skipped'"):
        store.set_slide_status(sid, "finished")
    with pytest.raises(ValueError, match="'accept', 'reject', 'reclassify'"):
        store.add_review(int(ids[0]), "maybe", reviewer="x")
    with pytest.raises(ValueError, match="needs new_label"):
        store.add_review(int(ids[0]), "reclassify", reviewer="x")
    with pytest.raises(ValueError, match="unknown class 'SCC'"):
        store.add_review(int(ids[0]), "reclassify", new_label="SCC", reviewer="x")
    with pytest.raises(ValueError, match="reviewer"):
        store.add_review(int(ids[0]), "accept", reviewer="")
    with pytest.raises(KeyError, match="no detection with id"):
        store.add_review(10_000, "accept", reviewer="x")
    with pytest.raises(ValueError, match="bbox must be"):
        store.query(sid, bbox=(10, 0, 0, 10))
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match="junk.sqlite: not a usable cytolt detection store"):
        DetectionStore(junk)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DetectionStore(tmp_path / "missing" / "run.sqlite")


def test_readonly_store_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    with DetectionStore(path) as s:
        s.add_slide("s")
    with DetectionStore(path, readonly=True) as ro:
        assert [r.path for r in ro.slides()] == ["s"]
        with pytest.raises(PermissionError, match="read-only"):
            ro.add_slide("t")
    with pytest.raises(FileNotFoundError):
        DetectionStore(tmp_path / "none.sqlite", readonly=True)


def test_schema_version_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    DetectionStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(ValueError, match="schema version 99"):
        DetectionStore(path)
