"""Chapter 7 — the contestants of the long-range task, their one recipe, and accuracy per distance.

:mod:`nlbook.longrange` generates the task; this module sets the book's models against it: CNNs of growing
receptive field and one model per fusion strategy (:func:`strategy_models`), one training recipe for all of
them (:func:`train_config`), test accuracy at each glyph distance (:func:`accuracy_by_distance`), and the
figure chapter 7 draws from the recorded sweep (:func:`plot_accuracy_vs_distance`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from nlbook.checks import check_positive_int
from nlbook.cnn import ResNet, receptive_field
from nlbook.data import normalize
from nlbook.hybrid import hybrid_resnet
from nlbook.local_attention import SwinTransformer, sasa_resnet
from nlbook.longrange import TEST_SEED, LongRangeBatch, LongRangeTask, critical_distance
from nlbook.nonlocal_block import NonLocalResNet
from nlbook.train import TrainConfig
from nlbook.vit import VisionTransformer

__all__ = [
    "PairRule",
    "PooledMLPResNet",
    "StrategySpec",
    "build_from_spec",
    "glyph_pair_rule",
    "accuracy_by_distance",
    "plot_accuracy_vs_distance",
    "strategy_models",
    "train_config",
]


@dataclass(frozen=True)
class StrategySpec:
    """A contestant: display ``label``, fusion ``strategy``, ``model_spec`` — the builder's name and its keyword
    arguments, all it takes to rebuild the model (a record stores it) — and the receptive field of its
    convolutional part (pixels; ``None`` for the ViT, whose patches do not overlap)."""

    label: str
    strategy: str
    model_spec: Mapping[str, Any]
    receptive_field: int | None

    def build(self) -> nn.Module:
        """A freshly initialised model (seed torch first for reproducible weights)."""
        return build_from_spec(self.model_spec)


class PooledMLPResNet(ResNet):
    """Chapter 7's control: a :class:`~nlbook.cnn.ResNet` whose globally pooled features go through a two-layer
    MLP instead of one linear layer.

    A nonlinearity *after* global pooling can combine evidence from the whole image — count the glyph types and
    ask whether one of them occurs twice — although no position ever reads another. Set against a model with
    attention on the same convolutions, it separates "global interaction by attention" from "any nonlinearity
    after pooling".

    Args:
        hidden: width of the MLP's hidden layer; the other arguments are :class:`~nlbook.cnn.ResNet`'s.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        hidden: int = 64,
    ):
        super().__init__(num_classes, in_channels, widths, depths)
        check_positive_int("PooledMLPResNet", hidden=hidden)
        self.head = nn.Sequential(
            nn.Linear(self.num_features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        # nn.Linear initialises itself on construction (PyTorch's default, like ResNet's linear head), so the
        # backbone keeps the weights ResNet.__init__ drew: for a given seed, cnn_rf13 and cnn_mlp start alike.

    def reset_parameters(self) -> None:
        """ResNet's initialisation for the convolutions; PyTorch's default (Kaiming-uniform) for the MLP head."""
        super().reset_parameters()
        for m in self.head.modules() if isinstance(self.head, nn.Sequential) else ():
            if isinstance(m, nn.Linear):
                m.reset_parameters()


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "ResNet": ResNet,
    "PooledMLPResNet": PooledMLPResNet,
    "NonLocalResNet": NonLocalResNet,
    "VisionTransformer": VisionTransformer,
    "hybrid_resnet": hybrid_resnet,
    "SwinTransformer": SwinTransformer,
    "sasa_resnet": sasa_resnet,
}


def build_from_spec(model_spec: Mapping[str, Any]) -> nn.Module:
    """The model a ``{"builder": name, "kwargs": {...}}`` spec describes (what a chapter 7 record stores)."""
    if (
        not isinstance(model_spec, Mapping)
        or model_spec.get("builder") not in _BUILDERS
    ):
        raise ValueError(
            f"build_from_spec: model_spec must be {{'builder': one of {sorted(_BUILDERS)}, 'kwargs': {{...}}}}, "
            f"got {model_spec!r}"
        )
    kwargs = dict(model_spec.get("kwargs", {}))
    return _BUILDERS[model_spec["builder"]](**kwargs)


def strategy_models(
    image_size: int = 16, width: int = 16, num_classes: int = 2
) -> dict[str, StrategySpec]:
    """The models chapter 7 and ``benchmarks/longrange_sweep.py`` compare, all from
    the package, CPU-sized.

    * ``cnn_rf7`` / ``cnn_rf13`` / ``cnn_rf25`` — :class:`nlbook.cnn.ResNet` with 1, 2
      and 4 residual blocks: theoretical receptive fields of 7, 13 and 25 pixels;
      global average pooling, linear head;
    * ``cnn_mlp`` — ``cnn_rf13``'s convolutions, global average pooling, then a
      two-layer MLP (:class:`PooledMLPResNet`): the control with a nonlinearity
      after pooling and no attention;
    * ``nonlocal`` — ``cnn_rf13`` with a non-local block after its last block
      (strategy 1: attention inserted into a CNN);
    * ``vit`` — a 2-block :class:`nlbook.vit.VisionTransformer` on 4×4 patches
      (strategy 2: attention only);
    * ``botnet`` — ``cnn_rf13`` whose last stage is a BoT block, MHSA with
      relative positions (strategy 3: a hybrid, :func:`nlbook.hybrid.hybrid_resnet`);
    * ``swin`` — a 2-stage :class:`~nlbook.local_attention.SwinTransformer`:
      attention within 4×4-token windows, shifted every other block, then patch
      merging — the second stage's one window spans the image;
    * ``sasa`` — ``cnn_rf13`` whose second stage is SASA 3×3 local attention
      (:func:`~nlbook.local_attention.sasa_resnet`): attention with a
      convolution's reach (receptive field 14 pixels).
    """
    check_positive_int("strategy_models", width=width, image_size=image_size)
    if width < 4:
        raise ValueError(
            f"strategy_models: width must be an int of at least 4, got {width}"
        )
    w = width
    if image_size % 4:
        raise ValueError(
            f"strategy_models: image_size must be a multiple of 4 (ViT patches, two "
            f"strides), got {image_size}"
        )

    def spec(builder: str, **kwargs: Any) -> dict[str, Any]:
        return {"builder": builder, "kwargs": {"num_classes": num_classes, **kwargs}}

    small = {"widths": [w, 2 * w], "depths": [1, 1]}
    return {
        "cnn_rf7": StrategySpec(
            "CNN, RF 7", "convolution", spec("ResNet", widths=[w], depths=[1]), 7
        ),
        "cnn_rf13": StrategySpec(
            "CNN, RF 13", "convolution", spec("ResNet", **small), 13
        ),
        "cnn_rf25": StrategySpec(
            "CNN, RF 25",
            "convolution",
            spec("ResNet", widths=[w, 2 * w], depths=[2, 2]),
            25,
        ),
        "cnn_mlp": StrategySpec(
            "CNN, RF 13 + pooled MLP",
            "convolution, MLP after pooling",
            spec("PooledMLPResNet", **small, hidden=64),
            13,
        ),
        "nonlocal": StrategySpec(
            "Non-local ResNet",
            "attention inserted into a CNN",
            spec("NonLocalResNet", **small, nonlocal_stages=[1], nonlocal_every=1),
            13,
        ),
        "vit": StrategySpec(
            "ViT",
            "attention only",
            spec(
                "VisionTransformer",
                image_size=image_size,
                patch_size=4,
                in_channels=3,
                embed_dim=4 * w,
                depth=2,
                num_heads=4,
                mlp_ratio=2.0,
                pool="gap",
            ),
            None,
        ),
        # The BoT block sits in a third stage (8×8 input → 64 tokens): at 16×16 its
        # relative-position MHSA
        # costs several times a convolution on CPU. The convolutions before it are
        # cnn_rf13's.
        "botnet": StrategySpec(
            "BoTNet (hybrid)",
            "hybrid block",
            spec(
                "hybrid_resnet",
                kind="botnet",
                widths=[w, 2 * w, 2 * w],
                depths=[1, 1, 1],
                image_size=image_size,
            ),
            13,
        ),
        "swin": StrategySpec(
            "Swin",
            "local attention, shifted windows",
            spec(
                "SwinTransformer",
                in_channels=3,
                image_size=image_size,
                patch_size=2,
                widths=[2 * w, 4 * w],
                depths=[2, 2],
                head_dim=w,
                window_size=4,
                mlp_ratio=2.0,
            ),
            None,
        ),
        # SASA attends at full resolution, then pools (2×2 average) where the block
        # strides: stem, two 3×3 convolutions, 3×3 attention, the pool, 3×3 attention.
        "sasa": StrategySpec(
            "SASA-ResNet",
            "local attention instead of convolution",
            spec(
                "sasa_resnet", **small, attention_stages=[1], kernel_size=3, num_heads=4
            ),
            receptive_field(
                [("stem", 3, 1), ("conv", 3, 1), ("conv", 3, 1)]
                + [("attn", 3, 1), ("pool", 2, 2), ("attn", 3, 1)]
            )[-1].size,
        ),
    }


def train_config(epochs: int, seed: int = 0, **overrides) -> TrainConfig:
    """The one recipe every contestant trains with: AdamW (lr 2e-3, weight decay 0.01), batch 64, a short
    warm-up then cosine, gradient clipping at 1, and **no augmentation** (a random crop could cut a glyph)."""
    base = dict(
        epochs=epochs,
        batch_size=64,
        optimizer="adamw",
        lr=2e-3,
        weight_decay=0.01,
        warmup_epochs=0.3,
        grad_clip=1.0,
        augment=False,
        seed=seed,
    )
    return TrainConfig(**(base | overrides))


@torch.no_grad()
def accuracy_by_distance(
    model: nn.Module,
    task: LongRangeTask,
    distances: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    n: int = 500,
    seed: int = TEST_SEED,
    device: torch.device | str | None = None,
) -> dict[int, float]:
    """Test accuracy of ``model`` on ``n`` fresh images at each fixed distance (other knobs from ``task``).

    Images at distance ``d`` are drawn with seed ``seed + d``: the same images for every model and run.
    ``mean``/``std`` are the training set's normalisation (``ImageDataset.mean``/``.std``).
    """
    if not isinstance(task, LongRangeTask):
        raise TypeError(
            f"accuracy_by_distance expects a LongRangeTask, got {type(task).__name__}"
        )
    device = (
        torch.device(device) if device is not None else next(model.parameters()).device
    )
    was_training = model.training
    model.eval()
    out: dict[int, float] = {}
    try:
        for d in distances:
            batch = replace(task, distance=int(d)).sample(
                n, seed + int(d), device=device
            )
            correct = 0
            for i in range(0, n, 500):
                logits = model(
                    normalize(batch.images[i : i + 500], tuple(mean), tuple(std))
                )
                correct += int((logits.argmax(1) == batch.labels[i : i + 500]).sum())
            out[int(d)] = correct / n
    finally:
        model.train(was_training)
    return out


@dataclass(frozen=True)
class PairRule:
    """What a trained model answers as a function of *which* two glyphs an image holds (positions ignored).

    Attributes:
        accuracy: accuracy on the batch.
        said_same: share of the batch the model calls "same".
        determined: share of images whose answer is the majority answer for their unordered glyph pair — 1.0
            when the answer depends on the pair alone.
        said_same_by_pair: ``{(a, b): share called "same"}`` per unordered pair ``a <= b`` (``a == b``: "same").
    """

    accuracy: float
    said_same: float
    determined: float
    said_same_by_pair: dict[tuple[int, int], float]


@torch.no_grad()
def glyph_pair_rule(
    model: nn.Module,
    batch: LongRangeBatch,
    mean: Sequence[float],
    std: Sequence[float],
    chunk: int = 1000,
) -> PairRule:
    """Describe the rule ``model`` applies to ``batch`` (:meth:`LongRangeTask.sample`) glyph pair by glyph pair.

    A model that does not compare the glyphs can still give each pair of glyph *types* its own answer, e.g. a
    sum of per-glyph scores. Under the sampler's XOR quadruples such a rule scores anywhere between 1/3 and 2/3
    — below chance as easily as above — so its accuracy is a property of the rule a training run happened to
    find, not of the test images.
    """
    if not isinstance(batch, LongRangeBatch):
        raise TypeError(
            f"glyph_pair_rule expects a LongRangeBatch, got {type(batch).__name__}"
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        said = torch.cat(
            [
                model(
                    normalize(
                        batch.images[i : i + chunk].to(device), tuple(mean), tuple(std)
                    )
                )
                .argmax(1)
                .cpu()
                for i in range(0, len(batch), chunk)
            ]
        )
    finally:
        model.train(was_training)
    pairs = batch.glyph_ids.cpu().sort(dim=1).values
    by_pair: dict[tuple[int, int], float] = {}
    majority = 0
    for pair in sorted({tuple(p) for p in pairs.tolist()}):
        mask = (pairs == torch.tensor(pair)).all(1)
        share = said[mask].float().mean().item()
        by_pair[pair] = share
        majority += max(share, 1 - share) * int(mask.sum())
    labels = batch.labels.cpu()
    return PairRule(
        accuracy=(said == labels).float().mean().item(),
        said_same=said.float().mean().item(),
        determined=majority / len(batch),
        said_same_by_pair=by_pair,
    )


def plot_accuracy_vs_distance(
    curves: Mapping[str, Mapping[int, float | tuple[float, float]]],
    receptive_fields: Mapping[str, int | None],
    glyph_size: int = 3,
    title: str | None = None,
    ceiling: float = 0.75,
) -> Figure:
    """Accuracy against glyph distance, one line per model, with each CNN's critical distance marked.

    Args:
        curves: ``{label: {distance: accuracy}}`` or ``{label: {distance: (mean, std)}}`` (a band of ±1 std).
        receptive_fields: ``{label: receptive field of its convolutions}``; a dotted vertical line in the
            model's colour marks :func:`critical_distance` — beyond it no output of those convolutions sees
            both glyphs (drawn only if it falls inside the plotted distances). ``None`` (ViT): no line.
        ceiling: the bound on a global-average-pooling CNN beyond its critical distance (dashed grey line).
    """
    if not curves:
        raise ValueError(
            "plot_accuracy_vs_distance: no curves to plot (expected {label: {distance: accuracy}})"
        )
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    all_d: list[int] = []
    for i, (label, curve) in enumerate(curves.items()):
        ds = sorted(int(d) for d in curve)
        all_d += ds
        vals = [
            curve[d] if d in curve else curve[str(d)] for d in ds
        ]  # JSON keys are strings
        mean = [v[0] if isinstance(v, (tuple, list)) else v for v in vals]
        std = [v[1] if isinstance(v, (tuple, list)) else 0.0 for v in vals]
        colour = f"C{i}"
        ax.plot(ds, mean, "o-", color=colour, ms=3, label=label)
        if any(std):
            ax.fill_between(
                ds,
                [m - s for m, s in zip(mean, std)],
                [m + s for m, s in zip(mean, std)],
                color=colour,
                alpha=0.2,
                lw=0,
            )
        rf = receptive_fields.get(label)
        # Only where it falls inside the plotted distances (a CNN whose RF covers them all gets no line).
        if rf is not None and critical_distance(rf, glyph_size) <= max(ds):
            ax.axvline(
                critical_distance(rf, glyph_size) - 0.5, color=colour, ls=":", lw=1.5
            )
    ax.axhline(0.5, color="black", lw=0.8)
    ax.axhline(ceiling, color="grey", ls="--", lw=1)
    if all_d:
        ax.text(
            max(all_d),
            ceiling + 0.01,
            f"{ceiling:.0%}: GAP-CNN bound beyond its RF",
            ha="right",
            va="bottom",
            fontsize=7,
            color="grey",
        )
    ax.set_xlabel(
        "distance between the glyphs (pixels, L∞); dotted: where each CNN's RF stops covering both"
    )
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.05)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
