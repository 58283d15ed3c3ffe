"""One small training loop for every chapter.

``fit(model, dataset, config)`` trains on device-resident data (:mod:`nlbook.data`), evaluates after every
epoch and returns a :class:`TrainRecord` — per-epoch loss/accuracy, wall time, images/s, parameter count
and the hardware it ran on — so a notebook can print every number together with what produced it.

What it does, and why:

* device chosen automatically (CUDA, then MPS, then CPU; :func:`nlbook.runtime.pick_device`);
* mixed precision on CUDA: bfloat16 where the GPU supports it, else float16 with a gradient scaler (a T4
  on Colab has no bf16); off on CPU unless asked for;
* optional ``channels_last`` memory format and ``torch.compile``;
* SGD (Nesterov) or AdamW, linear warm-up then cosine decay (or one-cycle), label smoothing;
* a ``tqdm.auto`` progress bar (``TQDM_DISABLE=1`` turns it off, as CI does);
* under ``torchrun`` the same call trains with ``DistributedDataParallel`` (:mod:`nlbook.distributed`):
  each rank takes its share of every global batch, gradients and metrics are reduced over ranks, and only
  rank 0 shows progress.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():
    # tqdm.auto warns on import in a kernel without ipywidgets, then falls back to a text bar: that's fine
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

from nlbook.data import DeviceLoader, ImageDataset
from nlbook.distributed import DistInfo, all_reduce_sum, current, wrap_model
from nlbook.runtime import Profile, device_name, pick_device

__all__ = ["EpochStats", "TrainConfig", "TrainRecord", "count_parameters", "evaluate", "fit", "make_optimizer"]

Recipe = Literal["cnn", "transformer"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run's budget and recipe."""

    epochs: int = 3
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    augment: bool = True
    amp: bool | None = None  # None: on for CUDA, off elsewhere
    amp_dtype: torch.dtype | None = None  # None: bf16 if supported, else fp16 (CUDA); bf16 on CPU
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    max_train: int | None = None  # cap on training images (None: all)
    max_test: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"TrainConfig: epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"TrainConfig: optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "onecycle", "constant"):
            raise ValueError(f"TrainConfig: schedule must be 'cosine', 'onecycle' or 'constant', got {self.schedule!r}")
        if not self.lr > 0 or self.weight_decay < 0 or not 0 <= self.label_smoothing < 1:
            raise ValueError("TrainConfig: need lr > 0, weight_decay >= 0 and 0 <= label_smoothing < 1")

    @classmethod
    def from_profile(cls, profile: Profile, recipe: Recipe = "cnn", **overrides) -> TrainConfig:
        """The book's two recipes, sized by a run profile.

        ``cnn``: SGD + Nesterov momentum, lr 0.1·(batch/128), weight decay 5e-4, cosine with a short warm-up.
        ``transformer``: AdamW lr 1e-3 (scaled linearly above batch 512), weight decay 0.05, 10 % warm-up then
        cosine, label smoothing 0.1, gradient clipping at 1 — what ViTs trained from scratch need (DeiT, Steiner
        et al.).
        """
        base = {"epochs": profile.epochs, "batch_size": profile.batch_size}
        base |= {"max_train": profile.max_train, "max_test": profile.max_test}
        if recipe == "cnn":
            base |= {"optimizer": "sgd", "lr": 0.1 * profile.batch_size / 128, "weight_decay": 5e-4}
            base |= {"warmup_epochs": min(1.0, profile.epochs / 10)}
        elif recipe == "transformer":
            base |= {"optimizer": "adamw", "lr": 1e-3 * max(profile.batch_size / 512, 1.0), "weight_decay": 0.05}
            base |= {"warmup_epochs": max(profile.epochs / 10, 0.3), "label_smoothing": 0.1, "grad_clip": 1.0}
        else:
            raise ValueError(f"unknown recipe {recipe!r}; expected 'cnn' or 'transformer'")
        return cls(**(base | overrides))


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float  # training time of this epoch (evaluation excluded)
    images_per_s: float


