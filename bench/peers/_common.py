"""What every side-by-side benchmark needs: interleaved timing, the machine, peer availability, JSON.

Standard library only, so that both the product's .venv (bench/bench_*.py) and .venv-peers (bench/peers/) can
import it: ``sys.path.insert(0, str(Path(__file__).parent))`` then ``from _common import ...``.

    interleaved(sides, rounds)   {name: Rounds}: one untimed warm-up per side, then A B C A B C ... rounds
    Rounds                       seconds and items per round -> rates, medians, min-max spread
    summary(values)              {"median", "min", "max"} of a list
    ratio(a, b)                  median rate of a over median rate of b (a faster than b: > 1)
    peer(module, dist)           Peer(name, version, reason): imported or why not (.venv-peers/peers-missing.txt)
    machine()                    cores, CPU, load average, Python and library versions, thread settings
    peak_rss_mb()                this process's peak resident memory
    write_record(path, record)   JSON with date, command and machine added
    table(rows, headers)         a plain-text table for the terminal

Conventions (design/BENCHMARKS.md): every side reads the same input; a side returns how many items it
processed so rates are items per second; the headline is the last printed line.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Written by scripts/setup_peers.sh: one "name<TAB>pip's last error line" per peer it could not install.
MISSING_FILE = Path(sys.prefix) / "peers-missing.txt"


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and min-max spread of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


@dataclass
class Rounds:
    """One side's timed rounds: wall seconds and items processed in each."""

    seconds: list[float] = field(default_factory=list)
    items: list[int] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        """Items per second in each round."""
        return [n / s for n, s in zip(self.items, self.seconds, strict=True)]

    @property
    def median_rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items_per_s": summary(self.rates),
            "seconds": summary(self.seconds),
            "items": self.items[0] if len(set(self.items)) == 1 else self.items,
            "rounds_items_per_s": [round(r, 2) for r in self.rates],
        }


def interleaved(sides: Mapping[str, Callable[[], int]], rounds: int, *, warmup: int = 1) -> dict[str, Rounds]:
    """Run every side ``warmup`` times untimed (imports, caches, allocator), then ``rounds`` times interleaved
    (A B C A B C ...), so a slow spell of the shared machine falls on every side alike. Each side returns the
    number of items it processed."""
    for _ in range(warmup):
        for fn in sides.values():
            fn()
    out = {name: Rounds() for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            n = fn()
            out[name].seconds.append(time.perf_counter() - t0)
            out[name].items.append(int(n))
    return out


def ratio(a: Rounds, b: Rounds) -> float:
    """Median rate of ``a`` over median rate of ``b``."""
    return a.median_rate / b.median_rate


@dataclass(frozen=True)
class Peer:
    """A peer library: its module when importable, else None and the reason."""

    name: str
    module: ModuleType | None
    version: str | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.module is not None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version} if self.ok else {"missing": self.reason}


def _install_failures() -> dict[str, str]:
    try:
        lines = MISSING_FILE.read_text().splitlines()
    except OSError:
        return {}
    return {name: reason for name, _, reason in (line.partition("\t") for line in lines) if name}


def peer(module: str, dist: str | None = None) -> Peer:
    """Import ``module`` (distribution ``dist``, default the module name) or say why it is not available:
    the install failure scripts/setup_peers.sh recorded, else the import error."""
    dist = dist or module
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # any import failure makes the peer missing; the reason is reported
        reason = _install_failures().get(dist) or f"{type(exc).__name__}: {exc}"
        return Peer(dist, None, None, f"not installed in {sys.prefix}: {reason}")
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = getattr(mod, "__version__", "unknown")
    return Peer(dist, mod, version)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions(names: Sequence[str]) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def machine(**settings: Any) -> dict[str, Any]:
    """The machine and software a run measured on; ``settings`` (thread counts...) are recorded with it."""
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_name(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "venv": sys.prefix,
        "versions": _versions(
            ["cytolt", "torch", "numpy", "tifffile", "imagecodecs", "openslide-python", "openslide-bin"]
        ),
        **settings,
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_record(path: Path, record: Mapping[str, Any], **settings: Any) -> None:
    """Write ``record`` as JSON at ``path`` with the date, the command line and ``machine(**settings)``."""
    full = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(**settings),
        **record,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(full, indent=2) + "\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Rows as left-aligned text columns (numbers as given: format them first)."""
    cells = [[str(h) for h in headers], *[[str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
