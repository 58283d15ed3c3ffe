"""Bad input, book-wide: every public constructor and function of nlbook, the bad inputs tried, the error each gives.

Each row of ``CASES`` is ``"module.Name/what is wrong": Case(call, exception type, message fragment)``. A row
passes when the call raises that type, the message matches the fragment (a regex naming what was expected), and
the exception comes from a ``raise`` statement inside ``nlbook/`` -- i.e. nlbook checked the input itself instead
of letting it surface as an opaque shape or type error from deep inside torch, numpy or the standard library.

Rows marked ``opaque(...)`` are known gaps: the call fails, but not with a clear nlbook error. They are strict
xfails, so fixing the function makes the row fail until the mark is removed.

``test_every_public_name_has_a_row`` keeps the table complete: a new public function or class needs a row (or an
entry in ``NO_BAD_INPUT`` saying why it has none).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nlbook"
MODULES = [
    "cnn",
    "attention",
    "runtime",
    "data",
    "train",
    "nonlocal_block",
    "vit",
    "hybrid",
    "longrange",
    "zoo",
    "bench",
    "viz",
    "distributed",
]
NAN = math.nan
MEAN3 = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Case:
    """``call()`` must raise ``exc`` with a message matching ``match``.

    ``origin`` is where the ``raise`` must be: ``"nlbook"`` (its own check), or the name of a dependency whose own
    message already names the constraint (e.g. numpy's "Seed must be between 0 and 2**32 - 1").
    """

    call: Callable[[], object]
    exc: type[BaseException]
    match: str
    origin: str = "nlbook"


def img(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A small random batch (values do not matter for input validation)."""
    return torch.rand(*shape).to(dtype)


def lazy(module: str) -> object:
    return importlib.import_module(f"nlbook.{module}")


cnn = lazy("cnn")
att = lazy("attention")
rt = lazy("runtime")
data = lazy("data")
train = lazy("train")
nl = lazy("nonlocal_block")
vit = lazy("vit")
hy = lazy("hybrid")
lr = lazy("longrange")
zoo = lazy("zoo")
bench = lazy("bench")
viz = lazy("viz")
dist = lazy("distributed")


def tiny_resnet(**kw: object) -> nn.Module:
    return cnn.ResNet(widths=(4, 8), depths=(1, 1), **kw)


def tiny_vit(**kw: object) -> nn.Module:
    return vit.VisionTransformer(**{"image_size": 8, "patch_size": 4, "embed_dim": 8, "depth": 1, "num_heads": 2, **kw})


def under_torchrun(call: Callable[[], object]) -> object:
    """Run ``call`` with the environment torchrun sets for rank 0 of 2. No process group starts: the rows using
    this fail before that, and MASTER_ADDR is unset so nothing could connect."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
            mp.setenv(key, value)
        mp.delenv("MASTER_ADDR", raising=False)
        return call()


def digits() -> object:
    return data.load_dataset("digits", device="cpu")


CASES: dict[str, Case | tuple[Case, pytest.MarkDecorator]] = {
    # ---- nlbook.cnn ----------------------------------------------------------------------------------------
    "cnn.check_image_batch/not-a-tensor": Case(
        lambda: cnn.check_image_batch([1, 2], 3, "f"), TypeError, r"torch\.Tensor"
    ),
    "cnn.check_image_batch/rank-3": Case(lambda: cnn.check_image_batch(img(3, 8, 8), 3, "f"), ValueError, r"4-D"),
    "cnn.check_image_batch/channels": Case(
        lambda: cnn.check_image_batch(img(1, 1, 8, 8), 3, "f"), ValueError, r"3 input channels"
    ),
    "cnn.check_image_batch/integer-dtype": Case(
        lambda: cnn.check_image_batch(img(1, 3, 8, 8, dtype=torch.uint8), 3, "f"), TypeError, r"floating-point"
    ),
    "cnn.conv_output_size/zero-kernel": Case(
        lambda: cnn.conv_output_size(8, 0), ValueError, r"kernel_size must be an int >= 1"
    ),
    "cnn.conv_output_size/negative-padding": Case(
        lambda: cnn.conv_output_size(8, 3, padding=-1), ValueError, r"padding must be an int >= 0"
    ),
    "cnn.conv_output_size/kernel-larger-than-input": Case(
        lambda: cnn.conv_output_size(2, 5), ValueError, r"does not fit"
    ),
    "cnn.conv2d_sliding/rank-3": Case(lambda: cnn.conv2d_sliding(img(3, 5, 5), img(2, 3, 3, 3)), ValueError, r"4-D"),
    "cnn.conv2d_sliding/channels": Case(
        lambda: cnn.conv2d_sliding(img(1, 3, 5, 5), img(2, 4, 3, 3)), ValueError, r"4 input channels"
    ),
    "cnn.receptive_field/zero-stride": Case(lambda: cnn.receptive_field([("conv", 3, 0)]), ValueError, r"stride >= 1"),
    "cnn.BasicBlock/zero-channels": Case(lambda: cnn.BasicBlock(0, 4), ValueError, r"channels"),
    "cnn.BasicBlock/forward-channels": Case(
        lambda: cnn.BasicBlock(4, 4)(img(1, 3, 8, 8)), ValueError, r"4 input channels"
    ),
    "cnn.ResNet/length-mismatch": Case(
        lambda: cnn.ResNet(widths=(4, 8), depths=(1,)), ValueError, r"same non-zero length"
    ),
    "cnn.ResNet/zero-width": Case(lambda: cnn.ResNet(widths=(0, 8), depths=(1, 1)), ValueError, r"must be positive"),
    "cnn.ResNet/zero-classes": Case(
        lambda: tiny_resnet(num_classes=0), ValueError, r"num_classes and in_channels must be >= 1"
    ),
    "cnn.ResNet/forward-rank-3": Case(lambda: tiny_resnet()(img(3, 8, 8)), ValueError, r"4-D tensor \(B, C, H, W\)"),
    "cnn.ResNet/forward-channels": Case(lambda: tiny_resnet()(img(1, 1, 8, 8)), ValueError, r"3 input channels"),
    # ---- nlbook.attention ----------------------------------------------------------------------------------
    "attention.scaled_dot_product_attention/not-tensors": Case(
        lambda: att.scaled_dot_product_attention([1.0], [1.0], [1.0]), TypeError, r"expects torch\.Tensor q, k, v"
    ),
    "attention.scaled_dot_product_attention/rank-1": Case(
        lambda: att.scaled_dot_product_attention(img(4), img(4), img(4)), ValueError, r"equal rank >= 2"
    ),
    "attention.scaled_dot_product_attention/feature-mismatch": Case(
        lambda: att.scaled_dot_product_attention(img(5, 4), img(6, 3), img(6, 2)), ValueError, r"same feature size d"
    ),
    "attention.scaled_dot_product_attention/positions-mismatch": Case(
        lambda: att.scaled_dot_product_attention(img(5, 4), img(6, 4), img(7, 2)),
        ValueError,
        r"same number of positions",
    ),
    "attention.scaled_dot_product_attention/bias-shape": Case(
        lambda: att.scaled_dot_product_attention(img(5, 4), img(6, 4), img(6, 2), bias=img(3, 3)),
        ValueError,
        r"bias must broadcast",
    ),
    "attention.scaled_dot_product_attention/unknown-impl": Case(
        lambda: att.scaled_dot_product_attention(img(5, 4), img(6, 4), img(6, 2), impl="flash"),
        ValueError,
        r"'fused' or 'explicit'",
    ),
    "attention.scaled_dot_product_attention/dropout-1": Case(
        lambda: att.scaled_dot_product_attention(img(5, 4), img(6, 4), img(6, 2), dropout_p=1.0),
        ValueError,
        r"in \[0, 1\)",
    ),
    "attention.scaled_dot_product_attention/dropout-nan": Case(
        lambda: att.scaled_dot_product_attention(img(5, 4), img(6, 4), img(6, 2), dropout_p=NAN),
        ValueError,
        r"in \[0, 1\)",
    ),
    "attention.attention_weights/d-mismatch": Case(
        lambda: att.attention_weights(img(1, 4, 8), img(1, 5, 6)), ValueError, r"same feature size d"
    ),
    "attention.sdpa_backend/not-tensors": Case(
        lambda: att.sdpa_backend([1.0], [1.0], [1.0]), TypeError, r"torch\.Tensor"
    ),
    "attention.MultiHeadAttention/heads-not-dividing": Case(
        lambda: att.MultiHeadAttention(10, num_heads=3), ValueError, r"multiple of num_heads"
    ),
    "attention.MultiHeadAttention/zero-heads": Case(
        lambda: att.MultiHeadAttention(8, num_heads=0), ValueError, r"num_heads"
    ),
    "attention.MultiHeadAttention/unknown-impl": Case(
        lambda: att.MultiHeadAttention(8, 2, impl="flash"), ValueError, r"'fused' or 'explicit'"
    ),
    "attention.MultiHeadAttention/forward-width": Case(
        lambda: att.MultiHeadAttention(8, 2)(img(1, 5, 4)), ValueError, r"\(B, N, 8\)"
    ),
    "attention.MultiHeadAttention/forward-rank-4": Case(
        lambda: att.MultiHeadAttention(8, 2)(img(1, 8, 2, 2)), ValueError, r"\(B, N, 8\)"
    ),
    "attention.sincos_position_encoding_2d/dim-not-multiple-of-4": Case(
        lambda: att.sincos_position_encoding_2d(4, 4, 6), ValueError, r"divisible by 4"
    ),
    "attention.sincos_position_encoding_2d/zero-height": Case(
        lambda: att.sincos_position_encoding_2d(0, 4, 8), ValueError, r"positive int"
    ),
    "attention.LearnedPositionEncoding2d/zero-dim": Case(
        lambda: att.LearnedPositionEncoding2d(0, 4, 4), ValueError, r"dim must be a positive"
    ),
    "attention.LearnedPositionEncoding2d/forward-size": Case(
        lambda: att.LearnedPositionEncoding2d(8, 4, 4)(img(1, 8, 5, 5)), ValueError, r"built for 4x4 maps"
    ),
    "attention.relative_position_logits_2d/grid-mismatch": Case(
        lambda: att.relative_position_logits_2d(img(1, 2, 16, 8), img(7, 8), img(7, 8), 3, 3), ValueError, r"positions"
    ),
    "attention.relative_position_logits_2d/embedding-shape": Case(
        lambda: att.relative_position_logits_2d(img(1, 2, 16, 8), img(5, 8), img(7, 8), 4, 4),
        ValueError,
        r"rel_height \(7, 8\)",
    ),
    "attention.relative_position_logits_2d_reference/grid-mismatch": Case(
        lambda: att.relative_position_logits_2d_reference(img(1, 2, 16, 8), img(7, 8), img(7, 8), 3, 3),
        ValueError,
        r"positions",
    ),
    "attention.RelativePositionLogits2d/zero-head-dim": Case(
        lambda: att.RelativePositionLogits2d(4, 4, 0), ValueError, r"head_dim"
    ),
    "attention.RelativePositionLogits2d/zero-size": Case(
        lambda: att.RelativePositionLogits2d(0, 4, 8), ValueError, r"size"
    ),
    "attention.RelativePositionLogits2d/forward-positions": Case(
        lambda: att.RelativePositionLogits2d(4, 4, 8)(img(1, 2, 9, 8)),
        ValueError,
        r"q has 9 positions but the embeddings describe a 4x4 map",
    ),
    "attention.MultiHeadSelfAttention2d/heads-not-dividing": Case(
        lambda: att.MultiHeadSelfAttention2d(10, num_heads=3), ValueError, r"divisible by num_heads"
    ),
    "attention.MultiHeadSelfAttention2d/zero-dim": Case(
        lambda: att.MultiHeadSelfAttention2d(0), ValueError, r"positive ints"
    ),
    "attention.MultiHeadSelfAttention2d/unknown-pos": Case(
        lambda: att.MultiHeadSelfAttention2d(8, 2, pos="rotary"), ValueError, r"'sincos', 'learned' or 'relative'"
    ),
    "attention.MultiHeadSelfAttention2d/learned-without-size": Case(
        lambda: att.MultiHeadSelfAttention2d(8, 2, pos="learned"), ValueError, r"needs size=\(H, W\)"
    ),
    "attention.MultiHeadSelfAttention2d/attn-drop-nan": Case(
        lambda: att.MultiHeadSelfAttention2d(8, 2, attn_drop=NAN), ValueError, r"attn_drop must be in \[0, 1\)"
    ),
    "attention.MultiHeadSelfAttention2d/forward-rank-3": Case(
        lambda: att.MultiHeadSelfAttention2d(8, 2)(img(8, 4, 4)), ValueError, r"4-D tensor"
    ),
    "attention.MultiHeadSelfAttention2d/forward-channels": Case(
        lambda: att.MultiHeadSelfAttention2d(8, 2)(img(1, 4, 4, 4)), ValueError, r"8 input channels"
    ),
    "attention.MultiHeadSelfAttention2d/forward-size": Case(
        lambda: att.MultiHeadSelfAttention2d(8, 2, pos="relative", size=(4, 4))(img(1, 8, 5, 5)),
        ValueError,
        r"built for 4x4",
    ),
    # ---- nlbook.runtime ------------------------------------------------------------------------------------
    "runtime.get_profile/unknown-name": Case(
        lambda: rt.get_profile("fast"), ValueError, r"expected one of \['full', 'quick'\]"
    ),
    "runtime.pick_device/unknown-device": Case(lambda: rt.pick_device("tpu0"), ValueError, r"device"),
    "runtime.pick_device/cuda-without-cuda": (
        Case(lambda: rt.pick_device("cuda"), RuntimeError, r"CUDA is not available"),
        pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
    ),
    "runtime.device_name/not-a-device": Case(lambda: rt.device_name(3), TypeError, r"torch\.device"),
    "runtime.seed_everything/negative": Case(
        lambda: rt.seed_everything(-1), ValueError, r"Seed must be between 0 and 2\*\*32 - 1", origin="numpy"
    ),
    "runtime.setup/unknown-profile": Case(
        lambda: rt.setup(profile="fast", device="cpu"), ValueError, r"unknown profile 'fast'"
    ),
    "runtime.setup/unknown-dataset": Case(
        lambda: rt.setup(dataset="imagenet", device="cpu"), ValueError, r"unknown dataset 'imagenet'"
    ),
    # ---- nlbook.data ---------------------------------------------------------------------------------------
    "data.resolve_dataset_name/unknown": Case(
        lambda: data.resolve_dataset_name("imagenet"), ValueError, r"expected one of"
    ),
    "data.load_dataset/unknown": Case(lambda: data.load_dataset("imagenet"), ValueError, r"unknown dataset 'imagenet'"),
    "data.data_root/not-a-path": Case(
        lambda: data.data_root(3), TypeError, r"expected str, bytes or os\.PathLike object", origin="pathlib"
    ),
    "data.random_crop_flip/rank-3": Case(
        lambda: data.random_crop_flip(img(3, 8, 8), 2, torch.Generator()), ValueError, r"\(N, C, H, W\)"
    ),
    "data.random_crop_flip/negative-padding": Case(
        lambda: data.random_crop_flip(img(2, 3, 8, 8), -1, torch.Generator()), ValueError, r"padding"
    ),
    "data.DeviceLoader/float-images": Case(
        lambda: data.DeviceLoader(img(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), 2, mean=(0.5,), std=(0.5,)),
        ValueError,
        r"uint8 images \(N, C, H, W\)",
    ),
    "data.DeviceLoader/labels-length": Case(
        lambda: data.DeviceLoader(
            img(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), 2, mean=(0.5,), std=(0.5,)
        ),
        ValueError,
        r"labels must have shape \(4,\)",
    ),
    "data.DeviceLoader/zero-batch": Case(
        lambda: data.DeviceLoader(
            img(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), 0, mean=(0.5,), std=(0.5,)
        ),
        ValueError,
        r"batch_size must be a positive",
    ),
    "data.DeviceLoader/mean-channels": Case(
        lambda: data.DeviceLoader(
            img(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), 2, mean=(0.5, 0.5, 0.5), std=(0.5,)
        ),
        ValueError,
        r"mean",
    ),
    "data.DeviceLoader/rank-outside-world": Case(
        lambda: data.DeviceLoader(
            img(4, 1, 8, 8, dtype=torch.uint8),
            torch.zeros(4, dtype=torch.long),
            2,
            mean=(0.5,),
            std=(0.5,),
            rank=2,
            world_size=2,
        ),
        ValueError,
        r"rank must be in \[0, 2\)",
    ),
    # ---- nlbook.train --------------------------------------------------------------------------------------
    "train.TrainConfig/zero-epochs": Case(
        lambda: train.TrainConfig(epochs=0), ValueError, r"epochs and batch_size must be >= 1"
    ),
    "train.TrainConfig/unknown-optimizer": Case(
        lambda: train.TrainConfig(optimizer="adam"), ValueError, r"'sgd' or 'adamw'"
    ),
    "train.TrainConfig/unknown-schedule": Case(
        lambda: train.TrainConfig(schedule="step"), ValueError, r"'cosine', 'onecycle' or 'constant'"
    ),
    "train.TrainConfig/nan-lr": Case(lambda: train.TrainConfig(lr=NAN), ValueError, r"lr > 0"),
    "train.TrainConfig/label-smoothing-1": Case(
        lambda: train.TrainConfig(label_smoothing=1.0), ValueError, r"label_smoothing < 1"
    ),
    "train.TrainConfig/unknown-recipe": Case(
        lambda: train.TrainConfig.from_profile(rt.get_profile("quick"), recipe="rnn"),
        ValueError,
        r"'cnn' or 'transformer'",
    ),
    "train.count_parameters/not-a-module": Case(lambda: train.count_parameters("resnet"), TypeError, r"nn\.Module"),
    "train.make_optimizer/not-a-config": Case(
        lambda: train.make_optimizer(tiny_resnet(), {"lr": 0.1}), TypeError, r"TrainConfig"
    ),
    "train.evaluate/not-a-dataset": Case(lambda: train.evaluate(tiny_resnet(), "digits"), TypeError, r"ImageDataset"),
    "train.fit/distributed-flag": Case(
        lambda: train.fit(tiny_resnet(), digits(), distributed="yes"), TypeError, r"DistInfo, True"
    ),
    "train.fit/batch-larger-than-data": Case(
        lambda: train.fit(tiny_resnet(in_channels=1), digits(), train.TrainConfig(batch_size=100_000), device="cpu"),
        ValueError,
        r"larger than the \d+ training images",
    ),
    # ---- nlbook.nonlocal_block -----------------------------------------------------------------------------
    "nonlocal_block.NonLocalBlock2d/zero-channels": Case(
        lambda: nl.NonLocalBlock2d(0), ValueError, r"in_channels must be an int >= 1"
    ),
    "nonlocal_block.NonLocalBlock2d/zero-inter": Case(
        lambda: nl.NonLocalBlock2d(8, inter_channels=0), ValueError, r"inter_channels"
    ),
    "nonlocal_block.NonLocalBlock2d/unknown-mode": Case(
        lambda: nl.NonLocalBlock2d(8, mode="softmax"), ValueError, r"mode must be one of"
    ),
    "nonlocal_block.NonLocalBlock2d/unknown-impl": Case(
        lambda: nl.NonLocalBlock2d(8, impl="flash"), ValueError, r"'fused' or 'explicit'"
    ),
    "nonlocal_block.NonLocalBlock2d/forward-rank-3": Case(
        lambda: nl.NonLocalBlock2d(8)(img(8, 4, 4)), ValueError, r"4-D tensor"
    ),
    "nonlocal_block.NonLocalBlock2d/forward-channels": Case(
        lambda: nl.NonLocalBlock2d(8)(img(1, 4, 4, 4)), ValueError, r"8 input channels"
    ),
    "nonlocal_block.NonLocalResNet/stage-out-of-range": Case(
        lambda: nl.NonLocalResNet(widths=(4, 8), depths=(1, 1), nonlocal_stages=(5,)),
        ValueError,
        r"stage indices in 0\.\.1",
    ),
    "nonlocal_block.NonLocalResNet/zero-every": Case(
        lambda: nl.NonLocalResNet(widths=(4, 8), depths=(1, 1), nonlocal_every=0),
        ValueError,
        r"nonlocal_every must be an int >= 1",
    ),
    "nonlocal_block.NonLocalResNet/unknown-mode": Case(
        lambda: nl.NonLocalResNet(widths=(4, 8), depths=(1, 1), mode="softmax"), ValueError, r"mode must be one of"
    ),
    "nonlocal_block.NonLocalResNet/insert-after": Case(
        lambda: nl.NonLocalResNet(insert_after=lambda *a: None), TypeError, r"insert_after is set by NonLocalResNet"
    ),
    "nonlocal_block.NonLocalResNet/forward-channels": Case(
        lambda: nl.NonLocalResNet(widths=(4, 8), depths=(1, 1))(img(1, 1, 8, 8)), ValueError, r"3 input channels"
    ),
    "nonlocal_block.nonlocal_attention_maps/no-block": Case(
        lambda: nl.nonlocal_attention_maps(tiny_resnet(), img(1, 3, 8, 8)), ValueError, r"contains no NonLocalBlock2d"
    ),
    # ---- nlbook.vit ----------------------------------------------------------------------------------------
    "vit.patchify/not-divisible": Case(
        lambda: vit.patchify(img(1, 3, 30, 30), 4), ValueError, r"not divisible by the patch size 4"
    ),
    "vit.patchify/rank-3": Case(lambda: vit.patchify(img(3, 32, 32), 4), ValueError, r"4-D tensor"),
    "vit.patchify/zero-patch": Case(
        lambda: vit.patchify(img(1, 3, 32, 32), 0), ValueError, r"patch_size must be a positive int"
    ),
    "vit.PatchEmbedding/not-divisible": Case(
        lambda: vit.PatchEmbedding(30, 4), ValueError, r"not divisible by patch_size 4"
    ),
    "vit.PatchEmbedding/zero-embed": Case(
        lambda: vit.PatchEmbedding(32, 4, 3, 0), ValueError, r"embed_dim must be a positive int"
    ),
    "vit.PatchEmbedding/forward-channels": Case(
        lambda: vit.PatchEmbedding(8, 4, 3, 8)(img(1, 1, 8, 8)), ValueError, r"3 input channels"
    ),
    "vit.PatchEmbedding/forward-size": Case(
        lambda: vit.PatchEmbedding(8, 4, 3, 8)(img(1, 3, 12, 12)), ValueError, r"8"
    ),
    "vit.drop_path/p-1": Case(
        lambda: vit.drop_path(img(2, 4), p=1.0, training=True), ValueError, r"probability in \[0, 1\)"
    ),
    "vit.drop_path/p-nan": Case(
        lambda: vit.drop_path(img(2, 4), p=NAN, training=True), ValueError, r"probability in \[0, 1\)"
    ),
    "vit.DropPath/negative": Case(lambda: vit.DropPath(-0.1), ValueError, r"probability in \[0, 1\)"),
    "vit.Mlp/zero-hidden": Case(lambda: vit.Mlp(8, 0), ValueError, r"hidden_dim must be a positive int"),
    "vit.EncoderBlock/heads-not-dividing": Case(lambda: vit.EncoderBlock(10, 3), ValueError, r"multiple of num_heads"),
    "vit.EncoderBlock/zero-mlp-ratio": Case(
        lambda: vit.EncoderBlock(8, 2, mlp_ratio=0), ValueError, r"mlp_ratio must be > 0"
    ),
    "vit.EncoderBlock/forward-width": Case(lambda: vit.EncoderBlock(8, 2)(img(1, 5, 4)), ValueError, r"\(B, N, 8\)"),
    "vit.VisionTransformer/heads-not-dividing": Case(
        lambda: tiny_vit(embed_dim=10, num_heads=3), ValueError, r"multiple of num_heads"
    ),
    "vit.VisionTransformer/unknown-pool": Case(
        lambda: tiny_vit(pool="max"), ValueError, r"'cls' \(class token\) or 'gap'"
    ),
    "vit.VisionTransformer/unknown-head-init": Case(
        lambda: tiny_vit(head_init="xavier"), ValueError, r"head_init must be 'normal' \(DeiT/timm\) or 'zeros'"
    ),
    "vit.VisionTransformer/patch-not-dividing": Case(
        lambda: tiny_vit(image_size=30), ValueError, r"not divisible by patch_size"
    ),
    "vit.VisionTransformer/zero-depth": Case(lambda: tiny_vit(depth=0), ValueError, r"depth must be a positive int"),
    "vit.VisionTransformer/dropout-nan": Case(lambda: tiny_vit(dropout=NAN), ValueError, r"probability in \[0, 1\)"),
    "vit.VisionTransformer/forward-channels": Case(
        lambda: tiny_vit()(img(1, 1, 8, 8)), ValueError, r"3 input channels"
    ),
    "vit.VisionTransformer/forward-rank-3": Case(lambda: tiny_vit()(img(3, 8, 8)), ValueError, r"4-D tensor"),
    "vit.interpolate_pos_embed/rank-2": Case(
        lambda: vit.interpolate_pos_embed(img(17, 8), (2, 2)), ValueError, r"\(1, N, D\)"
    ),
    "vit.interpolate_pos_embed/not-square": Case(
        lambda: vit.interpolate_pos_embed(img(1, 7, 8), (2, 2)), ValueError, r"not a square grid"
    ),
    "vit.interpolate_pos_embed/zero-grid": Case(
        lambda: vit.interpolate_pos_embed(img(1, 17, 8), (0, 4)), ValueError, r"new_grid must be"
    ),
    "vit.attention_rollout/empty": Case(lambda: vit.attention_rollout([]), ValueError, r"at least one layer"),
    "vit.attention_rollout/unknown-fusion": Case(
        lambda: vit.attention_rollout([img(1, 2, 5, 5)], head_fusion="median"), ValueError, r"'mean', 'max' or 'min'"
    ),
    "vit.attention_rollout/residual-2": Case(
        lambda: vit.attention_rollout([img(1, 2, 5, 5)], residual_weight=2.0), ValueError, r"in \[0, 1\]"
    ),
    "vit.attention_rollout/residual-nan": Case(
        lambda: vit.attention_rollout([img(1, 2, 5, 5)], residual_weight=NAN), ValueError, r"in \[0, 1\]"
    ),
    "vit.attention_rollout/rank-2": Case(
        lambda: vit.attention_rollout([img(5, 5)]), ValueError, r"\(B, heads, T, T\) or \(B, T, T\)"
    ),
    "vit.vit_preset/unknown": Case(lambda: vit.vit_preset("huge"), ValueError, r"unknown preset 'huge'"),
    "vit.to_torchvision_state_dict/not-a-vit": Case(
        lambda: vit.to_torchvision_state_dict(tiny_resnet()), TypeError, r"VisionTransformer"
    ),
    "vit.to_torchvision_state_dict/gap-pool": Case(
        lambda: vit.to_torchvision_state_dict(tiny_vit(pool="gap")), ValueError, r"pool='cls'"
    ),
    "vit.load_torchvision_state_dict/wrong-keys": Case(
        lambda: vit.load_torchvision_state_dict(tiny_vit(), {"x": torch.zeros(1)}), ValueError, r"does not match"
    ),
    "vit.torchvision_kwargs/one-channel": Case(
        lambda: vit.torchvision_kwargs(tiny_vit(in_channels=1)), ValueError, r"3-channel"
    ),
    "vit.from_torchvision/not-torchvision": Case(
        lambda: vit.from_torchvision(nn.Linear(2, 2)), TypeError, r"torchvision"
    ),
    # ---- nlbook.hybrid -------------------------------------------------------------------------------------
    "hybrid.SqueezeExcitation/zero-channels": Case(
        lambda: hy.SqueezeExcitation(0), ValueError, r"channels must be a positive int"
    ),
    "hybrid.SqueezeExcitation/forward-channels": Case(
        lambda: hy.SqueezeExcitation(8)(img(1, 4, 4, 4)), ValueError, r"8 input channels"
    ),
    "hybrid.CBAM/even-kernel": Case(lambda: hy.CBAM(8, spatial_kernel=4), ValueError, r"spatial_kernel must be odd"),
    "hybrid.CBAM/forward-rank-3": Case(lambda: hy.CBAM(8)(img(8, 4, 4)), ValueError, r"4-D tensor"),
    "hybrid.BoTBlock/stride-3": Case(lambda: hy.BoTBlock(16, 16, 4, stride=3), ValueError, r"stride must be 1 or 2"),
    "hybrid.BoTBlock/zero-size": Case(lambda: hy.BoTBlock(16, 16, 0), ValueError, r"size must be a positive int"),
    "hybrid.BoTBlock/heads-not-dividing": Case(
        lambda: hy.BoTBlock(16, 16, 4, num_heads=3), ValueError, r"positive multiple of num_heads \(3\)"
    ),
    "hybrid.BoTBlock/forward-size": Case(
        lambda: hy.BoTBlock(16, 16, 4)(img(1, 16, 5, 5)), ValueError, r"built for 4×4"
    ),
    "hybrid.BoTBlock/forward-channels": Case(
        lambda: hy.BoTBlock(16, 16, 4)(img(1, 8, 4, 4)), ValueError, r"16 input channels"
    ),
    "hybrid.LayerNorm2d/forward-channels": Case(
        lambda: hy.LayerNorm2d(8)(img(1, 4, 2, 2)), ValueError, r"8 input channels"
    ),
    "hybrid.MBConv/stride-3": Case(lambda: hy.MBConv(8, 8, stride=3), ValueError, r"stride must be 1 or 2"),
    "hybrid.MBConv/se-ratio-0": Case(
        lambda: hy.MBConv(8, 8, se_ratio=0.0), ValueError, r"se_ratio must be in \(0, 1\]"
    ),
    "hybrid.MBConv/se-ratio-nan": Case(
        lambda: hy.MBConv(8, 8, se_ratio=NAN), ValueError, r"se_ratio must be in \(0, 1\]"
    ),
    "hybrid.MBConv/forward-odd-stride-2": Case(
        lambda: hy.MBConv(8, 8, stride=2)(img(1, 8, 5, 5)), ValueError, r"even feature-map size"
    ),
    "hybrid.MBConv/forward-channels": Case(lambda: hy.MBConv(8, 8)(img(1, 4, 4, 4)), ValueError, r"8 input channels"),
    "hybrid.RelativePositionBias2d/zero-size": Case(
        lambda: hy.RelativePositionBias2d(0, 2), ValueError, r"size must be a positive int"
    ),
    "hybrid.RelativePositionBias2d/zero-heads": Case(
        lambda: hy.RelativePositionBias2d(4, 0), ValueError, r"num_heads must be a positive"
    ),
    "hybrid.TransformerBlock2d/head-dim-not-dividing": Case(
        lambda: hy.TransformerBlock2d(30, 30, 4, head_dim=32), ValueError, r"multiple of head_dim \(32\)"
    ),
    "hybrid.TransformerBlock2d/stride-2-odd": Case(
        lambda: hy.TransformerBlock2d(32, 32, 5, stride=2), ValueError, r"even feature-map size"
    ),
    "hybrid.TransformerBlock2d/forward-size": Case(
        lambda: hy.TransformerBlock2d(32, 32, 4)(img(1, 32, 5, 5)), ValueError, r"built for 4×4"
    ),
    "hybrid.CoAtNet/unknown-kind": Case(
        lambda: hy.CoAtNet(kinds="CCXT"), ValueError, r"'C' \(MBConv\) or 'T' \(Transformer\)"
    ),
    "hybrid.CoAtNet/length-mismatch": Case(lambda: hy.CoAtNet(depths=(1, 1)), ValueError, r"same non-zero length"),
    "hybrid.CoAtNet/stride-3": Case(lambda: hy.CoAtNet(strides=(2, 2, 3, 2)), ValueError, r"strides must be 1 or 2"),
    "hybrid.CoAtNet/image-not-divisible": Case(
        lambda: hy.CoAtNet(image_size=30), ValueError, r"divisible by the total stride"
    ),
    "hybrid.CoAtNet/zero-width": Case(
        lambda: hy.CoAtNet(widths=(0, 8, 16, 32)), ValueError, r"widths must be positive ints"
    ),
    "hybrid.coatnet/zero-width": Case(lambda: hy.coatnet(width=0), ValueError, r"width must be a positive int"),
    "hybrid.coatnet/forward-size": Case(
        lambda: hy.coatnet(width=8, depths=(1, 1, 1, 1))(img(1, 3, 16, 16)), ValueError, r"built for 32×32 images"
    ),
    "hybrid.hybrid_resnet/unknown-kind": Case(
        lambda: hy.hybrid_resnet("transformer"), ValueError, r"kind must be one of"
    ),
    "hybrid.hybrid_resnet/image-not-divisible": Case(
        lambda: hy.hybrid_resnet("botnet", width=4, image_size=30), ValueError, r"must be divisible by 2\*\*3"
    ),
    "hybrid.hybrid_resnet/zero-width": Case(
        lambda: hy.hybrid_resnet("se", width=0), ValueError, r"width must be a positive int"
    ),
    "hybrid.attention_maps/no-attention": Case(
        lambda: hy.attention_maps(tiny_resnet(), img(1, 3, 8, 8)), ValueError, r"no"
    ),
    # ---- nlbook.longrange ----------------------------------------------------------------------------------
    "longrange.critical_distance/zero": Case(
        lambda: lr.critical_distance(0), ValueError, r"receptive_field must be an int >= 1"
    ),
    "longrange.LongRangeTask/one-glyph": Case(
        lambda: lr.LongRangeTask(num_glyphs=1), ValueError, r"num_glyphs must be an int >= 2"
    ),
    "longrange.LongRangeTask/noise-nan": Case(
        lambda: lr.LongRangeTask(noise=NAN), ValueError, r"noise must be a fraction in \[0, 1\)"
    ),
    "longrange.LongRangeTask/distance-reversed": Case(
        lambda: lr.LongRangeTask(distance=(9, 4)), ValueError, r"low <= high"
    ),
    "longrange.LongRangeTask/distance-too-far": Case(lambda: lr.LongRangeTask(distance=100), ValueError, r"outside"),
    "longrange.LongRangeTask/glyph-too-big": Case(
        lambda: lr.LongRangeTask(image_size=6, glyph_size=3), ValueError, r"too big"
    ),
    "longrange.LongRangeTask/sample-seed-and-generator": Case(
        lambda: lr.LongRangeTask().sample(4), ValueError, r"exactly one of seed= and generator="
    ),
    "longrange.render/float-alphabet": Case(
        lambda: lr.render(
            img(2, 3, 3, 3), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), 8
        ),
        ValueError,
        r"alphabet must be uint8 \(K, C, g, g\)",
    ),
    "longrange.render/glyph-id-out-of-range": Case(
        lambda: lr.render(
            img(2, 3, 3, 3, dtype=torch.uint8),
            torch.full((1, 2), 5, dtype=torch.long),
            torch.zeros(1, 2, 2, dtype=torch.long),
            8,
        ),
        ValueError,
        r"glyph_ids must be in \[0, 2\)",
    ),
    "longrange.longrange_dataset/same-seeds": Case(
        lambda: lr.longrange_dataset(8, 8, seed=1, test_seed=1), ValueError, r"seed and test_seed must differ"
    ),
    "longrange.longrange_dataset/zero-train": Case(lambda: lr.longrange_dataset(0, 8), ValueError, r"n_train"),
    "longrange.accuracy_by_distance/distance-outside": Case(
        lambda: lr.accuracy_by_distance(
            tiny_resnet(num_classes=2), lr.LongRangeTask(image_size=16), [100], MEAN3, MEAN3, n=4
        ),
        ValueError,
        r"distance 100 is outside \[4, 13\]",
    ),
    "longrange.accuracy_by_distance/zero-n": Case(
        lambda: lr.accuracy_by_distance(
            tiny_resnet(num_classes=2), lr.LongRangeTask(image_size=16), [4], MEAN3, MEAN3, n=0
        ),
        ValueError,
        r"n must be an int >= 1",
    ),
    "longrange.accuracy_by_distance/not-a-task": Case(
        lambda: lr.accuracy_by_distance(tiny_resnet(num_classes=2), "task", [4], MEAN3, MEAN3, n=4),
        TypeError,
        r"LongRangeTask",
    ),
    "longrange.strategy_models/zero-size": Case(
        lambda: lr.strategy_models(image_size=0), ValueError, r"image_size must be an int >= 4"
    ),
    "longrange.strategy_models/size-not-multiple-of-4": Case(
        lambda: lr.strategy_models(image_size=15), ValueError, r"image_size must be a multiple of 4"
    ),
    "longrange.strategy_models/zero-width": Case(
        lambda: lr.strategy_models(width=0), ValueError, r"width must be an int >= 4"
    ),
    "longrange.train_config/zero-epochs": Case(
        lambda: lr.train_config(epochs=0), ValueError, r"epochs and batch_size must be >= 1"
    ),
    "longrange.glyph_cells/rank-2": Case(
        lambda: lr.glyph_cells(torch.zeros(2, 2, dtype=torch.long), 3, 16, 4),
        ValueError,
        r"positions must be \(N, J, 2\)",
    ),
    "longrange.glyph_cells/grid-not-dividing": Case(
        lambda: lr.glyph_cells(torch.zeros(1, 2, 2, dtype=torch.long), 3, 16, 5),
        ValueError,
        r"not a multiple of grid 5",
    ),
    "longrange.glyph_cells/zero-grid": Case(
        lambda: lr.glyph_cells(torch.zeros(1, 2, 2, dtype=torch.long), 3, 16, 0), ValueError, r"grid must be"
    ),
    "longrange.plot_accuracy_vs_distance/no-curves": Case(
        lambda: lr.plot_accuracy_vs_distance({}, {}), ValueError, r"curves"
    ),
    # ---- nlbook.zoo ----------------------------------------------------------------------------------------
    "zoo.model_spec/unknown": Case(
        lambda: zoo.model_spec("transformer"), ValueError, r"unknown model 'transformer'; expected one of"
    ),
    "zoo.build_model/unknown": Case(lambda: zoo.build_model("alexnet"), ValueError, r"unknown model 'alexnet'"),
    "zoo.build_model/zero-classes": Case(
        lambda: zoo.build_model("resnet", num_classes=0), ValueError, r"num_classes must be a positive int"
    ),
    "zoo.resolve_profile/wrong-type": Case(
        lambda: zoo.resolve_profile(3), TypeError, r"Profile, a profile name or None"
    ),
    "zoo.resolve_profile/unknown-name": Case(
        lambda: zoo.resolve_profile("fast"), ValueError, r"unknown profile 'fast'"
    ),
    "zoo.recipe/unknown": Case(lambda: zoo.recipe("alexnet"), ValueError, r"unknown model 'alexnet'"),
    "zoo.recipe/bad-override": Case(
        lambda: zoo.recipe("resnet", "quick", epochs=0), ValueError, r"epochs and batch_size must be >= 1"
    ),
    # ---- nlbook.bench --------------------------------------------------------------------------------------
    "bench.time_to_accuracy/percent-threshold": Case(
        lambda: bench.time_to_accuracy([], 93), ValueError, r"threshold must be an accuracy in \(0, 1\]"
    ),
    "bench.time_to_accuracy/not-a-history": Case(
        lambda: bench.time_to_accuracy([0.9], 0.5), ValueError, r"has no 'seconds' and 'test_acc'"
    ),
    "bench.count_flops/not-a-module": Case(
        lambda: bench.count_flops("resnet", img(1, 3, 8, 8)), TypeError, r"nn\.Module"
    ),
    "bench.count_flops/not-a-tensor": Case(
        lambda: bench.count_flops(tiny_resnet(), (1, 3, 8, 8)), TypeError, r"tensor batch"
    ),
    "bench.count_flops/forward-channels": Case(
        lambda: bench.count_flops(tiny_resnet(), img(1, 1, 8, 8)), ValueError, r"3 input channels"
    ),
    "bench.measure/not-a-module": Case(lambda: bench.measure("resnet", (1, 3, 8, 8)), TypeError, r"nn\.Module"),
    "bench.measure/shape-rank-3": Case(
        lambda: bench.measure(tiny_resnet(), (1, 3, 8)), ValueError, r"four positive ints \(B, C, H, W\)"
    ),
    "bench.measure/zero-repeats": Case(
        lambda: bench.measure(tiny_resnet(), (1, 3, 8, 8), repeats=0), ValueError, r"repeats must be an int >= 1"
    ),
    "bench.measure/negative-warmup": Case(
        lambda: bench.measure(tiny_resnet(), (1, 3, 8, 8), warmup=-1), ValueError, r"warmup must be an int >= 0"
    ),
    "bench.measure/meta-device": Case(
        lambda: bench.measure(tiny_resnet(), (1, 3, 8, 8), device="meta"),
        ValueError,
        r"cannot time a model on the meta device",
    ),
    "bench.peak_step_memory/not-callable": Case(
        lambda: bench.peak_step_memory(3, torch.device("cpu")), TypeError, r"callable"
    ),
    "bench.benchmark_model/unknown-model": Case(
        lambda: bench.benchmark_model("alexnet"), ValueError, r"unknown model 'alexnet'"
    ),
    "bench.benchmark_model/bad-data": Case(
        lambda: bench.benchmark_model("resnet", data=3), TypeError, r"ImageDataset, a dataset name or None"
    ),
    "bench.describe_record/not-a-record": Case(lambda: bench.describe_record({}), ValueError, r"summary"),
    "bench.recorded_runs/not-a-path": Case(
        lambda: bench.recorded_runs(3), TypeError, r"expected str, bytes or os\.PathLike object", origin="pathlib"
    ),
    "bench.summarize/wrong-items": Case(lambda: bench.summarize([3]), TypeError, r"BenchResult or ModelRun"),
    "bench.summarize_runs/wrong-items": Case(lambda: bench.summarize_runs([3]), TypeError, r"ModelRun"),
    "bench.format_table/unknown-baseline": Case(
        lambda: bench.format_table([{"model": "vit", "test_acc": 0.5}], baseline="resnet"), ValueError, r"baseline"
    ),
    # ---- nlbook.viz ----------------------------------------------------------------------------------------
    "viz.to_display/rank-4": Case(lambda: viz.to_display(img(1, 3, 8, 8)), ValueError, r"one \(C, H, W\) image"),
    "viz.show_images/rank-3": Case(lambda: viz.show_images(img(3, 8, 8)), ValueError, r"\(N, C, H, W\)"),
    "viz.show_images/labels-length": Case(
        lambda: viz.show_images(img(2, 3, 8, 8), labels=[1, 2, 3]), ValueError, r"labels"
    ),
    "viz.plot_history/not-records": Case(lambda: viz.plot_history([3]), TypeError, r"TrainRecord"),
    "viz.plot_feature_maps/rank-4": Case(
        lambda: viz.plot_feature_maps(img(1, 3, 8, 8)), ValueError, r"one \(C, H, W\) map"
    ),
    "viz.plot_filters/rank-3": Case(lambda: viz.plot_filters(img(3, 3, 3)), ValueError, r"conv weights \(O, C, k, k\)"),
    "viz.plot_attention_maps/weights-shape": Case(
        lambda: viz.plot_attention_maps(img(3, 8, 8), img(4, 4), [(0, 0)], (4, 4)), ValueError, r"\(16, 16\) weights"
    ),
    "viz.plot_attention_maps/query-outside": Case(
        lambda: viz.plot_attention_maps(img(3, 8, 8), img(16, 16), [(4, 0)], (4, 4)),
        ValueError,
        r"outside the 4×4 grid",
    ),
    # ---- nlbook.distributed --------------------------------------------------------------------------------
    "distributed.DistInfo/rank-outside-world": Case(
        lambda: dist.DistInfo(rank=2, world_size=2), ValueError, r"0 <= rank < world_size"
    ),
    "distributed.init_distributed/unknown-backend": Case(
        lambda: under_torchrun(lambda: dist.init_distributed("mpi", device="cpu")), ValueError, r"'nccl' or 'gloo'"
    ),
    "distributed.init_distributed/nccl-on-cpu": Case(
        lambda: under_torchrun(lambda: dist.init_distributed("nccl", device="cpu")), ValueError, r"NCCL needs CUDA"
    ),
    "distributed.launch_local/zero-processes": Case(
        lambda: dist.launch_local(0, []), ValueError, r"nproc must be a positive int"
    ),
    "distributed.all_reduce_sum/not-a-tensor": Case(lambda: dist.all_reduce_sum([1.0]), TypeError, r"tensor"),
    "distributed.wrap_model/sync-bn-on-cpu": Case(
        lambda: dist.wrap_model(tiny_resnet(), dist.DistInfo(rank=0, world_size=2), sync_batchnorm=True),
        ValueError,
        r"SyncBatchNorm needs CUDA",
    ),
}

# Public names with no bad input to try, and why.
NO_BAD_INPUT = {
    # type aliases and constants
    **dict.fromkeys(
        [
            "cnn.BlockFactory",
            "cnn.InsertFactory",
            "attention.AttentionImpl",
            "attention.PositionKind",
            "nonlocal_block.NonLocalMode",
            "nonlocal_block.MODES",
            "vit.Pool",
            "vit.VIT_PRESETS",
            "hybrid.HybridKind",
            "hybrid.HYBRID_KINDS",
            "runtime.PROFILES",
            "data.DATASETS",
            "longrange.CLASSES",
            "longrange.PALETTE",
            "longrange.TEST_SEED",
            "zoo.MODELS",
            "bench.RECORD_FORMAT",
        ],
        "a type alias or constant, not a callable",
    ),
    # records that only hold results their producers computed and checked
    **dict.fromkeys(
        [
            "cnn.ReceptiveField",
            "runtime.Profile",
            "runtime.RunContext",
            "data.ImageDataset",
            "train.EpochStats",
            "train.TrainRecord",
            "longrange.LongRangeBatch",
            "zoo.ModelSpec",
            "longrange.StrategySpec",
            "distributed.LocalRun",
            "bench.BenchResult",
            "bench.ModelRun",
        ],
        "a result record filled by nlbook itself (its producer validates the inputs)",
    ),
    "data.DatasetUnavailableError": "an exception class",
    "zoo.model_names": "takes no arguments",
    "distributed.current": "takes no arguments",
    "distributed.cleanup": "takes no arguments",
    "distributed.barrier": "only an optional DistInfo; a no-op without a process group",
    "distributed.print0": "prints its arguments like print()",
    "longrange.load_sweep_results": "a reader: returns None when no sweep was recorded for that device (documented)",
    "distributed.unwrap": "returns anything that is not a DDP/compiled wrapper unchanged, by design",
    "distributed.main": "a command line: argparse reports usage errors",
    "nonlocal_block.SeedArticleNonLocalBlock": "the seed article's block as printed, failure included (chapter 3)",
}


def opaque(reason: str) -> pytest.MarkDecorator:
    """Mark a row as a known gap: the call fails, but not with nlbook's own clear error (strict: fix -> XPASS)."""
    return pytest.mark.xfail(strict=True, reason=f"opaque error: {reason}")


# Rows whose function does not (yet) give a clear error; see the report in each reason.
KNOWN_OPAQUE: dict[str, str] = {}


def params() -> list[object]:
    out = []
    for case_id, row in CASES.items():
        case, marks = (row[0], [row[1]]) if isinstance(row, tuple) else (row, [])
        if case_id in KNOWN_OPAQUE:
            marks.append(opaque(KNOWN_OPAQUE[case_id]))
        out.append(pytest.param(case, id=case_id, marks=marks))
    return out


@pytest.fixture(autouse=True)
def _close_figures() -> object:
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.filterwarnings("ignore::UserWarning")  # what a bad call warns on its way to the error is not the point
@pytest.mark.parametrize("case", params())
def test_bad_input(case: Case) -> None:
    with pytest.raises(case.exc, match=case.match) as info:
        case.call()
    if case.origin != "nlbook":
        return  # a dependency's own clear message (see Case)
    last = info.traceback[-1]
    where = Path(str(last.path))
    assert where.is_relative_to(PACKAGE), (
        f"{info.type.__name__} came from {where}:{last.lineno + 1}, not from nlbook's own checks: {info.value}"
    )
    assert str(last.statement).lstrip().startswith("raise"), f"not a deliberate raise: {last.statement}"


def public_names() -> list[str]:
    names = []
    for module in MODULES:
        mod = importlib.import_module(f"nlbook.{module}")
        for name in getattr(mod, "__all__", []):
            names.append(f"{module}.{name}")
    return names


def test_every_public_name_has_a_row() -> None:
    covered = {case_id.split("/")[0] for case_id in CASES}
    missing = [n for n in public_names() if n not in covered and n not in NO_BAD_INPUT]
    assert not missing, f"public names with no row in the bad-input table (add one, or to NO_BAD_INPUT): {missing}"
    stale = [n for n in (covered | set(NO_BAD_INPUT)) if n not in public_names()]
    assert not stale, f"rows for names that are not public (renamed or removed?): {stale}"


def test_every_module_is_in_the_table() -> None:
    on_disk = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")}
    assert on_disk <= set(MODULES), f"modules missing from the bad-input table: {sorted(on_disk - set(MODULES))}"


def test_rows_are_callables_with_an_exception_type() -> None:
    for case_id, row in CASES.items():
        case = row[0] if isinstance(row, tuple) else row
        assert callable(case.call) and inspect.isclass(case.exc) and case.match, case_id
