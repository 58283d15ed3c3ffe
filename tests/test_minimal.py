"""The short reader forms in nlbook.minimal compute the same functions as the production modules.

For every pair: random values in every parameter and BatchNorm statistic (so no zero-initialised
layer hides a difference), the production state dict loaded into the minimal form with
``strict=True`` (same keys, same shapes), and the outputs compared in float64 to 1e-10 — in eval
mode and in train mode (BatchNorm on batch statistics; dropout is zero by default), and the input
gradients too. The checks can fail: changing any one parameter tensor of the minimal form, or the
scale inside its attention, is detected.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nlbook.minimal as minimal
from nlbook.attention import (
    MultiHeadAttention,
    MultiHeadSelfAttention2d,
    RelativePositionLogits2d,
    scaled_dot_product_attention,
)
from nlbook.cnn import BasicBlock, conv2d_sliding
from nlbook.coatnet import LayerNorm2d, MBConv, RelativePositionBias2d, TransformerBlock2d
from nlbook.hybrid import CBAM, BoTBlock, SqueezeExcitation
from nlbook.nonlocal_block import NonLocalBlock2d
from nlbook.vit import EncoderBlock, Mlp, PatchEmbedding, VisionTransformer, vit_preset

TOL = dict(rtol=1e-10, atol=1e-10)
CUDA = pytest.param(
    "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
)
SOURCE = Path(minimal.__file__)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random values in every parameter and BatchNorm statistic, so no check passes by zeros or ones."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            # about unit-variance activations for weights; O(1) values for biases, norms, tokens
            std = min(0.5, p[0].numel() ** -0.5) if p.dim() > 1 and p.shape[0] > 1 else 0.5
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=torch.float64) + 0.5)
    return module


@dataclass
class Pair:
    """A production module, its minimal form, and inputs for both."""

    production: nn.Module
    minimal: nn.Module
    inputs: tuple[torch.Tensor, ...]


def _pair(production: nn.Module, mini: nn.Module, *inputs: torch.Tensor, seed: int = 0) -> Pair:
    production = _randomize_(production.double(), seed)
    mini = mini.double()
    mini.load_state_dict(production.state_dict(), strict=True)  # same keys, same shapes
    return Pair(production, mini, inputs)


def _se(channels: int, reduction: int = 16) -> tuple[SqueezeExcitation, minimal.SqueezeExcitation]:
    prod = SqueezeExcitation(channels, reduction)
    return prod, minimal.SqueezeExcitation(channels, prod.rd_channels)


def _basic_block_with_se() -> Pair:
    prod_se, mini_se = _se(32)
    prod = BasicBlock(16, 32, 2, attention=prod_se)
    return _pair(prod, minimal.BasicBlock(16, 32, 2, attention=mini_se), _randn(3, 16, 8, 6))


def _cbam(channels: int, **kwargs: int) -> Pair:
    prod = CBAM(channels, **kwargs)
    mini = minimal.CBAM(channels, prod.rd_channels, kwargs.get("spatial_kernel", 7))
    return _pair(prod, mini, _randn(3, channels, 7, 5))


# Every (production, minimal) pair, in the configurations the chapters use and a few edge cases:
# non-square maps (a swapped height/width shows), odd sizes, strides, widening blocks.
PAIRS: dict[str, Callable[[], Pair]] = {
    # chapter 1
    "BasicBlock": lambda: _pair(BasicBlock(16, 16), minimal.BasicBlock(16, 16), _randn(3, 16, 7, 5)),
    "BasicBlock/stride2": lambda: _pair(BasicBlock(8, 16, 2), minimal.BasicBlock(8, 16, 2), _randn(3, 8, 8, 6)),
    "BasicBlock/se": _basic_block_with_se,
    # chapter 2
    "MultiHeadAttention": lambda: _pair(MultiHeadAttention(24, 3), minimal.MultiHeadAttention(24, 3), _randn(3, 7, 24)),
    "MultiHeadAttention/no-qkv-bias": lambda: _pair(
        MultiHeadAttention(16, 2, qkv_bias=False), minimal.MultiHeadAttention(16, 2, qkv_bias=False), _randn(2, 5, 16)
    ),
    "MultiHeadAttention/bias": lambda: _pair(
        MultiHeadAttention(24, 3), minimal.MultiHeadAttention(24, 3), _randn(3, 7, 24), _randn(3, 7, 7, seed=1)
    ),
    "RelativePositionLogits2d": lambda: _pair(
        RelativePositionLogits2d(3, 5, 8), minimal.RelativePositionLogits2d(3, 5, 8), _randn(2, 4, 15, 8)
    ),
    "MultiHeadSelfAttention2d": lambda: _pair(
        MultiHeadSelfAttention2d(16, 4), minimal.MultiHeadSelfAttention2d(16, 4), _randn(3, 16, 5, 3)
    ),
    "MultiHeadSelfAttention2d/no-proj": lambda: _pair(
        MultiHeadSelfAttention2d(16, 2, proj=False),
        minimal.MultiHeadSelfAttention2d(16, 2, proj=False),
        _randn(3, 16, 4, 6),
    ),
    "MultiHeadSelfAttention2d/relative": lambda: _pair(  # BoTNet's MHSA
        MultiHeadSelfAttention2d(16, 4, pos="relative", size=(3, 5), proj=False),
        minimal.MultiHeadSelfAttention2d(16, 4, size=(3, 5), proj=False),
        _randn(3, 16, 3, 5),
    ),
    # chapter 3
    "NonLocalBlock2d": lambda: _pair(NonLocalBlock2d(16), minimal.NonLocalBlock2d(16), _randn(3, 16, 6, 5)),
    "NonLocalBlock2d/explicit": lambda: _pair(
        NonLocalBlock2d(16, impl="explicit"), minimal.NonLocalBlock2d(16), _randn(3, 16, 6, 5)
    ),
    "NonLocalBlock2d/sub_sample-odd": lambda: _pair(
        NonLocalBlock2d(16, 6, sub_sample=True), minimal.NonLocalBlock2d(16, 6, sub_sample=True), _randn(3, 16, 7, 5)
    ),
    # chapter 4
    "PatchEmbedding": lambda: _pair(
        PatchEmbedding(16, 4, 3, 24), minimal.PatchEmbedding(4, 3, 24), _randn(3, 3, 16, 16)
    ),
    "Mlp": lambda: _pair(Mlp(24, 48), minimal.Mlp(24, 48), _randn(3, 5, 24)),
    "EncoderBlock": lambda: _pair(EncoderBlock(24, 3), minimal.EncoderBlock(24, 3), _randn(3, 9, 24)),
    "EncoderBlock/mlp_ratio2": lambda: _pair(
        EncoderBlock(16, 2, mlp_ratio=2.0), minimal.EncoderBlock(16, 2, mlp_ratio=2.0), _randn(2, 5, 16)
    ),
    "VisionTransformer/small": lambda: _pair(
        VisionTransformer(16, 4, 3, 7, embed_dim=24, depth=2, num_heads=3),
        minimal.VisionTransformer(16, 4, 3, 7, embed_dim=24, depth=2, num_heads=3),
        _randn(3, 3, 16, 16),
    ),
    "VisionTransformer/vit_tiny_p4_32": lambda: _pair(  # the chapter's preset = the defaults
        vit_preset("vit_tiny_p4_32"), minimal.VisionTransformer(), _randn(2, 3, 32, 32)
    ),
    # chapter 5
    "SqueezeExcitation": lambda: _pair(*_se(32, reduction=4), _randn(3, 32, 5, 4)),
    "SqueezeExcitation/floor": lambda: _pair(*_se(16), _randn(3, 16, 5, 4)),  # max(8, 16 // 16)
    "CBAM": lambda: _cbam(32),
    "CBAM/kernel3": lambda: _cbam(16, reduction=2, spatial_kernel=3),
    "BoTBlock": lambda: _pair(BoTBlock(32, 32, (4, 6)), minimal.BoTBlock(32, 32, (4, 6)), _randn(3, 32, 4, 6)),
    "BoTBlock/stride2-widen": lambda: _pair(
        BoTBlock(16, 32, (6, 4), stride=2), minimal.BoTBlock(16, 32, (6, 4), stride=2), _randn(3, 16, 6, 4)
    ),
    "BoTBlock/expansion1": lambda: _pair(  # hybrid_resnet's BoT blocks
        BoTBlock(16, 16, (4, 4), expansion=1), minimal.BoTBlock(16, 16, (4, 4), expansion=1), _randn(3, 16, 4, 4)
    ),
    "MBConv": lambda: _pair(MBConv(16, 16), minimal.MBConv(16, 16), _randn(3, 16, 5, 6)),
    "MBConv/stride2-widen": lambda: _pair(MBConv(16, 24, 2), minimal.MBConv(16, 24, 2), _randn(3, 16, 6, 4)),
    "MBConv/stride2": lambda: _pair(MBConv(16, 16, 2), minimal.MBConv(16, 16, 2), _randn(3, 16, 6, 4)),
    "MBConv/widen": lambda: _pair(
        MBConv(8, 16, expand_ratio=2), minimal.MBConv(8, 16, expand_ratio=2), _randn(3, 8, 5, 5)
    ),
    "LayerNorm2d": lambda: _pair(LayerNorm2d(16), minimal.LayerNorm2d(16), _randn(3, 16, 5, 4)),
    "RelativePositionBias2d": lambda: _pair(
        RelativePositionBias2d((3, 5), 4), minimal.RelativePositionBias2d((3, 5), 4)
    ),
    "TransformerBlock2d": lambda: _pair(
        TransformerBlock2d(32, 32, (4, 6), head_dim=8),
        minimal.TransformerBlock2d(32, 32, (4, 6), head_dim=8),
        _randn(3, 32, 4, 6),
    ),
    "TransformerBlock2d/stride2-widen": lambda: _pair(
        TransformerBlock2d(16, 32, (6, 4), stride=2, head_dim=8),
        minimal.TransformerBlock2d(16, 32, (6, 4), stride=2, head_dim=8),
        _randn(3, 16, 6, 4),
    ),
}


def _outputs(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Output and (for a first input that is a float tensor) the gradient of a random projection of it."""
    x = inputs[0].clone().requires_grad_() if inputs else None
    out = module(*((x, *inputs[1:]) if x is not None else ()))
    if x is None:
        return out, None
    (grad,) = torch.autograd.grad((out * _randn(*out.shape, seed=7).to(out.device)).sum(), x)
    return out, grad


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_minimal_form_computes_the_production_function(name: str, mode: str, device: str) -> None:
    pair = PAIRS[name]()
    pair.production.to(device)
    pair.minimal.to(device)  # buffers and index tables follow the module
    pair.inputs = tuple(t.to(device) for t in pair.inputs)
    pair.production.train(mode == "train")
    pair.minimal.train(mode == "train")
    expected, expected_grad = _outputs(pair.production, pair.inputs)
    got, got_grad = _outputs(pair.minimal, pair.inputs)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, **TOL)
    if expected_grad is not None:
        torch.testing.assert_close(got_grad, expected_grad, **TOL)
    # train mode: BatchNorm's running statistics move the same way
    torch.testing.assert_close(pair.minimal.state_dict(), pair.production.state_dict(), **TOL)


