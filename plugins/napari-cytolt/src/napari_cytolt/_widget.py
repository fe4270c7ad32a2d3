"""Review widget: slide summary, class filter, per-class gallery, jump to a cell, decisions into the run's store.

The widget attaches to the detections layer a cytolt run folder opened (its ``metadata["cytolt"]`` is a
:class:`~napari_cytolt._reader.LayerInfo` holding the :class:`~cytolt.review.RunSlide`) and wraps
:mod:`cytolt.review` (queue, summary, thumbnails) and :mod:`cytolt.store` (reviews, exports), which need no
napari. Every decision is written to ``run.sqlite`` at once (``DetectionStore.add_review``: reviewer, UTC
time), so closing napari loses nothing.

Shortcuts (while the napari window is active and the focus is not in a text field): ``a`` accept, ``r``
reject, ``1``-``9`` and ``0`` reclassify to class 1-10 of the store's class list, ``n`` / ``p`` next and
previous cell. They shadow napari's layer shortcuts on the same keys while the widget is open.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QColor, QIcon, QImage, QKeySequence, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QShortcut,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cytolt.io import Slide, SlideLevelArray
from cytolt.review import (
    QueueItem,
    ReviewQueue,
    RunSlide,
    SlideSummary,
    cell_thumbnail,
    class_colors,
    open_run,
    run_params,
    shown_mask,
    slide_summary,
)
from cytolt.store import DetectionStore, Review, RunFolder, to_csv, to_geojson
from napari_cytolt._reader import METADATA_KEY, layer_info, open_slide_quiet, read_run

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer, Points

__all__ = ["ReviewWidget"]

CONTEXT = 4.0  # the view spans this many cell sizes after a jump, so the neighbourhood stays visible
HIGHLIGHT_COLOR = "#00ffff"  # cyan: no class colour uses it
_MARKS = {"accept": "\u2713", "reject": "\u2717", "reclassify": "\u2192"}
_ROLE = Qt.ItemDataRole.UserRole


def _default_reviewer() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # getpass raises when no user name is known (containers)
        return ""


def _role(layer: Layer) -> str | None:
    info = layer_info(layer.metadata)
    return None if info is None else info.role


def _run_folder(layer: Layer) -> RunFolder | None:
    """The run folder of a layer napari-cytolt made for a run, else None."""
    info = layer_info(layer.metadata)
    return None if info is None or info.run is None else info.run.run_folder


def _qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ReviewWidget(QWidget):
    """Dock widget reviewing one slide of a cytolt run; see the module docstring for shortcuts.

    Args:
        napari_viewer: the viewer (napari passes it).
        per_class: cells per class in the gallery and the review queue (top scores).
        thumb_size: gallery thumbnail side in screen pixels.
    """

    def __init__(
        self, napari_viewer: napari.viewer.Viewer, *, per_class: int = 30, thumb_size: int = 96
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.per_class = int(per_class)
        self.thumb_size = int(thumb_size)
        self.run: RunSlide | None = None
        self.store: DetectionStore | None = None
        self.queue: ReviewQueue | None = None
        self.summary: SlideSummary | None = None
        self.points: Points | None = None
        self._slide: Slide | None = None
        self._colors: list[tuple[int, int, int]] = []
        self._thumbs: dict[int, QIcon] = {}
        self._rows: dict[int, int] = {}
        self._labels = np.zeros(0, dtype=np.int64)
        self._scores = np.zeros(0, dtype=np.float32)
        self._build()
        self._bind_keys()
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        # napari holds these callbacks by weak reference and drops them once the widget's Qt object is deleted
        for layer in list(self.viewer.layers):
            self._try_attach(layer)

    # -- layout ------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        root = QVBoxLayout(self)
        top = QHBoxLayout()
        self.open_button = QPushButton("Open run\u2026")
        self.open_button.setToolTip("Open a cytolt run folder (RUN_DIR with run.sqlite)")
        self.open_button.clicked.connect(self._choose_run)
        self.slides = QComboBox()
        self.slides.setToolTip("Slides of this run")
        self.slides.activated.connect(self._on_slide_chosen)
        top.addWidget(self.open_button)
        top.addWidget(self.slides, 1)
        root.addLayout(top)

        self.summary_label = QLabel("Open a cytolt run folder (File > Open Folder, or the button above).")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)
        root.addWidget(self.summary_label)

        self.class_table = QTableWidget(0, 2)
        self.class_table.setHorizontalHeaderLabels(["class (shown)", "cells"])
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.class_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.class_table.itemChanged.connect(lambda _item: self.apply_filter())
        root.addWidget(self.class_table)

        form = QFormLayout()
        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(0.0, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setDecimals(2)
        self.min_score.valueChanged.connect(lambda _v: self.apply_filter())
        self.shown_label = QLabel("")
        score_row = QHBoxLayout()
        score_row.addWidget(self.min_score)
        score_row.addWidget(self.shown_label, 1)
        form.addRow("min score", score_row)
        self.reviewer = QLineEdit(_default_reviewer())
        self.reviewer.setPlaceholderText("your name (recorded with each decision)")
        form.addRow("reviewer", self.reviewer)
        self.gallery_class = QComboBox()
        self.gallery_class.currentIndexChanged.connect(lambda _i: self._fill_gallery())
        form.addRow("gallery", self.gallery_class)
        root.addLayout(form)

        self.gallery = QListWidget()
        self.gallery.setViewMode(QListWidget.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(self.thumb_size, self.thumb_size))
        self.gallery.setGridSize(QSize(self.thumb_size + 14, self.thumb_size + 30))
        self.gallery.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.gallery.setMovement(QListWidget.Movement.Static)
        self.gallery.setUniformItemSizes(True)
        self.gallery.setMinimumHeight(2 * (self.thumb_size + 30) + 8)
        self.gallery.itemClicked.connect(self._on_gallery_click)
        root.addWidget(self.gallery, 1)

        nav = QHBoxLayout()
        self.prev_button = QPushButton("\u25c0 prev (p)")
        self.next_button = QPushButton("next (n) \u25b6")
        self.accept_button = QPushButton("accept (a)")
        self.reject_button = QPushButton("reject (r)")
        self.prev_button.clicked.connect(self.previous_cell)
        self.next_button.clicked.connect(self.next_cell)
        self.accept_button.clicked.connect(self.accept)
        self.reject_button.clicked.connect(self.reject)
        for b in (self.prev_button, self.next_button, self.accept_button, self.reject_button):
            nav.addWidget(b)
        root.addLayout(nav)

        recl = QHBoxLayout()
        self.new_class = QComboBox()
        self.new_class.setToolTip("Reclassify the current cell (keys 1-9, 0 for the tenth class)")
        self.reclassify_button = QPushButton("reclassify")
        self.reclassify_button.clicked.connect(lambda: self.reclassify(self.new_class.currentIndex()))
        recl.addWidget(self.new_class, 1)
        recl.addWidget(self.reclassify_button)
        root.addLayout(recl)

        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m reviewed")
        self.progress.setValue(0)
        root.addWidget(self.progress)

        bottom = QHBoxLayout()
        self.export_button = QPushButton("Export GeoJSON + CSV\u2026")
        self.export_button.clicked.connect(self._choose_export)
        bottom.addWidget(self.export_button)
        root.addLayout(bottom)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        root.addWidget(self.status)
        self._set_enabled(False)

    def _bind_keys(self) -> None:
        keys: list[tuple[str, Callable[[], Any]]] = [
            ("A", self.accept),
            ("R", self.reject),
            ("N", self.next_cell),
            ("P", self.previous_cell),
        ]
        keys += [(str((i + 1) % 10), partial(self.reclassify, i)) for i in range(10)]
        self._shortcuts = []
        for key, slot in keys:
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(slot)
            self._shortcuts.append(shortcut)

    def _set_enabled(self, on: bool) -> None:
        for w in (
            self.prev_button,
            self.next_button,
            self.accept_button,
            self.reject_button,
            self.reclassify_button,
            self.new_class,
            self.export_button,
            self.gallery_class,
            self.min_score,
        ):
            w.setEnabled(on)

    def _say(self, text: str, *, error: bool = False) -> None:
        self.status.setStyleSheet("color: #ff6060;" if error else "")
        self.status.setText(text)

    # -- attaching to a run's layers ---------------------------------------------------------------------------
    def _on_inserted(self, event: Any) -> None:
        self._try_attach(event.value)

    def _try_attach(self, layer: Layer) -> None:
        if _role(layer) != "detections":
            return
        try:
            self.attach(layer)
        except (OSError, ValueError, sqlite3.Error) as exc:  # the run folder moved or its store broke
            self.detach()
            self._say(f"cannot review {layer.name}: {exc}", error=True)

    def _on_removed(self, event: Any) -> None:
        if event.value is self.points:
            self.detach()

    def attach(self, points: Points) -> None:
        """Review the run slide whose detections layer this is (its :class:`LayerInfo` from the reader)."""
        info = layer_info(points.metadata)
        if info is None or info.run is None:
            raise ValueError(f"{points.name}: not a detections layer of a cytolt run folder")
        self.detach()
        # opened again: the run may have changed since the layer was read (a report written meanwhile)
        self.run = open_run(info.run.run_dir, slide=info.run.slide_id)
        try:
            self.store = DetectionStore(self.run.store_path)
            self._say("")
        except (sqlite3.Error, OSError, ValueError) as exc:
            self.store = DetectionStore(self.run.store_path, readonly=True)
            self._say(f"read-only: decisions cannot be saved ({exc})", error=True)
        self.points = points
        self.queue = ReviewQueue(self.store, self.run.slide_id, per_class=self.per_class)
        self.summary = slide_summary(self.run, self.store)
        self._slide = self._find_slide()
        names = self.store.class_names
        self._colors = class_colors(
            names, report_path=self.run.report_path, run_params=run_params(self.store, self.run.slide_id)
        )
        features = points.features
        self._labels = features["class"].cat.codes.to_numpy().astype(np.int64)
        self._scores = features["score"].to_numpy()
        self._rows = {int(d): i for i, d in enumerate(features["id"].to_numpy().tolist())}
        for review in self.store.reviews(self.run.slide_id, latest=True):
            if review.detection_id is not None:
                self._mark_feature(review)
        self._fill_slides()
        self._fill_summary()
        self._fill_classes()
        self.new_class.clear()
        for i, name in enumerate(names):
            key = f"{(i + 1) % 10}  " if i < 10 else "    "
            self.new_class.addItem(self._swatch(i), f"{key}{name}")
        self.gallery_class.blockSignals(True)
        self.gallery_class.clear()
        for name in self.queue.classes:
            self.gallery_class.addItem(
                self._swatch(names.index(name)), f"{name} ({self.summary.counts.get(name, 0)})", name
            )
        self.gallery_class.blockSignals(False)
        self._set_enabled(len(self.queue) > 0)
        if self.store.readonly:
            for w in (self.accept_button, self.reject_button, self.reclassify_button, self.new_class):
                w.setEnabled(False)
        if len(self.queue):
            # resume where the last session stopped: the first cell without a decision
            if self.queue.decision(self.queue.items[0]) is not None:
                self.queue.next_unreviewed()
            index = self.gallery_class.findData(self.queue.current.class_name)
            if index != self.gallery_class.currentIndex():
                self.gallery_class.setCurrentIndex(index)  # fills the gallery through the signal
            else:
                self._fill_gallery()
        self._update_progress()
        self.apply_filter()

    def detach(self) -> None:
        """Forget the current slide (its layers were removed or another slide is opened)."""
        if self.store is not None:
            self.store.close()
        self.run = self.store = self.queue = self.summary = self.points = None
        self._slide = None
        self._thumbs.clear()
        self.gallery.clear()
        self._set_enabled(False)

    def _find_slide(self) -> Slide | None:
        for layer in self.viewer.layers:
            if _role(layer) == "slide" and _run_folder(layer) == self.run.run_folder:
                level = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
                if isinstance(level, SlideLevelArray):
                    return level.slide
        return (
            None if self.run is None or self.run.slide_path is None else open_slide_quiet(self.run.slide_path)
        )

    # -- summary, classes, filter ------------------------------------------------------------------------------
    def _swatch(self, label: int) -> QIcon:
        pix = QPixmap(12, 12)
        r, g, b = self._colors[label] if label < len(self._colors) else (255, 255, 255)
        pix.fill(QColor(r, g, b))
        return QIcon(pix)

    def _fill_slides(self) -> None:
        self.slides.blockSignals(True)
        self.slides.clear()
        for rec in self.store.slides():
            self.slides.addItem(f"{Path(rec.path).name} [{rec.status}]", rec.id)
            if rec.id == self.run.slide_id:
                self.slides.setCurrentIndex(self.slides.count() - 1)
        self.slides.blockSignals(False)

    def _fill_summary(self) -> None:
        s = self.summary
        source = {"report": "report.json", "scorer": "run's scorer on stored cells", "store": "store counts"}[
            s.source
        ]
        score = "n/a" if s.score is None else f"{s.score:.3f}"
        call = s.call or "n/a"
        reason = f"<br><small>{s.reason}</small>" if s.reason else ""
        self.summary_label.setText(
            f"<b>{s.name}</b><br>slide score <b>{score}</b> &middot; call <b>{call}</b> &middot; "
            f"{s.total} cells{reason}<br><small>from {source}</small>"
        )

    def _fill_classes(self) -> None:
        names = self.store.class_names
        self.class_table.blockSignals(True)
        self.class_table.setRowCount(len(names))
        for i, name in enumerate(names):
            item = QTableWidgetItem(self._swatch(i), name)
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Checked)
            self.class_table.setItem(i, 0, item)
            count = QTableWidgetItem(str(self.summary.counts.get(name, 0)))
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.class_table.setItem(i, 1, count)
        self.class_table.resizeRowsToContents()
        self.class_table.blockSignals(False)

    def shown_classes(self) -> list[int]:
        """Labels whose box in the class table is checked."""
        return [
            i
            for i in range(self.class_table.rowCount())
            if self.class_table.item(i, 0).checkState() == Qt.CheckState.Checked
        ]

    def set_class_shown(self, name: str, shown: bool) -> None:
        """Tick or untick a class in the filter table (the filter applies at once)."""
        row = self.store.class_names.index(name)
        self.class_table.item(row, 0).setCheckState(
            Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked
        )

    def apply_filter(self) -> None:
        """Show the detections of the ticked classes scoring at least ``min score`` (``layer.shown``)."""
        if self.points is None:
            return
        mask = shown_mask(
            self._labels, self._scores, classes=self.shown_classes(), min_score=self.min_score.value()
        )
        self.points.shown = mask
        self.shown_label.setText(f"{int(mask.sum()):,} of {len(mask):,} shown")

    # -- gallery and navigation --------------------------------------------------------------------------------
    def _thumb(self, item: QueueItem) -> QIcon:
        icon = self._thumbs.get(item.detection_id)
        if icon is None:
            if self._slide is None:
                icon = QIcon()
            else:
                rgb = cell_thumbnail(
                    self._slide, item.box, size=self.thumb_size, color=self._colors[item.label]
                )
                icon = QIcon(QPixmap.fromImage(_qimage(rgb)))
            self._thumbs[item.detection_id] = icon
        return icon

    def _item_text(self, item: QueueItem) -> str:
        review = self.queue.decision(item)
        text = f"{item.rank + 1}. {item.score:.2f}"
        if review is not None:
            text += f" {_MARKS[review.decision]}"
            if review.decision == "reclassify" and review.new_label is not None:
                text += self.store.class_names[review.new_label][:6]
        return text

    def _fill_gallery(self) -> None:
        self.gallery.clear()
        if self.queue is None or self.gallery_class.currentIndex() < 0:
            return
        name = self.gallery_class.currentData()
        for item in self.queue.items_of(name):
            w = QListWidgetItem(self._thumb(item), self._item_text(item))
            w.setData(_ROLE, item.detection_id)
            w.setToolTip(f"{name} #{item.rank + 1}, score {item.score:.3f}, id {item.detection_id}")
            self.gallery.addItem(w)
        current = self.queue.current
        if current is not None and current.class_name == name:
            self.gallery.setCurrentRow(current.rank)

    def gallery_ids(self) -> list[int]:
        """Store ids of the cells the gallery shows, in order."""
        return [self.gallery.item(i).data(_ROLE) for i in range(self.gallery.count())]

    def _on_gallery_click(self, w: QListWidgetItem) -> None:
        self.jump_to(self.queue.position(int(w.data(_ROLE))))

    def jump_to(self, index: int) -> QueueItem | None:
        """Make queue item ``index`` current: the gallery shows its class, the camera centres and zooms on it."""
        if self.queue is None or not len(self.queue):
            return None
        item = self.queue.go(index)
        if self.gallery_class.currentData() != item.class_name:
            self.gallery_class.setCurrentIndex(self.gallery_class.findData(item.class_name))
        self.gallery.setCurrentRow(item.rank)
        self._center_on(item)
        self._highlight(item)
        self._update_progress()
        return item

    def next_cell(self) -> QueueItem | None:
        return None if self.queue is None else self.jump_to(self.queue.index + 1)

    def previous_cell(self) -> QueueItem | None:
        return None if self.queue is None else self.jump_to(self.queue.index - 1)

    def _center_on(self, item: QueueItem) -> None:
        x0, y0, x1, y1 = item.box
        centre = np.array([(y0 + y1) / 2 - 0.5, (x0 + x1) / 2 - 0.5])
        world = np.asarray(self.points.data_to_world(centre), dtype=float)
        self.viewer.camera.center = tuple(world[-2:])
        side = max(x1 - x0, y1 - y0, 8.0) * abs(float(self.points.scale[-1]))
        h, w = self.viewer.canvas.size
        self.viewer.camera.zoom = max(min(h, w), 64) / (CONTEXT * side)

    def _highlight(self, item: QueueItem) -> None:
        x0, y0, x1, y1 = item.box
        rect = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float) - 0.5
        width = max(2.0, 0.03 * max(x1 - x0, y1 - y0))
        layer = next((lyr for lyr in self.viewer.layers if _role(lyr) == "highlight"), None)
        if layer is None:
            active = self.viewer.layers.selection.active
            info = dataclasses.replace(layer_info(self.points.metadata), role="highlight")
            layer = self.viewer.add_shapes(
                [rect],
                shape_type="rectangle",
                edge_color=HIGHLIGHT_COLOR,
                face_color="transparent",
                edge_width=width,
                scale=self.points.scale,
                units=self.points.units,
                name=f"{self.run.name} current cell",
                metadata={METADATA_KEY: info},
            )
            if active is not None:
                self.viewer.layers.selection.active = (
                    active  # keep the user's layer (and its controls) active
                )
        else:
            layer.data = [rect]
            layer.edge_width = [width]
            layer.edge_color = [HIGHLIGHT_COLOR]

    # -- decisions ---------------------------------------------------------------------------------------------
    def accept(self) -> Review | None:
        """Accept the current cell (model class right), save, go to the next cell."""
        return self.decide("accept")

    def reject(self) -> Review | None:
        """Reject the current cell (not a cell of its class / not abnormal), save, go to the next cell."""
        return self.decide("reject")

    def reclassify(self, label: int) -> Review | None:
        """Reclassify the current cell to class ``label`` (index in the store's classes), save, go on."""
        if self.store is None or not 0 <= label < len(self.store.class_names):
            return None
        return self.decide("reclassify", new_label=int(label))

    def decide(self, decision: str, *, new_label: int | None = None) -> Review | None:
        """Write a decision on the current cell to the store now; returns the review (None when refused)."""
        if self.queue is None or self.queue.current is None:
            return None
        reviewer = self.reviewer.text().strip()
        if not reviewer:
            self._say("type your name in 'reviewer' first: every decision records who made it", error=True)
            return None
        item = self.queue.current
        try:
            review = self.queue.decide(decision, reviewer=reviewer, new_label=new_label)
        except (sqlite3.Error, PermissionError, ValueError, KeyError) as exc:
            self._say(f"decision not saved: {exc}", error=True)
            return None
        self._mark_feature(review)
        if self.gallery_class.currentData() == item.class_name and item.rank < self.gallery.count():
            self.gallery.item(item.rank).setText(self._item_text(item))
        self._say(f"saved: {item.class_name} #{item.rank + 1} {decision} by {reviewer}")
        self._update_progress()
        self.next_cell()
        return review

    def _mark_feature(self, review: Review) -> None:
        row = self._rows.get(int(review.detection_id))
        if row is not None and self.points is not None:
            self.points.features.loc[row, "review"] = review.decision

    def _update_progress(self) -> None:
        done, total = (0, 0) if self.queue is None else self.queue.progress
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done} / {total} reviewed")

    # -- slides, runs, export ----------------------------------------------------------------------------------
    def _on_slide_chosen(self, index: int) -> None:
        slide_id = self.slides.itemData(index)
        if self.run is not None and slide_id is not None and slide_id != self.run.slide_id:
            self.open_slide(int(slide_id))

    def open_slide(self, slide_id: int) -> None:
        """Replace the shown slide by another slide of the same run (its image and detections layers)."""
        from napari.layers import Layer

        run = self.run.run_folder
        try:
            layers = read_run(run.path, slide=slide_id)
        except (OSError, ValueError) as exc:
            self._say(str(exc), error=True)
            return
        for layer in [lyr for lyr in self.viewer.layers if _run_folder(lyr) == run]:
            self.viewer.layers.remove(layer)
        for data, kwargs, kind in layers:
            self.viewer.add_layer(Layer.create(data, kwargs, kind))

    def _choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a cytolt run folder")
        if folder:
            self.viewer.open(folder, plugin="napari-cytolt")

    def export(self, folder: str | os.PathLike[str] | None = None) -> list[Path]:
        """Write the slide's detections with their reviews as QuPath GeoJSON and CSV; returns the two paths.

        Default folder: the slide's report folder in the run, else the run folder.
        """
        if self.run is None:
            return []
        default = self.run.report_path.parent if self.run.report_path is not None else self.run.run_dir
        out = Path(folder) if folder is not None else default
        stem = Path(self.run.name).stem
        geojson, csv = out / f"{stem}.reviewed.geojson", out / f"{stem}.reviewed.csv"
        to_geojson(self.store, self.run.slide_id, geojson)
        to_csv(self.store, self.run.slide_id, csv)
        self._say(f"exported {geojson.name} and {csv.name} to {out}")
        return [geojson, csv]

    def _choose_export(self) -> None:
        default = self.run.report_path.parent if self.run.report_path is not None else self.run.run_dir
        folder = QFileDialog.getExistingDirectory(self, "Export reviewed detections to", str(default))
        if folder:
            self.export(folder)
