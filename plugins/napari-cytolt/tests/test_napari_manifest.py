"""The npe2 manifest: valid, shipped inside the package, every command importable; the sample data."""

from __future__ import annotations

import importlib
from importlib import metadata, resources

import napari_cytolt._sample_data as sample_data

from cytolt.io.errors import UNSUPPORTED_FORMATS
from cytolt.io.formats import SLIDE_SUFFIXES


def test_npe2_validate_passes_with_imports():
    # what `npe2 validate napari-cytolt --imports` runs, in this process (a subprocess re-imports torch: 6 s)
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-cytolt")  # schema validation happens here
    manifest.validate_imports()
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.id


def test_manifest_is_packaged_and_registered():
    assert resources.files("napari_cytolt").joinpath("napari.yaml").is_file()
    [entry] = [ep for ep in metadata.entry_points(group="napari.manifest") if ep.name == "napari-cytolt"]
    assert entry.value == "napari_cytolt:napari.yaml"


def test_manifest_contributes_reader_widget_writers_and_sample():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-cytolt")
    contrib = manifest.contributions
    [reader] = contrib.readers
    # the slide patterns are the one table of slide suffixes, less the formats no backend reads
    readable = {f"*{s}" for s in SLIDE_SUFFIXES if s not in UNSUPPORTED_FORMATS}
    assert reader.accepts_directories and set(reader.filename_patterns) == readable | {
        "*.sqlite",
        "*.geojson",
    }
    assert {(w.layer_types[0], w.filename_extensions[0]) for w in contrib.writers} == {
        ("points", ".geojson"),
        ("shapes", ".geojson"),
        ("points", ".csv"),
        ("shapes", ".csv"),
    }
    assert [w.display_name for w in contrib.widgets] == ["Review detections"]
    assert [s.key for s in contrib.sample_data] == ["hsil_run"]


def test_sample_data_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYTOLT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sample_data, "SAMPLE_SIZE", (1024, 768))  # the real sample is 8192 x 6144
    layers = sample_data.sample_run()
    assert [kind for _, _, kind in layers] == ["image", "points"]
    store = sample_data.sample_cache_dir() / "run" / "run.sqlite"
    assert store.is_file() and str(tmp_path / "cache") in str(store)
    assert layers[0][0][0].shape == (768, 1024, 3)
    assert len(layers[1][0]) > 0
    stamp = store.stat().st_mtime_ns
    again = sample_data.sample_run()
    assert store.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert len(again[1][0]) == len(layers[1][0])
    assert not list(sample_data.sample_cache_dir().glob(".building-*"))  # no half-built leftovers
