"""Output that differs between the torch versions readers have, and how the checked cells stay stable (issue 17).

BatchNorm's repr names ``bias=`` only since torch 2.12; Colab and the declared lower bound (torch 2.4) print it
without. Chapter 3 prints a Non-local block, BatchNorm included, in a cell whose output nbval checks, so
``tests/nbval_sanitize.cfg`` removes that argument from both the stored and the fresh output. The rule is read here
with nbval's own parser and applied as nbval applies it.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
BN_OLD = "(bn): BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"  # torch < 2.12
BN_NEW = "(bn): BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)"


def sanitize(text: str) -> str:
    for regex, replace in get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text()):
        text = re.sub(regex, replace, text)
    return text


def checked_outputs() -> list[tuple[str, str]]:
    """(notebook, text) of every output of every cell tagged ``nbval-check-output``."""
    out = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if "nbval-check-output" in cell.get("metadata", {}).get("tags", []):
                for output in cell.get("outputs", []):
                    text = output.get("text") or output.get("data", {}).get("text/plain", "")
                    out.append((path.name, "".join(text)))
    return out


def test_batchnorm_repr_is_the_same_text_before_and_after_torch_2_12() -> None:
    assert BN_OLD != BN_NEW
    assert sanitize(BN_NEW) == sanitize(BN_OLD) == BN_OLD
    for cls in ("BatchNorm1d", "BatchNorm3d", "SyncBatchNorm"):
        assert sanitize(BN_NEW.replace("BatchNorm2d", cls)) == BN_OLD.replace("BatchNorm2d", cls)
    assert sanitize(BN_NEW.replace("affine=True, bias=True", "affine=False, bias=False")) == sanitize(
        BN_OLD.replace("affine=True", "affine=False")
    )


@pytest.mark.parametrize(
    "text",
    [
        "(qkv): Conv2d(16, 48, kernel_size=(1, 1), stride=(1, 1), bias=False)",
        "Linear(in_features=8, out_features=4, bias=False)",
        "torch.float32  bias=True   fused == explicit within 1e-05: True",
    ],
)
def test_other_bias_arguments_are_kept(text: str) -> None:
    """Only BatchNorm's ``bias=`` is version-dependent; a convolution without bias must still show it."""
    assert sanitize(text) == text


def test_this_torch_batchnorm_repr_sanitizes_to_the_stored_form() -> None:
    """Whatever this torch prints (with ``bias=`` from 2.12, without before), sanitized it is the older text."""
    assert sanitize("(bn): " + repr(nn.BatchNorm2d(64))) == BN_OLD


def test_no_checked_cell_prints_batchnorm_bias_after_sanitizing() -> None:
    lines = [(nb, ln) for nb, text in checked_outputs() for ln in sanitize(text).splitlines()]
    leftovers = [(nb, ln) for nb, ln in lines if re.search(r"Norm.*bias=", ln)]
    assert not leftovers, leftovers
