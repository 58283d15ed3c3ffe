"""Chapter 5 — Strategy 3: hybrid modules that mix convolution and attention inside one network.

From the lightest to the deepest fusion:

* **Gating** — :class:`SqueezeExcitation` (Hu et al., 2018) and :class:`CBAM` (Woo et al., 2018) compute a
  sigmoid gate from pooled statistics and *rescale* the convolution's features; no position ever reads
  another position's features. Both drop into :class:`nlbook.cnn.BasicBlock` as its ``attention``.
* **Token mixing** — :class:`BoTBlock` (Srinivas et al., 2021) replaces the 3×3 convolution of a bottleneck
  with multi-head self-attention with 2-D relative position logits. The deepest fusion, a whole CoAtNet-style
  network (Dai et al., 2021), has its own module, :mod:`nlbook.coatnet`.

:func:`hybrid_resnet` builds the chapter-1 :class:`~nlbook.cnn.ResNet` with any of them through its
``block_factory`` hook, so the comparison chapter can sweep them by name. Every attention here goes through
:mod:`nlbook.attention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nlbook.attention import MultiHeadSelfAttention2d
from nlbook.checks import (
    check_bool,
    check_choice,
    check_grid_input,
    check_image_batch,
    check_indices,
    check_ints,
    check_positive_int,
    to_pair,
)
from nlbook.cnn import BasicBlock, ResNet

__all__ = [
    "GATE_INITS",
    "HYBRID_KINDS",
    "OPEN_GATE_LOGIT",
    "BoTBlock",
    "CBAM",
    "HybridKind",
    "SqueezeExcitation",
    "attention_maps",
    "hybrid_resnet",
]


HybridKind = Literal["resnet", "se", "cbam", "botnet"]
HYBRID_KINDS: tuple[str, ...] = ("resnet", "se", "cbam", "botnet")
GateInit = Literal["default", "open"]
GATE_INITS: tuple[str, ...] = ("default", "open")
# gate_init="open": the gate's pre-sigmoid bias starts here, so every gate starts at σ(3) ≈ 0.95 instead of ≈ 0.5.
OPEN_GATE_LOGIT = 3.0


def _reduced_channels(
    where: str, channels: int, reduction: int, rd_channels: int | None, floor: int
) -> int:
    check_positive_int(
        where, channels=channels, reduction=reduction, min_rd_channels=floor
    )
    if rd_channels is not None:
        check_positive_int(where, rd_channels=rd_channels)
        return int(rd_channels)
    # The paper's C/r, floored so that the narrow layers of the quick profile (16 channels) keep a usable
    # bottleneck instead of a single hidden unit (timm rounds to multiples of 8 for the same reason).
    return max(floor, channels // reduction)


# --------------------------------------------------------------------------------------------------------------
# Gating: squeeze-and-excitation and CBAM
# --------------------------------------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): rescale each channel by a gate
    computed from all positions.

    ``s = σ(W₂ δ(W₁ GAP(x)))`` and the output is ``x · s`` (broadcast over H, W). The
    gate costs two small
    fully connected layers per image — almost nothing next to a 3×3 convolution — and
    mixes no positions.

    Args:
        channels: C of the (B, C, H, W) input.
        reduction: the paper's ratio r; the hidden layer has ``max(min_rd_channels, C
        // r)`` units
            unless ``rd_channels`` gives it directly.
        rd_channels: hidden units of the excitation MLP (overrides ``reduction``).
        min_rd_channels: floor on the hidden size when it comes from ``reduction``.
        gate_init: ``"default"`` (PyTorch's ``nn.Linear`` initialisation: the gate
        starts near σ(0) = 1/2, halving
            the branch) or ``"open"`` (W₂'s bias starts at :data:`OPEN_GATE_LOGIT`, so
            the gate starts near 1 and
            the block starts like the plain one) — chapter 5 trains both to test what
            the starting gate costs.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        rd_channels: int | None = None,
        min_rd_channels: int = 8,
        gate_init: GateInit = "default",
    ) -> None:
        super().__init__()
        hidden = _reduced_channels(
            "SqueezeExcitation", channels, reduction, rd_channels, min_rd_channels
        )
        self.gate_init = check_choice(
            "SqueezeExcitation", "gate_init", gate_init, GATE_INITS
        )
        self.channels, self.rd_channels = channels, hidden
        self.fc1 = nn.Linear(
            channels, hidden
        )  # W₁ (with bias, as in the paper's FC layers)
        self.fc2 = nn.Linear(hidden, channels)  # W₂
        if (
            gate_init == "open"
        ):  # the default keeps nn.Linear's own draw untouched (same weights for a seed)
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation of W₁ and W₂; with ``gate_init="open"`` W₂'s bias
        then starts open."""
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()
        if self.gate_init == "open":
            nn.init.constant_(self.fc2.bias, OPEN_GATE_LOGIT)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) excitation ``s`` in (0, 1)."""
        check_image_batch(x, self.channels, type(self).__name__, like=self)
        squeezed = x.mean(dim=(2, 3))  # (B, C): the global descriptor z of the paper
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))
        return rearrange(s, "b c -> b c 1 1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): a channel gate, then a
    spatial gate.

    Channel attention (paper Eq. 2) shares one MLP between the average- and the
    max-pooled descriptors::

        M_c = σ(MLP(AvgPool(x)) + MLP(MaxPool(x))),     x' = M_c · x

    Spatial attention (Eq. 3) pools *across channels* and convolves the two maps::

        M_s = σ(f^{k×k}([mean_c(x'); max_c(x')])),      out = M_s · x'

    The paper's ``f`` is a plain convolution. The authors' code and timm's
    ``CbamModule`` put a BatchNorm after
    it; ``spatial_norm=True`` reproduces that variant (it then matches timm exactly).

    Args:
        channels: C of the (B, C, H, W) input.
        reduction: ratio r of the shared MLP (hidden size ``max(min_rd_channels, C //
        r)``).
        rd_channels: hidden size given directly (overrides ``reduction``).
        spatial_kernel: k of the spatial convolution (7 in the paper; odd, so the map
        keeps its size).
        spatial_norm: BatchNorm after the spatial convolution (authors' code, timm)
        instead of the paper's Eq. 3.
        min_rd_channels: floor on the hidden size when it comes from ``reduction``.
        gate_init: ``"default"`` (the paper's bias-free gates, which start near σ(0) =
        1/2) or ``"open"``: the
            MLP's last layer and the spatial convolution get a bias (C + 1 parameters)
            that starts both gates
            near σ(:data:`OPEN_GATE_LOGIT`) ≈ 0.95, so the block starts like the plain
            one (chapter 5).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        rd_channels: int | None = None,
        spatial_kernel: int = 7,
        spatial_norm: bool = False,
        min_rd_channels: int = 8,
        gate_init: GateInit = "default",
    ) -> None:
        super().__init__()
        hidden = _reduced_channels(
            "CBAM", channels, reduction, rd_channels, min_rd_channels
        )
        check_positive_int("CBAM", spatial_kernel=spatial_kernel)
        check_bool(
            "CBAM", "spatial_norm", spatial_norm
        )  # "no" would be truthy: a BatchNorm nobody asked for
        spatial_kernel = int(spatial_kernel)
        if spatial_kernel % 2 == 0:
            raise ValueError(
                f"CBAM: spatial_kernel must be odd so the spatial map keeps its size, "
                f"got {spatial_kernel}"
            )
        self.gate_init = check_choice("CBAM", "gate_init", gate_init, GATE_INITS)
        self.channels, self.rd_channels = channels, hidden
        # The shared MLP W₁ δ(W₀ ·) of Eq. 2 (no biases in the equation, none in timm;
        # an open gate needs one).
        opened = gate_init == "open"
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, channels, bias=opened),
        )
        self.spatial_conv = nn.Conv2d(
            2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=opened
        )
        self.spatial_norm: nn.Module = (
            nn.BatchNorm2d(1) if spatial_norm else nn.Identity()
        )
        if (
            opened
        ):  # the default keeps the layers' own draw untouched (same weights for a seed)
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """The layers' PyTorch initialisation; with ``gate_init="open"`` the biases
        then start both gates open."""
        for layer in (self.mlp[0], self.mlp[2], self.spatial_conv, self.spatial_norm):
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        if self.gate_init == "open":
            # M_c sums the MLP over the average- and the max-pooled descriptor: the
            # bias enters twice.
            nn.init.constant_(self.mlp[2].bias, OPEN_GATE_LOGIT / 2)
            nn.init.constant_(self.spatial_conv.bias, OPEN_GATE_LOGIT)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """M_c, (B, C, 1, 1)."""
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return rearrange(torch.sigmoid(logits), "b c -> b c 1 1")

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """M_s, (B, 1, H, W), of an (already channel-gated) input."""
        pooled = torch.cat(
            [x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1
        )  # (B, 2, H, W)
        return torch.sigmoid(self.spatial_norm(self.spatial_conv(pooled)))

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both gates for input ``x``: M_c (B, C, 1, 1) and M_s (B, 1, H, W) — what the
        chapter plots."""
        check_image_batch(x, self.channels, type(self).__name__, like=self)
        mc = self.channel_gate(x)
        return mc, self.spatial_gate(x * mc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.channels, type(self).__name__, like=self)
        x = x * self.channel_gate(x)
        return x * self.spatial_gate(x)


