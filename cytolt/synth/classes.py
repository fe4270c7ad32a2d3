"""Detection classes of the synthetic TCT data, their colours, and what each slide-level label implies.

The classes run from head (normal squamous cells, seen in every field) to tail (malignant cells, a handful per
slide). Morphology follows The Bethesda System (Nayar & Wilbur, *The Bethesda System for Reporting Cervical
Cytology*, 3rd ed., 2015); sizes are in microns and are converted to pixels with the field's microns per pixel.
Each tail class has a head class it resembles, so that a detector trained with plain cross-entropy tends to
call it by the head name:

| tail class | looks like | differs by |
| --- | --- | --- |
| ascus | intermediate | nucleus 2.5-3x the area, slightly darker |
| lsil | intermediate / ascus | larger dark irregular nucleus, sharp perinuclear halo with a dense rim |
| hsil | parabasal | nucleus fills most of the cell (high N:C), dark coarse chromatin, irregular membrane |
| scc | superficial | orange keratinised cytoplasm in tadpole / spindle shapes, large ink-dark nucleus |
| agc | neutrophil_cluster | a crowded sheet of glandular cells with enlarged oval nuclei instead of small lobed ones |
"""

from __future__ import annotations

from typing import Final

# Head to tail: index 0 gets the most instances in a patch dataset, the last index the fewest.
CLASSES: Final[tuple[str, ...]] = (
    "intermediate",
    "superficial",
    "neutrophil_cluster",
    "parabasal",
    "candida",
    "trichomonas",
    "ascus",
    "lsil",
    "hsil",
    "scc",
    "agc",
)

# Display colours (r, g, b) for boxes and galleries; abnormal classes warm, normal cool, organisms green/purple.
CLASS_COLORS: Final[dict[str, tuple[int, int, int]]] = {
    "intermediate": (80, 160, 230),
    "superficial": (150, 110, 230),
    "neutrophil_cluster": (120, 120, 120),
    "parabasal": (40, 190, 190),
    "candida": (140, 60, 160),
    "trichomonas": (60, 170, 60),
    "ascus": (250, 200, 0),
    "lsil": (255, 140, 0),
    "hsil": (230, 40, 40),
    "scc": (150, 0, 0),
    "agc": (230, 0, 160),
}

# One line per class; written into the COCO/LVIS `def` field and the docs.
CLASS_DEFINITIONS: Final[dict[str, str]] = {
    "intermediate": "normal intermediate squamous cell: polygonal cyanophilic cytoplasm, small vesicular nucleus",
    "superficial": "normal superficial squamous cell: polygonal eosinophilic cytoplasm, small pyknotic nucleus",
    "neutrophil_cluster": "cluster of neutrophils: small pale cells with 2-4 dark nuclear lobes",
    "parabasal": "normal parabasal cell: small round dense cyanophilic cell, N:C about 0.3-0.4 (diameter)",
    "candida": "Candida pseudohyphae with budding yeast forms",
    "trichomonas": "Trichomonas vaginalis: pear-shaped grey-green organism, faint eccentric nucleus, red granules",
    "ascus": "atypical squamous cell of undetermined significance: intermediate cell, nucleus 2.5-3x normal area",
    "lsil": "low-grade lesion (koilocyte): enlarged dark irregular nucleus, sharp perinuclear halo",
    "hsil": "high-grade lesion: small cell, high N:C, dark coarse chromatin, irregular nuclear membrane",
    "scc": "keratinising squamous cell carcinoma: bizarre orange cell (tadpole, spindle), ink-dark nucleus",
    "agc": "atypical glandular cells: crowded sheet of columnar cells with enlarged oval nuclei",
}

# COCO `supercategory` of each class.
SUPERCATEGORY: Final[dict[str, str]] = {
    "intermediate": "normal",
    "superficial": "normal",
    "neutrophil_cluster": "inflammatory",
    "parabasal": "normal",
    "candida": "organism",
    "trichomonas": "organism",
    "ascus": "abnormal",
    "lsil": "abnormal",
    "hsil": "abnormal",
    "scc": "abnormal",
    "agc": "abnormal",
}

# Abnormal classes: the ones a slide label plants (SLIDE_LABELS) and ``make_slide(abnormal=...)`` may set.
ABNORMAL_CLASSES: Final[tuple[str, ...]] = tuple(c for c in CLASSES if SUPERCATEGORY[c] == "abnormal")

# Squamous cells, normal and abnormal: what Bethesda's adequacy counts ("at least 5,000 well-visualised
# squamous cells" for liquid-based preparations). The same classes as cytolt.bethesda.SQUAMOUS (a test checks).
SQUAMOUS_CLASSES: Final[tuple[str, ...]] = (
    "intermediate",
    "superficial",
    "parabasal",
    "ascus",
    "lsil",
    "hsil",
    "scc",
)

# Slide-level Bethesda category -> {abnormal class: (min, max) instances per slide}, drawn uniformly per slide.
# Counts are per slide whatever its size, so that a small test slide of a category still shows that category.
# Organisms are not part of the category (a NILM slide may report Candida); see ORGANISM_RATES.
SLIDE_LABELS: Final[dict[str, dict[str, tuple[int, int]]]] = {
    "NILM": {},
    "ASC-US": {"ascus": (6, 15)},
    "LSIL": {"lsil": (12, 30), "ascus": (3, 8)},
    "ASC-H": {"hsil": (3, 6), "ascus": (4, 10)},
    "HSIL": {"hsil": (25, 60), "lsil": (4, 10), "ascus": (2, 6)},
    "SCC": {"scc": (15, 40), "hsil": (10, 25)},
    "AGC": {"agc": (6, 15)},
}

# Organisms on any slide: (probability that the slide carries it, (min, max) instances when it does).
ORGANISM_RATES: Final[dict[str, tuple[float, tuple[int, int]]]] = {
    "candida": (0.25, (3, 10)),
    "trichomonas": (0.25, (6, 20)),
}

# Normal cells per mm^2 where the spot is fully dense (the density field thins this to ~60 % on average); a
# ThinPrep spot of 20 mm holds some 50-75 thousand cells (~160-240/mm^2), about a third of its area covered.
NORMAL_DENSITY_PER_MM2: Final[dict[str, float]] = {
    "intermediate": 170.0,
    "superficial": 80.0,
    "neutrophil_cluster": 30.0,
    "parabasal": 20.0,
}


def check_label(label: str) -> str:
    """Return ``label`` if it is a slide label in :data:`SLIDE_LABELS`, else raise ``ValueError`` listing them."""
    if label not in SLIDE_LABELS:
        raise ValueError(f"slide label must be one of {', '.join(SLIDE_LABELS)}; got {label!r}")
    return label
