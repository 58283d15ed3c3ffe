"""Chapter 2 — Self-attention: the one attention implementation the whole package uses.

* :func:`scaled_dot_product_attention` — softmax(q kᵀ/√d + bias) v, written out (``impl="explicit"``, returns
  the weights) or through PyTorch's fused SDPA kernels (``impl="fused"``, the default everywhere).
* :class:`MultiHeadAttention` — the Transformer's token form (B, N, dim), used by the ViT and CoAtNet chapters.
* :class:`MultiHeadSelfAttention2d` — the same over a (B, C, H, W) feature map, with optional 2-D sinusoidal,
  learned absolute, or BoTNet relative positions (:func:`sincos_position_encoding_2d`,
  :class:`LearnedPositionEncoding2d`, :class:`RelativePositionLogits2d`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nlbook.checks import (
    autocasting,
    check_bool,
    check_device,
    check_float,
    check_image_batch,
    check_like_model,
    check_positive_int,
    check_probability,
    is_int,
    is_real,
)

__all__ = [
    "check_impl",
    "attention_weights",
    "AttentionImpl",
    "LearnedPositionEncoding2d",
    "MultiHeadAttention",
    "MultiHeadSelfAttention2d",
    "PositionKind",
    "RelativePositionLogits2d",
    "relative_position_logits_2d",
    "relative_position_logits_2d_reference",
    "scaled_dot_product_attention",
    "sdpa_backend",
    "sincos_position_encoding_2d",
]

AttentionImpl = Literal["fused", "explicit"]


def check_impl(where: str, impl: object) -> None:
    """The one check of an ``impl`` argument: PyTorch's fused kernel or the explicit softmax(QKᵀ)V."""
    if impl not in ("fused", "explicit"):
        raise ValueError(f"{where}: impl must be 'fused' or 'explicit', got {impl!r}")


