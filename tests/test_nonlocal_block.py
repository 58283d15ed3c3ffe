"""Tests for nlbook.nonlocal_block (chapter 3): the paper's equations, identity at init, O(N) memory, timm."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nlbook.cnn import ResNet
from nlbook.nonlocal_block import (
    MODES,
    NonLocalBlock2d,
    NonLocalResNet,
    SeedArticleNonLocalBlock,
    nonlocal_attention_maps,
)

SIZES = [(8, 8), (7, 5), (5, 6), (1, 1)]


def perturbed(block: NonLocalBlock2d, seed: int = 0) -> NonLocalBlock2d:
    """Give the zero-initialised last layer random values so the block is no longer the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*block.W.parameters(), *block.bn.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
        if isinstance(block.bn, nn.BatchNorm2d):
            block.bn.running_mean.copy_(torch.randn(block.bn.running_mean.shape, generator=g))
            block.bn.running_var.copy_(torch.rand(block.bn.running_var.shape, generator=g) + 0.5)
    return block


def twin(block: NonLocalBlock2d, impl: str) -> NonLocalBlock2d:
    other = copy.deepcopy(block)
    other.impl = impl
    return other


# -- shapes ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sub_sample", [False, True])
@pytest.mark.parametrize("hw", SIZES)
def test_output_shape_equals_input(mode, sub_sample, hw):
    block = perturbed(NonLocalBlock2d(6, 3, mode=mode, sub_sample=sub_sample))
    x = torch.randn(2, 6, *hw)
    z, weights = block(x, return_attention=True)
    assert block(x).shape == x.shape == z.shape
    n = hw[0] * hw[1]
    m = math.ceil(hw[0] / 2) * math.ceil(hw[1] / 2) if sub_sample else n
    assert weights.shape == (2, n, m)


def test_default_inter_channels_is_half():
    assert NonLocalBlock2d(64).inter_channels == 32
    assert NonLocalBlock2d(1).inter_channels == 1


# -- identity at initialisation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bn_layer", [True, False])
@pytest.mark.parametrize("train", [True, False])
def test_identity_at_init_bit_exact(mode, bn_layer, train):
    block = NonLocalBlock2d(8, mode=mode, sub_sample=True, bn_layer=bn_layer).train(train)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(3, 8, 7, 9).contiguous(memory_format=memory_format)
        z = block(x)
        assert torch.equal(z, x)
        assert z.stride() == x.stride()  # same layout, so the next layer computes exactly as without the block


def test_reset_parameters_restores_identity():
    block = perturbed(NonLocalBlock2d(8, sub_sample=True))
    x = torch.randn(2, 8, 6, 6)
    assert not torch.allclose(block(x), x)
    block.reset_parameters()
    assert torch.equal(block(x), x)


def test_nonlocal_resnet_at_init_equals_resnet_without_the_blocks():
    torch.manual_seed(0)
    model = NonLocalResNet(widths=(8, 16, 16, 32), depths=(2, 2, 1, 1), nonlocal_every=1).eval()
    # ResNet must not re-initialise the inserted blocks: each is still the identity.
    for _, block in model.nonlocal_blocks():
        assert torch.count_nonzero(block.bn.weight) == 0 and torch.count_nonzero(block.bn.bias) == 0
    plain = copy.deepcopy(model)
    for stage in plain.stages:
        for i, layer in enumerate(stage):
            if isinstance(layer, NonLocalBlock2d):
                stage[i] = nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), plain(x))


