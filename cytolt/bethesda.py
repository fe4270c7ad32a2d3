"""The Bethesda System vocabulary, defined once: interpretations, their order of severity, and the cell classes.

Used by the slide scorer (which classes make a slide abnormal, which rule calls HSIL+), the report, the review
queue and calibration. Class names of a model are matched by their *key*: lower case, letters and digits only
(``"ASC-US"``, ``"asc_us"`` and ``"ascus"`` are one class).

Interpretations (Nayar & Wilbur, *The Bethesda System for Reporting Cervical Cytology*, 3rd ed., 2015), least to
most severe as cytolt ranks them for "the most severe finding": NILM, ASC-US, LSIL, ASC-H, AGC, HSIL, SCC.
ASC-H ("cannot exclude HSIL") ranks above LSIL because it is managed like HSIL (colposcopy); AGC ranks below
HSIL and SCC here only to give one order: a report names every abnormal finding it has, and the triage call
puts AGC with ASC-US+.

Triage calls (the screening decision, kept beside the interpretation): ``NILM`` < ``ASC-US+`` < ``HSIL+``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = [
    "ABNORMAL",
    "GLANDULAR_ABNORMAL",
    "HSIL_PLUS",
    "INTERPRETATIONS",
    "NORMAL_SQUAMOUS",
    "ORGANISMS",
    "SQUAMOUS",
    "SQUAMOUS_ABNORMAL",
    "TRIAGE_CALLS",
    "UNSATISFACTORY",
    "class_key",
    "classes_in",
    "interpretation_of_class",
    "more_severe",
    "review_order",
    "severity",
    "triage_call",
]

INTERPRETATIONS: tuple[str, ...] = ("NILM", "ASC-US", "LSIL", "ASC-H", "AGC", "HSIL", "SCC")
TRIAGE_CALLS: tuple[str, ...] = ("NILM", "ASC-US+", "HSIL+")
# A specimen not adequately examined: never reported as NILM (Bethesda's "Unsatisfactory for evaluation").
UNSATISFACTORY = "Unsatisfactory"

# Class keys by kind. Normal squamous cells count toward adequacy (well-visualised squamous cells), so do the
# abnormal squamous ones; organisms and inflammatory cells are findings inside NILM, never abnormal.
NORMAL_SQUAMOUS: frozenset[str] = frozenset({"superficial", "intermediate", "parabasal", "squamous"})
SQUAMOUS_ABNORMAL: frozenset[str] = frozenset(
    {"ascus", "asch", "lsil", "hsil", "scc", "carcinoma", "atypical"}
)
GLANDULAR_ABNORMAL: frozenset[str] = frozenset({"agc", "ais", "adenocarcinoma", "adc"})
ABNORMAL: frozenset[str] = SQUAMOUS_ABNORMAL | GLANDULAR_ABNORMAL
SQUAMOUS: frozenset[str] = NORMAL_SQUAMOUS | SQUAMOUS_ABNORMAL
ORGANISMS: frozenset[str] = frozenset(
    {"candida", "trichomonas", "flora", "clue", "actinomyces", "herpes", "herps", "hsv"}
)
# Classes whose cells alone make the triage call HSIL+ (high-grade lesions and carcinomas).
HSIL_PLUS: frozenset[str] = frozenset({"hsil", "scc", "carcinoma", "ais", "adenocarcinoma", "adc"})

# Class key -> the interpretation its cells support by themselves.
_INTERPRETATION_OF: dict[str, str] = {
    "ascus": "ASC-US",
    "atypical": "ASC-US",
    "lsil": "LSIL",
    "asch": "ASC-H",
    "agc": "AGC",
    "ais": "AGC",
    "adenocarcinoma": "AGC",
    "adc": "AGC",
    "hsil": "HSIL",
    "scc": "SCC",
    "carcinoma": "SCC",
}


def class_key(name: str) -> str:
    """The key a class name is matched by: lower case, letters and digits only (``"ASC-US"`` -> ``"ascus"``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def classes_in(class_names: Iterable[str], kind: frozenset[str]) -> list[str]:
    """The names among ``class_names`` whose key is in ``kind`` (e.g. ``ABNORMAL``), in their order."""
    return [c for c in class_names if class_key(c) in kind]


def interpretation_of_class(name: str) -> str | None:
    """The interpretation a class's cells support (``"hsil"`` -> ``"HSIL"``); None for normal cells, organisms."""
    return _INTERPRETATION_OF.get(class_key(name))


def severity(interpretation: str) -> int:
    """Rank of an interpretation in ``INTERPRETATIONS`` (0 = NILM); ValueError listing them otherwise."""
    try:
        return INTERPRETATIONS.index(interpretation)
    except ValueError:
        raise ValueError(
            f"interpretation must be one of {', '.join(INTERPRETATIONS)}; got {interpretation!r}"
        ) from None


def more_severe(interpretations: Sequence[str]) -> str:
    """The most severe of ``interpretations`` (``"NILM"`` for none)."""
    return max(interpretations, key=severity, default="NILM")


def triage_call(interpretation: str) -> str:
    """The triage call of an interpretation: HSIL and SCC are ``HSIL+``, other abnormal ones ``ASC-US+``."""
    rank = severity(interpretation)
    if rank == 0:
        return "NILM"
    return "HSIL+" if interpretation in ("HSIL", "SCC") else "ASC-US+"


def review_order(class_names: Sequence[str]) -> list[str]:
    """The order a reviewer sees classes in: abnormal ones most severe first, then organisms, then the rest
    (in reverse label order: cytolt's class lists run from head to tail, so rarer classes come first)."""

    def rank(item: tuple[int, str]) -> tuple[int, int, int]:
        label, name = item
        interpretation = interpretation_of_class(name)
        if interpretation is not None:
            return (0, -severity(interpretation), -label)
        return (1 if class_key(name) in ORGANISMS else 2, 0, -label)

    return [name for _, name in sorted(enumerate(class_names), key=rank)]
