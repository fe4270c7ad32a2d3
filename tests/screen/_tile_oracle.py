"""An oracle detector that recognises tiles by their pixels: for runs that skip, reorder or distribute slides.

:class:`~_screen_oracle.OracleSequence` needs the slides in screening order; a resumed run skips some, and Dask
workers each see a few in any order. :class:`TileOracle` instead reads every tile of the engine's grid of each
slide once, keeps each tile's oracle answer (``OracleDetector._tile_detections``) under a hash of its pixels,
and answers an image by looking its pixels up: the same answers as the OracleDetector, in any order, in any
process. An image that is no tile of its slides fails loudly. Two tiles with the same pixels but different
answers would make the lookup ambiguous, so building the table checks for that.

``make_tile_oracle`` is module-level, so ``functools.partial(make_tile_oracle, paths, ...)`` pickles as a Dask
detector factory; workers import this module by name (``sys.path`` travels to spawned processes).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from _screen_oracle import OracleDetector

from cytolt.detect import Detections


class TileOracle:
    """OracleDetector answers for the tiles of ``slide_paths``, looked up by pixels.

    ``delay`` seconds are slept per ``predict`` call (tests that stop a run part-way need slides to take time);
    a tile of ``crash_on`` makes the process exit at once (``os._exit``), as a segfault would.
    """

    def __init__(
        self,
        slide_paths: Sequence[str | Path],
        *,
        tile_size: int,
        overlap: int,
        mpp: float | None,
        delay: float = 0.0,
        crash_on: str | Path | None = None,
    ) -> None:
        self.answers: dict[bytes, Detections] = {}
        self.crash_keys: set[bytes] = set()
        self.delay = delay
        for path in slide_paths:
            oracle = OracleDetector(path, tile_size=tile_size, overlap=overlap, mpp=mpp, check_pixels=False)
            try:
                for index in range(len(oracle.grid)):
                    pixels = oracle.grid.read(oracle.slide, index)  # (H, W, 3) uint8
                    key = _key(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
                    answer = oracle._tile_detections(index)
                    if key in self.answers and not _same(self.answers[key], answer):
                        raise AssertionError(f"two tiles with the same pixels and different cells ({path})")
                    self.answers[key] = answer
                    if crash_on is not None and Path(path) == Path(crash_on):
                        self.crash_keys.add(key)
            finally:
                oracle.close()
            self.info = oracle.info
        self.device = torch.device("cpu")
        self.calls = 0

    def predict(self, images: torch.Tensor) -> list[Detections]:
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"oracle wants (B, 3, H, W) uint8; got {tuple(images.shape)} {images.dtype}")
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        out = []
        for image in images:
            key = _key(image.contiguous().numpy())
            if key in self.crash_keys:
                os._exit(70)  # no cleanup, no exception: what a segfault or the OOM killer looks like
            if key not in self.answers:
                raise AssertionError(f"image {tuple(image.shape)} is no tile of the oracle's slides")
            out.append(self.answers[key])
        return out


def make_tile_oracle(
    slide_paths: Sequence[str | Path], device: str | None = None, **kwargs: object
) -> TileOracle:
    """A detector factory (``factory(device)``): the device is ignored, the oracle runs anywhere."""
    return TileOracle(slide_paths, **kwargs)  # type: ignore[arg-type]


def _key(chw: np.ndarray) -> bytes:
    return hashlib.sha1(chw.tobytes()).digest() + bytes(str(chw.shape), "ascii")


def _same(a: Detections, b: Detections) -> bool:
    return all(torch.equal(x, y) for x, y in ((a.boxes, b.boxes), (a.scores, b.scores), (a.labels, b.labels)))


# -- a small screening setup shared by the batch, Dask and CLI tests ---------------------------------------------

# Tiles as the oracle answers them: 256 px at the model's 0.5 um/px, overlapping by 128 px.
TILE = {"tile_size": 256, "overlap": 128, "mpp": 0.5}
# 1024-px slides at 0.25 um/px: 9 tiles each at most, a second or two per slide with reports.
SLIDE_SEEDS = (("NILM", 4), ("HSIL", 5), ("LSIL", 6))


def make_slides(folder: Path, labels: Sequence[tuple[str, int]] = SLIDE_SEEDS) -> list[Path]:
    """Synthetic 1024 x 1024 px slides (and their ground truth) named after their label."""
    from cytolt.synth import make_slide

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for label, seed in labels:
        path = folder / f"{label.lower()}.tiff"
        make_slide(path, size=(1024, 1024), mpp=0.25, seed=seed, label=label, workers=1)
        out.append(path)
    return out


def write_model_dir(folder: Path) -> Path:
    """A model folder (``ModelFolder.write``) with a stand-in config and weights: it reads and hashes like a
    model; the detector comes from a factory (or a patched ``cytolt.detect.load``)."""
    import torch

    from cytolt.adequacy import AdequacyRules
    from cytolt.detect import ModelFolder, ModelInfo
    from cytolt.screen import default_scorer
    from cytolt.synth import CLASSES

    info = ModelInfo(classes=tuple(CLASSES), mpp=TILE["mpp"])
    model = ModelFolder.write(folder, config="", weights={"stand_in": torch.zeros(1)}, info=info)
    # the test slides hold tens of squamous cells, not Bethesda's 5,000: a scorer calibrated for them
    model.write_scorer(default_scorer(info, adequacy=AdequacyRules(min_squamous_cells=1)))
    return model.path


def truncated_copy(slide: Path, out: Path) -> Path:
    """The first half of a slide file's bytes: what an interrupted copy from the scanner leaves."""
    data = slide.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def cli_script(slides: Sequence[Path], *, delay: float) -> str:
    """Python source that runs ``cytolt screen`` (arguments from its command line) with the tile oracle for
    ``slides`` standing in for ``cytolt.detect.load``: for tests that signal a real process."""
    return "\n".join(
        [
            "import signal, sys",
            # A shell starts background jobs with SIGINT ignored, and the ignore is inherited (a CI runner or
            # `make test &`): this process stands for a command typed in a terminal, so it takes Ctrl-C.
            "signal.signal(signal.SIGINT, signal.default_int_handler)",
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})",
            "import torch",
            "torch.set_num_threads(1)",
            "import cytolt.detect",
            "from _tile_oracle import TILE, make_tile_oracle",
            f"slides = {[str(p) for p in slides]!r}",
            f"cytolt.detect.load = lambda model_dir, device=None: make_tile_oracle(slides, delay={delay}, **TILE)",
            "from cytolt.cli.screen import screen",
            "screen.main(args=sys.argv[1:], prog_name='cytolt screen')",
        ]
    )


def count_done(store_path: Path) -> int:
    """Slides with status done in a run.sqlite another process is writing (0 before it exists)."""
    import sqlite3

    if not store_path.is_file():
        return 0
    db = sqlite3.connect(f"{store_path.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM slides WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # no table yet
        return 0
    finally:
        db.close()