@pytest.mark.parametrize("name", [n for n in PAIRS if "vit_tiny" not in n])
def test_every_parameter_of_the_minimal_form_matters(name: str) -> None:
    """Changing any one parameter tensor of the minimal form changes its output: the equality above can fail,
    and no production weight is loaded but ignored."""
    pair = PAIRS[name]()
    pair.production.eval()
    expected, _ = _outputs(pair.production, pair.inputs)
    names = [n for n, _ in pair.minimal.named_parameters()]
    assert names, f"{name}: no parameters"
    for i, pname in enumerate(names):
        broken = copy.deepcopy(pair.minimal).eval()
        p = broken.get_parameter(pname)
        with torch.no_grad():
            p.add_(_randn(*p.shape, seed=100 + i) * 0.1 * (p.abs().mean() + 1e-3))
        got, _ = _outputs(broken, pair.inputs)
        if pname.rsplit(".", 1)[0] == "phi" and pname.endswith("bias"):
            # A key bias b adds θ_i·b to every logit of query i; the softmax cancels it — the one
            # parameter that cannot matter (MultiHeadAttention's qkv.bias also holds q and v biases).
            torch.testing.assert_close(got, expected, **TOL)
        else:
            assert (got - expected).abs().max() > 1e-8, f"{name}: perturbing {pname} went unnoticed"


