"""scripts/lvis/collect.py: run records, and the results table filled from fake run folders."""

from __future__ import annotations

import json
import re

import pytest

from tests.lvis.conftest import load_script

collect = load_script("collect")


def _metrics(ap: float, apr: float) -> dict:
    return {"AP": ap, "APr": apr, "AP50": 0.5}


def _scores(box: float, mask: float | None, *, apr: float = 0.05, fixed_shift: float = 0.01) -> dict:
    out = {"bbox": {"standard": _metrics(box, apr), "fixed": _metrics(box + fixed_shift, apr)}}
    if mask is not None:
        out["segm"] = {"standard": _metrics(mask, apr), "fixed": _metrics(mask + fixed_shift, apr)}
    return out


def _run(work, method: str, scores: dict | None, *, gpus: int = 8, commit: str = "0123456789abcdef") -> None:
    folder = work / method
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(
        json.dumps(
            {"commit": commit, "config_sha256": "f" * 64, "gpus": gpus, "date": "2026-12-01T10:00:00+00:00"}
        )
    )
    if scores is not None:
        (folder / "eval_epoch_12").mkdir()
        (folder / "eval_epoch_12" / "scores.json").write_text(json.dumps(scores))


def _row(table: str, method: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| `{method}` |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_fills_cytolt_columns_from_run_folders(tmp_path):
    work = tmp_path / "work"
    _run(work, "rfs_mmdet", _scores(0.2251, 0.2169, apr=0.121))
    _run(work, "rfs", None, gpus=4)  # trained, used by norcal, not evaluated itself
    (work / "norcal" / "eval_epoch_12").mkdir(parents=True)
    (work / "norcal" / "eval_epoch_12" / "scores.json").write_text(json.dumps(_scores(0.23, 0.224)))
    _run(work, "atss", _scores(0.25, None))
    table = collect.render_table(work)
    rfs_mmdet = _row(table, "rfs_mmdet")
    assert rfs_mmdet[1:3] == ["22.5", "21.7"] and "lvis/metafile.yml" in rfs_mmdet[3]
    assert rfs_mmdet[4:7] == ["22.5", "21.7 (12.1)", "23.5 / 22.7"]
    assert (
        "`0123456789`" in rfs_mmdet[7]
        and "cfg `ffffffffffff`" in rfs_mmdet[7]
        and "8 GPU, 2026-12-01" in rfs_mmdet[7]
    )
    assert _row(table, "rfs")[4:8] == ["not run"] * 4  # no scores: not run, whatever else the folder holds
    norcal = _row(table, "norcal")
    assert norcal[4] == "23.0" and "4 GPU" in norcal[7]  # NorCal's run is the rfs training run
    atss = _row(table, "atss")
    assert atss[4:7] == ["25.0", "n/a", "26.0"]
    assert _row(table, "eql")[1:3] == ["—", "18.6 (2.1)"] and _row(table, "eqlv2")[1:3] == [
        "24.2",
        "23.7 (14.9)",
    ]
    assert _row(table, "gol")[4] == "not run"
    assert {m for m in re.findall(r"^\| `(\w+)` \|", table, flags=re.M)} == {r.method for r in collect.ROWS}


def test_every_row_is_a_train_sh_method():
    table = dict(re.findall(r"\[(\w+)\]=(\w+)", (collect.ROOT / "scripts/lvis/_common.sh").read_text()))
    assert {r.method for r in collect.ROWS} == set(table)


def test_update_doc_replaces_only_between_the_markers(tmp_path):
    doc = tmp_path / "lvis.md"
    doc.write_text(f"# head\n\n{collect.BEGIN}\nold table\n{collect.END}\n\ntail\n")
    text = collect.update_doc(doc, tmp_path / "no_runs")
    assert text.startswith("# head\n\n") and text.endswith("\n\ntail\n") and "old table" not in text
    assert _row(text, "random")[4] == "not run"
    doc.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        collect.update_doc(doc, tmp_path)


def test_bad_scores_name_the_file(tmp_path):
    work = tmp_path / "work"
    _run(work, "eql", {"bbox": {"standard": _metrics(0.2, 0.1)}})
    with pytest.raises(ValueError, match=r"eval_epoch_12/scores.json: bbox lacks"):
        collect.render_table(work)
    (work / "eql" / "eval_epoch_12" / "scores.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        collect.render_table(work)


def test_run_record_holds_commit_config_hash_gpus_and_date(tmp_path):
    config = tmp_path / "run_config.py"
    config.write_text("x = 1\n")
    record = json.loads(
        collect.write_run_record(tmp_path / "run", method="rfs", config=config, gpus=8).read_text()
    )
    assert record["config_sha256"] == collect.config_hash(config) and len(record["config_sha256"]) == 64
    assert record["gpus"] == 8 and record["method"] == "rfs" and record["date"][:2] == "20"
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", record["commit"])
