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
* a ``tqdm.auto`` progress bar (``TQDM_DISABLE=1`` turns it off, as CI does).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nlbook.data import DeviceLoader, ImageDataset
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
        ``transformer``: AdamW lr 1e-3·(batch/512), weight decay 0.05, 10 % warm-up then cosine, label
        smoothing 0.1, gradient clipping at 1 — what ViTs trained from scratch need (DeiT, Steiner et al.).
        """
        base = {"epochs": profile.epochs, "batch_size": profile.batch_size}
        base |= {"max_train": profile.max_train, "max_test": profile.max_test}
        if recipe == "cnn":
            base |= {"optimizer": "sgd", "lr": 0.1 * profile.batch_size / 128, "weight_decay": 5e-4}
            base |= {"warmup_epochs": min(1.0, profile.epochs / 10)}
        elif recipe == "transformer":
            base |= {"optimizer": "adamw", "lr": 1e-3 * max(profile.batch_size / 512, 0.25), "weight_decay": 0.05}
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
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW; no weight decay on biases, norms, embeddings and tokens (1-D or marked parameters)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "rel_height", "rel_width"))
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


@torch.no_grad()
def evaluate(
    model: nn.Module, data: ImageDataset, batch_size: int = 256, device: torch.device | None = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``'s test split."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in DeviceLoader.test(data, batch_size):
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += y.numel()
    model.train(was_training)
    return loss_sum / max(n, 1), correct / max(n, 1)


def fit(
    model: nn.Module,
    data: ImageDataset,
    config: TrainConfig | None = None,
    *,
    device: torch.device | str | None = None,
    name: str | None = None,
    progress: bool | None = None,
) -> TrainRecord:
    """Train ``model`` on ``data`` with ``config``; return the :class:`TrainRecord`.

    The dataset is moved to the device once; batches are augmented there (random crop + flip).
    """
    config = config or TrainConfig()
    device = torch.device(device) if device is not None else pick_device()
    data = data.subset(config.max_train, config.max_test).to(device)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if config.compile else model
    torch.manual_seed(config.seed)  # dropout / stochastic depth draws

    loader = DeviceLoader.train(
        data, config.batch_size, augment=config.augment, seed=config.seed, channels_last=config.channels_last
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
        hardware=device_name(device),
        dataset=data.name,
        config={k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in asdict(config).items()},
    )
    show = progress if progress is not None else not os.environ.get("TQDM_DISABLE")
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
        test_loss, test_acc = evaluate(model, data, batch_size=max(config.batch_size, 256), device=device)
        stats = EpochStats(
            epoch=epoch + 1,
            lr=opt.param_groups[0]["lr"],
            train_loss=loss_sum.item() / seen,
            train_acc=correct.item() / seen,
            test_loss=test_loss,
            test_acc=test_acc,
            seconds=seconds,
            images_per_s=seen / seconds,
        )
        record.history.append(stats)
        bar.set_postfix(loss=f"{stats.train_loss:.3f}", test_acc=f"{stats.test_acc:.3f}")
    bar.close()
    record.wall_time_s = time.perf_counter() - start
    return record


def with_overrides(config: TrainConfig, **overrides) -> TrainConfig:
    """A copy of ``config`` with some fields changed (validated again)."""
    return replace(config, **overrides)
