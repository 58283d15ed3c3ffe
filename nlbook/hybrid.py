"""Chapter 5 — Strategy 3: hybrid modules that mix convolution and attention inside one network.

From the lightest to the deepest fusion:

* **Gating** — :class:`SqueezeExcitation` (Hu et al., 2018) and :class:`CBAM` (Woo et al., 2018) compute a
  sigmoid gate from pooled statistics and *rescale* the convolution's features; no position ever reads
  another position's features. Both drop into :class:`nlbook.cnn.BasicBlock` as its ``attention``.
* **Token mixing** — :class:`BoTBlock` (Srinivas et al., 2021) replaces the 3×3 convolution of a bottleneck
  with multi-head self-attention with 2-D relative position logits, and :class:`CoAtNet` (Dai et al., 2021)
  stacks convolutional :class:`MBConv` stages (Sandler et al., 2018) under Transformer stages
  (:class:`TransformerBlock2d`) with a relative position bias.

:func:`hybrid_resnet` builds the chapter-1 :class:`~nlbook.cnn.ResNet` with any of them through its
``block_factory`` hook, and :func:`coatnet` builds the CoAtNet-style network, so the comparison chapter can
sweep them by name. Every attention here goes through :mod:`nlbook.attention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nlbook.attention import MultiHeadAttention, MultiHeadSelfAttention2d
from nlbook.cnn import BasicBlock, ResNet, check_image_batch

__all__ = [
    "HYBRID_KINDS",
    "BoTBlock",
    "CBAM",
    "CoAtNet",
    "HybridKind",
    "LayerNorm2d",
    "MBConv",
    "RelativePositionBias2d",
    "SqueezeExcitation",
    "TransformerBlock2d",
    "attention_maps",
    "coatnet",
    "hybrid_resnet",
]


def _check_grid_input(x: torch.Tensor, channels: int, size: tuple[int, int], where: str) -> None:
    """Blocks with relative-position parameters are tied to one grid: check channels and map size."""
    check_image_batch(x, channels, where)
    if tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(
            f"{where} was built for {size[0]}×{size[1]} feature maps (its relative position parameters are "
            f"learned per grid), got {tuple(x.shape[-2:])}; build it with size={tuple(x.shape[-2:])}"
        )


HybridKind = Literal["resnet", "se", "cbam", "botnet"]
HYBRID_KINDS: tuple[str, ...] = ("resnet", "se", "cbam", "botnet")


def _check_positive_int(where: str, **values: object) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")


def _pair(size: int | Sequence[int], where: str) -> tuple[int, int]:
    """``size`` as ``(H, W)``; raise a clear error for anything but one or two positive ints."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in pair):
        raise ValueError(f"{where}: size must be a positive int or a pair (H, W) of them, got {size!r}")
    return pair  # type: ignore[return-value]


