"""Chapter 5 — Attention with convolution's locality: windows, neighbourhoods, and convolution as attention.

Global self-attention lets every pixel read every pixel, at a cost quadratic in the number of pixels. Three
ideas give attention back the locality of a convolution:

* **Windows** (Swin, Liu et al., 2021) — :class:`WindowAttention` runs multi-head self-attention inside
  non-overlapping M×M windows (:func:`window_partition` / :func:`window_reverse`), with one learned bias per
  head for each of the (2M−1)² relative offsets. Every other block shifts the windows cyclically by M//2
  (``shift_size``) so that information crosses window borders; :func:`shifted_window_mask` keeps the regions
  that the cyclic shift brought together from attending to each other. :class:`SwinBlock` is the Transformer
  block around it: LN → (S)W-MSA → residual → LN → MLP → residual.
* **Neighbourhoods** (SASA, Ramachandran et al., 2019) — :class:`LocalSelfAttention2d`: every pixel attends to
  its own k×k neighbourhood, like a convolution's receptive field, with row and column offset embeddings added
  to the keys. Positions outside the image are masked out (a convolution would see zeros there). Its default
  path computes only the k² logits of each pixel, as k² shifted element-wise products (no unfolded copies).
* **Convolution as attention** (Cordonnier et al., 2020) — :class:`RelativeOffsetAttention2d` is multi-head
  self-attention with the paper's quadratic relative encoding: head h attends around a learned offset Δ_h with
  sharpness α_h. :func:`conv_as_attention` builds the weights that make it compute a given k×k convolution
  exactly (one head per kernel offset). :func:`attention_by_offset` reads back which offsets the heads of a
  trained 2-D attention layer prefer.
* **Networks** for the model zoo — :class:`SwinTransformer`, a small Swin (patch embedding, stages of
  :class:`SwinBlock` pairs with :class:`PatchMerging` between them), and :func:`sasa_resnet`, the chapter-1
  ResNet whose later stages are :class:`LocalAttentionBlock` s (BasicBlocks with local attention in place of
  their 3×3 convolutions).

Every attention here goes through :func:`nlbook.attention.scaled_dot_product_attention` (directly or via
:class:`~nlbook.attention.MultiHeadAttention`) — except SASA's default path, proven equal to its own
``impl="explicit"`` path that does. :class:`WindowAttentionMinimal` and
:class:`LocalSelfAttention2dMinimal` are the short reader forms, proven equal to the production modules in
``tests/test_local_attention.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nlbook.attention import (
    AttentionImpl,
    MultiHeadAttention,
    check_impl,
    scaled_dot_product_attention,
)
from nlbook.checks import (
    check_bool,
    check_device,
    check_image_batch,
    check_indices,
    check_ints,
    check_positive_int,
    check_probability,
    check_tensor,
    is_int,
    is_real,
)
from nlbook.cnn import BasicBlock, ResNet
from nlbook.coatnet import LayerNorm2d, RelativePositionBias2d
from nlbook.vit import DropPath, Mlp

__all__ = [
    "LocalAttentionBlock",
    "LocalSelfAttention2d",
    "LocalSelfAttention2dMinimal",
    "PatchMerging",
    "RelativeOffsetAttention2d",
    "SwinBlock",
    "SwinTransformer",
    "WindowAttention",
    "WindowAttentionMinimal",
    "attention_by_offset",
    "conv_as_attention",
    "sasa_resnet",
    "shifted_window_mask",
    "window_partition",
    "window_reverse",
]

# Swin uses PyTorch's LayerNorm default (timm too), not ViT's 1e-6.
SWIN_LN_EPS = 1e-5


def _check_windows(where: str, height: int, width: int, window_size: int) -> None:
    if height % window_size or width % window_size:
        raise ValueError(
            f"{where}: window_size {window_size} must divide the feature map's height and width, got a "
            f"{height}×{width} map; pick a window size that divides both (or pad the map)"
        )


# ---------------------------------------------------------------------------------------------------------------
# Windows (Swin)
# ---------------------------------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a (B, C, H, W) map into non-overlapping M×M windows: (B·nW, M², C) tokens, windows in row-major order.

    Window ``b·nW + r·(W/M) + c`` holds the pixels of image ``b``, window row ``r`` and column ``c``; inside a
    window the M² tokens are row-major. :func:`window_reverse` is the inverse.
    """
    check_positive_int("window_partition", window_size=window_size)
    check_image_batch(x, None, "window_partition")
    _check_windows("window_partition", x.shape[-2], x.shape[-1], window_size)
    return rearrange(
        x, "b c (nh m1) (nw m2) -> (b nh nw) (m1 m2) c", m1=window_size, m2=window_size
    )


