"""Tiny generated pyramids in the three layouts cytolt reads with tifffile, written once per session.

    generic_tiff   levels as pages (SubFileType=1), JPEG tiles, resolution tags 0.5 µm/px in centimetres
    aperio_svs     Aperio-like: baseline, stripped thumbnail, levels, label, macro; "MPP = 0.25" in the
                   ImageDescription
    ome_tiff       OME-TIFF, pyramid in SubIFDs, PhysicalSizeX/Y = 0.5 µm
    write_svs      Aperio-layout SVS in a chosen compression, with missing tiles if asked (backend choice)

Images are 700x530 (not a multiple of the 128-px tiles, so edge tiles are partial) with stained "cells"
(ellipses with dark nuclei) on pale glass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import cv2
import imagecodecs
import numpy as np
import pytest
import tifffile

WIDTH, HEIGHT, TILE = 700, 530, 128


def cells_image(width: int, height: int, *, seed: int = 0, cells: int = 40) -> np.ndarray:
    """(height, width, 3) uint8: pale glass with pink/blue-green cells and dark nuclei."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (236, 234, 238)
    colours = [(230, 170, 190), (170, 210, 205), (215, 190, 220)]
    for _ in range(cells):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(8, 30)), int(rng.integers(6, 24)))
        colour = colours[int(rng.integers(0, len(colours)))]
        cv2.ellipse(image, centre, axes, float(rng.integers(0, 180)), 0, 360, colour, -1)
        cv2.ellipse(image, centre, (axes[0] // 4 + 1, axes[1] // 4 + 1), 0, 0, 360, (70, 50, 110), -1)
    return image


def pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    out = [image]
    for _ in range(levels - 1):
        prev = out[-1]
        out.append(cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2), interpolation=cv2.INTER_AREA))
    return out


def write_generic(path: Path, image: np.ndarray, *, levels: int = 3, mpp: float = 0.5, **kw: object) -> Path:
    with tifffile.TiffWriter(path) as tw:
        for k, level in enumerate(pyramid(image, levels)):
            tw.write(
                level,
                tile=(TILE, TILE),
                compression=kw.get("compression", "jpeg"),
                photometric="rgb",
                subfiletype=1 if k else 0,
                resolution=(1e4 / mpp, 1e4 / mpp),
                resolutionunit="CENTIMETER",
                metadata=None,
            )
    return path


def write_aperio(path: Path, image: np.ndarray, *, mpp: float = 0.25) -> Path:
    levels = pyramid(image, 3)
    h, w = image.shape[:2]
    head = f"Aperio Image Library v12.0.0\r\n{w}x{h} [0,0 {w}x{h}] ({TILE}x{TILE}) JPEG/RGB Q=90"
    meta = f"|AppMag = 40|MPP = {mpp}"
    jpeg = {"compression": "jpeg", "photometric": "rgb", "metadata": None}
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], tile=(TILE, TILE), description=head + meta, **jpeg)
        thumb = levels[2]
        tw.write(
            thumb, rowsperstrip=16, description=f"{head} -> {thumb.shape[1]}x{thumb.shape[0]}{meta}", **jpeg
        )
        for level in levels[1:]:
            tw.write(
                level,
                tile=(TILE, TILE),
                description=f"{head} -> {level.shape[1]}x{level.shape[0]}{meta}",
                **jpeg,
            )
        label = np.full((60, 80, 3), 200, np.uint8)
        tw.write(
            label,
            compression="lzw",
            photometric="rgb",
            metadata=None,
            subfiletype=1,
            description="Aperio Image Library v12.0.0\r\nlabel 80x60",
        )
        macro = np.full((50, 120, 3), 100, np.uint8)
        tw.write(macro, subfiletype=9, description="Aperio Image Library v12.0.0\r\nmacro 120x50", **jpeg)
    return path


