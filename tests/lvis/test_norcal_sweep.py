"""scripts/lvis/norcal_sweep.py: gamma chosen on val from each gamma's scores, written next to the run, read back
by evaluate.sh norcal."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.lvis.conftest import SCRIPTS, load_script

sweep_mod = load_script("norcal_sweep")


def _scores(segm_ap: float, bbox_ap: float = 0.1) -> dict:
    return {
        t: {"standard": {"AP": ap}, "fixed": {"AP": ap}} for t, ap in (("segm", segm_ap), ("bbox", bbox_ap))
    }


def test_sweep_keeps_the_best_gamma_and_the_smaller_of_ties():
    aps = {0.0: 0.20, 0.4: 0.23, 0.6: 0.23, 1.0: 0.21}
    seen = []

    def evaluate(gamma):
        seen.append(gamma)
        return _scores(aps[gamma])

    gamma, table = sweep_mod.sweep(list(aps), evaluate)
    assert seen == list(aps) and table == aps
    assert gamma == 0.4  # 0.4 and 0.6 tie at 0.23: the smaller gamma
    gamma, _ = sweep_mod.sweep([0.0, 1.0], lambda g: _scores(0.2, bbox_ap=0.3 if g else 0.1), metric="bbox")
    assert gamma == 1.0
    with pytest.raises(ValueError, match="no 'segm' scores"):
        sweep_mod.sweep([0.0], lambda g: {"bbox": _scores(0.1)["bbox"]})


def test_gamma_list_is_checked():
    assert sweep_mod.parse_gammas("0, 0.5,1") == [0.0, 0.5, 1.0]
    for bad in ("", "a,b", "-0.1", "0.5,0.5"):
        with pytest.raises(ValueError, match="--gammas"):
            sweep_mod.parse_gammas(bad)


def test_choice_is_written_next_to_the_checkpoint_and_read_back(tmp_path):
    ckpt = tmp_path / "rfs" / "epoch_12.pth"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    assert sweep_mod.chosen_gamma(ckpt) is None
    path = sweep_mod.write_choice(ckpt, 0.4, {0.0: 0.2, 0.4: 0.23}, "segm")
    record = json.loads(path.read_text())
    assert path == tmp_path / "rfs" / "norcal_gamma.json"
    assert (
        record["gamma"] == 0.4
        and record["sweep"] == {"0": 0.2, "0.4": 0.23}
        and record["split"] == "LVIS v1 val"
    )
    assert sweep_mod.chosen_gamma(ckpt) == 0.4
    # The command evaluate.sh runs prints it.
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "norcal_sweep.py"), "chosen", str(ckpt)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip() == "0.4"
    path.write_text("{}")
    with pytest.raises(ValueError, match="norcal_gamma.json"):
        sweep_mod.chosen_gamma(ckpt)