def window_reverse(
    windows: torch.Tensor, window_size: int, height: int, width: int
) -> torch.Tensor:
    """Put (B·nW, M², C) window tokens back into a (B, C, height, width) map — the inverse of
    :func:`window_partition`."""
    check_positive_int(
        "window_reverse", window_size=window_size, height=height, width=width
    )
    _check_windows("window_reverse", height, width, window_size)
    num_windows = (height // window_size) * (width // window_size)
    if (
        not isinstance(windows, torch.Tensor)
        or windows.dim() != 3
        or windows.shape[1] != window_size**2
        or windows.shape[0] % num_windows
    ):
        shape = (
            tuple(windows.shape)
            if isinstance(windows, torch.Tensor)
            else type(windows).__name__
        )
        raise ValueError(
            f"window_reverse: windows must be (B·{num_windows}, {window_size**2}, C) tokens for a {height}×{width} "
            f"map and window_size {window_size}, got {shape}"
        )
    return rearrange(
        windows,
        "(b nh nw) (m1 m2) c -> b c (nh m1) (nw m2)",
        nh=height // window_size,
        nw=width // window_size,
        m1=window_size,
    )


def _shift_regions(
    length: int, window_size: int, shift_size: int, device: torch.device
) -> torch.Tensor:
    """Per row (or column) of the *shifted* map: 0 = never moved, 1 / 2 = the two strips the cyclic shift
    brought together in the last window (Swin's three slices (0, −M), (−M, −s), (−s, end))."""
    pos = torch.arange(length, device=device)
    return (pos >= length - window_size).long() + (pos >= length - shift_size).long()


def shifted_window_mask(
    height: int,
    width: int,
    window_size: int,
    shift_size: int,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Which tokens may attend to which inside each window of a cyclically shifted map: (nW, M², M²) booleans.

    After ``torch.roll`` by −``shift_size``, the last window row and column hold pixels from opposite borders of
    the image. Pixels attend only within their own region (same label), so no information crosses the wrap-around
    — Swin's mask (Liu et al., 2021, Fig. 4); ``True`` = may attend. With ``shift_size=0`` every entry is ``True``.
    """
    check_positive_int(
        "shifted_window_mask", height=height, width=width, window_size=window_size
    )
    _check_windows("shifted_window_mask", height, width, window_size)
    if not is_int(shift_size) or not 0 <= shift_size < window_size:
        raise ValueError(
            f"shifted_window_mask: shift_size must be an int in [0, window_size={window_size}), got {shift_size!r}"
        )
    device = check_device("shifted_window_mask", "device", device)
    height, width, window_size, shift_size = map(
        int, (height, width, window_size, shift_size)
    )
    rows = _shift_regions(height, window_size, shift_size, device)
    cols = _shift_regions(width, window_size, shift_size, device)
    labels = rearrange(
        rows[:, None] * 3 + cols[None, :],
        "(nh m1) (nw m2) -> (nh nw) (m1 m2)",
        m1=window_size,
        m2=window_size,
    )
    return labels[:, :, None] == labels[:, None, :]


class WindowAttention(nn.Module):
    """Swin's (shifted) window multi-head self-attention over a (B, dim, H, W) map (Liu et al., 2021, Eq. 4).

    Each M×M window is a short token sequence for :class:`~nlbook.attention.MultiHeadAttention` (``mha``: one
    ``qkv`` linear layer and an output ``proj``, timm's layout), with ``softmax(q·kᵀ/√d + B) v`` where ``B`` is a
    :class:`~nlbook.coatnet.RelativePositionBias2d` over the window: a learned (2M−1)² × heads table, one logit
    per head and relative offset. Cost per image: H·W·M² logits per head instead of (H·W)².

    With ``shift_size`` s > 0 (Swin uses M//2 in every second block) the map is rolled by (−s, −s) first and
    rolled back afterwards, and :func:`shifted_window_mask` keeps the wrapped-around regions apart (as −∞
    logits; timm adds −100, which agrees to float rounding).

    Args:
        dim: channels C of input and output; ``num_heads`` must divide it.
        window_size: M; must divide the height and width of every input.
        num_heads: attention heads.
        shift_size: cyclic shift s in [0, M).
        qkv_bias: bias in the q/k/v projection (Swin: yes).
        attn_dropout: dropout on the attention weights. dropout: after the output projection.
        impl: ``"fused"`` or ``"explicit"`` (see :func:`~nlbook.attention.scaled_dot_product_attention`).
    """

    def __init__(
        self,
        dim: int,
        window_size: int = 7,
        num_heads: int = 4,
        shift_size: int = 0,
        qkv_bias: bool = True,
        attn_dropout: float = 0.0,
        dropout: float = 0.0,
        impl: AttentionImpl = "fused",
    ):
        super().__init__()
        where = "WindowAttention"
        check_positive_int(where, dim=dim, window_size=window_size, num_heads=num_heads)
        check_probability(where, attn_dropout=attn_dropout, dropout=dropout)
        check_impl(where, impl)
        if dim % num_heads:
            raise ValueError(
                f"{where}: dim ({dim}) must be a multiple of num_heads ({num_heads})"
            )
        if not is_int(shift_size) or not 0 <= shift_size < window_size:
            raise ValueError(
                f"{where}: shift_size must be an int in [0, window_size={window_size}), got {shift_size!r}"
            )
        # plain ints: numpy integers are accepted, but the sizes end up in reprs, configs and rearrange patterns
        dim, window_size, num_heads, shift_size = map(
            int, (dim, window_size, num_heads, shift_size)
        )
        self.dim, self.window_size, self.num_heads, self.shift_size = (
            dim,
            window_size,
            num_heads,
            shift_size,
        )
        self.mha = MultiHeadAttention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            attn_dropout=attn_dropout,
            dropout=dropout,
            impl=impl,
        )
        self.rel_bias = RelativePositionBias2d(window_size, num_heads)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Swin/timm: the bias table starts as small noise, so the first steps see almost content-only attention.
        nn.init.trunc_normal_(self.rel_bias.table, std=0.02)

    def _bias(
        self, batch: int, height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        """(heads, M², M²) relative bias, or (B·nW, heads, M², M²) with the shifted-window mask folded in."""
        bias = self.rel_bias()
        if not self.shift_size:
            return bias
        keep = shifted_window_mask(
            height, width, self.window_size, self.shift_size, device=device
        )
        bias = bias.masked_fill(~keep[:, None], float("-inf"))  # (nW, heads, M², M²)
        # Windows are ordered (b, window), so the nW masks repeat once per image.
        return bias.repeat(batch, 1, 1, 1)

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, dim, H, W) → (B, dim, H, W); with ``return_attention`` also the (B·nW, heads, M², M²)
        weights (windows of the shifted map when ``shift_size`` > 0)."""
        where = "WindowAttention"
        check_image_batch(x, self.dim, where, like=self)
        return_attention = check_bool(where, "return_attention", return_attention)
        batch, _, height, width = x.shape
        _check_windows(where, height, width, self.window_size)
        s = self.shift_size
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(2, 3))
        tokens = window_partition(x, self.window_size)
        res = self.mha(
            tokens,
            bias=self._bias(batch, height, width, x.device),
            return_attention=return_attention,
        )
        out, weights = res if return_attention else (res, None)
        out = window_reverse(out, self.window_size, height, width)
        if s:
            out = torch.roll(out, shifts=(s, s), dims=(2, 3))
        return (out, weights) if return_attention else out

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, window_size={self.window_size}, "
            f"num_heads={self.num_heads}, shift_size={self.shift_size}"
        )


class SwinBlock(nn.Module):
    """Swin Transformer block on a (B, dim, H, W) map (Liu et al., 2021, Eq. 3)::

        x = x + DropPath((S)W-MSA(LN(x)))
        x = x + DropPath(MLP(LN(x)))

    The pre-norm block of :class:`~nlbook.vit.EncoderBlock` with :class:`WindowAttention` in place of global
    attention; stack blocks with ``shift_size=0`` and ``window_size // 2`` alternately.

    Args:
        dim, num_heads, window_size, shift_size, qkv_bias, impl: see :class:`WindowAttention`.
        mlp_ratio: MLP hidden width / ``dim``.
        dropout: after the attention projection and in the MLP. attn_dropout: on the attention weights.
        drop_path: stochastic-depth probability of both residual branches.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        impl: AttentionImpl = "fused",
    ):
        super().__init__()
        check_probability("SwinBlock", drop_path=drop_path)
        check_positive_int("SwinBlock", dim=dim)
        # numpy integers pass the check; LayerNorm would keep them in its shape
        dim = int(dim)
        if not is_real(mlp_ratio) or not 0 < mlp_ratio < float("inf"):
            raise ValueError(
                f"SwinBlock: mlp_ratio must be a number > 0, got {mlp_ratio!r}"
            )
        self.dim = dim
        self.norm1 = nn.LayerNorm(dim, eps=SWIN_LN_EPS)
        self.attn = WindowAttention(
            dim,
            window_size,
            num_heads,
            shift_size,
            qkv_bias,
            attn_dropout,
            dropout,
            impl,
        )
        self.norm2 = nn.LayerNorm(dim, eps=SWIN_LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim, H, W) → (B, dim, H, W)."""
        check_image_batch(x, self.dim, "SwinBlock", like=self)
        height = x.shape[-2]
        # LayerNorm and the MLP act on each pixel's channels: work on (B, H, W, C) tokens, back at the end.
        x = rearrange(x, "b c h w -> b h w c")
        a = self.attn(rearrange(self.norm1(x), "b h w c -> b c h w"))
        x = x + self.drop_path(rearrange(a, "b c h w -> b h w c"))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return rearrange(x, "b h w c -> b c h w", h=height)


# ---------------------------------------------------------------------------------------------------------------
# Neighbourhoods (SASA)
# ---------------------------------------------------------------------------------------------------------------


def _neighbourhoods(x: torch.Tensor, kernel_size: int, num_heads: int) -> torch.Tensor:
    """(B, heads·d, H, W) → (B, heads, H·W, k², d): each pixel's k×k neighbourhood, zeros beyond the border."""
    cols = F.unfold(
        x, kernel_size, padding=kernel_size // 2
    )  # (B, C·k², H·W), channel-major
    return rearrange(cols, "b (h d kk) n -> b h n kk d", h=num_heads, kk=kernel_size**2)


def _inside_image(
    height: int, width: int, kernel_size: int, like: torch.Tensor
) -> torch.Tensor:
    """(H·W, 1, k²) booleans: which neighbourhood positions of each pixel lie inside the image."""
    ones = like.new_ones(1, 1, height, width)
    return rearrange(
        F.unfold(ones, kernel_size, padding=kernel_size // 2) > 0, "1 kk n -> n 1 kk"
    )


def _pointwise(x: torch.Tensor, *convs: nn.Conv2d) -> torch.Tensor:
    """The 1×1 convolutions ``convs`` of a channels-first map (C_in, ...) as one matrix product → (Σ C_out, ...)."""
    weight = torch.cat([conv.weight.flatten(1) for conv in convs])
    pixels = x.reshape(x.shape[0], -1)
    if convs[0].bias is None:
        out = weight @ pixels
    else:
        out = torch.addmm(
            torch.cat([conv.bias for conv in convs])[:, None], weight, pixels
        )
    return out.view(-1, *x.shape[1:])


def _offsets_on_image(
    kernel_size: int, height: int, width: int
) -> list[tuple[int, slice, slice, slice, slice]]:
    """For each neighbour offset o = a·k + b (row-major, the order of :func:`F.unfold`): the pixels whose
    neighbour (i + a − p, j + b − p), p = k // 2, lies on the image, and where that neighbour is.

    Returns ``(o, rows, cols, key_rows, key_cols)``: the pixels are ``rows × cols`` and their neighbours
    ``key_rows × key_cols``, a rectangle of the map shifted by (a − p, b − p). Every other pixel has this
    neighbour off the image. An offset with no such pixel (k larger than the map) is left out.
    """
    p = kernel_size // 2
    offsets = []
    for o in range(kernel_size**2):
        dy, dx = o // kernel_size - p, o % kernel_size - p
        top, bottom = max(0, -dy), min(height, height - dy)
        left, right = max(0, -dx), min(width, width - dx)
        if top < bottom and left < right:
            pixels = slice(top, bottom), slice(left, right)
            neighbours = slice(top + dy, bottom + dy), slice(left + dx, right + dx)
            offsets.append((o, *pixels, *neighbours))
    return offsets


class _NeighbourhoodAttention(torch.autograd.Function):
    """SASA's attention core, offset by offset over the k² neighbours, without unfolding the neighbourhoods.

    Inputs: ``qkv`` (3, heads, d, H, W, B), queries, keys and values *batch-last*; ``r`` (heads, k², d), the
    offset embeddings; ``scale``; ``kernel_size``. Returns the output (heads, d, H, W, B).

    For offset o the pixels whose neighbour lies on the image form a rectangle, and their neighbours the same
    rectangle shifted (:func:`_offsets_on_image`); both are views, whose rows — the batch innermost — are
    contiguous runs of (rectangle width)·B numbers, long enough for vectorised loops even on a 4×4 map. The
    logits of o are ``Σ_d q ⊙ k_o`` there (one product, one sum over the head's channels), plus ``q·r_o`` for
    all offsets in one batched matrix product; elsewhere they stay −inf, so an off-image neighbour gets weight
    exactly 0, as the mask gives it in the explicit path. The output adds up ``w_o ⊙ v_o`` in place.

    The arithmetic is the unfolded form's (k²·d multiply–adds per pixel and head, twice), but nothing k² times
    the size of the map is stored, and few map-sized buffers are allocated (each new buffer of megabytes costs
    page faults on first touch): the products' buffer becomes the output, the softmax runs in place, the
    gradient of q serves as scratch until it is computed. The backward is written out because autograd would,
    for each of the k² shifted views of keys and values, allocate a zero gradient of the whole map and add them
    up; here each offset adds its gradient into its rectangle of one buffer. It is not itself differentiable
    (``once_differentiable``): use ``impl="explicit"`` for second derivatives.
    """

    @staticmethod
    def forward(ctx, qkv, r, scale, kernel_size):
        q, k, v = qkv.unbind(0)
        heads, d, height, width, batch = q.shape
        offsets = _offsets_on_image(kernel_size, height, width)
        logits = q.new_full(
            (heads, kernel_size**2, height, width, batch), float("-inf")
        )
        product = torch.empty_like(q)  # one buffer for every offset's q ⊙ k_o
        for o, rows, cols, key_rows, key_cols in offsets:
            qk = torch.mul(
                q[:, :, rows, cols],
                k[:, :, key_rows, key_cols],
                out=product[:, :, rows, cols],
            )
            torch.sum(qk, 1, out=logits[:, o, rows, cols])
        # + q·r_o for every offset o at once: (heads, k², d) @ (heads, d, H·W·B)
        logits.view(heads, kernel_size**2, -1).baddbmm_(r, q.view(heads, d, -1))
        # softmax over the k² offsets, in place: the logits become the weights
        weights = logits.mul_(scale)
        weights.sub_(weights.amax(1, keepdim=True)).exp_()
        weights.div_(weights.sum(1, keepdim=True))
        out = product.zero_()  # the products' buffer, no longer needed
        for o, rows, cols, key_rows, key_cols in offsets:
            w = weights[:, o, None, rows, cols]
            out[:, :, rows, cols].addcmul_(w, v[:, :, key_rows, key_cols])
        ctx.save_for_backward(qkv, r, weights)
        ctx.scale, ctx.kernel_size = scale, kernel_size
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        qkv, r, weights = ctx.saved_tensors
        scale, kernel_size = ctx.scale, ctx.kernel_size
        q, k, v = qkv.unbind(0)
        heads, d, height, width, _ = q.shape
        offsets = _offsets_on_image(kernel_size, height, width)
        # g arrives as a permuted view of the (B, C, H, W) gradient
        g = grad_out.contiguous()
        grad_qkv = torch.empty_like(qkv)
        grad_q, grad_k, grad_v = grad_qkv.unbind(0)
        grad_k.zero_()
        grad_v.zero_()
        product = grad_q  # scratch until ∂L/∂q is computed
        grad = torch.zeros_like(weights)  # ∂L/∂w, then, in place, ∂L/∂logits
        for o, rows, cols, key_rows, key_cols in offsets:
            # ∂L/∂w_o = Σ_d g ⊙ v_o and ∂L/∂v_o += w_o ⊙ g
            gv = torch.mul(
                g[:, :, rows, cols],
                v[:, :, key_rows, key_cols],
                out=product[:, :, rows, cols],
            )
            torch.sum(gv, 1, out=grad[:, o, rows, cols])
            w = weights[:, o, None, rows, cols]
            grad_v[:, :, key_rows, key_cols].addcmul_(w, g[:, :, rows, cols])
        # Through the softmax and the scale s: G_o = s · w_o (∂L/∂w_o − Σ_o' w_o' ∂L/∂w_o'),
        # 0 wherever w_o = 0 (off the image).
        grad.mul_(weights)
        grad.addcmul_(weights, grad.sum(1, keepdim=True), value=-1).mul_(scale)
        flat = grad.view(heads, kernel_size**2, -1)
        torch.bmm(r.transpose(1, 2), flat, out=grad_q.view(heads, d, -1))  # Σ_o G_o r_o
        grad_r = torch.bmm(flat, q.view(heads, d, -1).transpose(1, 2))  # Σ_pixels G_o q
        for o, rows, cols, key_rows, key_cols in offsets:
            # ∂L/∂q += G_o k_o and ∂L/∂k_o += G_o q
            gl = grad[:, o, None, rows, cols]
            grad_q[:, :, rows, cols].addcmul_(gl, k[:, :, key_rows, key_cols])
            grad_k[:, :, key_rows, key_cols].addcmul_(gl, q[:, :, rows, cols])
        return grad_qkv, grad_r, None, None


class LocalSelfAttention2d(nn.Module):
    """Stand-alone local self-attention (SASA; Ramachandran et al., 2019, Eq. 3) over a (B, dim, H, W) map.

    Pixel (i, j) attends to the pixels (a, b) of its k×k neighbourhood 𝒩_k(i, j) — a convolution's window, but
    with input-dependent weights::

        y_ij = Σ_(a,b)∈𝒩 softmax_ab( q_ijᵀ (k_ab + r_(a−i, b−j)) · scale ) v_ab

    ``q, k, v`` are 1×1 projections (``query``, ``key``, ``value``; no bias, as in the paper) to ``out_dim``
    channels split into ``num_heads`` heads. ``r_(a−i, b−j)`` concatenates a row-offset embedding
    (``rel_height``) and a column-offset embedding (``rel_width``), each of half a head's width and one per head,
    and is added to the keys. Neighbours outside the image are masked out of the softmax (instead of attending to
    zero-padded keys). There is no output projection (the paper has none).

    The paper's equation has no 1/√d; ``scale`` defaults to 1/√d like every other attention in this package —
    pass ``scale=1.0`` for the equation as printed.

    Two paths compute the same function (equal to float64 rounding, ``tests/test_local_attention.py``):

    * ``impl="fused"`` (default) — :class:`_NeighbourhoodAttention`: for each of the k² offsets one element-wise
      product of the queries with the shifted keys, summed over the head's channels, then a softmax over the k²
      logits of each pixel and the weighted sum of the shifted values; a hand-written backward; the output is
      channels-last in memory. Memory: queries, keys, values and the (heads, k², H·W) weights — no k² copies of
      the map. On one CPU thread the zoo's SASA-ResNet trains at about 0.6× the ResNet's images/s with it, 0.2×
      with the unfold-and-attend form (``benchmarks/sasa_speed.py``).
    * ``impl="explicit"`` — the textbook form: unfold every pixel's neighbourhood (k² copies of keys and values)
      and call :func:`~nlbook.attention.scaled_dot_product_attention` with one query per pixel. Also the path
      of ``return_attention``.

    Args:
        dim: input channels. out_dim: output channels (default ``dim``); ``num_heads`` must divide it and each
            head's width must be even (half row, half column embedding).
        kernel_size: k, odd. num_heads: heads. qkv_bias: bias in the 1×1 projections.
        scale: logit scale (default 1/√head_dim). impl: ``"fused"`` or ``"explicit"``, see above.
    """

    def __init__(
        self,
        dim: int,
        out_dim: int | None = None,
        kernel_size: int = 7,
        num_heads: int = 8,
        qkv_bias: bool = False,
        scale: float | None = None,
        impl: AttentionImpl = "fused",
    ):
        super().__init__()
        where = "LocalSelfAttention2d"
        out_dim = dim if out_dim is None else out_dim
        check_positive_int(
            where,
            dim=dim,
            out_dim=out_dim,
            kernel_size=kernel_size,
            num_heads=num_heads,
        )
        if kernel_size % 2 == 0:
            raise ValueError(
                f"{where}: kernel_size must be odd (a neighbourhood centred on its pixel), got {kernel_size}"
            )
        if out_dim % num_heads or (out_dim // num_heads) % 2:
            raise ValueError(
                f"{where}: out_dim ({out_dim}) must be num_heads ({num_heads}) × an even head width (half for the "
                "row offset embedding, half for the column offset embedding)"
            )
        if scale is not None and (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not scale > 0
        ):
            raise ValueError(
                f"{where}: scale must be a number > 0 or None (1/sqrt(head_dim)), got {scale!r}"
            )
        check_bool(where, "qkv_bias", qkv_bias)
        check_impl(where, impl)
        self.dim, self.out_dim, self.kernel_size, self.num_heads = (
            dim,
            out_dim,
            kernel_size,
            num_heads,
        )
        self.head_dim = out_dim // num_heads
        self.scale = self.head_dim**-0.5 if scale is None else float(scale)
        self.impl = impl
        self.query = nn.Conv2d(dim, out_dim, 1, bias=qkv_bias)
        self.key = nn.Conv2d(dim, out_dim, 1, bias=qkv_bias)
        self.value = nn.Conv2d(dim, out_dim, 1, bias=qkv_bias)
        self.rel_height = nn.Parameter(
            torch.empty(num_heads, kernel_size, self.head_dim // 2)
        )
        self.rel_width = nn.Parameter(
            torch.empty(num_heads, kernel_size, self.head_dim // 2)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Offset embeddings of the keys' scale (BoTNet's choice for its relative embeddings).
        nn.init.normal_(self.rel_height, std=self.head_dim**-0.5)
        nn.init.normal_(self.rel_width, std=self.head_dim**-0.5)

    def offset_embeddings(self) -> torch.Tensor:
        """(heads, k², head_dim): r_(a−i, b−j) for the k² offsets in row-major order (as :func:`F.unfold`)."""
        k = self.kernel_size
        rows = self.rel_height[:, :, None, :].expand(
            -1, -1, k, -1
        )  # (heads, k_row, k_col, d/2)
        cols = self.rel_width[:, None, :, :].expand(-1, k, -1, -1)
        return rearrange(torch.cat([rows, cols], dim=-1), "h a b d -> h (a b) d")

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, dim, H, W) → (B, out_dim, H, W); with ``return_attention`` also the (B, heads, H·W, k²)
        weights over each pixel's neighbourhood (row-major offsets, zero outside the image)."""
        check_image_batch(x, self.dim, "LocalSelfAttention2d", like=self)
        check_bool("LocalSelfAttention2d.forward", "return_attention", return_attention)
        if self.impl == "fused" and not return_attention:
            return self._forward_fused(x)
        height, width = x.shape[-2:]
        q = rearrange(
            self.query(x), "b (h d) x y -> b h (x y) 1 d", h=self.num_heads
        )  # one query per "sequence"
        k = _neighbourhoods(self.key(x), self.kernel_size, self.num_heads)
        v = _neighbourhoods(self.value(x), self.kernel_size, self.num_heads)
        # q·(k + r) = content + relative position logits; r in k's dtype (bfloat16 under autocast, like k)
        k = k + self.offset_embeddings()[None, :, None].to(k.dtype)
        res = scaled_dot_product_attention(
            q,
            k,
            v,
            bias=_inside_image(height, width, self.kernel_size, x),
            scale=self.scale,
            impl="explicit",
            return_weights=return_attention,
        )
        out, weights = res if return_attention else (res, None)
        out = rearrange(out, "b h (x y) 1 d -> b (h d) x y", x=height)
        return (
            (out, rearrange(weights, "b h n 1 kk -> b h n kk"))
            if return_attention
            else out
        )

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The ``impl="fused"`` path: (B, dim, H, W) → (B, out_dim, H, W) through :class:`_NeighbourhoodAttention`."""
        # Batch-last, (C, H, W, B): the three 1×1 projections become one matrix product, and a shifted
        # rectangle of the map is a view with long contiguous rows (see _NeighbourhoodAttention).
        pixels = rearrange(x, "b c x y -> c x y b").contiguous()
        qkv = _pointwise(pixels, self.query, self.key, self.value)
        qkv = rearrange(
            qkv, "(three h d) x y b -> three h d x y b", three=3, h=self.num_heads
        )
        # r in the projections' dtype (bfloat16 under autocast)
        r = self.offset_embeddings().to(qkv.dtype)
        out = _NeighbourhoodAttention.apply(qkv, r, self.scale, self.kernel_size)
        # Channels-last (B, C, H, W): on the CPU the pooling and BatchNorm that follow SASA in a
        # LocalAttentionBlock run several times faster on it than on the default layout.
        out = rearrange(out, "h d x y b -> b (h d) x y")
        return out.contiguous(memory_format=torch.channels_last)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, out_dim={self.out_dim}, kernel_size={self.kernel_size}, num_heads={self.num_heads}, "
            f"scale={self.scale:.4g}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Convolution as attention (Cordonnier et al., 2020)
# ---------------------------------------------------------------------------------------------------------------


class RelativeOffsetAttention2d(nn.Module):
    """Multi-head self-attention with Cordonnier et al.'s quadratic relative encoding, over a (B, C, H, W) map.

    Head h scores key pixel k for query pixel q by content plus position (Cordonnier et al., 2020, Eq. 9)::

        A_h(q, k) = (W_q x_q)ᵀ (W_k x_k) / √d  −  α_h ‖(k − q) − Δ_h‖²

    The position term peaks at the offset Δ_h (``centers``, (heads, 2) as (row, column)) with sharpness α_h
    (``alpha``); the paper writes it as v_hᵀ r_δ with r_δ = (‖δ‖², δ₁, δ₂), the same up to a per-head constant
    that the softmax ignores. Keys and values come from the map zero-padded by ``padding`` (what a convolution
    with that padding sees; the value projection has no bias, so padded pixels carry zeros); queries are the H·W
    pixels. Heads are concatenated and mixed by a 1×1 ``proj`` (with bias) to ``out_channels``.

    As α → ∞ head h copies the pixel at q + Δ_h; with one head per offset of a k×k kernel the layer is that
    convolution — :func:`conv_as_attention` sets the weights. ``alpha`` may be ``inf`` (hard one-hot attention),
    with integer centres only: a hard head centred between pixels would attend to nothing (the forward raises).
    Memory: the (heads, H·W, (H+2p)(W+2p)) position logits are materialised.

    Args:
        in_channels, out_channels: channels in and out.
        num_heads: heads (k² to express a k×k convolution).
        head_dim: width of each head's values (default ``in_channels``). key_dim: width of q and k (default
            ``head_dim``).
        padding: zero padding of keys and values (k // 2 for a "same" convolution).
        impl: see :func:`~nlbook.attention.scaled_dot_product_attention`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_heads: int = 9,
        head_dim: int | None = None,
        key_dim: int | None = None,
        padding: int = 1,
        impl: AttentionImpl = "fused",
    ):
        super().__init__()
        where = "RelativeOffsetAttention2d"
        head_dim = in_channels if head_dim is None else head_dim
        key_dim = head_dim if key_dim is None else key_dim
        check_positive_int(
            where,
            in_channels=in_channels,
            out_channels=out_channels,
            num_heads=num_heads,
            head_dim=head_dim,
            key_dim=key_dim,
        )
        if not is_int(padding) or padding < 0:
            raise ValueError(f"{where}: padding must be an int >= 0, got {padding!r}")
        padding = int(padding)
        check_impl(where, impl)
        self.in_channels, self.out_channels, self.num_heads = (
            in_channels,
            out_channels,
            num_heads,
        )
        self.head_dim, self.key_dim, self.padding, self.impl = (
            head_dim,
            key_dim,
            padding,
            impl,
        )
        self.query = nn.Conv2d(in_channels, num_heads * key_dim, 1, bias=False)
        self.key = nn.Conv2d(in_channels, num_heads * key_dim, 1, bias=False)
        self.value = nn.Conv2d(in_channels, num_heads * head_dim, 1, bias=False)
        self.proj = nn.Conv2d(num_heads * head_dim, out_channels, 1)
        self.centers = nn.Parameter(torch.empty(num_heads, 2))
        self.alpha = nn.Parameter(torch.empty(num_heads))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Centres spread over the padded neighbourhood, moderately sharp: the paper's learned-encoding start.
        nn.init.uniform_(self.centers, -max(self.padding, 1), max(self.padding, 1))
        nn.init.constant_(self.alpha, 1.0)

    def position_logits(
        self, height: int, width: int, device: torch.device | None = None
    ) -> torch.Tensor:
        """(heads, H·W, (H+2p)·(W+2p)) logits −α_h ‖(k − q) − Δ_h‖² (0 exactly at Δ_h,
        also for α = ∞)."""
        p = self.padding
        qy, qx = torch.meshgrid(
            torch.arange(height, device=device),
            torch.arange(width, device=device),
            indexing="ij",
        )
        ky, kx = torch.meshgrid(
            torch.arange(-p, height + p, device=device),
            torch.arange(-p, width + p, device=device),
            indexing="ij",
        )
        dy = (
            ky.flatten()[None, :] - qy.flatten()[:, None]
        )  # (HW, H'W') offsets key − query
        dx = kx.flatten()[None, :] - qx.flatten()[:, None]
        cy, cx = (
            c.to(self.alpha.dtype)[:, None, None] for c in self.centers.unbind(-1)
        )
        dist2 = (dy - cy) ** 2 + (dx - cx) ** 2  # (heads, HW, H'W')
        alpha = self.alpha[:, None, None]
        # where(): −α·0 would be NaN for α = ∞; for finite α it changes nothing.
        return torch.where(dist2 == 0, torch.zeros_like(dist2), -alpha * dist2)

    def _check_hard_heads(self) -> None:
        """A head with α = ∞ gives every key at a distance > 0 from its centre the logit −∞: with a centre between
        pixels no key is at distance 0, the head attends to nothing and the layer silently outputs only ``proj``'s
        bias. Raise instead, naming the head (skipped while compiling: a graph does not branch on values)."""
        if torch.compiler.is_compiling() or self.alpha.is_meta:
            return
        with torch.no_grad():
            # NaN or −∞ sharpness, or a non-finite centre, turn every logit of the head into NaN or +∞ (NaN output)
            broken = (
                (
                    self.alpha.isnan()
                    | torch.isneginf(self.alpha)
                    | ~self.centers.isfinite().all(dim=-1)
                )
                .nonzero()
                .flatten()
                .tolist()
            )
            hard = torch.isposinf(self.alpha)
            off_grid = (self.centers != self.centers.round()).any(dim=-1)
            bad = (hard & off_grid).nonzero().flatten().tolist()
        if broken:
            h = broken[0]
            raise ValueError(
                f"RelativeOffsetAttention2d: head {h} has alpha[{h}] = {self.alpha[h].item()} and centers[{h}] = "
                f"{tuple(self.centers[h].tolist())}; alpha must be a number or inf (not NaN or -inf) and the "
                "centres finite"
            )
        if bad:
            h = bad[0]
            raise ValueError(
                f"RelativeOffsetAttention2d: alpha[{h}] is inf (hard attention) but centers[{h}] = "
                f"{tuple(self.centers[h].tolist())} is not an integer offset, so head {h} would attend to no pixel "
                "and the output would be only the projection's bias; use integer centres (e.g. "
                "layer.centers.data.round_()) or a finite alpha"
            )

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, in_channels, H, W) → (B, out_channels, H, W); with ``return_attention`` also the
        (B, heads, H·W, (H+2p)·(W+2p)) weights over the padded map."""
        check_image_batch(x, self.in_channels, "RelativeOffsetAttention2d", like=self)
        return_attention = check_bool(
            "RelativeOffsetAttention2d", "return_attention", return_attention
        )
        self._check_hard_heads()
        height, width = x.shape[-2:]
        padded = F.pad(
            x, (self.padding,) * 4
        )  # zeros beyond the border, as a zero-padded convolution sees
        q = rearrange(self.query(x), "b (h d) x y -> b h (x y) d", h=self.num_heads)
        k = rearrange(self.key(padded), "b (h d) x y -> b h (x y) d", h=self.num_heads)
        v = rearrange(
            self.value(padded), "b (h d) x y -> b h (x y) d", h=self.num_heads
        )
        res = scaled_dot_product_attention(
            q,
            k,
            v,
            bias=self.position_logits(height, width, x.device).to(q.dtype),
            scale=self.key_dim**-0.5,
            impl=self.impl,
            return_weights=return_attention,
        )
        out, weights = res if return_attention else (res, None)
        out = self.proj(rearrange(out, "b h (x y) d -> b (h d) x y", x=height))
        return (out, weights) if return_attention else out

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, num_heads={self.num_heads}, "
            f"head_dim={self.head_dim}, key_dim={self.key_dim}, padding={self.padding}"
        )


@torch.no_grad()
def conv_as_attention(
    conv: nn.Conv2d, alpha: float = 50.0
) -> RelativeOffsetAttention2d:
    """A :class:`RelativeOffsetAttention2d` that computes ``conv`` (Cordonnier et al.,
    2020, Theorem 1).

    One head per kernel offset Δ = (i − k//2, j − k//2): zero query/key weights (no
    content term), centre Δ and
    sharpness ``alpha``, so head (i, j) attends to the pixel at q + Δ; its values are
    the input pixel itself
    (identity value projection, head width = in_channels) and the output projection
    applies the kernel tap
    ``W[:, :, i, j]`` to it. Summed over heads and plus the bias, that is the
    convolution. Leakage to the next
    pixel is ≈ e^−α (e^−50 ≈ 2e−22 by default: float rounding); ``alpha=math.inf`` is
    exact hard attention.

    ``conv`` must be a 2-D convolution with a square odd kernel, stride 1, dilation 1,
    one group and zero
    padding k//2 (a "same" convolution). The result has ``conv``'s dtype and device.
    """
    where = "conv_as_attention"
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(
            f"{where}: conv must be a torch.nn.Conv2d, got {type(conv).__name__}"
        )
    kh, kw = conv.kernel_size
    if kh != kw or kh % 2 == 0:
        raise ValueError(
            f"{where}: conv.kernel_size must be square and odd (e.g. (3, 3)), got "
            f"{conv.kernel_size}"
        )
    k = kh
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError(
            f"{where}: conv must have stride 1, dilation 1 and groups 1, got "
            f"stride={conv.stride}, "
            f"dilation={conv.dilation}, groups={conv.groups}"
        )
    if conv.padding not in ((k // 2, k // 2), "same") or conv.padding_mode != "zeros":
        raise ValueError(
            f"{where}: conv must zero-pad by kernel_size // 2 = {k // 2} "
            f"(padding={k // 2}, padding_mode='zeros'), "
            f"got padding={conv.padding!r}, padding_mode={conv.padding_mode!r}"
        )
    if not is_real(alpha) or not alpha > 0:
        raise ValueError(
            f"{where}: alpha must be a number > 0 (math.inf for hard attention), got "
            f"{alpha!r}"
        )
    c_in, c_out = conv.in_channels, conv.out_channels
    weight = conv.weight
    factory = {"device": weight.device, "dtype": weight.dtype}
    layer = RelativeOffsetAttention2d(
        c_in, c_out, num_heads=k * k, head_dim=c_in, key_dim=1, padding=k // 2
    )
    layer.to(**factory)
    layer.query.weight.zero_()
    layer.key.weight.zero_()
    # Every head's values are the input pixel: an identity block per head.
    eye = torch.eye(c_in, **factory)
    layer.value.weight.copy_(rearrange(eye.repeat(k * k, 1), "o i -> o i 1 1"))
    # Head (i, j) in row-major order feeds its copy of x_(q+Δ) through the kernel tap
    # W[:, :, i, j].
    layer.proj.weight.copy_(rearrange(weight, "o i kh kw -> o (kh kw i) 1 1"))
    if conv.bias is not None:
        layer.proj.bias.copy_(conv.bias)
    else:
        layer.proj.bias.zero_()
    offsets = torch.arange(k, **factory) - k // 2
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    layer.centers.copy_(torch.stack([dy.flatten(), dx.flatten()], dim=-1))
    layer.alpha.fill_(alpha)
    return layer


def attention_by_offset(weights: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Where each head of a 2-D attention layer puts its weight, by relative offset: (heads, 2H−1, 2W−1).

    ``weights``: (B, heads, H·W, H·W) attention over an H×W map with row-major pixels — what
    :class:`~nlbook.attention.MultiHeadSelfAttention2d` returns with ``return_attention=True`` and
    :func:`nlbook.hybrid.attention_maps` gives for BoT and CoAtNet blocks. Entry ``[h, H−1+dy, W−1+dx]`` is the
    mean over images and query pixels of the weight head h gives to the key at offset (dy, dx) (key − query);
    each head's map sums to 1. Central offsets exist for more query pixels than far ones, so compare with the
    map of uniform attention (``torch.full_like(weights, 1 / (H·W))``) before reading a preference.
    """
    where = "attention_by_offset"
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(
            f"{where}: size must be the (H, W) of the attended map, got {size!r}"
        )
    check_positive_int(where, height=size[0], width=size[1])
    height, width = int(size[0]), int(size[1])
    n = height * width
    check_tensor(where, "weights", weights, kind="float", shape=f"(B, heads, {n}, {n})")
    if (
        not isinstance(weights, torch.Tensor)
        or weights.dim() != 4
        or weights.shape[-2:] != (n, n)
    ):
        shape = (
            tuple(weights.shape)
            if isinstance(weights, torch.Tensor)
            else type(weights).__name__
        )
        raise ValueError(
            f"{where}: weights must be (B, heads, {n}, {n}) for a {height}×{width} map, got {shape}"
        )
    ys, xs = torch.meshgrid(
        torch.arange(height, device=weights.device),
        torch.arange(width, device=weights.device),
        indexing="ij",
    )
    ys, xs = ys.flatten(), xs.flatten()
    offset = (ys[None, :] - ys[:, None] + height - 1) * (2 * width - 1) + (
        xs[None, :] - xs[:, None] + width - 1
    )
    mean = weights.mean(dim=0).reshape(weights.shape[1], n * n)  # (heads, query·key)
    out = mean.new_zeros(weights.shape[1], (2 * height - 1) * (2 * width - 1))
    out.index_add_(1, offset.flatten(), mean)
    return rearrange(out / n, "h (dy dx) -> h dy dx", dy=2 * height - 1)


# ---------------------------------------------------------------------------------------------------------------
# Networks for the model zoo: a small Swin and a SASA ResNet
# ---------------------------------------------------------------------------------------------------------------


class PatchMerging(nn.Module):
    """Swin's downsampling between stages (Liu et al., 2021, Sec. 3.1): (B, dim, H, W) → (B, out_dim, H/2, W/2).

    The features of each 2×2 neighbourhood are concatenated (4·dim channels, timm's order), layer-normalised and
    mapped to ``out_dim`` (2·dim in Swin) by a linear layer without bias — a strided 2×2 convolution with a norm
    in front, so the token count drops by 4 while the width doubles, as in a CNN's stage.
    """

    def __init__(self, dim: int, out_dim: int | None = None):
        super().__init__()
        out_dim = 2 * dim if out_dim is None else out_dim
        check_positive_int("PatchMerging", dim=dim, out_dim=out_dim)
        self.dim, self.out_dim = dim, out_dim
        self.norm = nn.LayerNorm(4 * dim, eps=SWIN_LN_EPS)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.dim, "PatchMerging", like=self)
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(
                f"PatchMerging: the map's height and width must be even, got {tuple(x.shape[-2:])}"
            )
        x = rearrange(x, "b c (h p1) (w p2) -> b h w (p2 p1 c)", p1=2, p2=2)
        return rearrange(self.reduction(self.norm(x)), "b h w c -> b c h w")


class SwinTransformer(nn.Module):
    """A small Swin Transformer (Liu et al., 2021) for small images: patches → stages of :class:`SwinBlock` pairs
    with :class:`PatchMerging` between stages → LayerNorm → global average pool → linear head.

    Inside a stage the blocks alternate between regular (``shift_size=0``) and shifted (M//2) windows. A stage
    whose map is not larger than ``window_size`` uses the whole map as its one window and never shifts — Swin's
    rule for its last stage. On 32×32 images with 2×2 patches and the default 4×4 windows the stages see 16×16,
    8×8 and 4×4 maps: 16, 4 and 1 windows of 16 tokens.

    Args:
        num_classes, in_channels: logits and image channels.
        image_size: side of the (square) input images; fixes each stage's map size and window.
        patch_size: side of the non-overlapping patches (a strided convolution embeds them).
        widths: channels of each stage (Swin: C, 2C, 4C, 8C). depths: blocks per stage.
        head_dim: channels per attention head (32 in Swin); every width must be a multiple of it.
        window_size: M. mlp_ratio: MLP width / channels. drop_path: stochastic-depth probability of the last
            block, increasing linearly from 0 over the blocks (as in Swin).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        patch_size: int = 2,
        widths: tuple[int, ...] = (96, 192, 384),
        depths: tuple[int, ...] = (2, 2, 2),
        head_dim: int = 32,
        window_size: int = 4,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        where = "SwinTransformer"
        for name, value in (("widths", widths), ("depths", depths)):
            if isinstance(value, str) or not isinstance(value, (tuple, list)):
                raise TypeError(
                    f"{where}: {name} must be a tuple of ints, one per stage (e.g. (96, 192, 384)), got {value!r}"
                )
        widths, depths = tuple(widths), tuple(depths)
        check_positive_int(
            where,
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
            patch_size=patch_size,
            head_dim=head_dim,
            window_size=window_size,
        )
        if not widths or len(widths) != len(depths):
            raise ValueError(
                f"{where}: widths and depths need the same non-zero length, got {widths} and {depths}"
            )
        check_positive_int(where, **{f"widths[{i}]": w for i, w in enumerate(widths)})
        check_positive_int(where, **{f"depths[{i}]": d for i, d in enumerate(depths)})
        check_probability(where, drop_path=drop_path)
        # plain ints from here on (numpy integers pass the checks; the sizes end up in reprs and configs)
        widths, depths = tuple(map(int, widths)), tuple(map(int, depths))
        image_size, patch_size, head_dim = (
            int(image_size),
            int(patch_size),
            int(head_dim),
        )
        if any(w % head_dim for w in widths):
            raise ValueError(
                f"{where}: every width must be a multiple of head_dim={head_dim}, got widths {widths}"
            )
        first = image_size // patch_size
        if image_size % patch_size or first % 2 ** (len(widths) - 1):
            raise ValueError(
                f"{where}: image_size {image_size} must be divisible by patch_size × 2**(stages − 1) = "
                f"{patch_size * 2 ** (len(widths) - 1)} (each stage after the first halves the map)"
            )
        self.in_channels, self.image_size, self.widths, self.depths = (
            in_channels,
            image_size,
            widths,
            depths,
        )
        self.patch_embed = nn.Conv2d(
            in_channels, widths[0], patch_size, stride=patch_size
        )
        self.patch_norm = LayerNorm2d(widths[0], eps=SWIN_LN_EPS)
        total = sum(
            depths
        )  # stochastic depth grows linearly with depth (plain floats: no tensor to place)
        rates = [drop_path * i / max(total - 1, 1) for i in range(total)]
        stages: list[nn.Module] = []
        for s, (width, depth) in enumerate(zip(widths, depths)):
            side = first // 2**s
            window = min(
                window_size, side
            )  # a map no larger than a window is one window
            if side % window:
                raise ValueError(
                    f"{where}: window_size {window_size} must divide stage {s}'s {side}×{side} map "
                    f"(image_size {image_size}, patch_size {patch_size})"
                )
            shift = (
                window // 2 if side > window else 0
            )  # one window: nothing to shift across
            layers: list[nn.Module] = [PatchMerging(widths[s - 1], width)] if s else []
            layers += [
                SwinBlock(
                    width,
                    width // head_dim,
                    window,
                    shift if i % 2 else 0,
                    mlp_ratio,
                    drop_path=rates[sum(depths[:s]) + i],
                )
                for i in range(depth)
            ]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(widths[-1], eps=SWIN_LN_EPS)
        self.head = nn.Linear(widths[-1], num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Swin's initialisation: truncated normal (std 0.02) linear layers with zero biases, unit LayerNorms;
        # the relative bias tables keep WindowAttention's own (also std 0.02).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, image_size, image_size) → the last stage's (B, widths[-1], h, w) map."""
        check_image_batch(x, self.in_channels, "SwinTransformer", like=self)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"SwinTransformer: built for {self.image_size}×{self.image_size} images (its windows are fixed per "
                f"stage), got {tuple(x.shape[-2:])}; build it with image_size={x.shape[-1]}"
            )
        x = self.patch_norm(self.patch_embed(x))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, image_size, image_size) → (B, num_classes) logits."""
        x = self.forward_features(x)
        # Swin's order (and timm's): LayerNorm on every token of the last map, *then* the average pool. Pooling
        # first and normalising the mean is a different function — LayerNorm is not linear.
        tokens = self.norm(rearrange(x, "b c h w -> b (h w) c"))
        return self.head(tokens.mean(dim=1))


class LocalAttentionBlock(BasicBlock):
    """The chapter-1 :class:`~nlbook.cnn.BasicBlock` with both 3×3 convolutions replaced by SASA local attention.

    ``conv1`` becomes :class:`LocalSelfAttention2d` (in → out channels), followed by 2×2 average pooling when the
    block strides (SASA attends at full resolution and pools, Ramachandran et al., 2019, Sec. 4.1); ``conv2``
    becomes :class:`LocalSelfAttention2d` (out → out). BatchNorms, ReLUs, the shortcut and the forward pass are
    BasicBlock's, so the block is a drop-in replacement wherever a BasicBlock goes.

    Args:
        in_channels, out_channels, stride: as for BasicBlock (stride 1 or 2).
        kernel_size: the neighbourhood k (7 in the paper). num_heads: heads (8 in the paper); every head's width
            (out_channels / num_heads) must be even.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel_size: int = 7,
        num_heads: int = 8,
    ):
        if stride not in (1, 2):
            raise ValueError(
                f"LocalAttentionBlock: stride must be 1 or 2, got {stride!r}"
            )
        super().__init__(in_channels, out_channels, stride)
        attend = LocalSelfAttention2d(in_channels, out_channels, kernel_size, num_heads)
        self.conv1 = nn.Sequential(attend, nn.AvgPool2d(2)) if stride == 2 else attend
        self.conv2 = LocalSelfAttention2d(
            out_channels, out_channels, kernel_size, num_heads
        )

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """BasicBlock's initialisation (BatchNorms, shortcut), and each attention layer's own."""
        super().reset_parameters(zero_init_residual)
        for m in (self.conv1, self.conv2):
            for inner in m.modules():
                if isinstance(inner, LocalSelfAttention2d):
                    inner.reset_parameters()