@dataclass
class TrainRecord:
    """What a run produced and what it ran on."""

    name: str
    params: int
    device: str
    hardware: str
    dataset: str
    config: dict
    history: list[EpochStats] = field(default_factory=list)
    wall_time_s: float = 0.0
    world_size: int = 1  # processes that trained it together (DDP); images/s counts all of them

    @property
    def test_acc(self) -> float:
        return self.history[-1].test_acc if self.history else float("nan")

    @property
    def images_per_s(self) -> float:
        seen = sum(e.images_per_s * e.seconds for e in self.history)
        return seen / max(sum(e.seconds for e in self.history), 1e-9)

    def summary(self) -> str:
        return (
            f"{self.name}: test accuracy {100 * self.test_acc:.1f}% on {self.dataset} "
            f"({len(self.history)} epochs, {self.params:,} parameters) in {self.wall_time_s:.1f} s "
            f"on {self.hardware}, {self.images_per_s:,.0f} train images/s"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["test_acc"] = self.test_acc
        return d


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters expects an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW; no weight decay on biases, norms, embeddings and tokens (1-D or marked parameters)."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"make_optimizer expects a TrainConfig, got {type(config).__name__}")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "rel_height", "rel_width", "table"))
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))


def _make_schedule(opt: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.25)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _autocast(device: torch.device, config: TrainConfig):
    """The autocast context and whether a gradient scaler is needed (fp16 only)."""
    enabled = config.amp if config.amp is not None else device.type == "cuda"
    if not enabled:
        return nullcontext(), False
    dtype = config.amp_dtype
    if dtype is None:
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if (device.type != "cuda" or cuda_bf16) else torch.float16
    return torch.autocast(device.type, dtype=dtype), dtype == torch.float16


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 for exact image counts and sums; Apple's MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


@torch.no_grad()
def _evaluate_sums(
    model: nn.Module, data: ImageDataset, batch_size: int, device: torch.device, info: DistInfo
) -> torch.Tensor:
    """(summed cross-entropy, correct, images) over this rank's share of the test split, as one tensor."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=_sum_dtype(device), device=device)
    for x, y in DeviceLoader.test(data, batch_size, rank=info.rank, world_size=info.world_size):
        if y.numel() == 0:  # the last partial batch may leave a rank without images
            continue
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        sums[0] += F.cross_entropy(logits, y, reduction="sum")
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += y.numel()
    model.train(was_training)
    return sums


def evaluate(
    model: nn.Module, data: ImageDataset, batch_size: int = 256, device: torch.device | None = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``'s test split."""
    if not isinstance(data, ImageDataset):
        raise TypeError(f"evaluate expects an nlbook.data.ImageDataset, got {type(data).__name__}")
    device = device or next(model.parameters()).device
    loss_sum, correct, n = _evaluate_sums(model, data, batch_size, device, DistInfo()).tolist()
    return loss_sum / max(n, 1), correct / max(n, 1)


def _resolve_distributed(distributed: DistInfo | bool | None) -> DistInfo:
    if isinstance(distributed, DistInfo):
        return distributed
    if distributed is False:
        return DistInfo()
    if distributed not in (None, True):
        raise TypeError(f"fit: distributed must be a DistInfo, True, False or None, got {distributed!r}")
    return current()  # None/True: the process group torchrun + init_distributed set up, if any


