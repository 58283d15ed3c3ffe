"""Every chapter — one small training loop.

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

import itertools
import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():
    # tqdm.auto warns on import in a kernel without ipywidgets, then falls back to a text bar: that's fine
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

from nlbook.checks import (
    check_batchnorm_batch,
    check_choice,
    check_float,
    check_int,
    dry_run,
)
from nlbook.data import DeviceLoader, ImageDataset
from nlbook.distributed import DistInfo, all_reduce_sum, current, wrap_model
from nlbook.runtime import Profile, autocast_dtype, device_name, pick_device

__all__ = [
    "EpochStats",
    "TrainConfig",
    "TrainRecord",
    "TrainingInterrupted",
    "count_parameters",
    "evaluate",
    "fit",
    "make_optimizer",
]

Recipe = Literal["cnn", "transformer"]
AMP_DTYPES = (
    None,
    torch.bfloat16,
    torch.float16,
)  # what torch.autocast can run (None: chosen per device)


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
    amp_dtype: torch.dtype | None = (
        None  # None: bf16 if supported, else fp16 (CUDA); bf16 on CPU
    )
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    max_train: int | None = None  # cap on training images (None: all)
    max_test: int | None = None

    def __post_init__(self) -> None:
        """Check every field's type and range now, not epochs later inside :func:`fit` (or never: a negative
        ``grad_clip`` would flip the gradients, ``max_test=0`` would report 0 % accuracy)."""
        w = "TrainConfig"
        fields = {
            "epochs": check_int(w, "epochs", self.epochs),
            "batch_size": check_int(w, "batch_size", self.batch_size),
            "optimizer": check_choice(w, "optimizer", self.optimizer, ("sgd", "adamw")),
            "lr": check_float(w, "lr", self.lr, low=0.0, low_open=True),
            "weight_decay": check_float(w, "weight_decay", self.weight_decay, low=0.0),
            "momentum": check_float(
                w, "momentum", self.momentum, low=0.0, high=1.0, high_open=True
            ),
            "schedule": check_choice(
                w, "schedule", self.schedule, ("cosine", "onecycle", "constant")
            ),
            "warmup_epochs": check_float(
                w, "warmup_epochs", self.warmup_epochs, low=0.0
            ),
            "label_smoothing": check_float(
                w,
                "label_smoothing",
                self.label_smoothing,
                low=0.0,
                high=1.0,
                high_open=True,
            ),
            "seed": check_int(
                w, "seed", self.seed, low=0, high=2**32 - 1
            ),  # numpy's range, used by every seed
        }
        if self.grad_clip is not None:
            fields["grad_clip"] = check_float(
                w,
                "grad_clip (None: no clipping)",
                self.grad_clip,
                low=0.0,
                low_open=True,
            )
        for name in ("max_train", "max_test"):
            if getattr(self, name) is not None:
                fields[name] = check_int(
                    w, f"{name} (None: all images)", getattr(self, name)
                )
        for name in ("augment", "channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"{w}: {name} must be True or False, got {getattr(self, name)!r}"
                )
        if self.amp is not None and not isinstance(self.amp, bool):
            raise TypeError(
                f"{w}: amp must be True, False or None (on for CUDA only), got {self.amp!r}"
            )
        if self.amp_dtype not in AMP_DTYPES:
            raise ValueError(
                f"{w}: amp_dtype must be None (automatic), torch.bfloat16 or torch.float16, got {self.amp_dtype!r}"
            )
        if self.optimizer == "sgd" and fields["momentum"] == 0:
            raise ValueError(
                f"{w}: momentum must be > 0 with optimizer='sgd' (Nesterov momentum), got 0"
            )
        if fields["warmup_epochs"] > fields["epochs"]:
            raise ValueError(
                f"{w}: warmup_epochs must be <= epochs ({self.epochs}), got {self.warmup_epochs!r}: "
                "the learning rate would never reach lr"
            )
        for (
            name,
            value,
        ) in (
            fields.items()
        ):  # plain Python numbers (numpy ints and floats become int/float)
            object.__setattr__(self, name, value)

    @classmethod
    def from_profile(
        cls, profile: Profile, recipe: Recipe = "cnn", **overrides
    ) -> TrainConfig:
        """The book's two recipes, sized by a run profile.

        ``cnn``: SGD + Nesterov momentum, lr 0.1·(batch/128), weight decay 5e-4, cosine
        with a short warm-up.
        ``transformer``: AdamW lr 1e-3 (scaled linearly above batch 512), weight decay
        0.05, 10 % warm-up then
        cosine, label smoothing 0.1, gradient clipping at 1 — what ViTs trained from
        scratch need (DeiT, Steiner
        et al.).
        """
        if not isinstance(profile, Profile):
            raise TypeError(
                "TrainConfig.from_profile expects an nlbook.runtime.Profile (e.g. "
                "get_profile('quick')), "
                f"got {type(profile).__name__}"
            )
        base = {"epochs": profile.epochs, "batch_size": profile.batch_size}
        base |= {"max_train": profile.max_train, "max_test": profile.max_test}
        if recipe == "cnn":
            base |= {
                "optimizer": "sgd",
                "lr": 0.1 * profile.batch_size / 128,
                "weight_decay": 5e-4,
            }
            base |= {"warmup_epochs": min(1.0, profile.epochs / 10)}
        elif recipe == "transformer":
            base |= {
                "optimizer": "adamw",
                "lr": 1e-3 * max(profile.batch_size / 512, 1.0),
                "weight_decay": 0.05,
            }
            base |= {
                "warmup_epochs": max(profile.epochs / 10, 0.3),
                "label_smoothing": 0.1,
                "grad_clip": 1.0,
            }
        else:
            raise ValueError(
                f"unknown recipe {recipe!r}; expected 'cnn' or 'transformer'"
            )
        return cls(**(base | overrides))


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    test_loss: (
        float | None
    )  # None where the dataset has a validation split: the test split is scored once
    test_acc: float | None
    seconds: float  # training time of this epoch (evaluation excluded)
    images_per_s: float
    val_loss: float | None = (
        None  # the validation split's, where the dataset has one (else None)
    )
    val_acc: float | None = None


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
    world_size: int = (
        1  # processes that trained it together (DDP); images/s counts all of them
    )
    # With a validation split the test split is scored once, after the last epoch (never used to choose).
    final_test_loss: float | None = None
    final_test_acc: float | None = None

    @property
    def test_acc(self) -> float:
        if self.final_test_acc is not None:
            return self.final_test_acc
        return self.history[-1].test_acc if self.history else float("nan")

    @property
    def val_acc(self) -> float | None:
        """The last epoch's validation accuracy (None without a validation split)."""
        return self.history[-1].val_acc if self.history else None

    @property
    def images_per_s(self) -> float:
        seen = sum(e.images_per_s * e.seconds for e in self.history)
        return seen / max(sum(e.seconds for e in self.history), 1e-9)

    def summary(self) -> str:
        # two lines that fit the book's 88-character pages: the result, then what it cost
        return (
            f"{self.name}: test accuracy {100 * self.test_acc:.1f}% on {self.dataset} "
            f"({len(self.history)} epochs, {self.params:,} parameters)\n"
            f"  {self.wall_time_s:.1f} s on {self.hardware}, {self.images_per_s:,.0f} train images/s"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["test_acc"] = self.test_acc
        return d


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a notebook's "interrupt kernel") during :func:`fit`: still a ``KeyboardInterrupt``, carrying
    the partial :class:`TrainRecord` of every epoch that finished as ``.record``.

    The one rule of :func:`fit`: *any* exception that leaves it once training has started carries ``.record``
    — this class for an interrupt, the original exception (same type, with ``.record`` attached and a note
    saying so) for anything else, e.g. running out of memory in epoch 3. The model is back in the train/eval
    mode it was in either way.
    """

    def __init__(self, record: TrainRecord):
        super().__init__(
            f"fit interrupted after {len(record.history)} finished epoch(s); their history is in .record"
        )
        self.record = record


def _attach_record(err: BaseException, record: TrainRecord) -> None:
    """Give the exception that stops :func:`fit` the partial record (see :class:`TrainingInterrupted`)."""
    try:
        err.record = record  # type: ignore[attr-defined]
    except (
        AttributeError,
        TypeError,
    ):  # an exception type that refuses new attributes: nothing to attach to
        return
    err.add_note(
        f"nlbook.train.fit: the {len(record.history)} finished epoch(s) are in this exception's .record"
    )


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"count_parameters expects an nn.Module, got {type(model).__name__}"
        )
    if not isinstance(trainable_only, bool):
        raise TypeError(
            f"count_parameters: trainable_only must be True or False, got {trainable_only!r}"
        )
    return sum(
        p.numel() for p in model.parameters() if p.requires_grad or not trainable_only
    )


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW; no weight decay on biases, norms, embeddings and tokens (1-D or marked parameters)."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"make_optimizer expects an nn.Module as model, got {type(model).__name__}"
        )
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"make_optimizer expects a TrainConfig, got {type(config).__name__}"
        )
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(
            ("pos_embed", "cls_token", "rel_height", "rel_width", "table")
        )
        (no_decay if skip else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=True
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))


def _make_schedule(
    opt: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=config.lr, total_steps=total, pct_start=0.25
        )
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
    dtype = autocast_dtype(device, config.amp, config.amp_dtype)
    if dtype is None:
        return nullcontext(), False
    return torch.autocast(device.type, dtype=dtype), dtype == torch.float16


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 for exact image counts and sums; Apple's MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


@torch.no_grad()
def _evaluate_sums(
    model: nn.Module,
    data: ImageDataset,
    batch_size: int,
    device: torch.device,
    info: DistInfo,
    split: str = "test",
) -> torch.Tensor:
    """(summed cross-entropy, correct, images) over this rank's share of the ``split`` ("test" or "val"), as
    one tensor."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=_sum_dtype(device), device=device)
    images, labels = (
        (data.val_images, data.val_labels)
        if split == "val"
        else (data.test_images, data.test_labels)
    )
    for x, y in DeviceLoader(
        images,
        labels,
        batch_size,
        mean=data.mean,
        std=data.std,
        rank=info.rank,
        world_size=info.world_size,
    ):
        if y.numel() == 0:  # the last partial batch may leave a rank without images
            continue
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        sums[0] += F.cross_entropy(logits, y, reduction="sum")
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += y.numel()
    model.train(was_training)
    return sums


def _model_device(model: nn.Module) -> torch.device:
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def _preflight(
    where: str,
    model: nn.Module,
    data: ImageDataset,
    *,
    amp_dtype: torch.dtype | None = None,
    train_batch: int | None = None,
    what: str = "",
) -> None:
    """Everything that can be checked before a tensor moves: the objects' types, a model that can learn, the
    dtype the model expects, and one small dry run comparing the model's logits with the dataset's classes
    (``train_batch``: the images per process and step, for BatchNorm's sake)."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{where} expects an nn.Module as model, got {type(model).__name__}"
        )
    if not isinstance(data, ImageDataset):
        raise TypeError(
            f"{where} expects an nlbook.data.ImageDataset as data (e.g. nlbook.data.load_dataset('digits')), "
            f"got {type(data).__name__}"
        )
    if data.test_images.shape[0] == 0:
        raise ValueError(
            f"{where}: the dataset {data.name!r} has no test images to evaluate on"
        )
    if train_batch is not None and not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"{where}: the model has no trainable parameters (requires_grad is False everywhere); "
            "unfreeze some before training"
        )
    ref = next(
        (
            t
            for t in itertools.chain(model.parameters(), model.buffers())
            if t.is_floating_point()
        ),
        None,
    )
    allowed = {torch.float32} | ({amp_dtype} if amp_dtype is not None else set())
    if ref is not None and ref.dtype not in allowed:
        raise TypeError(
            f"{where}: the model's parameters are {ref.dtype} but the dataset's batches are torch.float32; "
            "convert the model with model.float() (TrainConfig(amp=True) trains in mixed precision)"
        )
    sample = data.normalize(data.test_images[:2]).to(_model_device(model))
    out, batchnorm_sizes = dry_run(model, sample, where)
    if (
        not isinstance(out, torch.Tensor)
        or out.dim() != 2
        or out.shape[0] != sample.shape[0]
    ):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{where}: the model must return logits of shape (B, num_classes) = ({sample.shape[0]}, "
            f"{data.num_classes}) for a batch of shape {tuple(sample.shape)}, got {got}"
        )
    if out.shape[1] != data.num_classes:
        raise ValueError(
            f"{where}: the model outputs {out.shape[1]} logits per image but the dataset {data.name!r} has "
            f"{data.num_classes} classes; build the model with num_classes={data.num_classes}"
        )
    if train_batch is not None:
        check_batchnorm_batch(where, batchnorm_sizes, train_batch, what)


def evaluate(
    model: nn.Module,
    data: ImageDataset,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``'s test split, where the model is.

    ``device`` (optional) must be where the model's parameters are; the test images go there batch by batch.
    """
    _preflight("evaluate", model, data)
    check_int("evaluate", "batch_size", batch_size)
    where_model = _model_device(model)
    if device is not None:
        device = pick_device(device)
        if device.type != where_model.type or device.index not in (
            None,
            where_model.index,
        ):
            raise ValueError(
                f"evaluate: device={str(device)!r} but the model's parameters are on {where_model}; move the model "
                "first (model.to(device)) or leave device out"
            )
    loss_sum, correct, n = _evaluate_sums(
        model, data, batch_size, where_model, DistInfo()
    ).tolist()
    return loss_sum / n, correct / n


def _resolve_distributed(distributed: DistInfo | bool | None) -> DistInfo:
    if isinstance(distributed, DistInfo):
        return distributed
    if distributed is False:
        return DistInfo()
    if distributed not in (None, True):
        raise TypeError(
            f"fit: distributed must be a DistInfo, True, False or None, got {distributed!r}"
        )
    return (
        current()
    )  # None/True: the process group torchrun + init_distributed set up, if any


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

    The dataset is moved to the device once; batches are augmented there (random crop + flip). Before that,
    everything that can be checked is: the device exists, ``model`` is a module with trainable parameters,
    ``data`` an :class:`~nlbook.data.ImageDataset`, and one dry run on two images shows that the model returns
    one logit per class of the dataset (and that BatchNorm gets more than one value per channel).

    After every epoch the model is scored on the dataset's validation split if it has one (and the test split
    once, after the last epoch), else on its test split. A loss that becomes NaN or infinite stops the run with
    a ``FloatingPointError``.

    Nothing is lost if the run stops: an interrupt raises :class:`TrainingInterrupted` (a
    ``KeyboardInterrupt``) and any other exception leaves with ``.record`` — the :class:`TrainRecord` of every
    finished epoch — attached; the model's train/eval mode is restored in every case.

    ``distributed`` (default: whatever :func:`nlbook.distributed.init_distributed` set up, i.e. DDP under
    ``torchrun`` and a single process otherwise) trains with ``DistributedDataParallel``: ``config.batch_size``
    is the *global* batch, each rank takes its contiguous share, gradients are averaged by DDP, and the
    record's losses, accuracies and images/s are reduced over all ranks (the same record on every rank).
    ``sync_batchnorm`` (default: on CUDA) makes BatchNorm use global-batch statistics; see
    :func:`nlbook.distributed.wrap_model`.
    """
    # The run in four named steps: check, set up, then per epoch train and score; finally the test split.
    config, info, device = _check_fit(
        model, data, config, device, name, progress, distributed, sync_batchnorm
    )
    run = _start_run(model, data, config, device, info, name, progress, sync_batchnorm)
    was_training = model.training
    start = time.perf_counter()
    try:
        for epoch in range(config.epochs):
            train_sums, seconds = _train_epoch(run)
            run.record.history.append(_score_epoch(run, epoch, train_sums, seconds))
        if (
            run.data.has_validation
        ):  # the test split, once, for the model training ended with
            run.record.final_test_loss, run.record.final_test_acc = _score(run, "test")
    except BaseException as err:
        # Nothing lost: whatever stops the run, every finished epoch leaves with the exception.
        run.record.wall_time_s = time.perf_counter() - start
        if isinstance(err, KeyboardInterrupt) and not isinstance(
            err, TrainingInterrupted
        ):
            raise TrainingInterrupted(run.record) from err
        _attach_record(err, run.record)
        raise
    finally:
        run.bar.close()
        model.train(was_training)
    run.record.wall_time_s = time.perf_counter() - start
    return run.record


@dataclass
class _Run:
    """Everything one call of :func:`fit` holds while it trains."""

    model: nn.Module  # the module itself (its parameters, its mode)
    step_model: (
        nn.Module
    )  # what a step calls: the model, its DDP wrapper, or their compiled form
    data: ImageDataset
    config: TrainConfig
    device: torch.device
    info: DistInfo
    loader: DeviceLoader
    opt: torch.optim.Optimizer
    sched: Any
    autocast: Any
    scaler: torch.amp.GradScaler
    record: TrainRecord
    bar: Any


def _check_fit(
    model, data, config, device, name, progress, distributed, sync_batchnorm
):
    """Step 1: every check before anything moves — a bad device, model, dataset or batch fails now, not after
    the copy. Returns the config, the distributed set-up and the device."""
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"fit expects a TrainConfig (or None) as config, got {type(config).__name__}"
        )
    info = _resolve_distributed(distributed)
    if name is not None and not isinstance(name, str):
        raise TypeError(
            f"fit: name must be a str (the record's label) or None, got {type(name).__name__}"
        )
    for flag, value in (("progress", progress), ("sync_batchnorm", sync_batchnorm)):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"fit: {flag} must be True, False or None, got {value!r}")
    if device is None:
        device = info.device if info.enabled else pick_device()
    device = pick_device(device)
    if info.enabled and config.batch_size % info.world_size:
        raise ValueError(
            f"fit: the global batch_size {config.batch_size} must be divisible by the {info.world_size} processes"
        )
    per_process = config.batch_size // info.world_size
    what = f"batch_size {config.batch_size}" + (
        f" over {info.world_size} processes" if info.enabled else ""
    )
    amp_dtype = autocast_dtype(device, config.amp, config.amp_dtype)
    _preflight(
        "fit", model, data, amp_dtype=amp_dtype, train_batch=per_process, what=what
    )
    n_train = (
        data.train_images.shape[0]
        if config.max_train is None
        else min(config.max_train, len(data.train_images))
    )
    if n_train < config.batch_size:
        raise ValueError(
            f"fit: batch_size {config.batch_size} is larger than the {n_train} training images"
        )
    return config, info, device


def _start_run(
    model, data, config, device, info, name, progress, sync_batchnorm
) -> _Run:
    """Step 2: data and model on the device, the (DDP-wrapped, compiled) step model, the seeded loader, the
    optimiser and its schedule, mixed precision, and an empty record."""
    data = data.subset(config.max_train, config.max_test).to(device)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ddp_model = wrap_model(
        model, info, sync_batchnorm=sync_batchnorm
    )  # `model` itself when one process
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
    record = TrainRecord(
        name=name or type(model).__name__,
        params=count_parameters(model),
        device=str(device),
        hardware=device_name(device)
        if not info.enabled
        else f"{info.world_size} processes × {device_name(device)}",
        dataset=data.name,
        config={
            k: (str(v) if isinstance(v, torch.dtype) else v)
            for k, v in asdict(config).items()
        },
        world_size=info.world_size,
    )
    show = (
        progress if progress is not None else not os.environ.get("TQDM_DISABLE")
    ) and info.is_main
    bar = tqdm(
        total=config.epochs * len(loader),
        desc=record.name,
        disable=not show,
        leave=False,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=needs_scaler)
    return _Run(
        model,
        step_model,
        data,
        config,
        device,
        info,
        loader,
        opt,
        sched,
        autocast,
        scaler,
        record,
        bar,
    )


def _train_epoch(run: _Run) -> tuple[torch.Tensor, float]:
    """Step 3: one pass over the training split. Returns (summed loss, correct, images) reduced over all ranks,
    and the seconds it took (evaluation excluded)."""
    model, config, device = run.model, run.config, run.device
    model.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in run.loader:
        with run.autocast:
            logits = run.step_model(x)
            loss = F.cross_entropy(
                logits.float(), y, label_smoothing=config.label_smoothing
            )
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if config.grad_clip is not None:
            run.scaler.unscale_(run.opt)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        run.scaler.step(run.opt)
        run.scaler.update()
        run.sched.step()
        # accumulate on the device: no host sync per step
        loss_sum += loss.detach() * y.numel()
        correct += (logits.detach().argmax(1) == y).sum()
        seen += y.numel()
        run.bar.update()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    # sums over all ranks, then divide: the global batch's loss/accuracy, the same on every rank
    acc = _sum_dtype(device)
    sums = torch.stack(
        [
            loss_sum.to(acc),
            correct.to(acc),
            torch.tensor(seen, dtype=acc, device=device),
        ]
    )
    return all_reduce_sum(sums, run.info), seconds


def _score(run: _Run, split: str) -> tuple[float, float]:
    """Mean loss and accuracy of the model on ``split`` ("val" or "test"), over all ranks."""
    eval_batch = (
        -(-max(run.config.batch_size, 256) // run.info.world_size) * run.info.world_size
    )
    sums = _evaluate_sums(run.model, run.data, eval_batch, run.device, run.info, split)
    loss_sum, correct, n = all_reduce_sum(sums, run.info).tolist()
    return loss_sum / max(n, 1), correct / max(n, 1)


def _score_epoch(
    run: _Run, epoch: int, train_sums: torch.Tensor, seconds: float
) -> EpochStats:
    """Step 4: stop a diverged run; score the model on the validation split (else the test split)."""
    train_loss, train_correct, train_seen = train_sums.tolist()
    if not math.isfinite(train_loss):
        # a diverged run must not finish "successfully": stop, and keep the finished epochs
        raise FloatingPointError(
            f"fit: the training loss of {run.record.name} became {train_loss} in epoch {epoch + 1} "
            f"(lr {run.opt.param_groups[0]['lr']:.3g}); lower the learning rate or clip gradients"
        )
    has_val = run.data.has_validation
    split = "val" if has_val else "test"
    eval_loss, eval_acc = _score(run, split)
    run.bar.set_postfix(
        loss=f"{train_loss / train_seen:.3f}", **{f"{split}_acc": f"{eval_acc:.3f}"}
    )
    return EpochStats(
        epoch=epoch + 1,
        lr=run.opt.param_groups[0]["lr"],
        train_loss=train_loss / train_seen,
        train_acc=train_correct / train_seen,
        test_loss=None if has_val else eval_loss,
        test_acc=None if has_val else eval_acc,
        seconds=seconds,
        images_per_s=train_seen / seconds,
        val_loss=eval_loss if has_val else None,
        val_acc=eval_acc if has_val else None,
    )
