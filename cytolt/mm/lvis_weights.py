"""Pretrained backbone weights for the LVIS reproduction (configs/lvis): a full-data run refuses to start without
them, the file is verified, and the run folder records which weights it started from.

The published LVIS numbers all start from an ImageNet backbone; a run from a random backbone (frozen stem, BN
in eval mode, as the recipes have it) cannot approach them. The configs name the expected file in a top-level
``backbone_weights`` entry and keep ``model.backbone.init_cfg=None`` so that they build offline;
``scripts/lvis/train.sh`` (``PRETRAINED=``) or ``scripts/lvis/lvis_tools.py config --pretrained`` points the
backbone at the local file. Both entry points, ``train.sh`` and ``cytolt train``, reach :func:`check_backbone_weights`
through :func:`cytolt.mm.train.train`.

Glossary
    weights spec   the config's ``backbone_weights`` dict: ``name`` (file name), ``url``, ``sha256_prefix``,
                   ``version``, optional ``sha256`` (full digest), ``bytes`` (file size) and ``required``
                   (False on the mini LVIS set).
    sha256_prefix  torch.hub's file-name rule: the hex part of ``resnet50-0676ba61.pth`` is the first 8
                   characters of the file's SHA-256, which ``torch.hub`` checks on download.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_NAME",
    "BackboneWeightsError",
    "check_backbone_weights",
    "file_sha256",
    "write_weights_record",
]

RECORD_NAME = "backbone_weights.json"
_CHUNK = 1 << 20


class BackboneWeightsError(RuntimeError):
    """A full-data LVIS run without verified backbone weights."""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_hint(spec: Mapping[str, Any]) -> str:
    digest = (
        spec.get("sha256")
        or f"{spec['sha256_prefix']}... (the first {len(spec['sha256_prefix'])} hex digits)"
    )
    return (
        f"fetch {spec['version']}: {spec['url']}\n"
        f"  file name {spec['name']}, SHA-256 {digest}\n"
        f"  e.g.  mkdir -p checkpoints && curl -L -o checkpoints/{spec['name']} {spec['url']}\n"
        f"then:  PRETRAINED=checkpoints/{spec['name']} scripts/lvis/train.sh METHOD GPUS\n"
        f"  or:  scripts/lvis/lvis_tools.py config CONFIG --out RUN_CONFIG.py --pretrained checkpoints/{spec['name']}"
        " && cytolt train RUN_CONFIG.py\n"
        "To train from a random backbone on purpose, pass --allow-random-init (cytolt train; after -- for train.sh)."
    )


def check_backbone_weights(cfg: Any, *, allow_random_init: bool = False) -> dict[str, Any] | None:
    """Verify the backbone weights of a config that names a weights spec; the record to keep in the run folder.

    Returns ``None`` for a config without a (required) ``backbone_weights`` spec: every non-LVIS config, and the
    LVIS configs moved onto the mini set. Otherwise ``model.backbone.init_cfg`` must be
    ``dict(type='Pretrained', checkpoint=LOCAL_FILE)`` whose SHA-256 starts with ``sha256_prefix`` (and equals
    ``sha256`` when the spec gives it); the record then holds the file, its digest and the weights version.
    With ``allow_random_init`` a missing ``init_cfg`` is accepted and recorded as a random start; a given file
    is still verified.

    Raises:
        BackboneWeightsError: no weights, a remote checkpoint (``torchvision://``, ``https://``: nothing is
            downloaded, and a download is not verified here), a missing file, or a digest that does not match;
            the message says what to fetch, its file name and SHA-256.
    """
    spec = cfg.get("backbone_weights")
    if not spec or not spec.get("required", True):
        return None
    source = getattr(cfg, "filename", None) or "config"
    init = cfg.model.backbone.get("init_cfg")
    checkpoint = (
        init.get("checkpoint") if isinstance(init, Mapping) and init.get("type") == "Pretrained" else None
    )
    if checkpoint is None:
        if allow_random_init:
            return {"version": "random initialisation (--allow-random-init)", "file": None, "sha256": None}
        raise BackboneWeightsError(
            f"{source}: refusing a full-data LVIS run from a random backbone (model.backbone.init_cfg is "
            f"{init!r}); the published numbers start from ImageNet weights.\n{_fetch_hint(spec)}"
        )
    if "://" in str(checkpoint):
        raise BackboneWeightsError(
            f"{source}: model.backbone.init_cfg.checkpoint is {checkpoint!r}; give the local file so that it can "
            f"be verified.\n{_fetch_hint(spec)}"
        )
    path = Path(checkpoint)
    if not path.is_file():
        raise BackboneWeightsError(f"{path}: backbone weights not found.\n{_fetch_hint(spec)}")
    size = path.stat().st_size
    if spec.get("bytes") and size != spec["bytes"]:  # a truncated download, said before hashing 100 MB
        raise BackboneWeightsError(
            f"{path}: {size:,} bytes where {spec['name']} has {spec['bytes']:,}; the file is another or a "
            f"truncated download.\n{_fetch_hint(spec)}"
        )
    digest = file_sha256(path)
    expected = spec.get("sha256")
    if not digest.startswith(spec["sha256_prefix"]) or (expected and digest != expected):
        raise BackboneWeightsError(
            f"{path}: SHA-256 {digest} is not {spec['name']}'s ({expected or spec['sha256_prefix'] + '...'}); "
            f"the file is another or a truncated download.\n{_fetch_hint(spec)}"
        )
    return {
        "version": spec["version"],
        "name": spec["name"],
        "url": spec["url"],
        "file": str(path.resolve()),
        "sha256": digest,
        "bytes": path.stat().st_size,
    }


def write_weights_record(work_dir: str | Path, record: Mapping[str, Any]) -> Path | None:
    """Write ``record`` (with the time it was checked) to ``work_dir/backbone_weights.json`` on rank 0 only."""
    if os.environ.get("RANK", "0") != "0":
        return None
    out = Path(work_dir) / RECORD_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    data = dict(record, checked_at=datetime.now(UTC).isoformat(timespec="seconds"))
    out.write_text(json.dumps(data, indent=2) + "\n")
    return out