def fit(
    model: nn.Module,
    data: ImageDataset,
    config: TrainConfig | None = None,
    *,
    device: torch.device | str | None = None,
    name: str | None = None,
    progress: bool | None = None,
    distributed: DistInfo | bool | None = None,
    sync_batchnorm: bool | None = None,
) -> TrainRecord:
    """Train ``model`` on ``data`` with ``config``; return the :class:`TrainRecord`.

    The dataset is moved to the device once; batches are augmented there (random crop + flip).

    ``distributed`` (default: whatever :func:`nlbook.distributed.init_distributed` set up, i.e. DDP under
    ``torchrun`` and a single process otherwise) trains with ``DistributedDataParallel``: ``config.batch_size``
    is the *global* batch, each rank takes its contiguous share, gradients are averaged by DDP, and the
    record's losses, accuracies and images/s are reduced over all ranks (the same record on every rank).
    ``sync_batchnorm`` (default: on CUDA) makes BatchNorm use global-batch statistics; see
    :func:`nlbook.distributed.wrap_model`.
    """
    config = config or TrainConfig()
    info = _resolve_distributed(distributed)
    if device is None:
        device = info.device if info.enabled else pick_device()
    device = torch.device(device)
    if info.enabled and config.batch_size % info.world_size:
        raise ValueError(
            f"fit: the global batch_size {config.batch_size} must be divisible by the {info.world_size} processes"
        )
    data = data.subset(config.max_train, config.max_test).to(device)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ddp_model = wrap_model(model, info, sync_batchnorm=sync_batchnorm)  # `model` itself when one process
    step_model = torch.compile(ddp_model) if config.compile else ddp_model
    torch.manual_seed(config.seed)  # dropout / stochastic depth draws

    loader = DeviceLoader.train(
        data,
        config.batch_size,
        augment=config.augment,
        seed=config.seed,
        channels_last=config.channels_last,
        rank=info.rank,
        world_size=info.world_size,
    )
    if len(loader) == 0:
        raise ValueError(
            f"fit: batch_size {config.batch_size} is larger than the {data.train_images.shape[0]} training images"
        )
    opt = make_optimizer(model, config)
    sched = _make_schedule(opt, config, len(loader))
    autocast, needs_scaler = _autocast(device, config)
    scaler = torch.amp.GradScaler(device.type, enabled=needs_scaler)

    record = TrainRecord(
        name=name or type(model).__name__,
        params=count_parameters(model),
        device=str(device),
        hardware=device_name(device) if not info.enabled else f"{info.world_size} processes × {device_name(device)}",
        dataset=data.name,
        config={k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in asdict(config).items()},
        world_size=info.world_size,
    )
    show = (progress if progress is not None else not os.environ.get("TQDM_DISABLE")) and info.is_main
    bar = tqdm(total=config.epochs * len(loader), desc=record.name, disable=not show, leave=False)
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for x, y in loader:
            with autocast:
                logits = step_model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            # accumulate on the device: no host sync per step
            loss_sum += loss.detach() * y.numel()
            correct += (logits.detach().argmax(1) == y).sum()
            seen += y.numel()
            bar.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        # sums over all ranks, then divide: the global batch's loss/accuracy, the same on every rank
        acc = _sum_dtype(device)
        train = torch.stack([loss_sum.to(acc), correct.to(acc), torch.tensor(seen, dtype=acc, device=device)])
        train = all_reduce_sum(train, info)
        eval_batch = -(-max(config.batch_size, 256) // info.world_size) * info.world_size
        test = all_reduce_sum(_evaluate_sums(model, data, eval_batch, device, info), info)
        (train_loss, train_correct, train_seen), (test_loss, test_correct, test_seen) = train.tolist(), test.tolist()
        stats = EpochStats(
            epoch=epoch + 1,
            lr=opt.param_groups[0]["lr"],
            train_loss=train_loss / train_seen,
            train_acc=train_correct / train_seen,
            test_loss=test_loss / max(test_seen, 1),
            test_acc=test_correct / max(test_seen, 1),
            seconds=seconds,
            images_per_s=train_seen / seconds,
        )
        record.history.append(stats)
        bar.set_postfix(loss=f"{stats.train_loss:.3f}", test_acc=f"{stats.test_acc:.3f}")
    bar.close()
    record.wall_time_s = time.perf_counter() - start
    return record
