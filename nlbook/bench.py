"""Chapters 2–6 and appendix B ("How we measure") — what a model costs, measured the same way for every model.

:func:`measure` is the one function the chapters and the ``benchmarks/`` scripts use for the *cost* of a
model; :func:`nlbook.comparison.benchmark_model` adds what it *buys* (test accuracy after a training budget).
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
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_flop_count,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from nlbook.checks import (
    check_batchnorm_batch,
    check_bool,
    check_device,
    check_float,
    check_image_batch,
    check_int,
    check_ints,
    check_module,
    dry_run,
    is_int,
)
from nlbook.runtime import device_name, pick_device

__all__ = [
    "BenchResult",
    "count_flops",
    "measure",
    "T4_FP16_PEAK_FLOPS",
    "estimate_training_seconds",
    "peak_step_memory",
]

T4_FP16_PEAK_FLOPS = 65e12
"""NVIDIA's datasheet figure for the T4's fp16 tensor cores (FLOP/s): Colab's usual free GPU."""


# --------------------------------------------------------------------------------------------- FLOPs


def _cpu_sdpa_flops(
    query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any
) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(
    grad_shape, query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kw
) -> int:
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
    extra: dict[Any, Callable[..., int]] = {
        aten.convolution_backward: _conv_backward_flops
    }
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        extra[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        extra[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            _cpu_sdpa_backward_flops
        )
    return extra


def count_flops(model: nn.Module, x: torch.Tensor, *, backward: bool = False) -> int:
    """FLOPs of one forward pass of ``model`` on the batch ``x`` (and of the backward
    pass, if ``backward``).

    Counted with :class:`~torch.utils.flop_counter.FlopCounterMode` (2 per
    multiply–add; matrix products,
    convolutions and attention only — see the module docstring). The total is for the
    whole batch.
    With ``backward=True`` the model is run in training mode on a copy, so the caller's
    model (BatchNorm
    running statistics, gradients) is not changed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_flops expects an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"count_flops expects a tensor batch, got {type(x).__name__}")
    backward = check_bool("count_flops", "backward", backward)
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
    # backward counts a training step: BatchNorm then needs more than one value per
    # channel (clear error, not torch's)
    _, batchnorm_sizes = dry_run(model, x, "count_flops")
    check_batchnorm_batch(
        "count_flops", batchnorm_sizes, x.shape[0], f"a batch of shape {tuple(x.shape)}"
    )
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
    return [
        v
        for state in opt.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    ]


def _cpu_allocation_peak(prof: torch.profiler.profile) -> int:
    """Peak of the running sum of allocations minus frees recorded by a memory-profiling run."""
    from torch._C._profiler import _EventType

    events: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if (
            node.typed[0] == _EventType.Allocation
            and str(node.typed[1].device) == "cpu"
        ):
            events.append((node.start_time_ns, node.typed[1].alloc_size))
        stack.extend(node.children)
    current = peak = 0
    for _, size in sorted(events):
        current += size
        peak = max(peak, current)
    return peak


def peak_step_memory(step: Callable[[], Any], device: torch.device) -> int | None:
    """Peak bytes allocated by one call of ``step`` above what was allocated when it
    started.

    CUDA: the caching allocator's peak statistic. CPU: allocation events recorded by
    :mod:`torch.profiler` (``profile_memory=True``). Other devices: ``None`` (not
    measured).
    """
    if not callable(step):
        raise TypeError(
            f"peak_step_memory expects a callable step (no arguments), got "
            f"{type(step).__name__}"
        )
    device = check_device("peak_step_memory", "device", device)
    if device is None:
        raise TypeError(
            "peak_step_memory: device must be a torch.device or a device name, got None"
        )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    if device.type == "cpu":
        from torch.profiler import ProfilerActivity, profile

        # libkineto logs every profiler start/stop to stderr; level 6 silences it
        # (unless the user chose a level).
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


def _median_seconds(
    step: Callable[[], Any], device: torch.device, warmup: int, repeats: int
) -> float:
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


def _sample_batch(
    sample: torch.Tensor | Sequence[int], device: torch.device, seed: int
) -> torch.Tensor:
    if isinstance(sample, torch.Tensor):
        if sample.dim() != 4 or not sample.is_floating_point():
            raise ValueError(
                f"measure: a sample batch must be a float tensor (B, C, H, W), got {sample.dtype} {tuple(sample.shape)}"
            )
        return sample.to(device)
    shape = (
        tuple(sample)
        if isinstance(sample, Sequence) and not isinstance(sample, str)
        else ()
    )
    if len(shape) != 4 or any(not is_int(s) or s < 1 for s in shape):
        raise ValueError(
            f"measure: sample must be a float batch or its shape, four positive ints (B, C, H, W), got {sample!r}"
        )
    shape = tuple(int(s) for s in shape)
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
    if not is_int(warmup) or warmup < 0:
        raise ValueError(f"measure: warmup must be an int >= 0, got {warmup!r}")
    if not is_int(repeats) or repeats < 1:
        raise ValueError(f"measure: repeats must be an int >= 1, got {repeats!r}")
    warmup, repeats = int(warmup), int(repeats)
    seed = check_int("measure", "seed", seed, low=0)
    for flag, value in (("train", train), ("memory", memory)):
        if not isinstance(value, bool):
            raise TypeError(f"measure: {flag} must be True or False, got {value!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(
            f"measure: name must be a str (the result's label) or None, got {type(name).__name__}"
        )
    if amp_dtype not in (None, torch.bfloat16, torch.float16):
        raise ValueError(
            f"measure: amp_dtype must be None, torch.bfloat16 or torch.float16, got {amp_dtype!r}"
        )
    first = next(iter(model.parameters()), None)
    home = first.device if first is not None else torch.device("cpu")
    if (
        device is not None
        and str(device).startswith("meta")
        or device is None
        and home.type == "meta"
    ):
        raise ValueError(
            "measure: cannot time a model on the meta device; pass device='cpu' or 'cuda'"
        )
    device = (
        home
        if device is None
        else pick_device(check_device("measure", "device", device))
    )  # a device that does not exist fails here
    # Before anything moves or is timed: one dry run on (at most) two images, where the model is now.
    x = _sample_batch(sample, torch.device("cpu"), seed)
    probe = x[: min(x.shape[0], 2)].to(home)
    if amp_dtype is None:
        check_image_batch(probe, None, "measure", like=model)
    out, batchnorm_sizes = dry_run(model, probe, "measure")
    if train and (not isinstance(out, torch.Tensor) or out.dim() != 2):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"measure: train=True needs a model that returns logits (B, num_classes), got {got}"
        )
    if train or model.training:
        check_batchnorm_batch(
            "measure", batchnorm_sizes, probe.shape[0], f"input_shape {tuple(x.shape)}"
        )
    x = x.to(device)
    model = model.to(device)
    batch = x.shape[0]
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else nullcontext()
    )
    was_training = model.training

    # FLOPs on two images (FLOPs are linear in the batch; two keeps BatchNorm's training mode well defined).
    few = x[: min(batch, 2)]
    flops_forward = count_flops(model, few) // few.shape[0]
    flops_train = (
        count_flops(model, few, backward=True) // few.shape[0] if train else None
    )

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

        train_s = _median_seconds(
            train_step, device, max(warmup, 1), repeats
        )  # >= 1: creates optimiser state
        if memory:
            opt.zero_grad(set_to_none=True)
            resident_train = _tensor_bytes(
                [*twin.parameters(), *twin.buffers(), x, *_optimizer_tensors(opt)]
            )
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


# --------------------------------------------------------------------------------------------- estimates


def estimate_training_seconds(
    model: nn.Module,
    image_shape: Sequence[int],
    *,
    train_images: int,
    test_images: int,
    epochs: int,
    peak_flops: float = T4_FP16_PEAK_FLOPS,
    utilisation: float = 0.25,
) -> float:
    """An *estimate* of a full run's seconds on an accelerator, from counted FLOPs — not a measurement.

    Each epoch costs ``train_images`` forward + backward passes and ``test_images`` forward passes, FLOPs
    counted by :func:`count_flops` on one image of ``image_shape`` (``(C, H, W)``); the device is assumed to
    sustain ``utilisation`` of its ``peak_flops``. Counting runs on the ``meta`` device when the model is
    there (no memory, no arithmetic), so a full-size model costs nothing to estimate.
    """
    check_int("estimate_training_seconds", "train_images", train_images, low=1)
    check_int("estimate_training_seconds", "test_images", test_images, low=0)
    check_int("estimate_training_seconds", "epochs", epochs, low=1)
    check_float(
        "estimate_training_seconds", "peak_flops", peak_flops, low=0.0, low_open=True
    )
    check_float(
        "estimate_training_seconds",
        "utilisation",
        utilisation,
        low=0.0,
        high=1.0,
        low_open=True,
    )
    check_module("estimate_training_seconds", "model", model)
    if (
        isinstance(image_shape, str)
        or not isinstance(image_shape, Sequence)
        or len(image_shape) != 3
    ):
        raise ValueError(
            f"estimate_training_seconds: image_shape must be (C, H, W), got {image_shape!r}"
        )
    image_shape = check_ints(
        "estimate_training_seconds",
        "image_shape",
        image_shape,
        length=3,
        what="(C, H, W)",
    )
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.empty(1, *image_shape, device=device)
    train = count_flops(model, x, backward=True)
    test = count_flops(model, x)
    return (
        epochs
        * (train_images * train + test_images * test)
        / (peak_flops * utilisation)
    )
