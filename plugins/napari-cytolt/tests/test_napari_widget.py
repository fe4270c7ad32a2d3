"""napari_cytolt._widget.ReviewWidget in a real viewer under Xvfb: summary, gallery, jumps, decisions, export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from napari_cytolt._reader import layer_info

from cytolt import bethesda
from cytolt.demo_run import make_demo_run
from cytolt.store import DetectionStore, check_qupath_geojson

pytestmark = pytest.mark.napari

DOCS_IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"


def _open(make_napari_viewer, run, **kwargs):
    """A viewer with the run opened through the plugin's reader and its widget docked (Plugins menu path)."""
    from napari_cytolt._widget import ReviewWidget

    viewer = make_napari_viewer(**kwargs)
    layers = viewer.open(str(run.run_dir), plugin="napari-cytolt")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cytolt", "Review detections")
    assert isinstance(widget, ReviewWidget)
    assert getattr(widget.viewer, "__wrapped__", None) is viewer  # napari hands plugins a public-only proxy
    return viewer, layers, widget


def test_viewer_opens_a_slide_as_a_multiscale_layer_in_microns(
    make_napari_viewer, demo_run, openslide_fixtures
):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(demo_run.slide_path), plugin="napari-cytolt")
    assert layer.multiscale and layer.rgb
    assert len(layer.data) == 2 and layer.data.shapes[0] == (1536, 2048, 3)
    assert tuple(layer.scale) == (0.25, 0.25)
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    # the world extent is the slide's physical size: 2048 px x 0.25 um = 512 um wide
    assert np.isclose(viewer.layers.extent.world[1][-1] - viewer.layers.extent.world[0][-1], 512, atol=0.5)
    # a real Aperio file with a single level opens as a one-level pyramid at its own mpp (0.499 um)
    [svs] = viewer.open(str(openslide_fixtures / "small.svs"), plugin="napari-cytolt")
    assert svs.multiscale and svs.data.shapes == ((16, 16, 3),) and np.allclose(svs.scale, 0.499)


def test_widget_lists_classes_and_cells_of_the_run(make_napari_viewer, demo_run):
    viewer, layers, widget = _open(make_napari_viewer, demo_run)
    image, points = layers
    assert image.multiscale and len(points.data) == len(points.features)
    with DetectionStore(demo_run.store_path, readonly=True) as store:
        names, counts = store.class_names, store.counts(demo_run.slide_id)
        gallery_class = widget.gallery_class.currentData()
        _, top = store.top_k(demo_run.slide_id, gallery_class, widget.per_class)
    listed = [widget.gallery_class.itemData(i) for i in range(widget.gallery_class.count())]
    assert listed == [n for n in bethesda.review_order(names) if counts[n]]  # most severe abnormal first
    assert gallery_class == listed[0]
    assert widget.gallery_ids() == top.tolist()
    table = {
        widget.class_table.item(i, 0).text(): int(widget.class_table.item(i, 1).text())
        for i in range(len(names))
    }
    assert table == counts
    assert "HSIL+" in widget.summary_label.text()  # the run's scorer calls the demo slide HSIL+
    assert widget.progress.value() == 0 and widget.progress.maximum() == len(widget.queue)


