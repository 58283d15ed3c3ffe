"""Chapters 1–5 — the book's models in the form a reader holds in their head.

Each chapter shows its model's form from here first. tests/test_minimal.py proves
each computes the same function as the production module: it loads the production
weights (same state-dict keys) and compares the outputs in float64. The production
modules add what a reader does not need at first: argument checks with clear errors,
fused attention kernels, dropout, stochastic depth and the options chapters explore.

Forms and their production counterparts:

* chapter 1 — ``conv2d`` (``torch.nn.functional.conv2d``),
  ``BasicBlock`` (``nlbook.cnn``);
* chapter 2 — ``attention`` (``nlbook.attention.scaled_dot_product_attention``),
  ``MultiHeadAttention``, ``RelativePositionLogits2d``, ``MultiHeadSelfAttention2d``
  (``nlbook.attention``);
* chapter 3 — ``NonLocalBlock2d`` (``nlbook.nonlocal_block``, embedded Gaussian);
* chapter 4 — ``PatchEmbedding``, ``Mlp``, ``EncoderBlock``, ``VisionTransformer``
  (``nlbook.vit``, class token and learned positions);
* chapter 5 — ``SqueezeExcitation``, ``CBAM``, ``BoTBlock`` (``nlbook.hybrid``);
  ``MBConv``, ``LayerNorm2d``, ``RelativePositionBias2d``, ``TransformerBlock2d``
  (``nlbook.coatnet``).

Lines stay within 88 characters: the chapters show these forms verbatim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, repeat
from torch import nn

__all__ = [
    "CBAM",
    "BasicBlock",
    "BoTBlock",
    "EncoderBlock",
    "LayerNorm2d",
    "MBConv",
    "Mlp",
    "MultiHeadAttention",
    "MultiHeadSelfAttention2d",
    "NonLocalBlock2d",
    "PatchEmbedding",
    "RelativePositionBias2d",
    "RelativePositionLogits2d",
    "SqueezeExcitation",
    "TransformerBlock2d",
    "VisionTransformer",
    "attention",
    "conv2d",
]


# --------------------------------------------------------------------------------------
# Chapter 1: convolution and the residual block
# --------------------------------------------------------------------------------------


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """One small dot product, kernel · window, repeated at every window of the image."""
    kh, kw = weight.shape[-2:]
    x = F.pad(x, (padding, padding, padding, padding))  # zeros around the border
    # every kh×kw window, one per output position: (B, C, H', W', kh, kw)
    windows = x.unfold(2, kh, stride).unfold(3, kw, stride)
    # the same weights at every position (y, x): that sharing is the convolution
    out = einsum(windows, weight, "b c y x i j, o c i j -> b o y x")
    return out if bias is None else out + rearrange(bias, "o -> 1 o 1 1")


class BasicBlock(nn.Module):
    """ResNet's block: two 3×3 convolutions learn a correction that is added to x."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        attention: nn.Module | None = None,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # chapter 5 puts a gate (SE, CBAM) on the branch, before the addition
        self.attention = attention if attention is not None else nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:  # match the branch's shape
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))  # identity path: gradients flow freely


# --------------------------------------------------------------------------------------
# Chapter 2: attention
# --------------------------------------------------------------------------------------


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ / √d + bias) v: each query takes a weighted mean of the values."""
    # 1/√d keeps the logits' spread independent of the width d (softmax stays soft)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = einsum(q, k, "... n d, ... m d -> ... n m") * scale  # query n vs key m
    if bias is not None:
        logits = logits + bias  # e.g. relative positions
    weights = logits.softmax(dim=-1)  # each row: how much query n draws on each key
    return weights @ v


class MultiHeadAttention(nn.Module):
    """Self-attention over tokens (B, N, dim), in heads that attend separately."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)  # q, k, v in one product
        self.proj = nn.Linear(dim, dim)  # mixes what the heads found

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        heads = "b n (three h d) -> three b h n d"  # split q, k, v, then the heads
        q, k, v = rearrange(self.qkv(x), heads, three=3, h=self.num_heads)
        out = attention(q, k, v, bias)  # every head: its own N × N weights
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


def _offsets(length: int, device: torch.device) -> torch.Tensor:
    """[i, j] -> j - i + length - 1: the table row of the offset j - i."""
    pos = torch.arange(length, device=device)
    return rearrange(pos, "j -> 1 j") - rearrange(pos, "i -> i 1") + length - 1


