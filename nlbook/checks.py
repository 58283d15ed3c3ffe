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
* :func:`is_int`, :func:`is_real` — the one definition of "a number" for every hand-written check: any
  ``numbers.Integral`` / ``numbers.Real`` (``numpy.int64`` and ``numpy.float32`` too), never ``bool``.
* :func:`check_ints`, :func:`check_indices` — "one per stage" tuples of sizes, and tuples of stage indices.
* :func:`check_bool`, :func:`check_str`, :func:`check_sequence`, :func:`check_module`, :func:`check_device`,
  :func:`check_tensor`, :func:`check_image` — flags, labels, lists that must not be a bare string, models,
  device names, tensors of a given rank and dtype kind, and single (C, H, W) images (an (H, W, C) array gets
  the permute that fixes it, instead of a wrong picture).
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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "autocasting",
    "check_batchnorm_batch",
    "check_bool",
    "check_choice",
    "check_device",
    "check_float",
    "check_grid_input",
    "check_image",
    "check_image_batch",
    "check_indices",
    "check_int",
    "check_ints",
    "check_like_model",
    "check_module",
    "check_path_writable",
    "check_positive_int",
    "check_probability",
    "check_sequence",
    "check_str",
    "check_tensor",
    "dry_run",
    "is_int",
    "is_real",
    "to_pair",
]


