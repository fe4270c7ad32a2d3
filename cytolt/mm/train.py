"""Train an mmdet config with mmengine's Runner (``cytolt train``), and export the result for screening.

glossary:
    work_dir   the run folder mmengine writes: the dumped config, checkpoints, logs, ``last_checkpoint``.
    model dir  what ``export_model`` writes and ``cytolt.detect.load`` reads: ``config.py``,
               ``model.safetensors`` (weights and loss state buffers), ``model.json`` (classes, colours, mpp,
               class counts). It needs neither the training config tree nor mmengine's pickled checkpoints.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook

from cytolt import __version__
from cytolt.category_stats import coco_category_stats
from cytolt.datasets import AnnotationError, format_class_table
from cytolt.detect.model_folder import ModelFolder, ModelInfo
from cytolt.mm.dataset_fit import check_training_data, fit_to_dataset
from cytolt.mm.lvis_weights import check_backbone_weights, write_weights_record

log = logging.getLogger("cytolt")


def _replace_prefix(node: Any, old: str, new: str) -> Any:
    """Every string in a config tree that starts with ``old`` now starts with ``new``."""
    if isinstance(node, str):
        return new + node[len(old) :] if node.startswith(old) else node
    if isinstance(node, Mapping):
        return type(node)({k: _replace_prefix(v, old, new) for k, v in node.items()})
    if isinstance(node, list | tuple):
        return type(node)(_replace_prefix(v, old, new) for v in node)
    return node


def parse_cfg_options(options: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` (mmdet's ``--cfg-options`` syntax) -> ``{"a.b": 1, "c": [1, 2]}``."""
    if isinstance(options, Mapping):
        return dict(options)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    return parser.parse_args(["--cfg-options", *options]).cfg_options


def _rescale_schedule(cfg: Config, old: int, new: int) -> None:
    """A changed ``train_cfg.max_iters`` moves every schedule bound that was tied to it (cosine ``T_max``/``end``,
    ``val_interval``), so a shorter run still anneals."""
    for sched in cfg.get("param_scheduler") or []:
        for key in ("end", "T_max"):
            if sched.get(key) == old:
                sched[key] = new
    if cfg.train_cfg.get("val_interval") == old:
        cfg.train_cfg.val_interval = new
    log.info("cytolt: train_cfg.max_iters %d -> %d; schedule bounds tied to it moved too", old, new)


def load_config(
    config: str | Path,
    *,
    work_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    cfg_options: Sequence[str] | Mapping[str, Any] | None = None,
) -> Config:
    """Load an mmdet config and apply cytolt train's overrides.

    Args:
        config: path of the config file.
        work_dir: run folder; default ``work_dirs/<config name>``.
        data_root: replaces the config's ``data_root`` everywhere it is used (datasets, evaluators, banks).
            The classes, palette and every ``num_classes`` then follow the training annotation file's
            categories (:func:`cytolt.mm.dataset_fit.fit_to_dataset`).
        cfg_options: ``key=value`` strings as on mmdet's command line, or a dict of dotted keys.
    """
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    cfg = Config.fromfile(str(path))
    old_iters = cfg.get("train_cfg", {}).get("max_iters")
    if cfg_options:
        cfg.merge_from_dict(parse_cfg_options(cfg_options))
    new_iters = cfg.get("train_cfg", {}).get("max_iters")
    if old_iters and new_iters and new_iters != old_iters:
        _rescale_schedule(cfg, old_iters, new_iters)
    if data_root is not None:
        old = cfg.get("data_root")
        if not old:
            raise ValueError(f"{path} has no data_root to replace")
        new = str(data_root).rstrip("/") + "/"
        for key in (
            "train_dataloader",
            "val_dataloader",
            "test_dataloader",
            "val_evaluator",
            "test_evaluator",
            "model",  # e.g. LVIS heads that read class counts from the train json
            "custom_hooks",  # e.g. CDBHook's held-out split
        ):
            if key in cfg and cfg[key] is not None:
                cfg[key] = _replace_prefix(
                    cfg[key].to_dict() if hasattr(cfg[key], "to_dict") else cfg[key], old, new
                )
        cfg.data_root = new
    fit_to_dataset(cfg)
    cfg.work_dir = str(work_dir or Path("work_dirs") / path.stem)
    return cfg


