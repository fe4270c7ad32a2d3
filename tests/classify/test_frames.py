"""FrameClassifier: T >= 1 frames through a one-frame backbone, mean and attention pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cytolt.classify.frames import AttentionPool, FrameClassifier, MeanPool, as_frames, frame_tensor


class _Backbone(nn.Module):
    """A tiny one-frame backbone: (M, 3, S, S) -> (M, D), with batch norm so frames of a batch interact in
    training mode as in the real ResNet."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 3, padding=1)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))


class _OneFrame(nn.Module):
    def __init__(self, dim: int = 6, classes: int = 4) -> None:
        super().__init__()
        self.backbone = _Backbone(dim)
        self.head = nn.Linear(dim, classes)
        self.feature_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_as_frames_and_frame_tensor_shapes() -> None:
    assert as_frames(torch.zeros(2, 3, 8, 8)).shape == (2, 1, 3, 8, 8)
    assert as_frames(torch.zeros(2, 5, 3, 8, 8)).shape == (2, 5, 3, 8, 8)
    with pytest.raises(ValueError, match="frames must be"):
        as_frames(torch.zeros(3, 8, 8))
    images = np.arange(2 * 3 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 4, 3)
    t = frame_tensor(images)
    assert t.shape == (2, 3, 3, 4, 4) and t.dtype == torch.float32
    # Channel c of frame f at (y, x) is images[n, f, y, x, c] / 255.
    assert t[1, 2, 0, 3, 1] == pytest.approx(images[1, 2, 3, 1, 0] / 255.0)
    assert frame_tensor(images[:, 0]).shape == (2, 1, 3, 4, 4)
    with pytest.raises(ValueError, match="uint8"):
        frame_tensor(images.astype(np.float32))


@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_one_frame_equals_the_wrapped_classifier(pool: str) -> None:
    torch.manual_seed(0)
    single = _OneFrame().eval()
    model = FrameClassifier.from_classifier(single, pool=pool).eval()
    x = torch.rand(5, 3, 8, 8)
    expected = single(x)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(model(x.unsqueeze(1)), expected, rtol=0, atol=1e-6)
    # The modules are shared, not copied: training one trains the other.
    assert model.backbone is single.backbone and model.head is single.head


def test_frame_features_run_each_frame_alone() -> None:
    torch.manual_seed(1)
    model = FrameClassifier.from_classifier(_OneFrame()).eval()
    x = torch.rand(3, 4, 3, 8, 8)
    frames = model.frame_features(x)
    assert frames.shape == (3, 4, 6)
    torch.testing.assert_close(frames[:, 2], model.backbone(x[:, 2]), rtol=0, atol=1e-6)
    # Mean pooling is the frame average; the head sees it.
    torch.testing.assert_close(model.features(x), frames.mean(dim=1))
    torch.testing.assert_close(model(x), model.head(frames.mean(dim=1)))
    with pytest.raises(ValueError, match=r"frame features must be \(N, T, 6\)"):
        model.pool_frames(frames[:, :, :5])


def test_attention_pool_weights_and_formula() -> None:
    torch.manual_seed(2)
    pool = AttentionPool(4, hidden=3)
    frames = torch.randn(2, 5, 4)
    w = pool.weights(frames)
    assert w.shape == (2, 5)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(2))
    # a_t = softmax_t(w^T tanh(V h_t)), by hand.
    scores = torch.tanh(frames @ pool.project.weight.t() + pool.project.bias) @ pool.score.weight.t()
    torch.testing.assert_close(w, torch.softmax(scores.squeeze(-1), dim=1))
    torch.testing.assert_close(pool(frames), (w.unsqueeze(-1) * frames).sum(dim=1))
    # Identical frames pool to that frame whatever the weights.
    same = frames[:, :1].expand(2, 5, 4)
    torch.testing.assert_close(pool(same), frames[:, 0])
    assert MeanPool()(frames).shape == (2, 4)


def test_attention_pool_gradients() -> None:
    torch.manual_seed(3)
    pool = AttentionPool(3, hidden=4).double()
    frames = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pool, (frames,))


def test_training_step_reaches_every_part() -> None:
    torch.manual_seed(4)
    model = FrameClassifier.from_classifier(_OneFrame(), pool="attention")
    x = torch.rand(4, 3, 3, 8, 8)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.pool.project.weight.grad.abs().sum() > 0


def test_bad_pool() -> None:
    with pytest.raises(ValueError, match="pool must be one of 'mean', 'attention'"):
        FrameClassifier(_Backbone(), nn.Linear(6, 2), feature_dim=6, pool="max")


@pytest.fixture(scope="module")
def tiny_zstacks() -> tuple[np.ndarray, np.ndarray]:
    from cytolt.synth.zstack import make_zstack_crop_set

    images, labels, _ = make_zstack_crop_set(
        per_class=[4, 3, 2], classes=("intermediate", "hsil", "scc"), planes=3, size=16, mpp=1.0, seed=0
    )
    return images, labels


@pytest.mark.parametrize("method", ["ce", "multi_expert"])
def test_fit_frames_trains_deterministically(tiny_zstacks, method: str) -> None:
    from cytolt.classify.frames import fit_frames, predict_frames

    images, labels = tiny_zstacks
    kwargs = {"method": method, "epochs": 2, "batch_size": 4, "width": 2, "seed": 3}
    fit = fit_frames(images, labels, 3, **kwargs)
    assert [h["epoch"] for h in fit.history] == [1, 2]
    assert all(np.isfinite(h["loss"]) for h in fit.history)
    assert not fit.model.training
    logits = predict_frames(fit.model, images)
    assert logits.shape == (9, 3) and np.isfinite(logits).all()
    again = predict_frames(fit_frames(images, labels, 3, **kwargs).model, images)
    np.testing.assert_array_equal(logits, again)
    assert fit.head["type"] == ("linear" if method == "ce" else "multi_expert")
    # One plane is T = 1: the same code trains on plain crops.
    single = fit_frames(images[:, 1], labels, 3, **kwargs)
    assert predict_frames(single.model, images[:, 1]).shape == (9, 3)


def test_fit_frames_bad_input(tiny_zstacks) -> None:
    from cytolt.classify.frames import fit_frames

    images, labels = tiny_zstacks
    with pytest.raises(ValueError, match="method must be one of"):
        fit_frames(images, labels, 3, method="focal")
    with pytest.raises(ValueError, match="takes no options"):
        fit_frames(images, labels, 3, method="ce", options={"experts": 2})
    with pytest.raises(ValueError, match="unknown option"):
        fit_frames(images, labels, 3, method="multi_expert", options={"expert": 2}, epochs=1)
    with pytest.raises(ValueError, match="one label each"):
        fit_frames(images, labels[:3], 3)
