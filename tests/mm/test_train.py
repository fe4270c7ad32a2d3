"""cytolt train / export-model / eval and the mmdet Detector on a tiny generated set (CPU, a few iterations)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")

from tests.mm.conftest import CONFIG, ROOT, SHORT  # noqa: E402  (the run and model: tests/mm/conftest.py)


def _loss_state(path: Path) -> dict[str, torch.Tensor]:
    from cytolt.mm._torch_load import trusted_torch_load

    with trusted_torch_load(path):
        state = torch.load(path, map_location="cpu")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("bbox_head.loss_cls.")}


def test_checkpoint_holds_loss_state(tiny_run):
    state = _loss_state(tiny_run / "iter_4.pth")
    assert state, "Grad-Libra's buffers must be in the checkpoint"
    assert any(v.abs().sum() > 0 for v in state.values()), "the statistics were updated by training"


def test_resume_restores_loss_state(tiny_run, tiny_tct, tmp_path):
    import shutil

    from cytolt.mm.train import train

    work = tmp_path / "resumed"
    shutil.copytree(tiny_run, work)
    (work / "last_checkpoint").write_text(str(work / "iter_2.pth"))
    expected = _loss_state(work / "iter_2.pth")
    options = dict(SHORT, **{"train_cfg.max_iters": 2, "train_cfg.val_interval": 100})
    # max_iters equal to the checkpoint's iteration: resuming loads the state and trains no further step.
    from mmengine.runner import Runner

    from cytolt.mm.train import load_config

    cfg = load_config(CONFIG, work_dir=work, data_root=tiny_tct, cfg_options=options)
    cfg.resume = True
    runner = Runner.from_cfg(cfg)
    runner.train()
    loss = runner.model.bbox_head.loss_cls
    for name, value in expected.items():
        assert torch.equal(loss.state_dict()[name.removeprefix("bbox_head.loss_cls.")], value), name
    assert runner.iter == 2
    del train


def test_export_loads_without_unpickling(tiny_model):
    from safetensors.torch import load_file

    from cytolt.detect import ModelFolder
    from cytolt.synth import CLASSES

    out = tiny_model
    weights = load_file(str(out / "model.safetensors"))
    assert any(k.startswith("bbox_head.loss_cls.") for k in weights)
    info = ModelFolder.read(out).info
    assert info.classes == CLASSES
    assert info.mpp == pytest.approx(0.5)
    assert info.train_instances is not None and len(info.train_instances) == len(CLASSES)


def test_export_refuses_foreign_checkpoint(tiny_run, tmp_path):
    from cytolt.mm.train import export_model

    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes((tiny_run / "iter_4.pth").read_bytes())
    with pytest.raises(ValueError, match="not inside"):
        export_model(tiny_run, tmp_path / "model", checkpoint=foreign)


def test_detector_predicts_on_uint8_batches(tiny_model):
    from cytolt.detect import Detections, Detector, load

    detector = load(tiny_model, "cpu", score_thr=0.0)
    assert isinstance(detector, Detector)
    images = torch.randint(
        0, 256, (2, 3, 128, 160), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    out = detector.predict(images)
    assert len(out) == 2 and all(isinstance(d, Detections) for d in out)
    for d in out:
        if len(d):
            assert d.boxes[:, 2].max() <= 160 + 1 and d.boxes[:, 3].max() <= 128 + 1
            assert int(d.labels.max()) < len(detector.info.classes)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        detector.predict(images[0])


def test_load_names_a_folder_that_is_not_a_model(tmp_path):
    from cytolt.detect import load

    with pytest.raises(FileNotFoundError, match="model.json"):
        load(tmp_path)


def test_eval_cli_reads_safetensors_and_state_dicts(tiny_model, tiny_tct, tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from cytolt.cli import main

    model_dir = tiny_model
    plain = tmp_path / "state_dict.pth"
    torch.save(load_file(str(model_dir / "model.safetensors")), plain)
    results = {}
    for ckpt in (model_dir / "model.safetensors", plain):
        out = tmp_path / f"{ckpt.suffix}.json"
        result = CliRunner().invoke(
            main, ["eval", str(CONFIG), str(ckpt), "--data-root", str(tiny_tct), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert "lt/APr" in result.output
        results[ckpt.suffix] = out.read_text()
    assert results[".safetensors"] == results[".pth"]


def test_eval_points_training_checkpoints_to_export(tiny_run):
    from cytolt.mm.evaluate import load_weights

    with pytest.raises(ValueError, match="export-model"):
        load_weights(tiny_run / "iter_4.pth")


def test_eval_rejects_a_pickle_with_code(tmp_path):
    import pickle

    from cytolt.mm.evaluate import load_weights

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(ValueError, match="weights-only"):
        load_weights(path)


def test_shorter_run_moves_the_schedule_with_it():
    from cytolt.mm.train import load_config

    cfg = load_config(CONFIG, cfg_options=["train_cfg.max_iters=300"])
    cosine = [s for s in cfg.param_scheduler if s["type"] == "CosineAnnealingLR"][0]
    assert cosine["T_max"] == 300 and cosine["end"] == 300
    assert cfg.train_cfg.val_interval == 300
    warmup = [s for s in cfg.param_scheduler if s["type"] == "LinearLR"][0]
    assert warmup["end"] == 50  # not tied to max_iters: unchanged


def test_quiet_training_shows_a_progress_bar_instead_of_mmengine_logs(tiny_tct, tmp_path, capfd):
    from cytolt.mm.train import train

    options = {**SHORT, "train_cfg.max_iters": 3, "train_cfg.val_interval": 3}
    train(CONFIG, work_dir=tmp_path / "quiet", data_root=tiny_tct, cfg_options=options, quiet=True)
    out, err = capfd.readouterr()
    assert "3/3" in err and "training" in err  # the bar reached the end
    assert "Config:" not in out + err and "Iter(train)" not in out + err  # no config dump, no log lines
    assert "lt/AP" not in out + err  # validation metrics go to the run folder's logs, not the console


def test_train_classes_come_from_the_config_or_its_dataset_class():
    from mmengine.config import Config

    from cytolt.mm.train import train_classes, train_dataset_cfg
    from cytolt.synth import CLASSES

    assert train_classes(Config.fromfile(str(CONFIG))) == list(CLASSES)  # metainfo in the TCT base
    # LVIS configs name no classes: LVISV1Dataset's own 1,203
    lvis = Config.fromfile(str(ROOT / "configs" / "lvis" / "mask_rcnn_r50_fpn_rfs_1x.py"))
    classes = train_classes(lvis)
    assert len(classes) == 1203 and classes[0] == "aerosol_can"
    # ... also behind a dataset wrapper (mmdet's ClassBalancedDataset form of RFS)
    wrapped = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type="ClassBalancedDataset",
                    oversample_thr=1e-3,
                    dataset=lvis.train_dataloader.dataset.to_dict(),
                )
            )
        )
    )
    assert train_dataset_cfg(wrapped).type == "LVISV1Dataset"
    assert train_classes(wrapped) == classes
    bad = Config(dict(train_dataloader=dict(dataset=dict(type="NoSuchDataset", ann_file="a.json"))))
    with pytest.raises(ValueError, match="cannot tell the classes"):
        train_classes(bad)
