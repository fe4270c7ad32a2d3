"""What goes into a screening run: the slide files, from files, folders, globs and CSV lists.

    collect_slides(["scans/", "extra/*.svs", "list.csv", "one.ndpi"]) -> [Path, ...]

Glossary:

- *input*: a slide file, a folder (the slide files directly inside it), a glob pattern (contains ``*``, ``?`` or
  ``[``; the matching slide files) or a ``.csv`` list (column ``path``, else the first column; header optional;
  relative paths are relative to the CSV's folder).
- *slide file*: a name ending in one of :data:`cytolt.io.formats.FOLDER_SUFFIXES` (the slide suffixes but DICOM,
  whose slides are folders of level files). Only folders and globs filter by suffix: a file named on its own or
  listed in a CSV is kept whatever its name, and one that does not exist is kept too (the run records it as
  failed, "file not found").
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Sequence
from pathlib import Path

from cytolt.io.formats import FOLDER_SUFFIXES, is_slide_name

__all__ = ["collect_slides"]

_GLOB_CHARS = frozenset("*?[")


def collect_slides(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The slide files ``inputs`` name (see the module glossary), in order, each once (by absolute path).

    Folders and glob matches are sorted by path. Symbolic links are kept as given, so one file under two names
    is two slides (each gets its own report).

    Raises:
        ValueError: a folder or glob with no slide file, a CSV list that is missing, empty or malformed
            (the message names the input).
    """
    out: dict[Path, None] = {}
    for item in inputs:
        for path in _expand(str(item)):
            out.setdefault(path.absolute(), None)
    return list(out)


def _expand(item: str) -> list[Path]:
    path = Path(item)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if _is_slide(p))
        if not found:
            raise ValueError(f"{item}: folder holds no slide file ({' '.join(FOLDER_SUFFIXES)})")
        return found
    if path.suffix.lower() == ".csv":
        return _read_list(path)
    if path.exists() or not _GLOB_CHARS & set(item):
        return [path]  # a missing slide is screened, and recorded as failed with "file not found"
    found = sorted(p for p in map(Path, glob.glob(item, recursive=True)) if _is_slide(p))
    if not found:
        raise ValueError(f"{item}: pattern matches no slide file ({' '.join(FOLDER_SUFFIXES)})")
    return found


def _is_slide(path: Path) -> bool:
    return path.is_file() and is_slide_name(path, suffixes=FOLDER_SUFFIXES)


def _read_list(path: Path) -> list[Path]:
    """Slide paths of a CSV list: column ``path`` if the header has one, else the first column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [row for row in csv.reader(fh, strict=True) if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise ValueError(f"{path}: slide list not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV slide list ({exc})") from exc
    if not rows:
        raise ValueError(f"{path}: slide list is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    column, start = 0, 0
    if "path" in header:
        column, start = header.index("path"), 1
    elif not _looks_like_slide(rows[0][0], path.parent):
        start = 1  # a header without a "path" column, e.g. "slide,label": the paths are in the first column
    out = []
    for line, row in enumerate(rows[start:], start=start + 1):
        if column >= len(row) or not row[column].strip():
            raise ValueError(f"{path}, line {line}: no slide path in column {column + 1}")
        out.append(path.parent / row[column].strip())  # an absolute path stays as it is
    if not out:
        raise ValueError(f"{path}: slide list has a header but no slides")
    return out


def _looks_like_slide(cell: str, folder: Path) -> bool:
    name = cell.strip()
    return name.lower().endswith(FOLDER_SUFFIXES) or (folder / name).is_file()
