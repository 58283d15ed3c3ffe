"""Tests for nlbook.vit — the Vision Transformer of chapter 4, checked against torchvision."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models import vit_b_16
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from nlbook.attention import MultiHeadAttention
from nlbook.vit import (
    VIT_PRESETS,
    DropPath,
    EncoderBlock,
    PatchEmbedding,
    VisionTransformer,
    attention_rollout,
    interpolate_pos_embed,
    patchify,
    stochastic_depth,
    vit_preset,
)
from nlbook.vit_torchvision import (
    from_torchvision,
    load_torchvision_state_dict,
    to_torchvision_state_dict,
    torchvision_kwargs,
)

TV_SMALL = dict(image_size=32, patch_size=4, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=256, num_classes=10)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize(model: nn.Module, seed: int = 0, std: float = 0.1) -> nn.Module:
    """Random values in *every* parameter (the reference inits zero the head, which would hide errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def _tiny(**kw) -> VisionTransformer:
    cfg = dict(image_size=16, patch_size=4, num_classes=5, embed_dim=16, depth=2, num_heads=2)
    return VisionTransformer(**(cfg | kw))


# ---------------------------------------------------------------------------------------------- patches
@pytest.mark.parametrize("image_size,patch_size", [(32, 4), (32, 8), (28, 7), (16, 2), (12, 12)])
def test_patch_embedding_conv_equals_cut_and_linear(image_size: int, patch_size: int) -> None:
    torch.manual_seed(0)
    pe = PatchEmbedding(image_size, patch_size, in_channels=3, embed_dim=24).double()
    x = torch.randn(2, 3, image_size, image_size, dtype=torch.float64)
    conv, linear = pe(x), pe.forward_linear(x)
    n = (image_size // patch_size) ** 2
    assert conv.shape == linear.shape == (2, n, 24)
    torch.testing.assert_close(conv, linear, atol=1e-12, rtol=1e-12)


def test_patchify_is_row_major_and_channel_first() -> None:
    # Independent of einops: patch (r, c) is the slice x[:, :, r*p:(r+1)*p, c*p:(c+1)*p], flattened (c, i, j).
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    p = 4
    patches = patchify(x, p)
    assert patches.shape == (2, 2 * 3, 3 * p * p)
    for r in range(2):
        for c in range(3):
            expected = x[:, :, r * p : (r + 1) * p, c * p : (c + 1) * p].reshape(2, -1)
            torch.testing.assert_close(patches[:, r * 3 + c], expected)


def test_patch_embedding_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        PatchEmbedding(30, 4)
    pe = PatchEmbedding(32, 4, in_channels=3, embed_dim=8)
    with pytest.raises(ValueError, match="built for 32×32 images, got 36×36"):
        pe(torch.randn(1, 3, 36, 36))
    with pytest.raises(ValueError, match="built for 32×32 images"):
        pe.forward_linear(torch.randn(1, 3, 16, 16))
    flexible = PatchEmbedding(32, 4, in_channels=3, embed_dim=8, strict_size=False)
    assert flexible(torch.randn(1, 3, 36, 24)).shape == (1, 9 * 6, 8)
    with pytest.raises(ValueError, match="not divisible by the patch size 4"):
        flexible(torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match="expects 3 input channels"):
        pe(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        pe(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        PatchEmbedding(32, 0)


# ----------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("image_size,patch_size", [(32, 4), (32, 8), (28, 7), (16, 2)])
@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_shapes(image_size: int, patch_size: int, pool: str) -> None:
    model = VisionTransformer(image_size, patch_size, num_classes=7, embed_dim=32, depth=2, num_heads=4, pool=pool)
    n = (image_size // patch_size) ** 2
    prefix = 1 if pool == "cls" else 0
    assert model.seq_len == n + prefix
    assert model.pos_embed.shape == (1, n + prefix, 32)
    assert (model.cls_token is None) == (pool == "gap")
    x = torch.randn(3, 3, image_size, image_size)
    assert model.embed(x).shape == (3, n + prefix, 32)
    assert model.forward_features(x).shape == (3, n + prefix, 32)
    logits, attentions = model(x, return_attention=True)
    assert logits.shape == (3, 7)
    assert len(attentions) == 2 and all(a.shape == (3, 4, n + prefix, n + prefix) for a in attentions)


def test_non_divisible_and_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        VisionTransformer(image_size=32, patch_size=5)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        VisionTransformer(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="pool must be"):
        VisionTransformer(pool="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop_path must be a probability"):
        VisionTransformer(drop_path=1.0)
    model = _tiny()
    with pytest.raises(ValueError, match="18×18 is not divisible by the patch size 4"):
        model(torch.randn(1, 3, 18, 18))
    with pytest.raises(ValueError, match=r"EncoderBlock expects \(B, N, 16\) tokens"):
        model.blocks[0](torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match=r"stochastic_depth: p must be a probability in \[0, 1\)"):
        stochastic_depth(torch.randn(2, 3), p=float("nan"), training=True)
    with pytest.raises(ValueError, match="expects 3 input channels"):
        model(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="4-D tensor"):
        model(torch.randn(3, 16, 16))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown preset"):
        vit_preset("vit_huge")


# ------------------------------------------------------------------------------------ torchvision equality
@torch.no_grad()
def test_torchvision_to_ours_same_logits_and_params() -> None:
    torch.manual_seed(0)
    tv = _randomize(TorchvisionViT(**TV_SMALL)).eval()
    ours = VisionTransformer(32, 4, num_classes=10, embed_dim=64, depth=2, num_heads=4, mlp_ratio=4.0).eval()
    load_torchvision_state_dict(ours, tv.state_dict())
    assert _n_params(ours) == _n_params(tv)
    x = torch.randn(4, 3, 32, 32)
    expected = tv(x)
    assert expected.abs().max() > 0.1  # a meaningful comparison, not zeros against zeros
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=0)
    # the attention-returning (explicit) path computes the same function
    torch.testing.assert_close(ours(x, return_attention=True)[0], expected, atol=1e-5, rtol=0)
    # and the convenience constructor reads the configuration off the torchvision model
    torch.testing.assert_close(from_torchvision(tv).eval()(x), expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_ours_to_torchvision_same_logits_and_params() -> None:
    torch.manual_seed(1)
    ours = _randomize(VisionTransformer(32, 4, num_classes=10, embed_dim=64, depth=2, num_heads=4), seed=1).eval()
    kwargs = torchvision_kwargs(ours)
    assert kwargs == TV_SMALL
    tv = TorchvisionViT(**kwargs).eval()
    tv.load_state_dict(to_torchvision_state_dict(ours), strict=True)
    assert _n_params(ours) == _n_params(tv)
    x = torch.randn(4, 3, 32, 32)
    expected = ours(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(tv(x), expected, atol=1e-5, rtol=0)


def test_torchvision_equality_survives_a_training_step() -> None:
    # Gradients flow through the same parameters: one identical SGD step keeps the two models equal.
    torch.manual_seed(2)
    tv = _randomize(TorchvisionViT(**TV_SMALL), seed=2)
    ours = from_torchvision(tv)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for model in (tv, ours):
        model.eval()  # no dropout in either; eval keeps torchvision's attention on its regular path too
        nn.functional.cross_entropy(model(x), y).backward()
        torch.optim.SGD(model.parameters(), lr=0.5).step()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=0)


def test_vit_b_16_has_torchvision_parameter_count() -> None:
    # Built on the meta device: the shapes of 86 M parameters without allocating or initialising them.
    with torch.device("meta"):
        ours, tv = vit_preset("vit_b_16"), vit_b_16(weights=None)
    assert _n_params(ours) == _n_params(tv) == 86_567_656
    assert {k: tuple(v.shape) for k, v in to_torchvision_state_dict(ours).items()} == {
        k: tuple(v.shape) for k, v in tv.state_dict().items()
    }


def test_load_rejects_mismatched_state_dicts() -> None:
    tv = TorchvisionViT(**TV_SMALL)
    with pytest.raises(ValueError, match="missing keys"):
        load_torchvision_state_dict(VisionTransformer(32, 4, embed_dim=64, depth=3, num_heads=4), tv.state_dict())
    with pytest.raises(ValueError, match="has shape"):
        load_torchvision_state_dict(VisionTransformer(32, 8, embed_dim=64, depth=2, num_heads=4), tv.state_dict())
    with pytest.raises(ValueError, match="pool='cls'"):
        to_torchvision_state_dict(VisionTransformer(32, 4, embed_dim=64, depth=2, num_heads=4, pool="gap"))


def test_layout_matches_reference() -> None:
    model = _tiny()
    block = model.blocks[0]
    assert isinstance(block.attn, MultiHeadAttention)  # the package's one attention implementation
    assert isinstance(block.mlp.act, nn.GELU) and block.mlp.act.approximate == "none"
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, nn.LayerNorm))


# ----------------------------------------------------------------------------------------- initialisation
def test_initialisation_follows_reference_implementations() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(embed_dim=192, depth=2, num_heads=3)
    for tensor in (model.pos_embed, model.blocks[0].attn.qkv.weight, model.blocks[1].mlp.fc2.weight, model.head.weight):
        assert tensor.abs().max() <= 0.04 + 1e-7  # truncated at 2 std
        assert 0.015 < tensor.std().item() < 0.02  # std of a normal truncated at ±2σ is 0.88σ
    assert torch.count_nonzero(model.blocks[0].mlp.fc1.bias) == 0 and torch.count_nonzero(model.head.bias) == 0
    fan_in = 3 * 4 * 4
    assert model.patch_embed.proj.weight.abs().max() <= 2 / math.sqrt(fan_in) + 1e-6


def test_zero_head_option_starts_at_uniform_predictions_and_blocks_encoder_gradients() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(embed_dim=32, depth=1, num_heads=2, head_init="zeros")
    assert torch.count_nonzero(model.head.weight) == 0 and torch.count_nonzero(model.head.bias) == 0
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    torch.testing.assert_close(logits, torch.zeros(2, 10))  # every class starts equally likely
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2])).backward()
    # the head learns at the first step; nothing behind it does until the head has grown
    assert model.head.weight.grad.abs().sum() > 0
    assert all(
        p.grad is None or torch.count_nonzero(p.grad) == 0 for n, p in model.named_parameters() if "head" not in n
    )
    # the default (DeiT/timm) head passes gradient to the encoder from the first step
    normal = VisionTransformer(embed_dim=32, depth=1, num_heads=2)
    torch.nn.functional.cross_entropy(normal(x), torch.tensor([1, 2])).backward()
    assert normal.pos_embed.grad.abs().sum() > 0