def _kernel_layout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Give PyTorch's SDPA a layout its fast kernels accept; the results are unchanged.

    SDPA chooses its kernel from the layout and *silently* falls back to the
    O(N·M)-memory math path when the
    feature (last) dimension is strided — e.g. ``x.flatten(2).transpose(1, 2)`` of a
    (B, C, H, W) map — or when a
    4-D q comes with a lower-rank mask (both seen with PyTorch 2.14 on CPU), or, on CPU
    with PyTorch 2.4 to 2.13,
    whenever q, k, v have no head axis: (B, N, d) tensors always get the math kernel
    there, so they are viewed
    as (B, 1, N, d) — one head — and the caller drops that axis again. On CPU,
    attention dropout and q/v of
    different widths also select the math path; those are the caller's choice and are
    left alone.
    """
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    if bias is not None and bias.dim() < q.dim():
        # Same broadcasting, spelled out: (N, M) or (heads, N, M) -> leading singleton
        # dimensions.
        bias = bias.reshape((1,) * (q.dim() - bias.dim()) + tuple(bias.shape))
    if q.dim() < 4:
        # (B, N, d) -> (B, 1, N, d) and (N, d) -> (1, 1, N, d): a head axis of size
        # one, a view (no copy)
        q, k, v, bias = (
            None
            if t is None
            else t.reshape((*t.shape[:-2], *(1,) * (4 - t.dim()), *t.shape[-2:]))
            for t in (q, k, v, bias)
        )
    return q, k, v, bias


def sdpa_backend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    repair_layout: bool = True,
) -> str:
    """Name of the kernel ``impl="fused"`` would run for these inputs (e.g. ``"FLASH_ATTENTION"``, ``"MATH"``).

    Asks PyTorch's own dispatcher (a private but long-standing function), after the same layout fixes as
    :func:`scaled_dot_product_attention` (``repair_layout=False``: what a direct call of PyTorch's SDPA would
    get); returns ``"unknown"`` where this PyTorch build does not expose it.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"sdpa_backend expects torch.Tensor q, k, v; {name} is a {type(t).__name__}"
            )
    # the inputs scaled_dot_product_attention accepts, checked the same way: an answer for inputs it would
    # refuse (int tensors, a 1-D q, a string mask) would name a kernel that never runs
    _check_attention_inputs("sdpa_backend", q, k, v, bias)
    check_probability("sdpa_backend", dropout_p=dropout_p)
    check_bool("sdpa_backend", "repair_layout", repair_layout)
    if repair_layout:
        q, k, v, bias = _kernel_layout(q, k, v, bias)
    try:
        from torch.nn.attention import SDPBackend

        return SDPBackend(torch._fused_sdp_choice(q, k, v, bias, dropout_p, False)).name
    except (AttributeError, ImportError, RuntimeError, TypeError, ValueError):
        return "unknown"


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
        bias: additive float logits broadcastable to (..., N, M) (relative positions), or a boolean mask of
            that shape (``True`` = may attend), as in :func:`torch.nn.functional.scaled_dot_product_attention`.
            A query whose whole row is masked (``False`` or ``-inf`` everywhere) attends to nothing: its output
            is zero on both paths (and its weights are zero), never NaN.
        scale: defaults to 1/sqrt(d).
        impl: ``"fused"`` calls :func:`torch.nn.functional.scaled_dot_product_attention` (flash /
            memory-efficient kernels: O(N) memory when there is no bias and no dropout — a bias is itself an
            (N, M) tensor — after :func:`_kernel_layout` has made the inputs acceptable to those kernels);
            ``"explicit"`` materialises the (N, M) weight matrix — for teaching and inspection.
        return_weights: also return the (..., N, M) attention weights (forces the explicit path,
            the only one that has them).
    """
    if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
        raise TypeError(
            "scaled_dot_product_attention expects torch.Tensor q, k, v, got "
            f"{', '.join(type(t).__name__ for t in (q, k, v))}"
        )
    check_impl("scaled_dot_product_attention", impl)
    check_probability("scaled_dot_product_attention", dropout_p=dropout_p)
    if scale is not None:
        scale = check_float(
            "scaled_dot_product_attention",
            "scale (None: 1/sqrt(d))",
            scale,
            low=0.0,
            low_open=True,
        )
    return_weights = check_bool(
        "scaled_dot_product_attention", "return_weights", return_weights
    )
    _check_attention_inputs("scaled_dot_product_attention", q, k, v, bias)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if impl == "fused" and not return_weights:
        out_shape = (
            *q.shape[:-1],
            v.shape[-1],
        )  # without the head axis _kernel_layout may add
        q, k, v, bias = _kernel_layout(q, k, v, bias)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale
        )
        if bias is not None:
            # fully masked queries (a boolean row of False, or a float row of -inf): zero on every
            # PyTorch version (older kernels gave NaN), like the explicit path
            allowed = bias if bias.dtype == torch.bool else bias > float("-inf")
            out = out.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)
        return out.reshape(out_shape)
    weights = attention_weights(q, k, bias=bias, scale=scale)
    out = torch.matmul(F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights, v)
    return (out, weights) if return_weights else out


def _check_attention_inputs(
    where: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: object
) -> None:
    """q (..., N, d), k (..., M, d), v (..., M, d_v) of one rank, dtype and device, and a bias that fits."""
    if q.dim() < 2 or k.dim() != q.dim() or v.dim() != q.dim():
        raise ValueError(
            f"{where} expects q, k, v of equal rank >= 2 shaped (..., N, d), (..., M, d), "
            f"(..., M, d_v); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    _check_qkv(where, q, k, v)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"{where}: q and k need the same feature size d, got {q.shape[-1]} and {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"{where}: k and v need the same number of positions M, "
            f"got {k.shape[-2]} and {v.shape[-2]}"
        )
    _check_bias(where, bias, q, k)


def _check_qkv(where: str, *tensors: torch.Tensor) -> None:
    """Same floating dtype, same device, batch dimensions that broadcast — checked here, not inside a kernel."""
    # under torch.autocast the kernels cast q, k and v themselves: mixed dtypes are expected there
    mixed = len({t.dtype for t in tensors}) > 1 and not autocasting(
        tensors[0].device.type
    )
    if any(not t.is_floating_point() for t in tensors) or mixed:
        raise TypeError(
            f"{where} expects q, k{', v' if len(tensors) > 2 else ''} of one floating-point dtype, got "
            f"{', '.join(str(t.dtype) for t in tensors)}"
        )
    if len({t.device for t in tensors}) > 1:
        raise ValueError(
            f"{where} expects its inputs on one device, got {', '.join(str(t.device) for t in tensors)}"
        )
    try:
        torch.broadcast_shapes(*(t.shape[:-2] for t in tensors))
    except RuntimeError:
        raise ValueError(
            f"{where}: the batch dimensions (all but the last two) must broadcast, got "
            f"{', '.join(str(tuple(t.shape)) for t in tensors)}"
        ) from None


def _check_bias(where: str, bias: object, q: torch.Tensor, k: torch.Tensor) -> None:
    """``bias`` is None, a boolean mask or float logits, broadcastable to the (..., N, M) logits."""
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor) or not (
        bias.dtype == torch.bool or bias.is_floating_point()
    ):
        got = bias.dtype if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise TypeError(
            f"{where}: bias must be a float tensor of logits or a boolean mask (or None), got {got}"
        )
    logits_shape = (
        *torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]),
        q.shape[-2],
        k.shape[-2],
    )
    try:
        fits = torch.broadcast_shapes(bias.shape, logits_shape) == logits_shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{where}: bias must broadcast to the logits' shape {logits_shape} (..., N, M), got {tuple(bias.shape)}"
        )


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """The (..., N, M) weights softmax(q kᵀ · scale + bias) — the explicit path's matrix, O(N·M) memory.

    ``scale`` defaults to 1/sqrt(d); a boolean ``bias`` is a mask (True = may attend), as in PyTorch's SDPA.
    """
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise TypeError(
            f"attention_weights expects torch.Tensor q and k, got {type(q).__name__}, {type(k).__name__}"
        )
    if q.dim() < 2 or k.dim() != q.dim() or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            "attention_weights expects q (..., N, d) and k (..., M, d) of equal rank and the same feature size d, "
            f"got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    _check_qkv("attention_weights", q, k)
    _check_bias("attention_weights", bias, q, k)
    if (
        scale is not None
    ):  # a negative scale would turn attention into repulsion, NaN into NaN weights
        scale = check_float(
            "attention_weights",
            "scale (None: 1/sqrt(d))",
            scale,
            low=0.0,
            low_open=True,
        )
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = torch.matmul(q, k.transpose(-2, -1)) * scale
    if bias is not None and bias.dtype == torch.bool:
        logits = logits.masked_fill(~bias, float("-inf"))
    elif bias is not None:
        logits = logits + bias
    if bias is None:
        return logits.softmax(dim=-1)
    # A query that may attend to nothing (every logit -inf) gets all-zero weights, hence a zero output — what
    # PyTorch's fused SDPA returns — instead of softmax's 0/0 = NaN. Its logits are zeroed first so that no
    # NaN reaches the backward pass either.
    blind = torch.isneginf(logits).all(dim=-1, keepdim=True)
    return logits.masked_fill(blind, 0.0).softmax(dim=-1).masked_fill(blind, 0.0)


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
        attn_dropout: float = 0.0,
        dropout: float = 0.0,
        impl: AttentionImpl = "fused",
    ):
        super().__init__()
        check_positive_int("MultiHeadAttention", dim=dim, num_heads=num_heads)
        check_probability(
            "MultiHeadAttention", attn_dropout=attn_dropout, dropout=dropout
        )
        # a flag given as "no" would be truthy: biases nobody asked for
        qkv_bias = check_bool("MultiHeadAttention", "qkv_bias", qkv_bias)
        dim, num_heads = int(dim), int(num_heads)
        if dim % num_heads:
            raise ValueError(
                f"MultiHeadAttention: dim ({dim}) must be a positive multiple of num_heads ({num_heads})"
            )
        check_impl("MultiHeadAttention", impl)
        self.dim, self.num_heads, self.head_dim, self.impl = (
            dim,
            num_heads,
            dim // num_heads,
            impl,
        )
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_dropout = attn_dropout
        self.proj = nn.Linear(dim, dim)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, N, dim). ``bias``: additive logits broadcastable to (B, heads, N, N).

        With ``return_attention=True`` also returns the (B, heads, N, N) weights — same function, the
        explicit branch of :func:`scaled_dot_product_attention`.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"MultiHeadAttention expects a torch.Tensor of (B, N, {self.dim}) tokens, got {type(x).__name__}"
            )
        return_attention = check_bool(
            "MultiHeadAttention", "return_attention", return_attention
        )
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                f"MultiHeadAttention expects (B, N, {self.dim}) tokens, got shape {tuple(x.shape)}"
            )
        check_like_model(x, self, "MultiHeadAttention")
        q, k, v = rearrange(
            self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads
        )
        res = scaled_dot_product_attention(
            q,
            k,
            v,
            bias=bias,
            dropout_p=self.attn_dropout if self.training else 0.0,
            impl=self.impl,
            return_weights=return_attention,
        )
        out, weights = res if return_attention else (res, None)
        out = self.proj_dropout(self.proj(rearrange(out, "b h n d -> b n (h d)")))
        return (out, weights) if return_attention else out


# ---------------------------------------------------------------------------------------------------------------
# Positions on a 2-D grid
# ---------------------------------------------------------------------------------------------------------------
PositionKind = Literal["sincos", "learned", "relative"]


def _check_size(size: object, where: str) -> tuple[int, int]:
    """Validate a (height, width) pair of positive ints and return it as a tuple."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(is_int(s) and s >= 1 for s in size)
    ):
        raise ValueError(
            f"{where}: size must be a (height, width) pair of positive ints, got {size!r}"
        )
    return int(size[0]), int(size[1])


