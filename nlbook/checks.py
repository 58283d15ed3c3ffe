"""Every chapter — argument checks shared by every chapter's module.

Every public constructor and function of :mod:`nlbook` validates what it is given *before* any tensor moves,
and its error names the function, the parameter and what was expected — never an error from deep inside torch.
One place decides what a bad argument looks like and what the error says, so that every public function of
the package fails the same way: *before* any work is done, with an nlbook error that names the function, the
parameter and what was expected — never an opaque message from deep inside torch, or worse, a silently
wrong result (a negative gradient clip that flips the gradients, a NaN learning rate, a float64 batch that
reaches a float32 convolution).

* :func:`check_positive_int`, :func:`check_probability` — several keyword values at once (constructors).
* :func:`check_int`, :func:`check_float`, :func:`check_choice` — one scalar
  hyper-parameters: type first (``True`` is not an int here, ``"0.1"`` is not a number, NaN is never in
  range), then range. Each returns the value as a plain ``int``/``float``.
* :func:`check_path_writable` — an output path whose folder exists and is writable, checked before a run
  that would otherwise fail only when it tries to save its result.
* :func:`check_image_batch` — a (B, C, H, W) real floating-point batch with the expected channels and, with
  ``like=model``, the same dtype and device as the model's parameters; :func:`check_grid_input` adds the map
  size for blocks whose parameters are tied to one grid; :func:`to_pair` reads a size ``s`` or ``(H, W)``.
* :func:`dry_run` and :func:`check_batchnorm_batch` — one small forward pass before a run (output width,
  BatchNorm batch sizes), so that training or timing fails at once instead of after the data moved.

This module is the lowest layer: it imports only the standard library and torch.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "autocasting",
    "check_batchnorm_batch",
    "check_choice",
    "check_float",
    "check_grid_input",
    "check_image_batch",
    "check_int",
    "check_like_model",
    "check_path_writable",
    "check_positive_int",
    "check_probability",
    "dry_run",
    "to_pair",
]


def _got(value: Any) -> str:
    """``value!r (type)`` — the type matters when the repr hides it (``'3'`` vs ``3``, ``1.0`` vs ``1``)."""
    return f"{value!r} ({type(value).__name__})"


def check_int(
    where: str, name: str, value: Any, *, low: int | None = 1, high: int | None = None
) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (either bound ``None``: open on that side).

    Integers of any kind (``numpy.int64`` too) pass; ``bool``, floats (even ``2.0``) and strings do not.
    Raises ``TypeError`` for the wrong type, ``ValueError`` for a value out of range.
    """
    if low is None and high is None:
        expected = "an int"
    elif high is None:
        expected = f"an int >= {low}"
    elif low is None:
        expected = f"an int <= {high}"
    else:
        expected = f"an int in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be {expected}, got {_got(value)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{where}: {name} must be {expected}, got {value!r}")
    return value