def test_widget_opened_first_attaches_to_the_sample_run_and_lets_go_of_it(
    make_napari_viewer, tmp_path, monkeypatch, qtbot
):
    import napari_cytolt._sample_data as sample_data

    monkeypatch.setenv("CYTOLT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sample_data, "SAMPLE_SIZE", (1024, 768))  # the real sample is 8192 x 6144
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cytolt", "Review detections")
    assert widget.queue is None and not widget.accept_button.isEnabled()
    viewer.open_sample("napari-cytolt", "hsil_run")  # File > Open Sample > cytolt
    assert [layer._type_string for layer in viewer.layers] == ["image", "points"]
    assert widget.run.run_dir == sample_data.sample_cache_dir() / "run" and len(widget.queue) > 0
    assert widget.accept_button.isEnabled()
    viewer.layers.remove(widget.points)
    assert widget.queue is None and widget.gallery.count() == 0

    # once the dock is deleted, the widget no longer listens to the viewer
    from qtpy import sip

    def listening() -> bool:
        return any("ReviewWidget" in repr(cb) for cb in viewer.layers.events.inserted.callbacks)

    assert listening()
    viewer.window.remove_dock_widget("all")
    widget.deleteLater()
    qtbot.waitUntil(lambda: sip.isdeleted(widget))
    viewer.open_sample("napari-cytolt", "hsil_run")  # no error from the deleted widget ...
    assert not listening()  # ... napari dropped its callbacks


def test_switching_to_another_slide_of_the_run(make_napari_viewer, demo_run, tmp_path):
    second = make_demo_run(
        demo_run.run_dir, size=(512, 512), seed=7, label="LSIL", slide_dir=tmp_path / "slides"
    )
    viewer, _, widget = _open(make_napari_viewer, demo_run)
    assert widget.slides.count() == 2
    widget.open_slide(second.slide_id)
    assert widget.run.slide_id == second.slide_id and widget.run.name == second.name
    roles = sorted(layer_info(lyr.metadata).role for lyr in viewer.layers)
    assert roles == ["detections", "slide"]  # the first slide's layers are gone
    assert viewer.layers[0].data.shapes[0] == (512, 512, 3)
    assert widget.slides.currentData() == second.slide_id


def test_filter_hides_classes_and_low_scores(make_napari_viewer, demo_run):
    _, (_, points), widget = _open(make_napari_viewer, demo_run)
    labels = points.features["class"].cat.codes.to_numpy()
    scores = points.features["score"].to_numpy()
    assert points.shown.all()
    widget.set_class_shown("hsil", False)
    hsil = points.features["class"].cat.categories.get_loc("hsil")
    assert np.array_equal(points.shown, labels != hsil)
    widget.min_score.setValue(0.5)
    assert np.array_equal(points.shown, (labels != hsil) & (scores >= 0.5))
    assert widget.shown_label.text().startswith(f"{int(points.shown.sum())} of")


def test_a_layer_whose_run_folder_is_gone_is_reported_not_raised(make_napari_viewer, demo_run):
    import shutil

    from napari_cytolt._widget import ReviewWidget

    viewer = make_napari_viewer()
    viewer.open(str(demo_run.run_dir), plugin="napari-cytolt")
    shutil.rmtree(demo_run.run_dir)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.queue is None and not widget.accept_button.isEnabled()
    assert "cannot review" in widget.status.text() and "not a cytolt run folder" in widget.status.text()


def test_jumping_centres_the_camera_on_the_cell(make_napari_viewer, demo_run, qtbot):
    viewer, (_, points), widget = _open(make_napari_viewer, demo_run)
    for index in (3, 0, len(widget.queue) - 1):
        item = widget.jump_to(index)
        x0, y0, x1, y1 = item.box
        centre_um = np.array([(y0 + y1) / 2 - 0.5, (x0 + x1) / 2 - 0.5]) * 0.25
        assert np.allclose(viewer.camera.center[-2:], centre_um, atol=1e-6)
        # zoomed so that the cell spans a quarter of the smaller canvas side
        side_um = max(x1 - x0, y1 - y0) * 0.25
        assert np.isclose(viewer.camera.zoom * side_um, min(viewer.canvas.size) / 4, rtol=1e-3)
        assert widget.gallery_class.currentData() == item.class_name
        assert widget.gallery.currentRow() == item.rank
        [highlight] = [lyr for lyr in viewer.layers if layer_info(lyr.metadata).role == "highlight"]
        corners = highlight.data[0] + 0.5
        assert np.allclose(corners.min(axis=0), (y0, x0), atol=1e-3)
        assert np.allclose(corners.max(axis=0), (y1, x1), atol=1e-3)
    # clicking a thumbnail jumps to that cell
    sizes = [
        len(widget.queue.items_of(widget.gallery_class.itemData(i)))
        for i in range(widget.gallery_class.count())
    ]
    widget.gallery_class.setCurrentIndex(int(np.argmax(sizes)))
    target = widget.gallery.item(2)
    rect = widget.gallery.visualItemRect(target)
    qtbot.mouseClick(widget.gallery.viewport(), 1, pos=rect.center())
    assert widget.queue.current.detection_id == target.data(256)
    assert (
        viewer.layers.selection.active is not None and viewer.layers.selection.active.name != "current cell"
    )


def test_decisions_land_in_the_store_and_survive_reopening(make_napari_viewer, demo_run):
    viewer, _, widget = _open(make_napari_viewer, demo_run)
    widget.reviewer.setText("ann")
    first = widget.queue.current
    assert widget.accept().decision == "accept"
    second = widget.queue.current
    assert second is not first  # a decision moves on to the next cell
    assert widget.reclassify(7).new_label == 7
    third = widget.queue.current
    widget.reviewer.setText("")
    assert widget.reject() is None and "reviewer" in widget.status.text()  # nobody to record: refused
    widget.reviewer.setText("bob")
    widget.previous_cell()
    assert widget.reject().reviewer == "bob"
    assert widget.progress.value() == 2
    widget.gallery_class.setCurrentIndex(widget.gallery_class.findData(first.class_name))
    assert widget.gallery.item(first.rank).text().endswith("\u2713")  # the gallery marks decided cells
    row = int(np.flatnonzero(viewer.layers[1].features["id"].to_numpy() == first.detection_id)[0])
    assert viewer.layers[1].features.loc[row, "review"] == "accept"
    viewer.close()

    # what a later session (another process) sees
    with DetectionStore(demo_run.store_path, readonly=True) as store:
        latest = {r.detection_id: r for r in store.reviews(demo_run.slide_id, latest=True)}
    assert latest[first.detection_id].decision == "accept"
    assert latest[first.detection_id].reviewer == "ann"
    assert (latest[second.detection_id].decision, latest[second.detection_id].reviewer) == ("reject", "bob")
    assert third.detection_id not in latest
    _, _, again = _open(make_napari_viewer, demo_run)
    assert again.progress.value() == 2
    assert again.queue.current.detection_id == third.detection_id  # resumes at the first undecided cell


def test_keyboard_shortcuts_decide_and_move(make_napari_viewer, demo_run, qtbot):
    from qtpy.QtCore import Qt

    viewer, _, widget = _open(make_napari_viewer, demo_run, show=True)
    widget.reviewer.setText("kbd")
    window = viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=3000)
    canvas = viewer.window._qt_viewer.canvas.native
    start = widget.queue.index
    qtbot.keyClick(canvas, Qt.Key.Key_N)
    assert widget.queue.index == start + 1
    qtbot.keyClick(canvas, Qt.Key.Key_P)
    assert widget.queue.index == start
    item = widget.queue.current
    qtbot.keyClick(canvas, Qt.Key.Key_A)
    qtbot.keyClick(canvas, Qt.Key.Key_9)  # class 9 of the store: hsil
    with DetectionStore(demo_run.store_path, readonly=True) as store:
        reviews = store.reviews(demo_run.slide_id)
    assert [(r.decision, r.new_label, r.reviewer) for r in reviews] == [
        ("accept", None, "kbd"),
        ("reclassify", 8, "kbd"),
    ]
    assert reviews[0].detection_key and widget.queue.decision(item).decision == "accept"
    # typing in the reviewer field types letters, it does not decide
    widget.reviewer.setFocus()
    qtbot.keyClick(widget.reviewer, Qt.Key.Key_A)
    assert widget.reviewer.text().endswith("a") and len(widget.queue.store.reviews(demo_run.slide_id)) == 2


