"""Tests for cytolt.classify.train: samplers, augmentation, the loop over every registered method (loss falls on a
fixed batch, one epoch trains, the model folder loads back identically), determinism and the two-stage plumbing.

Tiny on purpose: 32-px synthetic crops (head 30, imbalance 10: 135 crops, 11 classes), width-4 models, 1 epoch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolt import samplers
from cytolt.classify.folder import ClassifierFolder
from cytolt.classify.methods import METHODS
from cytolt.classify.methods.spec import BuiltModel, MethodSpec, crop_tensor, eval_logits
from cytolt.classify.model import CellClassifier
from cytolt.classify.synth_crops import make_crop_set
from cytolt.classify.train import (
    ADAMW_WEIGHT_DECAY,
    SGD_WEIGHT_DECAY,
    ClassAwareSampler,
    InstanceSampler,
    augment,
    make_sampler,
    prepare_stage,
    train_classifier,
)
from cytolt.classify.vit import TinyViT, ViTBackbone

WIDTH = 4


@pytest.fixture(scope="module")
def crops():
    return make_crop_set(size=32, head=30, imbalance=10)


@pytest.fixture(scope="module")
def val():
    return make_crop_set(size=32, head=3, imbalance=1, seed=1)


@pytest.fixture(scope="module")
def stage_one(crops):
    """An (untrained) stage-1 model: stage-2 methods start from it in these tests."""
    torch.manual_seed(0)
    return CellClassifier(len(crops.class_names), width=WIDTH)


# Methods whose defaults are too slow for a unit test: livt's MGP pre-training of the cpu-size ViT.
FAST = {"livt": {"mgp_epochs": 1, "vit": {"patch_size": 8, "dim": 8, "depth": 1, "heads": 2}}}
FAST["livt"]["decoder"] = {"dim": 8, "depth": 1, "heads": 2}


def _init(method: str, stage_one):
    return stage_one if METHODS[method].stage == 2 else None


# ----------------------------------------------------------------------------------------------- samplers


def test_class_balanced_sampler_draws_each_class_about_equally() -> None:
    labels = np.repeat([0, 1, 2], [300, 60, 15])
    sampler = ClassAwareSampler(labels, power=0.0, seed=0, num_samples=3000)
    drawn = np.bincount(labels[list(sampler)], minlength=3)
    # chi-square against 1000 each: below 13.8 (df 2, p = 0.001); instance sampling would give ~ 1600 per cell
    chi2 = float((((drawn - 1000) ** 2) / 1000).sum())
    assert chi2 < 13.8, drawn


def test_sqrt_sampler_follows_the_square_root_of_the_counts() -> None:
    labels = np.repeat([0, 1], [400, 100])  # p_c ~ sqrt(n_c): 20 : 10 -> 2/3, 1/3
    drawn = np.bincount(
        labels[list(ClassAwareSampler(labels, power=0.5, seed=0, num_samples=3000))], minlength=2
    )
    expected = np.array([2000.0, 1000.0])
    assert float((((drawn - expected) ** 2) / expected).sum()) < 10.8, drawn  # df 1, p = 0.001


def test_instance_sampler_is_a_seeded_permutation_per_epoch() -> None:
    sampler = InstanceSampler(10, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and list(sampler) == first
    sampler.set_epoch(1)
    assert sorted(sampler) == list(range(10)) and list(sampler) != first
    assert list(InstanceSampler(10, seed=3)) == first


def test_rfs_threshold_defaults_to_one_over_k() -> None:
    # N = 10, K = 2: t = 1/2; f = (0.8, 0.2) -> r = (1, sqrt(0.5 / 0.2))
    sampler = make_sampler("rfs", np.repeat([0, 1], [8, 2]), 2)
    assert isinstance(sampler, samplers.RepeatFactorSampler)
    expected = [1.0] * 8 + [(0.5 / 0.2) ** 0.5] * 2
    np.testing.assert_allclose(sampler.repeat_factors.numpy(), expected)
    np.testing.assert_allclose(
        make_sampler("rfs", np.repeat([0, 1], [8, 2]), 2, rfs_thr=0.1).repeat_factors, 1.0
    )


def test_cdb_sampler_is_class_level_and_never_draws_the_held_out_crops() -> None:
    labels = np.repeat([0, 1, 2], [20, 6, 4])
    sampler = make_sampler("cdb", labels, 3, held_out=[0, 21, 27], cdb_tau=1.0)
    assert isinstance(sampler, samplers.CDBSampler) and len(sampler) == 27
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert not {0, 21, 27} & set(sampler)
    # uniform weights before a measurement: class-balanced (each class 1/3 of the crop-weight mass)
    mass = np.bincount(labels, weights=sampler.image_weights.numpy(), minlength=3)
    np.testing.assert_allclose(mass / mass.sum(), [1 / 3] * 3)
    # difficulty (0.2, 0.2, 0.6), tau 1: w = d / mean(d) = (0.6, 0.6, 1.8) -> class shares 0.2, 0.2, 0.6
    sampler.update_difficulty(np.array([0.2, 0.2, 0.6]))
    mass = np.bincount(labels, weights=sampler.image_weights.numpy(), minlength=3)
    np.testing.assert_allclose(mass / mass.sum(), [0.2, 0.2, 0.6])
    drawn = np.bincount(labels[list(sampler)], minlength=3)
    assert drawn[2] > drawn[0] and drawn[2] > drawn[1]
    with pytest.raises(ValueError, match="difficulty must have shape"):
        sampler.update_difficulty(np.ones(2))


def test_sampler_errors() -> None:
    with pytest.raises(ValueError, match="sampler must be one of 'instance', 'class_balanced'"):
        make_sampler("uniform", np.zeros(3, np.int64), 1)
    with pytest.raises(ValueError, match="takes no held-out crops"):
        make_sampler("rfs", np.zeros(3, np.int64), 1, held_out=[0])
    with pytest.raises(ValueError, match="need at least one index"):
        make_sampler("instance", np.zeros(2, np.int64), 1, held_out=[0, 1])


def test_instance_sampler_leaves_the_held_out_crops_out() -> None:
    sampler = make_sampler("instance", np.zeros(10, np.int64), 1, held_out=[2, 7], seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        drawn = list(sampler)
        assert sorted(drawn) == [0, 1, 3, 4, 5, 6, 8, 9] and len(sampler) == 8
    with pytest.raises(ValueError, match="every crop is excluded"):
        ClassAwareSampler(np.zeros(2, np.int64), power=0.0, exclude=[0, 1])


# ----------------------------------------------------------------------------------------------- augmentation


def test_augment_is_a_dihedral_turn_times_a_brightness_factor() -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 3, 8, 8) * 0.5  # below 1 / 1.1: no clamping
    out = augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    torch.testing.assert_close(augment(x, torch.Generator().manual_seed(1)), out)
    kinds = set()
    for i in range(16):
        candidates = [torch.rot90(f, r, dims=(-2, -1)) for f in (x[i], x[i].flip(-1)) for r in range(4)]
        fits = []
        for j, c in enumerate(candidates):
            factor = float(out[i].sum() / c.sum())
            if torch.allclose(out[i], c * factor, atol=1e-6):
                fits.append((j, factor))
        assert fits, f"crop {i} is not a flip/rotation of its input"
        j, factor = fits[0]
        assert 0.9 <= factor <= 1.1
        kinds.add(j)
    assert len(kinds) > 2  # the turns vary across crops
    with pytest.raises(ValueError, match="square crops"):
        augment(torch.zeros(1, 3, 4, 5), torch.Generator())


# ----------------------------------------------------------------------------------------------- every method


@pytest.mark.parametrize("method", sorted(METHODS))
def test_loss_falls_on_a_fixed_batch(method: str, crops, stage_one) -> None:
    stage = prepare_stage(
        method, crops, epochs=1, width=WIDTH, lr=1e-2, init=_init(method, stage_one), options=FAST.get(method)
    )
    if stage.optimizer is None:
        assert METHODS[method].trains == "none"
        return
    batch = np.arange(0, len(crops), 4)  # every class, fixed
    x = crop_tensor(crops.images[batch])
    y = torch.as_tensor(crops.labels[batch])
    stage.total_steps = 1000  # keep the learning rate near its peak for these few steps
    losses = [stage.step(x, y) for _ in range(8)]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_epoch_then_the_folder_loads_back_identically(
    method: str, crops, val, stage_one, tmp_path
) -> None:
    result = train_classifier(
        crops,
        val,
        method=method,
        epochs=1,
        width=WIDTH,
        progress=False,
        init=_init(method, stage_one),
        options=FAST.get(method),
    )
    assert result.method == method and result.head["type"]
    assert result.val_report is not None and 0 <= result.val_report["balanced_accuracy"] <= 1
    trained_rows = [row for row in result.history if row["stage"] == METHODS[method].stage]
    assert len(trained_rows) == (0 if METHODS[method].trains == "none" else 1)
    assert all(np.isfinite(row["loss"]) for row in result.history)
    folder = ClassifierFolder.write(
        tmp_path / "model",
        result.model,
        classes=crops.class_names,
        mpp=crops.mpp,
        crop_size=crops.size,
        context=1.5,
        train_counts=crops.counts().tolist(),
        method=method,
        head=result.head,
        metrics=result.val_report,
    )
    loaded = ClassifierFolder.read(folder.path).load()
    expected = eval_logits(result.model, val)
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(eval_logits(loaded, val), expected, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------- loop behaviour


def test_same_seed_same_weights_after_two_epochs(crops) -> None:
    def weights(seed: int, method: str = "cdb") -> dict[str, torch.Tensor]:
        result = train_classifier(crops, method=method, epochs=2, width=WIDTH, seed=seed, progress=False)
        return result.model.state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_second_stage_without_init_trains_ce_first_and_never_touches_init(crops, stage_one) -> None:
    result = train_classifier(
        crops, method="crt", epochs=1, width=WIDTH, progress=False, options={"stage1_epochs": 2}
    )
    assert [(row["stage"], row["epoch"]) for row in result.history] == [(1, 1), (1, 2), (2, 1)]
    before = {k: v.clone() for k, v in stage_one.state_dict().items()}
    crt = train_classifier(crops, method="crt", epochs=1, width=WIDTH, progress=True, init=stage_one)
    assert all(torch.equal(before[k], v) for k, v in stage_one.state_dict().items())
    # the frozen representation, batch-norm statistics included, is stage 1's
    trained = crt.model.backbone.state_dict()
    assert all(torch.equal(v, stage_one.backbone.state_dict()[k]) for k, v in trained.items())
    assert not torch.equal(crt.model.head.weight, stage_one.head.weight)


def test_cdb_measures_difficulty_on_held_out_crops(crops) -> None:
    result = train_classifier(crops, method="cdb", epochs=2, width=WIDTH, progress=False)
    row = result.history[-1]
    assert len(row["cdb_difficulty"]) == len(crops.class_names) and len(row["cdb_weights"]) == len(
        crops.class_names
    )
    assert all(0 <= d <= 1 for d in row["cdb_difficulty"])
    assert row["samples"] < len(crops)  # held-out crops are not trained on
    every = train_classifier(
        crops, method="cdb", epochs=2, width=WIDTH, progress=False, options={"cdb_every": 2}
    )
    assert ["cdb_difficulty" in r for r in every.history] == [False, True]


def test_options_and_input_errors(crops, val) -> None:
    with pytest.raises(ValueError, match="method must be one of 'ce'"):
        prepare_stage("nope", crops)
    with pytest.raises(ValueError, match="unknown option\\(s\\) 'tua'"):
        prepare_stage(
            "tau_norm", crops, options={"tua": 1.0}, init=CellClassifier(len(crops.class_names), width=4)
        )
    with pytest.raises(ValueError, match="sampler must be one of"):
        prepare_stage("ce", crops, options={"sampler": "uniform"})
    other = make_crop_set(size=32, head=2, imbalance=1, classes=crops.class_names[:2])
    with pytest.raises(ValueError, match="val classes"):
        prepare_stage("ce", crops, other)
    with pytest.raises(ValueError, match="init has 2 classes"):
        prepare_stage("crt", crops, init=CellClassifier(2, width=4))
    stage = prepare_stage("ce", crops, width=WIDTH, options={"sampler": "class_balanced"})
    assert isinstance(stage.ctx.sampler, ClassAwareSampler)
    with pytest.raises(ValueError, match="needs a validation set"):
        train_classifier(
            crops, method="tau_norm", width=WIDTH, init=CellClassifier(11, width=4), progress=False
        )


# ----------------------------------------------------------------------------------------------- spec hooks


def _register(monkeypatch, spec: MethodSpec) -> str:
    monkeypatch.setitem(METHODS, spec.name, spec)
    return spec.name


class _FixedBatches:
    """A batch sampler of given batches (the same every epoch); records the epochs it was set to."""

    yields_batches = True

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches, self.epochs = batches, []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def test_build_sampler_batches_are_trained_on_as_they_come(crops, monkeypatch) -> None:
    # Batches of 3, 5 and 1 crops (the one-crop batch is skipped: batch norm needs two), whatever batch_size says.
    batches = [[0, 1, 2], [3, 4, 5, 6, 7], [8]]
    sampler = _FixedBatches(batches)
    name = _register(
        monkeypatch, MethodSpec(name="fixed_batches", paper="-", build_sampler=lambda ctx: sampler)
    )
    stage = prepare_stage(name, crops, epochs=2, width=WIDTH, batch_size=64)
    assert stage.ctx.sampler is sampler and stage.total_steps == 2 * 3
    seen = []
    original = stage.step
    stage.step = lambda x, y: seen.append(y.tolist()) or original(x, y)
    rows = [stage.run_epoch(e) for e in range(2)]
    assert sampler.epochs == [0, 1] and [r["samples"] for r in rows] == [8, 8]
    assert seen == [crops.labels[b].tolist() for b in batches[:2]] * 2
    # An explicit sampler option replaces the method's own.
    stage = prepare_stage(name, crops, width=WIDTH, options={"sampler": "sqrt"})
    assert isinstance(stage.ctx.sampler, ClassAwareSampler)


def test_held_out_crops_of_a_spec_are_never_trained_on(crops, monkeypatch) -> None:
    name = _register(monkeypatch, MethodSpec(name="holds_out", paper="-", held_out=0.2))
    stage = prepare_stage(name, crops, epochs=1, width=WIDTH)
    held = samplers.held_out_indices([{int(y)} for y in crops.labels], 0.2, seed=0)
    assert stage.ctx.held_out == held and len(held) == round(0.2 * len(crops))
    drawn = set(stage.ctx.sampler)
    assert not drawn & set(held) and drawn | set(held) == set(range(len(crops)))
    # Tail classes of two or more crops keep one crop out (stratified); the plain spec holds nothing out.
    assert set(crops.labels[held]) == set(range(len(crops.class_names)))
    assert prepare_stage("ce", crops, width=WIDTH).ctx.held_out == []


def test_build_model_supplies_the_network_unless_init_is_given(crops, monkeypatch) -> None:
    k = len(crops.class_names)
    built = []

    def build(ctx) -> BuiltModel:
        assert ctx.model is None and ctx.width == 7 and ctx.batch_size == 16
        built.append(TinyViT(k, backbone=ViTBackbone(image_size=32, patch_size=16, dim=8, depth=1, heads=2)))
        return BuiltModel(built[-1], [{"stage": "pre", "epoch": 1, "loss": 0.5}])

    name = _register(monkeypatch, MethodSpec(name="builds", paper="-", build_model=build))
    result = train_classifier(crops, method=name, epochs=1, width=7, batch_size=16, progress=False)
    assert result.model is built[0] and [row["stage"] for row in result.history] == ["pre", 1]
    with_init = train_classifier(
        crops, method=name, epochs=0, width=7, batch_size=16, init=built[0], progress=False
    )
    assert len(built) == 1 and isinstance(with_init.model, TinyViT) and with_init.history == []
    wrong = MethodSpec(
        name="builds_wrong", paper="-", build_model=lambda ctx: BuiltModel(CellClassifier(2), [])
    )
    with pytest.raises(ValueError, match="built a model of 2 classes"):
        prepare_stage(_register(monkeypatch, wrong), crops)


@pytest.mark.parametrize(
    ("method", "options", "kind", "decay"),
    [
        ("tde", None, torch.optim.SGD, SGD_WEIGHT_DECAY),  # an SGD spec without weight_decay: SGD's default
        ("tde", {"weight_decay": 0.01}, torch.optim.SGD, 0.01),
        ("vmf", None, torch.optim.SGD, METHODS["vmf"].weight_decay),
        ("ce", None, torch.optim.AdamW, ADAMW_WEIGHT_DECAY),
        ("bal_bce", None, torch.optim.AdamW, METHODS["bal_bce"].weight_decay),
        ("ce", {"weight_decay": 0.0}, torch.optim.AdamW, 0.0),
    ],
)
def test_weight_decay_is_the_optimisers_default_unless_the_spec_or_options_set_it(
    crops, method, options, kind, decay
) -> None:
    stage = prepare_stage(method, crops, width=WIDTH, options=options)
    assert type(stage.optimizer) is kind
    assert all(group["weight_decay"] == decay for group in stage.optimizer.param_groups)
