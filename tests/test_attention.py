"""Tests for nlbook.attention — the one attention implementation of the package (chapter 2)."""

from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nlbook import attention as A
from nlbook.attention import (
    LearnedPositionEncoding2d,
    MultiHeadAttention,
    MultiHeadSelfAttention2d,
    RelativePositionLogits2d,
    relative_position_logits_2d,
    relative_position_logits_2d_reference,
    scaled_dot_product_attention,
    sdpa_backend,
    sincos_position_encoding_2d,
)

POSITIONS = [None, "sincos", "learned", "relative"]


def _qkv(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=g, dtype=dtype) for _ in range(3))


def _textbook_attention(q, k, v, bias=None):
    """softmax(q kᵀ/√d + bias) v written independently of the package (einsum, no matmul helpers)."""
    logits = torch.einsum("...nd,...md->...nm", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    return torch.einsum("...nm,...md->...nd", logits.softmax(-1), v)


# --------------------------------------------------------------------------------------------- the function
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_explicit_and_fused_agree(dtype: torch.dtype, atol: float, with_bias: bool) -> None:
    q, k, v = _qkv(2, 3, 17, 8, dtype=dtype)
    bias = torch.randn(2, 3, 17, 17, dtype=dtype) if with_bias else None
    fused = scaled_dot_product_attention(q, k, v, bias=bias, impl="fused")
    explicit, weights = scaled_dot_product_attention(q, k, v, bias=bias, impl="explicit", return_weights=True)
    torch.testing.assert_close(fused, explicit, atol=atol, rtol=atol)
    torch.testing.assert_close(explicit, _textbook_attention(q, k, v, bias), atol=atol, rtol=atol)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 17, dtype=dtype), atol=atol, rtol=atol)


def test_fused_accepts_strided_inputs_and_low_rank_bias() -> None:
    # (B, C, N) -> (B, N, C) via transpose: the feature axis is strided, as in a Non-local block.
    x = torch.randn(2, 8, 30)
    q = x.transpose(1, 2)
    bias = torch.randn(30, 30)
    out = scaled_dot_product_attention(q, q, q, bias=bias)
    torch.testing.assert_close(out, _textbook_attention(q, q, q, bias), atol=1e-5, rtol=1e-5)


def test_fused_layout_selects_fast_kernel_on_cpu() -> None:
    """Without bias/dropout the default path must not fall back to the O(N²) math kernel."""
    x = torch.randn(2, 8, 6, 6)
    q = x.flatten(2).transpose(1, 2)  # strided last dim — would select MATH if passed on as is
    name = sdpa_backend(q, q, q)
    if name == "unknown":
        pytest.skip("this PyTorch build does not expose its SDPA kernel choice")
    assert name != "MATH"
    q4 = torch.randn(2, 4, 36, 8)
    assert sdpa_backend(q4, q4, q4, bias=torch.randn(4, 36, 36)) != "MATH"  # 3-D mask is reshaped to 4-D
    assert sdpa_backend(q4, q4, q4, dropout_p=0.1) == "MATH"  # documented fallback


@pytest.mark.parametrize("shape", [(36, 8), (2, 36, 8)])
def test_fused_gives_inputs_without_head_axis_a_fast_kernel(shape: tuple[int, ...]) -> None:
    """(N, d) and (B, N, d) q, k, v reach a fast kernel on every PyTorch from 2.4 up.

    On CPU, PyTorch 2.4 to 2.13 send 3-D inputs to the math kernel even when contiguous; a (B, 1, N, d) view of
    the same numbers gets the flash kernel on all of them, so the package adds that head axis of one.
    """
    q, k, v = _qkv(*shape)
    if sdpa_backend(q, k, v) == "unknown":
        pytest.skip("this PyTorch build does not expose its SDPA kernel choice")
    # the check can fail: a strided feature axis passed on as it is gets the math kernel on every version
    assert sdpa_backend(q.mT.contiguous().mT, k, v, repair_layout=False) == "MATH"
    assert sdpa_backend(q, k, v) in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION")
    mask = torch.rand(shape[-2], shape[-2]) > 0.3
    assert sdpa_backend(q, k, v, bias=mask) != "MATH"


