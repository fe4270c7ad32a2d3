"""The stand-ins tests/conftest.py puts inside mmengine for speed are in place and change no result: a config's
unformatted text loads to the same config as yapf's formatting of it, text that is not Python still fails as
mmengine's own formatting fails, and a dataset built with the young-generation collection is the same dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmdet")

import mmengine.config.config as mm_config  # noqa: E402
from mmengine.config import Config  # noqa: E402
from yapf.yapflib.yapf_api import FormatCode  # noqa: E402

from tests.conftest import _unformatted_config_text, _YoungGenerationGC  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_unformatted_text_loads_to_the_same_config_as_yapfs():
    assert mm_config.FormatCode is _unformatted_config_text  # in place for this session's tests
    text = Config.fromfile(str(ROOT / "configs/tct/cascade_rcnn_r18_eqlv2.py")).pretty_text
    formatted, _ = FormatCode(text, style_config=dict(based_on_style="pep8"))
    assert formatted != text
    assert Config.fromstring(text, ".py").to_dict() == Config.fromstring(formatted, ".py").to_dict()


def test_text_that_is_not_python_still_fails():
    with pytest.raises(SyntaxError):
        _unformatted_config_text("model = dict(type='RetinaNet'")
    with pytest.raises(SyntaxError, match="Failed to format the config file"):
        Config(dict(model=object())).pretty_text  # noqa: B018  (an object's repr is not Python)


def test_datasets_collect_the_young_generation_and_build_the_same(tmp_path):
    import gc
    import json

    import mmengine.dataset.base_dataset as base_dataset
    from mmdet.datasets import CocoDataset

    assert base_dataset.gc is _YoungGenerationGC and isinstance(_YoungGenerationGC.collect(), int)
    images = [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in (1, 2)]
    boxes = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64, "iscrowd": 0}]
    ann = tmp_path / "a.json"
    ann.write_text(
        json.dumps({"images": images, "annotations": boxes, "categories": [{"id": 1, "name": "c"}]})
    )
    kwargs = dict(ann_file=str(ann), data_prefix=dict(img=""), metainfo=dict(classes=("c",)), pipeline=[])
    stand_in = CocoDataset(**kwargs)
    base_dataset.gc = gc
    try:
        full = CocoDataset(**kwargs)
    finally:
        base_dataset.gc = _YoungGenerationGC
    assert len(stand_in) == len(full) == 2
    assert [stand_in.get_data_info(i) for i in range(len(stand_in))] == [
        full.get_data_info(i) for i in range(len(full))
    ]
