"""Split slides (never patches) into train / val / test: seeded and stratified so rare classes reach every split.

Patches of one slide share its stain, scanner focus and patient, so a slide in two splits leaks its look into
the held-out numbers: the split is made over whole slides.

The method is iterative stratification (Sechidis, Tsoumakas & Vlahavas, "On the stratification of multi-label
data", ECML PKDD 2011), with one change so that a rare class reaches as many splits as it can:

1. Each split's slide target is the largest-remainder share of the slides (at least one slide for every split
   with a non-zero fraction).
2. Each class's per-split target is its largest-remainder share of the slides holding it, raised to one slide
   per split (train first, then val, then test) while the class has slides to spare: a class on 3 slides puts
   one in each of 3 splits even at 0.7 / 0.15 / 0.15, a class on 2 slides puts one in train and one in val.
3. Classes are taken rarest first (fewest slides holding them; ties by class index); each of their
   unassigned slides, in a seeded random order, goes to the split that still wants the class most, ties to the
   split that still wants the most slides, then to the earlier split.
4. Slides without any class fill the splits' remaining slide targets.

Glossary
    slide_classes   slide name -> the training labels it holds (any iterable; counts do not matter).
    fractions       (train, val, test) >= 0, summing to 1; a zero fraction gets no slide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["SPLIT_NAMES", "check_fractions", "split_slides"]

SPLIT_NAMES = ("train", "val", "test")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """(train, val, test) fractions, each >= 0, train > 0, summing to 1 (within 1e-6)."""
    out = tuple(float(f) for f in fractions)
    if len(out) != 3:
        raise ValueError(f"split needs 3 fractions (train, val, test); got {len(out)}: {list(fractions)}")
    if not all(math.isfinite(f) and f >= 0 for f in out) or out[0] <= 0:
        raise ValueError(f"split fractions must be >= 0 with train > 0; got {list(out)}")
    if abs(sum(out) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1; got {list(out)} (sum {sum(out):g})")
    return out  # type: ignore[return-value]


def _largest_remainder(total: int, fractions: Sequence[float]) -> list[int]:
    raw = [total * f for f in fractions]
    out = [math.floor(r) for r in raw]
    for k in sorted(range(len(raw)), key=lambda k: (out[k] - raw[k], k))[: total - sum(out)]:
        out[k] += 1
    return out


def _raise_to_one(counts: list[int], fractions: Sequence[float], available: int) -> list[int]:
    """Give each split with a non-zero fraction at least one (train, val, test in turn) while ``available``
    allows, taking from the split with the most."""
    counts = list(counts)
    for k, f in enumerate(fractions):
        if f <= 0 or counts[k] > 0:
            continue
        if sum(1 for c in counts if c > 0) >= available:
            break
        donor = max(range(len(counts)), key=lambda j: (counts[j], -j))
        if counts[donor] <= 1:
            break
        counts[donor] -= 1
        counts[k] += 1
    return counts


def split_slides(
    slide_classes: Mapping[str, Iterable[int]], fractions: Sequence[float], *, seed: int = 0
) -> dict[str, list[str]]:
    """Assign every slide to exactly one split (module docstring): split name -> slide names, each list in
    the order of ``slide_classes``. Raises ValueError when there are fewer slides than non-zero fractions."""
    fracs = check_fractions(fractions)
    names = list(slide_classes)
    if len(set(names)) != len(names):
        raise ValueError("slide names must be unique")
    wanted = sum(f > 0 for f in fracs)
    if len(names) < wanted:
        nonzero = [s for s, f in zip(SPLIT_NAMES, fracs, strict=True) if f > 0]
        raise ValueError(
            f"{len(names)} slide(s) cannot fill {wanted} splits ({', '.join(nonzero)}): a slide goes to one split "
            "only; give more slides or fewer splits (e.g. --split 1,0,0)"
        )
    classes = {n: sorted(set(int(c) for c in slide_classes[n])) for n in names}
    rng = np.random.default_rng(seed)
    slide_need = _raise_to_one(_largest_remainder(len(names), fracs), fracs, len(names))
    holders: dict[int, list[str]] = {}
    for n in names:
        for c in classes[n]:
            holders.setdefault(c, []).append(n)
    class_need = {
        c: _raise_to_one(_largest_remainder(len(h), fracs), fracs, len(h)) for c, h in holders.items()
    }
    assigned: dict[str, int] = {}

    def place(slide: str, split: int) -> None:
        assigned[slide] = split
        slide_need[split] -= 1
        for c in classes[slide]:
            class_need[c][split] -= 1

    while True:
        remaining = {c: [n for n in h if n not in assigned] for c, h in holders.items()}
        remaining = {c: r for c, r in remaining.items() if r}
        if not remaining:
            break
        c = min(remaining, key=lambda k: (len(holders[k]), k))
        for i in rng.permutation(len(remaining[c])).tolist():
            slide = remaining[c][i]
            if slide in assigned:
                continue
            best = max(
                (k for k in range(3) if fracs[k] > 0),
                key=lambda k: (class_need[c][k], slide_need[k], -k),
            )
            place(slide, best)
    for i in rng.permutation(len(names)).tolist():
        slide = names[i]
        if slide not in assigned:
            best = max((k for k in range(3) if fracs[k] > 0), key=lambda k: (slide_need[k], -k))
            place(slide, best)
    return {s: [n for n in names if assigned[n] == k] for k, s in enumerate(SPLIT_NAMES)}
