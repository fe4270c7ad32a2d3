"""Class-difficulty based methods, CDB-W + CDB-S, for the cell classifier (Sinha, Ohashi and Nakamura,
"Class-Wise Difficulty-Balanced Loss for Solving Class-Imbalance", ACCV 2020, arXiv 2010.01824; "Class-Difficulty
Based Methods for Long-Tailed Visual Recognition", IJCV 2022).

Difficulty ``d_c = 1 - A_c``, ``A_c`` the recall of class ``c`` on a held-out part of the training crops, is
re-measured every K epochs (``options["cdb_every"]``; 1, the paper's setting) and drives both the loss weights
(CDB-W, :class:`cytolt.losses.cdb.CDBLoss`, softmax cross-entropy weighted ``w[y] = d_y^tau`` normalised to mean 1)
and the sampler (CDB-S at class level: class ``c`` drawn with probability proportional to ``w_c``, then a crop of it,
:class:`cytolt.classify.train.ClassLevelCDBSampler`). tau (``options["cdb_tau"]``) is the paper's dynamic
``2 sigmoid(max A / (min A + 0.01) - 1)``. Before the first measurement the loss is plain cross-entropy and the
sampler class-balanced (uniform class weights).

Adapted for cell crops: each crop is an "image" holding one class; the held-out part is ``HELD_OUT`` (10 %,
``options["cdb_held_out"]``) of the training crops, stratified by class (:func:`cytolt.samplers.held_out_indices`),
and never trained on (the cost: a class of two crops trains on one); a class with no held-out crop (a class of one
crop) gets difficulty 1, the most re-weighting, since it cannot be measured and is the rarest. The measurement is the
training loop's (it also serves the ``cdb`` sampler alone).
"""

from __future__ import annotations

from torch import nn

from cytolt.classify.methods.spec import MethodContext, MethodSpec
from cytolt.losses.cdb import CDBLoss
from cytolt.samplers import CDBSampler

__all__ = ["CDB", "CDB_TAU", "HELD_OUT"]

CDB_TAU = "dynamic"
# 10 % of the training crops held out to measure difficulty: a cytolt choice (the paper uses a validation split).
HELD_OUT = 0.1


def _loss(ctx: MethodContext) -> nn.Module:
    return CDBLoss(ctx.num_classes, tau=ctx.options.get("cdb_tau", CDB_TAU)).to(ctx.device)


def _epoch_end(ctx: MethodContext, epoch: int) -> dict:
    if ctx.difficulty is None:
        if not isinstance(ctx.sampler, CDBSampler):
            raise RuntimeError("cdb: the loop measured no difficulty (the method needs the 'cdb' sampler)")
        return {}  # not measured yet (options["cdb_every"] > 1): the weights stay uniform
    weights = ctx.loss.set_difficulty(ctx.difficulty)
    return {"cdb_weights": [round(float(w), 4) for w in weights]}


CDB = MethodSpec(
    name="cdb",
    paper="Sinha et al., Class-Wise Difficulty-Balanced Loss for Solving Class-Imbalance, ACCV 2020 (CDB-W + CDB-S)",
    sampler="cdb",
    build_loss=_loss,
    epoch_end=_epoch_end,
)
