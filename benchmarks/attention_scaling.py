"""Time and peak memory of explicit vs fused self-attention over H×W feature maps (chapter 2).

Runs :class:`nlbook.attention.MultiHeadSelfAttention2d` (no positions) with ``impl="explicit"`` — the
(B, heads, HW, HW) weight matrix materialised — and ``impl="fused"`` — PyTorch's SDPA kernel, which never
stores it — on maps from 8×8 to 96×96, and prints one row per size with the explicit/fused ratios.

How the numbers are obtained:

* **Time** — fastest of up to ``--repeats`` forward passes (after one warm-up; at least two, fewer once 2 s are
  spent) under ``torch.inference_mode``; with ``--backward`` a forward + backward pass instead. The minimum
  because other processes on a shared machine only add time. On CUDA the clock is read after
  ``torch.cuda.synchronize``.
* **Peak memory** — bytes allocated by one step above what was allocated before it
  (:func:`nlbook.bench.peak_step_memory`): on CUDA ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``; on CPU the peak of the running sum of allocations minus frees that
  :mod:`torch.profiler` records with ``profile_memory=True`` (PyTorch's CPU allocator — every tensor and kernel
  workspace; not the process RSS). The inputs and parameters are not included.
* **Memory cap** — the explicit path is skipped (``-``) where its predicted footprint, two (B, heads, HW, HW)
  matrices (logits and weights; ×3 with ``--backward``), exceeds ``--cap-mib``.

Usage::

    python benchmarks/attention_scaling.py                 # CPU here, CUDA when present
    python benchmarks/attention_scaling.py --device cuda --dtype bfloat16 --batch 8 --backward
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nlbook.attention import MultiHeadSelfAttention2d, sdpa_backend  # noqa: E402
from nlbook.bench import peak_step_memory  # noqa: E402
from nlbook.runtime import pick_device  # noqa: E402

MIB = 2**20
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(step: Callable[[], object], device: torch.device, repeats: int, budget_s: float = 2.0) -> float:
    """Fastest of up to ``repeats`` timed calls (at least 2; stops early once ``budget_s`` is spent), after a warm-up.

    The minimum, not the median: on a shared machine other processes only ever add time, so the fastest run is
    the best estimate of what the kernel itself costs.
    """
    step()
    times: list[float] = []
    while len(times) < max(2, repeats) and (len(times) < 2 or sum(times) < budget_s):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def predicted_explicit_bytes(batch: int, heads: int, tokens: int, itemsize: int, backward: bool) -> int:
    """Logits + weights of the explicit path (×3 with backward: their gradients and the saved copy)."""
    return (3 if backward else 2) * batch * heads * tokens * tokens * itemsize


def measure_one(
    impl: str, size: int, args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> tuple[float, int | None]:
    """(median seconds, peak bytes) of one configuration."""
    torch.manual_seed(0)
    model = MultiHeadSelfAttention2d(args.dim, args.heads, impl=impl).to(device=device, dtype=dtype)
    x = torch.randn(args.batch, args.dim, size, size, device=device, dtype=dtype, requires_grad=args.backward)

    def step() -> None:
        if args.backward:
            model(x).float().square().mean().backward()
        else:
            model(x)

    ctx = nullcontext() if args.backward else torch.inference_mode()
    with ctx:
        seconds = best_seconds(step, device, args.repeats)
        peak = peak_step_memory(step, device)
    return seconds, peak


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every flag under its own name (argparse's usage error, exit status 2), before anything is measured."""
    try:
        args.device = str(pick_device(args.device))
    except (ValueError, RuntimeError) as err:
        parser.error(f"--device: {err}")
    if min(args.sizes) < 1:
        parser.error(f"--sizes must all be >= 1, got {min(args.sizes)}")
    repeated = sorted({s for s in args.sizes if args.sizes.count(s) > 1})
    if repeated:
        parser.error(f"--sizes lists {', '.join(map(str, repeated))} more than once")
    for flag, value in (("--batch", args.batch), ("--dim", args.dim), ("--heads", args.heads),
                        ("--repeats", args.repeats), ("--threads", args.threads)):  # fmt: skip
        if value is not None and value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if args.dim % args.heads:
        parser.error(f"--dim must be a multiple of --heads (each head gets dim / heads channels), got {args.dim} "
                     f"and {args.heads}")  # fmt: skip
    if args.cap_mib is not None and not 0 < args.cap_mib < float("inf"):  # NaN fails too
        parser.error(f"--cap-mib must be a finite number > 0, got {args.cap_mib}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 48, 64, 96], help="map side H = W")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=64, help="channels C of the map")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backward", action="store_true", help="time forward + backward instead of forward")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--cap-mib", type=float, default=None, help="memory cap for the explicit path")
    args = parser.parse_args(argv)
    check_args(parser, args)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if args.threads is not None:
        # On an oversubscribed machine every multi-threaded kernel waits for a descheduled thread; one thread
        # measures the kernels instead of the scheduler.
        torch.set_num_threads(args.threads)
    cap_mib = args.cap_mib if args.cap_mib is not None else (16384.0 if device.type == "cuda" else 2048.0)
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    head_dim = args.dim // args.heads
    probe = torch.zeros(1, args.heads, 4, head_dim, device=device, dtype=dtype)
    print(
        f"attention_scaling: torch {torch.__version__} on {where}; {args.dtype}; batch {args.batch}, "
        f"C={args.dim}, heads={args.heads} (head_dim {head_dim}); {'forward+backward' if args.backward else 'forward'}"
    )
    print(f"fused path kernel: {sdpa_backend(probe, probe, probe)}; explicit path capped at {cap_mib:.0f} MiB")
    print(
        "peak memory: "
        + (
            "torch.cuda.max_memory_allocated above the step's start"
            if device.type == "cuda"
            else "CPU allocator peak above the step's start, from torch.profiler(profile_memory=True)"
        )
    )
    header = (
        f"{'map':>7} {'HW':>6} | {'explicit ms':>11} {'fused ms':>9} {'time ×':>7} | "
        f"{'explicit MiB':>12} {'fused MiB':>9} {'memory ×':>9}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        tokens = size * size
        fused_s, fused_b = measure_one("fused", size, args, device, dtype)
        need = predicted_explicit_bytes(args.batch, args.heads, tokens, dtype.itemsize, args.backward)
        if need / MIB > cap_mib:
            exp_cells = f"{'-':>11} {fused_s * 1e3:>9.1f} {'-':>7} | {'-':>12}"
            mem_cells = f"{fused_b / MIB if fused_b is not None else float('nan'):>9.1f} {'-':>9}"
            print(f"{size:>3}×{size:<3} {tokens:>6} | {exp_cells} {mem_cells}  (explicit needs ~{need / MIB:.0f} MiB)")
            continue
        exp_s, exp_b = measure_one("explicit", size, args, device, dtype)
        mem_ratio = exp_b / fused_b if exp_b is not None and fused_b else float("nan")
        print(
            f"{size:>3}×{size:<3} {tokens:>6} | {exp_s * 1e3:>11.1f} {fused_s * 1e3:>9.1f} {exp_s / fused_s:>7.2f} | "
            f"{(exp_b or 0) / MIB:>12.1f} {(fused_b or 0) / MIB:>9.1f} {mem_ratio:>9.1f}"
        )


if __name__ == "__main__":
    main()
