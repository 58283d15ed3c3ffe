"""Chapter 4 — Strategy 2: the Vision Transformer replaces convolution.

An image becomes a sequence of patch tokens (:class:`PatchEmbedding`), a class token and learned
position embeddings are added, and a stack of pre-norm Transformer encoder blocks (:class:`EncoderBlock`,
attention from :mod:`nlbook.attention`) mixes all tokens with each other from the first layer on
(Dosovitskiy et al., 2021). :class:`VisionTransformer` has named presets (:data:`VIT_PRESETS`) sized for
32×32 images and the ImageNet ViT-B/16 shape.

The layout mirrors :class:`torchvision.models.VisionTransformer` one-to-one, so
:mod:`nlbook.vit_torchvision` moves weights across by renaming keys and the tests check that both models give
the same logits — the tutorial model *is* the reference model.

Also here: the einops "cut into patches + linear layer" form of the patch embedding (:func:`patchify`,
:meth:`PatchEmbedding.forward_linear`), stochastic depth (:class:`DropPath`), bicubic resampling of the
position embeddings for another input size (:func:`interpolate_pos_embed`) and attention rollout
(:func:`attention_rollout`, Abnar & Zuidema, 2020).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nlbook.attention import AttentionImpl, MultiHeadAttention
from nlbook.checks import (
    check_bool,
    check_image_batch,
    check_int,
    check_ints,
    check_positive_int,
    check_probability,
    check_sequence,
    check_tensor,
    is_real,
)

__all__ = [
    "VIT_PRESETS",
    "DropPath",
    "EncoderBlock",
    "Mlp",
    "PatchEmbedding",
    "Pool",
    "VisionTransformer",
    "attention_rollout",
    "stochastic_depth",
    "interpolate_pos_embed",
    "patchify",
    "vit_preset",
]

Pool = Literal["cls", "gap"]
HeadInit = Literal["normal", "zeros"]

# torchvision (and the original JAX code) use LayerNorm with eps 1e-6, not PyTorch's default 1e-5.
LN_EPS = 1e-6


def _check_patchable(x: torch.Tensor, patch_size: int, where: str) -> tuple[int, int]:
    """The (rows, cols) patch grid of ``x``; a clear error if H or W is not a multiple of the patch size."""
    h, w = x.shape[-2:]
    if h % patch_size or w % patch_size:
        # (B, H, W, C) images put the colours where the width should be
        layout = (
            f"; the shape {tuple(x.shape)} looks channels-last (B, H, W, C): pass x.permute(0, 3, 1, 2)"
            if w in (1, 3) and x.shape[1] not in (1, 3)
            else ""
        )
        raise ValueError(
            f"{where}: image size {h}×{w} is not divisible by the patch size {patch_size}; "
            f"use images whose height and width are multiples of {patch_size} (e.g. resize or crop){layout}"
        )
    return h // patch_size, w // patch_size


# ----------------------------------------------------------------------------------------------------------
# Images as sequences of patches
# ----------------------------------------------------------------------------------------------------------


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut (B, C, H, W) images into non-overlapping ``patch_size``² patches: (B, N,
    C·p·p), row-major.

    Each patch is flattened channel-first, ``(c p1 p2)``, the order in which a
    ``Conv2d`` weight
    ``(D, C, p, p)`` flattens — which is what makes
    :meth:`PatchEmbedding.forward_linear` equal the
    convolution.
    """
    check_image_batch(x, None, "patchify")
    check_positive_int("patchify", patch_size=patch_size)
    _check_patchable(x, patch_size, "patchify")
    return rearrange(
        x, "b c (gh p1) (gw p2) -> b (gh gw) (c p1 p2)", p1=patch_size, p2=patch_size
    )