def write_svs(
    path: Path,
    image: np.ndarray,
    *,
    compression: str | int | None = "jpeg",
    compressionargs: dict | None = None,
    encode: Callable[[np.ndarray], bytes] | None = None,
    missing: tuple[int, ...] = (),
) -> Path:
    """An Aperio-layout SVS (level 0, stripped thumbnail, levels 1 and 2) of ``image`` in one compression.

    ``encode``: write each 128-px tile as ``encode(tile)`` bytes under the ``compression`` code (Aperio's
    JPEG 2000, or JPEG data that contradicts the Photometric tag); ``missing``: level-0 tile indices written
    as zero-length tiles, as some Aperio encoders leave them."""
    levels = pyramid(image, 3)
    h, w = image.shape[:2]
    head = f"Aperio Image Library v12.0.0\r\n{w}x{h} [0,0 {w}x{h}] ({TILE}x{TILE})|AppMag = 40|MPP = 0.25"

    def tiles(level: np.ndarray, skip: tuple[int, ...]) -> Iterator[bytes]:
        index = 0
        for y in range(0, level.shape[0], TILE):
            for x in range(0, level.shape[1], TILE):
                tile = np.zeros((TILE, TILE, 3), np.uint8)
                part = level[y : y + TILE, x : x + TILE]
                tile[: part.shape[0], : part.shape[1]] = part
                yield b"" if index in skip else (encode or _jpeg_tile)(tile)
                index += 1

    with tifffile.TiffWriter(path) as tw:
        for k, level in enumerate([levels[0], levels[2], levels[1], levels[2]]):
            description = head if k == 0 else f"{head} -> {level.shape[1]}x{level.shape[0]}"
            common = {"photometric": "rgb", "metadata": None, "description": description}
            if k == 1:  # the thumbnail, stripped
                tw.write(level, rowsperstrip=16, compression="jpeg", **common)
            elif encode is None and not missing:
                tw.write(
                    level,
                    tile=(TILE, TILE),
                    compression=compression,
                    compressionargs=compressionargs,
                    **common,
                )
            else:
                skip = missing if k == 0 else ()
                tw.write(
                    tiles(level, skip),
                    shape=level.shape,
                    dtype=np.uint8,
                    tile=(TILE, TILE),
                    compression=compression,
                    **common,
                )
    return path


def _jpeg_tile(tile: np.ndarray) -> bytes:
    # What tifffile writes for compression="jpeg" on RGB: YCbCr 4:2:0 (Photometric YCbCr).
    return imagecodecs.jpeg8_encode(
        tile, level=90, colorspace="RGB", outcolorspace="YCBCR", subsampling=(2, 2)
    )


def write_ome(path: Path, image: np.ndarray, *, mpp: float = 0.5) -> Path:
    levels = pyramid(image, 3)
    metadata = {
        "axes": "YXS",
        "PhysicalSizeX": mpp,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": mpp,
        "PhysicalSizeYUnit": "µm",
    }
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            levels[0],
            subifds=len(levels) - 1,
            tile=(TILE, TILE),
            compression="jpeg",
            photometric="rgb",
            metadata=metadata,
        )
        for level in levels[1:]:
            tw.write(level, tile=(TILE, TILE), compression="jpeg", photometric="rgb", subfiletype=1)
    return path


@pytest.fixture(scope="session")
def synth() -> SimpleNamespace:
    """The writers and sizes above, for tests that make their own slides (tests import no helper module,
    so they collect under any pytest import mode)."""
    return SimpleNamespace(
        WIDTH=WIDTH,
        HEIGHT=HEIGHT,
        TILE=TILE,
        cells_image=cells_image,
        pyramid=pyramid,
        write_generic=write_generic,
        write_aperio=write_aperio,
        write_svs=write_svs,
        write_ome=write_ome,
    )


@pytest.fixture(scope="session")
def slide_image() -> np.ndarray:
    return cells_image(WIDTH, HEIGHT)


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory, slide_image: np.ndarray) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("slides")
    return {
        "generic": write_generic(folder / "generic.tiff", slide_image),
        "aperio": write_aperio(folder / "aperio.svs", slide_image),
        "ome": write_ome(folder / "slide.ome.tif", slide_image),
    }


@pytest.fixture(scope="session")
def generic_tiff(generated: dict[str, Path]) -> Path:
    return generated["generic"]


@pytest.fixture(scope="session")
def aperio_svs(generated: dict[str, Path]) -> Path:
    return generated["aperio"]


@pytest.fixture(scope="session")
def ome_tiff(generated: dict[str, Path]) -> Path:
    return generated["ome"]
