"""tests/conftest.py leaves mmengine's config text unformatted (yapf was a third of a Runner's CPU in these tests):
the unformatted text of a config loads to the same config as yapf's formatting of it, and text that is not Python
still fails as mmengine's own formatting fails."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmdet")

import mmengine.config.config as mm_config  # noqa: E402
from mmengine.config import Config  # noqa: E402
from yapf.yapflib.yapf_api import FormatCode  # noqa: E402

from tests.conftest import _unformatted_config_text  # noqa: E402

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