def test_a_wrong_attention_scale_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed article's kind of bug — a 1/√d the Non-local block must not have — fails the comparison."""
    pair = PAIRS["NonLocalBlock2d"]()
    pair.production.eval()
    pair.minimal.eval()
    right = minimal.attention

    def with_default_scale(q, k, v, bias=None, scale=None):  # ignores the block's scale=1
        return right(q, k, v, bias)

    monkeypatch.setattr(minimal, "attention", with_default_scale)
    got = pair.minimal(*pair.inputs)
    assert not torch.allclose(got, pair.production(*pair.inputs), **TOL)


# ------------------------------------------------------------------------------------------------- functions
@pytest.mark.parametrize(("stride", "padding", "bias"), [(1, 0, False), (1, 1, True), (2, 1, True), (3, 2, False)])
def test_conv2d_equals_torch_and_the_sliding_window_form(stride: int, padding: int, bias: bool) -> None:
    x, w = _randn(2, 3, 9, 7), _randn(4, 3, 3, 2, seed=1)
    b = _randn(4, seed=2) if bias else None
    expected = F.conv2d(x, w, b, stride, padding)
    torch.testing.assert_close(minimal.conv2d(x, w, b, stride, padding), expected, **TOL)
    torch.testing.assert_close(conv2d_sliding(x, w, b, stride, padding), expected, **TOL)
    broken = w.clone()
    broken[0, 0, 0, 0] += 1e-3
    assert not torch.allclose(minimal.conv2d(x, broken, b, stride, padding), expected, **TOL)


