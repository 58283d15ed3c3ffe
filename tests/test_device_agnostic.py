"""Every public model and module of ``nlbook`` runs wherever its inputs live — proven on the CPU.

* **meta device**: each module is built under ``with torch.device("meta")`` and run forward (and backward,
  where it trains) on meta inputs. A meta tensor has a shape and dtype but no data, and PyTorch refuses to
  mix it with a CPU tensor — so any tensor that a forward creates without the input's ``device=`` (a
  ``torch.arange(n)``, a ``torch.tensor(...)`` mask) fails here exactly as it would fail on a GPU.
* **bfloat16 autocast** (``torch.autocast("cpu", dtype=torch.bfloat16)``): every zoo model gives finite
  outputs and lowers its loss over a few steps on a fixed batch.
* **channels_last**: image modules give the same results for channels-last and contiguous inputs.
* **torch.compile**: the baseline ResNet and the ViT run a compiled training step (slow; runs in CI).

A module that is public (its class is defined in an ``nlbook`` module and its name does not start with
``_``) but has no row in :data:`CASES` fails :func:`test_every_public_module_has_a_case`, so new modules
cannot slip past these checks; the only exemptions are listed, with the reason, in :data:`EXEMPT`.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import nlbook
from nlbook import coatnet, zoo
from nlbook import local_attention as la
from nlbook.attention import (
    LearnedPositionEncoding2d,
    MultiHeadAttention,
    MultiHeadSelfAttention2d,
    RelativePositionLogits2d,
)
from nlbook.cnn import BasicBlock, ResNet
from nlbook.longrange_sweep import PooledMLPResNet
from nlbook.nonlocal_block import NonLocalBlock2d, NonLocalResNet
from nlbook.vit import DropPath, EncoderBlock, Mlp, PatchEmbedding, VisionTransformer

Shapes = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Case:
    """One module to exercise: how to build it, the shapes of its forward inputs, whether it trains."""

    id: str
    cls: str  # qualified class name this row covers, e.g. "nlbook.cnn.ResNet"
    build: Callable[[], nn.Module]
    shapes: Shapes
    trains: bool = True

    @property
    def image(self) -> bool:
        """Is the first input an image batch (B, C, H, W)? (Then channels_last applies.)"""
        return len(self.shapes) >= 1 and len(self.shapes[0]) == 4 and self.cls != _REL_LOGITS


_REL_LOGITS = "nlbook.attention.RelativePositionLogits2d"
IMG = ((2, 3, 32, 32),)


def _q(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _hybrid_cases() -> list[Case]:
    """Rows for nlbook.hybrid (imported lazily so a module under construction fails only its own rows)."""
    from nlbook import hybrid as h

    return [
        Case("SqueezeExcitation", _q(h.SqueezeExcitation), lambda: h.SqueezeExcitation(16), ((2, 16, 8, 8),)),
        Case("CBAM", _q(h.CBAM), lambda: h.CBAM(16), ((2, 16, 8, 8),)),
        Case("CBAM-spatial-norm", _q(h.CBAM), lambda: h.CBAM(16, spatial_norm=True), ((2, 16, 8, 8),)),
        Case("BoTBlock", _q(h.BoTBlock), lambda: h.BoTBlock(16, 32, 8), ((2, 16, 8, 8),)),
        Case("BoTBlock-stride2", _q(h.BoTBlock), lambda: h.BoTBlock(16, 32, 8, stride=2), ((2, 16, 8, 8),)),
        Case("LayerNorm2d", _q(coatnet.LayerNorm2d), lambda: coatnet.LayerNorm2d(16), ((2, 16, 8, 8),)),
        Case("MBConv", _q(coatnet.MBConv), lambda: coatnet.MBConv(16, 32, stride=2), ((2, 16, 8, 8),)),
        Case(
            "RelativePositionBias2d",
            _q(coatnet.RelativePositionBias2d),
            lambda: coatnet.RelativePositionBias2d(4, 2),
            (),
        ),
        Case(
            "TransformerBlock2d",
            _q(coatnet.TransformerBlock2d),
            lambda: coatnet.TransformerBlock2d(16, 32, 8, stride=2, head_dim=8),
            ((2, 16, 8, 8),),
        ),
        Case(
            "CoAtNet",
            _q(coatnet.CoAtNet),
            lambda: coatnet.CoAtNet(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1), head_dim=8),
            IMG,
        ),
    ] + [
        Case(f"hybrid_resnet-{kind}", _q(ResNet), lambda k=kind: h.hybrid_resnet(k, widths=(8, 16, 16, 32)), IMG)
        for kind in h.HYBRID_KINDS
    ]


def _finetune_cases() -> list[Case]:
    """Rows for nlbook.finetune: the resize in front, and a pretrained-style classifier around our ViT."""
    from nlbook import finetune as ft

    def classifier() -> nn.Module:
        backbone = VisionTransformer(image_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2)
        return ft.PretrainedClassifier(backbone, "head", 8, head_init="normal")

    return [
        Case("InputResize-up", _q(ft.InputResize), lambda: ft.InputResize(12), ((2, 3, 8, 8),), trains=False),
        Case("InputResize-down", _q(ft.InputResize), lambda: ft.InputResize(6), ((2, 3, 8, 8),), trains=False),
        Case("PretrainedClassifier", _q(ft.PretrainedClassifier), classifier, ((2, 3, 12, 12),)),
    ]


def _minimal_cases() -> list[Case]:
    """Rows for nlbook.minimal: the reader forms run wherever their inputs live, like the production modules."""
    from nlbook import minimal as m

    fmap = ((2, 16, 8, 8),)
    return [
        Case("minimal-BasicBlock", _q(m.BasicBlock), lambda: m.BasicBlock(8, 16, stride=2), ((2, 8, 8, 8),)),
        Case(
            "minimal-BasicBlock-gated",
            _q(m.BasicBlock),
            lambda: m.BasicBlock(16, 16, attention=m.SqueezeExcitation(16, 4)),
            fmap,
        ),
        Case(
            "minimal-MultiHeadAttention", _q(m.MultiHeadAttention), lambda: m.MultiHeadAttention(32, 4), ((2, 16, 32),)
        ),
        Case(
            "minimal-RelativePositionLogits2d",
            _q(m.RelativePositionLogits2d),
            lambda: m.RelativePositionLogits2d(4, 4, 8),
            ((2, 2, 16, 8),),
        ),
        Case(
            "minimal-MultiHeadSelfAttention2d",
            _q(m.MultiHeadSelfAttention2d),
            lambda: m.MultiHeadSelfAttention2d(16, 2, size=(8, 8)),
            fmap,
        ),
        Case("minimal-NonLocalBlock2d", _q(m.NonLocalBlock2d), lambda: m.NonLocalBlock2d(16, sub_sample=True), fmap),
        Case("minimal-PatchEmbedding", _q(m.PatchEmbedding), lambda: m.PatchEmbedding(4, 3, 32), IMG),
        Case("minimal-Mlp", _q(m.Mlp), lambda: m.Mlp(16, 32), ((2, 5, 16),)),
        Case("minimal-EncoderBlock", _q(m.EncoderBlock), lambda: m.EncoderBlock(32, 2), ((2, 5, 32),)),
        Case(
            "minimal-VisionTransformer",
            _q(m.VisionTransformer),
            lambda: m.VisionTransformer(embed_dim=32, depth=1, num_heads=2),
            IMG,
        ),
        Case("minimal-SqueezeExcitation", _q(m.SqueezeExcitation), lambda: m.SqueezeExcitation(16, 4), fmap),
        Case("minimal-CBAM", _q(m.CBAM), lambda: m.CBAM(16, 4), fmap),
        Case("minimal-BoTBlock", _q(m.BoTBlock), lambda: m.BoTBlock(16, 32, (8, 8), stride=2), fmap),
        Case("minimal-MBConv", _q(m.MBConv), lambda: m.MBConv(16, 32, stride=2), fmap),
        Case("minimal-LayerNorm2d", _q(m.LayerNorm2d), lambda: m.LayerNorm2d(16), fmap),
        Case(
            "minimal-RelativePositionBias2d",
            _q(m.RelativePositionBias2d),
            lambda: m.RelativePositionBias2d((4, 4), 2),
            (),
        ),
        Case(
            "minimal-TransformerBlock2d",
            _q(m.TransformerBlock2d),
            lambda: m.TransformerBlock2d(16, 32, (8, 8), stride=2, head_dim=8),
            fmap,
        ),
    ]


CASES: list[Case] = [
    Case("BasicBlock", _q(BasicBlock), lambda: BasicBlock(8, 16, stride=2), ((2, 8, 8, 8),)),
    Case("ResNet", _q(ResNet), lambda: ResNet(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1)), IMG),
    Case("MultiHeadAttention", _q(MultiHeadAttention), lambda: MultiHeadAttention(32, 4), ((2, 16, 32),)),
    Case(
        "MultiHeadAttention-explicit-bias",
        _q(MultiHeadAttention),
        lambda: MultiHeadAttention(32, 4, impl="explicit"),
        ((2, 16, 32), (1, 4, 16, 16)),
    ),
    Case("MultiHeadAttention-bias", _q(MultiHeadAttention), lambda: MultiHeadAttention(32, 4), ((2, 16, 32), (16, 16))),
    Case(
        "LearnedPositionEncoding2d",
        _q(LearnedPositionEncoding2d),
        lambda: LearnedPositionEncoding2d(8, 4, 4),
        ((2, 8, 4, 4),),
    ),
    Case(
        "RelativePositionLogits2d",
        _q(RelativePositionLogits2d),
        lambda: RelativePositionLogits2d(4, 4, 8),
        ((2, 2, 16, 8),),
    ),
    *[
        Case(
            f"MultiHeadSelfAttention2d-{pos}-{impl}",
            _q(MultiHeadSelfAttention2d),
            lambda pos=pos, impl=impl: MultiHeadSelfAttention2d(16, 2, pos=pos, size=(4, 4), impl=impl),
            ((2, 16, 4, 4),),
        )
        for pos in (None, "sincos", "learned", "relative")
        for impl in ("fused", "explicit")
    ],
    *[
        Case(
            f"NonLocalBlock2d-{mode}-{'sub' if sub else 'full'}",
            _q(NonLocalBlock2d),
            lambda mode=mode, sub=sub: NonLocalBlock2d(16, mode=mode, sub_sample=sub),
            ((2, 16, 8, 8),),
        )
        for mode in ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
        for sub in (False, True)
    ],
    Case(
        "NonLocalBlock2d-explicit-nobn",
        _q(NonLocalBlock2d),
        lambda: NonLocalBlock2d(16, bn_layer=False, impl="explicit"),
        ((2, 16, 8, 8),),
    ),
    Case(
        "NonLocalResNet", _q(NonLocalResNet), lambda: NonLocalResNet(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1)), IMG
    ),
    Case("PatchEmbedding", _q(PatchEmbedding), lambda: PatchEmbedding(32, 4, 3, 32), IMG),
    Case("DropPath", _q(DropPath), lambda: DropPath(0.1), ((2, 5, 8),), trains=False),
    Case("Mlp", _q(Mlp), lambda: Mlp(16, 32), ((2, 5, 16),)),
    Case("EncoderBlock", _q(EncoderBlock), lambda: EncoderBlock(32, 2, drop_path=0.1), ((2, 5, 32),)),
    *[
        Case(
            f"VisionTransformer-{pool}",
            _q(VisionTransformer),
            lambda pool=pool: VisionTransformer(embed_dim=32, depth=2, num_heads=2, pool=pool, drop_path=0.1),
            IMG,
        )
        for pool in ("cls", "gap")
    ],
    *_hybrid_cases(),
    *_finetune_cases(),
    *_minimal_cases(),
    Case(
        "PooledMLPResNet",
        _q(PooledMLPResNet),
        lambda: PooledMLPResNet(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1), hidden=16),
        IMG,
    ),
    Case("WindowAttention", _q(la.WindowAttention), lambda: la.WindowAttention(16, 4, 2, 2), ((2, 16, 8, 8),)),
    Case("SwinBlock", _q(la.SwinBlock), lambda: la.SwinBlock(16, 2, 4, 2), ((2, 16, 8, 8),)),
    Case("PatchMerging", _q(la.PatchMerging), lambda: la.PatchMerging(16), ((2, 16, 8, 8),)),
    Case(
        "SwinTransformer",
        _q(la.SwinTransformer),
        lambda: la.SwinTransformer(widths=(8, 16, 32), depths=(2, 2, 1), head_dim=8, drop_path=0.1),
        IMG,
    ),
    Case(
        "LocalSelfAttention2d",
        _q(la.LocalSelfAttention2d),
        lambda: la.LocalSelfAttention2d(16, 16, 3, 2),
        ((2, 16, 8, 8),),
    ),
    Case(
        "LocalAttentionBlock",
        _q(la.LocalAttentionBlock),
        lambda: la.LocalAttentionBlock(8, 16, 2, 3, 2),
        ((2, 8, 8, 8),),
    ),
    Case(
        "sasa_resnet",
        _q(ResNet),
        lambda: la.sasa_resnet(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1), num_heads=2),
        IMG,
    ),
    Case(
        "RelativeOffsetAttention2d",
        _q(la.RelativeOffsetAttention2d),
        lambda: la.RelativeOffsetAttention2d(8, 8, 9),
        ((2, 8, 6, 6),),
    ),
    Case(
        "WindowAttentionMinimal",
        _q(la.WindowAttentionMinimal),
        lambda: la.WindowAttentionMinimal(16, 4, 2, 2),
        ((2, 16, 8, 8),),
    ),
    Case(
        "LocalSelfAttention2dMinimal",
        _q(la.LocalSelfAttention2dMinimal),
        lambda: la.LocalSelfAttention2dMinimal(16, 16, 3, 2),
        ((2, 16, 8, 8),),
    ),
    *[
        Case(f"zoo-{name}", "zoo", lambda name=name: zoo.build_model(name, profile="quick"), IMG)
        for name in zoo.model_names()
    ],
]

# Public nn.Module classes that are deliberately not run, with the reason.
EXEMPT: dict[str, str] = {
    "nlbook.nonlocal_block.SeedArticleNonLocalBlock": "broken on purpose: chapter 3 shows that it raises",
}

ZOO_CASES = [c for c in CASES if c.cls == "zoo"]


def _public_module_classes() -> set[str]:
    found: set[str] = set()
    for info in pkgutil.iter_modules(nlbook.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"nlbook.{info.name}")  # a module that fails to import fails the test
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == mod.__name__:
                if not name.startswith("_"):
                    found.add(_q(obj))
    return found


def test_every_public_module_has_a_case() -> None:
    covered = {c.cls for c in CASES} | set(EXEMPT)
    missing = sorted(_public_module_classes() - covered)
    assert not missing, f"add rows to CASES in {__file__} for: {missing}"
    assert {c.id.removeprefix("zoo-") for c in ZOO_CASES} == set(zoo.model_names())


@torch.no_grad()
def _wake_zero_parameters(model: nn.Module) -> nn.Module:
    """Zero-initialised heads/branch gains would make outputs 0 and the comparisons below vacuous."""
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        if not p.any():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def _inputs(case: Case, device: torch.device | str, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).to(device) for s in case.shapes]


def _first(out: torch.Tensor | tuple) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


# --------------------------------------------------------------------------------------------------------------
# meta device


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_backward_on_meta(case: Case) -> None:
    with torch.device("meta"):
        model = case.build()
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()]), "module built off the meta device"
    model.train(case.trains)
    xs = [x.requires_grad_() for x in _inputs(case, "meta")]
    out = _first(model(*xs))  # outside the device context: defaults are CPU again, so a stray tensor clashes
    assert out.is_meta, f"{case.id} returned a tensor on {out.device}"
    if case.trains:
        out.float().square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(g.is_meta for g in grads)
        assert all(x.grad is None or x.grad.is_meta for x in xs)


def test_meta_test_catches_a_tensor_created_on_the_default_device() -> None:
    """The check above can fail: a forward that builds a position index without ``device=`` is caught."""

    class Careless(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x) + torch.arange(x.shape[-1], dtype=x.dtype)  # no device=: lives on the CPU

    with torch.device("meta"):
        model = Careless()
    with pytest.raises((RuntimeError, NotImplementedError)):
        model(torch.randn(2, 4, device="meta"))


# --------------------------------------------------------------------------------------------------------------
# bfloat16 autocast on the CPU


@pytest.mark.parametrize("case", ZOO_CASES, ids=lambda c: c.id)
def test_bf16_autocast_trains(case: Case) -> None:
    torch.manual_seed(0)
    # 16×16 images keep bf16 (slow on CPUs without bf16 units) cheap; 8 images give BatchNorm real statistics
    model = zoo.build_model(case.id.removeprefix("zoo-"), profile="quick", image_size=16)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for _ in range(5):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y)
        assert logits.dtype == torch.bfloat16, "autocast did not reach the model's matmuls/convolutions"
        assert torch.isfinite(logits.float()).all() and torch.isfinite(loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], f"{case.id}: bf16 loss did not decrease: {losses}"


# --------------------------------------------------------------------------------------------------------------
# channels_last


@pytest.mark.parametrize("case", [c for c in CASES if c.image], ids=lambda c: c.id)
def test_channels_last_matches_contiguous(case: Case) -> None:
    torch.manual_seed(0)
    model = _wake_zero_parameters(case.build().eval())
    xs = _inputs(case, "cpu")
    with torch.no_grad():
        ref = _first(model(*xs))
        cl_in = _first(model(xs[0].contiguous(memory_format=torch.channels_last), *xs[1:]))
        model = model.to(memory_format=torch.channels_last)
        cl_both = _first(model(xs[0].contiguous(memory_format=torch.channels_last), *xs[1:]))
    assert ref.abs().max() > 0, "all-zero outputs would make the comparison vacuous"
    # float32 convolutions take other kernels for NHWC: agreement to float32 rounding, not bit for bit
    torch.testing.assert_close(cl_in.contiguous(), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cl_both.contiguous(), ref, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------
# torch.compile


# The smallest instances of the two classes: inductor's compile time grows with the graph, and CI has 2 cores.
COMPILE_MODELS: dict[str, Callable[[], nn.Module]] = {
    "resnet": lambda: ResNet(widths=(8, 16), depths=(1, 1)),
    "vit": lambda: VisionTransformer(embed_dim=32, depth=1, num_heads=2),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMPILE_MODELS))
def test_compiled_training_step(name: str) -> None:
    torch.manual_seed(0)
    model = _wake_zero_parameters(COMPILE_MODELS[name]())
    eager = COMPILE_MODELS[name]()
    eager.load_state_dict(model.state_dict())
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    compiled = torch.compile(model)  # the default backend, inductor: generated C++ kernels on the CPU
    losses = []
    for m in (compiled, eager):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    assert torch.isfinite(losses[0])
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-4)
    for (n, p), q in zip(model.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4, msg=lambda m, n=n: f"{n}: {m}")