def test_export_writes_qupath_geojson_and_csv_with_reviews(make_napari_viewer, demo_run, tmp_path):
    _, _, widget = _open(make_napari_viewer, demo_run)
    widget.reviewer.setText("ann")
    rejected = widget.queue.current
    widget.reject()
    geojson, csv = widget.export(tmp_path)
    doc = json.loads(geojson.read_text())
    check_qupath_geojson(doc)
    assert len(doc["features"]) == len(widget.points.data)
    reviewed = [f for f in doc["features"] if "review" in f["properties"]]
    assert [f["properties"]["review"]["decision"] for f in reviewed] == ["reject"]
    assert reviewed[0]["properties"]["measurements"]["score"] == pytest.approx(rejected.score, abs=1e-6)
    lines = csv.read_text().splitlines()
    assert len(lines) == 1 + len(widget.points.data)
    assert sum(",reject," in line for line in lines) == 1


def test_screenshot_shows_slide_boxes_and_gallery(make_napari_viewer, demo_run, tmp_path, qtbot):
    """Writes docs/images/napari_review.png when CYTOLT_WRITE_DOCS=1 (else a temporary file)."""
    viewer, _, widget = _open(make_napari_viewer, demo_run, show=True)
    viewer.window._qt_window.resize(1400, 900)
    widget.reviewer.setText("ann")
    hsil = widget.queue.items_of("hsil")
    widget.jump_to(widget.queue.position(hsil[0].detection_id))
    widget.accept()
    widget.reject()
    widget.reclassify(7)  # lsil
    # then a cell well inside the slide, so its neighbourhood fills the canvas
    width, height = 2048, 1536
    inner = max(hsil[3:], key=lambda it: min(it.box[0], it.box[1], width - it.box[2], height - it.box[3]))
    widget.jump_to(widget.queue.position(inner.detection_id))
    viewer.camera.zoom /= 2.5  # show several boxes around the current cell
    viewer.canvas.overlays.scale_bar.visible = True
    qtbot.wait(500)  # let the dock lay out and the multiscale image load the new view (black until then)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.shape[0] >= 600 and shot.shape[1] >= canvas.shape[1] + 300  # the window with the review dock
    # a drawn canvas: slide pixels (bright glass) and coloured boxes, not a black window
    rgb = canvas[..., :3].astype(int)
    assert (rgb.min(axis=-1) > 180).mean() > 0.3  # glass
    assert ((rgb.max(axis=-1) - rgb.min(axis=-1)) > 120).mean() > 0.002  # saturated box borders
    out = DOCS_IMAGES if os.environ.get("CYTOLT_WRITE_DOCS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    from skimage.io import imsave

    imsave(out / "napari_review.png", shot[..., :3], check_contrast=False)
    assert (out / "napari_review.png").stat().st_size > 10_000