@pytest.mark.parametrize("impl", ["fused", "explicit"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("scale", [None, 1.0, 0.3])
def test_attention_equals_scaled_dot_product_attention(impl: str, with_bias: bool, scale: float | None) -> None:
    q, k, v = _randn(2, 3, 5, 8), _randn(2, 3, 7, 8, seed=1), _randn(2, 3, 7, 6, seed=2)
    bias = _randn(3, 5, 7, seed=3) if with_bias else None
    expected = scaled_dot_product_attention(q, k, v, bias=bias, scale=scale, impl=impl)
    torch.testing.assert_close(minimal.attention(q, k, v, bias, scale), expected, **TOL)
    assert not torch.allclose(minimal.attention(q, k, v * 1.001, bias, scale), expected, **TOL)


# ------------------------------------------------------------------------------------------------- the source
def test_minimal_forms_use_no_production_code() -> None:
    """Built from torch and einops only — importing a production class would prove nothing."""
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not [m for m in imported if m.split(".")[0] == "nlbook"], sorted(imported)


def test_minimal_source_fits_the_page() -> None:
    """The chapters show these forms verbatim; the book's pages cut code off beyond 88 characters."""
    wide = [
        (i, len(line)) for i, line in enumerate(SOURCE.read_text(encoding="utf-8").splitlines(), 1) if len(line) > 88
    ]
    assert not wide, f"nlbook/minimal.py lines wider than 88 characters (line, width): {wide}"


def _code_lines(node: ast.FunctionDef | ast.ClassDef, lines: list[str]) -> int:
    """Lines of code in a form: no signatures, docstrings, comments or blank lines."""
    keep = set(range(node.lineno, node.end_lineno + 1))
    for f in ast.walk(node):
        if not isinstance(f, (ast.FunctionDef, ast.ClassDef)):
            continue
        body = f.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            keep -= set(range(body[0].lineno, body[0].end_lineno + 1))
            body = body[1:]
        if isinstance(f, ast.FunctionDef) and body:
            keep -= set(range(f.lineno, body[0].lineno))
    return sum(1 for i in keep if lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def test_minimal_forms_are_short() -> None:
    """A form a reader holds in their head: at most 25 lines of code and 40 lines in all per function or class."""
    source = SOURCE.read_text(encoding="utf-8")
    lines = source.splitlines()
    forms = [n for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    code = {n.name: _code_lines(n, lines) for n in forms}
    total = {n.name: n.end_lineno - n.lineno + 1 for n in forms}
    assert not {k: v for k, v in code.items() if v > 25}, f"lines of code per form: {code}"
    assert not {k: v for k, v in total.items() if v > 40}, f"lines per form: {total}"
    assert code["MultiHeadSelfAttention2d"] > 5  # the count sees the code


def test_every_minimal_form_is_compared() -> None:
    tested = {type(PAIRS[n]().minimal).__name__ for n in PAIRS} | {"attention", "conv2d"}
    assert set(minimal.__all__) <= tested, sorted(set(minimal.__all__) - tested)
