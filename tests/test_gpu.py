"""benchmarks/gpu_check.py: skips cleanly without CUDA, runs every zoo model when a GPU is there (marker ``gpu``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_skips_cleanly_without_cuda() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "CUDA is not available" in proc.stdout and "skipped" in proc.stdout


def test_forward_comparison_is_not_vacuous() -> None:
    """The CUDA-vs-CPU comparison code, run CPU-vs-CPU: zero error in float32, a real one under bfloat16."""
    from nlbook.data import load_dataset
    from nlbook.runtime import get_profile

    data = load_dataset("digits")
    fp32_err, amp_err, dtype = gpu_check.compare_forward("vit", get_profile("quick"), data, torch.device("cpu"))
    assert fp32_err == 0.0 and dtype == "bfloat16"
    assert 0.0 < amp_err < gpu_check.AMP_TOL  # bf16 rounding shows: the logits were not all zero


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_check_passes_on_cuda() -> None:
    assert gpu_check.main(["--epochs", "1", "--max-train", "512"]) == 0
