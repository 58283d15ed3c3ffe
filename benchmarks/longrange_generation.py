"""How fast the long-range task is generated (target: >= 10,000 images/s on CPU).

    python benchmarks/longrange_generation.py [--n 20000] [--repeats 3]

Prints one row per setting: images/s (best of ``--repeats``) and the ratio to the 10k images/s target,
on CPU and, if present, on CUDA. Speed is measured here rather than asserted in tests (timings depend on
the machine and its load).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nlbook.longrange import LongRangeTask  # noqa: E402
from nlbook.runtime import device_name  # noqa: E402

TARGET = 10_000  # images/s on CPU (issue 10)


def images_per_second(task: LongRangeTask, n: int, repeats: int, device: torch.device) -> float:
    task.sample(min(n, 256), seed=0, device=device)  # warm-up
    best = float("inf")
    for r in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        task.sample(n, seed=r + 1, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="images per timed call")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per setting (best kept)")
    args = ap.parse_args(argv)
    for flag, value in (("--n", args.n), ("--repeats", args.repeats)):
        if value < 1:  # --repeats 0 would report n / inf = 0 images/s
            ap.error(f"{flag} must be >= 1, got {value}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    settings = [
        dict(image_size=16),
        dict(image_size=32),
        dict(image_size=32, noise=0.05),
        dict(image_size=64, glyph_size=5, num_glyphs=8),
        dict(image_size=64, glyph_size=5, num_glyphs=8, noise=0.05),
    ]
    print(f"torch {torch.__version__}; n = {args.n:,} images per call, best of {args.repeats}")
    print(f"{'device':<34} {'setting':<56} {'images/s':>12} {'× target':>9}")
    for device in devices:
        for kw in settings:
            rate = images_per_second(LongRangeTask(**kw), args.n, args.repeats, device)
            setting = ", ".join(f"{k}={v}" for k, v in kw.items())
            print(f"{device_name(device):<34} {setting:<56} {rate:>12,.0f} {rate / TARGET:>9.1f}")


if __name__ == "__main__":
    main()
