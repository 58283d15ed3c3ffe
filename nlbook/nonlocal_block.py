"""Chapter 3 — Strategy 1: Non-local blocks inserted into a CNN (Wang et al., 2018).

A non-local block computes, for every position ``i`` of a feature map,

    y_i = 1 / C(x) · Σ_j f(x_i, x_j) g(x_j),        z_i = BN(W y_i) + x_i,

where ``j`` runs over all positions (after optional 2×2 max-pool sub-sampling of ``phi`` and ``g``),
``g`` is a 1×1 convolution to ``inter_channels`` channels and ``f`` is one of the paper's four pairwise
functions:

============================  =================================  ==================================
mode                          f(x_i, x_j)                        C(x)
============================  =================================  ==================================
``"gaussian"``                exp(x_iᵀ x_j)                       Σ_j f  → softmax over j
``"embedded_gaussian"``       exp(θ(x_i)ᵀ φ(x_j))                 Σ_j f  → softmax over j
``"dot_product"``             θ(x_i)ᵀ φ(x_j)                      N (number of positions j)
``"concatenation"``           ReLU(w_fᵀ [θ(x_i), φ(x_j)])         N
============================  =================================  ==================================

The two softmax modes are attention and go through :func:`nlbook.attention.scaled_dot_product_attention`
(the package's one attention implementation). Its ``impl="fused"`` path calls PyTorch's SDPA, which on
CPU as on CUDA has a flash kernel that never stores the (N, M) weight matrix — *provided* there is no
mask, no dropout and q, k, v have the same width (otherwise it silently falls back to the O(N·M) "math"
path). This module keeps those conditions: it passes contiguous (B, 1, N, d) tensors, no mask, no dropout,
and zero-pads to equal widths where the Gaussian mode's q/k (``in_channels`` wide) and v
(``inter_channels`` wide) differ. The two linear modes need no softmax and are computed in O(N) memory
by re-ordering the sums (see :meth:`NonLocalBlock2d._dot_product` and :meth:`_concatenation`);
``impl="explicit"`` materialises the (N, M) matrix for every mode, for teaching and inspection.

:class:`SeedArticleNonLocalBlock` is the block from the blog article this project grew from, kept
**verbatim and deliberately broken** so the chapter can run it and show where it fails. Do not use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nlbook.attention import (
    AttentionImpl,
    attention_weights,
    check_impl,
    scaled_dot_product_attention,
)
from nlbook.checks import (
    check_bool,
    check_image_batch,
    check_indices,
    check_ints,
    check_module,
    is_int,
)
from nlbook.cnn import ResNet

__all__ = [
    "MODES",
    "NonLocalBlock2d",
    "NonLocalMode",
    "NonLocalResNet",
    "SeedArticleNonLocalBlock",
    "nonlocal_attention_maps",
]

NonLocalMode = Literal["gaussian", "embedded_gaussian", "dot_product", "concatenation"]
MODES: tuple[str, ...] = (
    "gaussian",
    "embedded_gaussian",
    "dot_product",
    "concatenation",
)


class NonLocalBlock2d(nn.Module):
    """The non-local block of Wang et al. (2018) for (B, C, H, W) feature maps; output shape = input shape.

    Args:
        in_channels: C of the input (and output).
        inter_channels: C', the width of θ, φ, g; default ``in_channels // 2`` as in the paper.
        mode: pairwise function, one of :data:`MODES` (table in the module docstring).
        sub_sample: max-pool φ and g by 2×2 (the paper's trick: M = N/4 keys, 4× less attention cost).
            ``ceil_mode`` pooling, so odd sizes work too (a 7×7 map gives 4×4 keys).
        bn_layer: W is a 1×1 convolution followed by BatchNorm whose weight and bias start at zero; with
            ``bn_layer=False`` the convolution W itself starts at zero. Either way the block is exactly the
            identity at initialisation, so inserting it into a trained network changes nothing at first.
        impl: ``"fused"`` (O(N) memory; default) or ``"explicit"`` (materialises the (N, M) pairwise matrix).

    Convolutions θ, φ, g and W have biases, as in the reference implementation and in
    :class:`timm.layers.NonLocalAttn` (whose weights therefore copy across one-to-one).
    """

    def __init__(
        self,
        in_channels: int,
        inter_channels: int | None = None,
        mode: NonLocalMode = "embedded_gaussian",
        sub_sample: bool = False,
        bn_layer: bool = True,
        impl: AttentionImpl = "fused",
    ):
        super().__init__()
        if not is_int(in_channels) or in_channels < 1:
            raise ValueError(
                f"NonLocalBlock2d: in_channels must be an int >= 1, got {in_channels!r}"
            )
        in_channels = int(in_channels)
        if inter_channels is None:
            inter_channels = max(in_channels // 2, 1)
        if not is_int(inter_channels) or inter_channels < 1:
            raise ValueError(
                f"NonLocalBlock2d: inter_channels must be an int >= 1 or None, got {inter_channels!r}"
            )
        inter_channels = int(inter_channels)
        # "no" would be truthy and switch the option on
        check_bool("NonLocalBlock2d", "sub_sample", sub_sample)
        check_bool("NonLocalBlock2d", "bn_layer", bn_layer)
        if mode not in MODES:
            raise ValueError(
                f"NonLocalBlock2d: mode must be one of {MODES}, got {mode!r}"
            )
        check_impl("NonLocalBlock2d", impl)
        self.in_channels, self.inter_channels = in_channels, inter_channels
        self.mode, self.sub_sample, self.bn_layer, self.impl = (
            mode,
            bool(sub_sample),
            bool(bn_layer),
            impl,
        )

        self.g = nn.Conv2d(in_channels, inter_channels, 1)
        # The Gaussian mode compares raw features x_i, x_j: it has no θ/φ embeddings.
        self.theta = (
            nn.Conv2d(in_channels, inter_channels, 1) if mode != "gaussian" else None
        )
        self.phi = (
            nn.Conv2d(in_channels, inter_channels, 1) if mode != "gaussian" else None
        )
        # Concatenation: w_f projects [θ_i, φ_j] (2C') to a scalar; split into its θ half and φ half.
        self.concat_project = (
            nn.Linear(2 * inter_channels, 1, bias=False)
            if mode == "concatenation"
            else None
        )
        self.pool = (
            nn.MaxPool2d(2, ceil_mode=True) if self.sub_sample else nn.Identity()
        )
        self.W = nn.Conv2d(inter_channels, in_channels, 1)
        self.bn = nn.BatchNorm2d(in_channels) if self.bn_layer else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default init for θ, φ, g, w_f; zero for the last layer (BN weight/bias, or W) → identity block."""
        for m in (self.g, self.theta, self.phi, self.concat_project, self.W):
            if m is not None:
                m.reset_parameters()
        if isinstance(self.bn, nn.BatchNorm2d):
            self.bn.reset_parameters()
            nn.init.zeros_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)
        else:
            nn.init.zeros_(self.W.weight)
            nn.init.zeros_(self.W.bias)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, inter_channels={self.inter_channels}, mode={self.mode!r}, "
            f"sub_sample={self.sub_sample}, bn_layer={self.bn_layer}, impl={self.impl!r}"
        )

    # -- embeddings --------------------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """θ (queries, (B, N, ·)), φ (keys, (B, M, ·)) and g (values, (B, M, C')) as
        position-major sequences.

        N = H·W query positions; M = number of key positions after the optional 2×2
        max-pool. The pool is
        applied *after* the 1×1 convolutions φ and g, as in the paper.
        """
        theta = x if self.theta is None else self.theta(x)
        phi = x if self.phi is None else self.phi(x)
        to_seq = "b c h w -> b (h w) c"
        return (
            rearrange(theta, to_seq),
            rearrange(self.pool(phi), to_seq),
            rearrange(self.pool(self.g(x)), to_seq),
        )

    def pairwise(self, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """The normalised pairwise matrix f(x_i, x_j) / C(x), (B, N, M) — explicit, O(N·M) memory.

        Rows sum to 1 in the softmax modes; in the linear modes they are f / M.
        """
        if self.mode in ("gaussian", "embedded_gaussian"):
            return attention_weights(
                theta, phi, scale=1.0
            )  # the paper's Gaussians: no 1/sqrt(d)
        m = phi.shape[-2]
        if self.mode == "dot_product":
            return torch.matmul(theta, phi.transpose(-2, -1)) / m
        a, b = self._concat_terms(theta, phi)  # (B, N), (B, M)
        return F.relu(a.unsqueeze(-1) + b.unsqueeze(-2)) / m

    # -- the four pairwise functions -----------------------------------------------------------------------------
    def _softmax_attention(
        self,
        theta: torch.Tensor,
        phi: torch.Tensor,
        g: torch.Tensor,
        return_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # The paper's embedded Gaussian is exp(θᵀφ) — no 1/sqrt(d) temperature — hence
        # scale=1.
        q, k, v = (rearrange(t, "b n c -> b 1 n c") for t in (theta, phi, g))
        impl = "explicit" if return_weights else self.impl
        width = v.shape[-1]
        if impl == "fused":
            # SDPA's CPU/CUDA flash kernels need equal q/k and v widths; zero columns
            # change neither the
            # logits (zeros added to dot products) nor the kept output columns, so pad
            # and slice back.
            d = max(q.shape[-1], width)
            q, k, v = (F.pad(t, (0, d - t.shape[-1])).contiguous() for t in (q, k, v))
        res = scaled_dot_product_attention(
            q, k, v, scale=1.0, impl=impl, return_weights=return_weights
        )
        out, weights = res if return_weights else (res, None)
        out = rearrange(out[..., :width], "b 1 n c -> b n c")
        return out, (
            rearrange(weights, "b 1 n m -> b n m") if weights is not None else None
        )

    def _dot_product(
        self, theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor
    ) -> torch.Tensor:
        # y = (θ φᵀ / M) g = θ (φᵀ g) / M. Matrix products are associative and C(x) = M
        # is a constant (it does
        # not depend on the values of f, unlike a softmax's row sums), so the (N, M)
        # matrix is never needed:
        # φᵀ g is only (C', C'). Memory O((N + M)·C' + C'²) instead of O(N·M).
        m = phi.shape[-2]
        return torch.matmul(theta, torch.matmul(phi.transpose(-2, -1), g)) / m

    def _concat_terms(
        self, theta: torch.Tensor, phi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # w_fᵀ [θ_i, φ_j] = w_θ·θ_i + w_φ·φ_j = a_i + b_j: the concatenation splits into a query term and a key term.
        assert self.concat_project is not None
        w_theta, w_phi = self.concat_project.weight[0].split(self.inter_channels)
        return torch.matmul(theta, w_theta), torch.matmul(phi, w_phi)

    def _concatenation(
        self, theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor
    ) -> torch.Tensor:
        # y_i = 1/M Σ_j ReLU(a_i + b_j) g_j = 1/M Σ_{j: b_j > -a_i} (a_i g_j + b_j g_j).
        # Sort keys by b; the active set of query i is a suffix of that order, found by
        # binary search. Suffix
        # sums of g and b·g then give every y_i in O((N + M)·C' + M log M) — exact, no
        # (N, M) matrix.
        out_dtype = g.dtype
        # Running sums over M keys lose digits in bf16/fp16 (autocast): accumulate in
        # at least float32.
        acc = torch.promote_types(g.dtype, torch.float32)
        a, b = (t.to(acc) for t in self._concat_terms(theta, phi))  # (B, N), (B, M)
        g = g.to(acc)
        m = phi.shape[-2]
        b_sorted, order = b.sort(dim=-1)
        g_sorted = torch.gather(g, 1, order.unsqueeze(-1).expand_as(g))
        # suffix sums with a zero row appended (index M = "no key active")
        both = torch.cat(
            [g_sorted, b_sorted.unsqueeze(-1) * g_sorted], dim=-1
        )  # (B, M, 2C')
        both = F.pad(both, (0, 0, 0, 1))
        suffix = both.flip(1).cumsum(1).flip(1)  # suffix[:, k] = Σ_{j >= k} (sorted)
        # first sorted index with b_j > -a_i (strict, matching ReLU's zero gradient at
        # 0)
        start = torch.searchsorted(
            b_sorted.contiguous(), (-a).contiguous(), right=True
        )  # (B, N)
        picked = torch.gather(
            suffix, 1, start.unsqueeze(-1).expand(-1, -1, suffix.shape[-1])
        )
        sum_g, sum_bg = picked.split(self.inter_channels, dim=-1)
        return ((a.unsqueeze(-1) * sum_g + sum_bg) / m).to(out_dtype)

    # -- forward ---------------------------------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """z = BN(W y) + x for ``x`` (B, in_channels, H, W); same shape out.

        With ``return_attention=True`` also returns the (B, H·W, M) normalised pairwise
        matrix f / C(x)
        (computed explicitly, whatever ``impl``); M = H·W, or ⌈H/2⌉·⌈W/2⌉ with
        ``sub_sample``.
        """
        check_image_batch(x, self.in_channels, type(self).__name__, like=self)
        return_attention = check_bool(
            type(self).__name__, "return_attention", return_attention
        )
        height, width = x.shape[-2:]
        theta, phi, g = self.embed(x)
        weights: torch.Tensor | None = None
        if return_attention or self.impl == "explicit":
            if self.mode in ("gaussian", "embedded_gaussian"):
                y, weights = self._softmax_attention(theta, phi, g, return_weights=True)
            else:
                weights = self.pairwise(theta, phi)
                y = torch.matmul(weights, g)
        elif self.mode in ("gaussian", "embedded_gaussian"):
            y, _ = self._softmax_attention(theta, phi, g, return_weights=False)
        elif self.mode == "dot_product":
            y = self._dot_product(theta, phi, g)
        else:
            y = self._concatenation(theta, phi, g)
        # contiguous y, and x first in the sum: the output keeps x's memory format (a
        # channels-last result
        # would send the next convolution down another kernel and break bit-exact
        # identity at init)
        y = rearrange(y, "b (h w) c -> b c h w", h=height, w=width).contiguous()
        z = x + self.bn(self.W(y))
        if return_attention:
            assert weights is not None
            return z, weights
        return z


class NonLocalResNet(ResNet):
    """:class:`nlbook.cnn.ResNet` with :class:`NonLocalBlock2d` inserted after residual
    blocks.

    The paper (ResNet-50 on 224² ImageNet / video) inserts blocks into res3 (28²) and
    res4 (14²). This
    CIFAR-style ResNet has four stages at 32², 16², 8², 4² for 32×32 inputs; stage
    ``s`` plays the role of
    res(s+2), so the default — stages 1 and 2 — is the paper's res3/res4 placement.

    Args:
        nonlocal_stages: stages (0-based) that receive non-local blocks; default
        ``None``: stages 1 and 2, or just
            stage 1 in a two-stage network (a one-stage network has no res3 and needs
            an explicit choice).
        nonlocal_every: in each such stage, a block goes after the stage's last
        residual block and then after
            every ``nonlocal_every``-th block counting backwards (``1``: after every
            block — the paper's
            10-block variant; ``2``: every other block — its 5-block variant; ``>=
            depth``: one per stage).
        mode, sub_sample, inter_channels, impl: passed to every
        :class:`NonLocalBlock2d`.
        **resnet_kwargs: ``widths``, ``depths``, ``block_factory``,
        ``zero_init_residual`` of :class:`ResNet`.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        nonlocal_stages: Sequence[int] | None = None,
        nonlocal_every: int = 2,
        mode: NonLocalMode = "embedded_gaussian",
        sub_sample: bool = False,
        inter_channels: int | None = None,
        impl: AttentionImpl = "fused",
        **resnet_kwargs: Any,
    ):
        widths = check_ints("NonLocalResNet", "widths", widths, what="channel counts")
        depths = check_ints("NonLocalResNet", "depths", depths, what="block counts")
        if "insert_after" in resnet_kwargs:
            raise TypeError(
                "NonLocalResNet: insert_after is set by NonLocalResNet itself; use "
                "ResNet for your own"
            )
        if not is_int(nonlocal_every) or nonlocal_every < 1:
            raise ValueError(
                f"NonLocalResNet: nonlocal_every must be an int >= 1, got "
                f"{nonlocal_every!r}"
            )
        if mode not in MODES:  # fail before building the whole network
            raise ValueError(
                f"NonLocalResNet: mode must be one of {MODES}, got {mode!r}"
            )
        if nonlocal_stages is None:
            stages = tuple(s for s in (1, 2) if s < len(widths))
            if not stages:
                raise ValueError(
                    "NonLocalResNet: a one-stage network has no stage 1 (the paper's "
                    "res3); pass nonlocal_stages=(0,)"
                )
        else:
            stages = check_indices(
                "NonLocalResNet", "nonlocal_stages", nonlocal_stages, len(widths)
            )
        nonlocal_every = int(nonlocal_every)
        check_bool(
            "NonLocalResNet", "sub_sample", sub_sample
        )  # checked even where no block is inserted

        def insert_after(stage: int, index: int, channels: int) -> nn.Module | None:
            if stage not in stages or (depths[stage] - 1 - index) % nonlocal_every:
                return None
            return NonLocalBlock2d(
                channels, inter_channels, mode=mode, sub_sample=sub_sample, impl=impl
            )

        super().__init__(
            num_classes,
            in_channels,
            widths,
            depths,
            insert_after=insert_after,
            **resnet_kwargs,
        )
        self.nonlocal_stages, self.nonlocal_every = stages, nonlocal_every

    def nonlocal_blocks(self) -> list[tuple[str, NonLocalBlock2d]]:
        """``(name, block)`` for every inserted non-local block, in forward order."""
        return [
            (n, m) for n, m in self.named_modules() if isinstance(m, NonLocalBlock2d)
        ]


