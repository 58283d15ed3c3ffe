"""nlbook.diagrams: every diagram agrees with the production module it draws, and renders legibly.

The shape check runs the real module once with forward hooks (:func:`nlbook.diagrams.shapes_from`) and compares
every box that names a sub-module with the diagram's symbolic shape at the same sizes; the coverage check makes
every parameter of the module belong to some box. A layer added to the code and not to its diagram, or a shape
label that no longer holds, fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.text import Annotation
from torch import nn

from nlbook import diagrams as D
from nlbook.attention import MultiHeadAttention, MultiHeadSelfAttention2d, scaled_dot_product_attention
from nlbook.cnn import BasicBlock
from nlbook.coatnet import MBConv, TransformerBlock2d
from nlbook.hybrid import CBAM, BoTBlock, SqueezeExcitation
from nlbook.local_attention import LocalSelfAttention2d, WindowAttention
from nlbook.nonlocal_block import NonLocalBlock2d
from nlbook.vit import EncoderBlock, PatchEmbedding, VisionTransformer

# (diagram, its options, the production module, its input, the sizes that bind the diagram's symbols)
Case = tuple[Callable[..., D.Diagram], dict[str, Any], Callable[[], nn.Module], tuple[int, ...], dict[str, int]]
MAP = dict(B=2, C=8, H=6, W=6)
CASES: dict[str, Case] = {
    "basic_block": (D.basic_block_diagram, {}, lambda: BasicBlock(8, 8), (2, 8, 6, 6), MAP),
    "basic_block_down": (
        D.basic_block_diagram,
        {"downsample": True},
        lambda: BasicBlock(8, 16, stride=2),
        (2, 8, 6, 6),
        MAP,
    ),
    "mha_tokens": (
        D.multi_head_attention_diagram,
        {},
        lambda: MultiHeadAttention(12, 3),
        (2, 5, 12),
        dict(B=2, N=5, D=12, h=3),
    ),
    "mha_2d": (
        D.multi_head_attention_diagram,
        {"form": "2d"},
        lambda: MultiHeadSelfAttention2d(12, 3),
        (2, 12, 4, 5),
        dict(B=2, C=12, H=4, W=5, h=3),
    ),
    "nonlocal": (D.nonlocal_block_diagram, {}, lambda: NonLocalBlock2d(8), (2, 8, 6, 6), MAP),
    "nonlocal_sub": (
        D.nonlocal_block_diagram,
        {"sub_sample": True},
        lambda: NonLocalBlock2d(8, sub_sample=True),
        (2, 8, 6, 6),
        MAP,
    ),
    "patch_embedding": (
        D.patch_embedding_diagram,
        {},
        lambda: PatchEmbedding(8, 4, 3, 16),
        (2, 3, 8, 8),
        dict(B=2, C=3, H=8, W=8, p=4, D=16),
    ),
    "encoder_block": (D.encoder_block_diagram, {}, lambda: EncoderBlock(16, 4), (2, 5, 16), dict(B=2, N=5, D=16)),
    "vit": (
        D.vit_diagram,
        {},
        lambda: VisionTransformer(image_size=8, patch_size=4, num_classes=10, embed_dim=16, depth=1, num_heads=2),
        (2, 3, 8, 8),
        dict(B=2, C=3, H=8, W=8, p=4, D=16, K=10),
    ),
    "se": (
        D.se_diagram,
        {},
        lambda: SqueezeExcitation(32, reduction=4),
        (2, 32, 5, 5),
        dict(B=2, C=32, H=5, W=5, r=4),
    ),
    "cbam": (D.cbam_diagram, {}, lambda: CBAM(32, reduction=4), (2, 32, 5, 5), dict(B=2, C=32, H=5, W=5)),
    "cbam_norm": (
        D.cbam_diagram,
        {"spatial_norm": True},
        lambda: CBAM(32, reduction=4, spatial_norm=True),
        (2, 32, 5, 5),
        dict(B=2, C=32, H=5, W=5),
    ),
    "bot_block": (
        D.bot_block_diagram,
        {},
        lambda: BoTBlock(16, 16, size=6, num_heads=2),
        (2, 16, 6, 6),
        dict(MAP, C=16),
    ),
    "bot_block_down": (
        D.bot_block_diagram,
        {"downsample": True},
        lambda: BoTBlock(16, 32, size=6, stride=2, num_heads=2),
        (2, 16, 6, 6),
        dict(MAP, C=16),
    ),
    "mbconv": (D.mbconv_diagram, {}, lambda: MBConv(8, 8), (2, 8, 6, 6), MAP),
    "mbconv_down": (D.mbconv_diagram, {"downsample": True}, lambda: MBConv(8, 16, stride=2), (2, 8, 6, 6), MAP),
    "transformer_block_2d": (
        D.transformer_block_2d_diagram,
        {},
        lambda: TransformerBlock2d(16, 16, size=4, head_dim=8),
        (2, 16, 4, 4),
        dict(B=2, C=16, H=4, W=4, h=2),
    ),
    "transformer_block_2d_down": (
        D.transformer_block_2d_diagram,
        {"downsample": True},
        lambda: TransformerBlock2d(16, 32, size=4, stride=2, head_dim=8),
        (2, 16, 4, 4),
        dict(B=2, C=16, H=4, W=4, h=4),
    ),
    "window_attention": (
        D.window_attention_diagram,
        {},
        lambda: WindowAttention(8, window_size=2, num_heads=2),
        (2, 8, 4, 6),
        dict(B=2, C=8, H=4, W=6, M=2, h=2),
    ),
    "window_attention_shifted": (
        D.window_attention_diagram,
        {"shifted": True},
        lambda: WindowAttention(8, window_size=2, num_heads=2, shift_size=1),
        (2, 8, 4, 6),
        dict(B=2, C=8, H=4, W=6, M=2, h=2),
    ),
    "local_attention": (
        D.local_attention_diagram,
        {},
        # the diagram draws the textbook form; the default fused path computes the same (test_local_attention)
        lambda: LocalSelfAttention2d(8, kernel_size=3, num_heads=2, impl="explicit"),
        (2, 8, 5, 6),
        dict(B=2, C=8, H=5, W=6, k=3, h=2),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_diagram_matches_module(name: str) -> None:
    build, options, make_module, input_shape, sizes = CASES[name]
    torch.manual_seed(0)
    diagram, module = build(**options), make_module().eval()
    shapes = D.shapes_from(module, torch.randn(input_shape))
    submodules, parameters = dict(module.named_modules()), dict(module.named_parameters())
    # every box's module exists and ran; the shapes agree
    for node in diagram.nodes.values():
        if node.module is not None:
            assert node.module in submodules or node.module in parameters, f"{node.key}: no {node.module!r} in {name}"
            if node.module in submodules:
                assert node.module in shapes, f"{node.key}: {node.module!r} never runs in {name}'s forward"
    assert diagram.check(shapes, **sizes) == []
    # every parameter of the module is drawn by some box
    drawn = diagram.modules - {""}
    for pname in parameters:
        assert any(pname == m or pname.startswith(m + ".") for m in drawn), f"{name}: parameter {pname} not drawn"


def test_attention_diagram_matches_the_function() -> None:
    sizes = dict(B=2, h=3, N=5, M=7, d=4)
    for bias in (False, True):
        diagram = D.attention_diagram(bias=bias)
        symbolic = {e.src: e.shape for e in diagram.edges if e.shape}
        q, k, v = (torch.randn(D.eval_shape(symbolic[s], sizes)) for s in ("q", "k", "v"))
        extra = {"bias": torch.randn(D.eval_shape(symbolic["bias"], sizes))} if bias else {}
        out, weights = scaled_dot_product_attention(q, k, v, return_weights=True, **extra)
        assert diagram.check({"weights": tuple(weights.shape), "out": tuple(out.shape)}, **sizes) == []


def test_check_reports_a_drifted_diagram() -> None:
    """A label that no longer matches the code is reported (the check can fail)."""
    diagram = D.basic_block_diagram(downsample=True)
    shapes = D.shapes_from(BasicBlock(8, 16, stride=1), torch.randn(2, 8, 6, 6))  # code without the stride
    problems = diagram.check(shapes, **MAP)
    assert any("conv1" in p and "(2, 16, 3, 3)" in p for p in problems)


def test_eval_shape() -> None:
    sizes = dict(B=2, C=8, H=6, W=6, p=3)
    assert D.eval_shape("B×2C×H/2×W/2", sizes) == (2, 16, 3, 3)
    assert D.eval_shape("B×(N+1)×C′", sizes, {"N": "H·W/p²", "C′": "C/2"}) == (2, 5, 4)
    with pytest.raises(ValueError, match="no size given for symbol 'K'"):
        D.eval_shape("B×K", sizes)
    with pytest.raises(ValueError, match="not a whole number"):
        D.eval_shape("B×C/3", sizes)


def test_symbols_can_be_numbers() -> None:
    diagram = D.basic_block_diagram(downsample=True, channels="64", size=("32", "32"))
    assert "B×128×16×16" in {e.shape for e in diagram.edges}


def test_shapes_from_rejects_a_non_module() -> None:
    with pytest.raises(TypeError, match="shapes_from: model must be a torch.nn.Module"):
        D.shapes_from(lambda x: x, torch.zeros(1))  # type: ignore[arg-type]


DRAWINGS = [(name, build, options) for name, (build, options, *_rest) in CASES.items()] + [
    ("attention", D.attention_diagram, {}),
    ("attention_bias", D.attention_diagram, {"bias": True}),
]


@pytest.mark.parametrize(("name", "build", "options"), DRAWINGS, ids=[d[0] for d in DRAWINGS])
def test_drawing_is_complete_and_legible(name: str, build: Callable[..., D.Diagram], options: dict) -> None:
    diagram = build(**options)
    fig = diagram.draw()
    try:
        ax = fig.axes[0]
        width, height = fig.get_size_inches()
        assert width <= 7.5, f"{name} is {width:.2f} in wide; the page is 7"
        gids = [a.get_gid() or "" for a in ax.get_children()]
        boxes = [n for n in diagram.nodes.values() if n.kind != "input"]
        assert sum(g.startswith("node:") for g in gids) == len(boxes)
        arrows = [a for a in ax.get_children() if isinstance(a, Annotation) and (a.get_gid() or "").startswith("edge:")]
        assert len(arrows) == len(diagram.edges)
        assert sum(g.startswith("shape:") for g in gids) == sum(e.text is not None for e in diagram.edges)

        renderer = fig.canvas.get_renderer()
        fig_box = fig.bbox
        patches = {
            p.get_gid(): p.get_window_extent(renderer) for p in ax.patches if (p.get_gid() or "").startswith("node:")
        }
        texts = [t for t in ax.texts if t.get_text()]
        for t in texts:
            bb = t.get_window_extent(renderer)
            assert fig_box.x0 <= bb.x0 and bb.x1 <= fig_box.x1 + 0.5, f"{name}: {t.get_text()!r} leaves the figure"
            assert fig_box.y0 <= bb.y0 and bb.y1 <= fig_box.y1 + 0.5, f"{name}: {t.get_text()!r} leaves the figure"
            gid = t.get_gid() or ""
            if gid.startswith("label:") and f"node:{gid[6:]}" in patches:
                box = patches[f"node:{gid[6:]}"]
                assert box.x0 <= bb.x0 and bb.x1 <= box.x1, f"{name}: label {t.get_text()!r} overflows its box"
        # no two boxes overlap; no shape label covers a box or another label
        items = list(patches.items()) + [
            (t.get_gid(), t.get_window_extent(renderer)) for t in texts if (t.get_gid() or "").startswith("shape:")
        ]
        for i, (a, box_a) in enumerate(items):
            for b, box_b in items[i + 1 :]:
                assert not box_a.overlaps(box_b), f"{name}: {a} overlaps {b}"
    finally:
        plt.close(fig)


def test_registry_covers_chapters_one_to_five() -> None:
    assert {chapter for chapter, _ in D.DIAGRAMS.values()} == {1, 2, 3, 4, 5}
    for name, (_, build) in D.DIAGRAMS.items():
        fig = getattr(D, f"draw_{name}")()
        assert isinstance(fig, plt.Figure) and len(fig.axes) == 1
        assert fig.axes[0].texts[0].get_text() == build().title
        plt.close(fig)


def test_draw_into_given_axes_and_legend() -> None:
    fig, axes = plt.subplots(1, 2, figsize=(7, 4))
    assert D.draw_se(axes[0]) is fig and D.draw_mbconv(axes[1]) is fig
    plt.close(fig)
    legend = D.draw_legend()
    assert legend.get_size_inches()[0] <= 7.5
    plt.close(legend)