def _reduced_channels(where: str, channels: int, reduction: int, rd_channels: int | None, floor: int) -> int:
    _check_positive_int(where, channels=channels, reduction=reduction)
    if rd_channels is not None:
        _check_positive_int(where, rd_channels=rd_channels)
        return rd_channels
    # The paper's C/r, floored so that the narrow layers of the quick profile (16 channels) keep a usable
    # bottleneck instead of a single hidden unit (timm rounds to multiples of 8 for the same reason).
    return max(floor, channels // reduction)


# --------------------------------------------------------------------------------------------------------------
# Gating: squeeze-and-excitation and CBAM
# --------------------------------------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): rescale each channel by a gate computed from all positions.

    ``s = σ(W₂ δ(W₁ GAP(x)))`` and the output is ``x · s`` (broadcast over H, W). The gate costs two small
    fully connected layers per image — almost nothing next to a 3×3 convolution — and mixes no positions.

    Args:
        channels: C of the (B, C, H, W) input.
        reduction: the paper's ratio r; the hidden layer has ``max(min_rd_channels, C // r)`` units
            unless ``rd_channels`` gives it directly.
        rd_channels: hidden units of the excitation MLP (overrides ``reduction``).
        min_rd_channels: floor on the hidden size when it comes from ``reduction``.
    """

    def __init__(
        self, channels: int, reduction: int = 16, rd_channels: int | None = None, min_rd_channels: int = 8
    ) -> None:
        super().__init__()
        hidden = _reduced_channels("SqueezeExcitation", channels, reduction, rd_channels, min_rd_channels)
        self.channels, self.rd_channels = channels, hidden
        self.fc1 = nn.Linear(channels, hidden)  # W₁ (with bias, as in the paper's FC layers)
        self.fc2 = nn.Linear(hidden, channels)  # W₂

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) excitation ``s`` in (0, 1)."""
        check_image_batch(x, self.channels, type(self).__name__)
        squeezed = x.mean(dim=(2, 3))  # (B, C): the global descriptor z of the paper
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))
        return rearrange(s, "b c -> b c 1 1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): a channel gate, then a spatial gate.

    Channel attention (paper Eq. 2) shares one MLP between the average- and the max-pooled descriptors::

        M_c = σ(MLP(AvgPool(x)) + MLP(MaxPool(x))),     x' = M_c · x

    Spatial attention (Eq. 3) pools *across channels* and convolves the two maps::

        M_s = σ(f^{k×k}([mean_c(x'); max_c(x')])),      out = M_s · x'

    The paper's ``f`` is a plain convolution. The authors' code and timm's ``CbamModule`` put a BatchNorm after
    it; ``spatial_norm=True`` reproduces that variant (it then matches timm exactly).

    Args:
        channels: C of the (B, C, H, W) input.
        reduction: ratio r of the shared MLP (hidden size ``max(min_rd_channels, C // r)``).
        rd_channels: hidden size given directly (overrides ``reduction``).
        spatial_kernel: k of the spatial convolution (7 in the paper; odd, so the map keeps its size).
        spatial_norm: BatchNorm after the spatial convolution (authors' code, timm) instead of the paper's Eq. 3.
        min_rd_channels: floor on the hidden size when it comes from ``reduction``.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        rd_channels: int | None = None,
        spatial_kernel: int = 7,
        spatial_norm: bool = False,
        min_rd_channels: int = 8,
    ) -> None:
        super().__init__()
        hidden = _reduced_channels("CBAM", channels, reduction, rd_channels, min_rd_channels)
        _check_positive_int("CBAM", spatial_kernel=spatial_kernel)
        if spatial_kernel % 2 == 0:
            raise ValueError(
                f"CBAM: spatial_kernel must be odd so the spatial map keeps its size, got {spatial_kernel}"
            )
        self.channels, self.rd_channels = channels, hidden
        # The shared MLP W₁ δ(W₀ ·) of Eq. 2 (no biases in the equation, none in timm).
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, channels, bias=False)
        )
        self.spatial_conv = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=False)
        self.spatial_norm: nn.Module = nn.BatchNorm2d(1) if spatial_norm else nn.Identity()

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """M_c, (B, C, 1, 1)."""
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return rearrange(torch.sigmoid(logits), "b c -> b c 1 1")

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """M_s, (B, 1, H, W), of an (already channel-gated) input."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return torch.sigmoid(self.spatial_norm(self.spatial_conv(pooled)))

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both gates for input ``x``: M_c (B, C, 1, 1) and M_s (B, 1, H, W) — what the chapter plots."""
        check_image_batch(x, self.channels, type(self).__name__)
        mc = self.channel_gate(x)
        return mc, self.spatial_gate(x * mc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.channels, type(self).__name__)
        x = x * self.channel_gate(x)
        return x * self.spatial_gate(x)


# --------------------------------------------------------------------------------------------------------------
# Token mixing in a ResNet: the BoTNet block
# --------------------------------------------------------------------------------------------------------------