def sasa_resnet(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    depths: tuple[int, ...] = (2, 2, 2, 2),
    attention_stages: tuple[int, ...] | None = None,
    kernel_size: int = 7,
    num_heads: int = 8,
) -> ResNet:
    """The chapter-1 :class:`~nlbook.cnn.ResNet` whose blocks in ``attention_stages`` are
    :class:`LocalAttentionBlock` — stand-alone local self-attention in place of convolution (SASA).

    Default: the last two stages, where the maps are small; the convolutional stem and early stages stay, which
    Ramachandran et al. (2019) found to work better than attention from the first layer. Built through the
    ResNet's ``block_factory`` hook, like :func:`nlbook.hybrid.hybrid_resnet`.
    """
    widths = check_ints("sasa_resnet", "widths", widths, what="channel counts")
    depths = check_ints("sasa_resnet", "depths", depths, what="block counts")
    n = len(widths)
    stages = (
        tuple(range(max(n - 2, 0), n))
        if attention_stages is None
        else check_indices("sasa_resnet", "attention_stages", attention_stages, n)
    )

    def factory(
        stage: int, index: int, in_ch: int, out_ch: int, stride: int
    ) -> nn.Module:
        if stage in stages:
            return LocalAttentionBlock(in_ch, out_ch, stride, kernel_size, num_heads)
        return BasicBlock(in_ch, out_ch, stride)

    return ResNet(num_classes, in_channels, widths, depths, block_factory=factory)


