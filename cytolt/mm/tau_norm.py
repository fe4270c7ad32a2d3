"""tau-norm's sweep on a detector (Kang et al., ICLR 2020): score a trained model with tau-normalised classifier
weights for each tau on the validation split and mark the best (``scripts/tau_norm_sweep.py``).

Apart from :mod:`cytolt.mm.decouple` (which ``cytolt.mm`` imports to register its hooks) because it drives a whole
mmengine Runner through :mod:`cytolt.mm.train` and :mod:`cytolt.mm.evaluate`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from cytolt.mm.decouple import _unwrap, apply_tau_norm, classifier_layers

__all__ = ["tau_norm_sweep"]


def tau_norm_sweep(
    config: str | Path,
    weights: str | Path,
    taus: Sequence[float],
    *,
    classifier: str = "roi_head.bbox_head*fc_cls",
    split: str = "val",
    data_root: str | Path | None = None,
    work_dir: str | Path | None = None,
    key: str = "AP",
) -> list[dict[str, float]]:
    """Score ``config``'s model with tau-normalised classifier weights for each tau on ``split``.

    Args:
        config: a training config (its model, datasets and evaluator).
        weights: a model folder (its ``model.safetensors``), a ``.safetensors`` file or a weights-only ``.pth``.
        taus: the values to try (tau = 0 is the model as trained).
        classifier: module pattern of the classifier layers (default: every two-stage box classifier, a
            Cascade's three included; ``bbox_head.retina_cls`` for RetinaNet).
        split: ``"val"`` (choose tau) or ``"test"`` (report it).
        data_root: the dataset folder, as ``cytolt train --data-root``.
        work_dir: mmengine's log folder (a temporary one by default).
        key: the metric used to rank the taus (``AP`` of the evaluator; ``lt/AP`` found too).

    Returns:
        one row per tau, ``{'tau': tau, **metrics}``, in the order given; the best (highest ``key``) is marked
        ``best = 1.0``.
    """
    from mmengine.runner import Runner

    from cytolt.mm.evaluate import load_weights
    from cytolt.mm.train import load_config

    if split not in ("val", "test"):
        raise ValueError(f"split must be one of 'val', 'test'; got {split!r}")
    if not taus:
        raise ValueError("tau_norm_sweep: give at least one tau")
    path = Path(weights)
    state = load_weights(path / "model.safetensors" if path.is_dir() else path)
    work_dir = work_dir or tempfile.mkdtemp(prefix="cytolt-taunorm-")
    cfg = load_config(config, work_dir=work_dir, data_root=data_root)
    if split == "val":
        cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    cfg.load_from, cfg.resume = None, False
    runner = Runner.from_cfg(cfg)
    model = _unwrap(runner.model)
    layers = classifier_layers(model, classifier)
    rows = []
    for tau in taus:
        missing, unexpected = model.load_state_dict(apply_tau_norm(state, layers, float(tau)), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path} does not fit {config}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        metrics = {k: float(v) for k, v in runner.test().items()}
        rows.append({"tau": float(tau), **metrics})
        runner.logger.info(f"tau-norm sweep: tau={tau}: {key}={_metric(metrics, key):.4f}")
    best = max(range(len(rows)), key=lambda i: _metric(rows[i], key))
    for i, row in enumerate(rows):
        row["best"] = 1.0 if i == best else 0.0
    return rows


def _metric(metrics: Mapping[str, float], key: str) -> float:
    for name in (key, f"lt/{key}", f"coco/bbox_{key.lower()}"):
        if name in metrics:
            return metrics[name]
    raise KeyError(f"tau-norm sweep: metric {key!r} not among {sorted(metrics)[:10]}")
