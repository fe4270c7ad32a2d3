"""Fixtures for the evaluation tests; the cases themselves live in ``_eval_cases.py``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.evaluate._eval_cases import make_lvis_gt


@pytest.fixture
def lvis_gt() -> dict[str, Any]:
    return make_lvis_gt()
