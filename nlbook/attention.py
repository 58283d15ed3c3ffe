"""Chapter 2 — Self-attention: the one attention implementation the whole package uses.

(Core written first so the other chapters can build on it; the chapter-2 work extends this module.)
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["AttentionImpl", "MultiHeadAttention", "scaled_dot_product_attention"]

AttentionImpl = Literal["fused", "explicit"]


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    impl: AttentionImpl = "fused",
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ · scale + bias) v over the last two dimensions.

    Args:
        q: (..., N, d) queries; k: (..., M, d) keys; v: (..., M, d_v) values.
        bias: additive logits broadcastable to (..., N, M) (relative positions, masks).
        scale: defaults to 1/sqrt(d).
        impl: ``"fused"`` calls :func:`torch.nn.functional.scaled_dot_product_attention`
            (flash / memory-efficient kernels, O(N) memory when no bias and no dropout);
            ``"explicit"`` materialises the (N, M) weight matrix — for teaching and inspection.
        return_weights: also return the (..., N, M) attention weights (forces the explicit path,
            the only one that has them).
    """
    if impl not in ("fused", "explicit"):
        raise ValueError(f"scaled_dot_product_attention: impl must be 'fused' or 'explicit', got {impl!r}")
    if q.dim() < 2 or k.dim() != q.dim() or v.dim() != q.dim():
        raise ValueError(
            "scaled_dot_product_attention expects q, k, v of equal rank >= 2 shaped (..., N, d), (..., M, d), "
            f"(..., M, d_v); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"scaled_dot_product_attention: q and k need the same feature size d, got {q.shape[-1]} and {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            "scaled_dot_product_attention: k and v need the same number of positions M, "
            f"got {k.shape[-2]} and {v.shape[-2]}"
        )
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if impl == "fused" and not return_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
    logits = torch.matmul(q, k.transpose(-2, -1)) * scale
    if bias is not None:
        logits = logits + bias
    weights = logits.softmax(dim=-1)
    out = torch.matmul(F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights, v)
    return (out, weights) if return_weights else out


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention over a token sequence (B, N, dim) — the form a Transformer uses.

    One fused ``qkv`` projection (dim → 3·dim) and an output ``proj``; the layout matches
    ``torch.nn.MultiheadAttention``'s ``in_proj``/``out_proj`` so weights copy across one-to-one.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        impl: AttentionImpl = "fused",
    ):
        super().__init__()
        if dim < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"MultiHeadAttention: dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        if impl not in ("fused", "explicit"):
            raise ValueError(f"MultiHeadAttention: impl must be 'fused' or 'explicit', got {impl!r}")
        self.dim, self.num_heads, self.head_dim, self.impl = dim, num_heads, dim // num_heads, impl
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None = None, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, N, dim). ``bias``: additive logits broadcastable to (B, heads, N, N).

        With ``return_attention=True`` also returns the (B, heads, N, N) weights — same function, the
        explicit branch of :func:`scaled_dot_product_attention`.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"MultiHeadAttention expects (B, N, {self.dim}) tokens, got shape {tuple(x.shape)}")
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        res = scaled_dot_product_attention(
            q,
            k,
            v,
            bias=bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            impl=self.impl,
            return_weights=return_attention,
        )
        out, weights = res if return_attention else (res, None)
        out = self.proj_drop(self.proj(rearrange(out, "b h n d -> b n (h d)")))
        return (out, weights) if return_attention else out