@torch.no_grad()
def nonlocal_attention_maps(
    model: nn.Module, x: torch.Tensor
) -> dict[str, tuple[torch.Tensor, tuple[int, int]]]:
    """Run ``model`` on ``x`` and return, for each :class:`NonLocalBlock2d` inside it, its pairwise weights.

    Returns ``{module name: (weights (B, H·W, M), (H, W) of the block's input)}``. The weights are recomputed
    with ``return_attention=True`` from the input each block saw (so they are exactly the ones the forward
    pass used, at whatever ``impl``). Does not change the model's train/eval mode; use ``model.eval()`` first
    for inference statistics in BatchNorm.
    """
    check_module("nonlocal_attention_maps", "model", model)
    blocks = [
        (n, m) for n, m in model.named_modules() if isinstance(m, NonLocalBlock2d)
    ]
    if not blocks:
        raise ValueError(
            f"nonlocal_attention_maps: {type(model).__name__} contains no NonLocalBlock2d"
        )
    seen: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_pre_hook(lambda mod, args, n=n: seen.__setitem__(n, args[0]))
        for n, m in blocks
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for n, m in blocks:
        inp = seen[n]
        _, weights = m(inp, return_attention=True)
        out[n] = (weights, (inp.shape[-2], inp.shape[-1]))
    return out