class BoTBlock(nn.Module):
    """Bottleneck Transformer block (Srinivas et al., 2021): a ResNet bottleneck whose 3×3 conv is MHSA.

    ``1×1 conv (C_in → C_mid) → BN → ReLU → MHSA with 2-D relative position logits on the H×W grid →
    [2×2 average pool if stride 2] → BN → ReLU → 1×1 conv (C_mid → C_out) → BN``, added to the shortcut, ReLU.
    As in BoTNet, a strided block attends at its input resolution and average-pools afterwards.

    Args:
        in_channels, out_channels: C_in and C_out.
        size: (H, W) of the input feature map — relative position logits are learned for this grid.
        stride: 1 or 2.
        num_heads: attention heads (4 in all BoTNet models).
        expansion: C_mid = C_out // expansion (4 in a ResNet bottleneck).
        zero_init_residual: start the last BatchNorm at zero, so the block begins as ``ReLU(shortcut(x))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int | Sequence[int],
        stride: int = 1,
        num_heads: int = 4,
        expansion: int = 4,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int(
            "BoTBlock", in_channels=in_channels, out_channels=out_channels, num_heads=num_heads, expansion=expansion
        )
        if stride not in (1, 2):
            raise ValueError(f"BoTBlock: stride must be 1 or 2, got {stride!r}")
        self.size = _pair(size, "BoTBlock")
        if stride == 2 and any(s % 2 for s in self.size):
            raise ValueError(f"BoTBlock: stride 2 needs an even feature-map size, got {self.size}")
        mid = out_channels // expansion
        if mid < num_heads or mid % num_heads:
            raise ValueError(
                f"BoTBlock: out_channels // expansion = {mid} must be a positive multiple of num_heads ({num_heads})"
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        # BoTNet's MHSA: q, k, v from one 1×1 conv, relative logits, no output projection (the 1×1 expand follows).
        self.mhsa = MultiHeadSelfAttention2d(mid, num_heads, pos="relative", size=self.size, proj=False)
        self.pool: nn.Module = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.post = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            nn.init.zeros_(self.expand[1].weight)

    def _check(self, x: torch.Tensor) -> None:
        _check_grid_input(x, self.in_channels, self.size, "BoTBlock")

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The MHSA's (B, heads, H·W, H·W) attention weights for block input ``x``."""
        self._check(x)
        _, weights = self.mhsa(self.reduce(x), return_attention=True)
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        out = self.expand(self.post(self.pool(self.mhsa(self.reduce(x)))))
        return F.relu(out + self.shortcut(x))


# --------------------------------------------------------------------------------------------------------------
# CoAtNet-style network: MBConv stages, then Transformer stages with relative attention
# --------------------------------------------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map — each position normalised on its own, as for tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.normalized_shape[0], type(self).__name__)
        x = rearrange(x, "b c h w -> b h w c")
        return rearrange(super().forward(x), "b h w c -> b c h w")


