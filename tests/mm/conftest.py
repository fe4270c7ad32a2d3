"""Shared by tests/mm: one tiny generated TCT set, one short Grad-Libra RetinaNet training on it, and that run
exported the way a user exports it (``cytolt export-model``, ONNX included), each made once per session.

test_train.py checks the run and the exported folder, test_onnx_export.py the folder's ONNX engine against torch;
they only read them (a test that changes a run copies it first).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "tct" / "retinanet_r18_gradlibra.py"
# Four iterations: a checkpoint at 2 (test_resume_restores_loss_state resumes from it) and at 4, validated at 4.
SHORT = {
    "train_cfg.max_iters": 4,
    "train_cfg.val_interval": 4,
    "train_dataloader.batch_size": 2,
    "default_hooks.checkpoint.interval": 2,
    "default_hooks.logger.interval": 1,
}


@pytest.fixture(scope="session")
def tiny_tct(tmp_path_factory) -> Path:
    """24 generated 128-px patches, 12 / 6 / 6 for train / val / test."""
    from cytolt.synth import make_patch_dataset

    out = tmp_path_factory.mktemp("tct")
    make_patch_dataset(out, images=24, size=128, imbalance=10, seed=5, split=(0.5, 0.25, 0.25))
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_tct) -> Path:
    """The work dir of ``CONFIG`` trained ``SHORT`` on ``tiny_tct``."""
    import torch

    from cytolt.mm.train import train

    torch.set_num_threads(1)
    return train(CONFIG, work_dir=tmp_path_factory.mktemp("run"), data_root=tiny_tct, cfg_options=SHORT)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_run) -> Path:
    """``tiny_run`` through ``cytolt export-model`` with its default --onnx (export, check against torch, timing)."""
    from click.testing import CliRunner

    from cytolt.cli import main

    out = tmp_path_factory.mktemp("exported") / "model"
    result = CliRunner().invoke(main, ["export-model", str(tiny_run), str(out)])
    assert result.exit_code == 0, result.output
    assert "engine: " in result.output and "ms/tile" in result.output
    return out
