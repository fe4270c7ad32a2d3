"""Masked generative pre-training (MGP) of a small ViT on unlabelled crops, LiVT's first stage (Xu et al.,
"Learning Imbalanced Data with Vision Transformers", CVPR 2023, arXiv 2212.02015), which is MAE (He et al.,
"Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, arXiv 2111.06377) on the long-tailed training set.

Each step: cut every crop into L patches, keep a random 25 % of them per crop (mask ratio 0.75), run the encoder
(:class:`~cytolt.classify.vit.ViTBackbone`) on the visible patches only, append a shared learnt mask token for
every hidden patch, restore the patch order, add position embeddings and run a light decoder that predicts the
pixels of every patch; the loss is the mean squared error on the hidden patches only, against each patch's
pixels normalised by that patch's own mean and variance (MAE's ``norm_pix_loss``, LiVT's setting). Labels are
never read, so the head classes' dominance does not shape the representation.

Glossary
    images     (N, S, S, C) uint8, a CropSet's crops; (N, C, S, S) float in [0, 1] once on the device.
    patches    (N, L, p * p * C): pixels of each patch, row-major patch order, (row, col, channel) inside one.
    keep       (N, L_keep) int64, visible patch indices, L_keep = int(L * (1 - mask_ratio)) (MAE's rounding).
    mask       (N, L) float, 1 for a hidden patch, 0 for a visible one.
    restore    (N, L) int64, the inverse permutation that puts shuffled tokens back in patch order.

Constants from the papers: mask ratio 0.75, per-patch target normalisation with variance + 1e-6, AdamW with
betas (0.9, 0.95) and weight decay 0.05 (none on biases, norms and tokens), linear warm-up then half-cosine
decay to 0 (LiVT's pre-training: 40 of 400 epochs warm-up, i.e. 10 %). Adapted for cell crops on CPU: a decoder
of 2 blocks at the encoder's width (MAE: 8 blocks of 512; its ablation finds one block enough with normalised
targets), flips and 90-degree rotations as augmentation (cells have no orientation; MAE uses random resized
crops and flips), and a default learning rate of 1e-3 (MAE's rule 1.5e-4 x batch / 256 gives 3.8e-5 at
batch 64, tuned for hundreds of epochs over 10^5-10^6 images; a tiny ViT on a few thousand crops for tens of
epochs needs larger steps).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cytolt.classify.vit import VIT_SIZES, Block, ViTBackbone, init_vit_weights, sincos_position_embedding

__all__ = [
    "DECODER_SIZES",
    "MASK_RATIO",
    "MGPResult",
    "MaskedAutoencoder",
    "masked_patch_loss",
    "normalized_patch_targets",
    "patchify",
    "pretrain_mgp",
    "random_masking",
    "unpatchify",
]

MASK_RATIO = 0.75  # MAE and LiVT (args: mask_ratio 0.75)
TARGET_EPS = 1e-6  # MAE's norm_pix_loss: (x - mean) / sqrt(var + 1e-6)
BETAS = (0.9, 0.95)  # MAE's AdamW betas for pre-training
WEIGHT_DECAY = 0.05  # LiVT pre-training args
WARMUP_FRACTION = 0.1  # LiVT: 40 warm-up epochs of 400
LR = 1e-3  # see the module docstring
DECODER_SIZES: dict[str, dict[str, int]] = {
    "cpu": {"dim": 64, "depth": 2, "heads": 4},
    "gpu": {"dim": 128, "depth": 4, "heads": 4},
}


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``(N, C, S, S) -> (N, L, p * p * C)``, patches row-major, pixels (row, col, channel) inside a patch."""
    n, c, h, w = images.shape
    if h != w or h % patch_size:
        raise ValueError(
            f"patchify: square images with side divisible by {patch_size}; got {tuple(images.shape)}"
        )
    g = h // patch_size
    x = images.reshape(n, c, g, patch_size, g, patch_size)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, g * g, patch_size * patch_size * c)


def unpatchify(patches: Tensor, patch_size: int, channels: int = 3) -> Tensor:
    """Inverse of :func:`patchify`: ``(N, L, p * p * C) -> (N, C, S, S)``."""
    n, length, _ = patches.shape
    g = math.isqrt(length)
    if g * g != length:
        raise ValueError(f"unpatchify: the patch count {length} is not a square")
    x = patches.reshape(n, g, g, patch_size, patch_size, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, g * patch_size, g * patch_size)