class PatchEmbedding(nn.Module):
    """Linear embedding of non-overlapping patches, written as a convolution with
    kernel = stride = patch.

    A ``p``×``p`` convolution with stride ``p`` sees each patch exactly once, so it
    *is* a linear layer
    applied to every flattened patch (:meth:`forward_linear` computes it that way; the
    two agree to
    rounding). The convolution is simply the faster kernel.

    Args:
        image_size: side of the (square) training images; sets :attr:`grid_size`.
        patch_size: side of a patch in pixels.
        in_channels: image channels.
        embed_dim: token width ``D``.
        strict_size: accept only ``image_size``×``image_size`` inputs (as torchvision
        does). The
            :class:`VisionTransformer` turns it off: it resamples its position
            embeddings for any input whose
            sides are multiples of the patch size.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        embed_dim: int = 192,
        strict_size: bool = True,
    ):
        super().__init__()
        check_positive_int(
            "PatchEmbedding",
            image_size=image_size,
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dim=embed_dim,
        )
        # plain ints (numpy's pass the check): kernel sizes, reprs, configs
        image_size, patch_size, in_channels, embed_dim = map(
            int, (image_size, patch_size, in_channels, embed_dim)
        )
        if image_size % patch_size:
            raise ValueError(
                f"PatchEmbedding: image_size {image_size} is not divisible by "
                f"patch_size {patch_size}; "
                f"choose a patch size that divides the image size (e.g. "
                f"{_divisors_hint(image_size)})"
            )
        self.image_size, self.patch_size, self.in_channels, self.embed_dim = (
            image_size,
            patch_size,
            in_channels,
            embed_dim,
        )
        self.strict_size = check_bool("PatchEmbedding", "strict_size", strict_size)
        self.grid_size = (image_size // patch_size, image_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(
            in_channels, embed_dim, kernel_size=patch_size, stride=patch_size
        )

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        check_image_batch(x, self.in_channels, name, like=self)
        if self.strict_size and tuple(x.shape[-2:]) != (
            self.image_size,
            self.image_size,
        ):
            raise ValueError(
                f"{name} was built for {self.image_size}×{self.image_size} images, got "
                f"{x.shape[-2]}×{x.shape[-1]}; resize the images (or build it with "
                f"strict_size=False)"
            )
        _check_patchable(x, self.patch_size, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, N, D) tokens with N = (H/p)·(W/p), patches in row-major
        order."""
        self._check_input(x)
        return rearrange(self.proj(x), "b d gh gw -> b (gh gw) d")

    def forward_linear(self, x: torch.Tensor) -> torch.Tensor:
        """The same embedding as "cut into patches, then one linear layer" — the
        paper's formulation."""
        self._check_input(x)
        patches = patchify(x, self.patch_size)  # (B, N, C·p·p)
        weight = rearrange(self.proj.weight, "d c p1 p2 -> d (c p1 p2)")
        return F.linear(patches, weight, self.proj.bias)

    def extra_repr(self) -> str:
        return (
            f"image_size={self.image_size}, patch_size={self.patch_size}, "
            f"grid={self.grid_size}"
        )


def _divisors_hint(n: int) -> str:
    divisors = [d for d in range(2, n + 1) if n % d == 0][:5]
    return ", ".join(map(str, divisors)) if divisors else "1"


# ----------------------------------------------------------------------------------------------------------
# Encoder block: pre-norm attention + MLP, each a residual branch with stochastic depth
# ----------------------------------------------------------------------------------------------------------


