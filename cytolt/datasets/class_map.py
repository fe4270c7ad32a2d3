"""Class maps: from a lab's annotation names to the training classes, in the training label order.

A class map file (YAML ``.yaml``/``.yml`` or JSON ``.json``)::

    classes: [ascus, lsil, hsil]        # the training classes; label 0 first (default: the map's targets in order)
    map:                                # the lab's name -> a training class; null drops that name on purpose
      ASC-US: ascus
      Koilocyte: lsil
      HSIL: hsil
      Unclassified: null
    point_box_um: {default: 40, hsil: 12}   # box side (microns) of a point annotation: a number, or per class

A name that is itself a training class maps to itself unless ``map`` says otherwise. A name neither mapped nor a
training class is *unmapped*: :meth:`ClassMap.apply` refuses it (listing every such name, with its count and
first place) unless ``drop_unmapped=True``.
"""

from __future__ import annotations

import difflib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cytolt.datasets.annotations import SlideAnnotation
from cytolt.datasets.coco import AnnotationError

__all__ = [
    "DEFAULT_POINT_BOX_UM",
    "ClassMap",
    "MappedAnnotations",
    "UnmappedClassError",
    "class_map_from_names",
    "load_class_map",
]

# Box side for a point annotation when the class map gives none: an intermediate squamous cell is 35-55 um
# across (Nayar & Wilbur, *The Bethesda System for Reporting Cervical Cytology*, 3rd ed., 2015), the cell a
# screener most often clicks on. Small cells (HSIL 10-15 um, neutrophils 10-12 um) want their own value.
DEFAULT_POINT_BOX_UM = 40.0
_KEYS = ("classes", "map", "point_box_um")


class UnmappedClassError(ValueError):
    """Annotation names the class map does not map; ``names`` = name -> (count, first source)."""

    def __init__(self, source: str, names: Mapping[str, tuple[int, str]], classes: Sequence[str]) -> None:
        self.source = source
        self.names = dict(names)
        lines = []
        lowered = {c.lower(): c for c in classes}  # 'HSIL' for 'hsil' is the usual slip
        for name, (count, first) in sorted(self.names.items()):
            close = difflib.get_close_matches(name.lower(), lowered, n=1)
            hint = f"; did you mean {lowered[close[0]]!r}?" if close else ""
            lines.append(f"  {name!r}: {count} annotation(s), first at {first}{hint}")
        super().__init__(
            f"{source}: {len(self.names)} annotation class name(s) map to no training class:\n"
            + "\n".join(lines)
            + f"\nthe training classes are {list(classes)}; add the names to the class map's 'map' (null drops "
            "a name on purpose), or drop every unmapped name (drop_unmapped=True, --drop-unmapped)"
        )