class MBConv(nn.Module):
    """Pre-norm inverted residual block with squeeze-excitation, as in CoAtNet's convolutional stages.

    MobileNetV2 (Sandler et al., 2018) expands the channels with a 1×1 conv, filters each channel with a
    depthwise 3×3 conv, and projects back; CoAtNet adds SE, GELU and a pre-activation BatchNorm::

        x ← Proj(Pool(x)) + Conv1×1(SE(DWConv3×3(Conv1×1(BN(x)), stride)))

    The shortcut is the identity when the shape is kept; otherwise 2×2 average pooling and/or a 1×1 projection.

    Args:
        in_channels, out_channels: channels in and out.
        stride: 1 or 2 (the depthwise conv strides).
        expand_ratio: hidden channels = ``out_channels * expand_ratio`` (4 in CoAtNet).
        se_ratio: SE hidden units = ``max(8, round(in_channels * se_ratio))`` (0.25 in CoAtNet/EfficientNet).
        zero_init_last: start the last 1×1 conv at zero, so the block begins as its shortcut.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: int = 4,
        se_ratio: float = 0.25,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int("MBConv", in_channels=in_channels, out_channels=out_channels, expand_ratio=expand_ratio)
        if stride not in (1, 2):
            raise ValueError(f"MBConv: stride must be 1 or 2, got {stride!r}")
        if not 0 < se_ratio <= 1:
            raise ValueError(f"MBConv: se_ratio must be in (0, 1], got {se_ratio!r}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        mid = out_channels * expand_ratio
        self.pre_norm = nn.BatchNorm2d(in_channels)
        self.expand = nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.GELU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.GELU()
        )
        self.se = SqueezeExcitation(mid, rd_channels=max(8, round(in_channels * se_ratio)))
        self.project = nn.Conv2d(mid, out_channels, 1)
        shortcut: list[nn.Module] = []
        if stride == 2:
            shortcut.append(nn.AvgPool2d(2))
        if in_channels != out_channels:
            shortcut.append(nn.Conv2d(in_channels, out_channels, 1))
        self.shortcut = nn.Sequential(*shortcut)  # empty Sequential = identity
        if zero_init_last:
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, type(self).__name__)
        if self.stride == 2 and (x.shape[-2] % 2 or x.shape[-1] % 2):
            raise ValueError(f"MBConv: stride 2 needs an even feature-map size, got {tuple(x.shape[-2:])}")
        out = self.project(self.se(self.depthwise(self.expand(self.pre_norm(x)))))
        return out + self.shortcut(x)


class RelativePositionBias2d(nn.Module):
    """CoAtNet's relative attention term: one learned scalar per head per 2-D offset, ``w[i − j]``.

    Dai et al. (2021, Eq. 3) add ``w_{i−j}`` to the logits ``x_iᵀ x_j`` *before* the softmax. The table has
    ``(2H − 1)(2W − 1)`` entries per head; :meth:`forward` gathers it into the (heads, N, N) bias that
    :class:`nlbook.attention.MultiHeadAttention` adds to its logits (N = H·W, row-major positions).
    """

    def __init__(self, size: int | Sequence[int], num_heads: int) -> None:
        super().__init__()
        _check_positive_int("RelativePositionBias2d", num_heads=num_heads)
        self.size = _pair(size, "RelativePositionBias2d")
        h, w = self.size
        self.num_heads = num_heads
        self.table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1), num_heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        # index[n, m] = flat table position of the offset (y_n − y_m, x_n − x_m), shifted to be >= 0.
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[:, None] - ys[None, :] + (h - 1)
        dx = xs[:, None] - xs[None, :] + (w - 1)
        self.register_buffer("index", dy * (2 * w - 1) + dx, persistent=False)

    def forward(self) -> torch.Tensor:
        """The (heads, N, N) additive logits."""
        return rearrange(self.table[self.index], "n m h -> h n m")


class TransformerBlock2d(nn.Module):
    """Pre-norm Transformer block on a (B, C, H, W) map, with CoAtNet's relative attention.

    ``x ← Proj(Pool(x)) + Attention(Pool(LN(x)))`` then ``x ← x + MLP(LN(x))``, where the attention is
    :class:`nlbook.attention.MultiHeadAttention` over the H·W tokens with a :class:`RelativePositionBias2d`.
    A strided block pools 2×2 first (CoAtNet's down-sampling) and attends on the smaller grid; when the width
    changes, a 1×1 projection brings the pooled, normalised tokens to ``out_channels`` before attention.

    Args:
        in_channels, out_channels: channels in and out.
        size: (H, W) of the input map.
        stride: 1 or 2.
        head_dim: channels per head (32 in CoAtNet); heads = out_channels // head_dim.
        mlp_ratio: hidden width of the MLP relative to ``out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int | Sequence[int],
        stride: int = 1,
        head_dim: int = 32,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        _check_positive_int(
            "TransformerBlock2d",
            in_channels=in_channels,
            out_channels=out_channels,
            head_dim=head_dim,
            mlp_ratio=mlp_ratio,
        )
        if stride not in (1, 2):
            raise ValueError(f"TransformerBlock2d: stride must be 1 or 2, got {stride!r}")
        self.size = _pair(size, "TransformerBlock2d")
        if stride == 2 and any(s % 2 for s in self.size):
            raise ValueError(f"TransformerBlock2d: stride 2 needs an even feature-map size, got {self.size}")
        if out_channels % head_dim:
            raise ValueError(
                f"TransformerBlock2d: out_channels ({out_channels}) must be a multiple of head_dim ({head_dim})"
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.out_size = (self.size[0] // stride, self.size[1] // stride)
        heads = out_channels // head_dim
        self.pool: nn.Module = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.norm1 = LayerNorm2d(in_channels)
        self.proj_in: nn.Module = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        )
        self.attn = MultiHeadAttention(out_channels, heads)
        self.rel_bias = RelativePositionBias2d(self.out_size, heads)
        self.shortcut: nn.Module = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        )
        self.norm2 = LayerNorm2d(out_channels)
        hidden = out_channels * mlp_ratio
        # A per-position MLP is a pair of 1×1 convolutions on the map.
        self.mlp = nn.Sequential(nn.Conv2d(out_channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, out_channels, 1))

    def _check(self, x: torch.Tensor) -> None:
        _check_grid_input(x, self.in_channels, self.size, "TransformerBlock2d")

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj_in(self.pool(self.norm1(x))), "b c h w -> b (h w) c")

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, heads, N, N) attention weights for block input ``x`` (N on the output grid)."""
        self._check(x)
        _, weights = self.attn(self._tokens(x), bias=self.rel_bias(), return_attention=True)
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        mixed = rearrange(self.attn(self._tokens(x), bias=self.rel_bias()), "b (h w) c -> b c h w", h=self.out_size[0])
        x = self.shortcut(self.pool(x)) + mixed
        return x + self.mlp(self.norm2(x))


class CoAtNet(nn.Module):
    """A CoAtNet-style network for small images (Dai et al., 2021): convolution early, attention late.

    ``stem (3×3 conv) → stages of MBConv ("C") or TransformerBlock2d ("T") → global average pool → LN → head``.
    CoAtNet's finding is that the C-C-T-T order generalises best: depthwise convolutions (translation
    equivariant, cheap at high resolution) where the maps are large, relative attention (global receptive
    field, input-dependent weights) where they are small enough that N² is affordable.

    Args:
        num_classes, in_channels, image_size: task shape (square images).
        widths, depths, kinds, strides: per stage; ``kinds`` letters are ``"C"`` or ``"T"``.
        stem_width: channels of the 3×3 stem (default ``widths[0]``).
        expand_ratio: MBConv expansion. head_dim: channels per attention head. mlp_ratio: Transformer MLP width.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        kinds: str | Sequence[str] = "CCTT",
        strides: Sequence[int] = (2, 2, 1, 2),
        stem_width: int | None = None,
        expand_ratio: int = 4,
        head_dim: int = 32,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        widths, depths, kinds, strides = tuple(widths), tuple(depths), tuple(kinds), tuple(strides)
        if not (len(widths) == len(depths) == len(kinds) == len(strides) >= 1):
            raise ValueError(
                f"CoAtNet: widths, depths, kinds and strides need the same non-zero length, got {widths}, {depths}, "
                f"{kinds}, {strides}"
            )
        if any(k not in ("C", "T") for k in kinds):
            raise ValueError(f"CoAtNet: kinds must be 'C' (MBConv) or 'T' (Transformer) per stage, got {kinds}")
        if any(s not in (1, 2) for s in strides):
            raise ValueError(f"CoAtNet: strides must be 1 or 2 per stage, got {strides}")
        for name, values in (("widths", widths), ("depths", depths)):
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"CoAtNet: {name} must be positive ints, got {values}")
        _check_positive_int("CoAtNet", num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        total = 1
        for s in strides:
            total *= s
        if image_size % total:
            raise ValueError(f"CoAtNet: image_size {image_size} must be divisible by the total stride {total}")
        stem_width = stem_width or widths[0]
        self.in_channels, self.image_size = in_channels, image_size
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_width), nn.GELU()
        )
        stages: list[nn.Module] = []
        channels, size = stem_width, image_size
        for width, depth, kind, stride in zip(widths, depths, kinds, strides, strict=True):
            blocks: list[nn.Module] = []
            for i in range(depth):
                s = stride if i == 0 else 1
                if kind == "C":
                    blocks.append(MBConv(channels, width, s, expand_ratio=expand_ratio))
                else:
                    blocks.append(TransformerBlock2d(channels, width, size, s, head_dim=head_dim, mlp_ratio=mlp_ratio))
                channels, size = width, size // s
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.num_features = channels
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, type(self).__name__)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"CoAtNet was built for {self.image_size}×{self.image_size} images (relative attention is learned "
                f"per grid), got {tuple(x.shape[-2:])}"
            )
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.forward_features(x).mean(dim=(2, 3))))