class RelativePositionLogits2d(nn.Module):
    """BoTNet's positions: query (y, x) and key (k, l) add q · (r_h[k-y] + r_w[l-x])."""

    def __init__(self, height: int, width: int, head_dim: int):
        super().__init__()
        self.height = height
        std = head_dim**-0.5
        # one vector per vertical offset and one per horizontal offset
        self.rel_height = nn.Parameter(torch.randn(2 * height - 1, head_dim) * std)
        self.rel_width = nn.Parameter(torch.randn(2 * width - 1, head_dim) * std)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q: (B, heads, H·W, d) → (B, heads, H·W, H·W) logits to add to q · k."""
        q = rearrange(q, "b h (y x) d -> b h y x d", y=self.height)
        r_h = self.rel_height[_offsets(q.shape[2], q.device)]  # (H, H, d): [y, k]
        r_w = self.rel_width[_offsets(q.shape[3], q.device)]  # (W, W, d): [x, l]
        logits_h = einsum(q, r_h, "b h y x d, y k d -> b h y x k")  # key row k
        logits_w = einsum(q, r_w, "b h y x d, x l d -> b h y x l")  # key column l
        # the two offsets add up, so (2H-1) + (2W-1) vectors cover all (HW)² pairs
        logits = logits_h[..., :, None] + logits_w[..., None, :]
        return rearrange(logits, "b h y x k l -> b h (y x) (k l)")


class MultiHeadSelfAttention2d(nn.Module):
    """Self-attention over a (B, dim, H, W) map: every pixel is a token.

    ``size=(H, W)`` adds BoTNet's relative positions; without, the pixels are a set.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        size: tuple[int, int] | None = None,
        proj: bool = True,
    ):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)  # a 1×1 conv: per pixel
        self.proj = nn.Conv2d(dim, dim, 1) if proj else None
        self.rel_pos = None
        if size is not None:
            self.rel_pos = RelativePositionLogits2d(*size, self.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        tokens = "b (three h d) y x -> three b h (y x) d"  # pixels in reading order
        q, k, v = rearrange(self.qkv(x), tokens, three=3, h=self.num_heads)
        scale = self.head_dim**-0.5
        # BoTNet: (q·k + q·r) · scale, so the position term sees the scaled queries
        bias = self.rel_pos(q * scale) if self.rel_pos is not None else None
        out = attention(q, k, v, bias, scale)
        out = rearrange(out, "b h (y x) d -> b (h d) y x", y=height)
        return self.proj(out) if self.proj is not None else out


# --------------------------------------------------------------------------------------
# Chapter 3: the Non-local block
# --------------------------------------------------------------------------------------


class NonLocalBlock2d(nn.Module):
    """Non-local block, embedded Gaussian: z = x + BN(W · softmax(θᵀφ) g)."""

    def __init__(
        self,
        in_channels: int,
        inter_channels: int | None = None,
        sub_sample: bool = False,
    ):
        super().__init__()
        inter = inter_channels or max(in_channels // 2, 1)  # the paper halves C
        self.g = nn.Conv2d(in_channels, inter, 1)  # values
        self.theta = nn.Conv2d(in_channels, inter, 1)  # queries
        self.phi = nn.Conv2d(in_channels, inter, 1)  # keys
        # optional 2×2 max-pool of keys and values: 4× fewer pairs to compare
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if sub_sample else nn.Identity()
        self.W = nn.Conv2d(inter, in_channels, 1)
        self.bn = nn.BatchNorm2d(in_channels)
        nn.init.zeros_(self.bn.weight)  # γ = 0: the block starts as the identity,
        nn.init.zeros_(self.bn.bias)  # so it can join a trained network harmlessly

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        to_seq = "b c h w -> b (h w) c"
        q = rearrange(self.theta(x), to_seq)
        k = rearrange(self.pool(self.phi(x)), to_seq)
        v = rearrange(self.pool(self.g(x)), to_seq)
        y = attention(q, k, v, scale=1.0)  # the paper's exp(θᵀφ) has no 1/√d
        y = rearrange(y, "b (h w) c -> b c h w", h=height)
        return x + self.bn(self.W(y))


# --------------------------------------------------------------------------------------
# Chapter 4: the Vision Transformer
# --------------------------------------------------------------------------------------


class PatchEmbedding(nn.Module):
    """Cut the image into p×p patches; one linear map turns each into a D-wide token."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        # kernel = stride = p: each patch seen once, so this conv *is* a linear layer
        # applied to every flattened patch (just a faster kernel)
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, N, D), patches in reading order."""
        return rearrange(self.proj(x), "b d gh gw -> b (gh gw) d")


class Mlp(nn.Module):
    """The Transformer's per-token MLP: widen, GELU, narrow."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-norm Transformer block: tokens talk (attention), then think alone (MLP)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)  # eps of the JAX ViT and torchvision
        self.attn = MultiHeadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # norms inside the branches keep the x + ... path clean, so deep stacks train
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT: patches + class token + positions → encoder blocks → class token → head."""

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
    ):
        super().__init__()
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = PatchEmbedding(patch_size, in_channels, embed_dim)
        # a learned token that gathers the image's summary through attention
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # attention sees a set; a learned vector per position says where each patch was
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, embed_dim))
        blocks = [EncoderBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)]
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        cls = repeat(self.cls_token, "1 1 d -> b 1 d", b=x.shape[0])
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens)[:, 0])  # classify from the class token


# --------------------------------------------------------------------------------------
# Chapter 5: hybrids — gates, the BoT block, CoAtNet's blocks
# --------------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """SE: a gate in (0, 1) per channel, computed from the whole image, rescales x."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)  # hidden = C / r, the paper's reduction
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(2, 3))  # squeeze: one number per channel, from every position
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))  # excite: channel gates
        return x * rearrange(s, "b c -> b c 1 1")  # no position reads another