# ---------------------------------------------------------------------------------------------------------------
# Reader forms (no checks, no options; same state-dict keys as the production modules)
# ---------------------------------------------------------------------------------------------------------------


class WindowAttentionMinimal(nn.Module):
    """Swin's (shifted) window attention, as a reader holds it in their head."""

    def __init__(self, dim: int, window_size: int, num_heads: int, shift_size: int = 0):
        super().__init__()
        self.m, self.s = window_size, shift_size
        self.mha = MultiHeadAttention(
            dim, num_heads
        )  # qkv + proj, one window at a time
        self.rel_bias = RelativePositionBias2d(
            window_size, num_heads
        )  # (heads, M², M²)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        m, s = self.m, self.s
        x = torch.roll(
            x, (-s, -s), dims=(2, 3)
        )  # shifted windows cross the old borders
        tokens = rearrange(x, "b c (nh m1) (nw m2) -> (b nh nw) (m1 m2) c", m1=m, m2=m)

        def region(
            n: int,
        ) -> torch.Tensor:  # 0: unmoved, 1 and 2: wrapped-around strips
            pos = torch.arange(n, device=x.device)
            return (pos >= n - m).long() + (pos >= n - s).long()

        label = region(height)[:, None] * 3 + region(width)
        label = rearrange(label, "(nh m1) (nw m2) -> (nh nw) (m1 m2)", m1=m, m2=m)
        apart = label[:, :, None] != label[:, None, :]  # (nW, M², M²)
        bias = self.rel_bias().masked_fill(apart[:, None], float("-inf"))
        out = self.mha(tokens, bias=bias.repeat(b, 1, 1, 1))
        out = rearrange(
            out, "(b nh nw) (m1 m2) c -> b c (nh m1) (nw m2)", b=b, nh=height // m, m1=m
        )
        return torch.roll(out, (s, s), dims=(2, 3))


