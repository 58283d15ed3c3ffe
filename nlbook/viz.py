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

from nlbook.records import summarize
from nlbook.train import TrainRecord

__all__ = [
    "plot_attention_maps",
    "plot_feature_maps",
    "plot_filters",
    "plot_history",
    "plot_record_curves",
    "plot_record_sweep",
    "show_images",
    "to_display",
]


def to_display(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 or float tensor → (H, W, C) or (H, W) array in [0, 1] for ``imshow``."""
    if image.dim() != 3:
        raise ValueError(
            f"to_display expects one (C, H, W) image, got shape {tuple(image.shape)}"
        )
    x = image.detach().float().cpu()
    x = (
        x / 255.0
        if image.dtype == torch.uint8
        else (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    )
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
        raise ValueError(
            f"show_images expects (N, C, H, W), got shape {tuple(images.shape)}"
        )
    n = images.shape[0]
    if labels is not None and len(labels) != n:
        raise ValueError(f"show_images: got {len(labels)} labels for {n} images")
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False
    )
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


def plot_history(
    records: Mapping[str, TrainRecord] | Sequence[TrainRecord], title: str | None = None
) -> Figure:
    """Training loss and test accuracy per epoch for one or more runs."""
    if not isinstance(records, Mapping):
        records = list(records)
        if not all(isinstance(r, TrainRecord) for r in records):
            raise TypeError(
                "plot_history expects TrainRecords (a list, or a dict name -> TrainRecord)"
            )
        records = {r.name: r for r in records}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, rec in records.items():
        epochs = [e.epoch for e in rec.history]
        ax_loss.plot(
            epochs, [e.train_loss for e in rec.history], marker="o", label=name
        )
        ax_acc.plot(
            epochs, [100 * e.test_acc for e in rec.history], marker="o", label=name
        )
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


def plot_feature_maps(
    fmap: torch.Tensor, n: int = 8, title: str | None = None
) -> Figure:
    """The first ``n`` channels of one (C, H, W) feature map."""
    if fmap.dim() != 3:
        raise ValueError(
            f"plot_feature_maps expects one (C, H, W) map, got shape {tuple(fmap.shape)}"
        )
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
        raise ValueError(
            f"plot_filters expects conv weights (O, C, k, k), got shape {tuple(weight.shape)}"
        )
    n = min(n, weight.shape[0])
    ncols = min(n, 8)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.0 * ncols, 1.0 * nrows + 0.3), squeeze=False
    )
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
        raise ValueError(
            f"plot_attention_maps expects ({gh * gw}, {gh * gw}) weights, got {tuple(weights.shape)}"
        )
    img = to_display(image)
    h, w = img.shape[:2]
    fig, axes = plt.subplots(
        1, len(queries) + 1, figsize=(2.2 * (len(queries) + 1), 2.4), squeeze=False
    )
    axes = axes.flat
    axes[0].imshow(img, cmap="gray")
    axes[0].set_title("image", fontsize=8)
    for ax, (r, c) in zip(axes[1:], queries):
        if not (0 <= r < gh and 0 <= c < gw):
            raise ValueError(
                f"plot_attention_maps: query {(r, c)} is outside the {gh}×{gw} grid"
            )
        amap = weights[r * gw + c].detach().float().cpu().reshape(gh, gw).numpy()
        ax.imshow(img, cmap="gray")
        ax.imshow(
            amap,
            cmap="inferno",
            alpha=0.6,
            extent=(0, w, h, 0),
            interpolation="nearest",
        )
        ax.scatter(
            [(c + 0.5) * w / gw], [(r + 0.5) * h / gh], marker="x", color="cyan", s=40
        )
        ax.set_title(f"query ({r}, {c})", fontsize=8)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- experiment records


def _record_arms(record: Mapping, arms: Sequence[str] | None) -> list[Mapping]:
    """The arms to draw: those named in ``arms`` (default: all), one per name — at the largest ``x`` in a sweep."""
    chosen: dict[str, Mapping] = {}
    for arm in record["arms"]:
        if arms is not None and arm["name"] not in arms:
            continue
        best = chosen.get(arm["name"])
        if best is None or (
            arm["x"] is not None and best["x"] is not None and arm["x"] > best["x"]
        ):
            chosen[arm["name"]] = arm
    missing = sorted(set(arms or ()) - set(chosen))
    if missing:
        have = ", ".join(dict.fromkeys(a["name"] for a in record["arms"]))
        raise ValueError(
            f"plot_record_curves: arms {missing} are not in the record; it has {have}"
        )
    return list(chosen.values())


def plot_record_curves(
    record: Mapping,
    arms: Sequence[str] | None = None,
    metric: str = "test_acc",
    title: str | None = None,
) -> Figure:
    """Per-epoch curves of an experiment record (:mod:`nlbook.records`): the seeds' mean, and their range shaded.

    ``metric`` is a history field (``test_acc``, ``train_loss``, ...). In a sweep each arm is drawn at its
    largest ``x`` (e.g. the full training set). Accuracies are shown in per cent.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for arm in _record_arms(record, arms):
        runs = arm["runs"]
        if metric not in runs[0]["history"][0]:
            raise ValueError(
                f"plot_record_curves: history has no field {metric!r}; fields: {list(runs[0]['history'][0])}"
            )
        n = min(len(r["history"]) for r in runs)
        values = np.array(
            [
                [np.nan if e[metric] is None else e[metric] for e in r["history"][:n]]
                for r in runs
            ]
        )
        values = 100 * values if metric.endswith("acc") else values
        epochs = np.arange(1, n + 1)
        label = f"{arm['label']} ({len(runs)} seeds)"
        (line,) = ax.plot(epochs, np.nanmean(values, axis=0), label=label)
        ax.fill_between(
            epochs,
            np.nanmin(values, axis=0),
            np.nanmax(values, axis=0),
            color=line.get_color(),
            alpha=0.2,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " ") + (" (%)" if metric.endswith("acc") else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        title or f"{record['experiment']}: mean over seeds, range shaded", fontsize=10
    )
    fig.tight_layout()
    return fig


def plot_record_sweep(
    record: Mapping,
    metric: str = "final_test_acc",
    xlabel: str = "training images",
    logx: bool = True,
    title: str | None = None,
) -> Figure:
    """A swept record (arms with ``x``): ``metric`` against ``x`` per arm, mean ± standard deviation, every seed a dot.

    ``metric`` is ``final_test_acc`` or ``best_test_acc`` (shown in per cent).
    """
    if metric not in ("final_test_acc", "best_test_acc"):
        raise ValueError(
            f"plot_record_sweep: metric must be 'final_test_acc' or 'best_test_acc', got {metric!r}"
        )
    swept = [s for s in summarize(record) if s.x is not None]
    if not swept:
        raise ValueError(
            f"plot_record_sweep: record {record.get('experiment')!r} has no swept arms (x is None)"
        )
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name in dict.fromkeys(s.name for s in swept):
        points = sorted((s for s in swept if s.name == name), key=lambda s: s.x)
        xs = np.array([s.x for s in points], dtype=float)
        stats = [getattr(s, metric) for s in points]
        mean, std = (
            100 * np.array([st.mean for st in stats]),
            100 * np.array([st.std for st in stats]),
        )
        bar = ax.errorbar(
            xs,
            mean,
            yerr=std,
            marker="o",
            capsize=3,
            label=f"{points[0].label} (mean ± std)",
        )
        for arm in record["arms"]:
            if arm["name"] == name and arm["x"] is not None:
                seeds = [100 * r[metric] for r in arm["runs"]]
                ax.scatter(
                    [arm["x"]] * len(seeds),
                    seeds,
                    s=10,
                    color=bar.lines[0].get_color(),
                    alpha=0.5,
                )
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(
            sorted({s.x for s in swept}),
            [f"{s:g}" for s in sorted({s.x for s in swept})],
        )
        # a log axis adds minor tick labels (e.g. 3x10^2) that collide with the swept values
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric.replace("_", " ") + " (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        title
        or f"{record['experiment']}: {len(record['arms'][0]['runs'])} seeds per point",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
