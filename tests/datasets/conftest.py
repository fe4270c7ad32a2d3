"""Small synthetic slides with their ground truth written as QuPath GeoJSON, in the lab's names (upper case)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cytolt.datasets.annotations import write_qupath_geojson
from cytolt.synth import CLASSES, make_slide

# make_slide plants per-slide counts whatever the size: 1536 px (384 um at 0.25 um/px) keeps each slide ~1 s.
SLIDE_PX = 1536
LABELS = ("HSIL", "LSIL", "ASC-US", "NILM")


@dataclass(frozen=True)
class Cohort:
    slides: list[Path]
    geojson: list[Path]
    class_map: Path
    truths: list


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    root = tmp_path_factory.mktemp("dataset_cohort")
    slides, geojson, truths = [], [], []
    for i, label in enumerate(LABELS):
        truth = make_slide(root / f"slide{i}.tiff", size=(SLIDE_PX, SLIDE_PX), seed=10 + i, label=label)
        path = root / f"slide{i}.geojson"
        write_qupath_geojson(path, [c.box for c in truth.cells], [c.label.upper() for c in truth.cells])
        slides.append(truth.path)
        geojson.append(path)
        truths.append(truth)
    class_map = root / "map.yaml"
    mapping = "\n".join(f"  {c.upper()}: {c}" for c in CLASSES)
    class_map.write_text(f"classes: [{', '.join(CLASSES)}]\nmap:\n{mapping}\n")
    return Cohort(slides=slides, geojson=geojson, class_map=class_map, truths=truths)
