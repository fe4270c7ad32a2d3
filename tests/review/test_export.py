"""Tests of cytolt.review.export: a run's detections per slide as QuPath GeoJSON, CSV and COCO results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cytolt.detect.types import Detections
from cytolt.review import RunSlide
from cytolt.review.export import FORMATS, export_run, parse_formats, run_slide_folders
from cytolt.store import DetectionStore, RunFolder, check_qupath_geojson
from cytolt.store.export import ExportSelection
from cytolt.synth import CLASS_COLORS


@pytest.fixture
def reviewed(run: RunSlide) -> dict[str, int]:
    """The demo run with three reviews and two slides that were not screened to the end.

    Returns detection ids by what was done to them: ``accepted``, ``rejected``, ``reclassified`` (to SCC).
    """
    with DetectionStore(run.store_path) as store:
        cols = store.columns(run.slide_id)
        names = store.class_names
        # the best non-SCC detection is reclassified to SCC; the next two are accepted and rejected
        order = [i for i, lab in enumerate(cols["labels"].tolist()) if names[lab] != "scc"]
        ids = {k: int(cols["id"][order[j]]) for j, k in enumerate(("reclassified", "accepted", "rejected"))}
        store.add_review(ids["reclassified"], "reclassify", new_label="scc", reviewer="ann")
        store.add_review(ids["accepted"], "accept", reviewer="ann")
        store.add_review(ids["rejected"], "reject", reviewer="bob")
        store.add_slide(run.stored_path, label="Jane Doe 1970-01-01")  # slide-level text: never exported
        failed = store.add_slide("/patients/jane-doe/failed_slide.svs", label="Jane Doe 1970-01-01")
        store.add_detections(failed, Detections(boxes=[[0, 0, 9, 9]], scores=[0.9], labels=[0]), names)
        store.set_slide_status(failed, "failed", error="could not read /patients/jane-doe/failed_slide.svs")
        store.add_slide("/patients/john-roe/waiting.svs")
    return ids


def _all_text(folder: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(folder.rglob("*")) if p.is_file())


def test_every_format_is_written_per_slide_and_passes_qupath_rules(run: RunSlide, reviewed) -> None:
    done = export_run(run.run_dir, progress=False)
    by_name = {d.slide: d for d in done}
    assert list(by_name) == [run.name, "failed_slide.svs", "waiting.svs"]
    exported = by_name[run.name]
    folder = RunFolder.slide_folders([run.stored_path])[0]
    assert exported.note is None and exported.folder == folder
    assert exported.files == {f: run.run_dir / folder / name for f, name in FORMATS.items()}
    assert "status failed" in by_name["failed_slide.svs"].note and by_name["failed_slide.svs"].files == {}
    assert "status pending" in by_name["waiting.svs"].note
    assert [p.name for p in run.run_dir.iterdir() if p.is_dir()] == [folder]  # none for skipped slides

    with DetectionStore(run.store_path, readonly=True) as store:
        cols = store.columns(run.slide_id)
        names = store.class_names
    doc = json.loads(exported.files["geojson"].read_text())
    check_qupath_geojson(doc)
    assert exported.count == len(doc["features"]) == len(cols["id"])
    # classification: the reviewed class (else the model's) in the colour the run recorded for it
    for f in doc["features"]:
        cls = f["properties"]["classification"]
        assert cls["color"] == list(CLASS_COLORS[cls["name"]])
    scores = [f["properties"]["measurements"]["score"] for f in doc["features"]]
    assert np.allclose(scores, cols["scores"])
    decisions = [f["properties"].get("review", {}).get("decision") for f in doc["features"]]
    assert sorted(d for d in decisions if d) == ["accept", "reclassify", "reject"]
    reclassified = next(
        f for f in doc["features"] if f["properties"].get("review", {}).get("decision") == "reclassify"
    )
    assert reclassified["properties"]["classification"]["name"] == "scc"
    assert reclassified["properties"]["model_class"] != "scc"

    rows = list(csv.DictReader(exported.files["csv"].open()))
    assert [int(r["detection_id"]) for r in rows] == cols["id"].tolist()
    coco = json.loads(exported.files["coco"].read_text())
    assert [r["category_id"] for r in coco] == (cols["labels"] + 1).tolist()
    assert {r["image_id"] for r in coco} == {run.slide_id}
    assert names  # the store has classes, so every category id above is a real one

    text = _all_text(run.run_dir / folder)
    for private in (run.stored_path, run.name, Path(run.name).stem, "jane-doe", "Jane Doe", "patients"):
        assert private not in text


def test_filters_pick_the_same_detections_in_every_file(run: RunSlide, reviewed) -> None:
    def written(selection: ExportSelection) -> list[set[int]]:
        """Detection ids per file (GeoJSON and COCO identified by their boxes)."""
        [done, *_] = export_run(
            run.run_dir, out=run.run_dir.parent / "out", selection=selection, progress=False
        )
        csv_ids = [int(r["detection_id"]) for r in csv.DictReader(done.files["csv"].open())]
        doc = json.loads(done.files["geojson"].read_text())
        check_qupath_geojson(doc)
        geo = {_box_key(np.array(f["geometry"]["coordinates"][0]).min(0).tolist()) for f in doc["features"]}
        coco = {_box_key(r["bbox"][:2]) for r in json.loads(done.files["coco"].read_text())}
        assert done.count == len(csv_ids) == len(doc["features"])
        return [set(csv_ids), {box_to_id[k] for k in geo}, {box_to_id[k] for k in coco}]

    with DetectionStore(run.store_path, readonly=True) as store:
        cols = store.columns(run.slide_id)
        names = store.class_names
    box_to_id = {
        _box_key(b[:2]): int(i) for b, i in zip(cols["boxes"].tolist(), cols["id"].tolist(), strict=True)
    }
    assert len(box_to_id) == len(cols["id"])  # boxes tell detections apart
    model_class = {
        int(i): names[lab] for i, lab in zip(cols["id"].tolist(), cols["labels"].tolist(), strict=True)
    }
    score = dict(zip(cols["id"].tolist(), cols["scores"].tolist(), strict=True))

    high = written(ExportSelection(min_score=0.8))
    assert high == [{i for i, s in score.items() if s >= 0.8}] * 3 and 0 < len(high[0]) < len(score)

    scc = written(ExportSelection(classes={"scc"}))
    expected = {i for i, c in model_class.items() if c == "scc"} | {reviewed["reclassified"]}
    assert scc == [expected] * 3
    was = model_class[reviewed["reclassified"]]
    assert (
        reviewed["reclassified"] not in written(ExportSelection(classes={was}))[0]
    )  # no longer its old class

    assert written(ExportSelection(reviewed_only=True)) == [set(reviewed.values())] * 3
    assert written(ExportSelection(reviewed_only=True, classes={"scc"})) == [{reviewed["reclassified"]}] * 3
    assert not (
        run.run_dir / RunFolder.slide_folders([run.stored_path])[0]
    ).exists()  # --out leaves the run alone


def _box_key(xy: list[float]) -> tuple[float, float]:
    return round(float(xy[0]), 1), round(float(xy[1]), 1)


def test_formats_and_slides_can_be_chosen(run: RunSlide, reviewed) -> None:
    [done] = export_run(run.store_path, formats=("geojson",), slides=[run.name], progress=False)
    assert list(done.files) == ["geojson"] and done.files["geojson"].is_file()
    assert not (done.files["geojson"].parent / FORMATS["csv"]).exists()
    [by_id] = export_run(run.run_dir, formats=("coco",), slides=[run.slide_id], progress=False)
    assert list(by_id.files) == ["coco"]
    with pytest.raises(ValueError, match=r"no slide 'other.svs' in this run; slides are \["):
        export_run(run.run_dir, slides=["other.svs"], progress=False)
    assert parse_formats(["csv,GeoJSON", "csv"]) == ("geojson", "csv")
    with pytest.raises(ValueError, match="unknown export format qpdata; choose from geojson, csv, coco"):
        parse_formats(["geojson,qpdata"])


def test_a_folder_that_is_not_a_run_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{tmp_path}: not a cytolt run folder"):
        export_run(tmp_path, progress=False)


def test_slide_folders_follow_the_reports_of_the_run(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run").create()
    with DetectionStore(run.store_path) as store:
        for path in ("/a/x.svs", "/b/x.svs", "/c/y.svs"):
            store.add_slide(path)
        records = store.slides()
    assert run_slide_folders(run, records) == {1: "x", 2: "x-2", 3: "y"}
    # y.svs's report lies in "y-2" (the folder "y" holds another run's z.svs): the report decides
    for folder, name in (("y", "z.svs"), ("y-2", "y.svs")):
        (run.path / folder).mkdir()
        (run.path / folder / "report.json").write_text(json.dumps({"slide": {"name": name}}))
    assert run_slide_folders(run, records) == {1: "x", 2: "x-2", 3: "y-2"}