# -- the paper's equations, written out in the test --------------------------------------------------------------
def paper_reference(block: NonLocalBlock2d, x: torch.Tensor) -> torch.Tensor:
    """y_i = 1/C(x) Σ_j f(x_i, x_j) g(x_j); z = BN(W y) + x, pair by pair from Wang et al. (2018), eqs. (1)-(6)."""
    b, c, h, w = x.shape

    def conv(layer: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, layer.weight, layer.bias)

    def pool(t: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(t, 2, ceil_mode=True) if block.sub_sample else t

    def positions(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, H*W, C), row-major positions
        return t.flatten(2).transpose(1, 2)

    if block.mode == "gaussian":
        theta, phi = positions(x), positions(pool(x))
    else:
        theta, phi = positions(conv(block.theta, x)), positions(pool(conv(block.phi, x)))
    g = positions(pool(conv(block.g, x)))
    n, m = theta.shape[1], phi.shape[1]
    f = torch.empty(b, n, m, dtype=x.dtype)
    for i in range(n):
        for j in range(m):
            if block.mode in ("gaussian", "embedded_gaussian"):
                f[:, i, j] = torch.exp((theta[:, i] * phi[:, j]).sum(-1))
            elif block.mode == "dot_product":
                f[:, i, j] = (theta[:, i] * phi[:, j]).sum(-1)
            else:
                pair = torch.cat([theta[:, i], phi[:, j]], dim=-1)
                f[:, i, j] = F.relu(pair @ block.concat_project.weight[0])
    if block.mode in ("gaussian", "embedded_gaussian"):
        normaliser = f.sum(-1, keepdim=True)  # C(x) = Σ_j f(x_i, x_j)
    else:
        normaliser = torch.full((b, n, 1), float(m), dtype=x.dtype)  # C(x) = N (positions of phi/g)
    y = (f / normaliser) @ g  # (B, N, C')
    y = y.transpose(1, 2).reshape(b, -1, h, w)
    wy = conv(block.W, y)
    bn = block.bn
    if isinstance(bn, nn.BatchNorm2d):
        wy = F.batch_norm(wy, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)
    return wy + x


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sub_sample", [False, True])
@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_matches_paper_equations(mode, sub_sample, impl):
    torch.manual_seed(1)
    # small input scale keeps exp(x_iᵀx_j) of the Gaussian mode finite in the un-stabilised reference
    block = perturbed(NonLocalBlock2d(6, 4, mode=mode, sub_sample=sub_sample, impl=impl)).double().eval()
    x = 0.5 * torch.randn(2, 6, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(block(x), paper_reference(block, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_attention_weights_are_the_normalised_pairwise_function(mode):
    block = NonLocalBlock2d(6, 3, mode=mode, sub_sample=True).double()
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    _, weights = block(x, return_attention=True)
    if mode in ("gaussian", "embedded_gaussian"):
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 25, dtype=torch.float64))
    else:
        assert not torch.allclose(weights.sum(-1), torch.ones(2, 25, dtype=torch.float64))
    if mode == "concatenation":
        assert (weights >= 0).all()


# -- fused vs explicit, and the fused path's memory ---------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sub_sample", [False, True])
def test_fused_matches_explicit_values_and_gradients(mode, sub_sample):
    torch.manual_seed(2)
    fused = perturbed(NonLocalBlock2d(16, mode=mode, sub_sample=sub_sample))
    explicit = twin(fused, "explicit")
    x = torch.randn(3, 16, 9, 7)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = fused(x1), explicit(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn_like(y1)
    y1.backward(grad_out)
    y2.backward(grad_out)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)
    # float32 noise scales with the gradients' size (W.bias, in front of a training-mode BN, has a true
    # gradient of 0 and only noise), so the absolute tolerance is relative to the largest gradient.
    scale = max(p.grad.abs().max().item() for p in explicit.parameters())
    for (name, p1), p2 in zip(fused.named_parameters(), explicit.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op returns (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("mode", MODES)
def test_fused_path_never_materialises_the_pairwise_matrix(mode):
    block = perturbed(NonLocalBlock2d(8, 4, mode=mode))
    x = torch.randn(1, 8, 32, 32, requires_grad=True)  # N = M = 1024 → N·M = 1,048,576
    n = 32 * 32
    for impl, expect_matrix in (("fused", False), ("explicit", True)):
        block.impl = impl
        with _LargestTensor() as probe:
            block(x).sum().backward()
        assert (probe.largest >= n * n) == expect_matrix, (impl, probe.largest)


@pytest.mark.parametrize("mode", ["gaussian", "embedded_gaussian"])
def test_softmax_modes_stay_on_the_flash_kernel(mode):
    # Gaussian: q/k are in_channels (6) wide, v inter_channels (3) wide — padded so SDPA keeps its flash kernel.
    block = perturbed(NonLocalBlock2d(6, 3, mode=mode, sub_sample=True))
    x = torch.randn(2, 6, 8, 8, requires_grad=True)
    with torch.profiler.profile() as prof:
        block(x).sum().backward()
    names = {e.name for e in prof.events()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
    assert "aten::_scaled_dot_product_attention_math" not in names


# -- gradcheck, autocast -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_gradcheck(mode, impl):
    torch.manual_seed(3)
    block = perturbed(NonLocalBlock2d(3, 2, mode=mode, sub_sample=True, impl=impl)).double()
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    # input and all parameters (θ, φ, g, w_f, W, BN) — the block as a function of everything it learns
    params = dict(block.named_parameters())

    def fn(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(block, dict(zip(params, values, strict=True)), (x,))

    inputs = (x, *(p.detach().clone().requires_grad_() for p in params.values()))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("mode", MODES)
def test_autocast_bf16_cpu_is_finite(mode):
    torch.manual_seed(4)
    block = perturbed(NonLocalBlock2d(32, mode=mode, sub_sample=True))
    x = torch.randn(2, 32, 12, 11, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = block(x)
    assert z.shape == x.shape
    assert torch.isfinite(z).all()
    z.float().square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 0}, "in_channels must be an int >= 1"),
        ({"in_channels": 8, "inter_channels": 0}, "inter_channels must be an int >= 1"),
        ({"in_channels": 8, "mode": "cosine"}, "mode must be one of"),
        ({"in_channels": 8, "impl": "flash"}, "impl must be 'fused' or 'explicit'"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NonLocalBlock2d(**kwargs)


def test_bad_inputs():
    block = NonLocalBlock2d(8)
    with pytest.raises(ValueError, match=r"expects 8 input channels"):
        block(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"4-D tensor \(B, C, H, W\)"):
        block(torch.randn(8, 5, 5))
    with pytest.raises(TypeError, match="floating-point"):
        block(torch.ones(1, 8, 5, 5, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        block([[1.0]])


def test_nonlocal_resnet_bad_arguments():
    with pytest.raises(ValueError, match="nonlocal_stages"):
        NonLocalResNet(widths=(8, 16), depths=(1, 1), nonlocal_stages=(2,))
    with pytest.raises(ValueError, match="one-stage network"):
        NonLocalResNet(widths=(8,), depths=(1,))
    with pytest.raises(ValueError, match="nonlocal_every"):
        NonLocalResNet(widths=(8, 16), depths=(1, 1), nonlocal_stages=(1,), nonlocal_every=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        NonLocalResNet(widths=(8, 16), depths=(1, 1), nonlocal_stages=(1,), mode="cosine")
    with pytest.raises(TypeError, match="insert_after"):
        NonLocalResNet(widths=(8, 16), depths=(1, 1), nonlocal_stages=(1,), insert_after=lambda s, i, c: None)


# -- agreement with timm's NonLocalAttn -----------------------------------------------------------------------------
@pytest.mark.parametrize("train", [True, False])
def test_matches_timm_nonlocal_attn(train):
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(5)
    ref = timm_layers.NonLocalAttn(64, use_scale=False)  # exp(θᵀφ) without temperature = the paper's
    ours = NonLocalBlock2d(64, inter_channels=ref.t.out_channels, mode="embedded_gaussian")
    assert ours.inter_channels == 8  # timm: make_divisible(64 / 8, 8)
    perturbed(ours)
    # timm: t=θ, p=φ, g=g, z=W, norm=BN after W, then + shortcut — the same block, weights copy one-to-one.
    mapping = {"t": "theta", "p": "phi", "g": "g", "z": "W", "norm": "bn"}
    ref.load_state_dict({f"{k}.{rest}": v for (k, rest), v in _split(ours.state_dict(), mapping).items()})
    ours.train(train)
    ref.train(train)
    x = torch.randn(2, 64, 14, 14)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    # and timm's default √C scale is genuinely a different function
    ref.scale = 64**-0.5
    assert not torch.allclose(ours(x), ref(x), atol=1e-3)


def _split(state: dict[str, torch.Tensor], mapping: dict[str, str]) -> dict[tuple[str, str], torch.Tensor]:
    inverse = {v: k for k, v in mapping.items()}
    out = {}
    for key, value in state.items():
        head, rest = key.split(".", 1)
        out[(inverse[head], rest)] = value
    return out


# -- NonLocalResNet placement, attention maps ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("depths", "every", "expected"),
    [
        ((2, 2, 2, 2), 2, ["stages.1.2", "stages.2.2"]),  # one per stage, after its last block
        ((2, 2, 2, 2), 1, ["stages.1.1", "stages.1.3", "stages.2.1", "stages.2.3"]),
        ((1, 4, 3, 1), 2, ["stages.1.2", "stages.1.5", "stages.2.1", "stages.2.4"]),
    ],
)
def test_nonlocal_resnet_placement(depths, every, expected):
    model = NonLocalResNet(widths=(4, 8, 8, 8), depths=depths, nonlocal_every=every)
    assert isinstance(model, ResNet)
    assert [n for n, _ in model.nonlocal_blocks()] == expected
    assert all(b.in_channels == 8 for _, b in model.nonlocal_blocks())


def test_nonlocal_resnet_default_stages_are_res3_res4_where_they_exist():
    assert NonLocalResNet(widths=(4, 8, 8, 8), depths=(1, 1, 1, 1)).nonlocal_stages == (1, 2)
    assert NonLocalResNet(widths=(4, 8, 8), depths=(1, 1, 1)).nonlocal_stages == (1, 2)
    assert NonLocalResNet(widths=(4, 8), depths=(1, 1)).nonlocal_stages == (1,)


def test_nonlocal_resnet_forward_and_attention_maps():
    model = NonLocalResNet(num_classes=5, widths=(8, 16, 16, 16), depths=(1, 1, 1, 1), sub_sample=True).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 5)
    maps = nonlocal_attention_maps(model, x)
    assert list(maps) == ["stages.1.1", "stages.2.1"]
    w1, hw1 = maps["stages.1.1"]
    assert hw1 == (16, 16) and w1.shape == (2, 256, 64)
    torch.testing.assert_close(w1.sum(-1), torch.ones(2, 256))
    with pytest.raises(ValueError, match="contains no NonLocalBlock2d"):
        nonlocal_attention_maps(ResNet(widths=(8,), depths=(1,)), x)


# -- the seed article's block ----------------------------------------------------------------------------------------
def test_seed_article_block_fails_on_its_own_example():
    block = SeedArticleNonLocalBlock(64)
    with pytest.raises(RuntimeError, match=r"Expected size for first two dimensions of batch2 tensor to be: \[1, 32\]"):
        block(torch.randn(1, 64, 56, 56))
