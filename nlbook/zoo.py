"""Chapter 6 — the model zoo: every strategy of the book by name, sized by a run profile, with its recipe.

The zoo only *wires* constructors that the earlier chapters define and test; it never re-implements a
model. One run profile (:class:`nlbook.runtime.Profile`) sizes all of them, so that the quick profile gives
tiny networks for CI and the full profile the real ones:

* CNNs (ResNet and the ResNets with inserted or hybrid blocks, CoAtNet): stage widths
  ``(w, 2w, 4w, 8w)`` with ``w = profile.width``, and ``profile.depth // 3`` residual blocks per stage
  (at least one) — the full profile (width 64, depth 6) gives the CIFAR ResNet-18, ``(2, 2, 2, 2)``; the
  quick profile (width 16, depth 2) a 4-block ResNet at a quarter of the width.
* ViT: ``profile.embed_dim`` wide, ``profile.depth`` blocks, 4×4 patches, heads of 64 channels (at least
  two heads) — the full profile gives the ``vit_tiny_p4_32`` preset of :mod:`nlbook.vit`.
* Swin: 2×2 patches, three stages of widths ``(C, 2C, 4C)`` with ``C = profile.embed_dim // 2`` (96 in the
  full profile, Swin-T's), 4×4 windows, heads of 32 channels, ``2 · (profile.depth // 3)`` blocks per stage
  (at least two: one regular, one shifted). The SASA ResNet has the CNNs' shape.

Every model gets the training recipe of its family (:meth:`nlbook.train.TrainConfig.from_profile`):
convolutional networks the ``"cnn"`` recipe (SGD with Nesterov momentum, warm-up then cosine decay);
attention-heavy networks (ViT, CoAtNet, Swin) the ``"transformer"`` recipe (AdamW, warm-up then cosine, label
smoothing, gradient clipping), without which a Transformer trained from scratch does not train well.
Epochs, batch size, data and augmentation are the profile's for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from nlbook.cnn import ResNet
from nlbook.coatnet import coatnet
from nlbook.hybrid import hybrid_resnet
from nlbook.local_attention import SwinTransformer, sasa_resnet
from nlbook.nonlocal_block import NonLocalResNet
from nlbook.runtime import Profile, resolve_profile
from nlbook.train import Recipe, TrainConfig
from nlbook.vit import VisionTransformer

__all__ = ["MODELS", "ModelSpec", "build_model", "model_names", "model_spec", "recipe"]


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: how the strategy fuses attention with convolution, and its recipe family."""

    name: str
    strategy: str  # "baseline", "insert", "replace" or "hybrid" — the book's three fusion strategies
    recipe: Recipe
    description: str
    citation: str  # key in book/references.bib


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "resnet", "baseline", "cnn", "CIFAR ResNet (chapter 1)", "he2016resnet"
        ),
        ModelSpec(
            "nonlocal_resnet",
            "insert",
            "cnn",
            "ResNet + embedded-Gaussian non-local blocks (chapter 3)",
            "wang2018nonlocal",
        ),
        ModelSpec(
            "vit",
            "replace",
            "transformer",
            "Vision Transformer, 4×4 patches (chapter 4)",
            "dosovitskiy2021vit",
        ),
        ModelSpec(
            "se_resnet",
            "hybrid",
            "cnn",
            "ResNet + squeeze-and-excitation gates (chapter 5)",
            "hu2018se",
        ),
        ModelSpec(
            "cbam_resnet",
            "hybrid",
            "cnn",
            "ResNet + CBAM channel and spatial gates (chapter 5)",
            "woo2018cbam",
        ),
        ModelSpec(
            "botnet",
            "hybrid",
            "cnn",
            "ResNet whose last stage uses relative self-attention (chapter 5)",
            "srinivas2021botnet",
        ),
        ModelSpec(
            "coatnet",
            "hybrid",
            "transformer",
            "CoAtNet-style C-C-T-T stages (chapter 5)",
            "dai2021coatnet",
        ),
        ModelSpec(
            "swin",
            "replace",
            "transformer",
            "Swin Transformer: shifted-window attention, patch merging (chapter 5.2)",
            "liu2021swin",
        ),
        ModelSpec(
            "sasa_resnet",
            "hybrid",
            "cnn",
            "ResNet whose last two stages use local self-attention, 3×3 windows at 32×32 (chapter 5.2)",
            "ramachandran2019sasa",
        ),
    )
}