def test_presets() -> None:
    assert set(VIT_PRESETS) >= {"vit_tiny_p4_32", "vit_small_p4_32", "vit_b_16"}
    tiny = VisionTransformer.from_preset("vit_tiny_p4_32", num_classes=3, depth=1)
    assert (tiny.embed_dim, tiny.num_heads, tiny.depth, tiny.num_classes, tiny.seq_len) == (192, 3, 1, 3, 65)
    small = vit_preset("vit_small_p4_32", depth=1)
    assert (small.embed_dim, small.num_heads, small.grid_size) == (384, 6, (8, 8))
    assert small(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# -------------------------------------------------------------------------------- regularisation: dropout
def test_drop_path_drops_whole_samples_and_keeps_expectation() -> None:
    x = torch.ones(4000, 3, 5)
    out = stochastic_depth(x, 0.25, training=True)
    per_sample = out.flatten(1)
    # every sample is either dropped entirely or kept and scaled by 1/(1-p)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1))
    assert abs(out.mean().item() - 1.0) < 0.05
    assert torch.equal(stochastic_depth(x, 0.25, training=False), x)
    layer = DropPath(0.5).eval()
    assert torch.equal(layer(x), x)


def test_stochastic_depth_rate_grows_linearly() -> None:
    model = VisionTransformer(embed_dim=16, depth=5, num_heads=2, drop_path=0.2)
    assert [b.drop_path.p for b in model.blocks] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])


