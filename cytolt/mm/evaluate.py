"""``cytolt eval``: score a checkpoint on a config's test (or val) split with the config's evaluator."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cytolt.mm.train import load_config


def _mmengine_safe_globals() -> list[Any]:
    """Types mmengine writes into its checkpoints' ``message_hub``; allow-listed for ``weights_only=True``."""
    from mmengine.logging import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 renamed it
    numpy_types = [np.dtype, np.ndarray, multiarray._reconstruct, multiarray.scalar]
    numpy_types += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return [HistoryBuffer, *numpy_types]


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors``, a plain state dict ``.pth``, or an mmengine checkpoint ``.pth``.

    Never unpickles arbitrary objects: ``.pth`` files load with ``weights_only=True``; mmengine's own
    checkpoint types (``HistoryBuffer``, numpy arrays) are allow-listed by name.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint not found: {file}")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file), device="cpu")
    try:
        with torch.serialization.safe_globals(_mmengine_safe_globals()):
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160]
        raise ValueError(
            f"{file}: cannot be read as a weights-only checkpoint ({type(exc).__name__}: {reason}). "
            "For a training run's checkpoint, run `cytolt export-model WORK_DIR MODEL_DIR` and evaluate "
            "MODEL_DIR/model.safetensors"
        ) from exc
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: no state dict of tensors found")
    return dict(state)


def evaluate(
    config: str | Path,
    checkpoint: str | Path,
    *,
    split: str = "test",
    data_root: str | Path | None = None,
    cfg_options: Sequence[str] | Mapping[str, Any] | None = None,
    work_dir: str | Path | None = None,
    out: str | Path | None = None,
) -> dict[str, float]:
    """Run ``config``'s model with ``checkpoint`` weights over its ``split`` ("test" or "val") and return metrics.

    The metrics are the config's evaluator's (``LongTailMetric`` for configs/tct: AP, APr, APc, APf, per class).
    """
    from mmengine.runner import Runner

    if split not in ("test", "val"):
        raise ValueError(f"split must be one of 'test', 'val'; got {split!r}")
    work_dir = work_dir or tempfile.mkdtemp(
        prefix="cytolt-eval-"
    )  # mmengine logs there; nothing else is kept
    cfg = load_config(config, work_dir=work_dir, data_root=data_root, cfg_options=cfg_options)
    if split == "val":
        cfg.test_dataloader = cfg.val_dataloader
        cfg.test_evaluator = cfg.val_evaluator
    cfg.load_from = None
    cfg.resume = False
    state = load_weights(checkpoint)
    runner = Runner.from_cfg(cfg)
    missing, unexpected = runner.model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint} does not fit {config}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    metrics = {k: float(v) for k, v in runner.test().items()}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(metrics, indent=2))
    return metrics
