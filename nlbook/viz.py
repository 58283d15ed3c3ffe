"""Every chapter — figures the chapters share: image grids, training curves, feature maps, filters and attention maps.

Every function returns the matplotlib ``Figure`` (and draws nothing else), so a notebook cell ends with
the call and the figure is shown once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from nlbook.checks import (
    check_bool,
    check_image,
    check_int,
    check_sequence,
    check_str,
    check_tensor,
    is_int,
    is_real,
)
from nlbook.records import summarize, validate_record
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
    """(C, H, W) tensor with 1 (grey) or 3 (RGB) channels, uint8 or real → (H, W, 3) or (H, W) array in [0, 1]
    for ``imshow``.

    Only PyTorch's (C, H, W) layout is accepted: an (H, W, C) image (numpy's, PIL's) is refused with the permute
    that fixes it — read as (C, H, W) it would come back as a wrong picture.
    """
    check_image(image, "to_display", channels=(1, 3))
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
    """A grid of images (N, C, H, W) with 1 or 3 channels, optionally captioned with their labels — or with the
    class names ``classes[label]``."""
    where = "show_images"
    check_tensor(where, "images", images, dims=4, kind="real", shape="(N, C, H, W)")
    n = images.shape[0]
    if n == 0:
        raise ValueError(
            f"{where}: images is an empty batch, shape {tuple(images.shape)}"
        )
    if images.shape[1] not in (1, 3):
        hint = (
            "; it looks like a channels-last (N, H, W, C) batch: pass images.permute(0, 3, 1, 2)"
            if images.shape[-1] in (1, 3)
            else ""
        )
        raise ValueError(
            f"{where}: images must be (N, C, H, W) with C = 1 or 3, got shape {tuple(images.shape)}{hint}"
        )
    ncols = check_int(where, "ncols", ncols, low=1)
    if not is_real(size) or not 0 < size < 100:
        raise ValueError(
            f"{where}: size (inches per image) must be a number in (0, 100), got {size!r}"
        )
    check_str(where, "title", title, optional=True, empty=True)
    if labels is not None:
        if isinstance(labels, torch.Tensor):
            check_tensor(where, "labels", labels, dims=1, kind="integer", shape="(N,)")
            labels = labels.tolist()
        labels = check_sequence(where, "labels", labels, what="integer labels")
        if len(labels) != n:
            raise ValueError(f"{where}: got {len(labels)} labels for {n} images")
        if not all(is_int(lab) for lab in labels):
            raise TypeError(f"{where}: labels must be integers, got {labels[:8]!r}")
    if classes is not None:
        classes = check_sequence(where, "classes", classes, what="class names")
        if labels is None:
            raise ValueError(f"{where}: classes name the labels; pass labels too")
        bad = [lab for lab in labels if not 0 <= lab < len(classes)]
        if bad:
            raise ValueError(
                f"{where}: label {bad[0]} has no name among the {len(classes)} classes (labels index classes)"
            )
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
    """Training loss and test accuracy per epoch for one or more runs (one :class:`~nlbook.train.TrainRecord`,
    a list of them, or a dict name → record)."""
    where = "plot_history"
    expected = "TrainRecords (one, a list, or a dict name -> TrainRecord)"
    if isinstance(records, TrainRecord):
        records = [records]
    if isinstance(records, Mapping):
        records = dict(records)
    else:
        records = check_sequence(where, "records", records, what="TrainRecords")
        if not all(isinstance(r, TrainRecord) for r in records):
            raise TypeError(f"{where} expects {expected}")
        records = {r.name: r for r in records}
    if not records:
        raise ValueError(f"{where}: no records to plot; pass {expected}")
    for name, rec in records.items():
        if not isinstance(rec, TrainRecord):
            raise TypeError(
                f"{where}: records[{name!r}] must be a TrainRecord, got {type(rec).__name__}"
            )
    check_str(where, "title", title, optional=True, empty=True)
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
    where = "plot_feature_maps"
    check_image(fmap, where, "fmap", what="map")
    n = min(check_int(where, "n", n, low=1), fmap.shape[0])
    check_str(where, "title", title, optional=True, empty=True)
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
    where = "plot_filters"
    check_tensor(
        where,
        "weight",
        weight,
        dims=4,
        kind="real",
        shape="of conv weights (O, C, k, k)",
    )
    if weight.numel() == 0:
        raise ValueError(f"{where}: weight is empty, shape {tuple(weight.shape)}")
    n = min(check_int(where, "n", n, low=1), weight.shape[0])
    check_str(where, "title", title, optional=True, empty=True)
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
    where = "plot_attention_maps"
    if (
        not isinstance(grid, Sequence)
        or isinstance(grid, str)
        or len(grid) != 2
        or not all(is_int(g) and g >= 1 for g in grid)
    ):
        raise ValueError(
            f"{where}: grid must be a (rows, cols) pair of positive ints, got {grid!r}"
        )
    gh, gw = int(grid[0]), int(grid[1])
    check_tensor(where, "weights", weights, dims=2, kind="float", shape="(N, N)")
    if weights.shape != (gh * gw, gh * gw):
        raise ValueError(
            f"plot_attention_maps expects ({gh * gw}, {gh * gw}) weights, got {tuple(weights.shape)}"
        )
    queries = check_sequence(where, "queries", queries, what="(row, col) pairs")
    for query in queries:
        if (
            not isinstance(query, Sequence)
            or len(query) != 2
            or not all(is_int(v) for v in query)
        ):
            raise ValueError(
                f"{where}: queries must be (row, col) pairs of ints, e.g. [(0, 0), (3, 5)], got {query!r}"
            )
    check_str(where, "title", title, optional=True, empty=True)
    img = to_display(image)
    h, w = img.shape[:2]
    fig, axes = plt.subplots(
        1, len(queries) + 1, figsize=(2.2 * (len(queries) + 1), 2.4), squeeze=False
    )
    axes = axes.flat
    axes[0].imshow(img, cmap="gray")
    axes[0].set_title("image", fontsize=8)
    for ax, (r, c) in zip(axes[1:], queries):
        r, c = int(r), int(c)
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


def _check_record(record: object, where: str) -> None:
    """A loaded record (not its name or path) that follows the record format — checked before anything is drawn,
    so that a missing field is named instead of failing as a KeyError half-way through a figure."""
    if not isinstance(record, Mapping) or not isinstance(record.get("arms"), list):
        got = (
            repr(record)
            if isinstance(record, str | os.PathLike)
            else type(record).__name__
        )
        raise TypeError(
            f"{where}: record must be a loaded record (a dict with 'arms', from nlbook.records.load_record), "
            f"got {got}"
        )
    validate_record(record, f"{where}: record")


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
    where = "plot_record_curves"
    _check_record(record, where)
    if arms is not None:
        arms = check_sequence(where, "arms", arms, what="arm names")
    check_str(where, "metric", metric)
    check_str(where, "title", title, optional=True, empty=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for arm in _record_arms(record, arms):
        runs = arm["runs"]
        if any(not r["history"] for r in runs):
            raise ValueError(
                f"{where}: arm {arm['name']!r} has a run with no epochs in its history; nothing to draw"
            )
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
    where = "plot_record_sweep"
    _check_record(record, where)
    if not isinstance(metric, str) or metric not in ("final_test_acc", "best_test_acc"):
        raise ValueError(
            f"plot_record_sweep: metric must be 'final_test_acc' or 'best_test_acc', got {metric!r}"
        )
    check_str(where, "xlabel", xlabel, empty=True)
    logx = check_bool(where, "logx", logx)
    check_str(where, "title", title, optional=True, empty=True)
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
