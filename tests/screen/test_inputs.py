"""Tests of cytolt.screen.inputs: slides from files, folders, globs and CSV lists; the model identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytolt.screen.inputs import collect_slides


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    """A folder with slides of several formats, and files that are no slides."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in (
        "b.svs",
        "a.tiff",
        "c.ome.tif",
        "d.NDPI",
        "e.kfb",
        "notes.txt",
        "a.tiff.cells.json",
        ".hidden.svs",
    ):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.svs").write_bytes(b"x")
    return folder


def test_a_folder_gives_its_slide_files_sorted(scans: Path) -> None:
    names = [p.name for p in collect_slides([scans])]
    # not recursive; hidden files, ground truth and notes left out; KFB kept so the run says it is unsupported
    assert names == ["a.tiff", "b.svs", "c.ome.tif", "d.NDPI", "e.kfb"]
    assert all(p.is_absolute() for p in collect_slides([scans]))


def test_order_is_kept_and_repeats_dropped(scans: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "gone.svs"
    got = collect_slides(["scans/b.svs", str(scans), scans / "b.svs", missing, "scans/sub/deep.svs"])
    assert [p.name for p in got] == [
        "b.svs",
        "a.tiff",
        "c.ome.tif",
        "d.NDPI",
        "e.kfb",
        "gone.svs",
        "deep.svs",
    ]
    assert got[5] == missing  # a missing slide is kept: the run records it as failed ("file not found")


def test_a_glob_keeps_matching_slide_files(scans: Path) -> None:
    assert [p.name for p in collect_slides([str(scans / "*.t*")])] == ["a.tiff", "c.ome.tif"]
    assert [p.name for p in collect_slides([str(scans / "**" / "*.svs")])] == ["b.svs", "deep.svs"]
    assert [p.name for p in collect_slides([str(scans / "[ab].*")])] == ["a.tiff", "b.svs"]


def test_csv_lists(scans: Path, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    # header with a "path" column anywhere; relative paths resolved against the list's folder
    (lists / "with_path.csv").write_text("label,path\nHSIL,../scans/b.svs\nNILM,../scans/a.tiff\n")
    # no header at all: first column
    (lists / "bare.csv").write_text(f"{scans / 'a.tiff'},x\n../scans/missing.svs\n")
    # a header without "path": first column, header skipped
    (lists / "slide_label.csv").write_text("slide,label\n../scans/d.NDPI,ASCUS\n\n")
    assert [p.name for p in collect_slides([lists / "with_path.csv"])] == ["b.svs", "a.tiff"]
    assert collect_slides([lists / "with_path.csv"])[0] == (lists / "../scans/b.svs").absolute()
    assert [p.name for p in collect_slides([lists / "bare.csv"])] == ["a.tiff", "missing.svs"]
    assert [p.name for p in collect_slides([lists / "slide_label.csv"])] == ["d.NDPI"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "slide list is empty"),
        ("path,label\n", "has a header but no slides"),
        ("label,path\nHSIL\n", "line 2: no slide path in column 2"),
        ('path\n"unclosed\n', "not a readable CSV"),
    ],
)
def test_bad_csv_lists_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "list.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        collect_slides([path])
    assert str(path) in str(info.value)


def test_inputs_that_name_no_slide_are_errors(scans: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("")
    with pytest.raises(ValueError, match=f"{empty}: folder holds no slide file"):
        collect_slides([empty])
    with pytest.raises(ValueError, match="pattern matches no slide file"):
        collect_slides([str(scans / "*.mrxs")])
    with pytest.raises(ValueError, match="slide list not found"):
        collect_slides([tmp_path / "nowhere.csv"])
