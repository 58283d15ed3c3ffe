"""Tests for nlbook.local_attention — Swin windows, SASA neighbourhoods, convolution as attention (chapter 5).

References: timm's Swin layers with copied weights; the SASA equation and Cordonnier et al.'s construction
written out per pixel; F.conv2d.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from timm.models import swin_transformer as timm_swin
from torch import nn

from nlbook.attention import MultiHeadSelfAttention2d
from nlbook.cnn import BasicBlock, ResNet
from nlbook.local_attention import (
    LocalAttentionBlock,
    LocalSelfAttention2d,
    LocalSelfAttention2dMinimal,
    PatchMerging,
    RelativeOffsetAttention2d,
    SwinBlock,
    SwinTransformer,
    WindowAttention,
    WindowAttentionMinimal,
    attention_by_offset,
    conv_as_attention,
    sasa_resnet,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _randomize_(module: nn.Module, seed: int = 0, std: float = 0.5) -> nn.Module:
    """Random values in every parameter (LayerNorm affine too), so no check passes by zeros or ones."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module


# --------------------------------------------------------------------------------------------------- windows
def test_window_partition_matches_timm_and_reverses() -> None:
    x = _randn(2, 3, 8, 12)
    ours = window_partition(x, 4)
    ref = timm_swin.window_partition(x.permute(0, 2, 3, 1), (4, 4)).reshape(-1, 16, 3)
    assert ours.shape == (2 * 2 * 3, 16, 3)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    torch.testing.assert_close(window_reverse(ours, 4, 8, 12), x, rtol=0, atol=0)


def test_shifted_window_mask_matches_timm() -> None:
    block = timm_swin.SwinTransformerBlock(8, input_resolution=(8, 12), num_heads=2, window_size=4, shift_size=2)
    ref = block.attn_mask == 0  # timm: 0 = may attend, -100 = kept apart
    ours = shifted_window_mask(8, 12, 4, 2)
    assert ours.shape == (6, 16, 16)
    assert torch.equal(ours, ref)
    assert not ours.all(), "the shifted windows must keep some pairs apart"
    assert shifted_window_mask(8, 12, 4, 0).all()


def _timm_block(dim: int, size: tuple[int, int], heads: int, window: int, shift: int) -> nn.Module:
    return timm_swin.SwinTransformerBlock(
        dim, input_resolution=size, num_heads=heads, window_size=window, shift_size=shift
    ).double()


