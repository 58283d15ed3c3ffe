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
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nlbook"
MODULES = [
    "checks",
    "version",
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
    "vit_torchvision",
    "coatnet",
    "comparison",
    "longrange_sweep",
    "launch",
    "local_attention",
    "minimal",
    "diagrams",
    "finetune",
    "records",
    "convergence",
    "stats",
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
chk = lazy("checks")
vtv = lazy("vit_torchvision")
coat = lazy("coatnet")
cmp = lazy("comparison")
lrs = lazy("longrange_sweep")
launch = lazy("launch")
la = lazy("local_attention")
rec = lazy("records")
dg = lazy("diagrams")
ft = lazy("finetune")
DRAW_FUNCTIONS = [name for name in dg.__all__ if name.startswith("draw_")]


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


def a_record(seeds: tuple[int, ...] = (0, 1), x: float | None = None, final_test_acc: float = 0.9) -> dict:
    """A small valid ``nlbook-record/1`` record: one arm ``cnn``, one epoch per seed."""
    epoch = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.9, "seconds": 1.0}
    runs = [
        {
            "seed": seed,
            "epochs_run": 1,
            "converged": True,
            "final_test_acc": final_test_acc,
            "best_test_acc": 0.9,
            "train_seconds": 1.0,
            "history": [dict(epoch)],
        }
        for seed in seeds
    ]
    machine = {"cpu": "cpu", "threads": 1, "device": "cpu", "gpu": None}
    provenance = {"git_commit": None, "git_dirty": None, "date": "2025-01-01T00:00:00+00:00", "command": "python t"}
    return {
        "format": rec.FORMAT,
        "experiment": "unit",
        "chapter": 0,
        "question": "?",
        "provenance": {**provenance, "machine": machine, "python": "3", "torch": "2", "nlbook": None},
        "dataset": {"name": "digits", "train_size": 10, "test_size": 5},
        "convergence": {"criterion": "fixed"},
        "wall_s": 1.0,
        "arms": [
            {"name": "cnn", "label": "CNN", "x": x, "model_spec": {}, "train_config": {}, "params": 1, "runs": runs}
        ],
    }


def truncated_record() -> Path:
    """A record file cut off mid-write (what a killed writer without an atomic rename leaves)."""
    path = Path(tempfile.mkdtemp()) / "ch3_nonlocal.json"
    path.write_text(json.dumps(a_record())[:200])
    return path


def tiny_torchvision_vit() -> nn.Module:
    import torchvision

    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32
    )