def _interval(
    low: float | None, high: float | None, low_open: bool, high_open: bool
) -> str:
    if low is not None and high is not None:
        return (
            f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        )
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def check_float(
    where: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a ``float`` in the interval given by ``low``/``high`` (``*_open``: bound excluded).

    Real numbers (ints and numpy scalars too) pass; ``bool``, strings, tensors, NaN and infinities never do.
    ``TypeError`` for the wrong type, ``ValueError`` for the wrong value.
    """
    expected = (
        f"a finite real number {_interval(low, high, low_open, high_open)}".rstrip()
    )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be {expected}, got {_got(value)}")
    value = float(value)
    bad = not math.isfinite(value)  # a hyper-parameter is never NaN or infinite
    if low is not None:
        bad = bad or value < low or (low_open and value == low)
    if high is not None:
        bad = bad or value > high or (high_open and value == high)
    if bad:
        raise ValueError(f"{where}: {name} must be {expected}, got {value!r}")
    return value


def check_positive_int(where: str, **values: Any) -> None:
    """Raise ``ValueError`` unless every keyword value is an ``int`` ≥ 1 (``bool`` is not an int here)."""
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or value < 1
        ):
            raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")


def check_probability(where: str, **values: Any) -> None:
    """Raise ``ValueError`` unless every keyword value is a real number in [0, 1) (dropout-like: 1 would drop
    everything; NaN is never in range)."""
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not 0.0 <= value < 1.0
        ):
            raise ValueError(
                f"{where}: {name} must be a probability in [0, 1), got {value!r}"
            )


def _spell(choices: Iterable[Any]) -> str:
    """``'a', 'b' or 'c'``."""
    names = [repr(c) for c in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_choice(where: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # e.g. an unhashable value against a set-like container
        ok = False
    if not ok or isinstance(value, bool) != any(
        isinstance(c, bool) for c in choices if c == value
    ):
        raise ValueError(
            f"{where}: {name} must be {_spell(choices)}, got {_got(value)}"
        )
    return value


def check_path_writable(where: str, name: str, path: Any) -> Path:
    """``path`` as a :class:`~pathlib.Path` to a file that can be written: its folder exists and is writable,
    and it is not itself a folder. Call it *before* the work whose result goes there."""
    if isinstance(path, bool) or not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"{where}: {name} must be a file path (str or os.PathLike), got {_got(path)}"
        )
    p = Path(path).expanduser()
    if str(path) == "":
        raise ValueError(f"{where}: {name} must be a file path, got an empty string")
    if p.is_dir():
        raise ValueError(
            f"{where}: {name} must be a file path, but {str(p)!r} is a folder"
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(
            f"{where}: {name} must be a file path in an existing folder, but {str(parent)!r} does not exist"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{where}: {name}: the folder {str(parent)!r} is not writable"
        )
    return p


def _reference(like: nn.Module | torch.Tensor) -> torch.Tensor | None:
    """The tensor whose dtype and device a batch must match: ``like`` itself or the model's first floating
    parameter (else buffer); ``None`` for a model with neither (nothing to compare against)."""
    if isinstance(like, torch.Tensor):
        return like
    if not isinstance(like, nn.Module):
        raise TypeError(
            f"check_image_batch: like must be an nn.Module or a tensor, got {type(like).__name__}"
        )
    for t in (*like.parameters(), *like.buffers()):
        if t.is_floating_point():
            return t
    return None


def autocasting(device_type: str) -> bool:
    """Under ``torch.autocast`` the model's layers cast their inputs themselves: a dtype mismatch is fine."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def check_image_batch(
    x: Any,
    channels: int | None,
    where: str,
    *,
    like: nn.Module | torch.Tensor | None = None,
) -> None:
    """Raise a clear error unless ``x`` is a (B, C, H, W) real floating-point tensor with ``channels`` channels
    (``None``: any number).

    With ``like`` (a model or one of its parameters) ``x`` must also have the parameters' dtype (unless
    ``torch.autocast`` is on, which casts inside every layer) and device — a float64 batch into a float32
    model, or a CPU batch into a CUDA model, fails here naming both instead of inside a convolution.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{where} expects a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}"
        )
    if x.dim() != 4:
        raise ValueError(
            f"{where} expects a 4-D tensor (B, C, H, W), got shape {tuple(x.shape)}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{where} expects {channels} input channels (B, {channels}, H, W), "
            f"got {x.shape[1]} in shape {tuple(x.shape)}"
        )
    if x.is_complex() or not x.is_floating_point():
        raise TypeError(
            f"{where} expects a real floating-point tensor, got {x.dtype}; convert images with .float() "
            "(uint8 images: .float() / 255, then normalise)"
        )
    if like is not None:
        check_like_model(x, like, where)


def check_like_model(
    x: torch.Tensor, like: nn.Module | torch.Tensor, where: str
) -> None:
    """Raise a clear error unless tensor ``x`` has the dtype (unless ``torch.autocast`` is on) and the device of
    ``like``'s parameters (``like``: a model, or one of its parameters) — naming both, before a layer fails."""
    if (
        torch.compiler.is_compiling()
    ):  # compiled graphs guard on dtype and device themselves
        return
    ref = _reference(like)
    if ref is None:
        return
    if x.device != ref.device:
        raise ValueError(
            f"{where}: the batch is on {x.device} but the model's parameters are on {ref.device}; "
            f"move one of them (x.to({str(ref.device)!r}) or model.to({str(x.device)!r}))"
        )
    if x.dtype != ref.dtype and not autocasting(x.device.type):
        raise TypeError(
            f"{where}: the batch is {x.dtype} but the model's parameters are {ref.dtype}; "
            f"convert the batch with x.to({ref.dtype}) (or the model with model.to({x.dtype}))"
        )


