"""Tests of cytolt.detect.onnx_engine: the ONNX Runtime session (thread settings, the file's checks, outputs)."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cytolt.detect.onnx_engine import OnnxSession, file_sha256


class TwoOutputs(torch.nn.Module):
    """A conv and a strided conv: two outputs at two resolutions, as a head's levels are."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(3, 2, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x), self.b(x)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    net = TwoOutputs().eval()
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.randn(2, 3, 16, 16),),
            str(path),
            dynamo=False,
            input_names=["input"],
            dynamic_axes={"input": {0: "b", 2: "h", 3: "w"}},
        )
    return path, net


def test_outputs_equal_torch_at_any_batch_and_size(onnx_file) -> None:
    path, net = onnx_file
    session = OnnxSession(path, threads=1, sha256=file_sha256(path))
    assert session.threads == 1 and len(session.output_names) == 2
    for shape in ((1, 3, 16, 16), (3, 3, 24, 40)):
        x = torch.randn(*shape)
        with torch.no_grad():
            want = net(x)
        got = session.run(x.numpy())
        assert [g.shape for g in got] == [tuple(w.shape) for w in want]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-5)


def test_threads_default_to_torchs(onnx_file) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert OnnxSession(onnx_file[0]).threads == 1
    finally:
        torch.set_num_threads(before)


def test_refuses_a_file_that_does_not_match_its_recorded_hash(onnx_file, tmp_path) -> None:
    path = onnx_file[0]
    assert file_sha256(path) == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="does not match its model folder"):
        OnnxSession(path, sha256="sha256:" + "0" * 64)


def test_names_the_file_when_it_is_missing_or_not_onnx(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model.onnx is missing"):
        OnnxSession(tmp_path / "model.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="junk.onnx: onnxruntime cannot load it"):
        OnnxSession(junk)


def test_rejects_a_batch_that_is_not_bchw(onnx_file) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        OnnxSession(onnx_file[0]).run(np.zeros((3, 16, 16), np.float32))