def _copy_attention_from_timm(ours: WindowAttention, ref: nn.Module) -> None:
    with torch.no_grad():
        ours.mha.qkv.weight.copy_(ref.qkv.weight)
        ours.mha.qkv.bias.copy_(ref.qkv.bias)
        ours.mha.proj.weight.copy_(ref.proj.weight)
        ours.mha.proj.bias.copy_(ref.proj.bias)
        ours.rel_bias.table.copy_(ref.relative_position_bias_table)


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_window_attention_matches_timm(impl: str) -> None:
    ref = _randomize_(timm_swin.WindowAttention(16, num_heads=4, window_size=4).double()).eval()
    ours = WindowAttention(16, window_size=4, num_heads=4, impl=impl).double().eval()
    _copy_attention_from_timm(ours, ref)
    x = _randn(2, 16, 8, 12)
    expected = window_reverse(ref(window_partition(x, 4)), 4, 8, 12)
    torch.testing.assert_close(ours(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shift", [0, 2])
def test_shifted_window_attention_matches_timm_block_attention(shift: int) -> None:
    ref = _randomize_(_timm_block(16, (8, 12), 4, 4, shift)).eval()
    ours = WindowAttention(16, window_size=4, num_heads=4, shift_size=shift).double().eval()
    _copy_attention_from_timm(ours, ref.attn)
    x = _randn(2, 16, 8, 12)
    expected = ref._attn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # timm's roll + windows + mask, no norm
    torch.testing.assert_close(ours(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shift", [0, 2])
def test_swin_block_matches_timm(shift: int) -> None:
    ref = _randomize_(_timm_block(16, (8, 8), 2, 4, shift), seed=3).eval()
    ours = SwinBlock(16, num_heads=2, window_size=4, shift_size=shift).double().eval()
    _copy_attention_from_timm(ours.attn, ref.attn)
    with torch.no_grad():
        for name in ("norm1", "norm2"):
            getattr(ours, name).load_state_dict(getattr(ref, name).state_dict())
        ours.mlp.fc1.load_state_dict(ref.mlp.fc1.state_dict())
        ours.mlp.fc2.load_state_dict(ref.mlp.fc2.state_dict())
    x = _randn(2, 16, 8, 8, seed=1)
    out = ours(x)
    torch.testing.assert_close(out, ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), rtol=1e-10, atol=1e-10)
    if shift:  # the shift matters: the unshifted block with the same weights computes something else
        plain = SwinBlock(16, num_heads=2, window_size=4).double().eval()
        plain.load_state_dict(ours.state_dict())
        assert (plain(x) - out).abs().max() > 1e-3


def test_window_attention_stays_inside_windows() -> None:
    """A change in one window leaves the other windows' outputs unchanged (unshifted)."""
    model = _randomize_(WindowAttention(8, window_size=4, num_heads=2)).double().eval()
    x = _randn(1, 8, 8, 8)
    y = x.clone()
    y[..., :4, :4] += 1.0  # top-left window only
    diff = (model(x) - model(y)).abs().sum(1)[0]
    assert diff[:4, :4].min() > 0
    assert diff[4:, :].max() == 0 and diff[:, 4:].max() == 0


@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention_minimal_equals_production(shift: int) -> None:
    prod = _randomize_(WindowAttention(16, window_size=4, num_heads=4, shift_size=shift)).double().eval()
    minimal = WindowAttentionMinimal(16, window_size=4, num_heads=4, shift_size=shift).double()
    minimal.load_state_dict(prod.state_dict())
    x = _randn(2, 16, 8, 12)
    torch.testing.assert_close(minimal(x), prod(x), rtol=1e-12, atol=1e-12)


def test_window_attention_returns_weights() -> None:
    model = WindowAttention(8, window_size=2, num_heads=2, shift_size=1).double()
    out, weights = model(_randn(3, 8, 4, 6), return_attention=True)
    assert out.shape == (3, 8, 4, 6) and weights.shape == (3 * 6, 2, 4, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(18, 2, 4, dtype=torch.float64))


# --------------------------------------------------------------------------------------------------- SASA
def _sasa_loop(model: LocalSelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """The SASA equation pixel by pixel: y_ij = Σ_(a,b) softmax(q_ij·(k_ab + r_(a−i,b−j))·scale) v_ab."""
    q, k, v = model.query(x), model.key(x), model.value(x)
    b, _, height, width = x.shape
    heads, d, p = model.num_heads, model.head_dim, model.kernel_size // 2
    out = x.new_zeros(b, model.out_dim, height, width)
    for h in range(heads):
        c = slice(h * d, (h + 1) * d)
        for i in range(height):
            for j in range(width):
                logits, values = [], []
                for a in range(i - p, i + p + 1):
                    for bb in range(j - p, j + p + 1):
                        if not (0 <= a < height and 0 <= bb < width):
                            continue  # outside the image: not a neighbour
                        r = torch.cat([model.rel_height[h, a - i + p], model.rel_width[h, bb - j + p]])
                        logits.append((q[:, c, i, j] * (k[:, c, a, bb] + r)).sum(-1) * model.scale)
                        values.append(v[:, c, a, bb])
                weights = torch.stack(logits, -1).softmax(-1)  # (B, neighbours)
                out[:, c, i, j] = torch.einsum("bn,nbd->bd", weights, torch.stack(values))
    return out


@pytest.mark.parametrize(
    ("kernel_size", "scale", "impl"), [(3, None, "fused"), (5, 1.0, "explicit"), (3, 1.0, "fused")]
)
def test_sasa_matches_the_equation_per_pixel(kernel_size: int, scale: float | None, impl: str) -> None:
    model = _randomize_(LocalSelfAttention2d(6, 8, kernel_size, num_heads=2, scale=scale, impl=impl)).double()
    x = _randn(2, 6, 5, 4)
    torch.testing.assert_close(model(x), _sasa_loop(model, x), rtol=1e-10, atol=1e-10)


def test_sasa_positions_matter_and_window_is_local() -> None:
    model = _randomize_(LocalSelfAttention2d(4, 4, 3, num_heads=1)).double()
    x = _randn(1, 4, 7, 7)
    y = x.clone()
    y[..., 0, 0] += 1.0
    diff = (model(x) - model(y)).abs().sum(1)[0]
    assert diff[:2, :2].min() > 0  # the 3×3 neighbourhood of (0, 0) sees the change ...
    assert diff[2:, :].max() == 0 and diff[:, 2:].max() == 0  # ... nothing further away does
    without = LocalSelfAttention2d(4, 4, 3, num_heads=1).double()
    without.load_state_dict(model.state_dict())
    with torch.no_grad():
        without.rel_height.zero_()
        without.rel_width.zero_()
    assert (without(x) - model(x)).abs().max() > 1e-3


def test_sasa_minimal_equals_production() -> None:
    prod = _randomize_(LocalSelfAttention2d(6, 8, 3, num_heads=2)).double()
    minimal = LocalSelfAttention2dMinimal(6, 8, 3, num_heads=2).double()
    minimal.load_state_dict(prod.state_dict())
    x = _randn(2, 6, 5, 7)
    torch.testing.assert_close(minimal(x), prod(x), rtol=1e-12, atol=1e-12)


def test_sasa_attention_weights_are_zero_off_the_image() -> None:
    model = LocalSelfAttention2d(4, 4, 3, num_heads=2).double()
    _, weights = model(_randn(1, 4, 3, 3), return_attention=True)
    assert weights.shape == (1, 2, 9, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 2, 9, dtype=torch.float64))
    assert torch.all(weights[:, :, 0, :3] == 0) and torch.all(weights[:, :, 0, [0, 3, 6]] == 0)  # corner pixel


# --------------------------------------------------------------------------------------- convolution as attention
@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "bias", "seed"),
    [(3, 5, 3, True, 0), (4, 4, 3, False, 1), (2, 6, 5, True, 2), (3, 2, 1, True, 3)],
)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_conv_as_attention_equals_the_convolution(
    c_in: int, c_out: int, k: int, bias: bool, seed: int, dtype: torch.dtype, tol: float
) -> None:
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias).to(dtype)
    layer = conv_as_attention(conv)
    assert layer.num_heads == k * k and layer.alpha.dtype == dtype
    x = _randn(2, c_in, 7, 6, seed=seed, dtype=dtype)
    expected = F.conv2d(x, conv.weight, conv.bias, padding=k // 2)
    assert (layer(x) - expected).abs().max() <= tol
    hard = conv_as_attention(conv, alpha=math.inf)
    assert (hard(x) - expected).abs().max() <= tol


def test_conv_as_attention_can_fail() -> None:
    """A soft α leaks weight to the neighbours; a flipped kernel is another convolution."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    x = _randn(1, 3, 6, 6)
    assert (conv_as_attention(conv, alpha=1.0)(x) - conv(x)).abs().max() > 1e-2
    flipped = nn.Conv2d(3, 4, 3, padding=1).double()
    with torch.no_grad():
        flipped.weight.copy_(conv.weight.flip(-1))
        flipped.bias.copy_(conv.bias)
    assert (conv_as_attention(flipped)(x) - conv(x)).abs().max() > 1e-2


def test_conv_as_attention_heads_attend_to_their_offsets() -> None:
    conv = nn.Conv2d(2, 2, 3, padding=1).double()
    layer = conv_as_attention(conv)
    _, weights = layer(_randn(1, 2, 4, 5), return_attention=True)  # (1, 9, 20, 6*7)
    hit = weights[0].argmax(-1)  # key index on the padded 6×7 map
    qy, qx = torch.div(torch.arange(20), 5, rounding_mode="floor"), torch.arange(20) % 5
    for h, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
        assert torch.equal(hit[h], (qy + dy + 1) * 7 + (qx + dx + 1))


def test_relative_offset_attention_logits_follow_the_formula() -> None:
    layer = _randomize_(RelativeOffsetAttention2d(2, 3, num_heads=2, padding=1)).double()
    logits = layer.position_logits(2, 3)  # (2, 6, 4*5)
    for h in range(2):
        cy, cx = layer.centers[h]
        for q in range(6):
            for kk in range(20):
                dy, dx = kk // 5 - 1 - q // 3, kk % 5 - 1 - q % 3
                expected = -layer.alpha[h] * ((dy - cy) ** 2 + (dx - cx) ** 2)
                torch.testing.assert_close(logits[h, q, kk], expected)


# --------------------------------------------------------------------------------------- offsets of trained heads
def _offset_loop(weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
    out = torch.zeros(weights.shape[1], 2 * height - 1, 2 * width - 1, dtype=weights.dtype)
    for q in range(height * width):
        for k in range(height * width):
            dy, dx = k // width - q // width, k % width - q % width
            out[:, height - 1 + dy, width - 1 + dx] += weights[:, :, q, k].mean(0)
    return out / (height * width)


def test_attention_by_offset_matches_loop_and_finds_the_preferred_offset() -> None:
    layer = MultiHeadSelfAttention2d(8, num_heads=2, pos="relative", size=(3, 4)).double()
    _, weights = layer(_randn(2, 8, 3, 4), return_attention=True)
    profile = attention_by_offset(weights, (3, 4))
    assert profile.shape == (2, 5, 7)
    torch.testing.assert_close(profile, _offset_loop(weights, 3, 4))
    torch.testing.assert_close(profile.sum((1, 2)), torch.ones(2, dtype=torch.float64))
    # Attention that always looks one pixel to the right (where there is one) peaks at offset (0, +1).
    right = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    for q in range(12):
        right[0, 0, q, q + 1 if q % 4 < 3 else q] = 1.0
    peak = attention_by_offset(right, (3, 4))[0]
    assert peak.argmax() == 2 * 7 + 4  # row H-1+0, column W-1+1


# --------------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize(
    "build",
    [
        lambda: WindowAttention(4, window_size=2, num_heads=2, shift_size=1),
        lambda: SwinBlock(4, num_heads=2, window_size=2, shift_size=1, mlp_ratio=1.0),
        lambda: LocalSelfAttention2d(3, 4, 3, num_heads=2),
        lambda: RelativeOffsetAttention2d(2, 3, num_heads=2, head_dim=2, padding=1),
    ],
    ids=["window", "swin-block", "sasa", "relative-offset"],
)
def test_gradcheck(build) -> None:
    torch.manual_seed(0)
    model = build().double()
    x = _randn(1, _in_channels(model), 4, 4).requires_grad_()
    assert torch.autograd.gradcheck(model, (x,), eps=1e-6, atol=1e-5)


def _in_channels(model: nn.Module) -> int:
    for attr in ("dim", "in_channels"):
        if hasattr(model, attr):
            return getattr(model, attr)
    raise AssertionError(type(model).__name__)


def test_relative_offset_centers_and_alpha_learn() -> None:
    layer = RelativeOffsetAttention2d(2, 3, num_heads=2, padding=1).double()
    layer(_randn(1, 2, 4, 4)).square().sum().backward()
    assert layer.centers.grad.abs().min() > 0 and layer.alpha.grad.abs().min() > 0


# --------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: WindowAttention(16, window_size=3)(torch.randn(1, 16, 8, 8)), "window_size 3 must divide"),
        (lambda: WindowAttention(16, window_size=4)(torch.randn(1, 8, 8, 8)), "expects 16 input channels"),
        (lambda: WindowAttention(16, window_size=4, shift_size=4), "shift_size must be an int in"),
        (lambda: WindowAttention(10, num_heads=4), "dim .10. must be a multiple of num_heads"),
        (lambda: WindowAttention(16, window_size=0), "window_size must be a positive int"),
        (lambda: SwinBlock(16, mlp_ratio=0), "mlp_ratio must be a number > 0"),
        (lambda: SwinBlock(16, drop_path=1.0), "drop_path must be a probability"),
        (lambda: window_partition(torch.randn(1, 3, 6, 8), 4), "window_size 4 must divide"),
        (lambda: window_reverse(torch.randn(5, 16, 3), 4, 8, 8), "windows must be"),
        (lambda: shifted_window_mask(8, 8, 4, -1), "shift_size must be"),
        (lambda: LocalSelfAttention2d(8, kernel_size=4), "kernel_size must be odd"),
        (lambda: LocalSelfAttention2d(8, 12, num_heads=4), "even head width"),
        (lambda: LocalSelfAttention2d(8, num_heads=2)(torch.randn(1, 4, 5, 5)), "expects 8 input channels"),
        (lambda: LocalSelfAttention2d(8, num_heads=2, scale=0.0), "scale must be a number > 0"),
        (lambda: RelativeOffsetAttention2d(4, 4, padding=-1), "padding must be an int >= 0"),
        (lambda: RelativeOffsetAttention2d(4, 4, num_heads=0), "num_heads must be a positive int"),
        (lambda: conv_as_attention(nn.Conv2d(3, 4, 2, padding=1)), "kernel_size must be square and odd"),
        (lambda: conv_as_attention(nn.Conv2d(3, 4, 3, padding=1, stride=2)), "stride 1"),
        (lambda: conv_as_attention(nn.Conv2d(3, 4, 3, padding=0)), "zero-pad by kernel_size // 2 = 1"),
        (lambda: conv_as_attention(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")), "padding_mode"),
        (lambda: conv_as_attention(nn.Linear(3, 4)), "must be a torch.nn.Conv2d"),
        (lambda: conv_as_attention(nn.Conv2d(3, 4, 3, padding=1), alpha=0), "alpha must be a number > 0"),
        (lambda: attention_by_offset(torch.rand(1, 2, 12, 12), (3, 3)), r"weights must be \(B, heads, 9, 9\)"),
        (lambda: attention_by_offset(torch.rand(1, 2, 9, 9), 3), "size must be the"),
        (lambda: PatchMerging(8)(torch.randn(1, 8, 5, 4)), "must be even"),
        (lambda: PatchMerging(0), "dim must be a positive int"),
        (lambda: SwinTransformer(image_size=30), "image_size 30 must be divisible by"),
        (lambda: SwinTransformer(widths=(48, 96), depths=(2, 2), head_dim=32), "multiple of head_dim=32"),
        (lambda: SwinTransformer(widths=(32,), depths=(1, 1), head_dim=32), "same non-zero length"),
        (lambda: SwinTransformer(image_size=20, widths=(32,), depths=(2,), head_dim=32), "must divide stage 0"),
        (lambda: _tiny_swin()(torch.randn(1, 3, 16, 16)), "built for 32×32 images"),
        (lambda: LocalAttentionBlock(16, 16, stride=3), "stride must be 1 or 2"),
        (lambda: sasa_resnet(widths=(16, 32), depths=(1, 1), attention_stages=(2,)), "attention_stages must index"),
    ],
)
def test_bad_input_names_the_parameter(call, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --------------------------------------------------------------------------------------------------- meta device
@pytest.mark.parametrize(
    "build",
    [
        lambda: WindowAttention(8, window_size=2, num_heads=2, shift_size=1),
        lambda: SwinBlock(8, num_heads=2, window_size=2, shift_size=1),
        lambda: LocalSelfAttention2d(8, 8, 3, num_heads=2),
        lambda: RelativeOffsetAttention2d(8, 4, num_heads=9),
        lambda: WindowAttentionMinimal(8, 2, 2, shift_size=1),
        lambda: LocalSelfAttention2dMinimal(8, 8, 3, 2),
    ],
    ids=["window", "swin-block", "sasa", "relative-offset", "window-minimal", "sasa-minimal"],
)
def test_forward_backward_on_meta(build) -> None:
    """No tensor is created off the input's device (a meta tensor refuses to mix with a CPU one)."""
    with torch.device("meta"):
        model = build()
    x = torch.randn(2, 8, 4, 4, device="meta", requires_grad=True)
    out = model(x)
    assert out.is_meta
    out.square().mean().backward()
    assert all(p.grad is None or p.grad.is_meta for p in model.parameters()) and x.grad.is_meta


# --------------------------------------------------------------------------------------------------- networks
def _tiny_swin(**kw: object) -> SwinTransformer:
    return SwinTransformer(**{"widths": (8, 16, 32), "depths": (2, 2, 1), "head_dim": 8, **kw})


def test_patch_merging_matches_timm() -> None:
    ref = _randomize_(timm_swin.PatchMerging(6).double()).eval()
    ours = PatchMerging(6).double().eval()
    ours.load_state_dict(ref.state_dict())
    x = _randn(2, 6, 8, 4)
    expected = ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours(x), expected, rtol=0, atol=1e-10)
    assert ours(x).shape == (2, 12, 4, 2)


