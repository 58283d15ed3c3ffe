"""What locality buys: FLOPs and peak memory of global vs window vs neighbourhood attention as the map grows (ch. 5).

Four layers of the same width (``--dim`` channels, ``--heads`` heads) on (batch, dim, S, S) maps:

* ``global``: :class:`nlbook.attention.MultiHeadSelfAttention2d` (every pixel attends to all S² pixels, fused
  SDPA kernel, no position term) — the cost grows with S⁴;
* ``global-explicit``: the same with the (S², S²) weights materialised (``impl="explicit"``), skipped where those
  matrices alone would exceed ``--max-gib``;
* ``window``: :class:`nlbook.local_attention.WindowAttention`, M×M windows (``--window``), relative position bias;
  ``window-shift``: the same with shifted windows (s = M//2; its mask makes the bias one tensor per window);
* ``sasa``: :class:`nlbook.local_attention.LocalSelfAttention2d`, k×k neighbourhoods (``--kernel``). It has no
  output projection (the paper has none; the other layers do), which saves it 2·dim² FLOPs per pixel.

The global, window and SASA costs grow as S⁴, S²·M² and S²·k²: at a fixed window or kernel the local layers
are linear in the number of pixels.

How the numbers are obtained:

* **FLOPs** — :func:`nlbook.bench.count_flops` (2 per multiply–add of matrix products, convolutions and
  attention; softmax, masks and element-wise work not counted), forward pass, per image.
* **Peak memory** — :func:`nlbook.bench.peak_step_memory` of one forward+backward step (``(layer(x)**2).mean()``
  then ``backward``) after a warm-up step: on CPU the peak of the running sum of bytes allocated minus freed by
  PyTorch's allocator during the step (:mod:`torch.profiler` allocation events), on CUDA the allocator's peak
  above the memory allocated when the step starts. Parameters and the input are not included.
* Ratios are against ``global`` at the same map size.

Usage::

    python benchmarks/local_attention_cost.py                      # sizes 8,16,32,64, batch 2, dim 64
    python benchmarks/local_attention_cost.py --sizes 8,16 --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nlbook.attention import MultiHeadSelfAttention2d  # noqa: E402
from nlbook.bench import count_flops, peak_step_memory  # noqa: E402
from nlbook.local_attention import LocalSelfAttention2d, WindowAttention  # noqa: E402
from nlbook.records import provenance  # noqa: E402

MIB = 2**20


def layers(dim: int, heads: int, window: int, kernel: int) -> dict[str, Callable[[], nn.Module]]:
    return {
        "global": lambda: MultiHeadSelfAttention2d(dim, heads, qkv_bias=True),
        "global-explicit": lambda: MultiHeadSelfAttention2d(dim, heads, qkv_bias=True, impl="explicit"),
        "window": lambda: WindowAttention(dim, window, heads),
        "window-shift": lambda: WindowAttention(dim, window, heads, shift_size=window // 2),
        "sasa": lambda: LocalSelfAttention2d(dim, dim, kernel, heads),
    }


def explicit_bytes(batch: int, heads: int, size: int) -> int:
    """Predicted bytes of the explicit path's (S², S²) tensors per head: weights and their gradient, float32."""
    n = size * size
    return 2 * batch * heads * n * n * 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,16,32,64", help="comma-separated map sides S")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--window", type=int, default=8, help="window side M (must divide every size)")
    parser.add_argument("--kernel", type=int, default=7, help="SASA neighbourhood side k")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-gib", type=float, default=0.5, help="skip global-explicit above this estimate")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    device = torch.device(args.device)
    prov = provenance(device)
    machine = prov["machine"]
    load = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    print(
        f"Attention cost vs map size: batch {args.batch}, {args.dim} channels, {args.heads} heads, window "
        f"{args.window}x{args.window}, SASA kernel {args.kernel}x{args.kernel}, float32, device {device.type}"
    )
    print(
        f"machine: {machine['cpu']}, {os.cpu_count()} logical CPUs, {machine['threads']} torch threads, "
        f"gpu {machine['gpu']}, torch {prov['torch']}, commit {(prov['git_commit'] or '?')[:8]}"
        f"{' (dirty tree)' if prov['git_dirty'] else ''}{load}"
    )
    print("FLOPs: nlbook.bench.count_flops, forward, per image; peak: nlbook.bench.peak_step_memory of fwd+bwd")
    header = (
        f"{'size':>7} {'N=HW':>6} {'layer':>16} {'GFLOP/img':>10} {'peak MiB':>9} {'flops/global':>13} "
        f"{'mem/global':>11}"
    )
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    builders = layers(args.dim, args.heads, args.window, args.kernel)
    for size in sizes:
        base: dict[str, float] = {}
        for name, build in builders.items():
            label = f"{size}x{size}"
            if name == "global-explicit" and explicit_bytes(args.batch, args.heads, size) > args.max_gib * 2**30:
                gib = explicit_bytes(args.batch, args.heads, size) / 2**30
                print(f"{label:>7} {size * size:>6} {name:>16}   skipped: (HW)^2 weights + gradient ~ {gib:.1f} GiB")
                continue
            torch.manual_seed(0)
            layer = build().to(device)
            x = torch.randn(args.batch, args.dim, size, size, device=device, requires_grad=True)
            flops = count_flops(layer, x.detach()) / args.batch

            def step(layer: nn.Module = layer, x: torch.Tensor = x) -> None:
                layer.zero_grad(set_to_none=True)
                x.grad = None
                layer(x).square().mean().backward()

            step()  # warm-up: thread pools, kernel selection, autograd machinery
            peak = peak_step_memory(step, device)
            if name == "global":
                base = {"flops": flops, "peak": peak or 0}
            mem = f"{peak / MIB:9.1f}" if peak is not None else f"{'n/a':>9}"
            ratio_mem = f"{peak / base['peak']:10.2f}x" if peak and base.get("peak") else f"{'n/a':>11}"
            print(
                f"{label:>7} {size * size:>6} {name:>16} {flops / 1e9:10.4f} {mem} "
                f"{flops / base['flops']:12.3f}x {ratio_mem}"
            )
            del layer, x
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