@dataclass(frozen=True)
class MappedAnnotations:
    """What :meth:`ClassMap.apply` keeps and drops: ``kept`` (annotation, training label) pairs, and the
    dropped counts by the lab's name: ``dropped_null`` (mapped to null) and ``dropped_unmapped``."""

    kept: list[tuple[SlideAnnotation, int]]
    dropped_null: dict[str, int] = field(default_factory=dict)
    dropped_unmapped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassMap:
    """Lab names -> training classes (``classes``, the label order); ``mapping`` holds the explicit entries
    (``None`` = drop on purpose); ``point_box_um`` the point box side per training class (microns), with
    ``default_point_box_um`` for the others; ``source`` names the map in errors."""

    classes: tuple[str, ...]
    mapping: Mapping[str, str | None] = field(default_factory=dict)
    point_box_um: Mapping[str, float] = field(default_factory=dict)
    default_point_box_um: float = DEFAULT_POINT_BOX_UM
    source: str = "class map"

    def __post_init__(self) -> None:
        if not self.classes:
            raise AnnotationError(self.source, "classes", "no training classes")
        dupes = [c for c, n in Counter(self.classes).items() if n > 1]
        if dupes:
            raise AnnotationError(self.source, "classes", f"listed twice: {dupes}")
        for name, target in self.mapping.items():
            if target is not None and target not in self.classes:
                raise AnnotationError(
                    self.source,
                    f"map: {name}",
                    f"maps to {target!r}, not a training class {list(self.classes)}",
                )
        for name, size in {**self.point_box_um, "default": self.default_point_box_um}.items():
            if name != "default" and name not in self.classes:
                raise AnnotationError(
                    self.source, f"point_box_um: {name}", f"not a training class {list(self.classes)}"
                )
            if (
                isinstance(size, bool)
                or not isinstance(size, int | float)
                or not math.isfinite(size)
                or size <= 0
            ):
                raise AnnotationError(
                    self.source, f"point_box_um: {name}", f"must be a positive number; got {size!r}"
                )

    def target(self, name: str) -> str | None:
        """The training class of a lab name; None when it is mapped to null. KeyError when unmapped."""
        if name in self.mapping:
            return self.mapping[name]
        if name in self.classes:
            return name
        raise KeyError(name)

    def box_um(self, training_class: str) -> float:
        """Side (microns) of the square box a point annotation of ``training_class`` becomes."""
        return float(self.point_box_um.get(training_class, self.default_point_box_um))

    def apply(
        self, annotations: Iterable[SlideAnnotation], *, drop_unmapped: bool = False
    ) -> MappedAnnotations:
        """Training labels (indices into ``classes``) of ``annotations``.

        Raises :class:`UnmappedClassError` listing every unmapped name unless ``drop_unmapped``.
        """
        kept: list[tuple[SlideAnnotation, int]] = []
        null: Counter[str] = Counter()
        unmapped: dict[str, tuple[int, str]] = {}
        index = {c: k for k, c in enumerate(self.classes)}
        for ann in annotations:
            try:
                target = self.target(ann.class_name)
            except KeyError:
                count, first = unmapped.get(ann.class_name, (0, ann.source))
                unmapped[ann.class_name] = (count + 1, first)
                continue
            if target is None:
                null[ann.class_name] += 1
            else:
                kept.append((ann, index[target]))
        if unmapped and not drop_unmapped:
            raise UnmappedClassError(self.source, unmapped, self.classes)
        return MappedAnnotations(
            kept=kept, dropped_null=dict(null), dropped_unmapped={k: v[0] for k, v in unmapped.items()}
        )

    def to_dict(self) -> dict[str, Any]:
        """The map as plain data, in the file layout (written next to a dataset so it can be rebuilt)."""
        return {
            "classes": list(self.classes),
            "map": dict(self.mapping),
            "point_box_um": {"default": self.default_point_box_um, **self.point_box_um},
        }


def class_map_from_names(
    names: Iterable[str], *, default_point_box_um: float = DEFAULT_POINT_BOX_UM
) -> ClassMap:
    """The identity map of the annotation ``names``, classes in sorted order (no class map file given)."""
    return ClassMap(
        classes=tuple(sorted(set(names))), default_point_box_um=default_point_box_um, source="class names"
    )


def load_class_map(path: str | Path) -> ClassMap:
    """Read a class map file (module docstring); errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "", "class map file not found")
    suffix = path.suffix.lower()
    text = path.read_text()
    if suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise AnnotationError(path, f"line {err.lineno}", f"not valid JSON ({err.msg})") from err
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark is not None else ""
            raise AnnotationError(path, where, f"not valid YAML ({getattr(err, 'problem', err)})") from err
    else:
        raise AnnotationError(path, "", f"a class map is .yaml, .yml or .json; got {suffix!r}")
    if not isinstance(doc, dict):
        raise AnnotationError(path, "", f"expected a mapping with keys {list(_KEYS)}")
    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        raise AnnotationError(path, "", f"unknown keys {unknown}; a class map has {list(_KEYS)}")
    mapping = doc.get("map") or {}
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in mapping.items()
    ):
        raise AnnotationError(path, "map", "must map names to a training class name or null")
    classes = doc.get("classes")
    if classes is None:
        classes = list(dict.fromkeys(v for v in mapping.values() if v is not None))
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise AnnotationError(path, "classes", "must be a list of class names")
    sizes = doc.get("point_box_um", DEFAULT_POINT_BOX_UM)
    if not isinstance(sizes, dict):
        sizes = {"default": sizes}
    sizes = dict(sizes)
    default = sizes.pop("default", DEFAULT_POINT_BOX_UM)
    return ClassMap(
        classes=tuple(classes),
        mapping=mapping,
        point_box_um=sizes,
        default_point_box_um=default,
        source=str(path),
    )