def random_masking(
    batch: int,
    num_patches: int,
    mask_ratio: float,
    generator: torch.Generator,
    *,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-crop random masking (MAE): ``(keep (N, L_keep), mask (N, L), restore (N, L))``.

    Each crop's patches are ranked by uniform noise from ``generator`` (so the mask is a function of the seed);
    the ``L_keep = int(L * (1 - mask_ratio))`` lowest stay visible.
    """
    if not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio}")
    keep_count = int(num_patches * (1 - mask_ratio))
    if keep_count < 1:
        raise ValueError(f"mask_ratio {mask_ratio} leaves no visible patch of {num_patches}")
    noise = torch.rand(batch, num_patches, generator=generator).to(device)
    shuffle = torch.argsort(noise, dim=1)
    restore = torch.argsort(shuffle, dim=1)
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :keep_count] = 0
    return shuffle[:, :keep_count], torch.gather(mask, 1, restore), restore


def normalized_patch_targets(patches: Tensor, *, eps: float = TARGET_EPS) -> Tensor:
    """Each patch's pixels minus their mean, over ``sqrt(var + eps)`` (unbiased var, as MAE's ``target.var``)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def masked_patch_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean over hidden patches of the per-patch mean squared error; ``pred``, ``target`` ``(N, L, P)``."""
    per_patch = (pred - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


class MGPDecoder(nn.Module):
    """Light MAE decoder: visible tokens + mask tokens, in patch order, -> ``(N, L, p * p * C)`` pixels."""

    def __init__(
        self, num_patches: int, encoder_dim: int, patch_dim: int, *, dim: int, depth: int, heads: int
    ) -> None:
        super().__init__()
        grid = math.isqrt(num_patches)
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_position_embedding(dim, grid)[None], persistent=False)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch_dim)
        self.apply(init_vit_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, encoded: Tensor, restore: Tensor) -> Tensor:
        """``encoded (N, 1 + L_keep, E)`` (class token first), ``restore (N, L)`` -> ``(N, L, P)``."""
        x = self.embed(encoded)
        n, length = restore.shape
        masks = self.mask_token.expand(n, length - (x.shape[1] - 1), -1)
        patches = torch.cat([x[:, 1:], masks], dim=1)
        patches = torch.gather(patches, 1, restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]


class MaskedAutoencoder(nn.Module):
    """The encoder (a :class:`ViTBackbone`) and the MGP decoder; :meth:`loss` is one MGP step's objective."""

    def __init__(
        self, encoder: ViTBackbone, *, decoder_dim: int, decoder_depth: int, decoder_heads: int
    ) -> None:
        super().__init__()
        self.encoder = encoder
        patch_dim = encoder.patch_size**2 * encoder.in_channels
        self.decoder = MGPDecoder(
            encoder.num_patches,
            encoder.dim,
            patch_dim,
            dim=decoder_dim,
            depth=decoder_depth,
            heads=decoder_heads,
        )

    def forward(self, x: Tensor, keep: Tensor, restore: Tensor) -> Tensor:
        """Predicted pixels ``(N, L, P)`` of every patch of ``x (N, C, S, S)`` in [0, 1] from its visible ``keep``."""
        return self.decoder(self.encoder.encode(x, keep), restore)

    def loss(self, x: Tensor, generator: torch.Generator, *, mask_ratio: float = MASK_RATIO) -> Tensor:
        """MGP loss of a batch ``x (N, C, S, S)`` in [0, 1] with a mask drawn from ``generator``."""
        keep, mask, restore = random_masking(
            x.shape[0], self.encoder.num_patches, mask_ratio, generator, device=x.device
        )
        target = normalized_patch_targets(patchify(x, self.encoder.patch_size))
        return masked_patch_loss(self(x, keep, restore), target, mask)


