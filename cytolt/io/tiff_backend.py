"""tifffile backend: generic TIFF with levels as pages, OME-TIFF and SubIFD pyramids, Aperio SVS.

Two read paths, both behind ``TiffSlide.read_region``:

- direct (default for tiled 8-bit pages): read each tile's bytes with ``os.pread`` at
  ``TiffPage.dataoffsets[i]`` and decode them with ``TiffPage.decode`` (imagecodecs; JPEG tiles with the
  page's JPEGTables). A region that is exactly one tile is returned as decoded, with no copy.
- zarr (stripped pages, planar layouts, or ``direct=False``): slice the level's ``ZarrTiffStore``
  (``TiffPageSeries.aszarr(level=k)`` opened with zarr v3).

Measured with bench/bench_tilestream.py on 2 shared CPU cores (2026-11-24, docs/io.md): reading
tile-aligned 256-px JPEG tiles, the direct path is 3.1x to 4.0x faster than zarr slicing, which pays
chunk-key and store overhead per tile.

mpp comes from, in order: OME ``PhysicalSizeX/Y`` (with units), Aperio ``MPP =`` in the ImageDescription,
TIFF X/YResolution tags in centimetres or inches (as OpenSlide's generic-tiff driver does).
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cytolt.io.errors import SlideError
from cytolt.io.slide import MppArg, Slide, rgba_on_white

# tifffile flags of TIFF flavours whose layout OpenSlide understands and tifffile only partly does
# (one-JPEG-per-level NDPI, vendor offsets, multi-image SCN), so "auto" sends them to OpenSlide. Aperio SVS is
# not among them: tifffile reads it as OpenSlide does wherever ``aperio_mismatch`` finds nothing.
OPENSLIDE_FLAVOURS = ("is_ndpi", "is_scn", "is_philips", "is_bif")
# Level compressions of an SVS whose tiles tifffile decodes to OpenSlide's pixels (measured: tests/io): none,
# LZW, Deflate, JPEG and Aperio's RGB JPEG 2000 (both through OpenJPEG). Aperio's YCbCr JPEG 2000 (33003) is
# left to OpenSlide, which converts its colours itself.
APERIO_EXACT_COMPRESSIONS = frozenset({1, 5, 7, 8, 32946, 33005})
# Classic TIFF and BigTIFF, little- and big-endian.
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Microns per unit, for OME PhysicalSizeXUnit (default µm) and TIFF ResolutionUnit (2 inch, 3 cm).
_OME_UNITS_UM = {"µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}
_RESUNIT_UM = {2: 25400.0, 3: 10000.0}
_APERIO_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)")
_ASSOCIATED = ("thumbnail", "label", "macro")
_TILE_CACHE = 16  # decoded tiles kept per handle for reads that straddle tiles (overlapping grids)
_PROBE_MAX = 1024  # side of the largest probe region (a stripped level has one strip-wide "tile")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _LogCapture(logging.Filter):
    """Collects (and silences) tifffile's ERROR records from this thread: tifffile reports a broken IFD
    chain (a truncated file) only by logging it."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())
            return False
        return True


@contextmanager
def _capture_tifffile_errors() -> Iterator[_LogCapture]:
    log = logging.getLogger("tifffile")
    capture = _LogCapture()
    log.addFilter(capture)
    try:
        yield capture
    finally:
        log.removeFilter(capture)


