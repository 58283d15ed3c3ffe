"""Forward+backward time and peak memory of a non-local block: fused vs explicit vs timm (chapter 3).

Three implementations of the same function — the paper's embedded-Gaussian non-local block, exp(θᵀφ)
without temperature, no sub-sampling, ``inter_channels`` wide — on (batch, channels, S, S) maps:

* ``fused``: :class:`nlbook.nonlocal_block.NonLocalBlock2d` with ``impl="fused"`` (PyTorch SDPA flash kernel,
  never stores the (HW)×(HW) matrix);
* ``explicit``: the same block with ``impl="explicit"`` (logits and softmax weights materialised);
* ``timm``: :class:`timm.layers.NonLocalAttn` with ``use_scale=False`` and ``rd_channels=inter_channels``
  (``bmm`` + ``softmax``, also materialised).

How the numbers are obtained:

* **Each configuration runs in a fresh Python subprocess**, so one configuration's freed memory (which the C
  allocator may keep) cannot hide or inflate another's peak.
* **Peak memory (CPU)** — the process's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) after one
  forward+backward pass, minus its current resident set size (``VmRSS``) just before it: the memory that pass
  added on top of the model, its input and a warm-up on a tiny input. It is what the operating system saw —
  tensors, kernel workspaces, allocator overhead. (On CUDA: ``torch.cuda.max_memory_allocated`` minus the
  allocation before the pass.)
* **Time** — the fastest of up to 5 further forward+backward passes (at least 2; stops once 3 s are spent): on a
  shared machine other processes only ever add time, so the minimum is the best estimate of the cost itself.
* **Skipped** — ``explicit`` and ``timm`` at sizes whose (HW)² matrices alone (4 of them: logits, weights and
  their gradients) would exceed ``--max-gib``; the row then shows the estimate instead.

Usage::

    python benchmarks/nonlocal_memory.py                       # 14, 28, 56, 64, 112 at batch 8, 64 channels
    python benchmarks/nonlocal_memory.py --sizes 14,28 --batch 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

IMPLS = ("fused", "explicit", "timm")
MIB = 2**20


# ------------------------------------------------------------------------------------------ worker (subprocess)
def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _build(impl: str, channels: int, inter: int):
    import timm.layers
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    from nlbook.nonlocal_block import NonLocalBlock2d

    torch.manual_seed(0)
    if impl == "timm":
        return timm.layers.NonLocalAttn(channels, use_scale=False, rd_channels=inter)
    return NonLocalBlock2d(channels, inter, mode="embedded_gaussian", impl=impl)


def worker(cfg: dict) -> dict:
    """Measure one configuration; prints nothing else than the JSON result (read by the parent)."""
    import torch

    device = torch.device(cfg["device"])
    block = _build(cfg["impl"], cfg["channels"], cfg["inter"]).to(device)
    size, batch = cfg["size"], cfg["batch"]
    x = torch.randn(batch, cfg["channels"], size, size, device=device, requires_grad=True)

    def step() -> None:
        block.zero_grad(set_to_none=True)
        x.grad = None
        block(x).square().mean().backward()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # warm-up on a tiny input: thread pools, oneDNN primitives, autograd machinery — not the block's cost
    tiny = torch.randn(2, cfg["channels"], 4, 4, device=device, requires_grad=True)
    block(tiny).sum().backward()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        sync()
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        before = _rss_bytes()
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times: list[float] = []
    spent = time.perf_counter()
    while len(times) < 5 and (len(times) < 2 or time.perf_counter() - spent < 3.0):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return {"seconds": min(times), "peak_bytes": peak, "repeats": len(times)}


# ------------------------------------------------------------------------------------------ parent
def matrix_bytes(batch: int, size: int, itemsize: int = 4) -> int:
    """Predicted bytes of the explicit path's (HW)×(HW) tensors: logits, weights and both their gradients."""
    n = size * size
    return 4 * batch * n * n * itemsize