def train(
    config: str | Path,
    *,
    work_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    cfg_options: Sequence[str] | Mapping[str, Any] | None = None,
    resume: bool = False,
    launcher: str = "none",
    amp: bool | None = None,
    quiet: bool = False,
    echo: Callable[[str], Any] | None = None,
    load_from: str | Path | None = None,
    allow_random_init: bool = False,
) -> Path:
    """Train ``config`` and return the work_dir.

    Args:
        resume: continue from the last checkpoint in work_dir (losses' state buffers and hooks included).
        launcher: "none" (one process) or "pytorch" (under ``torchrun``, one process per GPU).
        amp: mixed precision; ``None`` turns it on when CUDA is available.
        quiet: mmengine logs warnings only (no config dump, no per-interval lines) and a progress bar
            (:class:`~cytolt.mm.progress.TrainProgressHook`) shows iterations, ETA and loss instead.
        echo: where the checked dataset's class table goes (default: the ``cytolt`` logger).
        load_from: weights to start from (fine-tuning): a model folder (``cytolt export-model``; its classes must
            be the dataset's) or a checkpoint; replaces the config's ``load_from``.
        allow_random_init: let a config that names backbone weights (configs/lvis) start from a random backbone;
            without it such a run needs the verified file (:func:`cytolt.mm.lvis_weights.check_backbone_weights`),
            whose record is written to ``work_dir/backbone_weights.json``.

    Every split's annotations are checked before the model is built
    (:func:`~cytolt.mm.dataset_fit.check_training_data`): a broken file fails here, naming the file and entry.
    """
    from mmengine.runner import Runner

    if launcher not in ("none", "pytorch", "slurm", "mpi"):
        raise ValueError(f"launcher must be one of 'none', 'pytorch', 'slurm', 'mpi'; got {launcher!r}")
    cfg = load_config(config, work_dir=work_dir, data_root=data_root, cfg_options=cfg_options)
    # Before the data check: a reproduction run without its pretrained backbone is refused at once.
    weights = check_backbone_weights(cfg, allow_random_init=allow_random_init)
    checked = check_training_data(cfg)
    (echo or log.info)(f"training classes ({checked.files['train']}):\n{format_class_table(checked.classes)}")
    if load_from is not None:
        cfg.load_from = str(load_from)
    if cfg.get("load_from") and Path(cfg.load_from).is_dir():
        cfg.load_from = str(_checkpoint_of_model_folder(cfg.load_from, cfg, Path(cfg.work_dir)))
    cfg.launcher = launcher
    if amp is None:
        amp = torch.cuda.is_available()
    if amp and cfg.optim_wrapper.get("type", "OptimWrapper") == "OptimWrapper":
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if resume:
        cfg.resume = True
        cfg.load_from = None  # mmengine then finds work_dir/last_checkpoint
    if quiet:
        cfg.log_level = "WARNING"
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), dict(type="TrainProgressHook")]
    if weights is not None:
        write_weights_record(cfg.work_dir, weights)
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_ValMetricsFile(Path(cfg.work_dir) / VAL_METRICS), priority="LOWEST")
    runner.train()
    return Path(cfg.work_dir)


VAL_METRICS = "val_metrics.json"


class _ValMetricsFile(Hook):
    """Writes each validation's metrics to one file of the work dir: mmengine's own scalars go wherever the
    process's first visualizer was made, which in a process that trains twice is the first run's folder."""

    priority = "LOWEST"

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_val_epoch(self, runner: Any, metrics: Mapping[str, float] | None = None) -> None:
        if metrics:
            row = {k: float(v) for k, v in metrics.items()}
            self.path.write_text(json.dumps({"iter": int(runner.iter), **row}) + "\n")