def coatnet(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    width: int = 64,
    depths: Sequence[int] = (2, 2, 2, 2),
    widths: Sequence[int] | None = None,
    **kwargs: object,
) -> CoAtNet:
    """The C-C-T-T network for ``image_size`` images, stage widths ``(w, 2w, 4w, 8w)`` from ``width``.

    With the default strides ``(2, 2, 1, 2)`` a 32×32 image gives 16×16 and 8×8 maps to the two MBConv stages
    and 8×8 (64 tokens) then 4×4 (16 tokens) to the two Transformer stages. ``widths`` overrides ``width``;
    other keyword arguments go to :class:`CoAtNet`.
    """
    _check_positive_int("coatnet", width=width)
    widths = tuple(widths) if widths is not None else (width, 2 * width, 4 * width, 8 * width)
    return CoAtNet(num_classes, in_channels, image_size, widths=widths, depths=depths, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# One builder for the ResNet variants
# --------------------------------------------------------------------------------------------------------------


def hybrid_resnet(
    kind: HybridKind,
    num_classes: int = 10,
    in_channels: int = 3,
    width: int | None = None,
    widths: Sequence[int] = (64, 128, 256, 512),
    depths: Sequence[int] = (2, 2, 2, 2),
    image_size: int = 32,
    *,
    reduction: int = 16,
    spatial_kernel: int = 7,
    num_heads: int = 4,
    bot_expansion: int = 1,
    botnet_stages: Sequence[int] | None = None,
    zero_init_residual: bool = False,
) -> ResNet:
    """The chapter-1 :class:`~nlbook.cnn.ResNet` with hybrid blocks, built through its ``block_factory`` hook.

    * ``"resnet"`` — the baseline (plain :class:`~nlbook.cnn.BasicBlock`);
    * ``"se"`` / ``"cbam"`` — every BasicBlock gets a :class:`SqueezeExcitation` / :class:`CBAM` on its
      residual branch, before the addition (the placement of both papers);
    * ``"botnet"`` — every block of ``botnet_stages`` (default: the last stage, as BoTNet replaces c5) is a
      :class:`BoTBlock`; ``image_size`` fixes the feature-map sizes its relative logits are learned for.

    Args:
        width: if given, stage widths are ``(w, 2w, 4w, 8w)`` (overrides ``widths``).
        reduction, spatial_kernel: SE/CBAM settings. num_heads: BoT heads (4, as in BoTNet).
        bot_expansion: C_mid = C_out // bot_expansion in each BoT block. 1 by default: this ResNet's BasicBlocks
            have no bottleneck, and with widths (64, ..., 512) a BoT block then attends over 512 channels with
            4 heads of 128 — exactly BoTNet-50's c5 MHSA (2048 // 4 = 512 channels).
        zero_init_residual: every residual branch (BasicBlock and BoTBlock) starts as zero. Off by default, as in
            :class:`~nlbook.cnn.ResNet`, so that a hybrid and the baseline differ only in their blocks: with it on
            and the baseline's off, a short run measures the initialisation, not the gate (see chapter 5).
    """
    if kind not in HYBRID_KINDS:
        raise ValueError(f"hybrid_resnet: kind must be one of {HYBRID_KINDS}, got {kind!r}")
    if width is not None:
        _check_positive_int("hybrid_resnet", width=width)
        widths = (width, 2 * width, 4 * width, 8 * width)
    widths, depths = tuple(widths), tuple(depths)
    _check_positive_int("hybrid_resnet", image_size=image_size)
    num_stages = len(widths)
    bot = tuple(botnet_stages) if botnet_stages is not None else (num_stages - 1,)
    if kind == "botnet":
        if any(not isinstance(s, int) or not 0 <= s < num_stages for s in bot):
            raise ValueError(f"hybrid_resnet: botnet_stages must index the {num_stages} stages, got {bot}")
        if image_size % 2 ** (num_stages - 1):
            raise ValueError(
                f"hybrid_resnet: image_size {image_size} must be divisible by 2**{num_stages - 1} "
                f"for {num_stages} stages"
            )

    def factory(stage: int, index: int, in_ch: int, out_ch: int, stride: int) -> nn.Module:
        if kind == "se":
            return BasicBlock(in_ch, out_ch, stride, attention=SqueezeExcitation(out_ch, reduction))
        if kind == "cbam":
            return BasicBlock(in_ch, out_ch, stride, attention=CBAM(out_ch, reduction, spatial_kernel=spatial_kernel))
        if kind == "botnet" and stage in bot:
            # The block's input map: the stem keeps image_size, each stage > 0 halves it in its first block.
            in_size = image_size // 2 ** max(stage - (1 if stride == 2 else 0), 0)
            return BoTBlock(
                in_ch, out_ch, in_size, stride, num_heads, bot_expansion, zero_init_residual=zero_init_residual
            )
        return BasicBlock(in_ch, out_ch, stride)

    return ResNet(
        num_classes, in_channels, widths, depths, block_factory=factory, zero_init_residual=zero_init_residual
    )


# --------------------------------------------------------------------------------------------------------------
# Looking inside: CBAM spatial gates and attention weights of a trained network
# --------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``images`` and return, per hybrid module (by its qualified name), what it attends with.

    * :class:`CBAM` → its spatial gate M_s, (B, 1, H, W);
    * :class:`BoTBlock` / :class:`TransformerBlock2d` → attention weights, (B, heads, N, N).

    Each module's input is captured with a forward pre-hook, then the module's own ``gates`` /
    ``attention_weights`` method recomputes the map — the same code path as its forward.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"attention_maps expects an nn.Module, got {type(model).__name__}")
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, (CBAM, BoTBlock, TransformerBlock2d))]
    if not targets:
        raise ValueError(
            f"attention_maps: {type(model).__name__} has no CBAM, BoTBlock or TransformerBlock2d module to read maps "
            "from (SE gates have no spatial map; build the model with hybrid_resnet('cbam' or 'botnet') or coatnet)"
        )
    inputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in targets:

        def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
            inputs[name] = args[0]

        handles.append(module.register_forward_pre_hook(hook))
    try:
        model(images)
    finally:
        for h in handles:
            h.remove()
    modules = dict(model.named_modules())
    maps: dict[str, torch.Tensor] = {}
    for name, x in inputs.items():
        module = modules[name]
        maps[name] = module.gates(x)[1] if isinstance(module, CBAM) else module.attention_weights(x)
    return maps