# --------------------------------------------------------------------------------------------------------------
# Token mixing in a ResNet: the BoTNet block
# --------------------------------------------------------------------------------------------------------------


class BoTBlock(nn.Module):
    """Bottleneck Transformer block (Srinivas et al., 2021): a ResNet bottleneck whose
    3×3 conv is MHSA.

    ``1×1 conv (C_in → C_mid) → BN → ReLU → MHSA with 2-D relative position logits on
    the H×W grid →
    [2×2 average pool if stride 2] → BN → ReLU → 1×1 conv (C_mid → C_out) → BN``, added
    to the shortcut, ReLU.
    As in BoTNet, a strided block attends at its input resolution and average-pools
    afterwards.

    Args:
        in_channels, out_channels: C_in and C_out.
        size: (H, W) of the input feature map — relative position logits are learned
        for this grid.
        stride: 1 or 2.
        num_heads: attention heads (4 in all BoTNet models).
        expansion: C_mid = C_out // expansion (4 in a ResNet bottleneck).
        zero_init_residual: start the last BatchNorm at zero, so the block begins as
        ``ReLU(shortcut(x))``.
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
        check_positive_int(
            "BoTBlock",
            in_channels=in_channels,
            out_channels=out_channels,
            num_heads=num_heads,
            expansion=expansion,
        )
        if stride not in (1, 2):
            raise ValueError(f"BoTBlock: stride must be 1 or 2, got {stride!r}")
        self.size = to_pair(size, "BoTBlock")
        if stride == 2 and any(s % 2 for s in self.size):
            raise ValueError(
                f"BoTBlock: stride 2 needs an even feature-map size, got {self.size}"
            )
        mid = out_channels // expansion
        if mid < num_heads or mid % num_heads:
            raise ValueError(
                f"BoTBlock: out_channels // expansion = {mid} must be a positive "
                f"multiple of num_heads ({num_heads})"
            )
        self.in_channels, self.out_channels, self.stride = (
            in_channels,
            out_channels,
            stride,
        )
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU()
        )
        # BoTNet's MHSA: q, k, v from one 1×1 conv, relative logits, no output
        # projection (the 1×1 expand follows).
        self.mhsa = MultiHeadSelfAttention2d(
            mid, num_heads, pos="relative", size=self.size, proj=False
        )
        self.pool: nn.Module = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.post = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU())
        self.expand = nn.Sequential(
            nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.zero_init_residual = check_bool(
            "BoTBlock", "zero_init_residual", zero_init_residual
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan-out) initialisation for the convolutions, as in the ResNet;
        optionally a zero last γ."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if self.zero_init_residual:
            nn.init.zeros_(self.expand[1].weight)

    def _check(self, x: torch.Tensor) -> None:
        check_grid_input(x, self.in_channels, self.size, "BoTBlock", like=self)

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
    gate_init: GateInit = "default",
) -> ResNet:
    """The chapter-1 :class:`~nlbook.cnn.ResNet` with hybrid blocks, built through its
    ``block_factory`` hook.

    * ``"resnet"`` — the baseline (plain :class:`~nlbook.cnn.BasicBlock`);
    * ``"se"`` / ``"cbam"`` — every BasicBlock gets a :class:`SqueezeExcitation` /
      :class:`CBAM` on its
      residual branch, before the addition (the placement of both papers);
    * ``"botnet"`` — every block of ``botnet_stages`` (default: the last stage, as
      BoTNet replaces c5) is a
      :class:`BoTBlock`; ``image_size`` fixes the feature-map sizes its relative logits
      are learned for.

    Args:
        width: if given, stage widths are ``(w, 2w, 4w, 8w)`` (overrides ``widths``).
        reduction, spatial_kernel: SE/CBAM settings. num_heads: BoT heads (4, as in
        BoTNet).
        bot_expansion: C_mid = C_out // bot_expansion in each BoT block. 1 by default:
        this ResNet's BasicBlocks
            have no bottleneck, and with widths (64, ..., 512) a BoT block then attends
            over 512 channels with
            4 heads of 128 — exactly BoTNet-50's c5 MHSA (2048 // 4 = 512 channels).
        zero_init_residual: every residual branch (BasicBlock and BoTBlock) starts as
        zero. Off by default, as in
            :class:`~nlbook.cnn.ResNet`, so that a hybrid and the baseline differ only
            in their blocks: with it on
            and the baseline's off, a short run measures the initialisation, not the
            gate (see chapter 5).
        gate_init: how SE/CBAM gates start: ``"default"`` (near 1/2) or ``"open"``
        (near 1; see
            :class:`SqueezeExcitation` and :class:`CBAM`). Only for ``kind`` ``"se"``
            or ``"cbam"``.
    """
    if kind not in HYBRID_KINDS:
        raise ValueError(
            f"hybrid_resnet: kind must be one of {HYBRID_KINDS}, got {kind!r}"
        )
    check_choice("hybrid_resnet", "gate_init", gate_init, GATE_INITS)
    if gate_init != "default" and kind not in ("se", "cbam"):
        raise ValueError(
            f"hybrid_resnet: gate_init={gate_init!r} needs kind 'se' or 'cbam' (gated "
            f"blocks), got {kind!r}"
        )
    if width is not None:
        check_positive_int("hybrid_resnet", width=width)
        widths = (width, 2 * width, 4 * width, 8 * width)
    widths = check_ints("hybrid_resnet", "widths", widths, what="channel counts")
    depths = check_ints("hybrid_resnet", "depths", depths, what="block counts")
    check_positive_int("hybrid_resnet", image_size=image_size)
    image_size = int(image_size)
    check_bool("hybrid_resnet", "zero_init_residual", zero_init_residual)
    num_stages = len(widths)
    bot = (
        check_indices("hybrid_resnet", "botnet_stages", botnet_stages, num_stages)
        if botnet_stages is not None
        else (num_stages - 1,)
    )
    if kind == "botnet":
        if image_size % 2 ** (num_stages - 1):
            raise ValueError(
                f"hybrid_resnet: image_size {image_size} must be divisible by "
                f"2**{num_stages - 1} "
                f"for {num_stages} stages"
            )

    def factory(
        stage: int, index: int, in_ch: int, out_ch: int, stride: int
    ) -> nn.Module:
        if kind == "se":
            return BasicBlock(
                in_ch,
                out_ch,
                stride,
                attention=SqueezeExcitation(out_ch, reduction, gate_init=gate_init),
            )
        if kind == "cbam":
            gate = CBAM(
                out_ch, reduction, spatial_kernel=spatial_kernel, gate_init=gate_init
            )
            return BasicBlock(in_ch, out_ch, stride, attention=gate)
        if kind == "botnet" and stage in bot:
            # The block's input map: the stem keeps image_size, each stage > 0 halves
            # it in its first block.
            in_size = image_size // 2 ** max(stage - (1 if stride == 2 else 0), 0)
            return BoTBlock(
                in_ch,
                out_ch,
                in_size,
                stride,
                num_heads,
                bot_expansion,
                zero_init_residual=zero_init_residual,
            )
        return BasicBlock(in_ch, out_ch, stride)

    return ResNet(
        num_classes,
        in_channels,
        widths,
        depths,
        block_factory=factory,
        zero_init_residual=zero_init_residual,
    )


# --------------------------------------------------------------------------------------------------------------
# Looking inside: CBAM spatial gates and attention weights of a trained network
# --------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``images`` and return, per hybrid module (by its qualified
    name), what it attends with.

    * :class:`CBAM` → its spatial gate M_s, (B, 1, H, W);
    * :class:`BoTBlock` / :class:`TransformerBlock2d` → attention weights, (B, heads,
      N, N).

    Each module's input is captured with a forward pre-hook, then the module's own
    ``gates`` /
    ``attention_weights`` method recomputes the map — the same code path as its forward.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"attention_maps expects an nn.Module, got {type(model).__name__}"
        )
    # CBAM has a spatial gate; every attention block (BoTBlock here, CoAtNet's
    # TransformerBlock2d) exposes
    # ``attention_weights`` — duck typing keeps this module below nlbook.coatnet in the
    # layer order.
    targets = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, CBAM)
        or (n and callable(getattr(m, "attention_weights", None)))
    ]
    if not targets:
        raise ValueError(
            f"attention_maps: {type(model).__name__} has no CBAM, BoTBlock or "
            f"TransformerBlock2d module to read maps "
            "from (SE gates have no spatial map; build the model with "
            "hybrid_resnet('cbam' or 'botnet') or coatnet)"
        )
    inputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in targets:

        def hook(
            mod: nn.Module, args: tuple[torch.Tensor, ...], name: str = name
        ) -> None:
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
        maps[name] = (
            module.gates(x)[1]
            if isinstance(module, CBAM)
            else module.attention_weights(x)
        )
    return maps