CASES: dict[str, Case | tuple[Case, pytest.MarkDecorator]] = {
    # ---- nlbook.cnn ----------------------------------------------------------------------------------------
    "attention.check_impl/unknown": Case(
        lambda: att.check_impl("f", "flash"), ValueError, r"impl must be 'fused' or 'explicit'"
    ),
    "checks.check_image_batch/not-a-tensor": Case(
        lambda: chk.check_image_batch([1, 2], 3, "f"), TypeError, r"torch\.Tensor"
    ),
    "checks.check_image_batch/rank-3": Case(lambda: chk.check_image_batch(img(3, 8, 8), 3, "f"), ValueError, r"4-D"),
    "checks.check_image_batch/channels": Case(
        lambda: chk.check_image_batch(img(1, 1, 8, 8), 3, "f"), ValueError, r"3 input channels"
    ),
    "checks.check_image_batch/integer-dtype": Case(
        lambda: chk.check_image_batch(img(1, 3, 8, 8, dtype=torch.uint8), 3, "f"), TypeError, r"floating-point"
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
        lambda: att.MultiHeadSelfAttention2d(8, 2, attn_dropout=NAN), ValueError, r"attn_dropout must be in \[0, 1\)"
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
        lambda: rt.seed_everything(-1), ValueError, r"seed_everything: seed must be an int in \[0, 4294967295\]"
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
        lambda: train.TrainConfig(epochs=0), ValueError, r"TrainConfig: epochs must be an int >= 1, got 0"
    ),
    "train.TrainConfig/unknown-optimizer": Case(
        lambda: train.TrainConfig(optimizer="adam"), ValueError, r"'sgd' or 'adamw'"
    ),
    "train.TrainConfig/unknown-schedule": Case(
        lambda: train.TrainConfig(schedule="step"), ValueError, r"'cosine', 'onecycle' or 'constant'"
    ),
    "train.TrainConfig/nan-lr": Case(
        lambda: train.TrainConfig(lr=NAN), ValueError, r"lr must be a finite real number > 0"
    ),
    "train.TrainConfig/label-smoothing-1": Case(
        lambda: train.TrainConfig(label_smoothing=1.0), ValueError, r"label_smoothing must be .*in \[0, 1\)"
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
        lambda: train.fit(tiny_resnet(), digits(), train.TrainConfig(batch_size=100_000), device="cpu"),
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
    "vit.stochastic_depth/p-1": Case(
        lambda: vit.stochastic_depth(img(2, 4), p=1.0, training=True), ValueError, r"probability in \[0, 1\)"
    ),
    "vit.stochastic_depth/p-nan": Case(
        lambda: vit.stochastic_depth(img(2, 4), p=NAN, training=True), ValueError, r"probability in \[0, 1\)"
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
    "vit_torchvision.to_torchvision_state_dict/not-a-vit": Case(
        lambda: vtv.to_torchvision_state_dict(tiny_resnet()), TypeError, r"VisionTransformer"
    ),
    "vit_torchvision.to_torchvision_state_dict/gap-pool": Case(
        lambda: vtv.to_torchvision_state_dict(tiny_vit(pool="gap")), ValueError, r"pool='cls'"
    ),
    "vit_torchvision.load_torchvision_state_dict/wrong-keys": Case(
        lambda: vtv.load_torchvision_state_dict(tiny_vit(), {"x": torch.zeros(1)}), ValueError, r"does not match"
    ),
    "vit_torchvision.torchvision_kwargs/one-channel": Case(
        lambda: vtv.torchvision_kwargs(tiny_vit(in_channels=1)), ValueError, r"3-channel"
    ),
    "vit_torchvision.from_torchvision/not-torchvision": Case(
        lambda: vtv.from_torchvision(nn.Linear(2, 2)), TypeError, r"torchvision"
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
    "coatnet.LayerNorm2d/forward-channels": Case(
        lambda: coat.LayerNorm2d(8)(img(1, 4, 2, 2)), ValueError, r"8 input channels"
    ),
    "coatnet.MBConv/stride-3": Case(lambda: coat.MBConv(8, 8, stride=3), ValueError, r"stride must be 1 or 2"),
    "coatnet.MBConv/se-ratio-0": Case(
        lambda: coat.MBConv(8, 8, se_ratio=0.0), ValueError, r"se_ratio must be in \(0, 1\]"
    ),
    "coatnet.MBConv/se-ratio-nan": Case(
        lambda: coat.MBConv(8, 8, se_ratio=NAN), ValueError, r"se_ratio must be in \(0, 1\]"
    ),
    "coatnet.MBConv/forward-odd-stride-2": Case(
        lambda: coat.MBConv(8, 8, stride=2)(img(1, 8, 5, 5)), ValueError, r"even feature-map size"
    ),
    "coatnet.MBConv/forward-channels": Case(
        lambda: coat.MBConv(8, 8)(img(1, 4, 4, 4)), ValueError, r"8 input channels"
    ),
    "coatnet.RelativePositionBias2d/zero-size": Case(
        lambda: coat.RelativePositionBias2d(0, 2), ValueError, r"size must be a positive int"
    ),
    "coatnet.RelativePositionBias2d/zero-heads": Case(
        lambda: coat.RelativePositionBias2d(4, 0), ValueError, r"num_heads must be a positive"
    ),
    "coatnet.TransformerBlock2d/head-dim-not-dividing": Case(
        lambda: coat.TransformerBlock2d(30, 30, 4, head_dim=32), ValueError, r"multiple of head_dim \(32\)"
    ),
    "coatnet.TransformerBlock2d/stride-2-odd": Case(
        lambda: coat.TransformerBlock2d(32, 32, 5, stride=2), ValueError, r"even feature-map size"
    ),
    "coatnet.TransformerBlock2d/forward-size": Case(
        lambda: coat.TransformerBlock2d(32, 32, 4)(img(1, 32, 5, 5)), ValueError, r"built for 4×4"
    ),
    "coatnet.CoAtNet/unknown-kind": Case(
        lambda: coat.CoAtNet(kinds="CCXT"), ValueError, r"'C' \(MBConv\) or 'T' \(Transformer\)"
    ),
    "coatnet.CoAtNet/length-mismatch": Case(lambda: coat.CoAtNet(depths=(1, 1)), ValueError, r"same non-zero length"),
    "coatnet.CoAtNet/stride-3": Case(lambda: coat.CoAtNet(strides=(2, 2, 3, 2)), ValueError, r"strides must be 1 or 2"),
    "coatnet.CoAtNet/image-not-divisible": Case(
        lambda: coat.CoAtNet(image_size=30), ValueError, r"divisible by the total stride"
    ),
    "coatnet.CoAtNet/zero-width": Case(
        lambda: coat.CoAtNet(widths=(0, 8, 16, 32)), ValueError, r"widths must be positive ints"
    ),
    "coatnet.coatnet/zero-width": Case(lambda: coat.coatnet(width=0), ValueError, r"width must be a positive int"),
    "coatnet.coatnet/forward-size": Case(
        lambda: coat.coatnet(width=8, depths=(1, 1, 1, 1))(img(1, 3, 16, 16)), ValueError, r"built for 32×32 images"
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
    "data.longrange_dataset/same-seeds": Case(
        lambda: data.longrange_dataset(8, 8, seed=1, test_seed=1), ValueError, r"seed and test_seed must differ"
    ),
    "data.longrange_dataset/zero-train": Case(lambda: data.longrange_dataset(0, 8), ValueError, r"n_train"),
    "longrange_sweep.accuracy_by_distance/distance-outside": Case(
        lambda: lrs.accuracy_by_distance(
            tiny_resnet(num_classes=2), lr.LongRangeTask(image_size=16), [100], MEAN3, MEAN3, n=4
        ),
        ValueError,
        r"distance 100 is outside \[4, 13\]",
    ),
    "longrange_sweep.accuracy_by_distance/zero-n": Case(
        lambda: lrs.accuracy_by_distance(
            tiny_resnet(num_classes=2), lr.LongRangeTask(image_size=16), [4], MEAN3, MEAN3, n=0
        ),
        ValueError,
        r"n must be an int >= 1",
    ),
    "longrange_sweep.accuracy_by_distance/not-a-task": Case(
        lambda: lrs.accuracy_by_distance(tiny_resnet(num_classes=2), "task", [4], MEAN3, MEAN3, n=4),
        TypeError,
        r"LongRangeTask",
    ),
    "longrange_sweep.strategy_models/zero-size": Case(
        lambda: lrs.strategy_models(image_size=0), ValueError, r"image_size must be a positive int"
    ),
    "longrange_sweep.strategy_models/size-not-multiple-of-4": Case(
        lambda: lrs.strategy_models(image_size=15), ValueError, r"image_size must be a multiple of 4"
    ),
    "longrange_sweep.strategy_models/zero-width": Case(
        lambda: lrs.strategy_models(width=0), ValueError, r"width must be a positive int"
    ),
    "longrange_sweep.train_config/zero-epochs": Case(
        lambda: lrs.train_config(epochs=0), ValueError, r"epochs must be an int >= 1"
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
    "longrange_sweep.plot_accuracy_vs_distance/no-curves": Case(
        lambda: lrs.plot_accuracy_vs_distance({}, {}), ValueError, r"curves"
    ),
    # ---- nlbook.local_attention ----------------------------------------------------------------------------
    "local_attention.window_partition/window-not-dividing": Case(
        lambda: la.window_partition(img(1, 3, 6, 8), 4), ValueError, r"window_size 4 must divide"
    ),
    "local_attention.window_reverse/wrong-shape": Case(
        lambda: la.window_reverse(img(5, 16, 3), 4, 8, 8), ValueError, r"windows must be"
    ),
    "local_attention.shifted_window_mask/negative-shift": Case(
        lambda: la.shifted_window_mask(8, 8, 4, -1), ValueError, r"shift_size must be an int in"
    ),
    "local_attention.WindowAttention/shift-too-large": Case(
        lambda: la.WindowAttention(16, window_size=4, shift_size=4), ValueError, r"shift_size must be an int in"
    ),
    "local_attention.SwinBlock/mlp-ratio": Case(
        lambda: la.SwinBlock(16, mlp_ratio=0), ValueError, r"mlp_ratio must be a number > 0"
    ),
    "local_attention.LocalSelfAttention2d/even-kernel": Case(
        lambda: la.LocalSelfAttention2d(8, kernel_size=4), ValueError, r"kernel_size must be odd"
    ),
    "local_attention.RelativeOffsetAttention2d/negative-padding": Case(
        lambda: la.RelativeOffsetAttention2d(4, 4, padding=-1), ValueError, r"padding must be an int >= 0"
    ),
    "local_attention.conv_as_attention/strided": Case(
        lambda: la.conv_as_attention(nn.Conv2d(3, 4, 3, padding=1, stride=2)), ValueError, r"stride 1"
    ),
    "local_attention.attention_by_offset/wrong-size": Case(
        lambda: la.attention_by_offset(img(1, 2, 12, 12), (3, 3)), ValueError, r"weights must be \(B, heads, 9, 9\)"
    ),
    "local_attention.PatchMerging/odd-map": Case(
        lambda: la.PatchMerging(8)(img(1, 8, 5, 4)), ValueError, r"height and width must be even"
    ),
    "local_attention.SwinTransformer/image-size": Case(
        lambda: la.SwinTransformer(image_size=30), ValueError, r"image_size 30 must be divisible by"
    ),
    "local_attention.SwinTransformer/wrong-input-size": Case(
        lambda: la.SwinTransformer(widths=(8, 16), depths=(2, 2), head_dim=8)(img(1, 3, 16, 16)),
        ValueError,
        r"built for 32×32 images",
    ),
    "local_attention.LocalAttentionBlock/stride": Case(
        lambda: la.LocalAttentionBlock(16, 16, stride=3), ValueError, r"stride must be 1 or 2"
    ),
    "local_attention.sasa_resnet/stage-index": Case(
        lambda: la.sasa_resnet(widths=(16, 32), depths=(1, 1), attention_stages=(2,)),
        ValueError,
        r"attention_stages must index the 2 stages",
    ),
    # ---- nlbook.runtime, data, viz, longrange_sweep: names added since the table was written ---------------
    "runtime.autocast_dtype/device-name": Case(
        lambda: rt.autocast_dtype("cuda"), TypeError, r"autocast_dtype: device must be a torch\.device, got 'cuda'"
    ),
    "runtime.autocast_dtype/float32": Case(
        lambda: rt.autocast_dtype(torch.device("cpu"), True, torch.float32),
        ValueError,
        r"amp_dtype must be None, torch\.float16 or torch\.bfloat16",
    ),
    "runtime.autocast_dtype/amp-string": Case(
        lambda: rt.autocast_dtype(torch.device("cpu"), "bf16"), TypeError, r"amp must be True, False or None"
    ),
    "runtime.resolve_dataset_name/unknown": Case(
        lambda: rt.resolve_dataset_name("cifar100"), ValueError, r"unknown dataset 'cifar100'; expected one of"
    ),
    "data.normalize/one-value-for-three-channels": Case(
        lambda: data.normalize(img(2, 3, 4, 4, dtype=torch.uint8), (0.5,), (0.5,)),
        ValueError,
        r"normalize: mean and std need one value per channel \(3\), got 1 and 1",
    ),
    "data.normalize/one-image": Case(
        lambda: data.normalize(img(3, 4, 4, dtype=torch.uint8), MEAN3, MEAN3),
        ValueError,
        r"normalize expects a batch of images \(B, C, H, W\), got \(3, 4, 4\)",
    ),
    "data.normalize/zero-std": Case(
        lambda: data.normalize(img(2, 3, 4, 4, dtype=torch.uint8), MEAN3, (0.5, 0.0, 0.5)),
        ValueError,
        r"std must be positive per channel",
    ),
    "viz.plot_record_curves/unknown-arm": Case(
        lambda: viz.plot_record_curves(a_record(), arms=["vit"]), ValueError, r"arms \['vit'\] are not in the record"
    ),
    "viz.plot_record_curves/unknown-metric": Case(
        lambda: viz.plot_record_curves(a_record(), metric="acc"), ValueError, r"history has no field 'acc'"
    ),
    "viz.plot_record_sweep/epoch-metric": Case(
        lambda: viz.plot_record_sweep(a_record(x=100), metric="test_acc"),
        ValueError,
        r"metric must be 'final_test_acc' or 'best_test_acc'",
    ),
    "viz.plot_record_sweep/not-swept": Case(
        lambda: viz.plot_record_sweep(a_record()), ValueError, r"has no swept arms \(x is None\)"
    ),
    "viz.plot_record_sweep/a-name": Case(
        lambda: viz.plot_record_sweep("ch4_sweep"), TypeError, r"record must be a loaded record .*got 'ch4_sweep'"
    ),
    "longrange_sweep.PooledMLPResNet/zero-hidden": Case(
        lambda: lrs.PooledMLPResNet(widths=(4, 8), depths=(1, 1), hidden=0),
        ValueError,
        r"PooledMLPResNet: hidden must be a positive int",
    ),
    "longrange_sweep.build_from_spec/unknown-builder": Case(
        lambda: lrs.build_from_spec({"builder": "resnet18", "kwargs": {}}),
        ValueError,
        r"model_spec must be \{'builder': one of \[",
    ),
    "longrange_sweep.glyph_pair_rule/images-not-a-batch": Case(
        lambda: lrs.glyph_pair_rule(tiny_resnet(), img(2, 3, 8, 8), MEAN3, MEAN3),
        TypeError,
        r"glyph_pair_rule expects a LongRangeBatch, got Tensor",
    ),
    # ---- nlbook.records --------------------------------------------------------------------------------------
    "records.provenance/command-as-one-string": Case(
        lambda: rec.provenance(command="benchmarks/converge.py ch3"),
        TypeError,
        r"provenance: command must be a list of strings \(like sys\.argv\)",
    ),
    "records.provenance/device": Case(
        lambda: rec.provenance("gpu"), ValueError, r"provenance: device must be a torch\.device or a name"
    ),
    "records.validate_record/missing-keys": Case(
        lambda: rec.validate_record({"format": rec.FORMAT}), rec.RecordError, r"record: missing 'experiment'"
    ),
    "records.validate_record/accuracy-in-percent": Case(
        lambda: rec.validate_record(a_record(final_test_acc=93.0)),
        rec.RecordError,
        r"final_test_acc: expected an accuracy fraction in \[0, 1\], got 93\.0",
    ),
    "records.record_path/json-suffix": Case(
        lambda: rec.record_path("ch3_nonlocal.json"), ValueError, r"experiment must be a record name such as"
    ),
    "records.record_paths/a-path": Case(
        lambda: rec.record_paths("results/ch3_nonlocal"), ValueError, r"experiment must be a record name such as"
    ),
    "records.write_atomically/missing-folder": Case(
        lambda: rec.write_atomically("/nonexistent-nlbook-folder/x.json", lambda f: None, text=True),
        FileNotFoundError,
        r"folder of path '/nonexistent-nlbook-folder/x.json' does not exist",
    ),
    "records.write_record/invalid": Case(
        lambda: rec.write_record({"format": rec.FORMAT, "arms": []}, Path(tempfile.mkdtemp()) / "r.json"),
        rec.RecordError,
        r"record: missing 'experiment'",
    ),
    "records.load_record/missing": Case(
        lambda: rec.load_record("no_such_record", folder=tempfile.mkdtemp()),
        rec.RecordNotFoundError,
        r"no record at .*no_such_record\.json; records in .*: none",
    ),
    "records.load_record/truncated": Case(
        lambda: rec.load_record(truncated_record()), rec.RecordError, r"is not valid JSON .*truncated or corrupted"
    ),
    "records.find_arm/unknown-arm": Case(
        lambda: rec.find_arm(a_record(), "vit"), KeyError, r"has no arm 'vit' with x=None; arms: cnn"
    ),
    "records.find_arm/a-name": Case(
        lambda: rec.find_arm("ch3_nonlocal", "cnn"), TypeError, r"find_arm: record must be a loaded record"
    ),
    "records.arm_values/unknown-metric": Case(
        lambda: rec.arm_values(a_record(), "cnn", metric="acc"), KeyError, r"runs have no field 'acc'"
    ),
    "records.compare_arms/one-seed": Case(
        lambda: rec.compare_arms(a_record(seeds=(0,)), "cnn", "cnn"),
        ValueError,
        r"verdict: a needs at least 2 seeds to have a spread, got 1",
    ),
    "records.verdict/one-seed": Case(
        lambda: rec.verdict([0.9], [0.8, 0.85]), ValueError, r"verdict: a needs at least 2 seeds"
    ),
    "records.verdict/a-string": Case(
        lambda: rec.verdict("0.9", [0.8, 0.85]), TypeError, r"verdict: a must be a list of per-seed values"
    ),
    "records.verdict/nan": Case(
        lambda: rec.verdict([0.9, NAN], [0.8, 0.85]), ValueError, r"verdict: a must hold finite numbers"
    ),
    "records.summarize/a-name": Case(
        lambda: rec.summarize("ch3_nonlocal"), TypeError, r"summarize: record must be a loaded record"
    ),
    "records.results_table/a-path": Case(
        lambda: rec.results_table(Path("ch3_nonlocal.json")),
        TypeError,
        r"results_table: record must be a loaded record .*from load_record",
    ),
    "records.converged/one-number": Case(
        lambda: rec.converged(0.9), TypeError, r"converged: test_accs must be a list of per-epoch accuracies, got float"
    ),
    "records.converged/nan-accuracy": Case(
        lambda: rec.converged([0.5, float("nan")]), ValueError, r"converged: test_accs must hold finite numbers"
    ),
    "records.train_to_convergence/one-epoch": Case(
        lambda: rec.train_to_convergence(lambda e: [], 1), ValueError, r"base_epochs must be an int >= 2, got 1"
    ),
    "records.train_to_convergence/no-runs": Case(
        lambda: rec.train_to_convergence(lambda e: [], 4), ValueError, r"train_seeds must return a non-empty list"
    ),
    "records.budget_plan/zero-epochs": Case(
        lambda: rec.budget_plan(0), ValueError, r"budget_plan: base_epochs must be an int >= 2, got 0"
    ),
    "records.converge_arm/no-budget": Case(
        lambda: rec.converge_arm({"train_config": {}}, lambda e: []),
        TypeError,
        r"converge_arm: arm must be a planned arm",
    ),
    "records.run_entry/no-epochs": Case(
        lambda: rec.run_entry(0, [], 1.0), ValueError, r"run_entry: history must hold at least one epoch"
    ),
    "records.stale_arms/one-planned-arm": Case(
        lambda: rec.stale_arms(a_record(), {"name": "cnn", "x": None}),
        TypeError,
        r"planned_arms must be a list of dicts",
    ),
    # ---- nlbook.diagrams -------------------------------------------------------------------------------------
    "diagrams.Diagram/title-int": Case(lambda: dg.Diagram(3), TypeError, r"Diagram: title must be a str or None"),
    "diagrams.Node/unknown-kind": Case(
        lambda: dg.Node("a", "A", "box", 0, 0), ValueError, r"Node 'a': kind must be one of \["
    ),
    "diagrams.Edge/side": Case(
        lambda: dg.Edge("a", "b", side="up"), ValueError, r"side must be 'left' or 'right', got 'up'"
    ),
    "diagrams.eval_shape/unknown-symbol": Case(
        lambda: dg.eval_shape("B×C", {"B": 2}), ValueError, r"no size given for symbol 'C'"
    ),
    "diagrams.eval_shape/not-whole": Case(
        lambda: dg.eval_shape("B×H/2", {"B": 2, "H": 5}), ValueError, r"'H/2' of 'B×H/2' is 5/2, not a whole number"
    ),
    "diagrams.shapes_from/not-a-module": Case(
        lambda: dg.shapes_from(lambda x: x, img(1, 3, 4, 4)), TypeError, r"model must be a torch\.nn\.Module"
    ),
    "diagrams.basic_block_diagram/int-channels": Case(
        lambda: dg.basic_block_diagram(channels=64), TypeError, r"channels must be a size symbol as a string"
    ),
    "diagrams.basic_block_diagram/one-size": Case(
        lambda: dg.basic_block_diagram(size="H"), TypeError, r"size must be a pair of size symbols"
    ),
    "diagrams.attention_diagram/int-dim": Case(
        lambda: dg.attention_diagram(dim=64), TypeError, r"attention_diagram: dim must be a size symbol"
    ),
    "diagrams.multi_head_attention_diagram/form": Case(
        lambda: dg.multi_head_attention_diagram(form="2D"), ValueError, r"form must be 'tokens' or '2d', got '2D'"
    ),
    **{
        f"diagrams.{name}/int-heads": Case(
            lambda name=name: getattr(dg, name)(heads=4), TypeError, rf"{name}: heads must be a size symbol"
        )
        for name in [
            "encoder_block_diagram",
            "bot_block_diagram",
            "transformer_block_2d_diagram",
            "window_attention_diagram",
            "local_attention_diagram",
        ]
    },
    **{
        f"diagrams.{name}/int-title": Case(
            lambda name=name: getattr(dg, name)(title=5), TypeError, r"Diagram: title must be a str or None"
        )
        for name in [
            "nonlocal_block_diagram",
            "patch_embedding_diagram",
            "vit_diagram",
            "se_diagram",
            "cbam_diagram",
            "mbconv_diagram",
        ]
    },
    **{  # a Figure where an Axes is expected: plt.figure() vs plt.subplots()[1]
        f"diagrams.{name}/figure-for-ax": Case(
            lambda name=name: getattr(dg, name)(Figure()), TypeError, r"ax must be a matplotlib Axes or None"
        )
        for name in DRAW_FUNCTIONS
    },
    # ---- nlbook.finetune -------------------------------------------------------------------------------------
    "finetune.InputResize/zero-size": Case(
        lambda: ft.InputResize(0), ValueError, r"InputResize: size must be an int >= 1"
    ),
    "finetune.InputResize/forward-one-image": Case(
        lambda: ft.InputResize(8)(img(3, 4, 4)), ValueError, r"InputResize expects a \(B, C, H, W\) batch"
    ),
    "finetune.PretrainedClassifier/no-linear-head": Case(
        lambda: ft.PretrainedClassifier(tiny_resnet(), "classifier", 32),
        ValueError,
        r"backbone\.classifier must be an nn\.Linear classification layer",
    ),
    "finetune.PretrainedClassifier/head-init": Case(
        lambda: ft.PretrainedClassifier(tiny_vit(), "head", 8, head_init="kaiming"),
        ValueError,
        r"head_init must be 'zeros' or 'normal'",
    ),
    "finetune.adapt_torchvision_resnet/ours": Case(
        lambda: ft.adapt_torchvision_resnet(tiny_resnet(), 10, 32),
        TypeError,
        r"adapt_torchvision_resnet expects a torchvision\.models\.ResNet, got ResNet",
    ),
    "finetune.adapt_torchvision_vit/image-size": Case(
        lambda: ft.adapt_torchvision_vit(tiny_torchvision_vit(), 10, 30),
        ValueError,
        r"image_size 30 is not a multiple of the patch size 4",
    ),
    "finetune.adapt_torchvision_vit/zero-classes": Case(
        lambda: ft.adapt_torchvision_vit(tiny_torchvision_vit(), 0, 32),
        ValueError,
        r"adapt_torchvision_vit: num_classes must be an int >= 1",
    ),
    "finetune.pretrained_vit/unknown-weights": Case(
        lambda: ft.pretrained_vit("IMAGENET", num_classes=10),
        ValueError,
        r"weights must be None, an ViT_B_16_Weights or one of \['DEFAULT', 'IMAGENET1K_V1'",
    ),
    "finetune.pretrained_vit/tv-kwargs-with-weights": Case(
        lambda: ft.pretrained_vit("DEFAULT", num_classes=10, tv_kwargs={"num_layers": 2}),
        ValueError,
        r"use tv_kwargs only with weights=None",
    ),
    "finetune.pretrained_resnet50/zero-classes": Case(
        lambda: ft.pretrained_resnet50(None, num_classes=0),
        ValueError,
        r"pretrained_resnet50: num_classes must be an int >= 1",
    ),
    "finetune.pretrained_resnet50/tv-kwargs-list": Case(
        lambda: ft.pretrained_resnet50(None, num_classes=10, tv_kwargs=[1, 1, 1, 1]),
        TypeError,
        r"tv_kwargs must be a dict of torchvision constructor arguments or None",
    ),
    "finetune.build_finetune_model/arch": Case(
        lambda: ft.build_finetune_model("vit", "full", num_classes=10),
        ValueError,
        r"arch must be 'vit_b_16' or 'resnet50', got 'vit'",
    ),
    "finetune.finetune_recipe/mode": Case(
        lambda: ft.finetune_recipe("resnet50", "linear"), ValueError, r"mode must be 'frozen' or 'full'"
    ),
    "finetune.finetune_recipe/unknown-field": Case(
        lambda: ft.finetune_recipe("resnet50", "full", epoch=3), ValueError, r"unknown TrainConfig fields \['epoch'\]"
    ),
    "finetune.finetune_recipe/zero-lr": Case(
        lambda: ft.finetune_recipe("vit_b_16", "frozen", lr=0.0), ValueError, r"finetune_recipe: lr must be"
    ),
    "finetune.freeze_backbone/plain-resnet": Case(
        lambda: ft.freeze_backbone(tiny_resnet()),
        TypeError,
        r"freeze_backbone expects an nlbook\.finetune\.PretrainedClassifier",
    ),
    "finetune.trainable_parameter_names/state-dict": Case(
        lambda: ft.trainable_parameter_names(tiny_resnet().state_dict()),
        TypeError,
        r"trainable_parameter_names expects an nn\.Module",
    ),
    "finetune.imagenet_normalized/images": Case(
        lambda: ft.imagenet_normalized(digits().train_images),
        TypeError,
        r"imagenet_normalized expects an nlbook\.data\.ImageDataset, got Tensor",
    ),
    # ---- nlbook.local_attention: more rows (prepared with the module) ----------------------------------------
    "local_attention.shifted_window_mask/shift-too-large": Case(
        lambda: la.shifted_window_mask(8, 8, 4, 4), ValueError, r"shift_size must be an int in \[0, window_size=4\)"
    ),
    "local_attention.WindowAttention/dim-not-multiple": Case(
        lambda: la.WindowAttention(10, num_heads=4), ValueError, r"dim \(10\) must be a multiple of num_heads"
    ),
    "local_attention.WindowAttention/forward-window-not-dividing": Case(
        lambda: la.WindowAttention(8, window_size=3, num_heads=2)(img(1, 8, 8, 8)),
        ValueError,
        r"window_size 3 must divide",
    ),
    "local_attention.LocalSelfAttention2d/forward-channels": Case(
        lambda: la.LocalSelfAttention2d(8, num_heads=2)(img(1, 4, 5, 5)), ValueError, r"expects 8 input channels"
    ),
    # ---- nlbook.zoo ----------------------------------------------------------------------------------------
    "zoo.model_spec/unknown": Case(
        lambda: zoo.model_spec("transformer"), ValueError, r"unknown model 'transformer'; expected one of"
    ),
    "zoo.build_model/unknown": Case(lambda: zoo.build_model("alexnet"), ValueError, r"unknown model 'alexnet'"),
    "zoo.build_model/zero-classes": Case(
        lambda: zoo.build_model("resnet", num_classes=0), ValueError, r"num_classes must be a positive int"
    ),
    "runtime.resolve_profile/wrong-type": Case(
        lambda: rt.resolve_profile(3), TypeError, r"Profile, a profile name or None"
    ),
    "runtime.resolve_profile/unknown-name": Case(
        lambda: rt.resolve_profile("fast"), ValueError, r"unknown profile 'fast'"
    ),
    "zoo.recipe/unknown": Case(lambda: zoo.recipe("alexnet"), ValueError, r"unknown model 'alexnet'"),
    "zoo.recipe/bad-override": Case(
        lambda: zoo.recipe("resnet", "quick", epochs=0), ValueError, r"epochs must be an int >= 1"
    ),
    # ---- nlbook.bench --------------------------------------------------------------------------------------
    "comparison.time_to_accuracy/percent-threshold": Case(
        lambda: cmp.time_to_accuracy([], 93), ValueError, r"threshold must be an accuracy in \(0, 1\]"
    ),
    "comparison.time_to_accuracy/not-a-history": Case(
        lambda: cmp.time_to_accuracy([0.9], 0.5), ValueError, r"has no 'seconds' and 'test_acc'"
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
    "bench.estimate_training_seconds/zero-epochs": Case(
        lambda: bench.estimate_training_seconds(tiny_resnet(), (3, 8, 8), train_images=1, test_images=0, epochs=0),
        ValueError,
        r"epochs must be",
    ),
    "bench.estimate_training_seconds/image-shape": Case(
        lambda: bench.estimate_training_seconds(tiny_resnet(), (8, 8), train_images=1, test_images=0, epochs=1),
        ValueError,
        r"image_shape must be \(C, H, W\)",
    ),
    "bench.peak_step_memory/not-callable": Case(
        lambda: bench.peak_step_memory(3, torch.device("cpu")), TypeError, r"callable"
    ),
    "comparison.benchmark_model/unknown-model": Case(
        lambda: cmp.benchmark_model("alexnet"), ValueError, r"unknown model 'alexnet'"
    ),
    "comparison.benchmark_model/bad-data": Case(
        lambda: cmp.benchmark_model("resnet", data=3), TypeError, r"ImageDataset, a dataset name or None"
    ),
    "comparison.summarize/wrong-items": Case(lambda: cmp.summarize([3]), TypeError, r"BenchResult or ModelRun"),
    "comparison.format_table/unknown-baseline": Case(
        lambda: cmp.format_table([{"model": "vit", "test_acc": 0.5}], baseline="resnet"), ValueError, r"baseline"
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
    "launch.launch_local/zero-processes": Case(
        lambda: launch.launch_local(0, []), ValueError, r"nproc must be a positive int"
    ),
    "distributed.all_reduce_sum/not-a-tensor": Case(lambda: dist.all_reduce_sum([1.0]), TypeError, r"tensor"),
    "distributed.wrap_model/sync-bn-on-cpu": Case(
        lambda: dist.wrap_model(tiny_resnet(), dist.DistInfo(rank=0, world_size=2), sync_batchnorm=True),
        ValueError,
        r"SyncBatchNorm needs CUDA",
    ),
}

# ---- issue 17: one validation layer, checked before anything moves ---------------------------------------------
# Every row names the parameter (or function) and what was expected; none matches Python's or torch's own wording.


def with_env(env: dict[str, str | None], call: Callable[[], object]) -> object:
    """Run ``call`` with environment variables set (``None``: unset)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            if value is None:
                mp.delenv(key, raising=False)
            else:
                mp.setenv(key, value)
        return call()


def frozen_resnet() -> nn.Module:
    model = tiny_resnet()
    model.requires_grad_(False)
    return model


def pooled_batchnorm_model(num_classes: int = 10) -> nn.Module:
    """BatchNorm1d after global pooling: one value per channel and image."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(4), nn.Linear(4, num_classes)
    )


class Raises(nn.Module):
    """A model whose forward fails inside torch (a linear layer applied to the wrong feature size)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def cfg(**kw: object) -> object:
    return train.TrainConfig(**kw)


def fit_cpu(model: nn.Module, dataset: object = None, **kw: object) -> object:
    dataset = digits() if dataset is None else dataset
    return train.fit(model, dataset, train.TrainConfig(epochs=1, batch_size=16, max_train=32, max_test=16), **kw)


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
NO_MPS = pytest.mark.skipif(
    getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    reason="this machine has MPS",
)
TWO_PROCESSES = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": None}

ISSUE_17_CASES: dict[str, Case | tuple[Case, pytest.MarkDecorator]] = {
    # -- nlbook.checks: scalars
    "checks.check_int/bool": Case(lambda: chk.check_int("f", "n", True), TypeError, r"f: n must be an int >= 1"),
    "checks.check_int/float": Case(lambda: chk.check_int("f", "n", 2.0), TypeError, r"f: n must be an int >= 1"),
    "checks.check_int/string": Case(lambda: chk.check_int("f", "n", "3"), TypeError, r"n must be an int >= 1.*str"),
    "checks.check_int/none": Case(lambda: chk.check_int("f", "n", None), TypeError, r"n must be an int >= 1"),
    "checks.check_int/below-low": Case(
        lambda: chk.check_int("f", "n", -1, low=0), ValueError, r"n must be an int >= 0"
    ),
    "checks.check_int/above-high": Case(
        lambda: chk.check_int("f", "n", 9, low=0, high=3), ValueError, r"n must be an int in \[0, 3\], got 9"
    ),
    "checks.check_float/string": Case(
        lambda: chk.check_float("f", "lr", "0.1", low=0.0, low_open=True), TypeError, r"lr must be a finite real"
    ),
    "checks.check_float/bool": Case(lambda: chk.check_float("f", "x", True), TypeError, r"x must be a finite real"),
    "checks.check_float/nan": Case(lambda: chk.check_float("f", "x", NAN, low=0.0), ValueError, r"x must be .*>= 0"),
    "checks.check_float/inf": Case(lambda: chk.check_float("f", "x", math.inf), ValueError, r"x must be a finite"),
    "checks.check_float/tensor": Case(
        lambda: chk.check_float("f", "x", torch.tensor(0.5)), TypeError, r"x must be a finite real number.*Tensor"
    ),
    "checks.check_float/open-low": Case(
        lambda: chk.check_float("f", "x", 0.0, low=0.0, low_open=True),
        ValueError,
        r"x must be a finite real number > 0",
    ),
    "checks.check_float/above-high": Case(
        lambda: chk.check_float("f", "x", 1.0, low=0.0, high=1.0, high_open=True), ValueError, r"in \[0, 1\)"
    ),
    "checks.check_probability/one": Case(
        lambda: chk.check_probability("f", p=1.0), ValueError, r"f: p must be a probability in \[0, 1\)"
    ),
    "checks.check_probability/string": Case(
        lambda: chk.check_probability("f", p="0.1"), ValueError, r"p must be a probability"
    ),
    "checks.check_positive_int/zero": Case(
        lambda: chk.check_positive_int("f", width=0), ValueError, r"f: width must be a positive int"
    ),
    "checks.check_positive_int/float": Case(
        lambda: chk.check_positive_int("f", width=4.5), ValueError, r"width must be a positive int, got 4\.5"
    ),
    "checks.check_choice/unknown": Case(
        lambda: chk.check_choice("f", "mode", "x", ("a", "b")), ValueError, r"f: mode must be 'a' or 'b'"
    ),
    "checks.check_choice/unhashable": Case(
        lambda: chk.check_choice("f", "mode", ["a"], {"a", "b"}), ValueError, r"mode must be"
    ),
    "checks.check_path_writable/not-a-path": Case(
        lambda: chk.check_path_writable("f", "save", 3),
        TypeError,
        r"f: save must be a file path \(str or os\.PathLike\)",
    ),
    "checks.check_path_writable/missing-folder": Case(
        lambda: chk.check_path_writable("f", "save", "/nonexistent-nlbook/w.pt"), ValueError, r"existing folder"
    ),
    "checks.check_path_writable/a-folder": Case(
        lambda: chk.check_path_writable("f", "save", ROOT), ValueError, r"save must be a file path.*is a folder"
    ),
    "checks.check_path_writable/empty": Case(
        lambda: chk.check_path_writable("f", "json", ""), ValueError, r"json must be a file path"
    ),
    # -- nlbook.checks: image batches against a model
    "checks.check_image_batch/complex": Case(
        lambda: chk.check_image_batch(img(1, 3, 8, 8, dtype=torch.complex64), 3, "f"), TypeError, r"real floating"
    ),
    "checks.check_image_batch/bool": Case(
        lambda: chk.check_image_batch(img(1, 3, 8, 8, dtype=torch.bool), 3, "f"), TypeError, r"real floating"
    ),
    "checks.check_image_batch/float64-vs-float32-model": Case(
        lambda: chk.check_image_batch(img(1, 3, 8, 8, dtype=torch.float64), 3, "f", like=tiny_resnet()),
        TypeError,
        r"batch is torch\.float64 but the model's parameters are torch\.float32",
    ),
    "checks.check_image_batch/device-vs-model": Case(
        lambda: chk.check_image_batch(torch.empty(1, 3, 8, 8, device="meta"), 3, "f", like=tiny_resnet()),
        ValueError,
        r"batch is on meta but the model's parameters are on cpu",
    ),
    "checks.check_image_batch/like-not-a-model": Case(
        lambda: chk.check_image_batch(img(1, 3, 8, 8), 3, "f", like="resnet"), TypeError, r"like must be an nn\.Module"
    ),
    "checks.check_grid_input/size": Case(
        lambda: chk.check_grid_input(img(1, 4, 5, 5), 4, (4, 4), "f"), ValueError, r"built for 4×4"
    ),
    "checks.to_pair/three": Case(lambda: chk.to_pair((1, 2, 3), "f"), ValueError, r"f: size must be a positive int"),
    "checks.dry_run/torch-error": Case(
        lambda: chk.dry_run(Raises(), img(2, 3, 8, 8), "f"), ValueError, r"f: the model fails on a batch of 2 image"
    ),
    "checks.check_batchnorm_batch/one-value": Case(
        lambda: chk.check_batchnorm_batch("f", {"bn": 1}, 1, "a batch"),
        ValueError,
        r"f: BatchNorm in training needs more than one value per channel.*'bn'",
    ),
    # -- models called directly with a batch of the wrong dtype, device or kind
    "cnn.ResNet/forward-float64": Case(
        lambda: tiny_resnet()(img(1, 3, 8, 8, dtype=torch.float64)), TypeError, r"ResNet: the batch is torch\.float64"
    ),
    "cnn.ResNet/forward-complex": Case(
        lambda: tiny_resnet()(img(1, 3, 8, 8, dtype=torch.complex64)), TypeError, r"ResNet expects a real floating"
    ),
    "cnn.ResNet/forward-meta-batch": Case(
        lambda: tiny_resnet()(torch.empty(1, 3, 8, 8, device="meta")), ValueError, r"ResNet: the batch is on meta"
    ),
    "cnn.ResNet/forward-half-model": Case(
        lambda: tiny_resnet().half()(img(1, 3, 8, 8)),
        TypeError,
        r"batch is torch\.float32 but the model's parameters are torch\.float16",
    ),
    "vit.VisionTransformer/forward-float64": Case(
        lambda: tiny_vit()(img(1, 3, 8, 8, dtype=torch.float64)), TypeError, r"VisionTransformer: the batch is"
    ),
    "coatnet.CoAtNet/forward-float64": Case(
        lambda: coat.coatnet(width=8, depths=(1, 1, 1, 1))(img(1, 3, 32, 32, dtype=torch.float64)),
        TypeError,
        r"CoAtNet: the batch is torch\.float64",
    ),
    # -- TrainConfig: types and ranges at construction
    "train.TrainConfig/lr-string": Case(lambda: cfg(lr="0.1"), TypeError, r"lr must be a finite real number > 0"),
    "train.TrainConfig/lr-bool": Case(lambda: cfg(lr=True), TypeError, r"lr must be a finite real number > 0"),
    "train.TrainConfig/lr-negative": Case(lambda: cfg(lr=-0.1), ValueError, r"lr must be a finite real number > 0"),
    "train.TrainConfig/lr-inf": Case(lambda: cfg(lr=math.inf), ValueError, r"lr must be a finite real number > 0"),
    "train.TrainConfig/epochs-float": Case(lambda: cfg(epochs=1.5), TypeError, r"epochs must be an int >= 1"),
    "train.TrainConfig/epochs-bool": Case(lambda: cfg(epochs=True), TypeError, r"epochs must be an int >= 1"),
    "train.TrainConfig/batch-size-zero": Case(lambda: cfg(batch_size=0), ValueError, r"batch_size must be an int >= 1"),
    "train.TrainConfig/batch-size-string": Case(
        lambda: cfg(batch_size="64"), TypeError, r"batch_size must be an int >= 1"
    ),
    "train.TrainConfig/weight-decay-negative": Case(
        lambda: cfg(weight_decay=-1e-4), ValueError, r"weight_decay must be a finite real number >= 0"
    ),
    "train.TrainConfig/momentum-one": Case(lambda: cfg(momentum=1.0), ValueError, r"momentum must be .*in \[0, 1\)"),
    "train.TrainConfig/momentum-zero-sgd": Case(
        lambda: cfg(momentum=0.0), ValueError, r"momentum must be > 0 with optimizer='sgd'"
    ),
    "train.TrainConfig/warmup-negative": Case(
        lambda: cfg(warmup_epochs=-1.0), ValueError, r"warmup_epochs must be a finite real number >= 0"
    ),
    "train.TrainConfig/warmup-longer-than-run": Case(
        lambda: cfg(epochs=2, warmup_epochs=3.0), ValueError, r"warmup_epochs must be <= epochs \(2\)"
    ),
    "train.TrainConfig/label-smoothing-negative": Case(
        lambda: cfg(label_smoothing=-0.1), ValueError, r"label_smoothing must be .*in \[0, 1\)"
    ),
    "train.TrainConfig/grad-clip-negative": Case(lambda: cfg(grad_clip=-1.0), ValueError, r"grad_clip .*must be .*> 0"),
    "train.TrainConfig/grad-clip-zero": Case(lambda: cfg(grad_clip=0), ValueError, r"grad_clip .*must be .*> 0"),
    "train.TrainConfig/grad-clip-nan": Case(lambda: cfg(grad_clip=NAN), ValueError, r"grad_clip .*must be .*> 0"),
    "train.TrainConfig/max-train-negative": Case(
        lambda: cfg(max_train=-5), ValueError, r"max_train \(None: all images\) must be an int >= 1"
    ),
    "train.TrainConfig/max-train-float": Case(lambda: cfg(max_train=100.0), TypeError, r"max_train .*must be an int"),
    "train.TrainConfig/max-test-zero": Case(
        lambda: cfg(max_test=0), ValueError, r"max_test \(None: all images\) must be an int >= 1, got 0"
    ),
    "train.TrainConfig/amp-dtype-float32": Case(
        lambda: cfg(amp_dtype=torch.float32), ValueError, r"amp_dtype must be None \(automatic\), torch\.bfloat16"
    ),
    "train.TrainConfig/amp-dtype-string": Case(lambda: cfg(amp_dtype="bf16"), ValueError, r"amp_dtype must be None"),
    "train.TrainConfig/amp-string": Case(lambda: cfg(amp="yes"), TypeError, r"amp must be True, False or None"),
    "train.TrainConfig/augment-string": Case(lambda: cfg(augment="no"), TypeError, r"augment must be True or False"),
    "train.TrainConfig/compile-int": Case(lambda: cfg(compile=1), TypeError, r"compile must be True or False"),
    "train.TrainConfig/seed-negative": Case(lambda: cfg(seed=-1), ValueError, r"seed must be an int in \[0, "),
    "train.TrainConfig/optimizer-none": Case(lambda: cfg(optimizer=None), ValueError, r"'sgd' or 'adamw'"),
    # -- fit: model, data, config and device checked before anything moves
    "train.fit/model-string": Case(
        lambda: train.fit("resnet", digits(), device="cpu"), TypeError, r"fit expects an nn\.Module as model"
    ),
    "train.fit/data-string": Case(
        lambda: train.fit(tiny_resnet(), "digits", device="cpu"),
        TypeError,
        r"fit expects an nlbook\.data\.ImageDataset",
    ),
    "train.fit/config-dict": Case(
        lambda: train.fit(tiny_resnet(), digits(), {"epochs": 1}, device="cpu"), TypeError, r"fit expects a TrainConfig"
    ),
    "train.fit/too-many-outputs": Case(
        lambda: fit_cpu(tiny_resnet(num_classes=20), device="cpu"),
        ValueError,
        r"model outputs 20 logits per image but the dataset 'digits' has 10 classes",
    ),
    "train.fit/too-few-outputs": Case(
        lambda: fit_cpu(tiny_resnet(num_classes=3), device="cpu"), ValueError, r"build the model with num_classes=10"
    ),
    "train.fit/not-logits": Case(
        lambda: fit_cpu(nn.Conv2d(3, 10, 3), device="cpu"),
        ValueError,
        r"must return logits of shape \(B, num_classes\)",
    ),
    "train.fit/frozen-model": Case(
        lambda: fit_cpu(frozen_resnet(), device="cpu"), ValueError, r"fit: the model has no trainable parameters"
    ),
    "train.fit/float64-model": Case(
        lambda: fit_cpu(tiny_resnet().double(), device="cpu"),
        TypeError,
        r"fit: the model's parameters are torch\.float64 but the dataset's batches are torch\.float32",
    ),
    "train.fit/torch-error-in-model": Case(
        lambda: fit_cpu(Raises(), device="cpu"), ValueError, r"fit: the model fails on a batch of 2 image"
    ),
    "train.fit/batchnorm-one-value": Case(
        lambda: train.fit(pooled_batchnorm_model(), digits(), cfg(epochs=1, batch_size=1, max_train=4), device="cpu"),
        ValueError,
        r"fit: BatchNorm in training needs more than one value per channel, but batch_size 1",
    ),
    "train.fit/cuda-without-cuda": (
        Case(lambda: fit_cpu(tiny_resnet(), device="cuda"), RuntimeError, r"device 'cuda' .*CUDA is not available"),
        NO_CUDA,
    ),
    "train.fit/mps-without-mps": (
        Case(lambda: fit_cpu(tiny_resnet(), device="mps"), RuntimeError, r"device 'mps' .*MPS is not available"),
        NO_MPS,
    ),
    "train.fit/meta-device": Case(
        lambda: fit_cpu(tiny_resnet(), device="meta"), ValueError, r"device 'meta' .*expected 'cpu', 'cuda'"
    ),
    "train.fit/no-process-group": Case(
        lambda: fit_cpu(tiny_resnet(), device="cpu", distributed=dist.DistInfo(rank=0, world_size=2)),
        RuntimeError,
        r"no process group is initialised",
    ),
    # -- evaluate
    "train.evaluate/model-string": Case(
        lambda: train.evaluate("resnet", digits()), TypeError, r"evaluate expects an nn\.Module as model"
    ),
    "train.evaluate/too-many-outputs": Case(
        lambda: train.evaluate(tiny_resnet(num_classes=20), digits()), ValueError, r"20 logits per image .* 10 classes"
    ),
    "train.evaluate/zero-batch": Case(
        lambda: train.evaluate(tiny_resnet(), digits(), batch_size=0), ValueError, r"batch_size must be an int >= 1"
    ),
    "train.evaluate/no-test-images": Case(
        lambda: train.evaluate(tiny_resnet(), digits().subset(None, 0)), ValueError, r"has no test images"
    ),
    "train.evaluate/device-mismatch": Case(
        lambda: train.evaluate(tiny_resnet(), digits(), device="meta"), ValueError, r"device 'meta'"
    ),
    "train.evaluate/float64-model": Case(
        lambda: train.evaluate(tiny_resnet().double(), digits()), TypeError, r"evaluate: the model's parameters are"
    ),
    # -- bench.measure
    "bench.measure/batchnorm-one-value": Case(
        lambda: bench.measure(tiny_resnet(), (1, 3, 2, 2)),
        ValueError,
        r"measure: BatchNorm in training needs more than one value per channel, but input_shape \(1, 3, 2, 2\)",
    ),
    "bench.measure/float64-model": Case(
        lambda: bench.measure(tiny_resnet().double(), (2, 3, 8, 8)), TypeError, r"measure: the batch is torch\.float32"
    ),
    "bench.measure/amp-float32": Case(
        lambda: bench.measure(tiny_resnet(), (2, 3, 8, 8), amp_dtype=torch.float32),
        ValueError,
        r"amp_dtype must be None, torch\.bfloat16 or torch\.float16",
    ),
    "bench.measure/not-logits": Case(
        lambda: bench.measure(nn.Conv2d(3, 4, 3), (2, 3, 8, 8)), ValueError, r"train=True needs a model that returns"
    ),
    "bench.measure/cuda-without-cuda": (
        Case(lambda: bench.measure(tiny_resnet(), (2, 3, 8, 8), device="cuda"), RuntimeError, r"CUDA is not available"),
        NO_CUDA,
    ),
    "bench.measure/mps-without-mps": (
        Case(lambda: bench.measure(tiny_resnet(), (2, 3, 8, 8), device="mps"), RuntimeError, r"MPS is not available"),
        NO_MPS,
    ),
    "bench.measure/torch-error-in-model": Case(
        lambda: bench.measure(Raises(), (2, 3, 8, 8)), ValueError, r"measure: the model fails on a batch"
    ),
    # -- devices: every choice must exist here
    "runtime.pick_device/meta": Case(lambda: rt.pick_device("meta"), ValueError, r"device 'meta' .*cannot run"),
    "runtime.pick_device/xpu": Case(lambda: rt.pick_device("xpu"), ValueError, r"expected 'cpu', 'cuda', 'cuda:N'"),
    "runtime.pick_device/env-meta": Case(
        lambda: with_env({"NLBOOK_DEVICE": "meta"}, rt.pick_device), ValueError, r"device 'meta' \(NLBOOK_DEVICE\)"
    ),
    "runtime.pick_device/env-unknown": Case(
        lambda: with_env({"NLBOOK_DEVICE": "gpu"}, rt.pick_device),
        ValueError,
        r"unknown device 'gpu' \(NLBOOK_DEVICE\)",
    ),
    "runtime.pick_device/mps-without-mps": (
        Case(lambda: rt.pick_device("mps"), RuntimeError, r"device 'mps' .*Apple MPS is not available"),
        NO_MPS,
    ),
    "runtime.seed_everything/float": Case(
        lambda: rt.seed_everything(1.5), TypeError, r"seed_everything: seed must be an int in \[0, "
    ),
    "runtime.seed_everything/string": Case(
        lambda: rt.seed_everything("0"), TypeError, r"seed_everything: seed must be an int"
    ),
    "runtime.setup/negative-seed": Case(
        lambda: rt.setup(seed=-3, device="cpu"), ValueError, r"seed must be an int in \[0, "
    ),
    "runtime.setup/meta-device": Case(lambda: rt.setup(device="meta"), ValueError, r"device 'meta'"),
    # -- attention: no NaN from a degenerate encoding
    "attention.sincos_position_encoding_2d/temperature-zero": Case(
        lambda: att.sincos_position_encoding_2d(4, 4, 8, temperature=0),
        ValueError,
        r"temperature must be a finite real number > 1",
    ),
    "attention.sincos_position_encoding_2d/temperature-negative": Case(
        lambda: att.sincos_position_encoding_2d(4, 4, 8, temperature=-10.0), ValueError, r"temperature must be"
    ),
    "attention.sincos_position_encoding_2d/temperature-nan": Case(
        lambda: att.sincos_position_encoding_2d(4, 4, 8, temperature=NAN), ValueError, r"temperature must be"
    ),
    "attention.sincos_position_encoding_2d/temperature-string": Case(
        lambda: att.sincos_position_encoding_2d(4, 4, 8, temperature="1e4"), TypeError, r"temperature must be"
    ),
    # -- data
    "data.data_root/not-a-folder": Case(
        lambda: data.data_root(3), TypeError, r"data_root: root must be a folder \(str or os\.PathLike\) or None"
    ),
    # -- distributed: torchrun's variables checked before any process waits on another
    "distributed.init_distributed/rank-outside-world": Case(
        lambda: with_env({**TWO_PROCESSES, "RANK": "5"}, lambda: dist.init_distributed(device="cpu")),
        ValueError,
        r"RANK must be in \[0, WORLD_SIZE\) = \[0, 2\), got 5",
    ),
    "distributed.init_distributed/world-zero": Case(
        lambda: with_env({**TWO_PROCESSES, "WORLD_SIZE": "0"}, lambda: dist.init_distributed(device="cpu")),
        ValueError,
        r"WORLD_SIZE must be an int >= 1, got 0",
    ),
    "distributed.init_distributed/world-not-int": Case(
        lambda: with_env({**TWO_PROCESSES, "WORLD_SIZE": "two"}, lambda: dist.init_distributed(device="cpu")),
        ValueError,
        r"WORLD_SIZE must be an integer",
    ),
    "distributed.init_distributed/negative-local-rank": Case(
        lambda: with_env({**TWO_PROCESSES, "LOCAL_RANK": "-1"}, lambda: dist.init_distributed(device="cpu")),
        ValueError,
        r"LOCAL_RANK must be in \[0, WORLD_SIZE\)",
    ),
    "distributed.init_distributed/bad-port": Case(
        lambda: with_env(
            {**TWO_PROCESSES, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "99999"},
            lambda: dist.init_distributed(device="cpu"),
        ),
        ValueError,
        r"MASTER_PORT must be in \[1, 65535\], got 99999",
    ),
    "distributed.all_reduce_sum/no-process-group": Case(
        lambda: dist.all_reduce_sum(torch.ones(2), dist.DistInfo(rank=0, world_size=2)),
        RuntimeError,
        r"all_reduce_sum: info describes 2 processes but no process group is initialised",
    ),
    "distributed.barrier/no-process-group": Case(
        lambda: dist.barrier(dist.DistInfo(rank=1, world_size=2)), RuntimeError, r"barrier: .*init_distributed"
    ),
    "distributed.wrap_model/no-process-group": Case(
        lambda: dist.wrap_model(tiny_resnet(), dist.DistInfo(rank=0, world_size=2), sync_batchnorm=False),
        RuntimeError,
        r"wrap_model: info describes 2 processes",
    ),
}
ISSUE_17_CASES |= {
    # -- hyper-parameters of the wrong type, and shapes the teaching convolution did not check
    "cnn.ResNet/float-width": Case(
        lambda: cnn.ResNet(widths=(4.5, 8), depths=(1, 1)), ValueError, r"widths and depths must be positive ints"
    ),
    "cnn.ResNet/string-classes": Case(
        lambda: tiny_resnet(num_classes="10"), ValueError, r"num_classes and in_channels must be >= 1"
    ),
    "cnn.conv2d_sliding/zero-stride": Case(
        lambda: cnn.conv2d_sliding(img(1, 3, 5, 5), img(2, 3, 3, 3), stride=0),
        ValueError,
        r"conv2d_sliding: stride must be an int >= 1",
    ),
    "cnn.conv2d_sliding/negative-padding": Case(
        lambda: cnn.conv2d_sliding(img(1, 3, 5, 5), img(2, 3, 3, 3), padding=-1),
        ValueError,
        r"conv2d_sliding: padding must be an int >= 0",
    ),
    "cnn.conv2d_sliding/weight-rank-3": Case(
        lambda: cnn.conv2d_sliding(img(1, 3, 5, 5), img(3, 3, 3)), ValueError, r"weight must be a 4-D tensor"
    ),
    "data.ImageDataset/subset-negative": Case(
        lambda: digits().subset(-5, None), ValueError, r"ImageDataset\.subset: max_train must be an int >= 0, got -5"
    ),
    "data.ImageDataset/subset-float": Case(
        lambda: digits().subset(None, 10.0), TypeError, r"ImageDataset\.subset: max_test must be an int >= 0"
    ),
    "cnn.conv2d_sliding/kernel-larger-than-input": Case(
        lambda: cnn.conv2d_sliding(img(1, 3, 2, 2), img(2, 3, 3, 3)), ValueError, r"3x3 kernel does not fit a 2x2"
    ),
}


ISSUE_17_CASES |= {
    # -- the launcher: output paths checked before anything trains
    "launch.main/save-in-missing-folder": Case(
        lambda: launch.main(["--dataset", "digits", "--save", "/nonexistent-nlbook/w.pt"]),
        ValueError,
        r"nlbook\.launch: --save must be a file path in an existing folder",
    ),
    "launch.main/json-is-a-folder": Case(
        lambda: launch.main(["--dataset", "digits", "--json", str(ROOT)]),
        ValueError,
        r"nlbook\.launch: --json must be a file path, but .* is a folder",
    ),
}
ISSUE_17_CASES |= {
    # -- attention helpers: q, k, v, bias and scale checked before the kernel sees them
    "attention.scaled_dot_product_attention/dtype-mismatch": Case(
        lambda: att.scaled_dot_product_attention(img(4, 8), img(5, 8, dtype=torch.float64), img(5, 2)),
        TypeError,
        r"expects q, k, v of one floating-point dtype, got torch\.float32, torch\.float64, torch\.float32",
    ),
    "attention.scaled_dot_product_attention/integer-q": Case(
        lambda: att.scaled_dot_product_attention(*(torch.ones(4, 8, dtype=torch.long) for _ in range(3))),
        TypeError,
        r"one floating-point dtype",
    ),
    "attention.scaled_dot_product_attention/batch-mismatch": Case(
        lambda: att.scaled_dot_product_attention(img(2, 4, 8), img(3, 5, 8), img(3, 5, 2)),
        ValueError,
        r"batch dimensions \(all but the last two\) must broadcast",
    ),
    "attention.scaled_dot_product_attention/bias-not-a-tensor": Case(
        lambda: att.scaled_dot_product_attention(img(4, 8), img(5, 8), img(5, 2), bias=[[0.0]]),
        TypeError,
        r"bias must be a float tensor of logits or a boolean mask",
    ),
    "attention.scaled_dot_product_attention/integer-bias": Case(
        lambda: att.scaled_dot_product_attention(
            img(4, 8), img(5, 8), img(5, 2), bias=torch.zeros(4, 5, dtype=torch.long)
        ),
        TypeError,
        r"bias must be a float tensor of logits or a boolean mask .*torch\.int64",
    ),
    "attention.scaled_dot_product_attention/scale-string": Case(
        lambda: att.scaled_dot_product_attention(img(4, 8), img(5, 8), img(5, 2), scale="1"),
        TypeError,
        r"scale \(None: 1/sqrt\(d\)\) must be a finite real number > 0",
    ),
    "attention.scaled_dot_product_attention/scale-nan": Case(
        lambda: att.scaled_dot_product_attention(img(4, 8), img(5, 8), img(5, 2), scale=NAN),
        ValueError,
        r"scale .*must be a finite real number > 0",
    ),
    "attention.scaled_dot_product_attention/dropout-string": Case(
        lambda: att.scaled_dot_product_attention(img(4, 8), img(5, 8), img(5, 2), dropout_p="0.1"),
        ValueError,
        r"dropout_p must be a probability in \[0, 1\)",
    ),
    "attention.attention_weights/not-tensors": Case(
        lambda: att.attention_weights([1.0], [1.0]), TypeError, r"attention_weights expects torch\.Tensor q and k"
    ),
    "attention.attention_weights/bias-shape": Case(
        lambda: att.attention_weights(img(1, 4, 8), img(1, 5, 8), bias=img(3, 3)),
        ValueError,
        r"attention_weights: bias must broadcast to the logits' shape \(1, 4, 5\)",
    ),
    "attention.relative_position_logits_2d/q-not-a-tensor": Case(
        lambda: att.relative_position_logits_2d([1.0], img(7, 8), img(7, 8), 4, 4),
        TypeError,
        r"q must be a torch\.Tensor",
    ),
    "attention.relative_position_logits_2d/q-rank-3": Case(
        lambda: att.relative_position_logits_2d(img(2, 16, 8), img(7, 8), img(7, 8), 4, 4),
        ValueError,
        r"q must be \(B, heads, height\*width, head_dim\)",
    ),
    "attention.relative_position_logits_2d/zero-height": Case(
        lambda: att.relative_position_logits_2d(img(1, 2, 16, 8), img(7, 8), img(7, 8), 0, 4),
        ValueError,
        r"height must be a positive int",
    ),
    "attention.relative_position_logits_2d_reference/q-not-a-tensor": Case(
        lambda: att.relative_position_logits_2d_reference("q", img(7, 8), img(7, 8), 4, 4), TypeError, r"q must be"
    ),
    "attention.MultiHeadAttention/float-dim": Case(
        lambda: att.MultiHeadAttention(8.0, 2), ValueError, r"MultiHeadAttention: dim must be a positive int"
    ),
    "attention.MultiHeadAttention/forward-float64": Case(
        lambda: att.MultiHeadAttention(8, 2)(img(1, 5, 8, dtype=torch.float64)),
        TypeError,
        r"MultiHeadAttention: the batch is torch\.float64 but the model's parameters are torch\.float32",
    ),
    "attention.MultiHeadAttention/forward-not-a-tensor": Case(
        lambda: att.MultiHeadAttention(8, 2)([[0.0] * 8]), TypeError, r"expects a torch\.Tensor of \(B, N, 8\) tokens"
    ),
    "attention.MultiHeadSelfAttention2d/forward-float64": Case(
        lambda: att.MultiHeadSelfAttention2d(8, 2)(img(1, 8, 4, 4, dtype=torch.float64)),
        TypeError,
        r"MultiHeadSelfAttention2d: the batch is torch\.float64",
    ),
    "attention.sincos_position_encoding_2d/integer-dtype": Case(
        lambda: att.sincos_position_encoding_2d(4, 4, 8, dtype=torch.long),
        TypeError,
        r"dtype must be a floating-point torch\.dtype or None",
    ),
    # -- blocks called with a batch of another dtype than their parameters
    "cnn.BasicBlock/forward-float64": Case(
        lambda: cnn.BasicBlock(4, 4)(img(1, 4, 8, 8, dtype=torch.float64)), TypeError, r"BasicBlock: the batch is"
    ),
    "nonlocal_block.NonLocalBlock2d/forward-float64": Case(
        lambda: nl.NonLocalBlock2d(8)(img(1, 8, 4, 4, dtype=torch.float64)), TypeError, r"NonLocalBlock2d: the batch"
    ),
    "hybrid.SqueezeExcitation/forward-float64": Case(
        lambda: hy.SqueezeExcitation(8)(img(1, 8, 4, 4, dtype=torch.float64)), TypeError, r"SqueezeExcitation: the"
    ),
    "hybrid.BoTBlock/forward-float64": Case(
        lambda: hy.BoTBlock(16, 16, 4)(img(1, 16, 4, 4, dtype=torch.float64)), TypeError, r"BoTBlock: the batch is"
    ),
    "coatnet.MBConv/forward-float64": Case(
        lambda: coat.MBConv(8, 8)(img(1, 8, 4, 4, dtype=torch.float64)), TypeError, r"MBConv: the batch is"
    ),
    "vit.PatchEmbedding/forward-float64": Case(
        lambda: vit.PatchEmbedding(8, 4, 3, 8)(img(1, 3, 8, 8, dtype=torch.float64)), TypeError, r"the batch is"
    ),
    "checks.check_like_model/dtype": Case(
        lambda: chk.check_like_model(img(2, 8, dtype=torch.float16), nn.Linear(8, 2), "f"),
        TypeError,
        r"f: the batch is torch\.float16 but the model's parameters are torch\.float32",
    ),
    "checks.check_like_model/device": Case(
        lambda: chk.check_like_model(torch.empty(2, 8, device="meta"), nn.Linear(8, 2), "f"),
        ValueError,
        r"f: the batch is on meta but the model's parameters are on cpu",
    ),
    # -- wrong objects for training's helpers
    "cnn.receptive_field/not-a-sequence": Case(
        lambda: cnn.receptive_field("conv"), TypeError, r"receptive_field expects a sequence of \(name, kernel_size"
    ),
    "cnn.receptive_field/short-layer": Case(
        lambda: cnn.receptive_field([("pool",)]), ValueError, r"layer 0 must be a \(name, kernel_size, stride\) triple"
    ),
    "cnn.receptive_field/float-kernel": Case(
        lambda: cnn.receptive_field([("conv", 3.0, 1)]), ValueError, r"needs int kernel_size and stride"
    ),
    "train.make_optimizer/not-a-module": Case(
        lambda: train.make_optimizer("resnet", train.TrainConfig()), TypeError, r"make_optimizer expects an nn\.Module"
    ),
    "train.TrainConfig/from-profile-name": Case(
        lambda: train.TrainConfig.from_profile("quick"), TypeError, r"from_profile expects an nlbook\.runtime\.Profile"
    ),
    "train.count_parameters/trainable-only-string": Case(
        lambda: train.count_parameters(tiny_resnet(), trainable_only="no"), TypeError, r"trainable_only must be True or"
    ),
    "train.fit/name-int": Case(
        lambda: fit_cpu(tiny_resnet(), device="cpu", name=3), TypeError, r"fit: name must be a str"
    ),
    "train.fit/progress-string": Case(
        lambda: fit_cpu(tiny_resnet(), device="cpu", progress="no"), TypeError, r"fit: progress must be True, False"
    ),
    "bench.count_flops/backward-batchnorm-one-value": Case(
        lambda: bench.count_flops(tiny_resnet(), img(1, 3, 2, 2), backward=True),
        ValueError,
        r"count_flops: BatchNorm in training needs more than one value per channel, but a batch of shape \(1, 3, 2, 2",
    ),
    "bench.count_flops/float64-batch": Case(
        lambda: bench.count_flops(tiny_resnet(), img(2, 3, 8, 8, dtype=torch.float64)),
        TypeError,
        r"ResNet: the batch is",
    ),
    "bench.measure/train-string": Case(
        lambda: bench.measure(tiny_resnet(), (2, 3, 8, 8), train="yes"), TypeError, r"measure: train must be True or"
    ),
    "bench.measure/name-int": Case(
        lambda: bench.measure(tiny_resnet(), (2, 3, 8, 8), name=5), TypeError, r"measure: name must be a str"
    ),
    "data.load_dataset/meta-device": Case(
        lambda: data.load_dataset("digits", device="meta"), ValueError, r"device 'meta' .*expected 'cpu', 'cuda'"
    ),
    "data.load_dataset/cuda-without-cuda": (
        Case(lambda: data.load_dataset("digits", device="cuda"), RuntimeError, r"CUDA is not available"),
        NO_CUDA,
    ),
    "data.DeviceLoader/zero-std": Case(
        lambda: data.DeviceLoader(
            img(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), 2, mean=(0.5,), std=(0.0,)
        ),
        ValueError,
        r"every std must be a finite number > 0",
    ),
    "runtime.device_name/meta": Case(
        lambda: rt.device_name(torch.device("meta")), ValueError, r"device_name: no hardware behind a 'meta' device"
    ),
    "distributed.DistInfo/rank-string": Case(
        lambda: dist.DistInfo(rank="0", world_size=2), TypeError, r"DistInfo: rank must be an int"
    ),
    "distributed.DistInfo/world-float": Case(
        lambda: dist.DistInfo(world_size=2.0), TypeError, r"DistInfo: world_size must be an int"
    ),
    "distributed.DistInfo/unknown-backend": Case(
        lambda: dist.DistInfo(backend="mpi"), ValueError, r"backend must be None, 'nccl' or 'gloo'"
    ),
    "distributed.barrier/info-int": Case(
        lambda: dist.barrier(3), TypeError, r"barrier: info must be a DistInfo or None"
    ),
    "distributed.all_reduce_sum/info-string": Case(
        lambda: dist.all_reduce_sum(torch.ones(1), "x"), TypeError, r"all_reduce_sum: info must be a DistInfo"
    ),
    "distributed.wrap_model/not-a-module": Case(
        lambda: dist.wrap_model("resnet", dist.DistInfo()), TypeError, r"wrap_model expects an nn\.Module"
    ),
}
# ---- issue 24: every public helper and model guards its entry ------------------------------------------------------
# Wrong types, shapes, dtypes, devices, layouts and ranges, each named with what was expected; (H, W, C) images
# refused with the permute that fixes them; flags that are not True/False refused (a string such as "no" is truthy).
HWC_IMAGE = img(8, 8, 3)  # an image in numpy/PIL/matplotlib layout where (C, H, W) is expected


def hard_conv_attention() -> nn.Module:
    """conv_as_attention at alpha = inf (hard attention): exact for integer centres."""
    return la.conv_as_attention(nn.Conv2d(2, 3, 3, padding=1), alpha=math.inf)


def off_grid(layer: nn.Module, head: int = 4) -> nn.Module:
    with torch.no_grad():
        layer.centers[head] += 0.5  # between pixels: no key at distance 0
    return layer


def plt_figure() -> object:
    import matplotlib.pyplot as plt

    return plt.figure()


def a_model_run(**kw: object) -> object:
    base = dict(
        name="resnet",
        strategy="cnn",
        seed=0,
        dataset="digits",
        profile="quick",
        test_acc=0.5,
        train_wall_s=1.0,
        epochs=1,
        train_images=10,
        test_images=5,
        config={},
        history=[],
    )
    return cmp.ModelRun(**(base | kw))


def a_diagram() -> object:
    d = dg.Diagram()
    d.io("a", "a", (0, 0))
    d.io("b", "b", (0, 1))
    return d


HELPER_CASES: dict[str, Case | tuple[Case, pytest.MarkDecorator]] = {
    # -- checks: the new helpers, and the old ones fed the wrong kind of object
    "checks.check_bool/string": Case(
        lambda: chk.check_bool("f", "flag", "no"), TypeError, r"f: flag must be True or False, got 'no' \(str\)"
    ),
    "checks.check_bool/int": Case(lambda: chk.check_bool("f", "flag", 1), TypeError, r"flag must be True or False"),
    "checks.check_str/int": Case(lambda: chk.check_str("f", "title", 3), TypeError, r"f: title must be a str, got 3"),
    "checks.check_str/empty": Case(lambda: chk.check_str("f", "name", ""), ValueError, r"name must be a non-empty str"),
    "checks.check_sequence/bare-string": Case(
        lambda: chk.check_sequence("f", "arms", "cnn", what="arm names"),
        TypeError,
        r"f: arms must be a list \(or tuple\) of arm names, got 'cnn' \(str\)",
    ),
    "checks.check_sequence/too-short": Case(
        lambda: chk.check_sequence("f", "xs", [], min_len=1), ValueError, r"xs must hold at least 1 items, got 0"
    ),
    "checks.check_module/string": Case(
        lambda: chk.check_module("f", "model", "resnet"), TypeError, r"f: model must be a torch\.nn\.Module, got str"
    ),
    "checks.check_device/unreadable": Case(
        lambda: chk.check_device("f", "device", "gpu"), ValueError, r"f: device 'gpu' is not a device name"
    ),
    "checks.check_device/number": Case(
        lambda: chk.check_device("f", "device", 0.5), TypeError, r"device must be a torch\.device, a device name"
    ),
    "checks.check_device/cuda-without-cuda": (
        Case(
            lambda: chk.check_device("f", "device", "cuda"), RuntimeError, r"f: device 'cuda' .*CUDA is not available"
        ),
        NO_CUDA,
    ),
    "checks.check_tensor/list": Case(
        lambda: chk.check_tensor("f", "x", [1.0], shape="(N,)"),
        TypeError,
        r"f: x must be a torch\.Tensor \(N,\), got list; convert it with torch\.as_tensor",
    ),
    "checks.check_tensor/rank": Case(
        lambda: chk.check_tensor("f", "x", img(2, 3), dims=(3, 4)), ValueError, r"x must be a 3-D or 4-D tensor"
    ),
    "checks.check_tensor/integer-for-float": Case(
        lambda: chk.check_tensor("f", "x", torch.ones(2, dtype=torch.long), kind="float"),
        TypeError,
        r"x must be a floating-point tensor, got torch\.int64",
    ),
    "checks.check_image/hwc": Case(
        lambda: chk.check_image(HWC_IMAGE, "f", channels=(1, 3)),
        ValueError,
        r"f: image must be \(C, H, W\) with C = 1 or 3 channels, got shape \(8, 8, 3\); it looks like an \(H, W, C\) "
        r"image: pass image\.permute\(2, 0, 1\)",
    ),
    "checks.check_image/batch": Case(
        lambda: chk.check_image(img(1, 3, 8, 8), "f"), ValueError, r"image must be one \(C, H, W\) image, got a batch"
    ),
    "checks.check_ints/bare-int": Case(
        lambda: chk.check_ints("f", "widths", 8), TypeError, r"f: widths must be positive ints: a tuple of ints, got 8"
    ),
    "checks.check_ints/bool": Case(lambda: chk.check_ints("f", "depths", (True, 2)), TypeError, r"depths must be"),
    "checks.check_ints/length": Case(
        lambda: chk.check_ints("f", "grid", (2, 2, 2), length=2),
        ValueError,
        r"grid must be positive ints: a tuple of 2",
    ),
    "checks.check_indices/repeat": Case(
        lambda: chk.check_indices("f", "stages", (1, 1), 3), ValueError, r"f: stages repeats an index"
    ),
    "checks.check_indices/out-of-range": Case(
        lambda: chk.check_indices("f", "stages", (3,), 3), ValueError, r"stages must index the 3 stages"
    ),
    "checks.to_pair/none": Case(
        lambda: chk.to_pair(None, "f"), ValueError, r"f: size must be a positive int or a pair"
    ),
    "checks.to_pair/float": Case(lambda: chk.to_pair(4.0, "f"), ValueError, r"size must be a positive int or a pair"),
    "checks.check_like_model/not-a-tensor": Case(
        lambda: chk.check_like_model([1.0], nn.Linear(2, 2), "f"), TypeError, r"f expects a torch\.Tensor, got list"
    ),
    "checks.dry_run/not-a-module": Case(
        lambda: chk.dry_run("resnet", img(2, 3, 8, 8), "f"), TypeError, r"f: model must be a torch\.nn\.Module"
    ),
    "checks.dry_run/batch-a-list": Case(
        lambda: chk.dry_run(nn.Conv2d(3, 3, 1), [1.0], "f"), TypeError, r"f: the batch must be a torch\.Tensor"
    ),
    "checks.check_batchnorm_batch/sizes-a-list": Case(
        lambda: chk.check_batchnorm_batch("f", [1], 2, "x"), TypeError, r"f: sizes must be the dict of BatchNorm sizes"
    ),
    "checks.check_batchnorm_batch/batch-a-string": Case(
        lambda: chk.check_batchnorm_batch("f", {"bn": 4}, "2", "x"), TypeError, r"f: batch must be an int >= 1"
    ),
    "checks.autocasting/not-a-string": Case(
        lambda: chk.autocasting(3), TypeError, r"autocasting: device_type must be a device type such as 'cpu'"
    ),
    "checks.check_image_batch/channels-last": Case(
        lambda: chk.check_image_batch(img(2, 8, 8, 3), 3, "f"),
        ValueError,
        r"f expects 3 input channels .*looks like a channels-last \(B, H, W, C\) batch: pass x\.permute\(0, 3, 1, 2\)",
    ),
    # -- viz: images in (C, H, W) only, everyday mistakes named
    "viz.to_display/hwc": Case(
        lambda: viz.to_display(HWC_IMAGE),
        ValueError,
        r"to_display: image must be \(C, H, W\) .*image\.permute\(2, 0, 1\)",
    ),
    "viz.to_display/four-channels": Case(
        lambda: viz.to_display(img(4, 8, 8)), ValueError, r"image must be \(C, H, W\) with C = 1 or 3 channels"
    ),
    "viz.to_display/numpy": Case(
        lambda: viz.to_display(HWC_IMAGE.numpy()), TypeError, r"image must be a torch\.Tensor .*torch\.as_tensor"
    ),
    "viz.to_display/bool": Case(
        lambda: viz.to_display(torch.zeros(3, 8, 8, dtype=torch.bool)), TypeError, r"image must be a real .*torch\.bool"
    ),
    "viz.to_display/empty": Case(
        lambda: viz.to_display(torch.zeros(3, 0, 8)), ValueError, r"to_display: image is empty"
    ),
    "viz.show_images/channels-last": Case(
        lambda: viz.show_images(img(2, 8, 8, 3)), ValueError, r"show_images: .*images\.permute\(0, 3, 1, 2\)"
    ),
    "viz.show_images/empty": Case(lambda: viz.show_images(img(0, 3, 8, 8)), ValueError, r"images is an empty batch"),
    "viz.show_images/ncols-zero": Case(
        lambda: viz.show_images(img(2, 3, 8, 8), ncols=0), ValueError, r"show_images: ncols must be an int >= 1"
    ),
    "viz.show_images/labels-a-string": Case(
        lambda: viz.show_images(img(2, 3, 8, 8), labels="ab"), TypeError, r"labels must be a list \(or tuple\)"
    ),
    "viz.show_images/label-without-name": Case(
        lambda: viz.show_images(img(2, 3, 8, 8), labels=[0, -1], classes=["a", "b"]),
        ValueError,
        r"show_images: label -1 has no name among the 2 classes",
    ),
    "viz.show_images/classes-a-string": Case(
        lambda: viz.show_images(img(2, 3, 8, 8), labels=[0, 1], classes="ab"), TypeError, r"classes must be a list"
    ),
    "viz.show_images/float-labels": Case(
        lambda: viz.show_images(img(2, 3, 8, 8), labels=torch.tensor([0.0, 1.0])),
        TypeError,
        r"labels must be an integer tensor",
    ),
    "viz.plot_history/empty": Case(lambda: viz.plot_history([]), ValueError, r"plot_history: no records to plot"),
    "viz.plot_history/dict-of-strings": Case(
        lambda: viz.plot_history({"a": "b"}), TypeError, r"plot_history: records\['a'\] must be a TrainRecord"
    ),
    "viz.plot_feature_maps/n-zero": Case(
        lambda: viz.plot_feature_maps(img(3, 8, 8), n=0), ValueError, r"plot_feature_maps: n must be an int >= 1"
    ),
    "viz.plot_feature_maps/complex": Case(
        lambda: viz.plot_feature_maps(torch.zeros(3, 8, 8, dtype=torch.complex64)), TypeError, r"fmap must be a real"
    ),
    "viz.plot_filters/n-negative": Case(
        lambda: viz.plot_filters(img(4, 3, 3, 3), n=-1), ValueError, r"plot_filters: n must be an int >= 1"
    ),
    "viz.plot_attention_maps/hwc-image": Case(
        lambda: viz.plot_attention_maps(HWC_IMAGE, torch.rand(4, 4), [(0, 0)], (2, 2)),
        ValueError,
        r"image\.permute\(2, 0, 1\)",
    ),
    "viz.plot_attention_maps/grid-an-int": Case(
        lambda: viz.plot_attention_maps(img(3, 8, 8), torch.rand(4, 4), [(0, 0)], 2),
        ValueError,
        r"plot_attention_maps: grid must be a \(rows, cols\) pair of positive ints, got 2",
    ),
    "viz.plot_attention_maps/query-not-a-pair": Case(
        lambda: viz.plot_attention_maps(img(3, 8, 8), torch.rand(4, 4), (0, 1), (2, 2)),
        ValueError,
        r"queries must be \(row, col\) pairs of ints",
    ),
    "viz.plot_record_curves/not-loaded": Case(
        lambda: viz.plot_record_curves({}), TypeError, r"plot_record_curves: record must be a loaded record"
    ),
    "viz.plot_record_curves/incomplete": Case(
        lambda: viz.plot_record_curves({"arms": []}), ValueError, r"plot_record_curves: record: missing 'format'"
    ),
    "viz.plot_record_curves/arms-a-string": Case(
        lambda: viz.plot_record_curves(a_record(), arms="cnn"), TypeError, r"arms must be a list \(or tuple\)"
    ),
    "viz.plot_record_curves/metric-not-a-string": Case(
        lambda: viz.plot_record_curves(a_record(), metric=3), TypeError, r"plot_record_curves: metric must be a str"
    ),
    "viz.plot_record_sweep/logx-a-string": Case(
        lambda: viz.plot_record_sweep(a_record(x=100), logx="no"), TypeError, r"logx must be True or False"
    ),
    # -- diagrams: wrong types named, no SyntaxError or AttributeError from inside
    "diagrams.eval_shape/not-a-string": Case(
        lambda: dg.eval_shape(3, {"B": 1}), TypeError, r"eval_shape: shape must be a str"
    ),
    "diagrams.eval_shape/unclosed-bracket": Case(
        lambda: dg.eval_shape("B×(C", {"B": 1, "C": 2}), ValueError, r"eval_shape: cannot read dimension '\(C'"
    ),
    "diagrams.eval_shape/size-a-string": Case(
        lambda: dg.eval_shape("B", {"B": "2"}), TypeError, r"the size of 'B' must be an int >= 0, got '2'"
    ),
    "diagrams.eval_shape/sizes-a-list": Case(
        lambda: dg.eval_shape("B", [1]), TypeError, r"eval_shape: sizes must be a dict of symbol -> int"
    ),
    "diagrams.eval_shape/circular-definition": Case(
        lambda: dg.eval_shape("N", {}, {"N": "N+1"}), ValueError, r"the definition of 'N' refers to itself"
    ),
    "diagrams.eval_shape/division-by-zero": Case(
        lambda: dg.eval_shape("B/C", {"B": 2, "C": 0}), ValueError, r"dimension 'B/C' divides by zero"
    ),
    "diagrams.shapes_from/no-inputs": Case(
        lambda: dg.shapes_from(nn.Conv2d(3, 4, 1)), TypeError, r"shapes_from: pass the inputs to run the model on"
    ),
    "diagrams.shapes_from/model-fails": Case(
        lambda: dg.shapes_from(nn.Conv2d(3, 4, 1), img(1, 5, 8, 8)),
        ValueError,
        r"shapes_from: Conv2d fails on inputs of shapes \[\(1, 5, 8, 8\)\]",
    ),
    "diagrams.Node/position-a-string": Case(
        lambda: dg.Node("a", "a", "conv", "0", 0), TypeError, r"Node 'a': x must be a finite number"
    ),
    "diagrams.Node/params-a-string": Case(
        lambda: dg.Node("a", "a", "conv", 0, 0, params="w"), TypeError, r"params must be a tuple of parameter names"
    ),
    "diagrams.Edge/via-flat": Case(
        lambda: dg.Edge("a", "b", via=(1, 2)), TypeError, r"Edge 'a'->'b': via must be a tuple of \(x, y\) points"
    ),
    "diagrams.Edge/shape-an-int": Case(lambda: dg.Edge("a", "b", shape=3), TypeError, r"shape must be a str or None"),
    "diagrams.Diagram/nodes-a-list": Case(lambda: dg.Diagram(nodes=[1]), TypeError, r"Diagram: nodes must be a dict"),
    "diagrams.Diagram/box-at-an-int": Case(
        lambda: dg.Diagram().box("a", "a", "conv", 3), TypeError, r"Diagram\.box: at must be an \(x, y\) pair"
    ),
    "diagrams.Diagram/op-symbol": Case(
        lambda: dg.Diagram().op("a", "-", (0, 0)), ValueError, r"Diagram\.op: symbol must be '\+' or '×'"
    ),
    "diagrams.Diagram/edge-unknown-option": Case(
        lambda: a_diagram().edge("a", "b", colour="red"), TypeError, r"Diagram\.edge: unknown option\(s\) \['colour'\]"
    ),
    "diagrams.Diagram/chain-a-list": Case(
        lambda: a_diagram().chain(["a", "b"]), TypeError, r"Diagram\.chain: keys .* must be a str"
    ),
    "diagrams.Diagram/group-unknown-node": Case(
        lambda: a_diagram().group(["zz"], "x"), ValueError, r"Diagram\.group: unknown node\(s\) \['zz'\]"
    ),
    "diagrams.Diagram/check-shapes-a-list": Case(
        lambda: dg.se_diagram().check([1, 2], B=1), TypeError, r"Diagram\.check: shapes must be the dict"
    ),
    "diagrams.Diagram/draw-empty": Case(
        lambda: dg.Diagram().draw(), ValueError, r"Diagram\.draw: the diagram has no nodes to draw"
    ),
    "diagrams.draw_legend/ax-a-figure": Case(
        lambda: dg.draw_legend(plt_figure()), TypeError, r"draw_legend: ax must be a matplotlib Axes or None"
    ),
    "diagrams.basic_block_diagram/downsample-a-string": Case(
        lambda: dg.basic_block_diagram(downsample="yes"), TypeError, r"downsample must be True or False, got 'yes'"
    ),
    "diagrams.basic_block_diagram/channels-unreadable": Case(
        lambda: dg.basic_block_diagram(channels="C)"), ValueError, r"channels 'C\)' is not a size expression"
    ),
    "diagrams.attention_diagram/bias-a-string": Case(
        lambda: dg.attention_diagram(bias="no"), TypeError, r"attention_diagram: bias must be True or False"
    ),
    "diagrams.nonlocal_block_diagram/sub-sample-a-string": Case(
        lambda: dg.nonlocal_block_diagram(sub_sample="False"), TypeError, r"sub_sample must be True or False"
    ),
    "diagrams.cbam_diagram/spatial-norm-a-string": Case(
        lambda: dg.cbam_diagram(spatial_norm="yes"), TypeError, r"cbam_diagram: spatial_norm must be True or False"
    ),
    "diagrams.bot_block_diagram/downsample-an-int": Case(
        lambda: dg.bot_block_diagram(downsample=2), TypeError, r"bot_block_diagram: downsample must be True or False"
    ),
    "diagrams.mbconv_diagram/downsample-a-string": Case(
        lambda: dg.mbconv_diagram(downsample="x"), TypeError, r"mbconv_diagram: downsample must be True or False"
    ),
    "diagrams.transformer_block_2d_diagram/downsample-a-string": Case(
        lambda: dg.transformer_block_2d_diagram(downsample="x"), TypeError, r"downsample must be True or False"
    ),
    "diagrams.window_attention_diagram/shifted-an-int": Case(
        lambda: dg.window_attention_diagram(shifted=1), TypeError, r"shifted must be True or False, got 1"
    ),
    "diagrams.draw_se/unknown-option": Case(
        lambda: dg.draw_se(reduction=4), TypeError, r"draw_se: unknown option\(s\) \['reduction'\]; se_diagram takes"
    ),
    "diagrams.draw_vit/ax-a-list": Case(lambda: dg.draw_vit([1]), TypeError, r"draw_vit: ax must be a matplotlib Axes"),
    "diagrams.draw_patch_embedding/unknown-option": Case(
        lambda: dg.draw_patch_embedding(patch=4), TypeError, r"draw_patch_embedding: unknown option\(s\) \['patch'\]"
    ),
    # -- comparison
    "comparison.time_to_accuracy/history-a-string": Case(
        lambda: cmp.time_to_accuracy("history", 0.5), TypeError, r"time_to_accuracy: history must be a list"
    ),
    "comparison.time_to_accuracy/accuracy-in-percent": Case(
        lambda: cmp.time_to_accuracy([{"seconds": 1.0, "test_acc": 90.0}], 0.5),
        ValueError,
        r"epoch 0's test_acc must be an accuracy fraction in \[0, 1\], got 90\.0",
    ),
    "comparison.time_to_accuracy/negative-seconds": Case(
        lambda: cmp.time_to_accuracy([{"seconds": -1.0, "test_acc": 0.9}], 0.5),
        ValueError,
        r"epoch 0's seconds must be a finite number >= 0",
    ),
    "comparison.summarize/one-run": Case(
        lambda: cmp.summarize(a_model_run()), TypeError, r"summarize: items must be a list \(or tuple\)"
    ),
    "comparison.summarize/accuracy-in-percent": Case(
        lambda: cmp.summarize([a_model_run(test_acc=85.0)]),
        ValueError,
        r"'resnet' has test_acc 85\.0; expected an accuracy",
    ),
    "comparison.format_table/one-row": Case(
        lambda: cmp.format_table({"model": "a"}, baseline=None), TypeError, r"format_table: rows must be a list"
    ),
    "comparison.format_table/strings": Case(
        lambda: cmp.format_table(["a"], baseline=None), TypeError, r"format_table: rows\[0\] must be a dict"
    ),
    "comparison.format_table/value-a-string": Case(
        lambda: cmp.format_table([{"model": "a", "params": "1M"}], baseline=None),
        TypeError,
        r"rows\[0\]\['params'\] must be a number or None, got '1M'",
    ),
    "comparison.format_table/title-an-int": Case(
        lambda: cmp.format_table([{"model": "a"}], baseline=None, title=3), TypeError, r"title must be a str or None"
    ),
    # benchmark_model checks everything before the data loads and the model trains
    "comparison.benchmark_model/warmup-negative": Case(
        lambda: cmp.benchmark_model("resnet", "digits", warmup=-1, device="cpu"),
        ValueError,
        r"benchmark_model: warmup must be an int >= 0",
    ),
    "comparison.benchmark_model/cost-a-string": Case(
        lambda: cmp.benchmark_model("resnet", "digits", cost="no", device="cpu"),
        TypeError,
        r"cost must be True or False",
    ),
    "comparison.benchmark_model/seed-negative": Case(
        lambda: cmp.benchmark_model("resnet", "digits", seed=-1, device="cpu"), ValueError, r"seed must be an int >= 0"
    ),
    "comparison.benchmark_model/unknown-override": Case(
        lambda: cmp.benchmark_model("resnet", "digits", device="cpu", epoch=1),
        TypeError,
        r"benchmark_model: unknown TrainConfig field\(s\) \['epoch'\]",
    ),
    "comparison.benchmark_model/device-unreadable": Case(
        lambda: cmp.benchmark_model("resnet", "digits", device="gpu0"),
        ValueError,
        r"device 'gpu0' is not a device name",
    ),
    # -- attention
    "attention.attention_weights/scale-negative": Case(
        lambda: att.attention_weights(img(2, 4, 8), img(2, 4, 8), scale=-1.0),
        ValueError,
        r"attention_weights: scale \(None: 1/sqrt\(d\)\) must be a finite real number > 0",
    ),
    "attention.scaled_dot_product_attention/return-weights-a-string": Case(
        lambda: att.scaled_dot_product_attention(img(2, 4, 8), img(2, 4, 8), img(2, 4, 8), return_weights="no"),
        TypeError,
        r"return_weights must be True or False",
    ),
    "attention.sdpa_backend/integer-inputs": Case(
        lambda: att.sdpa_backend(*(torch.ones(2, 4, 8, dtype=torch.long),) * 3),
        TypeError,
        r"sdpa_backend expects q, k, v of one floating-point dtype",
    ),
    "attention.sdpa_backend/bias-a-string": Case(
        lambda: att.sdpa_backend(img(2, 4, 8), img(2, 4, 8), img(2, 4, 8), bias="causal"),
        TypeError,
        r"sdpa_backend: bias must be a float tensor of logits or a boolean mask",
    ),
    "attention.sincos_position_encoding_2d/device-unreadable": Case(
        lambda: att.sincos_position_encoding_2d(4, 4, 8, device="gpu"), ValueError, r"device 'gpu' is not a device name"
    ),
    "attention.LearnedPositionEncoding2d/dim-bool": Case(
        lambda: att.LearnedPositionEncoding2d(True, 4, 4), ValueError, r"dim must be a positive int, got True"
    ),
    "attention.LearnedPositionEncoding2d/std-negative": Case(
        lambda: att.LearnedPositionEncoding2d(8, 4, 4, std=-1.0), ValueError, r"std must be a finite real number >= 0"
    ),
    "attention.relative_position_logits_2d/integer-queries": Case(
        lambda: att.relative_position_logits_2d(torch.ones(1, 1, 4, 4, dtype=torch.long), img(3, 4), img(3, 4), 2, 2),
        TypeError,
        r"q, rel_height and rel_width of one floating-point dtype",
    ),
    "attention.relative_position_logits_2d_reference/table-shape": Case(
        lambda: att.relative_position_logits_2d_reference(img(1, 1, 4, 4), img(2, 4), img(3, 4), 2, 2),
        ValueError,
        r"expects rel_height \(3, 4\) and rel_width \(3, 4\), got \(2, 4\)",
    ),
    "attention.MultiHeadAttention/qkv-bias-a-string": Case(
        lambda: att.MultiHeadAttention(8, 2, qkv_bias="no"), TypeError, r"MultiHeadAttention: qkv_bias must be True"
    ),
    "attention.MultiHeadSelfAttention2d/proj-a-string": Case(
        lambda: att.MultiHeadSelfAttention2d(8, 2, proj="no"), TypeError, r"proj must be True or False"
    ),
    "attention.MultiHeadSelfAttention2d/channels-last": Case(
        lambda: att.MultiHeadSelfAttention2d(3, 1)(img(2, 8, 8, 3)), ValueError, r"x\.permute\(0, 3, 1, 2\)"
    ),
    # -- local attention
    "local_attention.shifted_window_mask/device-unreadable": Case(
        lambda: la.shifted_window_mask(8, 8, 4, 2, device="gpu"), ValueError, r"shifted_window_mask: device 'gpu'"
    ),
    "local_attention.attention_by_offset/integer-weights": Case(
        lambda: la.attention_by_offset(torch.ones(1, 2, 4, 4, dtype=torch.long), (2, 2)),
        TypeError,
        r"attention_by_offset: weights must be a floating-point tensor",
    ),
    "local_attention.RelativeOffsetAttention2d/hard-head-off-the-grid": Case(
        lambda: off_grid(hard_conv_attention())(img(1, 2, 5, 5)),
        ValueError,
        r"alpha\[4\] is inf \(hard attention\) but centers\[4\] = \(0\.5, 0\.5\) is not an integer offset",
    ),
    "local_attention.RelativeOffsetAttention2d/alpha-nan": Case(
        lambda: (lambda layer: (layer.alpha.data.fill_(NAN), layer(img(1, 3, 4, 4))))(
            la.RelativeOffsetAttention2d(3, 3)
        ),
        ValueError,
        r"head 0 has alpha\[0\] = nan .*not NaN or -inf",
    ),
    "local_attention.WindowAttention/return-attention-a-string": Case(
        lambda: la.WindowAttention(8, 4, 2)(img(1, 8, 8, 8), return_attention="no"),
        TypeError,
        r"WindowAttention: return_attention must be True or False",
    ),
    "local_attention.SwinTransformer/widths-an-int": Case(
        lambda: la.SwinTransformer(widths=8, depths=2), TypeError, r"SwinTransformer: widths must be a tuple of ints"
    ),
    "local_attention.sasa_resnet/stages-an-int": Case(
        lambda: la.sasa_resnet(widths=(8, 16), depths=(1, 1), attention_stages=1, num_heads=2),
        TypeError,
        r"sasa_resnet: attention_stages must index the 2 stages",
    ),
    # -- non-local blocks
    "nonlocal_block.NonLocalBlock2d/sub-sample-a-string": Case(
        lambda: nl.NonLocalBlock2d(8, sub_sample="yes"), TypeError, r"NonLocalBlock2d: sub_sample must be True or False"
    ),
    "nonlocal_block.NonLocalBlock2d/return-attention-a-string": Case(
        lambda: nl.NonLocalBlock2d(4)(img(1, 4, 4, 4), return_attention="no"),
        TypeError,
        r"return_attention must be True or False",
    ),
    "nonlocal_block.NonLocalResNet/stages-bool": Case(
        lambda: nl.NonLocalResNet(widths=(8, 16), depths=(1, 1), nonlocal_stages=(True,)),
        ValueError,
        r"nonlocal_stages must index the 2 stages",
    ),
    "nonlocal_block.nonlocal_attention_maps/not-a-module": Case(
        lambda: nl.nonlocal_attention_maps("model", img(1, 3, 8, 8)), TypeError, r"model must be a torch\.nn\.Module"
    ),
    # -- ViT
    "vit.stochastic_depth/training-a-string": Case(
        lambda: vit.stochastic_depth(img(4, 3), 0.5, "no"),
        TypeError,
        r"stochastic_depth: training must be True or False",
    ),
    "vit.stochastic_depth/integer-input": Case(
        lambda: vit.stochastic_depth(torch.ones(4, 3, dtype=torch.long), 0.5, True),
        TypeError,
        r"stochastic_depth: x must be a floating-point tensor",
    ),
    "vit.Mlp/dropout-above-one": Case(
        lambda: vit.Mlp(4, 8, dropout=1.5), ValueError, r"Mlp: dropout must be a probability"
    ),
    "vit.interpolate_pos_embed/grid-an-int": Case(
        lambda: vit.interpolate_pos_embed(img(1, 5, 8), 2),
        TypeError,
        r"interpolate_pos_embed: new_grid must be positive ints: a tuple of 2",
    ),
    "vit.interpolate_pos_embed/prefix-negative": Case(
        lambda: vit.interpolate_pos_embed(img(1, 5, 8), (3, 3), num_prefix_tokens=-1),
        ValueError,
        r"num_prefix_tokens must be an int in \[0, 5\]",
    ),
    "vit.interpolate_pos_embed/integer-embeddings": Case(
        lambda: vit.interpolate_pos_embed(torch.ones(1, 5, 8, dtype=torch.long), (3, 3)),
        TypeError,
        r"pos_embed must be a floating-point tensor",
    ),
    "vit.attention_rollout/one-stacked-tensor": Case(
        lambda: vit.attention_rollout(img(1, 2, 4, 4)), TypeError, r"attentions must be a list \(or tuple\)"
    ),
    "vit.attention_rollout/layers-disagree": Case(
        lambda: vit.attention_rollout([img(1, 2, 4, 4), img(1, 2, 5, 5)]),
        ValueError,
        r"every layer must have the same batch and tokens",
    ),
    "vit.vit_preset/unknown-override": Case(
        lambda: vit.vit_preset("vit_tiny_p4_32", depthh=2), TypeError, r"vit_preset: unknown override\(s\) \['depthh'\]"
    ),
    "vit.PatchEmbedding/strict-size-a-string": Case(
        lambda: vit.PatchEmbedding(8, 4, 3, 8, strict_size="no"), TypeError, r"strict_size must be True or False"
    ),
    "vit.VisionTransformer/return-attention-a-string": Case(
        lambda: tiny_vit()(img(1, 3, 8, 8), return_attention="no"), TypeError, r"return_attention must be True or False"
    ),
    "vit.patchify/channels-last": Case(
        lambda: vit.patchify(img(1, 8, 8, 3), 4), ValueError, r"looks channels-last \(B, H, W, C\)"
    ),
    # -- hybrid, CoAtNet, CNN
    "hybrid.CBAM/spatial-norm-a-string": Case(
        lambda: hy.CBAM(16, spatial_norm="yes"), TypeError, r"CBAM: spatial_norm must be True or False"
    ),
    "hybrid.SqueezeExcitation/min-rd-channels-zero": Case(
        lambda: hy.SqueezeExcitation(16, min_rd_channels=0), ValueError, r"min_rd_channels must be a positive int"
    ),
    "hybrid.BoTBlock/zero-init-a-string": Case(
        lambda: hy.BoTBlock(8, 8, 4, num_heads=2, zero_init_residual="no"),
        TypeError,
        r"zero_init_residual must be True",
    ),
    "hybrid.hybrid_resnet/stages-an-int": Case(
        lambda: hy.hybrid_resnet("botnet", widths=(8, 16), depths=(1, 1), image_size=8, botnet_stages=1),
        TypeError,
        r"hybrid_resnet: botnet_stages must index the 2 stages",
    ),
    "coatnet.MBConv/se-ratio-a-string": Case(
        lambda: coat.MBConv(8, 8, se_ratio="0.25"), ValueError, r"MBConv: se_ratio must be in \(0, 1\]"
    ),
    "coatnet.CoAtNet/kinds-an-int": Case(
        lambda: coat.CoAtNet(kinds=4), TypeError, r"CoAtNet: kinds must be a string like 'CCTT'"
    ),
    "coatnet.CoAtNet/stem-width-a-string": Case(
        lambda: coat.CoAtNet(stem_width="8"), ValueError, r"CoAtNet: stem_width must be a positive int"
    ),
    "coatnet.coatnet/unknown-argument": Case(
        lambda: coat.coatnet(width=8, depthss=(1, 1, 1, 1)), TypeError, r"coatnet: unknown argument\(s\) \['depthss'\]"
    ),
    "cnn.conv_output_size/bool": Case(
        lambda: cnn.conv_output_size(True, 1), ValueError, r"conv_output_size: size must be an int >= 1, got True"
    ),
    "cnn.conv2d_sliding/bias-shape": Case(
        lambda: cnn.conv2d_sliding(img(1, 2, 4, 4), img(3, 2, 3, 3), bias=img(2)),
        ValueError,
        r"conv2d_sliding: bias must be a \(3,\) tensor, one value per output channel",
    ),
    "cnn.conv2d_sliding/integer-kernel": Case(
        lambda: cnn.conv2d_sliding(img(1, 2, 4, 4), torch.ones(3, 2, 3, 3, dtype=torch.long)),
        TypeError,
        r"conv2d_sliding: weight must be a floating-point kernel",
    ),
    "cnn.conv2d_sliding/float64-kernel": Case(
        lambda: cnn.conv2d_sliding(img(1, 2, 4, 4), img(3, 2, 3, 3, dtype=torch.float64)),
        TypeError,
        r"conv2d_sliding: the batch is torch\.float32 but .*torch\.float64",
    ),
    "cnn.BasicBlock/attention-a-string": Case(
        lambda: cnn.BasicBlock(4, 4, attention="se"), TypeError, r"BasicBlock: attention must be an nn\.Module"
    ),
    "cnn.ResNet/widths-an-int": Case(
        lambda: cnn.ResNet(widths=8, depths=1), TypeError, r"ResNet: widths must be a tuple of ints, one per stage"
    ),
    "cnn.ResNet/block-factory-a-string": Case(
        lambda: cnn.ResNet(widths=(4, 8), depths=(1, 1), block_factory="se"),
        TypeError,
        r"ResNet: block_factory must be a function",
    ),
    "cnn.ResNet/channels-last-batch": Case(
        lambda: tiny_resnet()(img(1, 8, 8, 3)),
        ValueError,
        r"ResNet expects 3 input channels .*x\.permute\(0, 3, 1, 2\)",
    ),
    # -- bench
    "bench.count_flops/backward-a-string": Case(
        lambda: bench.count_flops(tiny_resnet(), img(2, 3, 8, 8), backward="no"), TypeError, r"backward must be True"
    ),
    "bench.measure/shape-an-int": Case(
        lambda: bench.measure(tiny_resnet(), 4), ValueError, r"measure: sample must be a float batch or its shape"
    ),
    "bench.measure/seed-negative": Case(
        lambda: bench.measure(tiny_resnet(), (2, 3, 8, 8), seed=-1), ValueError, r"measure: seed must be an int >= 0"
    ),
    "bench.estimate_training_seconds/model-a-string": Case(
        lambda: bench.estimate_training_seconds("resnet", (3, 8, 8), train_images=1, test_images=1, epochs=1),
        TypeError,
        r"estimate_training_seconds: model must be a torch\.nn\.Module",
    ),
    "bench.estimate_training_seconds/float-shape": Case(
        lambda: bench.estimate_training_seconds(tiny_resnet(), (3.0, 8, 8), train_images=1, test_images=1, epochs=1),
        TypeError,
        r"image_shape must be positive ints: a tuple of 3 \(C, H, W\)",
    ),
    "bench.peak_step_memory/device-unreadable": Case(
        lambda: bench.peak_step_memory(lambda: None, "gpu"), ValueError, r"peak_step_memory: device 'gpu'"
    ),
    # -- finetune
    "finetune.InputResize/channels-last": Case(
        lambda: ft.InputResize(8)(img(1, 16, 16, 3)), ValueError, r"InputResize .*looks channels-last"
    ),
    "finetune.InputResize/uint8": Case(
        lambda: ft.InputResize(8)(torch.zeros(1, 3, 16, 16, dtype=torch.uint8)),
        TypeError,
        r"InputResize expects a real floating-point tensor",
    ),
    "finetune.PretrainedClassifier/head-name-an-int": Case(
        lambda: ft.PretrainedClassifier(nn.Linear(2, 2), 3, 8),
        TypeError,
        r"PretrainedClassifier: head_name must be a str",
    ),
    "finetune.pretrained_resnet50/progress-a-string": Case(
        lambda: ft.pretrained_resnet50(None, num_classes=3, progress="no"), TypeError, r"progress must be True or False"
    ),
    "finetune.pretrained_resnet50/unknown-torchvision-argument": Case(
        lambda: ft.pretrained_resnet50(None, num_classes=3, tv_kwargs={"depth": 3}),
        TypeError,
        r"pretrained_resnet50: tv_kwargs has unknown argument\(s\) \['depth'\]",
    ),
    # -- long-range task
    "longrange.LongRangeTask/colored-a-string": Case(
        lambda: lr.LongRangeTask(colored="no"), TypeError, r"LongRangeTask: colored must be True or False"
    ),
    "longrange.LongRangeTask/sample-seed-negative": Case(
        lambda: lr.LongRangeTask(16).sample(4, seed=-1), ValueError, r"LongRangeTask\.sample: seed must be an int >= 0"
    ),
    "longrange.LongRangeTask/sample-generator-a-string": Case(
        lambda: lr.LongRangeTask(16).sample(4, generator="g"), TypeError, r"generator must be a torch\.Generator"
    ),
    "longrange.LongRangeTask/alphabet-device-unreadable": Case(
        lambda: lr.LongRangeTask(16).alphabet("gpu"), ValueError, r"LongRangeTask\.alphabet: device 'gpu'"
    ),
    "longrange.render/float-ids": Case(
        lambda: lr.render(
            lr.LongRangeTask(16).alphabet(), torch.zeros(1, 2), torch.zeros(1, 2, 2, dtype=torch.long), 16
        ),
        TypeError,
        r"render: glyph_ids must be an integer tensor",
    ),
    "longrange.render/image-too-small": Case(
        lambda: lr.render(
            lr.LongRangeTask(16).alphabet(),
            torch.zeros(1, 2, dtype=torch.long),
            torch.zeros(1, 2, 2, dtype=torch.long),
            2,
        ),
        ValueError,
        r"render: image_size must be an int >= 3, got 2",
    ),
    "longrange.glyph_cells/float-positions": Case(
        lambda: lr.glyph_cells(torch.full((1, 2, 2), 0.5), 3, 16, 4), TypeError, r"positions must be an integer tensor"
    ),
    "longrange.glyph_cells/glyph-size-zero": Case(
        lambda: lr.glyph_cells(torch.zeros(1, 2, 2, dtype=torch.long), 0, 16, 4),
        ValueError,
        r"glyph_size must be an int",
    ),
    # -- torchvision interoperability
    "vit_torchvision.load_torchvision_state_dict/a-path": Case(
        lambda: vtv.load_torchvision_state_dict(tiny_vit(pool="cls"), "weights.pt"),
        TypeError,
        r"load_torchvision_state_dict: state_dict must be a dict of tensors",
    ),
    "vit_torchvision.from_torchvision/a-name": Case(
        lambda: vtv.from_torchvision("vit_b_16"), TypeError, r"from_torchvision: tv_model must be a torchvision"
    ),
}
_clash = sorted(set(HELPER_CASES) & set(CASES))
assert not _clash, f"duplicate bad-input rows: {_clash}"
CASES |= HELPER_CASES


# Numbers from numpy are numbers: every check that takes an int or a float takes numpy's, and the model built
# from them is the one built from Python numbers (plain ints inside, so reprs and records stay plain).
i64, f32 = np.int64, np.float32
NUMPY_NUMBERS: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
    "conv_output_size": (lambda: cnn.conv_output_size(i64(32), i64(3), padding=i64(1)), lambda: 32),
    "receptive_field": (lambda: cnn.receptive_field([("c", i64(3), i64(2))])[0].size, lambda: 3),
    "window_partition": (
        lambda: la.window_partition(torch.arange(128.0).view(1, 2, 8, 8), i64(4)),
        lambda: la.window_partition(torch.arange(128.0).view(1, 2, 8, 8), 4),
    ),
    "shifted_window_mask": (
        lambda: la.shifted_window_mask(i64(8), i64(8), i64(4), i64(2)),
        lambda: la.shifted_window_mask(8, 8, 4, 2),
    ),
    "attention_by_offset": (
        lambda: la.attention_by_offset(torch.full((1, 2, 4, 4), 0.25), (i64(2), i64(2))),
        lambda: la.attention_by_offset(torch.full((1, 2, 4, 4), 0.25), (2, 2)),
    ),
    "sincos_position_encoding_2d": (
        lambda: att.sincos_position_encoding_2d(i64(4), i64(4), i64(8), temperature=f32(100.0)),
        lambda: att.sincos_position_encoding_2d(4, 4, 8, temperature=100.0),
    ),
    "time_to_accuracy": (lambda: cmp.time_to_accuracy([{"seconds": 2.0, "test_acc": 0.9}], f32(0.5)), lambda: 2.0),
    "critical_distance": (lambda: lr.critical_distance(i64(7), i64(3)), lambda: 9),
    "glyph_cells": (
        lambda: lr.glyph_cells(torch.zeros(1, 2, 2, dtype=torch.long), i64(3), i64(16), i64(4)),
        lambda: lr.glyph_cells(torch.zeros(1, 2, 2, dtype=torch.long), 3, 16, 4),
    ),
    "LongRangeTask.sample": (
        lambda: lr.LongRangeTask(i64(16), (i64(5), i64(8)), noise=f32(0.1)).sample(i64(4), seed=i64(0)).images,
        lambda: lr.LongRangeTask(16, (5, 8), noise=float(f32(0.1))).sample(4, seed=0).images,
    ),
    "interpolate_pos_embed": (
        lambda: vit.interpolate_pos_embed(
            torch.linspace(0, 1, 40).view(1, 5, 8), (i64(3), i64(3)), num_prefix_tokens=i64(1)
        ),
        lambda: vit.interpolate_pos_embed(torch.linspace(0, 1, 40).view(1, 5, 8), (3, 3), num_prefix_tokens=1),
    ),
    "attention_rollout": (
        lambda: vit.attention_rollout([torch.full((1, 2, 4, 4), 0.25)], residual_weight=f32(0.25)),
        lambda: vit.attention_rollout([torch.full((1, 2, 4, 4), 0.25)], residual_weight=0.25),
    ),
    "eval_shape": (lambda: dg.eval_shape("B×2C", {"B": i64(2), "C": i64(3)}), lambda: (2, 6)),
    "to_pair": (lambda: chk.to_pair((i64(4), i64(2)), "f"), lambda: (4, 2)),
}
NUMPY_MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module]]] = {
    "ResNet": (
        lambda: cnn.ResNet(i64(7), i64(3), (i64(4), i64(8)), (i64(1), i64(1))),
        lambda: cnn.ResNet(7, 3, (4, 8), (1, 1)),
    ),
    "SwinTransformer": (
        lambda: la.SwinTransformer(image_size=i64(16), widths=(i64(8), i64(16)), depths=(2, 2), head_dim=i64(8)),
        lambda: la.SwinTransformer(image_size=16, widths=(8, 16), depths=(2, 2), head_dim=8),
    ),
    "SwinBlock": (
        lambda: la.SwinBlock(i64(8), i64(2), i64(4), i64(2), f32(2.0)),
        lambda: la.SwinBlock(8, 2, 4, 2, 2.0),
    ),
    "RelativeOffsetAttention2d": (
        lambda: la.RelativeOffsetAttention2d(i64(2), i64(3), i64(9), padding=i64(1)),
        lambda: la.RelativeOffsetAttention2d(2, 3, 9, padding=1),
    ),
    "MultiHeadSelfAttention2d": (
        lambda: att.MultiHeadSelfAttention2d(i64(8), i64(2), pos="relative", size=(i64(4), i64(4))),
        lambda: att.MultiHeadSelfAttention2d(8, 2, pos="relative", size=(4, 4)),
    ),
    "NonLocalResNet": (
        lambda: nl.NonLocalResNet(
            widths=(i64(8), i64(16)), depths=(1, 1), nonlocal_stages=(i64(1),), nonlocal_every=i64(1)
        ),
        lambda: nl.NonLocalResNet(widths=(8, 16), depths=(1, 1), nonlocal_stages=(1,), nonlocal_every=1),
    ),
    "hybrid_resnet": (
        lambda: hy.hybrid_resnet(
            "botnet", widths=(i64(8), i64(16)), depths=(1, 1), image_size=i64(8), botnet_stages=(i64(1),), num_heads=2
        ),
        lambda: hy.hybrid_resnet(
            "botnet", widths=(8, 16), depths=(1, 1), image_size=8, botnet_stages=(1,), num_heads=2
        ),
    ),
    "BoTBlock": (
        lambda: hy.BoTBlock(i64(8), i64(8), i64(4), num_heads=i64(2)),
        lambda: hy.BoTBlock(8, 8, 4, num_heads=2),
    ),
    "CoAtNet": (
        lambda: coat.coatnet(width=i64(8), depths=(1, 1, 1, 1), head_dim=8, stem_width=i64(8)),
        lambda: coat.coatnet(width=8, depths=(1, 1, 1, 1), head_dim=8, stem_width=8),
    ),
    "VisionTransformer": (
        lambda: vit.VisionTransformer(
            i64(8), i64(4), embed_dim=i64(8), depth=i64(1), num_heads=i64(2), mlp_ratio=f32(2.0)
        ),
        lambda: vit.VisionTransformer(8, 4, embed_dim=8, depth=1, num_heads=2, mlp_ratio=2.0),
    ),
    "LearnedPositionEncoding2d": (
        lambda: att.LearnedPositionEncoding2d(i64(8), i64(4), i64(4), std=f32(0.5)),
        lambda: att.LearnedPositionEncoding2d(8, 4, 4, std=0.5),
    ),
}


@pytest.mark.parametrize("name", sorted(NUMPY_NUMBERS))
def test_numpy_numbers_are_numbers(name: str) -> None:
    with_numpy, with_python = NUMPY_NUMBERS[name]
    got, expected = with_numpy(), with_python()
    if isinstance(expected, torch.Tensor):
        assert torch.equal(got, expected)
    else:
        assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("name", sorted(NUMPY_MODELS))
def test_numpy_numbers_build_the_same_model(name: str) -> None:
    """Same parameters (names, shapes) and the same repr: numpy integers do not leak into the module."""
    build_numpy, build_python = NUMPY_MODELS[name]
    a, b = build_numpy(), build_python()
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert repr(a) == repr(b) and "np." not in repr(a)


def test_from_torchvision_keeps_dtype_and_device() -> None:
    """A float64 source gives a float64 copy (equal to it in float64), a meta source a meta copy, a CUDA source a
    CUDA copy -- not a float32 CPU model."""
    torch.manual_seed(0)
    tv = tiny_torchvision_vit().double().eval()
    ours = vtv.from_torchvision(tv).eval()
    assert {p.dtype for p in ours.parameters()} == {torch.float64}
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(ours(x), tv(x), rtol=0, atol=1e-12)
    with torch.device("meta"):
        tv_meta = tiny_torchvision_vit()
    assert all(p.is_meta for p in vtv.from_torchvision(tv_meta).parameters())
    if torch.cuda.is_available():
        on_gpu = vtv.from_torchvision(tiny_torchvision_vit().cuda())
        assert {p.device.type for p in on_gpu.parameters()} == {"cuda"}


_clash = sorted(set(ISSUE_17_CASES) & set(CASES))
assert not _clash, f"duplicate bad-input rows: {_clash}"
CASES |= ISSUE_17_CASES


# Public names with no bad input to try, and why.
NO_BAD_INPUT = {
    "checks.autocasting": "a query of torch's autocast state for a device type; no input to get wrong",
    "checks.is_int": "a predicate: any value is a valid question, the answer is True or False",
    "checks.is_real": "a predicate: any value is a valid question, the answer is True or False",
    "bench.T4_FP16_PEAK_FLOPS": "a constant (the T4 datasheet figure)",
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
            "records.CONVERGENCE",
            "runtime.DATASETS",
            "hybrid.GATE_INITS",
            "hybrid.OPEN_GATE_LOGIT",
            "records.FORMAT",
            "records.RESULTS_DIR",
            "diagrams.DIAGRAMS",
            "diagrams.KIND_STYLE",
            "finetune.ARCHS",
            "finetune.MODES",
            "finetune.IMAGENET_MEAN",
            "finetune.IMAGENET_STD",
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
            "longrange_sweep.StrategySpec",
            "launch.LocalRun",
            "bench.BenchResult",
            "comparison.ModelRun",
            "longrange_sweep.PairRule",
            "records.ArmSummary",
            "records.Verdict",
        ],
        "a result record filled by nlbook itself (its producer validates the inputs)",
    ),
    "data.DatasetUnavailableError": "an exception class",
    "records.RecordError": "an exception class (raised by validate_record and load_record; rows above)",
    "records.RecordNotFoundError": "an exception class (raised by load_record; row above)",
    "finetune.WeightsUnavailableError": "an exception class (raised when pretrained weights cannot be fetched)",
    **dict.fromkeys(
        [f"minimal.{name}" for name in lazy("minimal").__all__],
        "reader form: no argument checks by design; tests/test_minimal.py proves it equals the production module, "
        "which checks",
    ),
    "train.TrainingInterrupted": "an exception class (raised by fit; see test_fit_interrupted_keeps_finished_epochs)",
    "zoo.model_names": "takes no arguments",
    **dict.fromkeys(
        ["local_attention.WindowAttentionMinimal", "local_attention.LocalSelfAttention2dMinimal"],
        "a reader form: no checks by design (tests/test_local_attention.py proves it equals the module)",
    ),
    "distributed.current": "takes no arguments",
    "distributed.cleanup": "takes no arguments",
    "distributed.print0": "prints its arguments like print()",
    "distributed.unwrap": "returns anything that is not a DDP/compiled wrapper unchanged, by design",
    "launch.main": "a command line: argparse reports usage errors (its output paths have rows)",
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


# ---- issue 17: nothing lost, nothing silent ----------------------------------------------------------------------


class StopsInEpoch(nn.Module):
    """A tiny ResNet that raises ``error`` at the first training step of epoch ``epoch`` (2 steps per epoch)."""

    def __init__(self, error: BaseException, epoch: int = 2, steps_per_epoch: int = 2):
        super().__init__()
        self.net = tiny_resnet()
        self.error, self.stop_at, self.steps = error, (epoch - 1) * steps_per_epoch, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # evaluation and fit's dry run do not count
            if self.steps == self.stop_at:
                raise self.error
            self.steps += 1
        return self.net(x)


def two_step_epochs() -> object:
    return train.TrainConfig(epochs=3, batch_size=16, max_train=32, max_test=16)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fit_interrupted_keeps_finished_epochs(mode: str) -> None:
    """Ctrl-C in epoch 2: a KeyboardInterrupt still, carrying epoch 1's record; the model's mode is restored."""
    model = StopsInEpoch(KeyboardInterrupt())
    model.train(mode == "train")
    with pytest.raises(KeyboardInterrupt) as info:
        train.fit(model, digits(), two_step_epochs(), device="cpu", progress=False)
    assert isinstance(info.value, train.TrainingInterrupted)
    record = info.value.record
    assert [e.epoch for e in record.history] == [1]
    assert record.wall_time_s > 0 and 0.0 <= record.test_acc <= 1.0
    assert model.training is (mode == "train")


def test_fit_error_carries_partial_record() -> None:
    """Any other exception keeps its type and gains .record with every finished epoch (and a note saying so)."""
    model = StopsInEpoch(RuntimeError("CUDA out of memory (simulated)"), epoch=3)
    model.eval()
    with pytest.raises(RuntimeError, match=r"out of memory") as info:
        train.fit(model, digits(), two_step_epochs(), device="cpu", progress=False)
    assert [e.epoch for e in info.value.record.history] == [1, 2]
    assert any(".record" in note for note in getattr(info.value, "__notes__", []))
    assert model.training is False


def test_fit_restores_the_mode_it_found() -> None:
    model = tiny_resnet().eval()
    record = train.fit(model, digits(), train.TrainConfig(epochs=1, batch_size=16, max_train=32, max_test=16))
    assert len(record.history) == 1 and model.training is False


def test_dry_run_changes_nothing() -> None:
    """fit's and measure's dry run: eval mode, no gradients — BatchNorm statistics and the mode stay as they were."""
    model = tiny_resnet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out, sizes = chk.dry_run(model, img(2, 3, 8, 8), "test")
    assert out.shape == (2, 10) and not out.requires_grad and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sizes and min(sizes.values()) == 4 * 4  # the last stage's 4x4 map on 8x8 images


@pytest.mark.parametrize("kind", ["bool", "-inf"])
@pytest.mark.parametrize("rank", [3, 4])
def test_fully_masked_rows_agree(kind: str, rank: int) -> None:
    """A query that may attend to nothing gets a zero output on both paths (and zero weights), never NaN."""
    g = torch.Generator().manual_seed(0)
    shape = (2, 3) if rank == 4 else (2,)
    q = torch.randn(*shape, 4, 8, generator=g, requires_grad=True)
    k, v = torch.randn(*shape, 6, 8, generator=g), torch.randn(*shape, 6, 5, generator=g)
    allowed = torch.rand(4, 6, generator=g) > 0.3
    allowed[0] = True  # at least one row fully open
    allowed[2] = False  # row 2 sees nothing
    bias = allowed if kind == "bool" else torch.zeros(4, 6).masked_fill(~allowed, float("-inf"))
    fused = att.scaled_dot_product_attention(q, k, v, bias=bias)
    explicit, weights = att.scaled_dot_product_attention(q, k, v, bias=bias, impl="explicit", return_weights=True)
    torch.testing.assert_close(fused, explicit)
    assert torch.all(explicit[..., 2, :] == 0) and torch.all(weights[..., 2, :] == 0)
    assert not explicit.isnan().any() and not fused.isnan().any()
    explicit.sum().backward()
    assert not q.grad.isnan().any() and torch.all(q.grad[..., 2, :] == 0)


def test_files_are_written_atomically(tmp_path: Path) -> None:
    """A write that fails half-way leaves the previous file as it was, and no temporary file behind."""
    target = tmp_path / "record.json"
    target.write_text('{"old": true}')

    def fails_midway(f: object) -> None:
        f.write('{"new": ')
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="disk full"):
        rec.write_atomically(target, fails_midway, text=True)
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_launcher_run_writes_weights_and_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NLBOOK_DEVICE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    args = ["--dataset", "digits", "--profile", "quick", "--epochs", "1", "--batch-size", "32"]
    args += [
        "--max-train",
        "64",
        "--max-test",
        "32",
        "--save",
        str(tmp_path / "w.pt"),
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert launch.main(args) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert len(record["history"]) == 1 and "interrupted" not in record
    assert torch.load(tmp_path / "w.pt")  # a complete state dict
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "w.pt"]


def test_launcher_keeps_finished_epochs_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NLBOOK_DEVICE"):
        monkeypatch.delenv(key, raising=False)
    partial = train.TrainRecord("resnet", 10, "cpu", "cpu", "digits", {}, history=[], wall_time_s=1.0)

    def interrupted(*args: object, **kwargs: object) -> object:
        raise train.TrainingInterrupted(partial)

    monkeypatch.setattr(launch, "fit", interrupted)
    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        launch.main(["--dataset", "digits", "--profile", "quick", "--json", str(out), "--save", str(tmp_path / "w.pt")])
    record = json.loads(out.read_text())
    assert record["interrupted"].startswith("TrainingInterrupted") and record["history"] == []
    assert not (tmp_path / "w.pt").exists()  # no weights claimed for a run that did not finish


# ---- issue 24: the launcher and distributed set-up -- checked before anything waits or trains ---------------------
# (The scripts under benchmarks/ are not package functions: their flag, output-path and finished-run checks are in
# tests/test_scripts.py.) These rows run through test_bad_input's own checks, in a table of their own.


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _one_file_twice() -> object:
    path = str(Path(tempfile.mkdtemp()) / "out")
    return launch.main(["--dataset", "digits", "--save", path, "--json", path])


ALONE = {**TWO_PROCESSES, "MASTER_ADDR": "127.0.0.1", "TORCHELASTIC_USE_AGENT_STORE": None}

ISSUE_24_CASES: dict[str, Case | tuple[Case, pytest.MarkDecorator]] = {
    "launch.main/save-and-json-one-file": Case(
        _one_file_twice, ValueError, r"nlbook\.launch: --save and --json name the same file .* give each its own path"
    ),
    "distributed.init_distributed/init-timeout-zero": Case(
        lambda: dist.init_distributed(device="cpu", init_timeout_s=0),
        ValueError,
        r"init_distributed: init_timeout_s must be a number of seconds > 0, got 0",
    ),
    "distributed.init_distributed/init-timeout-string": Case(
        lambda: dist.init_distributed(device="cpu", init_timeout_s="30"),
        TypeError,
        r"init_distributed: init_timeout_s must be a number of seconds > 0, got '30' \(str\)",
    ),
    "distributed.init_distributed/timeout-nan": Case(
        lambda: dist.init_distributed(device="cpu", timeout_s=NAN),
        ValueError,
        r"init_distributed: timeout_s must be a number of seconds > 0, got nan",
    ),
    "distributed.init_distributed/init-timeout-env": Case(
        lambda: with_env({"NLBOOK_DIST_INIT_TIMEOUT": "-3"}, lambda: dist.init_distributed(device="cpu")),
        ValueError,
        r"environment variable NLBOOK_DIST_INIT_TIMEOUT must be a number of seconds > 0, got '-3'",
    ),
    # WORLD_SIZE=2 in one plain process: a clear error in about a second, not torch's 5-minute store timeout
    "distributed.init_distributed/rank-0-alone": Case(
        lambda: with_env(
            {**ALONE, "MASTER_PORT": _free_port()}, lambda: dist.init_distributed(device="cpu", init_timeout_s=1)
        ),
        RuntimeError,
        r"rank 0 waited 1 s for the other 1 process\(es\) of WORLD_SIZE=2 .* torchrun",
    ),
    "distributed.init_distributed/rank-1-alone": Case(
        lambda: with_env(
            {**ALONE, "RANK": "1", "MASTER_PORT": _free_port()},
            lambda: dist.init_distributed(device="cpu", init_timeout_s=1),
        ),
        RuntimeError,
        r"rank 1 of WORLD_SIZE=2 could not reach rank 0 in 1 s .* torchrun",
    ),
}
_clash = sorted(set(ISSUE_24_CASES) & set(CASES))
assert not _clash, f"duplicate bad-input rows: {_clash}"
CASES |= ISSUE_24_CASES  # test_every_public_name_has_a_row counts them too


@pytest.mark.parametrize("case", [pytest.param(case, id=case_id) for case_id, case in ISSUE_24_CASES.items()])
def test_bad_input_issue_24(case: Case) -> None:
    test_bad_input(case)  # the same three checks: type, message, and a deliberate raise inside nlbook/


# ---- issue 22: Fashion-MNIST and its validation split, the budget-doubling rule, Welch's verdicts ---------------
conv = lazy("convergence")
sts = lazy("stats")
dat = lazy("data")


def _run_v2(**kw: object) -> dict:
    history = [
        {"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.6, "val_loss": 0.9, "val_acc": 0.7, "seconds": 1.0},
        {"epoch": 2, "lr": 0.0, "train_loss": 0.8, "train_acc": 0.7, "val_loss": 0.8, "val_acc": 0.75, "seconds": 1.0},
    ]
    run = {
        "seed": 0,
        "epochs": 2,
        "final_val_acc": 0.75,
        "best_val_acc": 0.75,
        "best_val_epoch": 2,
        "test_acc": 0.74,
        "test_loss": 0.8,
        "train_seconds": 2.0,
        "history": history,
    }
    return run | kw


ISSUE_22_CASES: dict[str, Case | tuple[Case, pytest.MarkDecorator]] = {
    "convergence.mean_val_acc/percent": Case(
        lambda: conv.mean_val_acc([{"final_val_acc": 91.0}]), ValueError, r"fraction in \[0, 1\] \(not percent\)"
    ),
    "convergence.train_until_converged/zero-epochs": Case(
        lambda: conv.train_until_converged(lambda e: [], 0), ValueError, r"base_epochs must be an int >= 1, got 0"
    ),
    "convergence.train_until_converged/gain-in-points": Case(
        lambda: conv.train_until_converged(lambda e: [], 10, min_gain=0.5 * 100),
        ValueError,
        r"min_gain must be a fraction of accuracy in \(0, 1\)",
    ),
    "stats.compare/one-seed": Case(lambda: sts.compare([0.9], [0.8, 0.7]), ValueError, r"a needs at least 2 seeds"),
    "stats.compare/string": Case(lambda: sts.compare("0.9", [0.8, 0.7]), TypeError, r"a must be a list of per-seed"),
    "stats.compare/alpha-percent": Case(
        lambda: sts.compare([0.9, 0.8], [0.8, 0.7], alpha=5), ValueError, r"alpha must be a level in \(0, 0.5\)"
    ),
    "data.normalize/float-images": Case(
        lambda: dat.normalize(torch.rand(2, 1, 4, 4), (0.5,), (0.2,)),
        TypeError,
        r"normalize expects uint8 images \(0-255, as the datasets store them\), got torch.float32",
    ),
    "data.stratified_split/float-labels": Case(
        lambda: dat.stratified_split(torch.zeros(10), 1), ValueError, r"labels must be a 1-D integer tensor"
    ),
    "data.stratified_split/too-few": Case(
        lambda: dat.stratified_split(torch.zeros(3, dtype=torch.long), 3),
        ValueError,
        r"class 0 has 3 images, not more than per_class=3",
    ),
    "records.validate_run_v2/best-not-in-history": Case(
        lambda: rec.validate_run_v2(_run_v2(best_val_acc=0.9)),
        rec.RecordError,
        r"best_val_acc is 0.9 but the history says 0.75",
    ),
    "records.validate_run_v2/loss-string": Case(
        lambda: rec.validate_run_v2(_run_v2(test_loss="0.8")), rec.RecordError, r"test_loss: expected a finite number"
    ),
    "records.FinishedRuns/not-a-path": Case(
        lambda: rec.FinishedRuns(3), TypeError, r"FinishedRuns: folder must be a path \(str or os.PathLike\), got int"
    ),
    "records.validate_run_v2/zero-epochs": Case(
        lambda: rec.validate_run_v2(_run_v2(epochs=0)), rec.RecordError, r"history: expected one entry per epoch"
    ),
}
_clash = sorted(set(ISSUE_22_CASES) & set(CASES))
assert not _clash, f"duplicate bad-input rows: {_clash}"
CASES |= ISSUE_22_CASES
NO_BAD_INPUT.update(
    {
        "convergence.MIN_GAIN": "a constant (the rule's threshold)",
        "convergence.MAX_DOUBLINGS": "a constant (the rule's cap)",
        "convergence.RULE": "a constant (the rule in words, stored in every record)",
        "stats.ALPHA": "a constant (the level of every verdict)",
        "stats.Comparison": "a result type, built by compare()",
        "records.FORMAT_V2": "a constant (the format string)",
    }
)


@pytest.mark.parametrize("case", [pytest.param(case, id=case_id) for case_id, case in ISSUE_22_CASES.items()])
def test_bad_input_issue_22(case: Case) -> None:
    test_bad_input(case)