def machine_description(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f", {int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    desc = f"{cpu}, {os.cpu_count()} logical CPUs{mem}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.startswith("cuda"):
        desc = f"{torch.cuda.get_device_name(device)}; host {desc}"
    try:
        desc += f", load average {os.getloadavg()[0]:.1f} at start"
    except OSError:
        pass
    return desc


def run(cfg: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="14,28,56,64,112", help="comma-separated map sizes S (maps are S×S)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--inter-channels", type=int, default=32, help="θ/φ/g width (paper: channels / 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-gib", type=float, default=6.0, help="skip explicit/timm above this (HW)² footprint")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as they are measured, also when redirected
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers such as 14,28,56, got {args.sizes!r}")
    if not sizes:
        parser.error("--sizes is empty")
    if min(sizes) < 1:
        parser.error(f"--sizes must all be >= 1, got {min(sizes)}")
    repeated = sorted({s for s in sizes if sizes.count(s) > 1})
    if repeated:
        parser.error(f"--sizes lists {', '.join(map(str, repeated))} more than once")
    for flag, value in (("--batch", args.batch), ("--channels", args.channels),
                        ("--inter-channels", args.inter_channels)):  # fmt: skip
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if not 0 < args.max_gib < float("inf"):  # NaN fails too
        parser.error(f"--max-gib must be a finite number > 0, got {args.max_gib}")
    # Each configuration runs in a subprocess, which would only report "failed" for a device that is not there.
    import torch

    try:
        device = torch.device(args.device)
    except (RuntimeError, TypeError, ValueError):
        parser.error(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        parser.error(f"--device {args.device}: no such GPU on this machine")

    print(
        f"Non-local block (embedded Gaussian, no sub-sampling), forward+backward, batch {args.batch}, "
        f"{args.channels} channels, inter_channels {args.inter_channels}, float32, device {args.device}"
    )
    print(f"machine: {machine_description(args.device)}")
    print(
        "time: fastest of up to 5 passes after a first one; peak: ru_maxrss after one pass - VmRSS before it, "
        "each configuration in a fresh subprocess"
    )
    header = (
        f"{'size':>9} {'N=HW':>6} {'impl':>9} {'fwd+bwd ms':>11} {'peak MiB':>9} {'time/fused':>11} {'mem/fused':>10}"
    )
    print(header)
    print("-" * len(header))
    results: dict[tuple[int, str], dict] = {}
    wall = time.perf_counter()
    for size in sizes:
        fused = None
        for impl in IMPLS:
            if impl != "fused" and matrix_bytes(args.batch, size) > args.max_gib * 2**30:
                est = matrix_bytes(args.batch, size) / 2**30
                print(f"{size:>4}x{size:<4} {size * size:>6} {impl:>9}   skipped: (HW)^2 tensors ~ {est:.1f} GiB")
                continue
            cfg = {"impl": impl, "size": size, "batch": args.batch, "channels": args.channels,
                   "inter": args.inter_channels, "device": args.device}  # fmt: skip
            res = results[(size, impl)] = run(cfg)
            if "error" in res:
                print(f"{size:>4}x{size:<4} {size * size:>6} {impl:>9}   failed: {res['error']}")
                continue
            if impl == "fused":
                fused = res
            ms, mib = res["seconds"] * 1e3, res["peak_bytes"] / MIB
            t_ratio = f"{res['seconds'] / fused['seconds']:.2f}x" if fused else "-"
            m_ratio = f"{res['peak_bytes'] / max(fused['peak_bytes'], 1):.1f}x" if fused else "-"
            print(f"{size:>4}x{size:<4} {size * size:>6} {impl:>9} {ms:>11.1f} {mib:>9.1f} {t_ratio:>11} {m_ratio:>10}")
    load = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    print(f"total wall time {time.perf_counter() - wall:.0f} s{load}")

    # the targets, checked where measured
    target = 64 if 64 in sizes else max(sizes)
    f, e, t = (results.get((target, impl), {}) for impl in IMPLS)
    if "peak_bytes" in f and "peak_bytes" in e:
        ok = f["peak_bytes"] * 8 <= e["peak_bytes"]
        print(
            f"target at {target}x{target}: fused peak <= 1/8 explicit: {'PASS' if ok else 'FAIL'} "
            f"(explicit/fused = {e['peak_bytes'] / max(f['peak_bytes'], 1):.1f}x)"
        )
    if "seconds" in f and "seconds" in t:
        ok = f["seconds"] <= t["seconds"]
        print(
            f"target at {target}x{target}: fused time <= timm: {'PASS' if ok else 'FAIL'} "
            f"(timm/fused = {t['seconds'] / f['seconds']:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