def test_swin_transformer_stages_windows_and_shifts() -> None:
    model = _tiny_swin()
    # 32×32 images, 2×2 patches: stages see 16×16, 8×8 and 4×4 maps; 4×4 windows; the last stage is one window
    attn = [[b.attn for b in stage if isinstance(b, SwinBlock)] for stage in model.stages]
    assert [[(a.window_size, a.shift_size, a.num_heads) for a in s] for s in attn] == [
        [(4, 0, 1), (4, 2, 1)],
        [(4, 0, 2), (4, 2, 2)],
        [(4, 0, 4)],
    ]
    assert [type(stage[0]).__name__ for stage in model.stages] == ["SwinBlock", "PatchMerging", "PatchMerging"]
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 32, 4, 4)
    # on 16×16 images the last stage's 2×2 map becomes its one (smaller) window
    small = _tiny_swin(image_size=16)
    assert small.stages[2][1].attn.window_size == 2 and small(torch.randn(1, 3, 16, 16)).shape == (1, 10)


def test_swin_transformer_parameter_count() -> None:
    model = _tiny_swin(num_classes=7)
    c = (8, 16, 32)

    def block(d: int, heads: int, window: int) -> int:  # 2 LNs, qkv + proj, bias table, MLP (ratio 4)
        return 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * window - 1) ** 2 * heads + (8 * d * d + 5 * d)

    expected = (3 * 4 * c[0] + c[0]) + 2 * c[0]  # 2×2 patch convolution, its LayerNorm
    expected += 2 * block(c[0], 1, 4) + 2 * block(c[1], 2, 4) + block(c[2], 4, 4)
    expected += (2 * 4 * c[0] + 4 * c[0] * c[1]) + (2 * 4 * c[1] + 4 * c[1] * c[2])  # patch merging (LN, linear)
    expected += 2 * c[2] + (c[2] * 7 + 7)  # final LayerNorm, head
    assert sum(p.numel() for p in model.parameters()) == expected