def sincos_position_encoding_2d(
    height: int,
    width: int,
    dim: int,
    *,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Fixed 2-D sinusoidal position encoding, shape (dim, height, width).

    The Transformer's 1-D encoding (Vaswani et al., 2017) applied to each axis
    separately: the first
    ``dim/2`` channels encode the row ``y`` and the last ``dim/2`` the column ``x``,
    each as ``dim/4`` sines
    followed by ``dim/4`` cosines at geometrically spaced frequencies
    ``temperature**(-i / (dim/4))``.
    MAE's ``get_2d_sincos_pos_embed`` and big_vision's ``posemb_sincos_2d`` use the
    same blocks with the
    halves swapped (column first, then row). Parameter-free, so it works for any map
    size.
    """
    for name, value in (("height", height), ("width", width), ("dim", dim)):
        if not is_int(value) or value < 1:
            raise ValueError(
                f"sincos_position_encoding_2d: {name} must be a positive int, got "
                f"{value!r}"
            )
    height, width, dim = int(height), int(width), int(dim)
    device = check_device("sincos_position_encoding_2d", "device", device)
    if dim % 4:
        raise ValueError(
            f"sincos_position_encoding_2d: dim must be divisible by 4 (sin and cos "
            f"for rows and columns), got {dim}"
        )
    # The frequencies temperature**(-i/(dim/4)) fall from 1 towards 1/temperature: at 1
    # they would all be equal,
    # at <= 0 they would be NaN or infinite.
    check_float(
        "sincos_position_encoding_2d",
        "temperature",
        temperature,
        low=1.0,
        low_open=True,
    )
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"sincos_position_encoding_2d: dtype must be a floating-point torch.dtype "
            f"or None, got {dtype!r}"
        )
    quarter = dim // 4
    # Frequencies in float64 at least for accuracy; cast at the end.
    work = torch.float64 if dtype == torch.float64 else torch.float32
    omega = temperature ** (-torch.arange(quarter, device=device, dtype=work) / quarter)
    ys = torch.arange(height, device=device, dtype=work)[:, None] * omega  # (H, dim/4)
    xs = torch.arange(width, device=device, dtype=work)[:, None] * omega  # (W, dim/4)
    row = torch.cat([ys.sin(), ys.cos()], dim=1)  # (H, dim/2)
    col = torch.cat([xs.sin(), xs.cos()], dim=1)  # (W, dim/2)
    enc = torch.cat(
        [
            rearrange(row, "y c -> c y 1").expand(dim // 2, height, width),
            rearrange(col, "x c -> c 1 x").expand(dim // 2, height, width),
        ],
        dim=0,
    )
    return enc.to(dtype)


class LearnedPositionEncoding2d(nn.Module):
    """Learned absolute position encoding: one trainable (dim,) vector per pixel, added to the input map.

    Tied to the feature-map size it was built for (like ViT's position embedding before interpolation);
    a different input size raises a ``ValueError`` rather than silently broadcasting.
    """

    def __init__(self, dim: int, height: int, width: int, std: float = 0.02):
        super().__init__()
        if not is_int(dim) or dim < 1:
            raise ValueError(
                f"LearnedPositionEncoding2d: dim must be a positive int, got {dim!r}"
            )
        self.dim = int(dim)
        self.height, self.width = _check_size(
            (height, width), "LearnedPositionEncoding2d"
        )
        self.std = check_float("LearnedPositionEncoding2d", "std", std, low=0.0)
        self.embedding = nn.Parameter(torch.empty(1, self.dim, self.height, self.width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(
            self.embedding, std=self.std, a=-2 * self.std, b=2 * self.std
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, dim, height, width) → ``x`` + embedding."""
        check_image_batch(x, self.dim, "LearnedPositionEncoding2d", like=self)
        if tuple(x.shape[-2:]) != (self.height, self.width):
            raise ValueError(
                f"LearnedPositionEncoding2d was built for {self.height}x{self.width} maps, got "
                f"{x.shape[-2]}x{x.shape[-1]} in shape {tuple(x.shape)}; build it with size=(H, W) of this map"
            )
        return x + self.embedding


def _check_relative_inputs(
    where: str,
    q: object,
    rel_height: object,
    rel_width: object,
    height: object,
    width: object,
) -> tuple[int, int]:
    """Tensors of one floating dtype and device, q (B, heads, H·W, d), tables (2H−1, d) and (2W−1, d);
    returns (height, width) as ints."""
    for name, t in (("q", q), ("rel_height", rel_height), ("rel_width", rel_width)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}"
            )
    if q.dim() != 4:
        raise ValueError(
            f"{where}: q must be (B, heads, height*width, head_dim), got shape {tuple(q.shape)}"
        )
    check_positive_int(where, height=height, width=width)
    # under torch.autocast the matmuls cast the float32 tables themselves: mixed dtypes are expected there
    mixed = len({q.dtype, rel_height.dtype, rel_width.dtype}) > 1 and not autocasting(
        q.device.type
    )
    if not all(t.is_floating_point() for t in (q, rel_height, rel_width)) or mixed:
        raise TypeError(
            f"{where} expects q, rel_height and rel_width of one floating-point dtype, got "
            f"{q.dtype}, {rel_height.dtype}, {rel_width.dtype}"
        )
    if len({q.device, rel_height.device, rel_width.device}) > 1:
        raise ValueError(
            f"{where} expects q, rel_height and rel_width on one device, got "
            f"{q.device}, {rel_height.device}, {rel_width.device}"
        )
    n, d = q.shape[-2:]
    if n != height * width:
        raise ValueError(
            f"{where}: q has {n} positions but the embeddings describe a {height}x{width} map "
            f"({height * width} positions)"
        )
    if rel_height.shape != (2 * height - 1, d) or rel_width.shape != (2 * width - 1, d):
        raise ValueError(
            f"{where} expects rel_height ({2 * height - 1}, {d}) and rel_width "
            f"({2 * width - 1}, {d}), got {tuple(rel_height.shape)} and {tuple(rel_width.shape)}"
        )
    return int(height), int(width)


def _relative_index(length: int, device: torch.device) -> torch.Tensor:
    """(length, length) table ``[query, key] -> key - query + length - 1``: the row of the relative embedding."""
    pos = torch.arange(length, device=device)
    return pos[None, :] - pos[:, None] + (length - 1)


def relative_position_logits_2d(
    q: torch.Tensor,
    rel_height: torch.Tensor,
    rel_width: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """BoTNet relative logits (Srinivas et al., 2021): ``q_(i,j) · (r^h_(k-i) + r^w_(l-j))``.

    Args:
        q: (B, heads, height*width, head_dim) queries, pixels in row-major ``(y x)`` order.
        rel_height: (2*height-1, head_dim); row ``k - i + height - 1`` is the embedding of a vertical offset.
        rel_width: (2*width-1, head_dim); likewise for horizontal offsets.

    Returns:
        (B, heads, HW, HW) logits to add to the content logits ``q·k``. Height and width enter additively, so
        only (2H-1 + 2W-1)·head_dim parameters describe all (HW)² pairs; the (HW)² table itself is still
        materialised — relative positions cost O((HW)²) memory whatever attention kernel runs afterwards.
    """
    height, width = _check_relative_inputs(
        "relative_position_logits_2d", q, rel_height, rel_width, height, width
    )
    q = rearrange(q, "b n (x y) d -> b n x y d", x=height, y=width)
    # Look the embeddings up per (query row, key row) pair: (H, H, d) and (W, W, d) — small tables.
    emb_h = rel_height[_relative_index(height, q.device)]
    emb_w = rel_width[_relative_index(width, q.device)]
    logits_h = torch.einsum(
        "bnxyd,xkd->bnxyk", q, emb_h
    )  # query (x, y) against key row k
    logits_w = torch.einsum(
        "bnxyd,yld->bnxyl", q, emb_w
    )  # query (x, y) against key column l
    logits = logits_h[..., :, None] + logits_w[..., None, :]  # (b, n, x, y, k, l)
    return rearrange(logits, "b n x y k l -> b n (x y) (k l)")


def relative_position_logits_2d_reference(
    q: torch.Tensor,
    rel_height: torch.Tensor,
    rel_width: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """Loop-by-loop version of :func:`relative_position_logits_2d` straight from the definition (tests only)."""
    height, width = _check_relative_inputs(
        "relative_position_logits_2d_reference", q, rel_height, rel_width, height, width
    )
    b, heads, n, _ = q.shape
    out = q.new_zeros(b, heads, n, n)
    for i in range(height):
        for j in range(width):
            for k in range(height):
                for l in range(width):
                    r = rel_height[k - i + height - 1] + rel_width[l - j + width - 1]
                    out[:, :, i * width + j, k * width + l] = q[:, :, i * width + j] @ r
    return out


class RelativePositionLogits2d(nn.Module):
    """Learned 2-D relative position logits, the BoTNet form (Srinivas et al., 2021).

    Holds ``rel_height`` (2H-1, head_dim) and ``rel_width`` (2W-1, head_dim), initialised N(0, head_dim**-0.5)
    as in BoTNet; ``forward(q)`` returns the (B, heads, HW, HW) logits ``q·r`` to add to ``q·k``.
    """

    def __init__(self, height: int, width: int, head_dim: int):
        super().__init__()
        self.height, self.width = _check_size(
            (height, width), "RelativePositionLogits2d"
        )
        if not is_int(head_dim) or head_dim < 1:
            raise ValueError(
                f"RelativePositionLogits2d: head_dim must be a positive int, got {head_dim!r}"
            )
        self.head_dim = head_dim = int(head_dim)
        self.rel_height = nn.Parameter(torch.empty(2 * self.height - 1, head_dim))
        self.rel_width = nn.Parameter(torch.empty(2 * self.width - 1, head_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.rel_height, std=self.head_dim**-0.5)
        nn.init.normal_(self.rel_width, std=self.head_dim**-0.5)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """``q``: (B, heads, height*width, head_dim) → (B, heads, HW, HW) additive logits."""
        if (
            not isinstance(q, torch.Tensor)
            or q.dim() != 4
            or q.shape[-1] != self.head_dim
        ):
            raise ValueError(
                f"RelativePositionLogits2d expects queries (B, heads, {self.height * self.width}, {self.head_dim}), "
                f"got {tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__}"
            )
        return relative_position_logits_2d(
            q, self.rel_height, self.rel_width, self.height, self.width
        )

    def extra_repr(self) -> str:
        return f"height={self.height}, width={self.width}, head_dim={self.head_dim}"


# ---------------------------------------------------------------------------------------------------------------
# Multi-head self-attention over a feature map
# ---------------------------------------------------------------------------------------------------------------
class MultiHeadSelfAttention2d(nn.Module):
    """Multi-head self-attention over a (B, dim, H, W) feature map, every pixel a token.

    ``q, k, v`` come from one 1x1 convolution ``qkv`` (dim → 3·heads·head_dim); each head attends over all
    H·W pixels through :func:`scaled_dot_product_attention`; an optional 1x1 ``proj`` mixes the heads back
    to ``dim`` channels. Output: (B, dim, H, W).

    Positions (``pos``):
        * ``None`` — none: the layer is permutation-equivariant over pixels (it sees a set, not an image).
        * ``"sincos"`` — fixed 2-D sinusoidal encoding added to the input (any map size; dim % 4 == 0).
        * ``"learned"`` — a :class:`LearnedPositionEncoding2d` added to the input; needs ``size=(H, W)``.
        * ``"relative"`` — :class:`RelativePositionLogits2d` added to the logits, the BoTNet MHSA layer
          (Srinivas et al., 2021) (``softmax((q·k + q·r)/√d)``); needs ``size=(H, W)``.

    BoTNet's MHSA is ``MultiHeadSelfAttention2d(dim, num_heads=4, pos="relative", size=(H, W), proj=False)``.

    Args:
        dim: channels C of the input and the output.
        num_heads: attention heads h.
        head_dim: width d of each head's q, k, v (default ``dim // num_heads``; ``dim`` must then divide evenly).
            With ``h·d != dim`` the output projection is required.
        pos: positional information, see above.
        size: (H, W) of the maps the layer will see; required for ``"learned"`` and ``"relative"`` (whose
            parameters depend on it) and, when given, checked on every input.
        qkv_bias: bias in the q/k/v projection (BoTNet: none).
        impl: ``"fused"`` or ``"explicit"``, passed to :func:`scaled_dot_product_attention`.
        proj: a 1x1 output projection mixing the heads (Transformer style); BoTNet has none.
        attn_dropout: dropout on the attention weights while training (on CPU it selects PyTorch's math kernel).

    Speed: ``impl="fused"`` (default) calls PyTorch's SDPA; without a bias, attention dropout or unequal q/v
    head widths it runs a flash-style kernel whose memory is O(HW) (:func:`scaled_dot_product_attention`
    makes q, k, v contiguous first, because a strided last dimension silently selects the O((HW)²) math
    path). ``"relative"`` necessarily passes an (HW, HW) bias per head — CUDA then leaves the flash kernel
    for the memory-efficient or math one — so it costs O((HW)²) memory on any path.
    ``forward(x, return_attention=True)`` returns the (B, heads, HW, HW) weights via the explicit branch of the
    same function.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        pos: PositionKind | None = None,
        size: tuple[int, int] | None = None,
        qkv_bias: bool = False,
        impl: AttentionImpl = "fused",
        proj: bool = True,
        attn_dropout: float = 0.0,
    ):
        super().__init__()
        where = "MultiHeadSelfAttention2d"
        if not is_int(dim) or dim < 1 or not is_int(num_heads) or num_heads < 1:
            raise ValueError(
                f"{where}: dim and num_heads must be positive ints, got dim={dim!r}, num_heads={num_heads!r}"
            )
        dim, num_heads = int(dim), int(num_heads)
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(
                    f"{where}: dim ({dim}) must be divisible by num_heads ({num_heads}), or pass head_dim explicitly"
                )
            head_dim = dim // num_heads
        if not is_int(head_dim) or head_dim < 1:
            raise ValueError(
                f"{where}: head_dim must be a positive int, got {head_dim!r}"
            )
        head_dim = int(head_dim)
        inner = num_heads * head_dim
        if not proj and inner != dim:
            raise ValueError(
                f"{where}: without an output projection num_heads*head_dim ({num_heads}*{head_dim}={inner}) must "
                f"equal dim ({dim}); pass proj=True to map {inner} channels back to {dim}"
            )
        if pos not in (None, "sincos", "learned", "relative"):
            raise ValueError(
                f"{where}: pos must be None, 'sincos', 'learned' or 'relative', got {pos!r}"
            )
        if pos == "sincos" and dim % 4:
            raise ValueError(
                f"{where}: pos='sincos' needs dim divisible by 4, got {dim}"
            )
        if pos in ("learned", "relative"):
            if size is None:
                raise ValueError(
                    f"{where}: pos={pos!r} needs size=(H, W), the feature-map size it will see"
                )
            size = _check_size(size, where)
        elif size is not None:
            size = _check_size(size, where)
        check_impl(where, impl)
        if not is_real(attn_dropout) or not 0.0 <= attn_dropout < 1.0:
            raise ValueError(
                f"{where}: attn_dropout must be in [0, 1), got {attn_dropout!r}"
            )
        qkv_bias, proj = (
            check_bool(where, "qkv_bias", qkv_bias),
            check_bool(where, "proj", proj),
        )
        self.dim, self.num_heads, self.head_dim, self.pos, self.size, self.impl = (
            dim,
            num_heads,
            head_dim,
            pos,
            size,
            impl,
        )
        self.attn_dropout = attn_dropout
        self.qkv = nn.Conv2d(dim, 3 * inner, kernel_size=1, bias=qkv_bias)
        self.proj = nn.Conv2d(inner, dim, kernel_size=1) if proj else None
        self.pos_embed = (
            LearnedPositionEncoding2d(dim, *size) if pos == "learned" else None
        )
        self.rel_pos = (
            RelativePositionLogits2d(*size, head_dim) if pos == "relative" else None
        )

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, dim, H, W) → (B, dim, H, W); with ``return_attention`` also (B, heads, HW, HW) weights."""
        where = "MultiHeadSelfAttention2d"
        check_image_batch(x, self.dim, where, like=self)
        return_attention = check_bool(where, "return_attention", return_attention)
        height, width = x.shape[-2:]
        if self.size is not None and (height, width) != self.size:
            raise ValueError(
                f"{where} was built for {self.size[0]}x{self.size[1]} maps (pos={self.pos!r}), got "
                f"{height}x{width} in shape {tuple(x.shape)}"
            )
        if self.pos == "sincos":
            x = x + sincos_position_encoding_2d(
                height, width, self.dim, device=x.device, dtype=x.dtype
            )
        elif self.pos_embed is not None:
            x = self.pos_embed(x)
        # Pixels become tokens in row-major (x y) order. The per-head feature axis d ends up strided by H·W
        # (channels are outermost in the conv output); scaled_dot_product_attention makes it contiguous
        # before calling SDPA, whose fast kernels need a unit-stride last dimension.
        q, k, v = rearrange(
            self.qkv(x),
            "b (three h d) x y -> three b h (x y) d",
            three=3,
            h=self.num_heads,
        )
        scale = self.head_dim**-0.5
        # BoTNet: logits = (q·k + q·r)·scale, so the relative term sees the same scaled queries.
        bias = self.rel_pos(q * scale) if self.rel_pos is not None else None
        res = scaled_dot_product_attention(
            q,
            k,
            v,
            bias=bias,
            scale=scale,
            dropout_p=self.attn_dropout if self.training else 0.0,
            impl=self.impl,
            return_weights=return_attention,
        )
        out, weights = res if return_attention else (res, None)
        out = rearrange(out, "b h (x y) d -> b (h d) x y", x=height, y=width)
        if self.proj is not None:
            out = self.proj(out)
        return (out, weights) if return_attention else out

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, pos={self.pos!r}, "
            f"size={self.size}, impl={self.impl!r}"
        )