@pytest.mark.parametrize("shape", [(36, 8), (2, 36, 8), (2, 3, 36, 8)])
@pytest.mark.parametrize("bias_kind", [None, "float-2d", "float-full", "bool-full"])
def test_fused_head_axis_view_keeps_outputs(shape: tuple[int, ...], bias_kind: str | None) -> None:
    """The head axis the fused path adds for the kernel is gone again: same shape, same numbers."""
    q, k, v = _qkv(*shape)
    n = shape[-2]
    bias = {
        None: None,
        "float-2d": torch.randn(n, n),
        "float-full": torch.randn(*shape[:-1], n),
        "bool-full": torch.rand(*shape[:-1], n) > 0.3,
    }[bias_kind]
    fused = scaled_dot_product_attention(q, k, v, bias=bias)
    explicit = scaled_dot_product_attention(q, k, v, bias=bias, impl="explicit")
    assert fused.shape == shape
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_module_feeds_the_fast_kernel(impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MultiHeadSelfAttention2d hands SDPA contiguous q, k, v (its default path is the O(HW)-memory kernel)."""
    seen = []
    real = A.F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(sdpa_backend(q, k, v, bias=kw.get("attn_mask")))
        assert all(t.stride(-1) == 1 for t in (q, k, v))
        return real(q, k, v, **kw)

    monkeypatch.setattr(A.F, "scaled_dot_product_attention", spy)
    MultiHeadSelfAttention2d(16, 4, impl=impl)(torch.randn(2, 16, 5, 5))
    if impl == "explicit":
        assert seen == []  # the explicit path never calls SDPA
    else:
        assert len(seen) == 1 and seen[0] in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "unknown")


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_gradcheck_function(impl: str) -> None:
    q, k, v = (t.requires_grad_() for t in _qkv(1, 2, 5, 3, dtype=torch.float64))
    bias = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *t: scaled_dot_product_attention(*t[:3], bias=t[3], impl=impl), (q, k, v, bias)
    )


@pytest.mark.parametrize(
    "shapes,match",
    [
        (((2, 5, 4), (2, 5, 3), (2, 5, 4)), "same feature size"),
        (((2, 5, 4), (2, 6, 4), (2, 5, 4)), "same number of positions"),
        (((2, 5, 4), (2, 5, 4), (5, 4)), "equal rank"),
        (((4,), (4,), (4,)), "equal rank"),
    ],
)
def test_function_rejects_mismatched_qkv(shapes, match: str) -> None:
    q, k, v = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_boolean_mask_means_may_attend(impl: str) -> None:
    q, k, v = _qkv(2, 6, 4)
    mask = torch.rand(6, 6) > 0.5
    mask.fill_diagonal_(True)  # every query keeps at least one key
    expected = _textbook_attention(q, k, v, torch.zeros(6, 6).masked_fill(~mask, float("-inf")))
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, bias=mask, impl=impl), expected)


def test_function_rejects_bad_bias_and_types() -> None:
    q, k, v = _qkv(2, 5, 4)
    with pytest.raises(ValueError, match="bias must broadcast"):
        scaled_dot_product_attention(q, k, v, bias=torch.zeros(5, 6))
    with pytest.raises(ValueError, match="bias must broadcast"):
        scaled_dot_product_attention(q, k, v, bias=torch.zeros(3, 5, 5))  # would enlarge the batch
    with pytest.raises(TypeError, match="torch.Tensor"):
        scaled_dot_product_attention(q.tolist(), k, v)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dropout_p"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.5)


def test_function_rejects_unknown_impl() -> None:
    q, k, v = _qkv(1, 4, 3)
    with pytest.raises(ValueError, match="impl must be"):
        scaled_dot_product_attention(q, k, v, impl="flash")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- equivalence with torch / timm
def test_multihead_attention_matches_torch() -> None:
    torch.manual_seed(0)
    ours, ref = MultiHeadAttention(24, 4, qkv_bias=True).eval(), nn.MultiheadAttention(24, 4, batch_first=True).eval()
    with torch.no_grad():
        ours.qkv.weight.copy_(ref.in_proj_weight)
        ours.qkv.bias.copy_(ref.in_proj_bias)
        ours.proj.weight.copy_(ref.out_proj.weight)
        ours.proj.bias.copy_(ref.out_proj.bias)
    x = torch.randn(3, 10, 24)
    expected, expected_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
    out, weights = ours(x, return_attention=True)
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_w, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_mhsa2d_matches_torch_multiheadattention_on_flattened_map(impl: str) -> None:
    torch.manual_seed(0)
    dim, heads, height, width = 16, 4, 5, 7
    ours = MultiHeadSelfAttention2d(dim, heads, qkv_bias=True, impl=impl).eval()
    ref = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        ours.qkv.weight.copy_(rearrange(ref.in_proj_weight, "o i -> o i 1 1"))
        ours.qkv.bias.copy_(ref.in_proj_bias)
        ours.proj.weight.copy_(rearrange(ref.out_proj.weight, "o i -> o i 1 1"))
        ours.proj.bias.copy_(ref.out_proj.bias)
    x = torch.randn(2, dim, height, width)
    tokens = rearrange(x, "b c x y -> b (x y) c")
    expected, expected_w = ref(tokens, tokens, tokens, need_weights=True, average_attn_weights=False)
    out, weights = ours(x, return_attention=True)
    torch.testing.assert_close(ours(x), rearrange(expected, "b (x y) c -> b c x y", x=height), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, rearrange(expected, "b (x y) c -> b c x y", x=height), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_w, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_relative_mhsa2d_matches_timm_bottleneck_attention(impl: str) -> None:
    """pos='relative', proj=False is BoTNet's MHSA: compare with timm's BottleneckAttn (weights copied)."""
    bottleneck_attn = pytest.importorskip("timm.layers.bottleneck_attn")
    torch.manual_seed(0)
    dim, heads, size = 32, 4, (4, 6)
    ref = bottleneck_attn.BottleneckAttn(dim, feat_size=size, num_heads=heads, scale_pos_embed=True).eval()
    ours = MultiHeadSelfAttention2d(dim, heads, pos="relative", size=size, proj=False, impl=impl).eval()
    with torch.no_grad():
        ours.qkv.weight.copy_(ref.qkv.weight)
        ours.rel_pos.rel_height.copy_(ref.pos_embed.height_rel)
        ours.rel_pos.rel_width.copy_(ref.pos_embed.width_rel)
    x = torch.randn(2, dim, *size)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------- relative positions
def test_relative_logits_match_loop_reference() -> None:
    torch.manual_seed(0)
    rel = RelativePositionLogits2d(3, 4, 5)
    q = torch.randn(2, 3, 12, 5)
    expected = relative_position_logits_2d_reference(q, rel.rel_height, rel.rel_width, 3, 4)
    torch.testing.assert_close(rel(q), expected, atol=1e-5, rtol=1e-5)
    assert rel.rel_height.shape == (5, 5) and rel.rel_width.shape == (7, 5)


def test_relative_logits_depend_only_on_offsets() -> None:
    # With q the same at every pixel, the logit is a function of (key - query) only.
    rel = RelativePositionLogits2d(4, 4, 6)
    q = torch.randn(1, 1, 1, 6).expand(1, 1, 16, 6)
    logits = rel(q)[0, 0].detach()
    idx = lambda i, j: i * 4 + j  # noqa: E731
    assert torch.allclose(logits[idx(0, 0), idx(1, 2)], logits[idx(2, 1), idx(3, 3)])
    assert not torch.allclose(logits[idx(0, 0), idx(1, 2)], logits[idx(0, 0), idx(2, 1)])


def test_relative_mhsa2d_matches_equations() -> None:
    """softmax((q·k + q·r)/√d) v from the paper, against the module's fused path."""
    torch.manual_seed(0)
    m = MultiHeadSelfAttention2d(8, 2, pos="relative", size=(3, 3), proj=False).eval()
    x = torch.randn(2, 8, 3, 3)
    q, k, v = rearrange(m.qkv(x), "b (three h d) x y -> three b h (x y) d", three=3, h=2)
    rel = relative_position_logits_2d_reference(q, m.rel_pos.rel_height, m.rel_pos.rel_width, 3, 3)
    weights = ((q @ k.transpose(-1, -2) + rel) / math.sqrt(4)).softmax(-1)
    expected = rearrange(weights @ v, "b h (x y) d -> b (h d) x y", x=3)
    torch.testing.assert_close(m(x), expected, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------- absolute positions
def test_sincos_encoding_values() -> None:
    enc = sincos_position_encoding_2d(3, 5, 8, dtype=torch.float64)
    assert enc.shape == (8, 3, 5) and enc.dtype == torch.float64
    y, x = 2, 4
    omega = torch.tensor([1.0, 10000.0 ** (-1 / 2)], dtype=torch.float64)
    expected = torch.cat([(y * omega).sin(), (y * omega).cos(), (x * omega).sin(), (x * omega).cos()])
    torch.testing.assert_close(enc[:, y, x], expected)
    # Every pixel gets a distinct code.
    flat = rearrange(enc, "c x y -> (x y) c")
    assert torch.cdist(flat, flat).add(torch.eye(15, dtype=torch.float64)).min() > 0.1


def test_sincos_encoding_rejects_bad_dim() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_encoding_2d(4, 4, 6)
    with pytest.raises(ValueError, match="height must be a positive int"):
        sincos_position_encoding_2d(0, 4, 8)


def test_learned_encoding_adds_and_checks_size() -> None:
    enc = LearnedPositionEncoding2d(6, 3, 4)
    x = torch.zeros(2, 6, 3, 4)
    torch.testing.assert_close(enc(x), enc.embedding.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="built for 3x4 maps"):
        enc(torch.zeros(2, 6, 4, 4))


# ------------------------------------------------------------------------------------------ the 2-D module
@pytest.mark.parametrize("pos", POSITIONS)
def test_mhsa2d_shapes_and_weights(pos: str | None) -> None:
    m = MultiHeadSelfAttention2d(16, 4, pos=pos, size=(5, 6)).eval()
    x = torch.randn(2, 16, 5, 6)
    out, weights = m(x, return_attention=True)
    assert out.shape == x.shape and weights.shape == (2, 4, 30, 30)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 30))
    torch.testing.assert_close(m(x), out, atol=1e-5, rtol=1e-5)  # fused == explicit branch