class CBAM(nn.Module):
    """CBAM: a channel gate (which features), then a spatial gate (where)."""

    def __init__(self, channels: int, hidden: int, spatial_kernel: int = 7):
        super().__init__()
        self.mlp = nn.Sequential(  # shared by the average and the max descriptor
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, channels, bias=False),
        )
        pad = spatial_kernel // 2  # keeps the map's size
        self.spatial_conv = nn.Conv2d(2, 1, spatial_kernel, padding=pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        x = x * rearrange(torch.sigmoid(gate), "b c -> b c 1 1")
        # pool across channels: two maps (mean, max) say where the features are strong
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial_conv(pooled))  # (B, 1, H, W) gate


class BoTBlock(nn.Module):
    """Bottleneck Transformer block: a ResNet bottleneck whose 3×3 conv is MHSA."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: tuple[int, int],
        stride: int = 1,
        num_heads: int = 4,
        expansion: int = 4,
    ):
        super().__init__()
        mid, out = out_channels // expansion, out_channels
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
        )
        # global mixing with relative positions, no output projection (expand follows)
        self.mhsa = MultiHeadSelfAttention2d(mid, num_heads, size=size, proj=False)
        self.pool = nn.AvgPool2d(2) if stride == 2 else nn.Identity()  # after attending
        self.post = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU())
        self.expand = nn.Sequential(
            nn.Conv2d(mid, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride, bias=False),
                nn.BatchNorm2d(out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.post(self.pool(self.mhsa(self.reduce(x)))))
        return F.relu(out + self.shortcut(x))


class MBConv(nn.Module):
    """CoAtNet's conv block: BN, widen 1×1, depthwise 3×3, SE, narrow 1×1; plus x."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: int = 4,
        se_ratio: float = 0.25,
    ):
        super().__init__()
        mid = out_channels * expand_ratio
        self.pre_norm = nn.BatchNorm2d(in_channels)
        self.expand = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.GELU(),
        )
        # groups=mid: one 3×3 filter per channel — spatial mixing at 9 MACs a value
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.GELU(),
        )
        # SE's width follows the block's input, as in EfficientNet
        self.se = SqueezeExcitation(mid, max(8, round(in_channels * se_ratio)))
        self.project = nn.Conv2d(mid, out_channels, 1)  # channel mixing, back to narrow
        pool = [nn.AvgPool2d(2)] if stride == 2 else []
        widen = in_channels != out_channels
        proj = [nn.Conv2d(in_channels, out_channels, 1)] if widen else []
        self.shortcut = nn.Sequential(*pool, *proj)  # empty: the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(self.pre_norm(x)))))
        return out + self.shortcut(x)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of a (B, C, H, W) map (a token)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(rearrange(x, "b c h w -> b h w c"))
        return rearrange(x, "b h w c -> b c h w")


class RelativePositionBias2d(nn.Module):
    """CoAtNet's positions: one learned logit per head for each 2-D offset (dy, dx)."""

    def __init__(self, size: tuple[int, int], num_heads: int):
        super().__init__()
        h, w = size
        self.table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1), num_heads))
        # index[n, m]: table row of the offset between positions n and m (row-major)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[:, None] - ys[None, :] + h - 1  # in 0 .. 2h-2
        dx = xs[:, None] - xs[None, :] + w - 1
        self.register_buffer("index", dy * (2 * w - 1) + dx, persistent=False)

    def forward(self) -> torch.Tensor:
        """(heads, N, N) logits: the same value wherever the offset is the same."""
        return rearrange(self.table[self.index], "n m heads -> heads n m")


class TransformerBlock2d(nn.Module):
    """CoAtNet's attention block on a map: pool, attend with relative bias, MLP."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: tuple[int, int],
        stride: int = 1,
        head_dim: int = 32,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        cin, cout, heads = in_channels, out_channels, out_channels // head_dim
        self.pool = nn.AvgPool2d(2) if stride == 2 else nn.Identity()  # down-sample
        self.norm1 = LayerNorm2d(cin)
        self.proj_in = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.attn = MultiHeadAttention(cout, heads)
        out_size = (size[0] // stride, size[1] // stride)
        self.rel_bias = RelativePositionBias2d(out_size, heads)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.norm2 = LayerNorm2d(cout)
        hidden = cout * mlp_ratio
        self.mlp = nn.Sequential(  # per-pixel MLP = two 1×1 convolutions
            nn.Conv2d(cout, hidden, 1), nn.GELU(), nn.Conv2d(hidden, cout, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj_in(self.pool(self.norm1(x)))  # (B, out_channels, H', W')
        tokens = rearrange(y, "b c h w -> b (h w) c")
        mixed = self.attn(tokens, bias=self.rel_bias())  # every pixel sees every pixel
        mixed = rearrange(mixed, "b (h w) c -> b c h w", h=y.shape[2])
        x = self.shortcut(self.pool(x)) + mixed
        return x + self.mlp(self.norm2(x))
