"""Reviews become training data (``cytolt dataset from-review RUN``).

A cytotechnologist's decisions on a screening run's detections are the labels a long-tailed product lacks most:
every accepted rare cell is a positive, every reclassified cell a corrected label, every rejected false positive
a hard negative. This module turns a run's latest reviews into a COCO + LVIS training set in the layout of
:func:`cytolt.datasets.build.build_dataset`, for ``cytolt train CONFIG --data-root OUT`` with ``load_from`` the
run's model folder (fine-tuning).

Rules, per slide of the run with reviews:

- accept: a box of the model's class; reclassify: a box of the reviewed class; reject: a patch is cut around the
  detection (a hard negative) and its box is no instance.
- Patches of ``size`` px at ``mpp`` um/px cover every reviewed detection
  (:func:`~cytolt.datasets.patches.cover_windows`).
- Unreviewed detections inside a patch: the reviewer did not look at them, so they are neither negatives nor
  certain positives. Those scoring at least ``keep_unreviewed`` are kept as boxes of the model's class (the
  model's own confident calls, counted in the summary as ``unreviewed_kept``); the rest are left out.
- LVIS fields: nothing is exhaustive (only what was reviewed is known): a patch's ``neg_category_ids`` are the
  classes of its rejected detections that it holds no box of; every class it holds is not exhaustive.
- Slides, never patches, are split (:func:`~cytolt.datasets.split.split_slides`), seeded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cytolt import __version__
from cytolt.datasets.build import patch_records, write_coco_split, write_image
from cytolt.datasets.coco import AnnotationError, check_splits, class_table
from cytolt.datasets.patches import Patch, cover_windows, read_patch, window_instances
from cytolt.datasets.split import SPLIT_NAMES, check_fractions, split_slides
from cytolt.io import open_slide
from cytolt.store import DetectionStore, RunFolder

__all__ = ["KEEP_UNREVIEWED", "ReviewBoxes", "ReviewDataset", "review_boxes", "review_dataset"]

# An unreviewed detection at or above this score inside a reviewed patch is kept as the model said (see rules).
KEEP_UNREVIEWED = 0.5
HARD_NEGATIVE = -1  # extract_patches' label for "cover with a patch, do not label"


@dataclass(frozen=True)
class ReviewBoxes:
    """One slide's boxes for training: ``boxes`` (N, 4) xyxy level-0 px, ``labels`` (N,) training labels (-1: a
    hard negative), ``model_labels`` (N,) what the model called each, ``reviewed`` (N,) bool (False: an
    unreviewed detection kept as the model said), and the decision counts."""

    path: Path
    mpp: tuple[float, float] | None
    boxes: np.ndarray
    labels: np.ndarray
    model_labels: np.ndarray
    reviewed: np.ndarray
    decisions: dict[str, int]


def review_boxes(
    store: DetectionStore, slide_id: int, *, keep_unreviewed: float = KEEP_UNREVIEWED
) -> ReviewBoxes:
    """The training boxes of one slide from its latest reviews (module rules)."""
    record = store.slide(slide_id)
    cols = store.columns(slide_id)
    latest = {r.detection_key: r for r in store.reviews(slide_id, latest=True)}
    boxes, labels, model_labels, reviewed = [], [], [], []
    decisions = {"accept": 0, "reclassify": 0, "reject": 0, "unreviewed_kept": 0}
    for i, key in enumerate(cols["key"]):
        review = latest.get(key)
        if review is None:
            if float(cols["scores"][i]) < keep_unreviewed:
                continue
            label, decision = int(cols["labels"][i]), "unreviewed_kept"
        elif review.decision == "reject":
            label, decision = HARD_NEGATIVE, "reject"
        elif review.decision == "reclassify" and review.new_label is not None:
            label, decision = int(review.new_label), "reclassify"
        else:
            label, decision = int(cols["labels"][i]), "accept"
        boxes.append(cols["boxes"][i])
        labels.append(label)
        model_labels.append(int(cols["labels"][i]))
        reviewed.append(review is not None)
        decisions[decision] += 1
    # orphaned reviews (their detection is gone after a re-screen) keep the box they were made on
    for review in latest.values():
        if review.detection_id is None:
            label = review.model_label
            if review.decision == "reject":
                label = HARD_NEGATIVE
            elif review.decision == "reclassify" and review.new_label is not None:
                label = review.new_label
            boxes.append(np.asarray(review.box, np.float64))
            labels.append(int(label))
            model_labels.append(int(review.model_label))
            reviewed.append(True)
            decisions["reject" if review.decision == "reject" else review.decision] += 1
    return ReviewBoxes(
        path=Path(record.path),
        mpp=record.mpp,
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        model_labels=np.asarray(model_labels, np.int64),
        reviewed=np.asarray(reviewed, bool),
        decisions=decisions,
    )


@dataclass(frozen=True)
class ReviewDataset:
    """What :func:`review_dataset` wrote: split files, slides per split, patches, decisions used."""

    out_dir: Path
    classes: tuple[str, ...]
    annotation_files: dict[str, Path]
    splits: dict[str, tuple[str, ...]]
    images: dict[str, int]
    hard_negative_images: dict[str, int]
    decisions: dict[str, int]
    mpp: float
    size: int

    def format(self) -> str:
        lines = [f"dataset from reviews: {self.out_dir} ({self.size} px patches at {self.mpp:g} um/px)"]
        d = self.decisions
        lines.append(
            f"decisions used: {d['accept']} accepted, {d['reclassify']} reclassified, {d['reject']} rejected "
            f"(hard negatives); {d['unreviewed_kept']} unreviewed detections kept as the model said"
        )
        for s, slides in self.splits.items():
            lines.append(
                f"{s}: {len(slides)} slide(s), {self.images[s]} patches "
                f"({self.hard_negative_images[s]} with no box: hard negatives only) -> {self.annotation_files[s]}"
            )
        return "\n".join(lines)


def _negatives(patch: Patch, rb: ReviewBoxes) -> list[int]:
    """Category ids of the patch's rejected detections' classes that the patch holds no box of."""
    rejected = (rb.labels == HARD_NEGATIVE) & _inside_window(patch.window, rb.boxes)
    held = {int(c) for c in patch.labels}
    return sorted({int(c) + 1 for c in rb.model_labels[rejected] if int(c) not in held})


def review_dataset(
    run_dir: str | Path,
    out: str | Path,
    *,
    mpp: float | None = None,
    size: int = 512,
    splits: Sequence[float] = (0.8, 0.2, 0.0),
    seed: int = 0,
    keep_unreviewed: float = KEEP_UNREVIEWED,
    image_format: str = "jpg",
    progress: bool = False,
) -> ReviewDataset:
    """Write a training set from the reviews of the run in ``run_dir`` (module rules) into ``out``.

    Args:
        mpp: microns per pixel of the patches; None: the run's read mpp (what its model saw, from the reports).
        splits: (train, val, test) fractions of the reviewed slides.
    Raises:
        ValueError: ``run_dir`` is no run, or it holds no reviews; AnnotationError: a split without boxes.
    """
    found = RunFolder.locate(run_dir)
    if found is None:
        raise ValueError(f"{run_dir}: not a cytolt run folder (no {RunFolder.STORE} in it)")
    run = found[0]
    out = Path(out)
    if (out / "images").is_dir() and any((out / "images").iterdir()):
        raise FileExistsError(f"{out} already holds a dataset (images/ is not empty); choose a new folder")
    fractions = check_fractions(splits)
    with DetectionStore(run.store_path, readonly=True) as store:
        classes = tuple(store.class_names)
        per_slide = {}
        for record in store.slides():
            if not store.reviews(record.id, latest=True):
                continue
            rb = review_boxes(store, record.id, keep_unreviewed=keep_unreviewed)
            per_slide[rb.path.name] = rb
    if not per_slide:
        raise ValueError(f"{run.store_path}: no reviewed detections in this run; review in napari first")
    mpp = mpp if mpp is not None else _run_read_mpp(run)
    decisions = {
        k: sum(rb.decisions[k] for rb in per_slide.values()) for k in next(iter(per_slide.values())).decisions
    }
    labelled = {name: [int(v) for v in rb.labels if v >= 0] for name, rb in per_slide.items()}
    assignment = split_slides(labelled, fractions, seed=seed)
    active = [s for s, f in zip(SPLIT_NAMES, fractions, strict=True) if f > 0]
    # Everything knowable before cutting patches is checked first: each slide file is found, each split has boxes.
    paths = {name: run.locate_slide(rb.path) for name, rb in per_slide.items()}
    missing = [str(per_slide[name].path) for name, path in paths.items() if path is None]
    if missing:
        raise FileNotFoundError(f"slides of {run.path} not found (moved?): {missing}")
    for s in active:
        if not any(labelled[name] for name in assignment[s]):
            raise AnnotationError(
                out / f"annotations_{s}.json", "", f"empty split: slides {assignment[s]} give no box"
            )
    (out / "images").mkdir(parents=True, exist_ok=True)
    records: dict[str, tuple[list, list]] = {s: ([], []) for s in active}
    negatives_only = dict.fromkeys(active, 0)
    image_id = annotation_id = 0
    bar = tqdm(desc="patches", unit="patch", disable=not progress)
    for s in active:
        for name in assignment[s]:
            rb = per_slide[name]
            with open_slide(paths[name], mpp=rb.mpp) as slide:
                for n, window in enumerate(
                    cover_windows(slide, rb.boxes[rb.reviewed], mpp_out=mpp, size=size)
                ):
                    index, boxes, whole, cut = window_instances(window, rb.boxes, rb.labels)
                    patch = Patch(
                        window=window,
                        image=read_patch(slide, window),
                        boxes=boxes,
                        labels=rb.labels[index],
                        index=index,
                        whole=whole,
                        not_exhaustive=cut,
                        kind="review",
                    )
                    image_id += 1
                    file_name = f"images/{Path(name).stem}_{n:05d}.{image_format}"
                    write_image(out / file_name, patch.image, image_format, 90)
                    image, anns = patch_records(
                        patch,
                        image_id=image_id,
                        first_annotation_id=annotation_id + 1,
                        file_name=file_name,
                        slide_name=name,
                        mpp=mpp,
                        num_classes=len(classes),
                        exhaustive=False,
                    )
                    image["neg_category_ids"] = _negatives(patch, rb)
                    annotation_id += len(patch.labels)
                    records[s][0].append(image)
                    records[s][1].extend(anns)
                    negatives_only[s] += not anns
                    bar.update()
    bar.close()
    files: dict[str, Path] = {}
    docs: dict[str, dict[str, Any]] = {}
    info = {"description": f"cytolt dataset from the reviews of {run.path.name}", "version": __version__}
    for s in active:
        if not records[s][1]:
            raise AnnotationError(
                out / f"annotations_{s}.json", "", f"empty split: slides {assignment[s]} give no box"
            )
        files[s] = out / f"annotations_{s}.json"
        docs[s] = write_coco_split(
            files[s], *records[s], classes, train=docs.get("train"), info={**info, "split": s, "mpp": mpp}
        )
    check_splits(
        docs["train"], {str(files[s]): docs[s] for s in active[1:]}, train_source=str(files["train"])
    )
    (out / "classes.md").write_text(
        "\n".join(
            f"{r.name}: {r.instances} instances in {r.images} images ({r.group})"
            for r in class_table(docs["train"])
        )
        + "\n"
    )
    return ReviewDataset(
        out_dir=out,
        classes=classes,
        annotation_files=files,
        splits={s: tuple(assignment[s]) for s in active},
        images={s: len(records[s][0]) for s in active},
        hard_negative_images=negatives_only,
        decisions=decisions,
        mpp=float(mpp),
        size=size,
    )


def _inside_window(window: Any, boxes: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = window.box_l0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)


def _run_read_mpp(run: RunFolder) -> float:
    for report in sorted(run.path.glob(f"*/{RunFolder.REPORT}")):
        mpp = json.loads(report.read_text()).get("tiles", {}).get("mpp")
        if mpp:
            return float(mpp[0])
    raise ValueError(f"{run.path}: no report gives the run's read mpp; pass mpp=")
