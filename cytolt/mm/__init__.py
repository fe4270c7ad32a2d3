"""The only place that imports mmdet, mmengine and mmcv.

Importing this package registers cytolt's losses, samplers, transforms and hooks into mmdet's
registries and applies, once, the compatibility fixes the pinned stack needs. A config says
``custom_imports = dict(imports=['cytolt.mm'])`` and then ``type='GradLibraLoss'``.
"""

from __future__ import annotations

from cytolt._compat import patch_numpy_for_lvis

patch_numpy_for_lvis()

# _torch_load: the scoped weights_only fix for mmengine's resume; register: fills mmdet's registries;
# cascade: one box-head config for every Cascade R-CNN stage; gumbel, iif: GOL's heads, IIF's classifiers.
# pcb: PCB's loss and hook; decouple: cRT / LWS / tau-norm (Kang et al. 2020); tde: Causal TDE's predictor.
from cytolt.mm import _torch_load, cascade, decouple, gumbel, iif, pcb, register, tde  # noqa: E402,F401