def test_encoder_block_is_pre_norm_residual() -> None:
    # Explicit computation of eq. (2)-(3) of Dosovitskiy et al. from the block's own sub-layers.
    torch.manual_seed(0)
    block = EncoderBlock(16, 2).double().eval()
    _randomize(block)
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    ln1, ln2 = block.norm1, block.norm2
    q, k, v = block.attn.qkv(ln1(x)).chunk(3, dim=-1)
    heads = [slice(0, 8), slice(8, 16)]
    att = torch.cat(
        [((q[..., h] @ k[..., h].transpose(1, 2)) / math.sqrt(8)).softmax(-1) @ v[..., h] for h in heads], -1
    )
    y = x + block.attn.proj(att)
    y = y + block.mlp.fc2(nn.functional.gelu(block.mlp.fc1(ln2(y))))
    torch.testing.assert_close(block(x), y, atol=1e-12, rtol=1e-12)


# -------------------------------------------------------------------------------- position embeddings
def test_interpolate_pos_embed_identity_at_same_size() -> None:
    pos = torch.randn(1, 1 + 16, 8)
    assert interpolate_pos_embed(pos, (4, 4)) is pos
    model = _randomize(_tiny(), seed=3).eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model.pos_embed_for((4, 4)), model.pos_embed)
    before = model(x)
    model.set_image_size(16)
    torch.testing.assert_close(model(x), before)


