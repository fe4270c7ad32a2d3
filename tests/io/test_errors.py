"""SlideError: names the file and the cause, survives pickling (process workers), detects vendor formats."""

from __future__ import annotations

import pickle
from pathlib import Path

from cytolt.io.errors import SlideError, unsupported_format


def test_message_names_file_and_cause() -> None:
    err = SlideError(Path("/data/a.svs"), "file is truncated")
    assert str(err) == "/data/a.svs: file is truncated"
    assert (err.path, err.cause) == ("/data/a.svs", "file is truncated")


def test_pickles_with_its_fields() -> None:
    err = pickle.loads(pickle.dumps(SlideError("b.tiff", "corrupt tile data")))
    assert isinstance(err, SlideError)
    assert (err.path, err.cause, str(err)) == ("b.tiff", "corrupt tile data", "b.tiff: corrupt tile data")


def test_unsupported_format_by_extension_and_tag(tmp_path: Path) -> None:
    plain = tmp_path / "x.tiff"
    plain.write_bytes(b"II*\x00" + b"\x00" * 12)
    assert unsupported_format(plain) is None
    upper = tmp_path / "X.SDPC"
    upper.write_bytes(b"")
    assert unsupported_format(upper)[0] == "Shengqiang SDPC"
    renamed = tmp_path / "y.dat"
    renamed.write_bytes(b"\xf1\x01\xee\xeeKFBF" + b"\x00" * 8)
    assert unsupported_format(renamed)[0] == "KFBio KFB"
    assert unsupported_format(tmp_path / "missing.dat") is None
