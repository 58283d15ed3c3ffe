"""Chapter 4 — moving weights between torchvision's ``VisionTransformer`` and ours.

Our :class:`~nlbook.vit.VisionTransformer` mirrors :class:`torchvision.models.VisionTransformer` one-to-one, so
a state dict moves across by renaming keys: :func:`load_torchvision_state_dict` / :func:`to_torchvision_state_dict`.
The tests check that both models give the same logits with copied weights (the tutorial model *is* the reference
model), and chapter 4's fine-tuning section starts from torchvision's ImageNet weights through
:func:`from_torchvision`. No chapter shows this plumbing; it lives apart from the model so that
:mod:`nlbook.vit` stays the model a reader holds in their head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nlbook.vit import VisionTransformer

__all__ = [
    "from_torchvision",
    "load_torchvision_state_dict",
    "to_torchvision_state_dict",
    "torchvision_kwargs",
]

# ----------------------------------------------------------------------------------------------------------
# torchvision interoperability
# ----------------------------------------------------------------------------------------------------------

# (ours, torchvision) names of the parameters outside the encoder blocks.
_TV_GLOBAL = (
    ("patch_embed.proj.weight", "conv_proj.weight"),
    ("patch_embed.proj.bias", "conv_proj.bias"),
    ("cls_token", "class_token"),
    ("pos_embed", "encoder.pos_embedding"),
    ("norm.weight", "encoder.ln.weight"),
    ("norm.bias", "encoder.ln.bias"),
    ("head.weight", "heads.head.weight"),
    ("head.bias", "heads.head.bias"),
)
# (ours, torchvision) names inside block i. Our fused qkv Linear has torchvision's in_proj layout
# (rows: q, then k, then v), so these are plain renames, no reshuffling.
_TV_BLOCK = (
    ("norm1.weight", "ln_1.weight"),
    ("norm1.bias", "ln_1.bias"),
    ("attn.qkv.weight", "self_attention.in_proj_weight"),
    ("attn.qkv.bias", "self_attention.in_proj_bias"),
    ("attn.proj.weight", "self_attention.out_proj.weight"),
    ("attn.proj.bias", "self_attention.out_proj.bias"),
    ("norm2.weight", "ln_2.weight"),
    ("norm2.bias", "ln_2.bias"),
    ("mlp.fc1.weight", "mlp.0.weight"),
    ("mlp.fc1.bias", "mlp.0.bias"),
    ("mlp.fc2.weight", "mlp.3.weight"),
    ("mlp.fc2.bias", "mlp.3.bias"),
)


def _torchvision_name_map(depth: int) -> list[tuple[str, str]]:
    pairs = list(_TV_GLOBAL)
    for i in range(depth):
        pairs += [
            (f"blocks.{i}.{a}", f"encoder.layers.encoder_layer_{i}.{b}")
            for a, b in _TV_BLOCK
        ]
    return pairs


def _check_torchvision_compatible(model: VisionTransformer, where: str) -> None:
    if not isinstance(model, VisionTransformer):
        raise TypeError(
            f"{where} expects an nlbook.vit.VisionTransformer, got {type(model).__name__}"
        )
    if model.pool != "cls":
        raise ValueError(
            f"{where}: torchvision's VisionTransformer has a class token; build ours with pool='cls'"
        )
    if model.blocks[0].attn.qkv.bias is None:
        raise ValueError(
            f"{where}: torchvision's attention has q/k/v biases; build ours with qkv_bias=True"
        )


def to_torchvision_state_dict(model: VisionTransformer) -> dict[str, torch.Tensor]:
    """Our weights under torchvision's ``VisionTransformer`` names (load with ``load_state_dict(strict=True)``)."""
    _check_torchvision_compatible(model, "to_torchvision_state_dict")
    ours = model.state_dict()
    return {tv: ours[name] for name, tv in _torchvision_name_map(model.depth)}