def test_swin_drop_path_grows_with_depth() -> None:
    model = _tiny_swin(drop_path=0.2)
    rates = [b.drop_path.p for stage in model.stages for b in stage if isinstance(b, SwinBlock)]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)


def test_local_attention_block_replaces_both_convolutions() -> None:
    block = LocalAttentionBlock(8, 16, stride=2, kernel_size=3, num_heads=2)
    assert isinstance(block, BasicBlock)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in block.modules())
    assert block(torch.randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)
    assert LocalAttentionBlock(16, 16, kernel_size=3, num_heads=2)(torch.randn(2, 16, 4, 4)).shape == (2, 16, 4, 4)


def test_sasa_resnet_replaces_the_later_stages() -> None:
    model = sasa_resnet(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1), num_heads=2)
    assert isinstance(model, ResNet)
    kinds = [type(stage[0]).__name__ for stage in model.stages]
    assert kinds == ["BasicBlock", "BasicBlock", "LocalAttentionBlock", "LocalAttentionBlock"]
    assert sasa_resnet(widths=(8, 16), depths=(1, 1), attention_stages=(0,), num_heads=2).stages[0][0].conv1.dim == 8
    # a BasicBlock's two 3×3 convolutions (out·in·9 + out·out·9 weights) become six 1×1 projections and the
    # row / column offset embeddings (2 · heads · k · head_dim / 2 per attention layer)
    conv = sasa_resnet(widths=(8, 16), depths=(1, 1), attention_stages=(), num_heads=2)
    sasa = sasa_resnet(widths=(8, 16), depths=(1, 1), attention_stages=(1,), num_heads=2)
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    delta = (3 * 16 * 8 + 2 * 2 * 7 * 4) + (3 * 16 * 16 + 2 * 2 * 7 * 4) - (16 * 8 * 9 + 16 * 16 * 9)
    assert params(sasa) - params(conv) == delta