def _checkpoint_of_model_folder(path: str | Path, cfg: Config, work_dir: Path) -> Path:
    """A model folder's weights as the state-dict checkpoint mmengine's ``load_from`` reads (in ``work_dir``),
    after checking that the model was trained on the classes the config now trains."""
    from safetensors.torch import load_file

    folder = ModelFolder.read(path)
    classes = tuple(train_classes(cfg))
    if tuple(folder.info.classes) != classes:
        raise AnnotationError(
            folder.path,
            "classes",
            f"the model's classes {list(folder.info.classes)} are not the dataset's {list(classes)}; fine-tune "
            "on a dataset of the model's classes (cytolt dataset from-review keeps them)",
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / "load_from_model_folder.pth"
    torch.save(
        {"state_dict": load_file(str(folder.weights_path)), "meta": {"model_folder": str(folder.path)}}, out
    )
    return out


def last_val_metrics(work_dir: str | Path) -> dict[str, float]:
    """The last validation metrics of a run in ``work_dir`` (``val_metrics.json``, else the newest
    ``vis_data/scalars.json`` mmengine wrote), with the iteration as ``iter``; empty when no validation ran."""
    written = Path(work_dir) / VAL_METRICS
    if written.is_file():
        return json.loads(written.read_text())
    logs = sorted(Path(work_dir).glob("*/vis_data/scalars.json"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return {}
    last: dict[str, float] = {}
    for line in logs[-1].read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if any(k.startswith("lt/") for k in row):
            last = row
    return last


def last_checkpoint(work_dir: str | Path) -> Path:
    """The checkpoint mmengine wrote last in ``work_dir`` (its ``last_checkpoint`` file, else the newest .pth)."""
    work = Path(work_dir)
    marker = work / "last_checkpoint"
    if marker.is_file():
        path = Path(marker.read_text().strip())
        if not path.is_absolute():
            path = work / path.name
        if path.is_file():
            return path
    candidates = sorted(work.glob("*.pth"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"no checkpoint in {work} (train first, or check the folder)")
    return candidates[-1]


def _run_config(work_dir: Path) -> Path:
    configs = sorted(work_dir.glob("*.py"))
    if len(configs) != 1:
        raise FileNotFoundError(
            f"expected the one config mmengine dumps into {work_dir}; found {[p.name for p in configs]}"
        )
    return configs[0]


def _train_instances(ann_file: str | None, classes: Sequence[str]) -> tuple[int, ...] | None:
    """Annotated instances per model class in the training annotations, in ``classes`` order (by name)."""
    if not ann_file or not Path(ann_file).is_file():
        return None
    stats = coco_category_stats(json.loads(Path(ann_file).read_text()), source=ann_file)
    by_name = dict(zip(stats.names, stats.instances_per_class, strict=True))
    return tuple(int(by_name.get(c, 0)) for c in classes)


def _input_mpp(ann_file: str | None) -> float | None:
    if not ann_file or not Path(ann_file).is_file():
        return None
    info = json.loads(Path(ann_file).read_text()).get("info") or {}
    return float(info["mpp"]) if "mpp" in info else None


def train_dataset_cfg(cfg: Config) -> dict[str, Any]:
    """The training dataset's config, unwrapped from dataset wrappers (RFS's ClassBalancedDataset, ...)."""
    dataset = cfg.train_dataloader.dataset
    while "dataset" in dataset and "ann_file" not in dataset:
        dataset = dataset.dataset
    return dataset


def train_classes(cfg: Config) -> list[str]:
    """The class names a config trains, in label order.

    From the config's ``classes``, else the training dataset's ``metainfo``, else the dataset class's own
    ``METAINFO`` (LVIS configs name no classes: ``LVISV1Dataset`` holds its 1,203).
    """
    if cfg.get("classes"):
        return list(cfg.classes)
    dataset = train_dataset_cfg(cfg)
    metainfo = dataset.get("metainfo") or {}
    if metainfo.get("classes"):
        return list(metainfo["classes"])
    from mmdet.registry import DATASETS

    cls = DATASETS.get(dataset.get("type", ""))
    classes = getattr(cls, "METAINFO", {}).get("classes") if cls is not None else None
    if not classes:
        raise ValueError(
            f"cannot tell the classes of {cfg.filename}: no `classes`, no train dataset metainfo, and dataset "
            f"type {dataset.get('type')!r} has no METAINFO classes"
        )
    return list(classes)


def export_model(
    work_dir: str | Path, out: str | Path, *, checkpoint: str | Path | None = None, onnx: bool = True
) -> Path:
    """Write a self-contained model folder from a training run.

    The run's own checkpoint is read with ``weights_only=False`` (a file this run wrote, inside its work_dir);
    what is written is a safetensors file that every later load reads without unpickling.

    ``onnx``: also write ``model.onnx`` for the onnx engine, checked against torch and timed
    (:func:`cytolt.mm.onnx_export.export_onnx`); a model it cannot export keeps the torch engine (logged).

    Returns the model folder ``out`` holding ``config.py``, ``model.safetensors`` and ``model.json``.
    """
    from cytolt.mm._torch_load import trusted_torch_load

    work = Path(work_dir)
    if not work.is_dir():
        raise FileNotFoundError(f"work_dir not found: {work}")
    ckpt = Path(checkpoint) if checkpoint else last_checkpoint(work)
    if not ckpt.resolve().is_relative_to(work.resolve()):
        raise ValueError(f"checkpoint {ckpt} is not inside {work}; only a run's own checkpoints are exported")
    cfg = Config.fromfile(str(_run_config(work)))
    with trusted_torch_load(ckpt):
        state = torch.load(ckpt, map_location="cpu")
    weights = {k: v.detach().contiguous().clone() for k, v in state["state_dict"].items()}
    classes = train_classes(cfg)
    palette = cfg.get("metainfo", {}).get("palette")
    dataset = train_dataset_cfg(cfg)
    train_ann = str(Path(dataset.get("data_root") or "") / dataset.ann_file)
    model_cfg = Config(dict(model=cfg.model.to_dict(), custom_imports=cfg.get("custom_imports")))
    info = ModelInfo(
        classes=tuple(classes),
        colors=tuple(tuple(int(v) for v in c) for c in palette) if palette else None,
        mpp=_input_mpp(train_ann),
        train_instances=_train_instances(train_ann, classes),
    )
    source = {
        "work_dir": str(work),
        "checkpoint": ckpt.name,
        "iter": int(state.get("meta", {}).get("iter", -1)),
    }
    folder = ModelFolder.write(
        out,
        config=model_cfg.pretty_text,
        weights=weights,
        info=info,
        extra={"cytolt_version": __version__, "source": source},
    )
    log.info("exported %s -> %s", ckpt, folder.path)
    if onnx:
        from cytolt.mm.onnx_export import OnnxExportError, export_onnx

        try:
            folder = export_onnx(folder)
        except OnnxExportError as exc:
            log.warning("cytolt: %s keeps the torch engine only: %s", folder.path, exc)
    return folder.path
