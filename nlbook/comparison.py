"""Chapter 6 — Head-to-head: every zoo model trained on the same data, with its cost beside its accuracy.

:func:`benchmark_model` trains one model of :mod:`nlbook.zoo` with its family's recipe and measures its cost
with :func:`nlbook.bench.measure`; :func:`summarize` and :func:`format_table` turn runs into the chapter's
table (accuracy mean ± std over seeds, cost ratios to the ResNet baseline); :func:`time_to_accuracy` reads a
run's history the DAWNBench way (``benchmarks/run_all.py`` writes all of it as an :mod:`nlbook.records` record).
How each cost number is measured is :mod:`nlbook.bench`'s business.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import torch

from nlbook.bench import BenchResult, measure
from nlbook.checks import (
    check_bool,
    check_device,
    check_float,
    check_int,
    check_sequence,
    check_str,
    is_real,
)
from nlbook.data import ImageDataset, load_dataset
from nlbook.runtime import (
    Profile,
    autocast_dtype,
    pick_device,
    resolve_profile,
    seed_everything,
)
from nlbook.train import TrainConfig, fit
from nlbook.zoo import build_model, model_spec, recipe

__all__ = [
    "ModelRun",
    "benchmark_model",
    "format_table",
    "summarize",
    "time_to_accuracy",
]


# --------------------------------------------------------------------------------------------- accuracy


@dataclass
class ModelRun:
    """One zoo model trained once (one seed) under a budget: its test accuracy and its measured cost."""

    name: str
    strategy: str
    seed: int
    dataset: str
    profile: str
    test_acc: float
    train_wall_s: float
    epochs: int
    train_images: int
    test_images: int
    config: dict[str, Any]
    history: list[dict[str, Any]]
    cost: BenchResult | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cost"] = None if self.cost is None else self.cost.to_dict()
        return d


def time_to_accuracy(history: Sequence[Any], threshold: float) -> float | None:
    """Training seconds until the test accuracy first reaches ``threshold`` — DAWNBench's time-to-accuracy.

    ``history`` is a run's per-epoch record (:class:`nlbook.train.EpochStats` objects or their dicts, as in
    :attr:`ModelRun.history`). The time is the sum of the epochs' training seconds (evaluation excluded) up to
    and including the first epoch whose test accuracy is at least ``threshold``; ``None`` if none reaches it.
    """
    where = "time_to_accuracy"
    if not is_real(threshold) or not 0.0 < threshold <= 1.0:
        raise ValueError(
            f"{where}: threshold must be an accuracy in (0, 1], got {threshold!r}"
        )
    history = check_sequence(
        where, "history", history, what="epochs (EpochStats or their dicts)"
    )
    elapsed = 0.0
    for i, epoch in enumerate(history):
        stats = (
            epoch
            if isinstance(epoch, dict)
            else asdict(epoch)
            if is_dataclass(epoch)
            else {}
        )
        if "seconds" not in stats or "test_acc" not in stats:
            raise ValueError(
                f"time_to_accuracy: epoch {i} of the history has no 'seconds' and 'test_acc' "
                f"(expected nlbook.train.EpochStats or its dict), got {epoch!r}"
            )
        seconds, acc = stats["seconds"], stats["test_acc"]
        # a fraction, like the threshold: an accuracy in per cent would pass any threshold at once
        if not is_real(acc) or not 0.0 <= acc <= 1.0:
            raise ValueError(
                f"{where}: epoch {i}'s test_acc must be an accuracy fraction in [0, 1], got {acc!r}"
            )
        if not is_real(seconds) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                f"{where}: epoch {i}'s seconds must be a finite number >= 0, got {seconds!r}"
            )
        elapsed += seconds
        if acc >= threshold:
            return elapsed
    return None


def _check_benchmark_args(
    seed: Any,
    cost: Any,
    progress: Any,
    warmup: Any,
    repeats: Any,
    overrides: dict[str, Any],
) -> None:
    where = "benchmark_model"
    check_int(where, "seed", seed, low=0)
    check_bool(where, "cost", cost)
    if progress is not None:
        check_bool(where, "progress", progress)
    check_int(where, "warmup", warmup, low=0)
    check_int(where, "repeats", repeats, low=1)
    unknown = sorted(set(overrides) - set(TrainConfig.__dataclass_fields__))
    if unknown:  # found now, not by TrainConfig after the data has loaded
        raise TypeError(
            f"{where}: unknown TrainConfig field(s) {unknown} in the overrides; fields are "
            f"{sorted(TrainConfig.__dataclass_fields__)}"
        )


def _training_device(device: Any) -> torch.device:
    """``device`` checked (a name torch cannot read, hardware this machine lacks), or the best one here."""
    dev = (
        check_device("benchmark_model", "device", device)
        if device is not None
        else pick_device()
    )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"benchmark_model: cannot train on device {str(dev)!r}; use 'cpu', 'cuda' or 'mps'"
        )
    return dev


def benchmark_model(
    name: str,
    data: ImageDataset | str | None = None,
    *,
    profile: Profile | str | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    cost: bool = True,
    warmup: int = 2,
    repeats: int = 5,
    progress: bool | None = None,
    **overrides: Any,
) -> ModelRun:
    """Build zoo model ``name``, train it with its recipe under ``profile``'s budget,
    and measure its cost.

    Args:
        name: a name from :func:`nlbook.zoo.model_names`.
        data: an :class:`nlbook.data.ImageDataset`, or a dataset name, or ``None``
        (``$NLBOOK_DATASET``).
        profile: a :class:`~nlbook.runtime.Profile` or its name (default:
        ``$NLBOOK_PROFILE`` / device).
        device: default: :func:`nlbook.runtime.pick_device`.
        seed: seeds the weights' initialisation, the data order and the augmentation.
        cost: also :func:`measure` the trained model (batch = the recipe's batch size;
        the same autocast
            precision as training). Cost does not depend on the seed: pass ``False``
            for repeated seeds.
        warmup, repeats: passed to :func:`measure`.
        **overrides: fields of the recipe's :class:`~nlbook.train.TrainConfig` (e.g.
        ``epochs=1``).
    """
    spec = model_spec(name)
    # every argument is checked before the data loads: a bad warmup found only when
    # the trained model is measured would throw the training away
    _check_benchmark_args(seed, cost, progress, warmup, repeats, overrides)
    prof = resolve_profile(profile)
    dev = _training_device(device)
    if not (data is None or isinstance(data, str | ImageDataset)):
        raise TypeError(
            f"benchmark_model: data must be an ImageDataset, a dataset name or None, "
            f"got {type(data)}"
        )
    config = recipe(name, prof, seed=seed, **overrides)
    if data is None or isinstance(data, str):
        data = load_dataset(data)

    seed_everything(seed)  # the initial weights depend on the seed
    model = build_model(
        name,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=data.image_size,
        profile=prof,
    )
    record = fit(model, data, config, device=dev, name=name, progress=progress)
    n_train = min(
        data.train_images.shape[0], config.max_train or data.train_images.shape[0]
    )
    n_test = min(
        data.test_images.shape[0], config.max_test or data.test_images.shape[0]
    )
    result = None
    if cost:
        shape = (config.batch_size, data.in_channels, data.image_size, data.image_size)
        result = measure(
            model,
            shape,
            device=dev,
            warmup=warmup,
            repeats=repeats,
            amp_dtype=autocast_dtype(dev, config.amp, config.amp_dtype),
            name=name,
        )
    return ModelRun(
        name=name,
        strategy=spec.strategy,
        seed=seed,
        dataset=data.name,
        profile=prof.name,
        test_acc=record.test_acc,
        train_wall_s=record.wall_time_s,
        epochs=config.epochs,
        train_images=n_train,
        test_images=n_test,
        config=record.config,
        history=[asdict(e) for e in record.history],
        cost=result,
    )


# --------------------------------------------------------------------------------------------- tables


def summarize(items: Sequence[BenchResult | ModelRun]) -> list[dict[str, Any]]:
    """One row per model: its cost and, for :class:`ModelRun` items, accuracy mean / std over seeds.

    Rows come in order of first appearance. The cost of a model is taken from its first item that has
    one (cost does not depend on the seed). ``acc_std`` is the sample standard deviation (``None`` for
    a single seed).
    """
    items = check_sequence(
        "summarize", "items", items, what="BenchResult or ModelRun items"
    )
    rows: dict[str, dict[str, Any]] = {}
    accs: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {}
    for item in items:
        if isinstance(item, BenchResult):
            name, result = item.name, item
        elif isinstance(item, ModelRun):
            name, result = item.name, item.cost
            # a fraction as everywhere in nlbook: a percentage would be shown as 8500 %
            if not is_real(item.test_acc) or not 0.0 <= item.test_acc <= 1.0:
                raise ValueError(
                    f"summarize: {item.name!r} has test_acc {item.test_acc!r}; expected an accuracy fraction "
                    "in [0, 1]"
                )
            check_float(
                "summarize", f"{item.name!r}'s train_wall_s", item.train_wall_s, low=0.0
            )
            accs.setdefault(name, []).append(item.test_acc)
            walls.setdefault(name, []).append(item.train_wall_s)
        else:
            raise TypeError(
                f"summarize expects BenchResult or ModelRun items, got {type(item).__name__}"
            )
        row = rows.setdefault(name, {"model": name})
        if isinstance(item, ModelRun):
            row.setdefault("strategy", item.strategy)
        if result is not None and "params" not in row:
            row.update(
                params=result.params,
                flops_forward=result.flops_forward,
                infer_images_per_s=result.infer_images_per_s,
                train_images_per_s=result.train_images_per_s,
                train_peak_bytes=result.train_peak_bytes,
                infer_peak_bytes=result.infer_peak_bytes,
            )
    for name, values in accs.items():
        rows[name].update(
            acc_mean=statistics.fmean(values),
            acc_std=statistics.stdev(values) if len(values) > 1 else None,
            acc_min=min(values),
            acc_max=max(values),
            n_seeds=len(values),
            train_wall_s=statistics.fmean(walls[name]),
        )
    return list(rows.values())


_COLUMNS: tuple[tuple[str, str, float, str, bool], ...] = (
    # (key, header, scale, format, ratio to baseline?)
    ("params", "params (M)", 1e-6, "{:.3f}", True),
    ("flops_forward", "GFLOPs/img", 1e-9, "{:.3f}", True),
    ("infer_images_per_s", "infer img/s", 1.0, "{:,.0f}", True),
    ("train_images_per_s", "train img/s", 1.0, "{:,.0f}", True),
    ("train_peak_bytes", "train MiB", 2.0**-20, "{:.1f}", True),
)


def format_table(
    rows: Sequence[dict[str, Any]],
    *,
    baseline: str | None = "resnet",
    title: str | None = None,
) -> str:
    """A plain-text table of :func:`summarize` rows; ``×`` columns are ratios to the ``baseline`` row.

    ``baseline=None`` leaves the ratio columns out; a baseline that is not among the rows is a ``ValueError``.

    Ratios are value / baseline for every column: above 1 means more parameters, FLOPs or memory — and
    *faster* for the images/s columns. Accuracy, when present, is ``mean ± std`` in per cent over seeds.
    """
    where = "format_table"
    rows = check_sequence(where, "rows", rows, what="row dicts (from summarize)")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise TypeError(
                f"{where}: rows[{i}] must be a dict (a row of summarize), got {type(r).__name__}"
            )
        for key in (*(c[0] for c in _COLUMNS), "acc_mean", "acc_std", "train_wall_s"):
            value = r.get(key)
            if value is not None and not is_real(value):
                raise TypeError(
                    f"{where}: rows[{i}][{key!r}] must be a number or None, got {value!r}"
                )
    check_str(where, "baseline", baseline, optional=True)
    check_str(where, "title", title, optional=True, empty=True)
    base = (
        next((r for r in rows if r.get("model") == baseline), None)
        if baseline
        else None
    )
    if baseline and base is None:
        names = [r.get("model") for r in rows]
        raise ValueError(
            f"format_table: baseline {baseline!r} is not among the rows {names}; pass baseline=None"
        )
    headers = ["model"]
    if any("strategy" in r for r in rows):
        headers.append("strategy")
    for _, header, _, _, ratio in _COLUMNS:
        headers.append(header)
        if ratio and base is not None:
            headers.append("×")
    has_acc = any("acc_mean" in r for r in rows)
    if has_acc:
        headers += ["test acc (%)", "seeds", "train s"]
    lines = []
    for r in rows:
        cells = [str(r.get("model", ""))]
        if "strategy" in headers:
            cells.append(str(r.get("strategy", "")))
        for key, _, scale, fmt, ratio in _COLUMNS:
            value = r.get(key)
            cells.append("—" if value is None else fmt.format(value * scale))
            if ratio and base is not None:
                ref = base.get(key)
                ok = value is not None and ref not in (None, 0)
                cells.append(f"{value / ref:.2f}" if ok else "—")
        if has_acc:
            mean, std = r.get("acc_mean"), r.get("acc_std")
            acc = (
                "—"
                if mean is None
                else f"{100 * mean:.1f}"
                + ("" if std is None else f" ± {100 * std:.1f}")
            )
            wall = r.get("train_wall_s")
            cells += [
                acc,
                str(r.get("n_seeds", "—")),
                "—" if wall is None else f"{wall:.1f}",
            ]
        lines.append(cells)
    widths = [
        max(len(h), *(len(c[i]) for c in lines)) if lines else len(h)
        for i, h in enumerate(headers)
    ]
    out = [title] if title else []
    out.append(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    out.append("  ".join("-" * w for w in widths))
    for cells in lines:
        out.append(
            "  ".join(
                c.ljust(w) if i <= 1 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return "\n".join(out)
