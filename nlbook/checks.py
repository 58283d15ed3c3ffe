"""Argument checks shared by every chapter's module (no chapter of its own).

Every public constructor and function of :mod:`nlbook` validates what it is given *before* any tensor moves,
and its error names the function, the parameter and what was expected — never an error from deep inside torch.
This module is the lowest layer of the package: it imports only torch and the standard library.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_image_batch", "check_positive_int", "check_probability"]


def check_positive_int(where: str, **values: Any) -> None:
    """Raise ``ValueError`` unless every keyword value is an ``int`` ≥ 1 (``bool`` is not an int here)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")


def check_probability(where: str, **values: Any) -> None:
    """Raise ``ValueError`` unless every keyword value is a real number in [0, 1)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"{where}: {name} must be a probability in [0, 1), got {value!r}")


def check_image_batch(x: torch.Tensor, channels: int | None, where: str) -> None:
    """Raise a clear error unless ``x`` is a (B, C, H, W) float tensor with ``channels`` channels."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where} expects a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{where} expects a 4-D tensor (B, C, H, W), got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{where} expects {channels} input channels (B, {channels}, H, W), "
            f"got {x.shape[1]} in shape {tuple(x.shape)}"
        )
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"{where} expects a floating-point tensor, got {x.dtype}; convert images with .float()")
