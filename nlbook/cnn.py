"""Chapter 1 — CNN basics: convolution arithmetic, receptive fields and a ResNet baseline.

Everything the CNN chapter shows is defined here: the explicit sliding-window convolution
(checked against :func:`torch.nn.functional.conv2d`), the output-size formula, receptive-field
arithmetic and :class:`ResNet`, the CIFAR-style baseline every later chapter builds on.

:class:`ResNet` has two extension points so that the fusion chapters never copy it:

* ``block_factory(stage, index, in_channels, out_channels, stride)`` returns the residual block
  at that position (chapter 5 swaps in SE/CBAM/BoTNet blocks);
* ``insert_after(stage, index, channels)`` may return a module placed *after* that block
  (chapter 3 inserts Non-local blocks, as the paper does after res3/res4 blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nlbook.checks import (
    check_bool,
    check_image_batch,
    check_int,
    check_like_model,
    is_int,
)

__all__ = [
    "BasicBlock",
    "BlockFactory",
    "InsertFactory",
    "ResNet",
    "ReceptiveField",
    "conv2d_sliding",
    "conv_output_size",
    "receptive_field",
]

BlockFactory = Callable[[int, int, int, int, int], nn.Module]
"""``(stage, index, in_channels, out_channels, stride) -> residual block``."""
InsertFactory = Callable[[int, int, int], "nn.Module | None"]
"""``(stage, index, channels) -> module inserted after that block, or None``."""


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Spatial output size of a convolution or pooling layer along one axis.

    ``floor((size + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1`` — the
    formula
    PyTorch documents for :class:`torch.nn.Conv2d`.
    """
    for name, value, low in (
        ("size", size, 1),
        ("kernel_size", kernel_size, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
    ):
        if not is_int(value) or value < low:
            raise ValueError(
                f"conv_output_size: {name} must be an int >= {low}, got {value!r}"
            )
    size, kernel_size, stride, padding, dilation = map(
        int, (size, kernel_size, stride, padding, dilation)
    )
    effective = dilation * (kernel_size - 1) + 1
    if size + 2 * padding < effective:
        raise ValueError(
            f"conv_output_size: kernel of effective size {effective} does not fit an "
            f"input of size {size} "
            f"with padding {padding}"
        )
    return (size + 2 * padding - effective) // stride + 1


def conv2d_sliding(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """Convolution written as what it is: a dot product of the kernel with every window.

    Slow and for teaching only; equals ``F.conv2d(x, weight, bias, stride, padding)``.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        got = (
            tuple(weight.shape)
            if isinstance(weight, torch.Tensor)
            else type(weight).__name__
        )
        raise ValueError(
            f"conv2d_sliding: weight must be a 4-D tensor (out_channels, in_channels, "
            f"kh, kw), got {got}"
        )
    check_image_batch(x, weight.shape[1], "conv2d_sliding")
    _check_kernel(x, weight, bias, "conv2d_sliding")
    stride = check_int("conv2d_sliding", "stride", stride, low=1)
    padding = check_int("conv2d_sliding", "padding", padding, low=0)
    out_c, in_c, kh, kw = weight.shape
    if x.shape[-2] + 2 * padding < kh or x.shape[-1] + 2 * padding < kw:
        raise ValueError(
            f"conv2d_sliding: a {kh}x{kw} kernel does not fit a "
            f"{x.shape[-2]}x{x.shape[-1]} input "
            f"with padding {padding}"
        )
    x = F.pad(x, (padding, padding, padding, padding))
    b, _, h, w = x.shape
    oh = (h - kh) // stride + 1
    ow = (w - kw) // stride + 1
    out = x.new_zeros(b, out_c, oh, ow)
    for i in range(oh):
        for j in range(ow):
            window = x[
                :, :, i * stride : i * stride + kh, j * stride : j * stride + kw
            ]  # (B, C, kh, kw)
            # one dot product per output channel: sum over (C, kh, kw)
            out[:, :, i, j] = torch.einsum("bchw,ochw->bo", window, weight)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _check_kernel(
    x: torch.Tensor, weight: torch.Tensor, bias: object, where: str
) -> None:
    """A floating kernel of the batch's dtype and device, and a bias of one value per output channel (an int or
    float64 kernel, or a bias of the wrong length, would fail inside einsum or broadcast silently)."""
    if not weight.is_floating_point():
        raise TypeError(
            f"{where}: weight must be a floating-point kernel, got {weight.dtype}"
        )
    check_like_model(x, weight, where)
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (weight.shape[0],):
        got = (
            tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        )
        raise ValueError(
            f"{where}: bias must be a ({weight.shape[0]},) tensor, one value per output channel, or None, "
            f"got {got}"
        )
    if bias.dtype != weight.dtype or bias.device != weight.device:
        raise TypeError(
            f"{where}: bias must have the weight's dtype and device ({weight.dtype}, {weight.device}), "
            f"got {bias.dtype} on {bias.device}"
        )


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field after a layer: its size ``r`` (pixels), cumulative stride ``jump``."""

    name: str
    size: int
    jump: int


def receptive_field(layers: Sequence[tuple[str, int, int]]) -> list[ReceptiveField]:
    """Receptive field after each layer of a chain of ``(name, kernel_size, stride)``
    layers.

    Uses the recurrence r_l = r_{l-1} + (k_l - 1) * j_{l-1}, j_l = j_{l-1} * s_l with
    r_0 = j_0 = 1.
    """
    r, j = 1, 1
    out = []
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(
            f"receptive_field expects a sequence of (name, kernel_size, stride), got "
            f"{type(layers).__name__}"
        )
    for i, layer in enumerate(layers):
        if not isinstance(layer, tuple | list) or len(layer) != 3:
            raise ValueError(
                f"receptive_field: layer {i} must be a (name, kernel_size, stride) "
                f"triple, got {layer!r}"
            )
        name, k, s = layer
        if not (is_int(k) and is_int(s)):
            raise ValueError(
                f"receptive_field: layer {name!r} needs int kernel_size and stride, "
                f"got {k!r}, {s!r}"
            )
        if k < 1 or s < 1:
            raise ValueError(
                f"receptive_field: layer {name!r} needs kernel_size >= 1 and stride "
                f">= 1, got {k}, {s}"
            )
        r = r + (int(k) - 1) * j
        j = j * int(s)
        out.append(ReceptiveField(name, r, j))
    return out


class BasicBlock(nn.Module):
    """The two-3×3-convolution residual block of He et al. (2016).

    ``attention`` (optional) is applied to the residual branch before the addition — the place
    SE and CBAM put their gates.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        attention: nn.Module | None = None,
    ):
        super().__init__()
        if not all(is_int(v) and v >= 1 for v in (in_channels, out_channels, stride)):
            raise ValueError(
                f"BasicBlock: in_channels, out_channels and stride must be ints >= 1, got {in_channels!r}, "
                f"{out_channels!r}, {stride!r}"
            )
        if attention is not None and not isinstance(attention, nn.Module):
            raise TypeError(
                f"BasicBlock: attention must be an nn.Module (e.g. SqueezeExcitation(C)) or None, "
                f"got {type(attention).__name__}"
            )
        in_channels, out_channels, stride = (
            int(in_channels),
            int(out_channels),
            int(stride),
        )
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.attention = attention if attention is not None else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.reset_parameters()

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """He-normal (fan-out) convolutions, unit BatchNorms; optionally a zero last
        BatchNorm."""
        for m in (self.conv1, self.conv2, *self.shortcut.modules()):
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in (self.bn1, self.bn2, *self.shortcut.modules()):
            if isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
        if zero_init_residual:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, "BasicBlock", like=self)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


def _basic_block(
    stage: int, index: int, in_channels: int, out_channels: int, stride: int
) -> nn.Module:
    return BasicBlock(in_channels, out_channels, stride)


class ResNet(nn.Module):
    """A ResNet for small (e.g. 32×32) images: 3×3 stem, stages of residual blocks, global pooling.

    Args:
        num_classes: output logits.
        in_channels: image channels (3 for RGB).
        widths: channels of each stage; stage ``s > 0`` halves the resolution.
        depths: residual blocks per stage (``(2, 2, 2, 2)`` with widths ``(64, 128, 256, 512)`` is
            the CIFAR ResNet-18).
        block_factory: builds the block at ``(stage, index, in, out, stride)``; default :class:`BasicBlock`.
        insert_after: optional ``(stage, index, channels) -> module`` placed after a block.
        zero_init_residual: start each residual branch's last BatchNorm at zero so every block
            begins as the identity (Goyal et al., 2017). Off by default: it helps long large-batch runs,
            but in the book's short quick-profile runs it slows learning a lot (chapter 5 measures it).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        block_factory: BlockFactory | None = None,
        insert_after: InsertFactory | None = None,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        for name, value in (("widths", widths), ("depths", depths)):
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise TypeError(
                    f"ResNet: {name} must be a tuple of ints, one per stage (e.g. (64, 128, 256, 512)), "
                    f"got {value!r}"
                )
        for name, value in (
            ("block_factory", block_factory),
            ("insert_after", insert_after),
        ):
            if value is not None and not callable(value):
                raise TypeError(
                    f"ResNet: {name} must be a function (see its type alias) or None, got {type(value).__name__}"
                )
        check_bool("ResNet", "zero_init_residual", zero_init_residual)
        widths, depths = tuple(widths), tuple(depths)
        if len(widths) == 0 or len(widths) != len(depths):
            raise ValueError(
                f"ResNet: widths and depths need the same non-zero length, got {widths} and {depths}"
            )
        if any(not is_int(v) or v < 1 for v in (*widths, *depths)):
            raise ValueError(
                f"ResNet: widths and depths must be positive ints, got {widths} and {depths}"
            )
        if any(not is_int(v) or v < 1 for v in (num_classes, in_channels)):
            raise ValueError(
                f"ResNet: num_classes and in_channels must be >= 1 (ints), got {num_classes}, {in_channels}"
            )
        widths, depths = tuple(map(int, widths)), tuple(map(int, depths))
        num_classes, in_channels = int(num_classes), int(in_channels)
        self.in_channels = in_channels
        self.widths, self.depths = widths, depths
        block_factory = block_factory or _basic_block
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        channels = widths[0]
        for s, (width, depth) in enumerate(zip(widths, depths)):
            layers: list[nn.Module] = []
            for i in range(depth):
                stride = 2 if (s > 0 and i == 0) else 1
                layers.append(block_factory(s, i, channels, width, stride))
                channels = width
                extra = (
                    insert_after(s, i, channels) if insert_after is not None else None
                )
                if extra is not None:
                    layers.append(extra)
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.num_features = channels
        self.head = nn.Linear(channels, num_classes)
        self.zero_init_residual = zero_init_residual
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan-out) initialisation of the stem and of every BasicBlock (optionally zero last γ).

        Only the layers this class builds itself (stem, BasicBlocks, head) are initialised here:
        inserted or factory-built modules (a Non-local block's zero BatchNorm, say) keep their own.
        """
        zero_init_residual = self.zero_init_residual
        for m in self.stem.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, BasicBlock):
                m.reset_parameters(zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map, (B, widths[-1], H / 2**(len(widths)-1),
        ...)."""
        check_image_batch(x, self.in_channels, type(self).__name__, like=self)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=(2, 3)))

    def receptive_field(self) -> int:
        """Theoretical receptive field (pixels) of one output position of the last stage.

        Counts the 3×3 convolutions along the main path; inserted modules that mix all positions
        (attention) make the effective receptive field the whole image, which this does not count.
        """
        layers = [("stem", 3, 1)]
        for s, depth in enumerate(self.depths):
            for i in range(depth):
                stride = 2 if (s > 0 and i == 0) else 1
                layers += [(f"s{s}b{i}c1", 3, stride), (f"s{s}b{i}c2", 3, 1)]
        return receptive_field(layers)[-1].size
