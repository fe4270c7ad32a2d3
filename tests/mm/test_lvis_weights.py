"""cytolt/mm/lvis_weights.py: a full-data LVIS run refuses to start without verified ImageNet weights, through
cytolt.mm.train.train, ``cytolt train`` and scripts/lvis/train.sh alike; the verified file is recorded."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("mmdet")

from click.testing import CliRunner  # noqa: E402
from mmengine.config import Config  # noqa: E402

from cytolt.mm.lvis_weights import (  # noqa: E402
    RECORD_NAME,
    BackboneWeightsError,
    check_backbone_weights,
    file_sha256,
    write_weights_record,
)

ROOT = Path(__file__).resolve().parents[2]
RFS = ROOT / "configs" / "lvis" / "mask_rcnn_r50_fpn_rfs_1x.py"


def _cfg(checkpoint: str | None, **spec) -> Config:
    init = None if checkpoint is None else dict(type="Pretrained", checkpoint=checkpoint)
    weights = dict(
        name="w-abcd.pth", url="https://example.org/w-abcd.pth", sha256_prefix="abcd", version="v1"
    )
    weights.update(spec)
    return Config(dict(backbone_weights=weights, model=dict(backbone=dict(type="ResNet", init_cfg=init))))


@pytest.fixture
def weights_file(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "w.pth"
    path.write_bytes(b"not really weights, but bytes with a known digest")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_sha256_reads_in_chunks(tmp_path):
    path = tmp_path / "big"
    data = os.urandom(3 * (1 << 20) + 17)  # more than one chunk, not a multiple of it
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_configs_without_a_spec_or_on_the_mini_set_are_not_checked():
    assert check_backbone_weights(Config(dict(model=dict(backbone=dict(init_cfg=None))))) is None
    assert check_backbone_weights(_cfg(None, required=False)) is None


def test_a_random_backbone_is_refused_naming_what_to_fetch():
    with pytest.raises(BackboneWeightsError) as err:
        check_backbone_weights(_cfg(None))
    message = str(err.value)
    assert "w-abcd.pth" in message and "https://example.org/w-abcd.pth" in message and "abcd" in message
    assert "--allow-random-init" in message and "PRETRAINED=" in message


def test_allow_random_init_records_a_random_start():
    record = check_backbone_weights(_cfg(None), allow_random_init=True)
    assert record["file"] is None and "random" in record["version"]


def test_remote_missing_and_wrong_files_are_refused(tmp_path, weights_file):
    with pytest.raises(BackboneWeightsError, match="local file"):
        check_backbone_weights(_cfg("torchvision://resnet50"))
    with pytest.raises(BackboneWeightsError, match="not found"):
        check_backbone_weights(_cfg(str(tmp_path / "absent.pth")))
    path, digest = weights_file
    wrong_prefix = "0000" if not digest.startswith("0000") else "1111"
    with pytest.raises(BackboneWeightsError, match=digest):
        check_backbone_weights(_cfg(str(path), sha256_prefix=wrong_prefix), allow_random_init=True)
    with pytest.raises(BackboneWeightsError, match="truncated"):  # prefix right, full digest wrong
        check_backbone_weights(_cfg(str(path), sha256_prefix=digest[:8], sha256="f" * 64))
    size = path.stat().st_size
    with pytest.raises(BackboneWeightsError, match=f"{size:,} bytes where w-abcd.pth has {size + 1:,}"):
        check_backbone_weights(_cfg(str(path), sha256_prefix=digest[:8], sha256=digest, bytes=size + 1))
    assert check_backbone_weights(_cfg(str(path), sha256_prefix=digest[:8], sha256=digest, bytes=size))


def test_a_verified_file_is_recorded_in_the_run_folder(tmp_path, weights_file, monkeypatch):
    path, digest = weights_file
    record = check_backbone_weights(_cfg(str(path), sha256_prefix=digest[:8], sha256=digest))
    assert record["sha256"] == digest and record["file"] == str(path.resolve()) and record["version"] == "v1"
    out = write_weights_record(tmp_path / "run", record)
    saved = json.loads(out.read_text())
    assert out.name == RECORD_NAME and saved["sha256"] == digest and "checked_at" in saved
    monkeypatch.setenv("RANK", "1")  # other ranks leave the file to rank 0
    assert write_weights_record(tmp_path / "run2", record) is None and not (tmp_path / "run2").exists()


def test_every_lvis_config_names_torchvisions_resnet50():
    for path in sorted((ROOT / "configs" / "lvis").glob("*.py")):
        spec = Config.fromfile(str(path)).backbone_weights
        assert (spec.name, spec.sha256_prefix, spec.required, spec.bytes) == (
            "resnet50-0676ba61.pth",
            "0676ba61",
            True,
            102_530_333,
        ), path
        assert len(spec.sha256) == 64 and spec.sha256.startswith(spec.sha256_prefix), path


# ---------------------------------------------------------------------------------------------- entry points


def test_train_refuses_before_reading_any_data(tmp_path):
    """The check runs before the data check: the data root here does not even exist."""
    from cytolt.mm.train import train

    with pytest.raises(BackboneWeightsError, match="resnet50-0676ba61.pth"):
        train(RFS, work_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cytolt_train_refuses_with_a_clear_message(tmp_path):
    from cytolt.cli.train import train

    result = CliRunner().invoke(train, [str(RFS), "--work-dir", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert "refusing a full-data LVIS run" in result.output and "0676ba61" in result.output
    assert "Traceback" not in result.output
    assert "--allow-random-init" in CliRunner().invoke(train, ["--help"]).output


def _train_sh(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, WORK_DIRS=str(tmp_path / "work"), LVIS_ROOT=str(tmp_path / "lvis"), **env)
    full_env.pop("PRETRAINED", None)
    return subprocess.run(
        ["bash", "scripts/lvis/train.sh", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=full_env,
    )


def test_train_sh_refuses_without_weights_and_at_another_batch_without_an_lr_rule(tmp_path):
    done = _train_sh(tmp_path, "rfs_mmdet", "1")
    assert done.returncode == 2, done.stderr
    assert "total batch 1 GPUs x 2 images = 2" in done.stderr and "LR=scale" in done.stderr

    done = _train_sh(tmp_path, "rfs_mmdet", "1", LR="keep")
    assert done.returncode == 1, done.stderr
    assert "refusing a full-data LVIS run" in done.stderr and "resnet50-0676ba61.pth" in done.stderr
    assert "lr 0.02" in done.stdout  # the lr it would have trained with is printed
    run = json.loads((tmp_path / "work" / "rfs_mmdet" / "run.json").read_text())
    assert run["gpus"] == 1 and run["method"] == "rfs_mmdet" and len(run["config_sha256"]) == 64


def test_the_suggested_run_config_route_reaches_the_file_check(tmp_path):
    """lvis_tools.py config --pretrained (what the error suggests for cytolt train) points init_cfg at the file,
    and a file that is not torchvision's ResNet-50 is refused (by its size, checked before its SHA-256)."""
    from cytolt.mm.train import train
    from tests.lvis.conftest import load_script

    fake = tmp_path / "resnet50-0676ba61.pth"
    fake.write_bytes(b"a file with the right name and the wrong bytes")
    run_config = load_script("lvis_tools").write_run_config(RFS, tmp_path / "run.py", pretrained=fake)
    assert Config.fromfile(str(run_config)).model.backbone.init_cfg.checkpoint == str(fake)
    with pytest.raises(BackboneWeightsError, match="bytes where resnet50-0676ba61.pth has 102,530,333"):
        train(run_config, work_dir=tmp_path / "work")