def stochastic_depth(
    x: torch.Tensor, p: float = 0.0, training: bool = False
) -> torch.Tensor:
    """Stochastic depth (Huang et al., 2016): drop a residual branch for whole samples
    with probability ``p``.

    Surviving samples are scaled by 1/(1-p) so the expected output is unchanged; at
    evaluation time the
    branch is always kept (identity).
    """
    check_tensor("stochastic_depth", "x", x, kind="float", shape="(B, ...)")
    check_probability("stochastic_depth", p=p)
    # a string such as "no" would be truthy and drop branches at evaluation time
    training = check_bool("stochastic_depth", "training", training)
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    # One Bernoulli draw per sample, broadcast over all other dimensions; same
    # device/dtype as x.
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of :func:`stochastic_depth` (the layer timm calls drop path)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        check_probability("DropPath", p=p)
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """The Transformer's position-wise MLP: Linear → GELU → Dropout → Linear → Dropout.

    GELU is the exact (erf) form, as in the original ViT and torchvision.
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        check_positive_int("Mlp", dim=dim, hidden_dim=hidden_dim)
        check_probability("Mlp", dropout=dropout)
        dim, hidden_dim = int(dim), int(hidden_dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block (Dosovitskiy et al., 2021, eq. 2–3)::

        x = x + DropPath(MHA(LN(x)))
        x = x + DropPath(MLP(LN(x)))

    Normalising *inside* the residual branch keeps the identity path clean, which is
    what lets deep
    stacks train without a careful warm-up of the learning rate alone.

    Args:
        dim: token width. num_heads: attention heads (``dim`` must be a multiple).
        mlp_ratio: MLP hidden width / ``dim``, or give ``mlp_dim`` directly
        (torchvision's argument).
        dropout: dropout after attention projection and in the MLP. attn_dropout: on
        the attention weights.
        drop_path: stochastic-depth probability of both residual branches.
        impl: attention implementation (``"fused"`` SDPA or ``"explicit"``), see
        :mod:`nlbook.attention`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        impl: AttentionImpl = "fused",
        mlp_dim: int | None = None,
    ):
        super().__init__()
        check_positive_int("EncoderBlock", dim=dim, num_heads=num_heads)
        dim, num_heads = int(dim), int(num_heads)
        check_probability(
            "EncoderBlock",
            dropout=dropout,
            attn_dropout=attn_dropout,
            drop_path=drop_path,
        )
        if mlp_dim is None:
            if not is_real(mlp_ratio) or not 0 < mlp_ratio < float("inf"):
                raise ValueError(
                    f"EncoderBlock: mlp_ratio must be > 0, got {mlp_ratio!r}"
                )
            mlp_dim = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = MultiHeadAttention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            attn_dropout=attn_dropout,
            dropout=dropout,
            impl=impl,
        )
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, N, dim) → (B, N, dim); with ``return_attention`` also the (B, heads, N,
        N) attention weights."""
        return_attention = check_bool(
            "EncoderBlock", "return_attention", return_attention
        )
        dim = self.norm1.normalized_shape[0]
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"EncoderBlock expects (B, N, {dim}) tokens, got {shape}")
        if return_attention:
            a, weights = self.attn(self.norm1(x), return_attention=True)
        else:
            a, weights = self.attn(self.norm1(x)), None
        x = x + self.drop_path(a)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return (x, weights) if return_attention else x


# ----------------------------------------------------------------------------------------------------------
# Position embeddings at another resolution
# ----------------------------------------------------------------------------------------------------------