def test_mhsa2d_head_dim_and_projection() -> None:
    m = MultiHeadSelfAttention2d(12, 2, head_dim=10)
    assert m.qkv.out_channels == 60 and m(torch.randn(1, 12, 3, 3)).shape == (1, 12, 3, 3)
    with pytest.raises(ValueError, match="without an output projection"):
        MultiHeadSelfAttention2d(12, 2, head_dim=10, proj=False)


@pytest.mark.parametrize("pos", ["relative", "learned", "sincos", None])
def test_gradcheck_module(pos: str | None) -> None:
    torch.manual_seed(0)
    m = MultiHeadSelfAttention2d(4, 2, pos=pos, size=(2, 3)).double()
    x = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))


@settings(max_examples=25, deadline=None, database=None)
@given(perm=st.permutations(list(range(12))), seed=st.integers(0, 2**16))
def test_permutation_equivariance_without_positions(perm: list[int], seed: int) -> None:
    """Shuffling the pixels shuffles the output the same way: attention without positions sees a set."""
    torch.manual_seed(seed)
    m = MultiHeadSelfAttention2d(8, 2).eval()
    x = torch.randn(2, 8, 3, 4)
    p = torch.tensor(perm)

    def shuffle(t: torch.Tensor) -> torch.Tensor:
        return rearrange(rearrange(t, "b c x y -> b c (x y)")[..., p], "b c (x y) -> b c x y", x=3)

    torch.testing.assert_close(m(shuffle(x)), shuffle(m(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", ["sincos", "learned", "relative"])
def test_positions_break_permutation_equivariance(pos: str) -> None:
    torch.manual_seed(0)
    m = MultiHeadSelfAttention2d(8, 2, pos=pos, size=(3, 4)).eval()
    x = torch.randn(2, 8, 3, 4)

    def shuffle(t: torch.Tensor) -> torch.Tensor:
        return t.flip(-1)  # mirror left-right: a permutation of the pixels

    assert not torch.allclose(m(shuffle(x)), shuffle(m(x)), atol=1e-3)


@pytest.mark.parametrize("pos", POSITIONS)
def test_mhsa2d_on_meta_device(pos: str | None) -> None:
    m = MultiHeadSelfAttention2d(8, 2, pos=pos, size=(3, 4)).to("meta")
    x = torch.randn(2, 8, 3, 4, device="meta", requires_grad=True)
    out = m(x)
    out.sum().backward()
    assert out.shape == (2, 8, 3, 4) and out.device.type == "meta"


# --------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dim=10, num_heads=4), "divisible by num_heads"),
        (dict(dim=8, num_heads=0), "positive ints"),
        (dict(dim=8, pos="rotary"), "pos must be"),
        (dict(dim=8, pos="learned"), "needs size"),
        (dict(dim=8, pos="relative", size=(0, 3)), "positive ints"),
        (dict(dim=6, num_heads=2, pos="sincos"), "divisible by 4"),
        (dict(dim=8, impl="flash"), "impl must be"),
    ],
)
def test_mhsa2d_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MultiHeadSelfAttention2d(**kwargs)


@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.randn(2, 8, 12), ValueError, "4-D tensor"),
        (torch.randn(2, 6, 3, 4), ValueError, "expects 8 input channels"),
        (torch.ones(2, 8, 3, 4, dtype=torch.long), TypeError, "floating-point"),
        (torch.randn(2, 8, 4, 4), ValueError, "built for 3x4 maps"),
    ],
)
def test_mhsa2d_rejects_bad_input(x: torch.Tensor, error: type, match: str) -> None:
    m = MultiHeadSelfAttention2d(8, 2, pos="relative", size=(3, 4))
    with pytest.raises(error, match=match):
        m(x)


def test_relative_logits_reject_bad_queries() -> None:
    rel = RelativePositionLogits2d(3, 4, 5)
    with pytest.raises(ValueError, match="expects queries"):
        rel(torch.randn(2, 12, 5))
    with pytest.raises(ValueError, match="12 positions"):
        rel(torch.randn(2, 3, 10, 5))
    with pytest.raises(ValueError, match="rel_height"):
        relative_position_logits_2d(torch.randn(1, 1, 12, 5), torch.randn(5, 4), torch.randn(7, 5), 3, 4)
