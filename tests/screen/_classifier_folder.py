"""A real, tiny cell classifier folder for screening tests: trained one epoch on a few synthetic crops.

Tests import it with ``sys.path`` pointing at this folder (tests have no packages).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

CROP_SIZE = 32
CROP_MPP = 0.5


def write_classifier(folder: Path, *, classes: Sequence[str] | None = None) -> Path:
    """Train a width-8 classifier for one epoch on 4 synthetic crops per cytolt.synth class and write its folder.

    ``classes``: the names the folder records (default the synthetic classes it was trained on); other names of
    the same number make a folder whose class table differs from the detector's.
    """
    from cytolt.classify.folder import ClassifierFolder
    from cytolt.classify.synth_crops import make_crop_set
    from cytolt.classify.train import train_classifier
    from cytolt.synth import CLASSES

    crops = make_crop_set(per_class=[4] * len(CLASSES), size=CROP_SIZE, mpp=CROP_MPP, seed=0)
    result = train_classifier(crops, epochs=1, batch_size=16, width=8, seed=0, progress=False)
    ClassifierFolder.write(
        folder,
        result.model,
        classes=tuple(classes) if classes is not None else crops.class_names,
        mpp=crops.mpp,
        crop_size=crops.size,
        context=1.5,
        train_counts=[int(n) for n in crops.counts()],
        method=result.method,
        head=result.head,
    )
    return folder