def interpolate_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: Sequence[int],
    old_grid: Sequence[int] | None = None,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Resample learned position embeddings (1, prefix + gh·gw, D) to another patch
    grid.

    The prefix (class token) embeddings are kept; the grid part is treated as a
    D-channel image and
    resized bicubically with antialiasing on (it matters only when shrinking), as timm's
    ``resample_abs_pos_embed`` does. The ViT paper's reference code resizes bilinearly
    when it fine-tunes at a
    higher resolution. At the same grid it returns ``pos_embed`` unchanged.
    """
    where = "interpolate_pos_embed"
    check_tensor(where, "pos_embed", pos_embed, kind="float", shape="(1, N, D)")
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(
            f"interpolate_pos_embed expects (1, N, D) embeddings, got shape "
            f"{tuple(pos_embed.shape)}"
        )
    num_prefix_tokens = check_int(
        where, "num_prefix_tokens", num_prefix_tokens, low=0, high=pos_embed.shape[1]
    )
    new_grid = check_ints(where, "new_grid", new_grid, length=2, what="(rows, cols)")
    if old_grid is not None:
        old_grid = check_ints(
            where, "old_grid", old_grid, length=2, what="(rows, cols)"
        )
    n_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(max(n_grid, 0))
        if side * side != n_grid:
            raise ValueError(
                f"interpolate_pos_embed: {n_grid} grid tokens are not a square grid; "
                f"pass old_grid=(rows, cols)"
            )
        old_grid = (side, side)
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if len(new_grid) != 2 or min(new_grid) < 1:
        raise ValueError(
            f"interpolate_pos_embed: new_grid must be (rows, cols) >= 1, got {new_grid}"
        )
    if old_grid[0] * old_grid[1] != n_grid:
        raise ValueError(
            f"interpolate_pos_embed: old_grid {old_grid} has "
            f"{old_grid[0] * old_grid[1]} positions but the "
            f"embedding has {n_grid} grid tokens (after {num_prefix_tokens} prefix "
            f"tokens)"
        )
    if new_grid == old_grid:
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    grid = rearrange(grid, "1 (gh gw) d -> 1 d gh gw", gh=old_grid[0], gw=old_grid[1])
    # Bicubic interpolation is not implemented for half precision on every device:
    # compute in float32 then.
    work_dtype = (
        grid.dtype if grid.dtype in (torch.float32, torch.float64) else torch.float32
    )
    grid = F.interpolate(
        grid.to(work_dtype),
        size=new_grid,
        mode="bicubic",
        align_corners=False,
        antialias=True,
    )
    grid = rearrange(grid.to(pos_embed.dtype), "1 d gh gw -> 1 (gh gw) d")
    return torch.cat([prefix, grid], dim=1)


# ----------------------------------------------------------------------------------------------------------
# The Vision Transformer
# ----------------------------------------------------------------------------------------------------------


class VisionTransformer(nn.Module):
    """ViT (Dosovitskiy et al., 2021): patch tokens + [class token] + positions → encoder → head.

    Args:
        image_size: training image side (square); inputs of other sizes divisible by ``patch_size`` are
            accepted and use bicubically resampled position embeddings (:func:`interpolate_pos_embed`).
        patch_size: patch side in pixels; the sequence has (image_size / patch_size)² patch tokens.
        in_channels, num_classes: image channels and output logits.
        embed_dim, depth, num_heads: token width, number of encoder blocks, attention heads.
        mlp_ratio: MLP hidden width / ``embed_dim`` (ignored if ``mlp_dim`` is given).
        pool: ``"cls"`` classifies from a learned class token (ViT, DeiT, torchvision); ``"gap"`` averages
            the patch tokens instead (Beyer et al., 2022) and has no class token.
        dropout: on embeddings, attention output and MLP. attn_dropout: on attention weights.
        drop_path: stochastic-depth rate of the *last* block; it grows linearly from 0 over depth
            (Huang et al., 2016, as in DeiT).
        qkv_bias: biases in the q/k/v projection (True in ViT/torchvision).
        impl: attention implementation passed to :class:`nlbook.attention.MultiHeadAttention`.
        mlp_dim: MLP hidden width, overrides ``mlp_ratio`` (torchvision's parametrisation).
        head_init: ``"normal"`` (truncated normal, std 0.02, as DeiT and timm) or ``"zeros"`` (as the JAX ViT
            and torchvision). A zero head passes no gradient to the encoder until it has grown, which on a short
            budget slows learning (measured in chapter 4); the zero head suits long schedules.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        num_classes: int = 10,
        embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        pool: Pool = "cls",
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        qkv_bias: bool = True,
        impl: AttentionImpl = "fused",
        mlp_dim: int | None = None,
        head_init: HeadInit = "normal",
    ):
        super().__init__()
        name = type(self).__name__
        if head_init not in ("normal", "zeros"):
            raise ValueError(
                f"{name}: head_init must be 'normal' (DeiT/timm) or 'zeros' (JAX/torchvision), got {head_init!r}"
            )
        check_positive_int(
            name,
            num_classes=num_classes,
            depth=depth,
            embed_dim=embed_dim,
            num_heads=num_heads,
        )
        check_probability(
            name, dropout=dropout, attn_dropout=attn_dropout, drop_path=drop_path
        )
        num_classes, depth, embed_dim, num_heads = map(
            int, (num_classes, depth, embed_dim, num_heads)
        )
        if pool not in ("cls", "gap"):
            raise ValueError(
                f"{name}: pool must be 'cls' (class token) or 'gap' (average of tokens), got {pool!r}"
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"{name}: embed_dim ({embed_dim}) must be a multiple of num_heads ({num_heads})"
            )
        # Any input with sides divisible by the patch size is accepted: positions are resampled in `embed`.
        self.patch_embed = PatchEmbedding(
            image_size, patch_size, in_channels, embed_dim, strict_size=False
        )
        self.image_size, self.patch_size, self.in_channels = (
            image_size,
            patch_size,
            in_channels,
        )
        self.num_classes, self.embed_dim, self.depth, self.num_heads = (
            num_classes,
            embed_dim,
            depth,
            num_heads,
        )
        self.pool: Pool = pool
        self.num_prefix_tokens = 1 if pool == "cls" else 0
        self.cls_token = (
            nn.Parameter(torch.zeros(1, 1, embed_dim)) if pool == "cls" else None
        )
        # One learned vector per position, class token included (as in ViT and torchvision).
        self.pos_embed = nn.Parameter(
            torch.zeros(
                1, self.num_prefix_tokens + self.patch_embed.num_patches, embed_dim
            )
        )
        self.pos_drop = nn.Dropout(dropout)
        # Plain Python (not torch.linspace) so the model can be built under a meta/cuda default device.
        rates = (
            [drop_path * i / (depth - 1) for i in range(depth)]
            if depth > 1
            else [drop_path]
        )
        self.blocks = nn.ModuleList(
            EncoderBlock(
                embed_dim,
                num_heads,
                mlp_ratio,
                qkv_bias=qkv_bias,
                dropout=dropout,
                attn_dropout=attn_dropout,
                drop_path=rate,
                impl=impl,
                mlp_dim=mlp_dim,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.head = nn.Linear(embed_dim, num_classes)
        self.head_init: HeadInit = head_init
        self.reset_parameters()

    # -- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> VisionTransformer:
        """A named configuration from :data:`VIT_PRESETS`, with keyword overrides (e.g. ``num_classes``)."""
        return vit_preset(name, **overrides)

    def reset_parameters(self) -> None:
        """Initialisation of the reference implementations (JAX ViT, DeiT, timm,
        torchvision).

        * position embeddings and class token: truncated normal, std 0.02 (cut at ±2
          std);
        * every linear layer: truncated normal, std 0.02, zero bias; LayerNorms: weight
          1, bias 0;
        * patch projection: truncated normal with std sqrt(1/fan_in) ("LeCun normal"),
          zero bias;
        * classification head: like the other linear layers (DeiT, timm), or all zeros
          with
          ``head_init="zeros"`` (JAX, torchvision), so that every class starts at the
          same logit.
        """
        std = 0.02
        nn.init.trunc_normal_(self.pos_embed, std=std, a=-2 * std, b=2 * std)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=std, a=-2 * std, b=2 * std)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        self.norm.reset_parameters()
        conv = self.patch_embed.proj
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        conv_std = math.sqrt(1.0 / fan_in)
        nn.init.trunc_normal_(
            conv.weight, std=conv_std, a=-2 * conv_std, b=2 * conv_std
        )
        nn.init.zeros_(conv.bias)
        if self.head_init == "zeros":
            nn.init.zeros_(self.head.weight)
        else:
            nn.init.trunc_normal_(self.head.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.head.bias)

    # -- sequence length / resolution --------------------------------------------------------------------

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (rows, cols) at the training resolution."""
        return self.patch_embed.grid_size

    @property
    def seq_len(self) -> int:
        """Tokens the encoder sees at the training resolution (patches + class token)."""
        return self.patch_embed.num_patches + self.num_prefix_tokens

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings for a ``grid`` of patches (resampled if it is not the training grid)."""
        return interpolate_pos_embed(
            self.pos_embed, grid, self.grid_size, self.num_prefix_tokens
        )

    def set_image_size(self, image_size: int) -> None:
        """Permanently resample the position embeddings to ``image_size`` (fine-tuning at another resolution)."""
        check_positive_int("set_image_size", image_size=image_size)
        if image_size % self.patch_size:
            raise ValueError(
                f"set_image_size: image_size {image_size} is not divisible by the patch size {self.patch_size}"
            )
        grid = (image_size // self.patch_size,) * 2
        with torch.no_grad():
            new = self.pos_embed_for(grid).clone()
        self.pos_embed = nn.Parameter(new)
        self.patch_embed.image_size, self.image_size = image_size, image_size
        self.patch_embed.grid_size, self.patch_embed.num_patches = (
            grid,
            grid[0] * grid[1],
        )

    # -- forward -----------------------------------------------------------------------------------------

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) → encoder input tokens (B, prefix + N, D): patches, class token, positions."""
        check_image_batch(x, self.in_channels, type(self).__name__, like=self)
        grid = _check_patchable(x, self.patch_size, type(self).__name__)
        tokens = self.patch_embed(x)
        if self.cls_token is not None:
            tokens = torch.cat(
                [self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1
            )
        return self.pos_drop(tokens + self.pos_embed_for(grid))

    def forward_features(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Normalised output tokens (B, prefix + N, D); optionally each block's (B, heads, T, T) attention."""
        return_attention = check_bool(
            type(self).__name__, "return_attention", return_attention
        )
        tokens = self.embed(x)
        attentions: list[torch.Tensor] = []
        for block in self.blocks:
            if return_attention:
                tokens, weights = block(tokens, return_attention=True)
                attentions.append(weights)
            else:
                tokens = block(tokens)
        tokens = self.norm(tokens)
        return (tokens, attentions) if return_attention else tokens

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool the tokens (class token, or mean of the patch tokens) and classify."""
        pooled = tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
        return self.head(pooled)

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, num_classes); with ``return_attention`` also a list of per-block attention weights.

        Returning attention runs the explicit attention path (the fused kernel never forms the weights);
        the result is the same up to rounding.
        """
        if check_bool(type(self).__name__, "return_attention", return_attention):
            tokens, attentions = self.forward_features(x, return_attention=True)
            return self.forward_head(tokens), attentions
        return self.forward_head(self.forward_features(x))

    def attention_map(
        self, x: torch.Tensor, residual_weight: float = 0.5
    ) -> torch.Tensor:
        """Attention rollout as a (B, rows, cols) map over the patch grid, each map summing to 1.

        For ``pool="cls"`` it is the class token's row of the rollout; for ``"gap"`` the average row over
        all tokens (the pooled feature averages all of them).
        """
        _, attentions = self.forward_features(x, return_attention=True)
        rollout = attention_rollout(attentions, residual_weight=residual_weight)
        rows = rollout[:, 0] if self.pool == "cls" else rollout.mean(dim=1)
        patch_part = rows[:, self.num_prefix_tokens :]
        patch_part = patch_part / patch_part.sum(dim=-1, keepdim=True)
        gh, gw = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        return rearrange(patch_part, "b (gh gw) -> b gh gw", gh=gh, gw=gw)


def _check_rollout_layers(attentions: object) -> list[torch.Tensor]:
    """A list with one float (B, heads, T, T) or (B, T, T) tensor per layer, all of one batch and token count.
    A list, not one stacked tensor: that would be iterated over its first axis (the batch) as if it were layers."""
    where = "attention_rollout"
    layers = check_sequence(
        where, "attentions", attentions, what="per-layer attention tensors"
    )
    if len(layers) == 0:
        raise ValueError(
            "attention_rollout needs at least one layer's attention weights"
        )
    for i, a in enumerate(layers):
        check_tensor(
            where,
            f"attentions[{i}]",
            a,
            dims=(3, 4),
            kind="float",
            shape="(B, heads, T, T) or (B, T, T)",
        )
        if a.shape[-2:] != layers[0].shape[-2:] or a.shape[0] != layers[0].shape[0]:
            raise ValueError(
                f"{where}: every layer must have the same batch and tokens, got {tuple(layers[0].shape)} "
                f"(layer 0) and {tuple(a.shape)} (layer {i})"
            )
    return layers


def attention_rollout(
    attentions: Sequence[torch.Tensor],
    residual_weight: float = 0.5,
    head_fusion: str = "mean",
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on
    each input token.

    Each layer's attention is averaged over heads, the residual connection is accounted
    for as
    ``Â = w·I + (1-w)·A`` (the paper's w = 0.5), rows are renormalised, and the layers
    are multiplied
    from the first to the last: ``R = Â_L ··· Â_1``.

    Args:
        attentions: per-layer weights, each (B, heads, T, T) (or (B, T, T)), first
        layer first.
        residual_weight: weight ``w`` of the identity. head_fusion: ``"mean"``,
        ``"max"`` or ``"min"``.

    Returns:
        (B, T, T) rollout; row ``i`` sums to 1.
    """
    attentions = _check_rollout_layers(attentions)
    if not isinstance(head_fusion, str) or head_fusion not in ("mean", "max", "min"):
        raise ValueError(
            f"attention_rollout: head_fusion must be 'mean', 'max' or 'min', got "
            f"{head_fusion!r}"
        )
    if not is_real(residual_weight) or not 0.0 <= residual_weight <= 1.0:
        raise ValueError(
            f"attention_rollout: residual_weight must be in [0, 1], got "
            f"{residual_weight!r}"
        )
    rollout: torch.Tensor | None = None
    for i, a in enumerate(attentions):
        if a.dim() == 4:
            a = (
                a.mean(dim=1)
                if head_fusion == "mean"
                else getattr(a, head_fusion)(dim=1).values
            )
        if a.dim() != 3 or a.shape[-1] != a.shape[-2]:
            raise ValueError(
                f"attention_rollout: layer {i} weights must be (B, heads, T, T) or "
                f"(B, T, T), got {tuple(a.shape)}"
            )
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = residual_weight * eye + (1.0 - residual_weight) * a
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else torch.matmul(a, rollout)
    assert rollout is not None
    return rollout


# ----------------------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------------------

VIT_PRESETS: dict[str, dict[str, Any]] = {
    # 32×32 images, 4×4 patches → 64 patch tokens. Widths and heads are DeiT's Tiny/Small (head dim 64);
    # depth 6 instead of 12 suits the small data sets and training budgets of this book.
    "vit_tiny_p4_32": dict(
        image_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3, mlp_ratio=4.0
    ),
    "vit_small_p4_32": dict(
        image_size=32, patch_size=4, embed_dim=384, depth=6, num_heads=6, mlp_ratio=4.0
    ),
    # The ImageNet ViT-B/16 of Dosovitskiy et al. (2021), torchvision's vit_b_16 shape.
    "vit_b_16": dict(
        image_size=224,
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        num_classes=1000,
    ),
}


def vit_preset(name: str, **overrides: Any) -> VisionTransformer:
    """Build the preset ``name`` from :data:`VIT_PRESETS`; keyword arguments override its settings."""
    if not isinstance(name, str) or name not in VIT_PRESETS:
        raise ValueError(
            f"vit_preset: unknown preset {name!r}; expected one of {sorted(VIT_PRESETS)}"
        )
    known = set(inspect.signature(VisionTransformer).parameters)
    unknown = sorted(set(overrides) - known)
    if unknown:  # Python's own error would name VisionTransformer.__init__, not the preset's override
        raise TypeError(
            f"vit_preset: unknown override(s) {unknown}; VisionTransformer takes {sorted(known)}"
        )
    return VisionTransformer(**{**VIT_PRESETS[name], **overrides})