@dataclass
class MGPResult:
    """What :func:`pretrain_mgp` returns.

    Attributes:
        backbone: the pre-trained encoder (eval mode), ready for ``TinyViT.backbone.load_state_dict``.
        config: the backbone's constructor arguments and the pre-training settings.
        history: per epoch ``{"epoch", "loss", "lr", "seconds"}``.
        seconds: wall time of the pre-training.
    """

    backbone: ViTBackbone
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def state(self) -> dict[str, Tensor]:
        """The backbone's state dict (what a safetensors file would hold)."""
        return self.backbone.state_dict()


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random horizontal flip and 90-degree rotation per crop (the 8 symmetries of the square, drawn jointly)."""
    n = x.shape[0]
    flips = torch.rand(n, generator=generator) < 0.5
    turns = torch.randint(0, 4, (n,), generator=generator)
    x = torch.where(flips.to(x.device)[:, None, None, None], x.flip(-1), x)
    return torch.stack([torch.rot90(xi, int(k), dims=(-2, -1)) for xi, k in zip(x, turns, strict=True)])


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # MAE: no weight decay on biases, norms and the learnt tokens.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith("token") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _images_tensor(images: np.ndarray) -> Tensor:
    array = np.asarray(images)
    if array.ndim != 4 or array.dtype != np.uint8 or array.shape[1] != array.shape[2]:
        raise ValueError(f"images must be (N, S, S, C) uint8; got {array.shape} {array.dtype}")
    if len(array) < 2:
        raise ValueError("pretrain_mgp needs at least 2 images")
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)


def pretrain_mgp(
    images: np.ndarray,
    *,
    epochs: int,
    mask_ratio: float = MASK_RATIO,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = LR,
    weight_decay: float = WEIGHT_DECAY,
    warmup_fraction: float = WARMUP_FRACTION,
    vit: dict[str, int] | None = None,
    decoder: dict[str, int] | None = None,
    augment: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> MGPResult:
    """Masked generative pre-training of a :class:`ViTBackbone` on ``images`` (no labels).

    Args:
        images: (N, S, S, C) uint8 crops, e.g. ``CropSet.images``.
        epochs: passes over the images (each a fresh shuffle, augmentation and masks).
        mask_ratio: fraction of each crop's patches hidden from the encoder.
        seed: seeds the weights (in a forked RNG: the global RNG is left as it was), the order, the augmentation
            and the masks; the same seed gives the same result on the same device.
        batch_size: crops per step (a last batch of one crop is dropped).
        lr, weight_decay, warmup_fraction: AdamW's peak rate, decay, and the share of steps warming up linearly.
        vit: the backbone's shape (``VIT_SIZES["cpu"]`` by default); the image size comes from ``images``.
        decoder: ``{"dim", "depth", "heads"}`` of the decoder (``DECODER_SIZES["cpu"]`` by default).
        augment: random flips and 90-degree rotations.
        device: where to train.
        progress: a tqdm bar over the steps (stderr).
    """
    from tqdm import tqdm

    start = time.perf_counter()
    data = _images_tensor(images)
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0; got {epochs}")
    vit_config = {
        **VIT_SIZES["cpu"],
        **(vit or {}),
        "image_size": int(data.shape[-1]),
        "in_channels": int(data.shape[1]),
    }
    dec = {**DECODER_SIZES["cpu"], **(decoder or {})}
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ViTBackbone(**vit_config)
        model = MaskedAutoencoder(
            encoder, decoder_dim=dec["dim"], decoder_depth=dec["depth"], decoder_heads=dec["heads"]
        )
    # The input normalisation measured on these crops (the targets are normalised per patch anyway).
    pixels = data.float().div_(255.0)
    encoder.set_normalization(pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3)).clamp_min(1e-3))
    model.to(device).train()
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=BETAS)
    generator = torch.Generator().manual_seed(seed)
    n = len(data)
    steps_per_epoch = n // batch_size + (n % batch_size > 1)
    total = max(1, epochs * steps_per_epoch)
    warmup = int(round(warmup_fraction * total))
    history: list[dict[str, Any]] = []
    step = 0
    with tqdm(total=total, desc="mgp", disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            t0, losses = time.perf_counter(), []
            order = torch.randperm(n, generator=generator)
            for first in range(0, n, batch_size):
                batch = order[first : first + batch_size]
                if len(batch) < 2:
                    continue
                rate = (
                    lr * (step + 1) / warmup if step < warmup else _cosine(lr, step - warmup, total - warmup)
                )
                for group in optimizer.param_groups:
                    group["lr"] = rate
                x = data[batch].to(device).float().div_(255.0)
                if augment:
                    x = _augment(x, generator)
                loss = model.loss(x, generator, mask_ratio=mask_ratio)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                step += 1
                bar.update(1)
            history.append(
                {
                    "epoch": epoch + 1,
                    "loss": float(np.mean(losses)) if losses else float("nan"),
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
    encoder.eval()
    config = {
        "vit": encoder.config,
        "decoder": dec,
        "mask_ratio": mask_ratio,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "seed": seed,
    }
    return MGPResult(backbone=encoder, config=config, history=history, seconds=time.perf_counter() - start)


def _cosine(peak: float, step: int, steps: int) -> float:
    """Half-cosine from ``peak`` at step 0 to 0 at ``steps``."""
    return 0.5 * peak * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1)))
