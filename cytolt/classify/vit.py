"""A small Vision Transformer for cell crops, the backbone LiVT pre-trains and fine-tunes (Xu et al., "Learning
Imbalanced Data with Vision Transformers", CVPR 2023, arXiv 2212.02015; the ViT of Dosovitskiy et al., ICLR 2021,
arXiv 2010.11929, in MAE's form, He et al., CVPR 2022, arXiv 2111.06377).

Plain pre-norm ViT: non-overlapping ``p x p`` patches embedded by a linear map (a stride-p convolution), a class
token, fixed 2-D sine-cosine position embeddings (MAE), ``depth`` blocks of multi-head self-attention and a GELU
MLP, each behind a LayerNorm with a residual connection. Features for classification are the mean of the patch
tokens after the last block, then a LayerNorm (LiVT fine-tunes with ``global_pool=True``, MAE's ``fc_norm``).

Glossary
    x         (N, C, S, S) float in [0, 1], crops as ``CropSet`` yields them; S divisible by the patch size.
    tokens    (N, 1 + L, dim): the class token and L = (S / p)^2 patch tokens.
    features  (N, dim): pooled patch tokens (``backbone(x)``), the classifier's input.

Sizes (``VIT_SIZES``; stated, not tuned): "cpu" is what 2 shared cores train in minutes on 32-64 px crops
(patch 8, dim 64, depth 4, 4 heads: 0.2 M parameters); "gpu" is ViT-Tiny's width and depth (dim 192, depth 12,
3 heads; Touvron et al., DeiT, 2021) on the same 8 px patches. The paper trains ViT-B/16 at 224 px. Adapted: no
stochastic depth (LiVT fine-tunes with drop-path 0.1; a 4-block model has little to drop), and the input is
normalised by per-channel mean/std buffers inside the backbone (as ``CellClassifier``), so callers pass [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cytolt.classify.model import IMAGENET_MEAN, IMAGENET_STD, CellClassifier, ResNetBackbone

__all__ = ["VIT_SIZES", "Block", "TinyViT", "ViTBackbone", "parameter_count", "sincos_position_embedding"]

VIT_SIZES: dict[str, dict[str, int]] = {
    "cpu": {"patch_size": 8, "dim": 64, "depth": 4, "heads": 4},
    "gpu": {"patch_size": 8, "dim": 192, "depth": 12, "heads": 3},  # ViT-Tiny (DeiT-Ti) width and depth
}
MLP_RATIO = 4.0  # ViT's MLP hidden width = 4 x dim
LAYER_NORM_EPS = 1e-6  # MAE's and LiVT's LayerNorm eps


def sincos_position_embedding(dim: int, grid: int) -> Tensor:
    """Fixed 2-D sine-cosine embedding ``(1 + grid^2, dim)``, a zero row first for the class token (MAE).

    Half of the channels encode the row, half the column; each half is ``[sin(pos w_k), cos(pos w_k)]`` with
    ``w_k = 10000^(-k / (dim / 4))``, k = 0..dim/4 - 1 (Vaswani et al. 2017's frequencies).
    """
    if dim % 4:
        raise ValueError(f"the embedding dim must be divisible by 4; got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")

    def encode(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1).double() * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    # MAE's order: the first half encodes the column (w) coordinate, the second the row (h).
    table = torch.cat([encode(cols), encode(rows)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table]).float()


class Attention(nn.Module):
    """Multi-head self-attention ``(N, T, dim) -> (N, T, dim)`` (softmax(q k^T / sqrt(d_head)) v)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``."""

    def __init__(self, dim: int, heads: int, *, mlp_ratio: float = MLP_RATIO) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_vit_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears (bias 0), LayerNorm 1/0 (apply with ``module.apply``)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ViTBackbone(nn.Module):
    """(N, C, S, S) in [0, 1] -> (N, dim) features; MGP uses :meth:`encode` on the visible patches only.

    Args:
        image_size: S, the crop side in pixels (divisible by ``patch_size``).
        patch_size, dim, depth, heads: the ViT's shape (``VIT_SIZES``).
        in_channels: C.
    """

    def __init__(
        self,
        *,
        image_size: int = 32,
        patch_size: int = 8,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if image_size < patch_size or image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1; got {depth}")
        self.image_size, self.patch_size, self.dim = image_size, patch_size, dim
        self.depth, self.heads, self.in_channels = depth, heads, in_channels
        self.grid = image_size // patch_size
        mean = IMAGENET_MEAN if in_channels == 3 else (0.5,) * in_channels
        std = IMAGENET_STD if in_channels == 3 else (0.25,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Fixed, so not saved: rebuilt from the shape on load.
        self.register_buffer("pos_embed", sincos_position_embedding(dim, self.grid)[None], persistent=False)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)  # MGP encoder output (MAE's `norm`)
        self.fc_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)  # pooled features (MAE's fine-tuning `fc_norm`)
        self.feature_dim = dim
        self.reset_parameters()

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def config(self) -> dict[str, int]:
        """The constructor's arguments, e.g. for a model folder."""
        return {
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "dim": self.dim,
            "depth": self.depth,
            "heads": self.heads,
            "in_channels": self.in_channels,
        }

    def reset_parameters(self) -> None:
        """MAE's initialisation: the patch embedding as a linear map, tokens N(0, 0.02), the rest xavier."""
        self.apply(init_vit_weights)
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.cls_token, std=0.02)

    # The same per-channel input normalisation as the ResNet backbone's (mean/std buffers, [0, 1] units).
    set_normalization = ResNetBackbone.set_normalization

    def patch_tokens(self, x: Tensor) -> Tensor:
        """(N, C, S, S) in [0, 1] -> (N, L, dim) patch embeddings plus their position embeddings."""
        if (
            x.dim() != 4
            or x.shape[1] != self.in_channels
            or x.shape[-2:] != (self.image_size, self.image_size)
        ):
            raise ValueError(
                f"expected (N, {self.in_channels}, {self.image_size}, {self.image_size}) crops; got {tuple(x.shape)}"
            )
        x = self.patch_embed((x - self.mean) / self.std).flatten(2).transpose(1, 2)
        return x + self.pos_embed[:, 1:]

    def _blocks(self, tokens: Tensor) -> Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return x

    def encode(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Tokens ``(N, 1 + L_keep, dim)`` after the blocks and ``norm``; ``keep (N, L_keep)`` selects the visible
        patches (MGP's encoder sees only those), ``None`` all of them."""
        tokens = self.patch_tokens(x)
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return self.norm(self._blocks(tokens))

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, S, S) in [0, 1] -> (N, dim): mean of the patch tokens, then ``fc_norm``."""
        return self.fc_norm(self._blocks(self.patch_tokens(x))[:, 1:].mean(dim=1))


class TinyViT(nn.Module):
    """A ViT classifier with ``CellClassifier``'s interface, so the training loop and methods treat it alike.

    ``TinyViT(K)`` has the "cpu" size on 32 px crops; ``TinyViT(K, backbone=ViTBackbone(image_size=64,
    **VIT_SIZES["gpu"]))`` the GPU setting; an MGP-pre-trained backbone (``pretrain_mgp(...).backbone``) goes in
    the same way.

    Attributes:
        backbone: :class:`ViTBackbone`, (N, C, S, S) in [0, 1] -> (N, D) features.
        head: (N, D) -> (N, K) logits; ``nn.Linear(D, K)`` until a method replaces it.
        feature_dim: D = dim.
        num_classes: K.
    """

    def __init__(self, num_classes: int, *, backbone: ViTBackbone | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}")
        self.backbone = ViTBackbone() if backbone is None else backbone
        self.feature_dim = self.backbone.feature_dim
        self.num_classes = num_classes
        self.head: nn.Module = nn.Linear(self.feature_dim, num_classes)
        init_vit_weights(self.head)

    # CellClassifier's: features = backbone(x), logits = head(features).
    features = CellClassifier.features
    forward = CellClassifier.forward


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
