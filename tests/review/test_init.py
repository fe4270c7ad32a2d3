"""cytolt.review imports no GUI, no mmdet and no synthetic-data code."""

from __future__ import annotations

import subprocess
import sys


def test_import_pulls_in_no_gui_or_mmdet_or_synth():
    heavy = ("napari", "qtpy", "PyQt5", "mmdet", "cytolt.synth")
    code = f"import sys, cytolt.review; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
