"""Chapter 5 — a CoAtNet-style network: convolution early, attention late (Dai et al., 2021).

The deepest of the chapter's hybrids is a whole network family rather than a block dropped into the ResNet:
convolutional :class:`MBConv` stages (MobileNetV2's inverted residual, Sandler et al., 2018, with the
squeeze-and-excitation gate of :mod:`nlbook.hybrid`) under Transformer stages (:class:`TransformerBlock2d`)
whose attention, from :mod:`nlbook.attention`, carries a learned 2-D relative position bias
(:class:`RelativePositionBias2d`). :func:`coatnet` builds the C-C-T-T network the comparison chapter trains.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from nlbook.attention import MultiHeadAttention
from nlbook.checks import (
    check_bool,
    check_grid_input,
    check_image_batch,
    check_ints,
    check_positive_int,
    is_real,
    to_pair,
)
from nlbook.hybrid import SqueezeExcitation

__all__ = [
    "CoAtNet",
    "LayerNorm2d",
    "MBConv",
    "RelativePositionBias2d",
    "TransformerBlock2d",
    "coatnet",
]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map — each position normalised on its own, as for tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.normalized_shape[0], type(self).__name__, like=self)
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
        check_positive_int(
            "MBConv",
            in_channels=in_channels,
            out_channels=out_channels,
            expand_ratio=expand_ratio,
        )
        if stride not in (1, 2) or isinstance(stride, bool):
            raise ValueError(f"MBConv: stride must be 1 or 2, got {stride!r}")
        if not is_real(se_ratio) or not 0 < se_ratio <= 1:
            raise ValueError(f"MBConv: se_ratio must be in (0, 1], got {se_ratio!r}")
        check_bool("MBConv", "zero_init_last", zero_init_last)
        in_channels, out_channels, stride = (
            int(in_channels),
            int(out_channels),
            int(stride),
        )
        expand_ratio = int(expand_ratio)
        self.in_channels, self.out_channels, self.stride = (
            in_channels,
            out_channels,
            stride,
        )
        mid = out_channels * expand_ratio
        self.pre_norm = nn.BatchNorm2d(in_channels)
        self.expand = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.GELU()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.GELU(),
        )
        self.se = SqueezeExcitation(
            mid, rd_channels=max(8, round(in_channels * se_ratio))
        )
        self.project = nn.Conv2d(mid, out_channels, 1)
        shortcut: list[nn.Module] = []
        if stride == 2:
            shortcut.append(nn.AvgPool2d(2))
        if in_channels != out_channels:
            shortcut.append(nn.Conv2d(in_channels, out_channels, 1))
        self.shortcut = nn.Sequential(*shortcut)  # empty Sequential = identity
        self.zero_init_last = zero_init_last
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation, except an optional zero last projection (the block starts as
        its shortcut)."""
        if self.zero_init_last:
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, type(self).__name__, like=self)
        if self.stride == 2 and (x.shape[-2] % 2 or x.shape[-1] % 2):
            raise ValueError(
                f"MBConv: stride 2 needs an even feature-map size, got {tuple(x.shape[-2:])}"
            )
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
        check_positive_int("RelativePositionBias2d", num_heads=num_heads)
        self.size = to_pair(size, "RelativePositionBias2d")
        h, w = self.size
        self.num_heads = num_heads
        self.table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1), num_heads))
        self.reset_parameters()
        # index[n, m] = flat table position of the offset (y_n − y_m, x_n − x_m), shifted to be >= 0.
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[:, None] - ys[None, :] + (h - 1)
        dx = xs[:, None] - xs[None, :] + (w - 1)
        self.register_buffer("index", dy * (2 * w - 1) + dx, persistent=False)

    def reset_parameters(self) -> None:
        """Truncated normal, std 0.02 (timm's and Swin's choice for relative position tables)."""
        nn.init.trunc_normal_(self.table, std=0.02)

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
        check_positive_int(
            "TransformerBlock2d",
            in_channels=in_channels,
            out_channels=out_channels,
            head_dim=head_dim,
            mlp_ratio=mlp_ratio,
        )
        if stride not in (1, 2):
            raise ValueError(
                f"TransformerBlock2d: stride must be 1 or 2, got {stride!r}"
            )
        self.size = to_pair(size, "TransformerBlock2d")
        if stride == 2 and any(s % 2 for s in self.size):
            raise ValueError(
                f"TransformerBlock2d: stride 2 needs an even feature-map size, got {self.size}"
            )
        if out_channels % head_dim:
            raise ValueError(
                f"TransformerBlock2d: out_channels ({out_channels}) must be a multiple of head_dim ({head_dim})"
            )
        self.in_channels, self.out_channels, self.stride = (
            in_channels,
            out_channels,
            stride,
        )
        self.out_size = (self.size[0] // stride, self.size[1] // stride)
        heads = out_channels // head_dim
        self.pool: nn.Module = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.norm1 = LayerNorm2d(in_channels)
        self.proj_in: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )
        self.attn = MultiHeadAttention(out_channels, heads)
        self.rel_bias = RelativePositionBias2d(self.out_size, heads)
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )
        self.norm2 = LayerNorm2d(out_channels)
        hidden = out_channels * mlp_ratio
        # A per-position MLP is a pair of 1×1 convolutions on the map.
        self.mlp = nn.Sequential(
            nn.Conv2d(out_channels, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, out_channels, 1),
        )

    def _check(self, x: torch.Tensor) -> None:
        check_grid_input(
            x, self.in_channels, self.size, "TransformerBlock2d", like=self
        )

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj_in(self.pool(self.norm1(x))), "b c h w -> b (h w) c")

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, heads, N, N) attention weights for block input ``x`` (N on the output grid)."""
        self._check(x)
        _, weights = self.attn(
            self._tokens(x), bias=self.rel_bias(), return_attention=True
        )
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        mixed = rearrange(
            self.attn(self._tokens(x), bias=self.rel_bias()),
            "b (h w) c -> b c h w",
            h=self.out_size[0],
        )
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
        if not isinstance(kinds, str | Sequence):
            raise TypeError(
                f"CoAtNet: kinds must be a string like 'CCTT' (or a sequence of 'C'/'T'), one per stage, "
                f"got {kinds!r}"
            )
        widths = check_ints("CoAtNet", "widths", widths, what="channel counts")
        depths = check_ints("CoAtNet", "depths", depths, what="block counts")
        strides = check_ints("CoAtNet", "strides", strides, what="strides (1 or 2)")
        kinds = tuple(kinds)
        if not (len(widths) == len(depths) == len(kinds) == len(strides) >= 1):
            raise ValueError(
                f"CoAtNet: widths, depths, kinds and strides need the same non-zero length, got {widths}, {depths}, "
                f"{kinds}, {strides}"
            )
        if any(k not in ("C", "T") for k in kinds):
            raise ValueError(
                f"CoAtNet: kinds must be 'C' (MBConv) or 'T' (Transformer) per stage, got {kinds}"
            )
        if any(s not in (1, 2) for s in strides):
            raise ValueError(
                f"CoAtNet: strides must be 1 or 2 per stage, got {strides}"
            )
        for name, values in (("widths", widths), ("depths", depths)):
            if any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
            ):
                raise ValueError(f"CoAtNet: {name} must be positive ints, got {values}")
        check_positive_int(
            "CoAtNet",
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
        )
        total = 1
        for s in strides:
            total *= s
        if image_size % total:
            raise ValueError(
                f"CoAtNet: image_size {image_size} must be divisible by the total stride {total}"
            )
        if stem_width is not None:
            check_positive_int("CoAtNet", stem_width=stem_width)
        stem_width = int(stem_width) if stem_width is not None else widths[0]
        self.in_channels, self.image_size = in_channels, image_size
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.GELU(),
        )
        stages: list[nn.Module] = []
        channels, size = stem_width, image_size
        for width, depth, kind, stride in zip(
            widths, depths, kinds, strides, strict=True
        ):
            blocks: list[nn.Module] = []
            for i in range(depth):
                s = stride if i == 0 else 1
                if kind == "C":
                    blocks.append(MBConv(channels, width, s, expand_ratio=expand_ratio))
                else:
                    blocks.append(
                        TransformerBlock2d(
                            channels,
                            width,
                            size,
                            s,
                            head_dim=head_dim,
                            mlp_ratio=mlp_ratio,
                        )
                    )
                channels, size = width, size // s
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.num_features = channels
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, type(self).__name__, like=self)
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
    check_positive_int("coatnet", width=width)
    width = int(width)
    # the other arguments go to CoAtNet: name a misspelt one here, not in CoAtNet.__init__'s own error
    known = set(inspect.signature(CoAtNet).parameters) - {
        "num_classes",
        "in_channels",
        "image_size",
        "widths",
        "depths",
    }
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(
            f"coatnet: unknown argument(s) {unknown}; CoAtNet also takes {sorted(known)}"
        )
    widths = (
        check_ints("coatnet", "widths", widths, what="channel counts")
        if widths is not None
        else (width, 2 * width, 4 * width, 8 * width)
    )
    return CoAtNet(
        num_classes, in_channels, image_size, widths=widths, depths=depths, **kwargs
    )  # type: ignore[arg-type]
