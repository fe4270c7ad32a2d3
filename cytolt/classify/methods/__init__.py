"""Long-tail methods for the cell classifier: name -> :class:`~cytolt.classify.methods.spec.MethodSpec`.

Each method is one module of this package with its spec (and its head, when the head is not ``nn.Linear``); the
training loop :func:`cytolt.classify.train.train_classifier` reads only the spec. The heads that are not
``nn.Linear`` are registered with :func:`cytolt.classify.folder.register_head` when this package is imported, so a
saved model loads back with the same head. docs/classify_methods.md has one row per method.
"""

from __future__ import annotations

from cytolt.classify.folder import register_head
from cytolt.classify.methods import (
    cdb,
    ce,
    crt,
    difficulty_net,
    distribution_balanced,
    focal,
    grad_libra,
    iif,
    livt,
    logit_adjust,
    lws,
    marc,
    multi_expert,
    ncm,
    pcb,
    tau_norm,
    tde,
    vmf,
    whitening,
)
from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec

__all__ = ["HEAD_BUILDERS", "METHODS", "Head", "MethodContext", "MethodSpec", "get_method"]

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        ce.CE,
        focal.FOCAL,
        ce.CLASS_BALANCED,
        ce.SQRT,
        ce.RFS,
        crt.CRT,
        tau_norm.TAU_NORM,
        lws.LWS,
        ncm.NCM,
        logit_adjust.LOGIT_ADJUST,
        logit_adjust.LOGIT_ADJUST_POSTHOC,
        iif.IIF,
        marc.MARC,
        tde.TDE,
        pcb.PCB,
        cdb.CDB,
        grad_libra.GRAD_LIBRA,
        whitening.WHITENING,
        whitening.WHITENING_B3RS,
        livt.BAL_BCE,
        livt.LIVT,
        multi_expert.MULTI_EXPERT,
        vmf.VMF,
        difficulty_net.DIFFICULTY_NET,
        distribution_balanced.DB,
    )
}

# head type (the folder's ``head["type"]``) -> builder ``(feature_dim, num_classes, **config) -> nn.Module`` whose
# state dict the saved weights fill; "linear" is the folder's own. Every head returns logits whose softmax is its
# probabilities (the folder's default), post-hoc adjustments included.
HEAD_BUILDERS = {
    "tau_norm": tau_norm.build_tau_norm_head,
    "lws": lws.build_lws_head,
    "ncm": ncm.build_ncm_head,
    "logit_adjust": logit_adjust.build_logit_adjust_head,
    "iif": iif.build_iif_head,
    "marc": marc.build_marc_head,
    "tde": tde.build_tde_head,
    "sigmoid_norm": grad_libra.build_sigmoid_head,
    "whitened_linear": whitening.build_whitened_linear_head,
    "multi_expert": multi_expert.build_multi_expert_head,
    "vmf": vmf.build_vmf_head,
}

for _type, _builder in HEAD_BUILDERS.items():
    register_head(_type, _builder)


def get_method(name: str) -> MethodSpec:
    """The method called ``name``; a ValueError lists the choices."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {name!r}") from None
