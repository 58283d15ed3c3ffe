"""Every chapter — where and how big a run is: device, run profile, dataset name, seeding, precision.

This module owns every ``NLBOOK_*`` choice, and the line every notebook prints at its top.

Two environment variables make a run explicit (each notebook prints both at the top):

* ``NLBOOK_PROFILE`` — ``quick`` (CI on 2 CPU cores: about a minute per notebook) or ``full`` (the real
  experiment on a GPU). Default: ``full`` when CUDA is available, else ``quick``.
* ``NLBOOK_DATASET`` — which data :func:`nlbook.data.load_dataset` loads (:func:`resolve_dataset_name`:
  ``cifar10`` by default; ``digits`` offline).
* ``NLBOOK_DEVICE`` — optional override of the automatic choice (CUDA, then MPS, then CPU).
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch

from nlbook.checks import check_int
from nlbook.version import __version__

__all__ = [
    "DATASETS",
    "PROFILES",
    "Profile",
    "RunContext",
    "autocast_dtype",
    "device_name",
    "get_profile",
    "pick_device",
    "resolve_dataset_name",
    "resolve_profile",
    "seed_everything",
    "setup",
]

DATASETS = ("cifar10", "fashion_mnist", "digits", "longrange")


@dataclass(frozen=True)
class Profile:
    """A training budget. Chapters scale their models and runs from these numbers, never ad hoc."""

    name: str
    epochs: int
    batch_size: int
    max_train: int | None  # cap on training images (None: all)
    max_test: int | None  # cap on test images (None: all)
    width: int  # base channel width for CNNs (stage widths are multiples of it)
    embed_dim: int  # token width for transformers
    depth: int  # transformer blocks


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        epochs=4,
        batch_size=64,
        max_train=None,
        max_test=400,
        width=16,
        embed_dim=64,
        depth=2,
    ),
    "full": Profile(
        "full",
        epochs=30,
        batch_size=256,
        max_train=None,
        max_test=None,
        width=64,
        embed_dim=192,
        depth=6,
    ),
}


def _mps_available() -> bool:
    return (
        getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available()
    )


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """``prefer`` or ``$NLBOOK_DEVICE`` if given, else CUDA, then Apple MPS, then CPU.

    A requested device must exist on this machine: ``cuda`` without a GPU, ``cuda:3`` on a one-GPU machine or
    ``mps`` off Apple silicon are errors (never a silent fallback), and ``meta`` (shapes without data) or
    other device types cannot train or time a model here.
    """
    source = "argument" if prefer is not None else "NLBOOK_DEVICE"
    prefer = prefer if prefer is not None else os.environ.get("NLBOOK_DEVICE") or None
    if prefer is not None:
        expected = "expected 'cpu', 'cuda', 'cuda:N' or 'mps'"
        try:
            device = torch.device(prefer)
        except (RuntimeError, TypeError, ValueError) as err:
            raise ValueError(
                f"unknown device {prefer!r} ({source}); {expected}"
            ) from err
        if device.type not in ("cpu", "cuda", "mps"):
            raise ValueError(
                f"device {prefer!r} ({source}) cannot run nlbook's models; {expected}"
            )
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {prefer!r} ({source}) requested but CUDA is not available"
            )
        if (
            device.type == "cuda"
            and device.index is not None
            and device.index >= torch.cuda.device_count()
        ):
            raise RuntimeError(
                f"device {prefer!r} ({source}) requested but this machine has {torch.cuda.device_count()} GPU(s)"
            )
        if device.type == "mps" and not _mps_available():
            raise RuntimeError(
                f"device {prefer!r} ({source}) requested but Apple MPS is not available (it needs macOS on Apple "
                "silicon); use 'cpu' or 'cuda'"
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """A human-readable name of the hardware behind ``device`` (GPU model, or CPU and thread count)."""
    if not isinstance(device, torch.device):
        raise TypeError(
            f"device_name expects a torch.device, got {type(device).__name__}"
        )
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"device_name: no hardware behind a {device.type!r} device; expected 'cpu', 'cuda' or 'mps'"
        )
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def get_profile(name: str | None = None, device: torch.device | None = None) -> Profile:
    """The named profile, else ``$NLBOOK_PROFILE``, else ``full`` on CUDA and ``quick`` elsewhere."""
    name = name or os.environ.get("NLBOOK_PROFILE")
    if name is None:
        device = device or pick_device()
        name = "full" if device.type == "cuda" else "quick"
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}; expected one of {sorted(PROFILES)} (set NLBOOK_PROFILE)"
        )
    return PROFILES[name]


def resolve_profile(profile: Profile | str | None) -> Profile:
    """A :class:`Profile` from itself, its name, or ``None`` (``$NLBOOK_PROFILE`` / device)."""
    if profile is None or isinstance(profile, str):
        return get_profile(profile)
    if not isinstance(profile, Profile):
        raise TypeError(
            f"profile must be an nlbook.runtime.Profile, a profile name or None, got {type(profile).__name__}"
        )
    return profile


def resolve_dataset_name(name: str | None = None) -> str:
    """``name``, else ``$NLBOOK_DATASET``, else ``cifar10``; raise on unknown names."""
    name = name or os.environ.get("NLBOOK_DATASET") or "cifar10"
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {DATASETS} (argument or NLBOOK_DATASET)"
        )
    return name


def autocast_dtype(
    device: torch.device, amp: bool | None = None, amp_dtype: torch.dtype | None = None
):
    """The one mixed-precision rule: the autocast dtype for ``device``, or ``None`` for full precision.

    ``amp=None`` means "on for CUDA, off elsewhere". An explicit ``amp_dtype`` wins; otherwise bfloat16
    (same exponent range as float32, so no loss scaling), except on CUDA cards without bfloat16 — a T4 —
    where it is float16 and training needs a gradient scaler.
    """
    # a device name ("cuda") here would fail below as an AttributeError far from the call; say what is expected
    if not isinstance(device, torch.device):
        raise TypeError(
            f"autocast_dtype: device must be a torch.device, got {device!r} ({type(device).__name__})"
        )
    if amp is not None and not isinstance(amp, bool):
        raise TypeError(
            f"autocast_dtype: amp must be True, False or None (automatic), got {amp!r}"
        )
    if amp_dtype is not None and amp_dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"autocast_dtype: amp_dtype must be None, torch.float16 or torch.bfloat16, got {amp_dtype!r}"
        )
    enabled = amp if amp is not None else device.type == "cuda"
    if not enabled:
        return None
    if amp_dtype is not None:
        return amp_dtype
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same.

    ``seed`` is an int in [0, 2**32 - 1] — the range NumPy accepts (Python and torch accept more).
    """
    seed = check_int("seed_everything", "seed", seed, low=0, high=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global generator that libraries still use
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class RunContext:
    """What a notebook runs on: printed at its top and passed to data loading and training."""

    device: torch.device
    profile: Profile
    dataset: str
    seed: int

    @property
    def hardware(self) -> str:
        return device_name(self.device)

    def describe(self) -> str:
        # two short lines: the book's pages are 88 characters wide
        return (
            f"nlbook {__version__} | torch {torch.__version__} | device {self.device.type} ({self.hardware})\n"
            f"profile {self.profile.name} | dataset {self.dataset} | seed {self.seed}"
        )


def setup(
    seed: int = 0,
    profile: str | None = None,
    dataset: str | None = None,
    device: str | None = None,
) -> RunContext:
    """Choose device, profile and dataset (arguments win over environment variables), seed, print them."""
    dev = pick_device(device)
    ctx = RunContext(
        dev, get_profile(profile, dev), resolve_dataset_name(dataset), seed
    )
    seed_everything(seed)
    try:  # small figures keep the committed notebooks small
        import matplotlib

        matplotlib.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80})
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        pass
    print(ctx.describe())
    return ctx