class SeedArticleNonLocalBlock(nn.Module):
    """BROKEN ON PURPOSE — the seed article's ``NonLocalBlock``, kept verbatim as a
    teaching reference.

    Chapter 3 runs it on the article's own example input (1, 64, 56, 56) to show that
    it fails, then
    diagnoses it line by line. Its bugs (fixed in :class:`NonLocalBlock2d`):

    1. ``matmul(phi_x, g_x)`` multiplies (B, C', N) by (B, N, C') — a C'×C' channel
       matrix instead of the
       N×N affinity between positions; the next matmul then fails with a shape
       RuntimeError.
    2. The roles are swapped: the affinity should be θᵀφ (query θ, key φ) and it should
       weight g (values);
       here φ is paired with g and θ is used as the values.
    3. Scales by √C (input channels) — the paper's embedded Gaussian has no scale; a
       Transformer-style
       scale would be √C' (the embedding width), not √C.
    4. Unpacks ``(batch, C, width, height)`` where PyTorch tensors are (B, C, H, W) —
       harmless for square
       inputs, wrong names (and a wrong reshape if it ever were used with H ≠ W and
       other code).
    5. W is a plain convolution without a zero-initialised BatchNorm, so the block is
       not the identity at
       initialisation and perturbs a (pre-trained) network the moment it is inserted.
    """

    def __init__(self, in_channels, reduction=2):
        super().__init__()
        self.in_channels = in_channels
        self.inter_channels = in_channels // reduction

        self.g = nn.Conv2d(
            in_channels, self.inter_channels, kernel_size=1, stride=1, padding=0
        )
        self.theta = nn.Conv2d(
            in_channels, self.inter_channels, kernel_size=1, stride=1, padding=0
        )
        self.phi = nn.Conv2d(
            in_channels, self.inter_channels, kernel_size=1, stride=1, padding=0
        )

        self.softmax = nn.Softmax(dim=-1)
        self.W = nn.Conv2d(
            self.inter_channels, in_channels, kernel_size=1, stride=1, padding=0
        )

    def forward(self, x):
        batch_size, C, width, height = x.size()

        g_x = self.g(x).view(batch_size, self.inter_channels, -1)
        g_x = g_x.permute(0, 2, 1)

        theta_x = self.theta(x).view(batch_size, self.inter_channels, -1)
        phi_x = self.phi(x).view(batch_size, self.inter_channels, -1)
        f = torch.matmul(phi_x, g_x)
        f = f.div(C**0.5)
        attention = self.softmax(f)

        y = torch.matmul(attention, theta_x.permute(0, 2, 1))
        y = y.view(batch_size, self.inter_channels, width, height)
        y = self.W(y)
        return x + y