def model_names() -> tuple[str, ...]:
    """The zoo's model names, baseline first."""
    return tuple(MODELS)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; a ``ValueError`` listing the valid names otherwise."""
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name]


def _cnn_shape(profile: Profile) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Stage widths (w, 2w, 4w, 8w) and per-stage blocks (depth // 3, at least 1)."""
    w, blocks = profile.width, max(1, profile.depth // 3)
    return (w, 2 * w, 4 * w, 8 * w), (blocks,) * 4


def _resnet(
    num_classes: int, in_channels: int, image_size: int, p: Profile
) -> nn.Module:
    widths, depths = _cnn_shape(p)
    return ResNet(num_classes, in_channels, widths, depths)


def _nonlocal_resnet(
    num_classes: int, in_channels: int, image_size: int, p: Profile
) -> nn.Module:
    widths, depths = _cnn_shape(p)
    # Defaults of chapter 3: embedded Gaussian blocks after stages 1 and 2 (the paper's res3/res4).
    return NonLocalResNet(num_classes, in_channels, widths, depths)


def _vit(num_classes: int, in_channels: int, image_size: int, p: Profile) -> nn.Module:
    heads = max(2, p.embed_dim // 64)
    if p.embed_dim % heads:
        raise ValueError(
            f"vit: profile embed_dim {p.embed_dim} must be divisible by {heads} heads"
        )
    return VisionTransformer(
        image_size=image_size,
        patch_size=4,
        in_channels=in_channels,
        num_classes=num_classes,
        embed_dim=p.embed_dim,
        depth=p.depth,
        num_heads=heads,
        mlp_ratio=4.0,
    )


def _hybrid(kind: str) -> Callable[[int, int, int, Profile], nn.Module]:
    def build(
        num_classes: int, in_channels: int, image_size: int, p: Profile
    ) -> nn.Module:
        widths, depths = _cnn_shape(p)
        return hybrid_resnet(
            kind,
            num_classes,
            in_channels,
            widths=widths,
            depths=depths,
            image_size=image_size,
        )  # type: ignore[arg-type]

    return build


def _coatnet(
    num_classes: int, in_channels: int, image_size: int, p: Profile
) -> nn.Module:
    widths, depths = _cnn_shape(p)
    return coatnet(num_classes, in_channels, image_size, widths=widths, depths=depths)


def _swin(num_classes: int, in_channels: int, image_size: int, p: Profile) -> nn.Module:
    # Stage widths (C, 2C, 4C) with C = embed_dim // 2 (the full profile's 96 is Swin-T's C), heads of 32
    # channels as in Swin, and a pair of blocks (regular + shifted windows) per depth // 3 (at least one pair).
    c = p.embed_dim // 2
    return SwinTransformer(
        num_classes,
        in_channels,
        image_size,
        patch_size=2,
        widths=(c, 2 * c, 4 * c),
        depths=(2 * max(1, p.depth // 3),) * 3,
        head_dim=min(32, c),
        window_size=4,
    )


def _sasa_resnet(
    num_classes: int, in_channels: int, image_size: int, p: Profile
) -> nn.Module:
    widths, depths = _cnn_shape(p)
    # At 32×32 images the attention stages see 8×8 and 4×4 maps: the paper's 7×7 window (for 224×224 images)
    # would cover nearly the whole map — global attention at 5× the unfold cost of 3×3. A 3×3 window keeps the
    # attention as local as the convolution it replaces; larger images get the paper's 7×7.
    kernel_size = 3 if image_size <= 64 else 7
    return sasa_resnet(
        num_classes, in_channels, widths, depths, kernel_size=kernel_size
    )


_BUILDERS: dict[str, Callable[[int, int, int, Profile], nn.Module]] = {
    "resnet": _resnet,
    "nonlocal_resnet": _nonlocal_resnet,
    "vit": _vit,
    "se_resnet": _hybrid("se"),
    "cbam_resnet": _hybrid("cbam"),
    "botnet": _hybrid("botnet"),
    "coatnet": _coatnet,
    "swin": _swin,
    "sasa_resnet": _sasa_resnet,
}


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    profile: Profile | str | None = None,
) -> nn.Module:
    """Build the zoo model ``name`` for a task, sized by ``profile`` (default:
    ``$NLBOOK_PROFILE`` / device).

    Raises ``ValueError`` listing the valid names for an unknown ``name``.
    """
    model_spec(name)
    for arg, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"build_model: {arg} must be a positive int, got {value!r}"
            )
    return _BUILDERS[name](
        num_classes, in_channels, image_size, resolve_profile(profile)
    )


def recipe(name: str, profile: Profile | str | None = None, **overrides) -> TrainConfig:
    """The training configuration of ``name`` under ``profile``: its family's recipe,
    the profile's budget.

    Keyword arguments override fields of the :class:`~nlbook.train.TrainConfig`
    (``seed``, ``epochs``, ...).
    """
    spec = model_spec(name)
    return TrainConfig.from_profile(resolve_profile(profile), spec.recipe, **overrides)