def load_torchvision_state_dict(
    model: VisionTransformer, state_dict: Mapping[str, torch.Tensor]
) -> None:
    """Copy a torchvision ``VisionTransformer`` state dict into ``model`` (in place; every tensor must fit).

    Raises ``ValueError`` naming missing/unexpected keys or mismatched shapes (e.g. a different depth, or a
    torchvision model with a ``representation_size`` pre-logits layer, which ours does not have).
    """
    _check_torchvision_compatible(model, "load_torchvision_state_dict")
    if not isinstance(
        state_dict, Mapping
    ):  # e.g. a file name: "missing keys" would hide what went wrong
        raise TypeError(
            "load_torchvision_state_dict: state_dict must be a dict of tensors (tv_model.state_dict() or "
            f"torch.load(path)), got {type(state_dict).__name__}"
        )
    pairs = _torchvision_name_map(model.depth)
    expected = {tv for _, tv in pairs}
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(
            "load_torchvision_state_dict: the state dict does not match this model's configuration; "
            f"missing keys {missing[:5]}{'…' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
    ours = model.state_dict()
    converted = {}
    for name, tv in pairs:
        if tuple(state_dict[tv].shape) != tuple(ours[name].shape):
            raise ValueError(
                f"load_torchvision_state_dict: {tv} has shape {tuple(state_dict[tv].shape)} but our {name} "
                f"has shape {tuple(ours[name].shape)}; build ours with the same image/patch size, width and depth"
            )
        converted[name] = state_dict[tv]
    model.load_state_dict(converted, strict=True)


def torchvision_kwargs(model: VisionTransformer) -> dict[str, Any]:
    """Constructor arguments of the ``torchvision.models.VisionTransformer`` with the same shape as ``model``."""
    _check_torchvision_compatible(model, "torchvision_kwargs")
    if model.in_channels != 3:
        raise ValueError(
            "torchvision_kwargs: torchvision's VisionTransformer takes 3-channel images only"
        )
    return dict(
        image_size=model.image_size,
        patch_size=model.patch_size,
        num_layers=model.depth,
        num_heads=model.num_heads,
        hidden_dim=model.embed_dim,
        mlp_dim=model.blocks[0].mlp.fc1.out_features,
        num_classes=model.num_classes,
    )


def from_torchvision(tv_model: nn.Module, **kwargs: Any) -> VisionTransformer:
    """Build our :class:`VisionTransformer` with the shape of a torchvision one and copy its weights.

    ``kwargs`` (e.g. ``impl="explicit"``) go to our constructor; dropout rates are taken from ``tv_model``.
    The result has ``tv_model``'s dtype and device — a float64 or CUDA source gives a float64 or CUDA copy, not
    one in the default dtype on the CPU.
    """
    if not isinstance(tv_model, nn.Module):
        raise TypeError(
            f"from_torchvision: tv_model must be a torchvision.models.VisionTransformer, got {type(tv_model).__name__}"
        )
    for attr in (
        "image_size",
        "patch_size",
        "hidden_dim",
        "mlp_dim",
        "num_classes",
        "encoder",
    ):
        if not hasattr(tv_model, attr):
            raise TypeError(
                f"from_torchvision expects a torchvision.models.VisionTransformer, got {type(tv_model)}"
            )
    # The first floating parameter stands for the whole source model (torchvision builds it in one dtype, on one
    # device); build ours on that device directly (no detour through CPU memory for a large CUDA model).
    ref = next((p for p in tv_model.parameters() if p.is_floating_point()), None)
    if ref is None:
        raise TypeError(
            "from_torchvision: tv_model has no floating-point parameters; expected a "
            "torchvision.models.VisionTransformer"
        )
    with torch.device(ref.device):
        model = _build_like_torchvision(tv_model, kwargs)
    model.to(dtype=ref.dtype)
    load_torchvision_state_dict(model, tv_model.state_dict())
    return model


def _build_like_torchvision(
    tv_model: nn.Module, kwargs: dict[str, Any]
) -> VisionTransformer:
    return VisionTransformer(
        image_size=tv_model.image_size,
        patch_size=tv_model.patch_size,
        num_classes=tv_model.num_classes,
        embed_dim=tv_model.hidden_dim,
        depth=len(tv_model.encoder.layers),
        num_heads=tv_model.encoder.layers[0].num_heads,
        mlp_dim=tv_model.mlp_dim,
        dropout=tv_model.dropout,
        attn_dropout=tv_model.attention_dropout,
        **kwargs,
    )