def _got(value: Any) -> str:
    """``value!r (type)`` — the type matters when the repr hides it (``'3'`` vs ``3``, ``1.0`` vs ``1``)."""
    if isinstance(
        value, torch.Tensor
    ):  # its repr spans lines of numbers; the shape and dtype say what it is
        return f"a Tensor of shape {tuple(value.shape)} ({value.dtype})"
    text = " ".join(repr(value).split())
    if len(text) > 80:  # a tensor or a long list: its start says enough
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def is_int(value: Any) -> bool:
    """``True`` for any integer (``int``, ``numpy.int64``, ...) but not ``bool``: ``True`` as a width or a count
    is a mistake, never a 1."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """``True`` for any real number (``int``, ``float``, ``numpy.float32``, ...) but not ``bool``; NaN and
    infinities are real numbers here — range checks decide about them."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_bool(where: str, name: str, value: Any) -> bool:
    """``value`` as a ``bool``: ``True``/``False`` (or numpy's). A string such as ``"no"`` would be truthy and
    silently mean *yes*; ``0``/``1`` are refused too, so that a flag reads as one."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{where}: {name} must be True or False, got {_got(value)}")


def check_str(
    where: str, name: str, value: Any, *, optional: bool = False, empty: bool = False
) -> str | None:
    """``value`` if it is a string (non-empty unless ``empty``; ``None`` too if ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        expected = "a str or None" if optional else "a str"
        raise TypeError(f"{where}: {name} must be {expected}, got {_got(value)}")
    if not empty and not value:
        raise ValueError(f"{where}: {name} must be a non-empty str, got ''")
    return value


def check_sequence(
    where: str, name: str, value: Any, *, what: str = "items", min_len: int = 0
) -> list[Any]:
    """``value`` as a list: a list, tuple or other sequence of ``what`` — never a bare string (its letters
    would be taken one by one), a mapping, a tensor or a single object. At least ``min_len`` items."""
    if isinstance(value, str | bytes | Mapping | torch.Tensor) or not isinstance(
        value, Iterable
    ):
        raise TypeError(
            f"{where}: {name} must be a list (or tuple) of {what}, got {_got(value)}"
        )
    items = list(value)
    if len(items) < min_len:
        raise ValueError(
            f"{where}: {name} must hold at least {min_len} {what}, got {len(items)}"
        )
    return items


def check_ints(
    where: str,
    name: str,
    value: Any,
    *,
    low: int | None = 1,
    length: int | None = None,
    what: str = "ints",
) -> tuple[int, ...]:
    """``value`` as a tuple of plain ints (numpy integers too), each ``>= low``: a list or tuple, ``length``
    long when given (else at least one). A bare int or a string is refused — "one per stage" needs a tuple.
    ``what`` says what the numbers are (``"channel counts"``, ``"(C, H, W)"``)."""
    kind = "positive ints" if low == 1 else "ints" if low is None else f"ints >= {low}"
    size = f"{length} " if length is not None else ""
    expected = f"{kind}: a tuple of {size}{what}"
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{where}: {name} must be {expected}, got {_got(value)}")
    items = tuple(value)
    if not items or (length is not None and len(items) != length):
        raise ValueError(f"{where}: {name} must be {expected}, got {value!r}")
    if not all(is_int(v) for v in items):
        raise TypeError(f"{where}: {name} must be {expected}, got {value!r}")
    if low is not None and any(v < low for v in items):
        raise ValueError(f"{where}: {name} must be {expected}, got {value!r}")
    return tuple(int(v) for v in items)


def check_indices(
    where: str, name: str, value: Any, count: int, what: str = "stages"
) -> tuple[int, ...]:
    """``value`` as a tuple of distinct indices into ``count`` ``what`` (e.g. which stages get attention):
    a list or tuple (possibly empty) of ints in ``[0, count)``; a bare int, ``True`` or a repeat is refused."""
    expected = f"index the {count} {what}: a tuple of stage indices in 0..{count - 1}"
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{where}: {name} must {expected}, got {_got(value)}")
    items = tuple(value)
    if not all(is_int(v) and 0 <= v < count for v in items):
        raise ValueError(f"{where}: {name} must {expected}, got {value!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"{where}: {name} repeats an index: {value!r}")
    return tuple(int(v) for v in items)


def check_module(where: str, name: str, value: Any) -> nn.Module:
    """``value`` if it is a ``torch.nn.Module``."""
    if not isinstance(value, nn.Module):
        raise TypeError(
            f"{where}: {name} must be a torch.nn.Module, got {type(value).__name__}"
        )
    return value


def check_device(where: str, name: str, device: Any) -> torch.device | None:
    """``device`` (a ``torch.device``, a name such as ``"cuda:0"``, or ``None``) as a ``torch.device``: another
    type is a ``TypeError``, a name torch cannot read a ``ValueError``, and a CUDA/MPS device this machine does
    not have a ``RuntimeError`` (the words of :func:`nlbook.runtime.pick_device`) — here, not inside a tensor
    factory. ``meta`` is allowed (shapes without data)."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, str | torch.device):
        raise TypeError(
            f"{where}: {name} must be a torch.device, a device name like 'cpu' or 'cuda:0', or None, "
            f"got {_got(device)}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{where}: {name} {device!r} is not a device name; expected 'cpu', 'cuda', 'cuda:N', 'mps' or 'meta'"
        ) from None
    # A device this machine lacks is not a wrong value but a wrong machine: RuntimeError, as in
    # nlbook.runtime.pick_device, with the same words.
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"{where}: {name} {device!r} requested but CUDA is not available"
        )
    if (
        dev.type == "cuda"
        and dev.index is not None
        and dev.index >= torch.cuda.device_count()
    ):
        raise RuntimeError(
            f"{where}: {name} {device!r} requested but this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise RuntimeError(
            f"{where}: {name} {device!r} requested but Apple MPS is not available"
        )
    return dev


_KINDS = {
    "float": ("a floating-point", lambda t: t.is_floating_point()),
    "real": (
        "a real (integer or floating-point, not bool)",
        lambda t: not t.is_complex() and t.dtype != torch.bool,
    ),
    "integer": (
        "an integer",
        lambda t: (
            not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool
        ),
    ),
    "any": ("a", lambda t: True),
}


def check_tensor(
    where: str,
    name: str,
    x: Any,
    *,
    dims: int | tuple[int, ...] | None = None,
    kind: str = "any",
    shape: str = "",
) -> torch.Tensor:
    """``x`` if it is a tensor with ``dims`` dimensions (one number or several allowed) and a dtype of ``kind``
    (``"float"``, ``"real"``, ``"integer"`` or ``"any"``); ``shape`` spells the expected layout for the message
    (e.g. ``"(B, heads, N, N)"``). A numpy array or a list is refused with the call that converts it."""
    described, ok = _KINDS[kind]
    layout = f" {shape}" if shape else ""
    if not isinstance(x, torch.Tensor):
        convertible = isinstance(x, list | tuple) or type(x).__module__ == "numpy"
        hint = "; convert it with torch.as_tensor(...)" if convertible else ""
        raise TypeError(
            f"{where}: {name} must be a torch.Tensor{layout}, got {type(x).__name__}{hint}"
        )
    allowed = (dims,) if isinstance(dims, int) else dims
    if allowed is not None and x.dim() not in allowed:
        rank = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(
            f"{where}: {name} must be a {rank} tensor{layout}, got shape {tuple(x.shape)}"
        )
    if not ok(x):
        raise TypeError(
            f"{where}: {name} must be {described} tensor{layout}, got {x.dtype}"
        )
    return x


def check_image(
    x: Any,
    where: str,
    name: str = "image",
    *,
    channels: tuple[int, ...] | None = None,
    what: str = "image",
) -> torch.Tensor:
    """``x`` if it is one image in PyTorch's (C, H, W) layout with a real dtype (``channels``: the channel counts
    allowed, e.g. ``(1, 3)`` for a picture). An image in (H, W, C) layout — what PIL, numpy and matplotlib use —
    is refused with the permute that fixes it, instead of being drawn or computed as a wrong picture."""
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        raise ValueError(
            f"{where}: {name} must be one (C, H, W) {what}, got a batch of shape {tuple(x.shape)}; "
            f"pass one of them, e.g. {name}[0]"
        )
    check_tensor(where, name, x, dims=3, kind="real", shape=f"one (C, H, W) {what}")
    c, w = x.shape[0], x.shape[-1]
    if channels is not None and c not in channels:
        hint = (
            f"; it looks like an (H, W, C) image: pass {name}.permute(2, 0, 1)"
            if w in channels
            else ""
        )
        allowed = " or ".join(map(str, channels))
        raise ValueError(
            f"{where}: {name} must be (C, H, W) with C = {allowed} channels, got shape {tuple(x.shape)}{hint}"
        )
    if x.numel() == 0:
        raise ValueError(f"{where}: {name} is empty, shape {tuple(x.shape)}")
    return x


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
    # torch would answer for any object (False for 3): a wrong argument would pass unnoticed
    if not isinstance(device_type, str):
        raise TypeError(
            f"autocasting: device_type must be a device type such as 'cpu' or 'cuda', got {_got(device_type)}"
        )
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
    if channels is not None and not is_int(channels):
        raise TypeError(
            f"check_image_batch: channels must be an int or None, got {_got(channels)}"
        )
    if channels is not None and x.shape[1] != channels:
        # images from PIL/numpy come channels-last: say so, with the fix, rather than only "wrong channels"
        hint = (
            "; it looks like a channels-last (B, H, W, C) batch: pass x.permute(0, 3, 1, 2)"
            if x.shape[-1] == channels
            else ""
        )
        raise ValueError(
            f"{where} expects {channels} input channels (B, {channels}, H, W), "
            f"got {x.shape[1]} in shape {tuple(x.shape)}{hint}"
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
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where} expects a torch.Tensor, got {type(x).__name__}")
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
    size = to_pair(size, where)
    if tuple(x.shape[-2:]) != size:
        raise ValueError(
            f"{where} was built for {size[0]}×{size[1]} feature maps (its relative position parameters are "
            f"learned per grid), got {tuple(x.shape[-2:])}; build it with size={tuple(x.shape[-2:])}"
        )


def to_pair(size: int | Sequence[int], where: str) -> tuple[int, int]:
    """``size`` as ``(H, W)`` of plain ints; raise a clear error for anything but one or two positive integers
    (numpy integers too)."""
    if is_int(size):
        pair: tuple[Any, ...] = (size, size)
    elif isinstance(size, Sequence) and not isinstance(size, str):
        pair = tuple(size)
    else:
        pair = ()
    if len(pair) != 2 or any(not is_int(s) or s < 1 for s in pair):
        raise ValueError(
            f"{where}: size must be a positive int or a pair (H, W) of them, got {size!r}"
        )
    return int(pair[0]), int(pair[1])


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
    check_module(where, "model", model)
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{where}: the batch must be a torch.Tensor, got {type(x).__name__}"
        )
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
    if not isinstance(sizes, Mapping):
        raise TypeError(
            f"{where}: sizes must be the dict of BatchNorm sizes from dry_run, got {type(sizes).__name__}"
        )
    batch = check_int(where, "batch", batch)
    tight = [name for name, per_image in sizes.items() if batch * per_image <= 1]
    if tight:
        raise ValueError(
            f"{where}: BatchNorm in training needs more than one value per channel, but {what} gives layer "
            f"{tight[0]!r} a single value per channel ({batch} image, a 1×1 map there); use a batch of at least "
            "2 images (or larger images)"
        )
