"""Every chapter — figures the chapters share: image grids, training curves, feature maps, filters and attention maps.

Every function returns the matplotlib ``Figure`` (and draws nothing else), so a notebook cell ends with
the call and the figure is shown once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from nlbook.train import TrainRecord

__all__ = [
    "plot_attention_maps",
    "plot_feature_maps",
    "plot_filters",
    "plot_history",
    "show_images",
    "to_display",
]


def to_display(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 or float tensor → (H, W, C) or (H, W) array in [0, 1] for ``imshow``."""
    if image.dim() != 3:
        raise ValueError(f"to_display expects one (C, H, W) image, got shape {tuple(image.shape)}")
    x = image.detach().float().cpu()
    x = x / 255.0 if image.dtype == torch.uint8 else (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    x = x.permute(1, 2, 0).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def show_images(
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor | None = None,
    classes: Sequence[str] | None = None,
    ncols: int = 8,
    title: str | None = None,
    size: float = 1.2,
) -> Figure:
    """A grid of images (N, C, H, W), optionally captioned with class names."""
    if images.dim() != 4:
        raise ValueError(f"show_images expects (N, C, H, W), got shape {tuple(images.shape)}")
    n = images.shape[0]
    if labels is not None and len(labels) != n:
        raise ValueError(f"show_images: got {len(labels)} labels for {n} images")
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(to_display(images[i]), cmap="gray", interpolation="nearest")
        if labels is not None:
            lab = int(labels[i])
            ax.set_title(classes[lab] if classes else str(lab), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_history(records: Mapping[str, TrainRecord] | Sequence[TrainRecord], title: str | None = None) -> Figure:
    """Training loss and test accuracy per epoch for one or more runs."""
    if not isinstance(records, Mapping):
        records = list(records)
        if not all(isinstance(r, TrainRecord) for r in records):
            raise TypeError("plot_history expects TrainRecords (a list, or a dict name -> TrainRecord)")
        records = {r.name: r for r in records}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, rec in records.items():
        epochs = [e.epoch for e in rec.history]
        ax_loss.plot(epochs, [e.train_loss for e in rec.history], marker="o", label=name)
        ax_acc.plot(epochs, [100 * e.test_acc for e in rec.history], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_feature_maps(fmap: torch.Tensor, n: int = 8, title: str | None = None) -> Figure:
    """The first ``n`` channels of one (C, H, W) feature map."""
    if fmap.dim() != 3:
        raise ValueError(f"plot_feature_maps expects one (C, H, W) map, got shape {tuple(fmap.shape)}")
    n = min(n, fmap.shape[0])
    fig, axes = plt.subplots(1, n, figsize=(1.3 * n, 1.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.imshow(fmap[i].detach().float().cpu().numpy(), cmap="viridis")
        ax.set_title(f"ch {i}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_filters(weight: torch.Tensor, n: int = 16, title: str | None = None) -> Figure:
    """First-layer filters (O, C, k, k) shown as small RGB (C=3) or grey images."""
    if weight.dim() != 4:
        raise ValueError(f"plot_filters expects conv weights (O, C, k, k), got shape {tuple(weight.shape)}")
    n = min(n, weight.shape[0])
    ncols = min(n, 8)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.0 * ncols, 1.0 * nrows + 0.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            w = weight[i] if weight.shape[1] in (1, 3) else weight[i, :1]
            ax.imshow(to_display(w), cmap="gray", interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_attention_maps(
    image: torch.Tensor,
    weights: torch.Tensor,
    queries: Sequence[tuple[int, int]],
    grid: tuple[int, int],
    title: str | None = None,
) -> Figure:
    """Where each query position attends: the image, then one attention map per query, overlaid.

    Args:
        image: (C, H, W) image the attention was computed on.
        weights: (N, N) attention weights over the ``grid`` positions (N = gh·gw), rows = queries.
        queries: (row, col) grid positions to show.
        grid: (gh, gw) size of the token grid (the image is split into gh×gw cells).
    """
    gh, gw = grid
    if weights.dim() != 2 or weights.shape != (gh * gw, gh * gw):
        raise ValueError(f"plot_attention_maps expects ({gh * gw}, {gh * gw}) weights, got {tuple(weights.shape)}")
    img = to_display(image)
    h, w = img.shape[:2]
    fig, axes = plt.subplots(1, len(queries) + 1, figsize=(2.2 * (len(queries) + 1), 2.4), squeeze=False)
    axes = axes.flat
    axes[0].imshow(img, cmap="gray")
    axes[0].set_title("image", fontsize=8)
    for ax, (r, c) in zip(axes[1:], queries):
        if not (0 <= r < gh and 0 <= c < gw):
            raise ValueError(f"plot_attention_maps: query {(r, c)} is outside the {gh}×{gw} grid")
        amap = weights[r * gw + c].detach().float().cpu().reshape(gh, gw).numpy()
        ax.imshow(img, cmap="gray")
        ax.imshow(amap, cmap="inferno", alpha=0.6, extent=(0, w, h, 0), interpolation="nearest")
        ax.scatter([(c + 0.5) * w / gw], [(r + 0.5) * h / gh], marker="x", color="cyan", s=40)
        ax.set_title(f"query ({r}, {c})", fontsize=8)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