def test_interpolate_pos_embed_reproduces_a_smooth_embedding() -> None:
    # Embeddings that are a smooth (linear) function of each patch centre's position must be reproduced at
    # the new patch centres; bicubic interpolation is exact for linear functions away from the border.
    def grid_embedding(g: int) -> torch.Tensor:
        centres = (torch.arange(g, dtype=torch.float64) + 0.5) / g
        r, c = torch.meshgrid(centres, centres, indexing="ij")
        return torch.stack([r, c, 2 * r - c], dim=-1).reshape(1, g * g, 3)

    cls = torch.full((1, 1, 3), 7.0, dtype=torch.float64)
    old = torch.cat([cls, grid_embedding(8)], dim=1)
    new = interpolate_pos_embed(old, (12, 12))
    assert new.shape == (1, 1 + 144, 3) and torch.isfinite(new).all()
    torch.testing.assert_close(new[:, :1], cls)  # the class token's embedding is kept
    got, want = new[0, 1:].reshape(12, 12, 3), grid_embedding(12)[0].reshape(12, 12, 3)
    torch.testing.assert_close(got[3:-3, 3:-3], want[3:-3, 3:-3], atol=1e-9, rtol=0)


def test_new_input_size_gives_sane_outputs() -> None:
    model = _randomize(_tiny(), seed=4).eval()
    grid_part = model.pos_embed[0, 1:].detach()
    for size in ((24, 32), (8, 8), (40, 40)):  # finer, coarser and non-square grids than the trained 4×4
        pos = model.pos_embed_for((size[0] // 4, size[1] // 4)).detach()
        assert pos.shape == (1, 1 + size[0] * size[1] // 16, 16) and torch.isfinite(pos).all()
        # bicubic may overshoot a little, but stays in the range of the trained embeddings (per channel)
        span = grid_part.max(0).values - grid_part.min(0).values
        assert (pos[0, 1:] <= grid_part.max(0).values + 0.25 * span).all()
        assert (pos[0, 1:] >= grid_part.min(0).values - 0.25 * span).all()
        with torch.no_grad():
            logits = model(torch.randn(2, 3, *size))
        assert logits.shape == (2, 5) and torch.isfinite(logits).all()


def test_set_image_size_equals_on_the_fly_resampling() -> None:
    model = _randomize(_tiny(), seed=5).eval()
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        on_the_fly = model(x)
        model.set_image_size(24)
        assert model.grid_size == (6, 6) and model.seq_len == 37
        torch.testing.assert_close(model(x), on_the_fly)
    with pytest.raises(ValueError, match="not divisible"):
        model.set_image_size(30)


# ---------------------------------------------------------------------------------- attention rollout
def test_attention_rollout_matches_explicit_products() -> None:
    g = torch.Generator().manual_seed(0)
    a1 = torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64).softmax(-1)
    a2 = torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64).softmax(-1)
    eye = torch.eye(5, dtype=torch.float64)
    h1, h2 = 0.5 * a1.mean(1) + 0.5 * eye, 0.5 * a2.mean(1) + 0.5 * eye  # rows already sum to 1
    torch.testing.assert_close(attention_rollout([a1, a2]), h2 @ h1)
    torch.testing.assert_close(attention_rollout([a1], residual_weight=0.0), a1.mean(1))
    torch.testing.assert_close(attention_rollout([a1, a2]).sum(-1), torch.ones(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one"):
        attention_rollout([])
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout([a1], head_fusion="median")


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_attention_map_is_a_distribution_over_patches(pool: str) -> None:
    model = _randomize(_tiny(pool=pool), seed=6).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        maps = model.attention_map(x)
        logits_fused = model(x)
        logits_explicit, attentions = model(x, return_attention=True)
    assert maps.shape == (3, 4, 4) and (maps >= 0).all()
    torch.testing.assert_close(maps.sum((1, 2)), torch.ones(3))
    torch.testing.assert_close(logits_fused, logits_explicit, atol=1e-5, rtol=0)
    torch.testing.assert_close(attentions[0].sum(-1), torch.ones(3, 2, model.seq_len))


# --------------------------------------------------------------------------------- gradients / devices
@pytest.mark.parametrize("impl,pool", [("fused", "cls"), ("explicit", "gap")])
def test_gradcheck(impl: str, pool: str) -> None:
    torch.manual_seed(0)
    model = VisionTransformer(8, 4, num_classes=3, embed_dim=8, depth=1, num_heads=2, pool=pool, impl=impl)
    model = _randomize(model, std=0.3).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    # fast_mode checks a random projection of the Jacobian: same power to catch a wrong backward, far fewer passes
    assert torch.autograd.gradcheck(model, (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    # and through the resampled position embeddings at another input size
    x12 = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    pos = model.pos_embed.detach().clone().requires_grad_(True)
    grid_pos = lambda p: interpolate_pos_embed(p, (3, 3), num_prefix_tokens=model.num_prefix_tokens)  # noqa: E731
    assert torch.autograd.gradcheck(grid_pos, (pos,), eps=1e-6, atol=1e-5, fast_mode=True)
    assert torch.isfinite(model(x12)).all()


def test_meta_device_forward_backward() -> None:
    with torch.device("meta"):
        model = VisionTransformer(32, 4, num_classes=10, embed_dim=32, depth=2, num_heads=2, drop_path=0.1)
        x = torch.randn(2, 3, 32, 32)
    model.train()
    logits = model(x)
    assert logits.device.type == "meta" and logits.shape == (2, 10)
    logits.sum().backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.device.type == "meta"
    assert model(torch.randn(1, 3, 48, 48, device="meta")).shape == (1, 10)
    assert model.eval().attention_map(x).shape == (2, 8, 8)


def test_float64_and_dtype_follow_the_model() -> None:
    model = _tiny().double()
    out = model(torch.randn(1, 3, 20, 20, dtype=torch.float64))
    assert out.dtype == torch.float64


# ------------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_seeded_quick_training_learns_above_chance() -> None:
    from nlbook.data import load_dataset
    from nlbook.train import TrainConfig, fit

    torch.manual_seed(0)
    data = load_dataset("digits")
    # 16 tokens of 8×8 patches, one block: small enough for a few seconds of CPU; average pooling learns
    # fastest from scratch on so little data (Beyer et al., 2022).
    model = VisionTransformer(32, 8, num_classes=10, embed_dim=32, depth=1, num_heads=2, pool="gap")
    config = TrainConfig(
        epochs=6,
        batch_size=32,
        optimizer="adamw",
        lr=1e-2,
        weight_decay=0.05,
        warmup_epochs=0.5,
        grad_clip=1.0,
        augment=False,
        max_train=960,
        max_test=200,
        seed=0,
    )
    record = fit(model, data, config, device="cpu", progress=False)
    assert record.params == sum(p.numel() for p in model.parameters())
    # chance is 10 %
    assert record.history[-1].test_acc > 0.3, record.summary()
    assert record.history[-1].train_loss < 0.8 * record.history[0].train_loss
