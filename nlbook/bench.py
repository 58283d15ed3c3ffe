"""Chapter 6 — Head-to-head: what a model costs, measured the same way for every model.

:func:`measure` is the one function the comparison chapter and the ``benchmarks/`` scripts use for the
*cost* of a model; :func:`benchmark_model` adds what it *buys* (test accuracy after a training budget).
How each number is obtained — so that the table can be trusted, and reproduced:

* **Parameters** — every parameter tensor's ``numel`` (trainable and all).
* **FLOPs** — counted by :class:`torch.utils.flop_counter.FlopCounterMode` while the model runs: 2 FLOPs per
  multiply–add of matrix products, convolutions and (fused) attention, the convention of the ResNet and
  ViT papers' "FLOPs" ×2. Element-wise operations, normalisation, softmax and pooling are *not* counted
  (they are memory-bound, and a few per cent of the total in these models). Reported per image, for the
  forward pass (``flops_forward``) and for a training step's forward + backward (``flops_train``, about
  3× the forward). PyTorch's counter has no formula for the fused CPU attention kernel; we add one (the
  same formula it uses for the CUDA kernels), so that attention is counted on every device.
* **Images/s** — ``warmup`` untimed steps, then ``repeats`` timed steps of one batch each (with
  ``torch.cuda.synchronize`` before reading the clock on CUDA, because kernels run asynchronously); the
  **median** step time gives images/s. Inference: ``eval()`` mode under ``torch.inference_mode``.
  Training: forward, cross-entropy, backward and an SGD step on a copy of the model (the caller's model
  and its BatchNorm statistics are left untouched).
* **Peak memory** — ``resident`` bytes counted from the tensors that exist before a step (parameters,
  buffers, the input batch and, for training, the optimiser state) plus the **step's own peak** above what
  was allocated when it started (activations, saved tensors, gradients, temporaries):

  - on CUDA from the caching allocator's statistics (``torch.cuda.reset_peak_memory_stats``, then
    ``max_memory_allocated`` minus ``memory_allocated`` at the start of the step);
  - on CPU from the allocation events that :mod:`torch.profiler` records with ``profile_memory=True``: the
    peak of the running sum of bytes allocated minus bytes freed through PyTorch's CPU allocator during one
    step. This counts every tensor (and kernel workspace) the allocator hands out, not the process's RSS:
    Python objects, the allocator's own slack and the code are excluded;
  - on other devices (MPS) it is not measured (``None``).
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

from nlbook.runtime import device_name

__all__ = [
    "BenchResult",
    "ModelRun",
    "RECORD_FORMAT",
    "benchmark_model",
    "count_flops",
    "describe_record",
    "format_table",
    "measure",
    "peak_step_memory",
    "recorded_runs",
    "summarize",
    "summarize_runs",
    "time_to_accuracy",
]


# --------------------------------------------------------------------------------------------- FLOPs


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_shape, query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kw) -> int:
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


def _conv_backward_flops(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
    **kwargs: Any,
) -> int:
    # Every multiply-add of the forward convolution appears once in grad_input and once in grad_weight, so
    # each costs exactly the forward count. (torch's own formula drops the groups from the grad_weight term
    # and overcounts depthwise convolutions by a factor of the channel count.)
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas that torch's counter lacks or gets wrong.

    * the fused CPU attention kernel (forward and backward): without it a ViT's attention would count as
      zero FLOPs on CPU but not on CUDA;
    * the convolution backward, whose weight-gradient term ignores ``groups`` in torch's formula.
    """
    aten = torch.ops.aten
    extra: dict[Any, Callable[..., int]] = {aten.convolution_backward: _conv_backward_flops}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        extra[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        extra[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flops
    return extra


def count_flops(model: nn.Module, x: torch.Tensor, *, backward: bool = False) -> int:
    """FLOPs of one forward pass of ``model`` on the batch ``x`` (and of the backward pass, if ``backward``).

    Counted with :class:`~torch.utils.flop_counter.FlopCounterMode` (2 per multiply–add; matrix products,
    convolutions and attention only — see the module docstring). The total is for the whole batch.
    With ``backward=True`` the model is run in training mode on a copy, so the caller's model (BatchNorm
    running statistics, gradients) is not changed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_flops expects an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"count_flops expects a tensor batch, got {type(x).__name__}")
    counter = FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas())
    if not backward:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), counter:
                model(x)
        finally:
            model.train(was_training)
        return counter.get_total_flops()
    twin = copy.deepcopy(model).train()
    with counter:
        twin(x).float().sum().backward()
    return counter.get_total_flops()


# --------------------------------------------------------------------------------------------- memory


def _tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes of distinct storages among ``tensors`` (views and tied weights counted once)."""
    seen: dict[tuple[str, int], int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            storage = t.untyped_storage()
            seen[(str(t.device), storage.data_ptr())] = storage.nbytes()
    return sum(seen.values())


def _optimizer_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def _cpu_allocation_peak(prof: torch.profiler.profile) -> int:
    """Peak of the running sum of allocations minus frees recorded by a memory-profiling run."""
    from torch._C._profiler import _EventType

    events: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.typed[0] == _EventType.Allocation and str(node.typed[1].device) == "cpu":
            events.append((node.start_time_ns, node.typed[1].alloc_size))
        stack.extend(node.children)
    current = peak = 0
    for _, size in sorted(events):
        current += size
        peak = max(peak, current)
    return peak


def peak_step_memory(step: Callable[[], Any], device: torch.device) -> int | None:
    """Peak bytes allocated by one call of ``step`` above what was allocated when it started.

    CUDA: the caching allocator's peak statistic. CPU: allocation events recorded by
    :mod:`torch.profiler` (``profile_memory=True``). Other devices: ``None`` (not measured).
    """
    if not callable(step):
        raise TypeError(f"peak_step_memory expects a callable step (no arguments), got {type(step).__name__}")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    if device.type == "cpu":
        from torch.profiler import ProfilerActivity, profile

        # libkineto logs every profiler start/stop to stderr; level 6 silences it (unless the user chose a level).
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        return _cpu_allocation_peak(prof)
    return None


def _memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return "resident tensors + CUDA allocator peak of one step (torch.cuda.max_memory_allocated)"
    if device.type == "cpu":
        return "resident tensors + CPU allocator peak of one step (torch.profiler, profile_memory=True)"
    return f"not measured on {device.type}"


# --------------------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _median_seconds(step: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------------------------- measure


@dataclass(frozen=True)
class BenchResult:
    """The cost of one model on one device, and how it was measured.

    FLOPs are per image; memory is in bytes (``None`` where not measured); ``*_images_per_s`` come from the
    median of ``repeats`` timed steps of ``batch_size`` images. Training fields are ``None`` when
    :func:`measure` ran with ``train=False``.
    """

    name: str
    device: str
    hardware: str
    batch_size: int
    image_shape: tuple[int, ...]
    params: int
    trainable_params: int
    flops_forward: int
    flops_train: int | None
    infer_images_per_s: float
    train_images_per_s: float | None
    infer_peak_bytes: int | None
    train_peak_bytes: int | None
    memory_method: str
    amp_dtype: str | None
    warmup: int
    repeats: int
    torch_version: str = field(default=torch.__version__)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists)."""
        d = asdict(self)
        d["image_shape"] = list(self.image_shape)
        return d


def _sample_batch(sample: torch.Tensor | Sequence[int], device: torch.device, seed: int) -> torch.Tensor:
    if isinstance(sample, torch.Tensor):
        if sample.dim() != 4 or not sample.is_floating_point():
            raise ValueError(
                f"measure: a sample batch must be a float tensor (B, C, H, W), got {sample.dtype} {tuple(sample.shape)}"
            )
        return sample.to(device)
    shape = tuple(sample)
    if len(shape) != 4 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"measure: input_shape must be four positive ints (B, C, H, W), got {sample!r}")
    # Random numbers from a seeded CPU generator, then moved: the same batch on every device.
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device)


def measure(
    model: nn.Module,
    sample: torch.Tensor | Sequence[int],
    *,
    device: torch.device | str | None = None,
    train: bool = True,
    warmup: int = 2,
    repeats: int = 5,
    memory: bool = True,
    amp_dtype: torch.dtype | None = None,
    name: str | None = None,
    seed: int = 0,
) -> BenchResult:
    """Parameters, FLOPs, images/s and peak memory of ``model`` (see the module docstring for the methods).

    Args:
        model: the model; it is moved to ``device`` and left in the mode it was in (training is timed on
            a copy, so its weights and BatchNorm statistics do not change).
        sample: a float batch ``(B, C, H, W)``, or its shape (then a seeded random batch is used).
        device: where to measure; default: the model's device.
        train: also time a training step (forward, loss, backward, SGD step) and its memory.
        warmup, repeats: untimed and timed steps; the median timed step gives images/s.
        memory: measure peak memory (on CPU this runs one extra profiled step per mode).
        amp_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16`` on a GPU), as
            training with mixed precision does; ``None``: full float32.
        name: label for the result (default: the class name).
        seed: seed of the random batch (when ``sample`` is a shape).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"measure expects an nn.Module, got {type(model).__name__}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"measure: warmup must be an int >= 0, got {warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"measure: repeats must be an int >= 1, got {repeats!r}")
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "meta":
        raise ValueError("measure: cannot time a model on the meta device; pass device='cpu' or 'cuda'")
    x = _sample_batch(sample, device, seed)
    model = model.to(device)
    batch = x.shape[0]
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    was_training = model.training

    # FLOPs on two images (FLOPs are linear in the batch; two keeps BatchNorm's training mode well defined).
    few = x[: min(batch, 2)]
    flops_forward = count_flops(model, few) // few.shape[0]
    flops_train = count_flops(model, few, backward=True) // few.shape[0] if train else None

    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    resident = _tensor_bytes([*model.parameters(), *model.buffers(), x])

    # --- inference
    model.eval()
    try:

        def infer_step() -> torch.Tensor:
            with torch.inference_mode(), autocast:
                return model(x)

        infer_s = _median_seconds(infer_step, device, warmup, repeats)
        infer_peak = peak_step_memory(infer_step, device) if memory else None
    finally:
        model.train(was_training)
    infer_bytes = None if infer_peak is None else resident + infer_peak

    # --- training (on a copy: weights, BatchNorm statistics and .grad of the caller's model stay as they were)
    train_s = train_bytes = None
    if train:
        twin = copy.deepcopy(model).train()
        opt = torch.optim.SGD(twin.parameters(), lr=1e-3, momentum=0.9)
        with torch.no_grad():
            num_classes = twin(few).shape[-1]
        labels = torch.arange(batch, device=device) % num_classes

        def train_step() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = F.cross_entropy(twin(x).float(), labels)
            loss.backward()
            opt.step()

        train_s = _median_seconds(train_step, device, max(warmup, 1), repeats)  # >= 1: creates optimiser state
        if memory:
            opt.zero_grad(set_to_none=True)
            resident_train = _tensor_bytes([*twin.parameters(), *twin.buffers(), x, *_optimizer_tensors(opt)])
            peak = peak_step_memory(train_step, device)
            train_bytes = None if peak is None else resident_train + peak
        del twin, opt

    return BenchResult(
        name=name or type(model).__name__,
        device=str(device),
        hardware=device_name(device),
        batch_size=batch,
        image_shape=tuple(x.shape[1:]),
        params=params,
        trainable_params=trainable,
        flops_forward=flops_forward,
        flops_train=flops_train,
        infer_images_per_s=batch / infer_s,
        train_images_per_s=None if train_s is None else batch / train_s,
        infer_peak_bytes=infer_bytes,
        train_peak_bytes=train_bytes,
        memory_method=_memory_method(device) if memory else "not measured",
        amp_dtype=None if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        warmup=warmup,
        repeats=repeats,
    )


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
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold <= 1.0:
        raise ValueError(f"time_to_accuracy: threshold must be an accuracy in (0, 1], got {threshold!r}")
    elapsed = 0.0
    for i, epoch in enumerate(history):
        stats = epoch if isinstance(epoch, dict) else asdict(epoch) if is_dataclass(epoch) else {}
        if "seconds" not in stats or "test_acc" not in stats:
            raise ValueError(
                f"time_to_accuracy: epoch {i} of the history has no 'seconds' and 'test_acc' "
                f"(expected nlbook.train.EpochStats or its dict), got {epoch!r}"
            )
        elapsed += stats["seconds"]
        if stats["test_acc"] >= threshold:
            return elapsed
    return None


def _amp_dtype(device: torch.device, config: Any) -> torch.dtype | None:
    """The autocast dtype :func:`nlbook.train.fit` trains with, so that timing uses the same precision."""
    enabled = config.amp if config.amp is not None else device.type == "cuda"
    if not enabled:
        return None
    if config.amp_dtype is not None:
        return config.amp_dtype
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def benchmark_model(
    name: str,
    data: Any = None,
    *,
    profile: Any = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    cost: bool = True,
    warmup: int = 2,
    repeats: int = 5,
    progress: bool | None = None,
    **overrides: Any,
) -> ModelRun:
    """Build zoo model ``name``, train it with its recipe under ``profile``'s budget, and measure its cost.

    Args:
        name: a name from :func:`nlbook.zoo.model_names`.
        data: an :class:`nlbook.data.ImageDataset`, or a dataset name, or ``None`` (``$NLBOOK_DATASET``).
        profile: a :class:`~nlbook.runtime.Profile` or its name (default: ``$NLBOOK_PROFILE`` / device).
        device: default: :func:`nlbook.runtime.pick_device`.
        seed: seeds the weights' initialisation, the data order and the augmentation.
        cost: also :func:`measure` the trained model (batch = the recipe's batch size; the same autocast
            precision as training). Cost does not depend on the seed: pass ``False`` for repeated seeds.
        warmup, repeats: passed to :func:`measure`.
        **overrides: fields of the recipe's :class:`~nlbook.train.TrainConfig` (e.g. ``epochs=1``).
    """
    from nlbook.data import ImageDataset, load_dataset
    from nlbook.runtime import pick_device, seed_everything
    from nlbook.train import fit
    from nlbook.zoo import build_model, model_spec, recipe, resolve_profile

    spec = model_spec(name)
    prof = resolve_profile(profile)
    dev = torch.device(device) if device is not None else pick_device()
    if data is None or isinstance(data, str):
        data = load_dataset(data)
    if not isinstance(data, ImageDataset):
        raise TypeError(f"benchmark_model: data must be an ImageDataset, a dataset name or None, got {type(data)}")
    config = recipe(name, prof, seed=seed, **overrides)

    seed_everything(seed)  # the initial weights depend on the seed
    model = build_model(
        name, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size, profile=prof
    )
    record = fit(model, data, config, device=dev, name=name, progress=progress)
    n_train = min(data.train_images.shape[0], config.max_train or data.train_images.shape[0])
    n_test = min(data.test_images.shape[0], config.max_test or data.test_images.shape[0])
    result = None
    if cost:
        shape = (config.batch_size, data.in_channels, data.image_size, data.image_size)
        result = measure(
            model, shape, device=dev, warmup=warmup, repeats=repeats, amp_dtype=_amp_dtype(dev, config), name=name
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
    rows: dict[str, dict[str, Any]] = {}
    accs: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {}
    for item in items:
        if isinstance(item, BenchResult):
            name, result = item.name, item
        elif isinstance(item, ModelRun):
            name, result = item.name, item.cost
            accs.setdefault(name, []).append(item.test_acc)
            walls.setdefault(name, []).append(item.train_wall_s)
        else:
            raise TypeError(f"summarize expects BenchResult or ModelRun items, got {type(item).__name__}")
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


def summarize_runs(runs: Sequence[ModelRun]) -> list[dict[str, Any]]:
    """:func:`summarize` for a list of :class:`ModelRun` (kept as the name the chapter uses)."""
    return summarize(runs)


_COLUMNS: tuple[tuple[str, str, float, str, bool], ...] = (
    # (key, header, scale, format, ratio to baseline?)
    ("params", "params (M)", 1e-6, "{:.3f}", True),
    ("flops_forward", "GFLOPs/img", 1e-9, "{:.3f}", True),
    ("infer_images_per_s", "infer img/s", 1.0, "{:,.0f}", True),
    ("train_images_per_s", "train img/s", 1.0, "{:,.0f}", True),
    ("train_peak_bytes", "train MiB", 2.0**-20, "{:.1f}", True),
)


def format_table(rows: Sequence[dict[str, Any]], *, baseline: str | None = "resnet", title: str | None = None) -> str:
    """A plain-text table of :func:`summarize` rows; ``×`` columns are ratios to the ``baseline`` row.

    ``baseline=None`` leaves the ratio columns out; a baseline that is not among the rows is a ``ValueError``.

    Ratios are value / baseline for every column: above 1 means more parameters, FLOPs or memory — and
    *faster* for the images/s columns. Accuracy, when present, is ``mean ± std`` in per cent over seeds.
    """
    rows = list(rows)
    base = next((r for r in rows if r.get("model") == baseline), None) if baseline else None
    if baseline and base is None:
        names = [r.get("model") for r in rows]
        raise ValueError(f"format_table: baseline {baseline!r} is not among the rows {names}; pass baseline=None")
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
            acc = "—" if mean is None else f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")
            wall = r.get("train_wall_s")
            cells += [acc, str(r.get("n_seeds", "—")), "—" if wall is None else f"{wall:.1f}"]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(headers)]
    out = [title] if title else []
    out.append(
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    )
    out.append("  ".join("-" * w for w in widths))
    for cells in lines:
        out.append(
            "  ".join(c.ljust(w) if i <= 1 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        )
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- recorded runs


RECORD_FORMAT = "nlbook-run-all/1"
"""The ``format`` field of a ``benchmarks/run_all.py`` results file (other JSON files are not its records)."""


def recorded_runs(folder: str | os.PathLike | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The result files written by ``benchmarks/run_all.py``, newest first, as ``(file name, record)``.

    ``folder`` defaults to ``benchmarks/results`` of the checkout this package was imported from; an
    installed package (e.g. on Colab) has none, and the list is empty. Only JSON files directly in the folder
    whose ``format`` is :data:`RECORD_FORMAT` count: the ``tmp/`` sub-folder of throw-away runs is not searched,
    and other scripts' result files are skipped.
    """
    import json
    from pathlib import Path

    path = Path(folder) if folder is not None else Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    if not path.is_dir():
        return []
    records = []
    for file in path.glob("*.json"):
        try:
            record = json.loads(file.read_text())
        except (OSError, ValueError):
            continue  # not a results file
        if isinstance(record, dict) and record.get("format") == RECORD_FORMAT:  # other scripts' files are skipped
            records.append((file.name, record))
    return sorted(records, key=lambda item: str(item[1].get("created", "")), reverse=True)


def describe_record(record: dict[str, Any]) -> str:
    """A recorded run's table, headed by what it ran on: hardware, profile, data, budget, seeds, date."""
    if not isinstance(record, dict) or "summary" not in record:
        raise ValueError(
            "describe_record expects a results record written by benchmarks/run_all.py (a dict with a 'summary'), "
            f"got {type(record).__name__}" + (f" with keys {sorted(record)}" if isinstance(record, dict) else "")
        )
    budget = record.get("budget", {})
    hardware = record.get("hardware", {})
    title = (
        f"RECORDED RUN ({record.get('created', '?')}): {record.get('dataset', '?')}, profile "
        f"{record.get('profile', {}).get('name', '?')}, {budget.get('epochs', '?')} epochs on "
        f"{budget.get('train_images', '?')} images, seeds {record.get('seeds', '?')} | {hardware.get('name', '?')} | "
        f"torch {record.get('versions', {}).get('torch', '?')}"
    )
    return format_table(record["summary"], baseline="resnet", title=title)
