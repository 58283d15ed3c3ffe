"""Tests for nlbook.hybrid — SE, CBAM, BoTNet blocks, CoAtNet and the hybrid ResNet builder (chapter 5)."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from timm.layers import SEModule
from timm.layers.cbam import CbamModule
from torch import nn

from nlbook.cnn import BasicBlock, ResNet
from nlbook.coatnet import CoAtNet, LayerNorm2d, MBConv, RelativePositionBias2d, TransformerBlock2d, coatnet
from nlbook.hybrid import CBAM, HYBRID_KINDS, BoTBlock, SqueezeExcitation, attention_maps, hybrid_resnet


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random values in every parameter and BatchNorm statistic, so no check passes by zeros or ones."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module


# --------------------------------------------------------------------------------------- squeeze-excitation
def test_se_matches_timm_with_copied_weights() -> None:
    ours = _randomize_(SqueezeExcitation(32, rd_channels=8))
    ref = SEModule(32, rd_channels=8)  # timm: 1x1 convs with biases, ReLU, sigmoid — the paper's SE
    with torch.no_grad():
        ref.fc1.weight.copy_(ours.fc1.weight[:, :, None, None])
        ref.fc1.bias.copy_(ours.fc1.bias)
        ref.fc2.weight.copy_(ours.fc2.weight[:, :, None, None])
        ref.fc2.bias.copy_(ours.fc2.bias)
    x = _randn(3, 32, 5, 7)
    torch.testing.assert_close(ours(x), ref(x))


def test_se_hidden_size_rule() -> None:
    assert SqueezeExcitation(512).rd_channels == 32  # C / r with r = 16
    assert SqueezeExcitation(64).rd_channels == 8  # floored at 8 (64 // 16 = 4)
    assert SqueezeExcitation(64, reduction=4).rd_channels == 16
    assert SqueezeExcitation(64, rd_channels=3).rd_channels == 3


def test_se_with_zero_excitation_halves_the_input() -> None:
    se = SqueezeExcitation(16)
    nn.init.zeros_(se.fc2.weight)
    nn.init.zeros_(se.fc2.bias)
    x = _randn(2, 16, 4, 4)
    torch.testing.assert_close(se.gate(x), torch.full((2, 16, 1, 1), 0.5))
    torch.testing.assert_close(se(x), x / 2)


def test_se_gate_is_per_image_and_per_channel_only() -> None:
    # Gating mixes no positions: the gate is constant over H, W and one image's gate ignores the others.
    se = _randomize_(SqueezeExcitation(8, rd_channels=4))
    x = _randn(2, 8, 5, 5)
    out = se(x)
    ratio = out / x
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))
    torch.testing.assert_close(se(x[:1]), out[:1])


# --------------------------------------------------------------------------------------------------- CBAM
def _copy_cbam_to_timm(ours: CBAM, ref: CbamModule) -> None:
    with torch.no_grad():
        ref.channel.fc1.weight.copy_(ours.mlp[0].weight[:, :, None, None])
        ref.channel.fc2.weight.copy_(ours.mlp[2].weight[:, :, None, None])
        ref.spatial.conv.conv.weight.copy_(ours.spatial_conv.weight)


@pytest.mark.parametrize("train", [False, True])
def test_cbam_with_spatial_norm_matches_timm(train: bool) -> None:
    # spatial_norm=True is the authors' code / timm: conv -> BatchNorm -> sigmoid. Equal in both modes.
    ours = _randomize_(CBAM(32, rd_channels=4, spatial_norm=True))
    ref = CbamModule(32, rd_channels=4)
    _copy_cbam_to_timm(ours, ref)
    with torch.no_grad():
        bn = ref.spatial.conv.bn
        bn.weight.copy_(ours.spatial_norm.weight)
        bn.bias.copy_(ours.spatial_norm.bias)
        bn.running_mean.copy_(ours.spatial_norm.running_mean)
        bn.running_var.copy_(ours.spatial_norm.running_var)
    ours.train(train)
    ref.train(train)
    x = _randn(4, 32, 6, 5)
    torch.testing.assert_close(ours(x), ref(x))


def test_cbam_paper_form_equals_timm_with_identity_batchnorm() -> None:
    """Documented difference: Woo et al.'s Eq. 3 is σ(f7×7([avg; max])) with no normalisation; timm's
    CbamModule (like the authors' code) has a BatchNorm after the 7×7 conv. With that BatchNorm made the
    identity (weight 1, bias 0, running mean 0, running var 1 − eps, eval mode) the two agree exactly."""
    ours = _randomize_(CBAM(32, rd_channels=4))
    assert isinstance(ours.spatial_norm, nn.Identity)
    ref = CbamModule(32, rd_channels=4)
    _copy_cbam_to_timm(ours, ref)
    bn = ref.spatial.conv.bn
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    ref.eval()
    x = _randn(4, 32, 6, 5)
    torch.testing.assert_close(ours(x), ref(x))
    # ...and in training mode timm's BatchNorm normalises with batch statistics, so the two differ.
    ref.train()
    assert (ours(x) - ref(x)).abs().max() > 1e-3


def test_cbam_gates_are_what_forward_applies() -> None:
    cbam = _randomize_(CBAM(16, rd_channels=4))
    x = _randn(2, 16, 6, 6)
    mc, ms = cbam.gates(x)
    assert mc.shape == (2, 16, 1, 1) and ms.shape == (2, 1, 6, 6)
    assert bool(((ms > 0) & (ms < 1)).all()) and bool(((mc > 0) & (mc < 1)).all())
    torch.testing.assert_close(cbam(x), x * mc * ms)


def test_cbam_spatial_gate_explicit() -> None:
    # Eq. 3 written out: channel mean and max per pixel, then a 7×7 conv with zero padding, sigmoid.
    cbam = _randomize_(CBAM(4, rd_channels=2))
    x = _randn(1, 4, 5, 5)
    avg, mx = x.mean(1), x.amax(1)  # (1, 5, 5)
    padded = F.pad(torch.stack([avg, mx], 1), (3, 3, 3, 3))
    w = cbam.spatial_conv.weight[0]  # (2, 7, 7)
    expected = torch.empty(1, 1, 5, 5)
    for i in range(5):
        for j in range(5):
            expected[0, 0, i, j] = torch.sigmoid((padded[0, :, i : i + 7, j : j + 7] * w).sum())
    torch.testing.assert_close(cbam.spatial_gate(x), expected)


def test_cbam_with_zero_weights_quarters_the_input() -> None:
    cbam = CBAM(8)
    nn.init.zeros_(cbam.mlp[2].weight)
    nn.init.zeros_(cbam.spatial_conv.weight)
    x = _randn(2, 8, 4, 4)
    torch.testing.assert_close(cbam(x), x / 4)  # both gates are σ(0) = 1/2


@pytest.mark.parametrize("make", [lambda c: SqueezeExcitation(c, rd_channels=4), lambda c: CBAM(c, rd_channels=4)])
def test_gate_goes_on_the_residual_branch_of_basic_block(make) -> None:
    torch.manual_seed(0)
    gate = _randomize_(make(8))
    block = BasicBlock(8, 8, attention=gate).eval()
    _randomize_(block.bn2, seed=1)
    x = _randn(2, 8, 6, 6)
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), F.relu(gate(branch) + x))


# ---------------------------------------------------------------------------------------------- BoT block
def test_bot_block_shapes() -> None:
    assert BoTBlock(16, 32, size=8, stride=2)(_randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    assert BoTBlock(16, 16, size=(4, 6))(_randn(2, 16, 4, 6)).shape == (2, 16, 4, 6)
    assert BoTBlock(16, 64, size=4, expansion=4).mhsa.dim == 16


def test_bot_block_is_relu_of_shortcut_at_init() -> None:
    # zero_init_residual: the last BatchNorm starts at zero, so the block is ReLU(x) — the identity on the
    # non-negative output of a previous block.
    block = BoTBlock(16, 16, size=4).eval()
    x = _randn(2, 16, 4, 4).relu()
    torch.testing.assert_close(block(x), x)
    block_down = BoTBlock(16, 32, size=4, stride=2).eval()
    torch.testing.assert_close(block_down(x), F.relu(block_down.shortcut(x)))


def _explicit_bot_forward(block: BoTBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The BoT block from Srinivas et al. (2021), position by position, from the module's parameters only."""
    h, w = block.size
    heads, d = block.mhsa.num_heads, block.mhsa.head_dim
    y = block.reduce(x)  # (B, C_mid, H, W)
    b, c_mid = y.shape[:2]
    qkv = torch.einsum("oc,bchw->bohw", block.mhsa.qkv.weight[:, :, 0, 0], y)
    q, k, v = (t.reshape(b, heads, d, h * w) for t in qkv.split(c_mid, dim=1))  # (B, heads, d, N)
    rh, rw = block.mhsa.rel_pos.rel_height, block.mhsa.rel_pos.rel_width
    logits = torch.empty(b, heads, h * w, h * w, dtype=x.dtype)
    for n in range(h * w):
        yn, xn = divmod(n, w)
        for m in range(h * w):
            ym, xm = divmod(m, w)
            r = rh[ym - yn + h - 1] + rw[xm - xn + w - 1]  # embedding of the offset key − query
            # content + position logits (q·k + q·r), scaled by 1/√d as attention.py (and BoTNet's code) does
            logits[:, :, n, m] = ((q[..., n] * k[..., m]).sum(-1) + (q[..., n] * r).sum(-1)) / math.sqrt(d)
    weights = logits.softmax(-1)
    mixed = torch.einsum("bhnm,bhdm->bhdn", weights, v).reshape(b, c_mid, h, w)
    out = block.expand(block.post(block.pool(mixed)))
    return F.relu(out + block.shortcut(x)), weights


@pytest.mark.parametrize("stride,size", [(1, (3, 4)), (2, (4, 6))])
def test_bot_block_relative_logits_match_explicit_computation(stride: int, size: tuple[int, int]) -> None:
    block = _randomize_(BoTBlock(8, 16, size=size, stride=stride, num_heads=2, expansion=2)).double().eval()
    x = _randn(2, 8, *size, dtype=torch.float64)
    expected_out, expected_w = _explicit_bot_forward(block, x)
    torch.testing.assert_close(block.attention_weights(x), expected_w)
    torch.testing.assert_close(block(x), expected_out)


def test_bot_block_position_logits_matter() -> None:
    # Without the relative term the MHSA would be permutation-equivariant; with it, shuffling pixels changes
    # the output by more than the shuffle.
    block = _randomize_(BoTBlock(8, 8, size=4, num_heads=2, expansion=1)).eval()
    x = _randn(1, 8, 4, 4)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    shuffled = x.flatten(2)[..., perm].reshape_as(x)
    out_then_shuffle = block.mhsa(block.reduce(x)).flatten(2)[..., perm]
    shuffle_then_out = block.mhsa(block.reduce(shuffled)).flatten(2)
    assert (out_then_shuffle - shuffle_then_out).abs().max() > 1e-3


def test_bot_block_gradcheck() -> None:
    block = _randomize_(BoTBlock(4, 4, size=(2, 3), num_heads=2, expansion=1)).double().eval()
    x = _randn(1, 4, 2, 3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(block, (x,))


# ------------------------------------------------------------------------------------------- CoAtNet parts
def test_relative_position_bias_explicit() -> None:
    bias_mod = RelativePositionBias2d((3, 4), num_heads=2)
    bias = bias_mod()
    assert bias.shape == (2, 12, 12)
    for n in range(12):
        for m in range(12):
            dy, dx = n // 4 - m // 4, n % 4 - m % 4
            torch.testing.assert_close(bias[:, n, m], bias_mod.table[(dy + 2) * 7 + (dx + 3)])


def test_relative_position_bias_is_translation_invariant() -> None:
    # w[i − j]: every (query, key) pair with the same offset gets the same logit (CoAtNet Eq. 3).
    bias = RelativePositionBias2d(4, num_heads=1)()[0]
    torch.testing.assert_close(bias[0 * 4 + 0, 1 * 4 + 2], bias[2 * 4 + 1, 3 * 4 + 3])
    assert bias[0, 1] != bias[0, 4]  # (0, −1) vs (−1, 0) offsets: different entries


def test_transformer_block_attention_matches_torch_multihead_attention() -> None:
    # Independent reference: torch.nn.MultiheadAttention with the relative bias as a float attn_mask.
    block = TransformerBlock2d(16, 16, size=(3, 4), head_dim=8).eval()
    _randomize_(block.rel_bias)
    x = _randn(2, 16, 3, 4)
    tokens = block._tokens(x)
    ref = nn.MultiheadAttention(16, 2, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(block.attn.qkv.weight)
        ref.in_proj_bias.copy_(block.attn.qkv.bias)
        ref.out_proj.weight.copy_(block.attn.proj.weight)
        ref.out_proj.bias.copy_(block.attn.proj.bias)
    mask = block.rel_bias().repeat(2, 1, 1)  # (B·heads, N, N), batch-major
    expected, expected_w = ref(tokens, tokens, tokens, attn_mask=mask, average_attn_weights=False)
    torch.testing.assert_close(block.attn(tokens, bias=block.rel_bias()), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(block.attention_weights(x), expected_w, atol=1e-6, rtol=1e-5)
    mixed = expected.transpose(1, 2).reshape(2, 16, 3, 4)
    after_attn = x + mixed
    torch.testing.assert_close(block(x), after_attn + block.mlp(block.norm2(after_attn)), atol=1e-5, rtol=1e-5)


def test_transformer_block_downsamples() -> None:
    block = TransformerBlock2d(16, 32, size=8, stride=2, head_dim=16)
    assert block(_randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    assert block.attention_weights(_randn(2, 16, 8, 8)).shape == (2, 2, 16, 16)


def test_mbconv_is_its_shortcut_at_init() -> None:
    x = _randn(2, 8, 8, 8)
    torch.testing.assert_close(MBConv(8, 8)(x), x)
    down = MBConv(8, 16, stride=2)
    out = down(x)
    assert out.shape == (2, 16, 4, 4)
    torch.testing.assert_close(out, down.shortcut(x))
    torch.testing.assert_close(down.shortcut[0](x), F.avg_pool2d(x, 2))


def test_mbconv_gradcheck() -> None:
    block = _randomize_(MBConv(4, 4, expand_ratio=2, zero_init_last=False)).double().eval()
    x = _randn(1, 4, 3, 3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(block, (x,))


def test_coatnet_layout_and_shapes() -> None:
    model = coatnet(num_classes=7, width=8, depths=(1, 1, 1, 1), head_dim=8)
    assert isinstance(model, CoAtNet)
    kinds = [type(stage[0]).__name__ for stage in model.stages]
    assert kinds == ["MBConv", "MBConv", "TransformerBlock2d", "TransformerBlock2d"]
    x = _randn(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    assert model.forward_features(x).shape == (2, 64, 4, 4)
    assert model.stages[2][0].size == (8, 8) and model.stages[3][0].out_size == (4, 4)
    maps = attention_maps(model.eval(), x)
    assert sorted(maps) == ["stages.2.0", "stages.3.0"]
    assert maps["stages.2.0"].shape == (2, 4, 64, 64) and maps["stages.3.0"].shape == (2, 8, 16, 16)


# ------------------------------------------------------------------------------------------- the builder
@pytest.mark.parametrize("kind", HYBRID_KINDS)
def test_hybrid_resnet_builds_every_kind(kind: str) -> None:
    model = hybrid_resnet(kind, num_classes=5, width=8, depths=(1, 1, 1, 1))
    assert type(model) is ResNet  # built through block_factory, never a copy of ResNet
    assert model(_randn(2, 3, 32, 32)).shape == (2, 5)
    blocks = [b for stage in model.stages for b in stage]
    if kind == "se":
        assert all(isinstance(b, BasicBlock) and isinstance(b.attention, SqueezeExcitation) for b in blocks)
    elif kind == "cbam":
        assert all(isinstance(b, BasicBlock) and isinstance(b.attention, CBAM) for b in blocks)
    elif kind == "botnet":
        assert [type(b).__name__ for b in blocks] == ["BasicBlock"] * 3 + ["BoTBlock"]
    else:
        assert all(isinstance(b, BasicBlock) and isinstance(b.attention, nn.Identity) for b in blocks)


def test_hybrid_resnet_botnet_feature_sizes() -> None:
    model = hybrid_resnet("botnet", widths=(8, 16, 32), depths=(1, 2, 2), image_size=24, botnet_stages=(1, 2))
    bots = [b for b in model.modules() if isinstance(b, BoTBlock)]
    # stage 1: 24×24 in → attends at 24 then pools; stage 2: 12 in → 6
    assert [(b.size, b.stride) for b in bots] == [((24, 24), 2), ((12, 12), 1), ((12, 12), 2), ((6, 6), 1)]
    assert model(_randn(1, 3, 24, 24)).shape == (1, 10)


def test_hybrid_resnet_starts_as_identity_residuals() -> None:
    # With zero_init_residual every residual branch ends in a zero BatchNorm, so the gate multiplies zeros:
    # at init "se" and "cbam" compute exactly the baseline's function (a gate after the addition would not).
    x = _randn(2, 3, 32, 32)
    outs = {}
    for kind in ("resnet", "se", "cbam"):
        torch.manual_seed(0)
        outs[kind] = hybrid_resnet(kind, width=8, depths=(1, 1, 1, 1), reduction=4, zero_init_residual=True).eval()
    state = outs["resnet"].state_dict()
    for kind in ("se", "cbam"):
        outs[kind].load_state_dict(state, strict=False)
        torch.testing.assert_close(outs[kind](x), outs["resnet"](x))


def test_cbam_gates_start_at_one_half_in_a_zero_init_resnet() -> None:
    # The gate reads the branch after its zero-initialised last BatchNorm: input 0, so σ(0) = 1/2 everywhere.
    model = hybrid_resnet("cbam", width=8, depths=(1, 1, 1, 1), zero_init_residual=True).eval()
    maps = attention_maps(model, _randn(2, 3, 32, 32))
    for gate in maps.values():
        torch.testing.assert_close(gate, torch.full_like(gate, 0.5))


def test_attention_maps_of_hybrid_resnets() -> None:
    x = _randn(2, 3, 32, 32)
    cbam_maps = attention_maps(hybrid_resnet("cbam", width=8, depths=(1, 1, 1, 1)).eval(), x)
    assert list(cbam_maps) == [f"stages.{s}.0.attention" for s in range(4)]
    assert [m.shape[-1] for m in cbam_maps.values()] == [32, 16, 8, 4]
    bot_maps = attention_maps(hybrid_resnet("botnet", width=8, depths=(1, 1, 1, 2)).eval(), x)
    assert {k: tuple(v.shape) for k, v in bot_maps.items()} == {
        "stages.3.0": (2, 4, 64, 64),
        "stages.3.1": (2, 4, 16, 16),
    }
    torch.testing.assert_close(bot_maps["stages.3.1"].sum(-1), torch.ones(2, 4, 16))


# ------------------------------------------------------------------------------------------ device-agnostic
META_CASES = {
    "se": (lambda: SqueezeExcitation(8), (2, 8, 5, 5)),
    "cbam": (lambda: CBAM(8, spatial_norm=True), (2, 8, 5, 5)),
    "bot": (lambda: BoTBlock(8, 16, size=4, stride=2, num_heads=2), (2, 8, 4, 4)),
    "mbconv": (lambda: MBConv(8, 16, stride=2), (2, 8, 4, 4)),
    "transformer": (lambda: TransformerBlock2d(8, 16, size=4, stride=2, head_dim=8), (2, 8, 4, 4)),
    "coatnet": (lambda: coatnet(width=8, depths=(1, 1, 1, 1), head_dim=8), (2, 3, 32, 32)),
    "resnet-botnet": (lambda: hybrid_resnet("botnet", width=8, depths=(1, 1, 1, 1)), (2, 3, 32, 32)),
    "resnet-cbam": (lambda: hybrid_resnet("cbam", width=8, depths=(1, 1, 1, 1)), (2, 3, 32, 32)),
}


@pytest.mark.parametrize("name", sorted(META_CASES))
def test_forward_backward_on_meta_device(name: str) -> None:
    make, shape = META_CASES[name]
    module = make().to("meta")
    x = torch.randn(*shape, device="meta", requires_grad=True)
    out = module(x)
    assert out.device.type == "meta"
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_float64_end_to_end() -> None:
    model = hybrid_resnet("botnet", width=8, depths=(1, 1, 1, 1)).double()
    assert model(_randn(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


# --------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make,x,exc,match",
    [
        (lambda: SqueezeExcitation(8), _randn(2, 4, 5, 5), ValueError, "expects 8 input channels"),
        (lambda: SqueezeExcitation(8), _randn(8, 5, 5), ValueError, "4-D tensor"),
        (lambda: CBAM(8), torch.ones(1, 8, 4, 4, dtype=torch.long), TypeError, "floating-point"),
        (lambda: CBAM(8), "image", TypeError, "torch.Tensor"),
        (lambda: BoTBlock(8, 8, size=4, num_heads=2), _randn(1, 8, 5, 5), ValueError, "built for 4×4"),
        (lambda: TransformerBlock2d(8, 8, size=4, head_dim=8), _randn(1, 8, 3, 3), ValueError, "built for 4×4"),
        (lambda: MBConv(8, 8, stride=2), _randn(1, 8, 5, 5), ValueError, "even feature-map size"),
        (lambda: LayerNorm2d(8), _randn(1, 4, 2, 2), ValueError, "expects 8 input channels"),
        (
            lambda: partial(attention_maps, hybrid_resnet("se", width=8)),
            _randn(1, 3, 32, 32),
            ValueError,
            "has no CBAM",
        ),
        (lambda: partial(attention_maps, "model"), _randn(1, 3, 32, 32), TypeError, "expects an nn.Module"),
        (lambda: coatnet(width=8, depths=(1, 1, 1, 1), head_dim=8), _randn(1, 3, 28, 28), ValueError, "32×32"),
    ],
)
def test_bad_input_raises_clear_error(make, x, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        make()(x)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: SqueezeExcitation(0), "channels must be a positive int"),
        (lambda: SqueezeExcitation(8, reduction=0), "reduction must be a positive int"),
        (lambda: CBAM(8, spatial_kernel=4), "spatial_kernel must be odd"),
        (lambda: BoTBlock(8, 8, size=4, num_heads=3), "multiple of num_heads"),
        (lambda: BoTBlock(8, 8, size=5, stride=2, num_heads=2), "even feature-map size"),
        (lambda: BoTBlock(8, 8, size=4, stride=3, num_heads=2), "stride must be 1 or 2"),
        (lambda: BoTBlock(8, 8, size=(4, 4, 4), num_heads=2), "size must be"),
        (lambda: TransformerBlock2d(8, 12, size=4, head_dim=8), "multiple of head_dim"),
        (lambda: MBConv(8, 8, se_ratio=0.0), "se_ratio"),
        (lambda: CoAtNet(kinds="CCTX"), "kinds must be 'C'"),
        (lambda: CoAtNet(image_size=30), "divisible by the total stride"),
        (lambda: CoAtNet(widths=(8, 8), depths=(1,)), "same non-zero length"),
        (lambda: hybrid_resnet("vit"), "kind must be one of"),
        (lambda: hybrid_resnet("botnet", botnet_stages=(4,)), "botnet_stages"),
        (lambda: hybrid_resnet("botnet", image_size=20), "divisible by 2\\*\\*3"),
    ],
)
def test_bad_arguments_raise_clear_error(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()