class LocalSelfAttention2dMinimal(nn.Module):
    """SASA: each pixel attends to its k×k neighbourhood, positions added to keys."""

    def __init__(self, dim: int, out_dim: int, kernel_size: int, num_heads: int):
        super().__init__()
        self.k, self.heads = kernel_size, num_heads
        self.query = nn.Conv2d(dim, out_dim, 1, bias=False)
        self.key = nn.Conv2d(dim, out_dim, 1, bias=False)
        self.value = nn.Conv2d(dim, out_dim, 1, bias=False)
        half = out_dim // num_heads // 2  # half a head for rows, half for columns
        self.rel_height = nn.Parameter(torch.randn(num_heads, kernel_size, half))
        self.rel_width = nn.Parameter(torch.randn(num_heads, kernel_size, half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, h, height, width = self.k, self.heads, x.shape[-2], x.shape[-1]

        def around(
            t: torch.Tensor,
        ) -> torch.Tensor:  # (B, h·d, H, W) -> (B, h, HW, k², d)
            t = F.unfold(t, k, padding=k // 2)  # every pixel's k×k neighbourhood
            return rearrange(t, "b (h d kk) n -> b h n kk d", h=h, kk=k * k)

        q = rearrange(self.query(x), "b (h d) x y -> b h (x y) 1 d", h=h)
        rows = self.rel_height[:, :, None].expand(-1, -1, k, -1)  # r for offset a−i
        cols = self.rel_width[:, None].expand(-1, k, -1, -1)  # r for offset b−j
        r = rearrange(torch.cat([rows, cols], -1), "h a b d -> h 1 (a b) d")
        inside = F.unfold(x.new_ones(1, 1, height, width), k, padding=k // 2) > 0
        inside = rearrange(inside, "1 kk n -> n 1 kk")  # no attending off the image
        keys, values = around(self.key(x)) + r, around(self.value(x))
        out = scaled_dot_product_attention(q, keys, values, bias=inside)
        return rearrange(out, "b h (x y) 1 d -> b (h d) x y", x=height)