class _Level:
    """One pyramid level: its page, tile grid and decoder, or its zarr array."""

    def __init__(self, pyramid: tifffile.TiffPageSeries, k: int, direct: bool) -> None:
        series = pyramid.levels[k]
        page = series.keyframe
        self.pyramid, self.k, self.axes = pyramid, k, series.axes
        self.page = page
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.samples = int(page.samplesperpixel)
        # ExtraSamples 1 = associated (premultiplied) alpha, 2 = unassociated alpha.
        extras = tuple(int(e) for e in (page.extrasamples or ()))
        self.alpha = extras[0] if self.samples == 4 and extras else 0
        self.offsets = np.asarray(page.dataoffsets, np.int64)
        self.counts = np.asarray(page.databytecounts, np.int64)
        self.tile_w = int(page.tilewidth) if page.is_tiled else self.width
        self.tile_h = int(page.tilelength) if page.is_tiled else self.height
        self.cols = -(-self.width // self.tile_w)
        self.rows = -(-self.height // self.tile_h)
        self.direct = bool(
            direct
            and page.is_tiled
            and len(series.pages) == 1
            and int(page.tiledepth) == 1
            and (self.samples == 1 or int(page.planarconfig) == 1)
            and len(self.offsets) == self.rows * self.cols
        )
        self.decode = page.decode if self.direct else None
        self.jpegtables = page.jpegtables
        self.zarr: Any = None  # opened on first use


class TiffSlide(Slide):
    """A slide read with tifffile (+ imagecodecs, zarr v3).

    Args:
        path: the TIFF file.
        mpp: (x, y) microns per pixel overriding the file's.
        direct: decode whole tiles directly (fast path); False forces zarr slicing (for measurement).
    """

    backend = "tifffile"

    @classmethod
    def can_read(cls, path: Path) -> bool:
        """A TIFF that is no OpenSlide vendor flavour, whose main image tifffile parses and can decode. Covers
        OME/SubIFD pyramids (invisible to OpenSlide), levels-as-pages pyramids, single-level TIFFs (tiled or
        stripped; OpenSlide reads only tiled ones) and Aperio SVS laid out as OpenSlide reads it
        (``aperio_mismatch``)."""
        return cls.refusal(path) is None

    @classmethod
    def refusal(cls, path: Path) -> str | None:
        """Why ``backend="auto"`` does not open ``path`` with tifffile, or None if it does (``can_read``)."""
        try:
            with open(path, "rb") as fh:
                if fh.read(4) not in _TIFF_MAGIC:
                    return "not a TIFF file"
            with _capture_tifffile_errors(), tifffile.TiffFile(path) as tif:
                first = tif.pages.first
                flavour = next((f for f in OPENSLIDE_FLAVOURS if getattr(first, f, False)), None)
                if flavour is not None:
                    return f"a {flavour[3:].upper()} file, laid out as only OpenSlide reads it"
                series = tif.series
                if not series:
                    return "the TIFF holds no image"
                page = series[0].keyframe
                if page.compression not in tifffile.TIFF.DECOMPRESSORS or page.dtype != np.uint8:
                    return (
                        f"compression {int(page.compression)} / pixel type {page.dtype} tifffile cannot read"
                    )
                return aperio_mismatch(tif) if first.is_svs else None
        except Exception as exc:
            # Not readable or not parseable by tifffile: another backend gets to try (and to report the error).
            return f"tifffile cannot parse it ({_reason(exc)})"

    def __init__(self, path: str | Path, *, mpp: MppArg = None, direct: bool = True) -> None:
        super().__init__(path, mpp=mpp)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        self._fd = -1
        try:
            with _capture_tifffile_errors() as log:
                self._tif = tifffile.TiffFile(self.path)
                try:
                    series = list(self._tif.series)
                except Exception:
                    self._tif.close()
                    raise
        except FileNotFoundError as exc:
            raise SlideError(self.path, "file not found") from exc
        except Exception as exc:  # TiffFileError, struct.error, OSError, ...
            raise SlideError(self.path, f"not a readable TIFF ({_reason(exc)})") from exc
        try:
            if log.errors:
                raise SlideError(self.path, f"damaged or truncated TIFF (tifffile: {log.errors[0]})")
            if not series:
                raise SlideError(self.path, "TIFF holds no image")
            self._series = series[0]
            self._levels = [_Level(self._series, k, direct) for k in range(len(self._series.levels))]
            self._size = os.path.getsize(self.path)
            for k, level in enumerate(self._levels):
                self._check_level_page(k, level)
            w0, h0 = self._levels[0].width, self._levels[0].height
            self._level_dimensions = tuple((lv.width, lv.height) for lv in self._levels)
            self._level_downsamples = tuple((w0 / lv.width + h0 / lv.height) / 2 for lv in self._levels)
            self._native_mpp = _read_mpp(self._tif, self._levels[0].page)
            self._associated = {
                s.name.strip().lower(): s
                for s in series[1:]
                if s.name and s.name.strip().lower() in _ASSOCIATED
            }
            self._properties = _properties(self._tif, self._levels[0].page)
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except SlideError:
            self._tif.close()
            raise
        except Exception as exc:
            self._tif.close()
            raise SlideError(self.path, f"cannot read the TIFF structure ({_reason(exc)})") from exc

    def _check_level_page(self, k: int, level: _Level) -> None:
        page = level.page
        if page.compression not in tifffile.TIFF.DECOMPRESSORS:
            raise SlideError(self.path, f"unsupported TIFF compression {int(page.compression)} (level {k})")
        if page.dtype != np.uint8:
            raise SlideError(
                self.path,
                f"pixel type {page.dtype} is not supported; cytolt reads 8-bit RGB slides (level {k})",
            )
        if level.samples not in (1, 3, 4):
            raise SlideError(self.path, f"{level.samples} samples per pixel is not RGB (level {k})")
        present = level.counts > 0
        if present.any():
            end = int((level.offsets[present] + level.counts[present]).max())
            if end > self._size:
                raise SlideError(
                    self.path,
                    f"file is truncated: level {k} image data ends at byte {end} "
                    f"but the file has {self._size} bytes",
                )

    # ----------------------------------------------------------------- metadata
    @property
    def properties(self) -> Mapping[str, str]:
        return self._properties

    @property
    def associated_images(self) -> tuple[str, ...]:
        return tuple(self._associated)

    def probe_regions(self) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
        """One tile per level to compare against another reader: (level, level-0 (x, y), (w, h)).

        The tile with the most compressed bytes (the most content, so a colour or IDCT difference shows), or the
        one at the origin where the downsample is not an integer: OpenSlide blends neighbouring pixels at a
        fractional level position, so only there both read the same level pixels."""
        out = []
        for k, lv in enumerate(self._levels):
            ds = self._level_downsamples[k]
            index = int(np.argmax(lv.counts)) if ds == int(ds) and len(lv.counts) == lv.rows * lv.cols else 0
            r, c = divmod(index, lv.cols) if lv.direct else (0, 0)
            x, y = c * lv.tile_w, r * lv.tile_h
            size = (min(lv.tile_w, lv.width - x, _PROBE_MAX), min(lv.tile_h, lv.height - y, _PROBE_MAX))
            out.append((k, (round(x * ds), round(y * ds)), size))
        return out

    # ----------------------------------------------------------------- reading
    def _read_region(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        ds = self._level_downsamples[level]
        xl, yl = math.floor(x / ds), math.floor(y / ds)
        lv = self._levels[level]
        if lv.direct:
            return self._read_direct(level, lv, xl, yl, w, h)
        return self._read_zarr(level, lv, xl, yl, w, h)

    def _read_direct(self, k: int, lv: _Level, xl: int, yl: int, w: int, h: int) -> np.ndarray:
        tw, th = lv.tile_w, lv.tile_h
        x0, y0 = max(xl, 0), max(yl, 0)
        x1, y1 = min(xl + w, lv.width), min(yl + h, lv.height)
        c0, c1, r0, r1 = x0 // tw, (x1 - 1) // tw, y0 // th, (y1 - 1) // th
        if (
            lv.samples == 3
            and (w, h) == (tw, th)
            and (xl, yl) == (c0 * tw, r0 * th)
            and (x1 - x0, y1 - y0) == (w, h)
        ):
            # The region is one whole tile inside the level: hand out the decoded array itself.
            tile = self._decode_tile(k, lv, r0 * lv.cols + c0)
            if tile is not None:
                return tile
        out = np.full((h, w, 3), 255, np.uint8)
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                tile = self._cached_tile(k, lv, r * lv.cols + c)
                if tile is None:  # a sparse (never written) tile stays white
                    continue
                tx, ty = c * tw, r * th
                ax0, ax1, ay0, ay1 = max(x0, tx), min(x1, tx + tw), max(y0, ty), min(y1, ty + th)
                piece = tile[ay0 - ty : ay1 - ty, ax0 - tx : ax1 - tx]
                out[ay0 - yl : ay1 - yl, ax0 - xl : ax1 - xl] = self._to_rgb(lv, piece)
        return out

    def _cached_tile(self, k: int, lv: _Level, index: int) -> np.ndarray | None:
        key = (k, index)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        tile = self._decode_tile(k, lv, index)
        with self._lock:
            self._cache[key] = tile
            if len(self._cache) > _TILE_CACHE:
                self._cache.popitem(last=False)
        return tile

    def _decode_tile(self, k: int, lv: _Level, index: int) -> np.ndarray | None:
        """Decoded tile ``index`` of level ``k`` as (tile_h, tile_w, samples), or None if never written."""
        self._check_open()
        count = int(lv.counts[index])
        if count == 0:
            return None
        offset = int(lv.offsets[index])
        where = f"level {k} tile ({index % lv.cols}, {index // lv.cols})"
        try:
            data = os.pread(self._fd, count, offset)
        except OSError as exc:
            raise SlideError(self.path, f"cannot read {where} ({_reason(exc)})") from exc
        if len(data) < count:
            raise SlideError(self.path, f"file is truncated: {where} needs {count} bytes at {offset}")
        try:
            segment, _, _ = lv.decode(data, index, jpegtables=lv.jpegtables)
        except Exception as exc:  # imagecodecs errors: corrupt JPEG/LZW/... data
            raise SlideError(self.path, f"corrupt tile data in {where} ({_reason(exc)})") from exc
        if segment is None:
            return None
        return segment.reshape(lv.tile_h, lv.tile_w, lv.samples)

    def _read_zarr(self, k: int, lv: _Level, xl: int, yl: int, w: int, h: int) -> np.ndarray:
        x0, y0 = max(xl, 0), max(yl, 0)
        x1, y1 = min(xl + w, lv.width), min(yl + h, lv.height)
        self._check_open()
        try:
            if lv.zarr is None:
                with self._lock:
                    if lv.zarr is None:
                        # Imported on first use: zarr takes ~0.5 s to import and most slides never need it, while
                        # every ``import cytolt.io`` imports this backend (the open_slide table).
                        import zarr

                        # fillvalue 255: tiles never written read as white, as on the direct path
                        lv.zarr = zarr.open(lv.pyramid.aszarr(level=lv.k, fillvalue=255), mode="r")
            block = _to_yxs(np.asarray(lv.zarr[_yx_slices(lv.axes, y0, y1, x0, x1)]), lv.axes)
        except SlideError:
            raise
        except Exception as exc:
            raise SlideError(
                self.path, f"cannot read level {k} region ({x0}, {y0})-({x1}, {y1}) ({_reason(exc)})"
            ) from exc
        rgb = self._to_rgb(lv, block)
        if (x0, y0, x1, y1) == (xl, yl, xl + w, yl + h):
            return np.ascontiguousarray(rgb)
        out = np.full((h, w, 3), 255, np.uint8)
        out[y0 - yl : y1 - yl, x0 - xl : x1 - xl] = rgb
        return out

    @staticmethod
    def _to_rgb(lv: _Level, pixels: np.ndarray) -> np.ndarray:
        if lv.samples == 3:
            return pixels
        if lv.samples == 1:
            return np.repeat(pixels.reshape(*pixels.shape[:2], 1), 3, axis=2)
        if lv.alpha == 2:
            return rgba_on_white(pixels)
        if lv.alpha == 1:  # premultiplied: on white, rgb + (255 - alpha)
            rgb = pixels[..., :3].astype(np.uint16) + (255 - pixels[..., 3:4].astype(np.uint16))
            return np.minimum(rgb, 255).astype(np.uint8)
        return np.ascontiguousarray(pixels[..., :3])

    def _read_associated(self, name: str) -> np.ndarray:
        series = self._associated[name]
        try:
            pixels = _to_yxs(series.asarray(), series.axes)
        except Exception as exc:
            raise SlideError(self.path, f"cannot read associated image {name!r} ({_reason(exc)})") from exc
        if pixels.shape[2] == 1:
            return np.repeat(pixels, 3, axis=2)
        if pixels.shape[2] == 4:
            return rgba_on_white(pixels)
        return np.ascontiguousarray(pixels[..., :3])

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._cache.clear()
        self._tif.close()


def aperio_mismatch(tif: tifffile.TiffFile) -> str | None:
    """Why tifffile would not read this Aperio SVS as OpenSlide's aperio driver does, or None if it would.

    OpenSlide makes every tiled page a level (the stripped ones are associated images), and paints a
    zero-length tile from the next finer level, marking the coarser tiles over it missing too; tifffile reads
    the stored tiles. So the levels must be the same pages, every level's tiles all present and its compression
    one of ``APERIO_EXACT_COMPRESSIONS``. (Whether the decoders then agree is what ``choose_backend`` checks.)
    """
    levels = [series.keyframe for series in tif.series[0].levels]
    tiled = [page for page in tif.pages if page.is_tiled]
    if [p.shape for p in tiled] != [p.shape for p in levels]:
        return f"tifffile sees {len(levels)} levels, OpenSlide {len(tiled)} tiled pages"
    for k, page in enumerate(levels):
        if int(page.compression) not in APERIO_EXACT_COMPRESSIONS:
            return f"level {k} compression {int(page.compression)} is decoded differently by OpenSlide"
        if page.dtype != np.uint8 or int(page.tiledepth) != 1 or int(page.planarconfig) != 1:
            return f"level {k} is not interleaved 8-bit tiles"
        missing = int((np.asarray(page.databytecounts) == 0).sum())
        if missing:
            return (
                f"level {k} has {missing} missing (zero-length) tiles; OpenSlide repaints them, and the coarser "
                "tiles over them, from the finer level"
            )
    return None


def _yx_slices(axes: str, y0: int, y1: int, x0: int, x1: int) -> tuple[slice, ...]:
    return tuple(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else slice(None) for a in axes)


def _to_yxs(block: np.ndarray, axes: str) -> np.ndarray:
    """A level's array with axes like 'YXS', 'YX', 'SYX' or 'CYX' -> (h, w, samples)."""
    if axes == "YXS":
        return block
    if axes == "YX":
        return block[..., None]
    if sorted(axes) == sorted("CYX") or sorted(axes) == sorted("SYX"):
        other = axes.replace("Y", "").replace("X", "")
        return np.moveaxis(block, axes.index(other), -1)
    raise ValueError(f"unsupported axes {axes!r}; expected YXS, YX, SYX or CYX")


def _read_mpp(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> tuple[float, float] | None:
    """(x, y) microns per pixel from OME metadata, the Aperio description, or resolution tags."""
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
            pixels = next(e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels")
            mpp = []
            for axis in ("X", "Y"):
                size = float(pixels.attrib[f"PhysicalSize{axis}"])
                unit = pixels.attrib.get(f"PhysicalSize{axis}Unit", "µm")
                mpp.append(size * _OME_UNITS_UM[unit])
            if all(v > 0 and math.isfinite(v) for v in mpp):
                return mpp[0], mpp[1]
        except (ET.ParseError, StopIteration, KeyError, ValueError):
            pass
    description = page.description or ""
    if description.startswith("Aperio"):
        match = _APERIO_MPP.search(description)
        if match:
            try:
                value = float(match.group(1))
            except ValueError:
                value = 0.0
            if value > 0:
                return value, value
    unit_tag = page.tags.get("ResolutionUnit")
    x_tag, y_tag = page.tags.get("XResolution"), page.tags.get("YResolution")
    if unit_tag is not None and x_tag is not None and y_tag is not None:
        um = _RESUNIT_UM.get(int(unit_tag.value))
        try:
            xres = x_tag.value[0] / x_tag.value[1]
            yres = y_tag.value[0] / y_tag.value[1]
        except (TypeError, IndexError, ZeroDivisionError):
            return None
        if um is not None and xres > 0 and yres > 0:
            return um / xres, um / yres
    return None


def _properties(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> dict[str, str]:
    if page.is_svs:
        vendor = "aperio"
    elif tif.is_ome:
        vendor = "ome-tiff"
    else:
        vendor = "generic-tiff"
    props = {"vendor": vendor, "tifffile.series": str(tif.series[0].kind)}
    software = page.tags.get("Software")
    if software is not None:
        props["tiff.Software"] = str(software.value)
    if vendor == "aperio":
        # "Aperio Image Library v12.0.0\r\n... |MPP = 0.25|AppMag = 40" -> aperio.MPP, aperio.AppMag
        for field in (page.description or "").split("|")[1:]:
            key, sep, value = field.partition("=")
            if sep:
                props[f"aperio.{key.strip()}"] = value.strip()
    return props
