"""scripts/classify_benchmark.py at toy size: runs write their files, stage-2 methods start from the same seed's
`ce` model, finished runs are skipped by their config hash, and the table and paired gains come from the files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _script(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "classify_benchmark", ROOT / "scripts" / "classify_benchmark.py"
    )
    cb = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, cb)
    spec.loader.exec_module(cb)
    monkeypatch.setattr(cb, "WORK", tmp_path / "work")
    monkeypatch.setattr(cb, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(cb, "OUT", tmp_path / "out")
    (tmp_path / "out").mkdir()
    small = dict(size=24, mpp=2.0)
    monkeypatch.setattr(
        cb,
        "DATA",
        {
            "train": dict(imbalance=10.0, head=12, seed=0, **small),
            "val": dict(per_class=2, seed=1, **small),
            "test": dict(per_class=3, seed=2, **small),
        },
    )
    monkeypatch.setattr(cb, "EPOCHS", {1: 1, 2: 1})
    monkeypatch.setattr(cb, "TRAIN", dict(batch_size=16, lr=1e-3, width=2))
    monkeypatch.setattr(cb, "N_RESAMPLES", 40)
    monkeypatch.setattr(cb, "SEEDS", (0,))
    return cb


def test_runs_resume_and_summarise(monkeypatch, tmp_path):
    cb = _script(monkeypatch, tmp_path)
    plan = cb.plan()
    assert plan[0] == ("ce", 0) and {m for m, _ in plan} >= set(cb.METHODS)
    assert cb.status("crt", 0) == "missing"

    cb.run_one("crt", 0)  # a stage-2 method first: the ce model of seed 0 is trained and kept for it
    kept = cb.WORK / "models" / "ce_s0"
    assert (kept / "classifier.safetensors").is_file()
    cb.run_one("ce", 0)
    rec = json.loads(cb.result_path("ce", 0).read_text())
    assert rec["stage"] == 1 and rec["config_hash"] == cb.config_hash("ce", 0)
    assert set(rec["intervals"]) >= {"accuracy", "balanced_accuracy"}
    probs = np.load(cb.RUNS / rec["predictions_file"])["probs"]
    assert probs.shape == (3 * 11, 11)
    assert json.loads(cb.result_path("crt", 0).read_text())["stage"] == 2
    assert cb.status("ce", 0) == "done" and cb.status("crt", 0) == "done"

    monkeypatch.setattr(cb, "EPOCHS", {1: 2, 2: 1})  # another budget: every result is stale
    assert cb.status("ce", 0) == "stale" and cb.status("crt", 0) == "stale"
    monkeypatch.setattr(cb, "EPOCHS", {1: 1, 2: 1})

    table = cb.summarise(quiet=True)
    assert set(table) == {"ce", "crt"} and "gain" in table["crt"] and "gain" not in table["ce"]
    gain = table["crt"]["gain"]["balanced_accuracy"]
    point = table["crt"]["balanced_accuracy"]["value"] - table["ce"]["balanced_accuracy"]["value"]
    assert abs(gain["value"] - point) < 1e-9 and gain["low"] <= gain["value"] <= gain["high"]
    page = (cb.OUT / "classify.md").read_text()
    assert "| `crt` | 2 | 1 |" in page and "Not yet run" in page and (cb.OUT / "classify.png").is_file()


def test_resampled_metrics_match_a_hand_count():
    spec = importlib.util.spec_from_file_location("cb_plain", ROOT / "scripts" / "classify_benchmark.py")
    cb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cb)
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 0, 2]]  # recalls 0.5, 1, 0.5
    counts = [200, 50, 5]  # many, medium, few
    point = cb.point_metrics(probs, labels, counts)
    np.testing.assert_allclose(point, [4 / 6, 2 / 3, 0.5, 1.0, 0.5])
    samples = cb.resampled_metrics(probs, labels, counts)
    assert samples.shape == (cb.N_RESAMPLES, 5)
    from cytolt.evaluate.bootstrap import resample_weights

    weights = resample_weights(len(labels), cb.N_RESAMPLES, cb.RESAMPLE_SEED)
    checked = 0
    for row, w in zip(samples, weights, strict=True):
        drawn = np.repeat(np.arange(len(labels)), w)  # the resample as a crop list, duplicates included
        if len(set(labels[drawn])) == 3:  # every class drawn: the point metrics of that list
            np.testing.assert_allclose(row, cb.point_metrics(probs[drawn], labels[drawn], counts))
            checked += 1
    assert checked > 100