def check_grid_input(
    x: Any,
    channels: int,
    size: tuple[int, int],
    where: str,
    *,
    like: nn.Module | torch.Tensor | None = None,
) -> None:
    """Blocks with relative-position parameters are tied to one grid: check channels and map size (and, with
    ``like``, dtype and device as :func:`check_image_batch` does)."""
    check_image_batch(x, channels, where, like=like)
    if tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(
            f"{where} was built for {size[0]}×{size[1]} feature maps (its relative position parameters are "
            f"learned per grid), got {tuple(x.shape[-2:])}; build it with size={tuple(x.shape[-2:])}"
        )


def to_pair(size: int | Sequence[int], where: str) -> tuple[int, int]:
    """``size`` as ``(H, W)``; raise a clear error for anything but one or two positive ints."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in pair
    ):
        raise ValueError(
            f"{where}: size must be a positive int or a pair (H, W) of them, got {size!r}"
        )
    return pair  # type: ignore[return-value]


def dry_run(
    model: nn.Module, x: torch.Tensor, where: str
) -> tuple[torch.Tensor, dict[str, int]]:
    """Run ``model`` once on the small batch ``x`` — eval mode, no gradients, its mode restored afterwards —
    and return the output and, for every BatchNorm layer, how many values per channel *one* image gives it
    (H·W of its input map; 1 for a (B, C) input).

    Callers compare the output with what they expect (e.g. logits for every class) and the BatchNorm sizes
    with the batch they will train on (:func:`check_batchnorm_batch`), before any real work starts. A torch
    error inside the model becomes a ``ValueError`` that names the caller and the batch.
    """
    sizes: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):

            def record(mod: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
                t = args[0]
                per_image = (
                    t.numel() // max(t.shape[0] * t.shape[1], 1) if t.dim() >= 2 else 1
                )
                sizes[name] = min(sizes.get(name, per_image), per_image)

            hooks.append(module.register_forward_pre_hook(record))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            try:
                out = model(x)
            except RuntimeError as err:  # torch's own shape/dtype errors; nlbook's checks raise Type/ValueError
                raise ValueError(
                    f"{where}: the model fails on a batch of {x.shape[0]} image(s) of shape {tuple(x.shape)} "
                    f"({type(err).__name__}: {err})"
                ) from err
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return out, sizes


def check_batchnorm_batch(
    where: str, sizes: dict[str, int], batch: int, what: str
) -> None:
    """BatchNorm in training normalises with the batch's own statistics, so it needs more than one value per
    channel: raise if ``batch`` images (described by ``what``) give any layer of ``sizes`` (from
    :func:`dry_run`) only one — e.g. one image whose map has shrunk to 1×1 — instead of torch's error mid-run."""
    tight = [name for name, per_image in sizes.items() if batch * per_image <= 1]
    if tight:
        raise ValueError(
            f"{where}: BatchNorm in training needs more than one value per channel, but {what} gives layer "
            f"{tight[0]!r} a single value per channel ({batch} image, a 1×1 map there); use a batch of at least "
            "2 images (or larger images)"
        )