@pytest.mark.parametrize(
    "build", [_tiny_swin, lambda: sasa_resnet(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1), num_heads=2)]
)
def test_networks_train_a_step(build) -> None:
    torch.manual_seed(0)
    model = build()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()) if p.grad.abs().max() > 0)
    assert torch.isfinite(F.cross_entropy(model(x), y))


def _timm_to_nlbook_swin_keys(model: SwinTransformer) -> dict[str, str]:
    """nlbook name → timm name for every tensor of a whole Swin: stage ``s`` is ``[PatchMerging,] blocks...`` here,
    ``downsample`` + ``blocks`` in timm."""
    pairs = {
        "patch_embed.weight": "patch_embed.proj.weight",
        "patch_embed.bias": "patch_embed.proj.bias",
        "patch_norm.weight": "patch_embed.norm.weight",
        "patch_norm.bias": "patch_embed.norm.bias",
        "norm.weight": "norm.weight",
        "norm.bias": "norm.bias",
        "head.weight": "head.fc.weight",
        "head.bias": "head.fc.bias",
    }
    block = {
        "attn.mha.qkv": "attn.qkv",
        "attn.mha.proj": "attn.proj",
        "norm1": "norm1",
        "norm2": "norm2",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for s, stage in enumerate(model.stages):
        first = 1 if s else 0
        if s:
            for t in ("norm.weight", "norm.bias", "reduction.weight"):
                pairs[f"stages.{s}.0.{t}"] = f"layers.{s}.downsample.{t}"
        for i in range(len(stage) - first):
            ours, theirs = f"stages.{s}.{i + first}", f"layers.{s}.blocks.{i}"
            pairs[f"{ours}.attn.rel_bias.table"] = f"{theirs}.attn.relative_position_bias_table"
            for a, b in block.items():
                for t in ("weight", "bias"):
                    pairs[f"{ours}.{a}.{t}"] = f"{theirs}.{b}.{t}"
    return pairs


def test_whole_swin_transformer_matches_timm() -> None:
    """Patches, shifted windows, patch merging, the one-window last stage and the head — the whole network equals
    timm's ``SwinTransformer`` with copied weights. The head normalises every token and then pools (Swin's order)."""
    ref = timm_swin.SwinTransformer(
        img_size=32,
        patch_size=2,
        in_chans=3,
        num_classes=7,
        embed_dim=8,
        depths=(2, 2, 1),
        num_heads=(1, 2, 4),
        window_size=4,
    )
    ref = _randomize_(ref.double(), seed=5).eval()
    ours = _tiny_swin(num_classes=7).double().eval()
    pairs = _timm_to_nlbook_swin_keys(ours)
    assert sorted(pairs) == sorted(ours.state_dict())  # every nlbook tensor has its timm counterpart
    theirs = ref.state_dict()
    ours.load_state_dict({k: theirs[v] for k, v in pairs.items()}, strict=True)
    x = _randn(2, 3, 32, 32, seed=6)
    logits = ours(x)
    torch.testing.assert_close(logits, ref(x), rtol=0, atol=1e-10)
    # The order is seen at this tolerance: the LayerNorm of the mean (pool, then normalise) is another function,
    # 1e-4 away here — a million times the tolerance above.
    pooled_first = ours.head(ours.norm(ours.forward_features(x).mean(dim=(-2, -1))))
    assert (pooled_first - logits).abs().max() > 1e-6


# ------------------------------------------------------------------------------------ SASA: the fused path
def _sasa_pair(
    kernel_size: int, *, qkv_bias: bool = False, scale: float | None = None, seed: int = 0
) -> tuple[LocalSelfAttention2d, LocalSelfAttention2d]:
    """A 6 → 8 channel, 2-head layer on the fused path and its twin on the explicit path (same random values)."""
    kw = {"kernel_size": kernel_size, "num_heads": 2, "qkv_bias": qkv_bias, "scale": scale}
    fused = _randomize_(LocalSelfAttention2d(6, 8, **kw), seed=seed).double()
    explicit = LocalSelfAttention2d(6, 8, impl="explicit", **kw).double()
    explicit.load_state_dict(fused.state_dict())
    return fused, explicit


def _sasa_zero_padded(model: LocalSelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """SASA *without* the mask: off-image neighbours attend as zero keys and values (plus their offset embedding)."""
    k, heads, height = model.kernel_size, model.num_heads, x.shape[-2]

    def around(t: torch.Tensor) -> torch.Tensor:
        t = F.unfold(t, k, padding=k // 2)
        return t.view(t.shape[0], heads, model.head_dim, k * k, -1).permute(0, 1, 4, 3, 2)  # (B, h, N, k², d)

    q = model.query(x).flatten(2).view(x.shape[0], heads, model.head_dim, -1).transpose(-1, -2)  # (B, h, N, d)
    keys = around(model.key(x)) + model.offset_embeddings()[None, :, None]
    logits = torch.einsum("bhnd,bhnkd->bhnk", q, keys) * model.scale
    out = torch.einsum("bhnk,bhnkd->bhdn", logits.softmax(-1), around(model.value(x)))
    return out.reshape(x.shape[0], model.out_dim, height, -1)


@pytest.mark.parametrize(
    ("kernel_size", "size", "qkv_bias", "scale"),
    [
        (3, (5, 4), False, None),
        (3, (1, 7), True, None),  # one row: every neighbour above or below is off the image
        (5, (4, 6), True, 1.0),
        (5, (2, 2), False, None),  # the window is larger than the map
        (7, (3, 5), False, 0.3),
        (7, (8, 9), True, None),
    ],
)
def test_sasa_fused_equals_explicit_and_the_equation(
    kernel_size: int, size: tuple[int, int], qkv_bias: bool, scale: float | None
) -> None:
    fused, explicit = _sasa_pair(kernel_size, qkv_bias=qkv_bias, scale=scale, seed=kernel_size)
    x = _randn(2, 6, *size, seed=kernel_size + 1)
    out = fused(x)
    assert out.shape == (2, 8, *size) and out.dtype == torch.float64
    torch.testing.assert_close(out, explicit(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, _sasa_loop(fused, x), rtol=1e-10, atol=1e-10)
    # the layout of the input does not matter (the fused path reorders it anyway)
    torch.testing.assert_close(fused(x.contiguous(memory_format=torch.channels_last)), out, rtol=0, atol=0)


@pytest.mark.parametrize(("kernel_size", "size"), [(3, (4, 5)), (5, (3, 3)), (7, (2, 5))])
def test_sasa_fused_gradients_equal_explicit(kernel_size: int, size: tuple[int, int]) -> None:
    """∂L/∂x and every parameter's gradient (projections with bias, both offset embeddings), float64."""
    fused, explicit = _sasa_pair(kernel_size, qkv_bias=True, seed=1)
    x, grad_out = _randn(3, 6, *size, seed=2), _randn(3, 8, *size, seed=3)
    grads = []
    for model in (fused, explicit):
        xi = x.clone().requires_grad_()
        model(xi).backward(grad_out)
        grads.append({"x": xi.grad, **{n: p.grad for n, p in model.named_parameters()}})
    assert grads[0].keys() == grads[1].keys() and all(g is not None for g in grads[0].values())
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], rtol=1e-10, atol=1e-10, msg=name)
    assert grads[0]["rel_height"].abs().max() > 0 and grads[0]["rel_width"].abs().max() > 0


def test_sasa_fused_gradcheck_inputs_and_parameters() -> None:
    torch.manual_seed(0)
    model = LocalSelfAttention2d(3, 4, 5, num_heads=2, qkv_bias=True).double()
    x = _randn(2, 3, 3, 4).requires_grad_()
    params = (model.rel_height, model.rel_width, model.query.weight, model.key.bias, model.value.weight)
    assert torch.autograd.gradcheck(lambda x, *_: model(x), (x, *params), eps=1e-6, atol=1e-5)


def test_sasa_fused_masks_the_border_and_only_the_border() -> None:
    """Attending to zero-padded neighbours instead of masking them changes exactly the border pixels."""
    fused, _ = _sasa_pair(5)
    x = _randn(2, 6, 7, 6, seed=4)
    diff = (fused(x) - _sasa_zero_padded(fused, x)).abs().amax(dim=(0, 1))  # (H, W)
    interior = diff[2:-2, 2:-2]  # pixels whose 5×5 window lies on the image
    assert interior.max() <= 1e-10
    border = diff.clone()
    border[2:-2, 2:-2] = math.inf
    assert border.min() > 1e-4


def test_sasa_fused_offset_embeddings_enter_the_logits() -> None:
    """With zero keys only q·r_o and the mask decide the weights; zero embeddings then make them uniform."""
    fused, _ = _sasa_pair(3, seed=5)
    with torch.no_grad():
        fused.key.weight.zero_()
    x = _randn(1, 6, 4, 4, seed=6)
    torch.testing.assert_close(fused(x), _sasa_loop(fused, x), rtol=1e-10, atol=1e-10)
    uniform = LocalSelfAttention2d(6, 8, 3, num_heads=2).double()
    uniform.load_state_dict(fused.state_dict())
    with torch.no_grad():
        uniform.rel_height.zero_()
        uniform.rel_width.zero_()
    v = fused.value(x)
    mean_of_neighbours = F.avg_pool2d(v, 3, stride=1, padding=1, count_include_pad=False)  # uniform weights
    torch.testing.assert_close(uniform(x), mean_of_neighbours, rtol=1e-10, atol=1e-10)
    assert (fused(x) - mean_of_neighbours).abs().max() > 1e-3


def test_sasa_fused_path_does_not_unfold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path never builds the unfolded neighbourhoods or calls the generic attention (the slow route)."""
    import nlbook.local_attention as la

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fused path must not unfold or call scaled_dot_product_attention")

    monkeypatch.setattr(la, "_neighbourhoods", refuse)
    monkeypatch.setattr(la, "scaled_dot_product_attention", refuse)
    layer = LocalSelfAttention2d(4, 4, 3, num_heads=2)
    layer(torch.randn(2, 4, 5, 5)).square().sum().backward()
    for call in (
        lambda: LocalSelfAttention2d(4, 4, 3, num_heads=2, impl="explicit")(torch.randn(2, 4, 5, 5)),
        lambda: layer(torch.randn(2, 4, 5, 5), return_attention=True),
    ):
        with pytest.raises(AssertionError, match="must not unfold"):
            call()


def _saved_numel(layer: nn.Module, x: torch.Tensor) -> int:
    """Numbers the forward keeps for the backward (every tensor autograd saves, parameters included)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return total


def test_sasa_fused_saves_no_unfolded_copies() -> None:
    """For the backward the fused path keeps q, k, v, the input and the (heads, k², H·W) weights — a few maps —
    where the explicit path keeps k² copies of keys and values."""
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    k, head_dim = 5, 8
    fused = LocalSelfAttention2d(16, 16, k, num_heads=2)
    explicit = LocalSelfAttention2d(16, 16, k, num_heads=2, impl="explicit")
    maps = x.numel()  # one 16-channel map of the batch
    assert _saved_numel(fused, x) <= (3 + k * k / head_dim + 2) * maps
    assert _saved_numel(explicit, x) >= 2 * k * k * maps


def test_sasa_fused_autocast_bfloat16_is_close_to_float32() -> None:
    torch.manual_seed(0)
    layer = LocalSelfAttention2d(8, 8, 3, num_heads=2)
    x = torch.randn(2, 8, 6, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x)
    assert low.dtype == torch.bfloat16
    low.float().sum().backward()
    assert x.grad.dtype == torch.float32 and layer.rel_width.grad.dtype == torch.float32
    torch.testing.assert_close(low.float(), layer(x), rtol=0, atol=5e-2)
