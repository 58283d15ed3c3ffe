"""GPU check: every zoo model trains on CUDA with mixed precision and computes what it computes on the CPU.

Run it whenever a GPU is available (on a CPU-only machine it prints why it skipped and exits 0)::

    python benchmarks/gpu_check.py                     # all zoo models, quick profile, digits (no download)
    python benchmarks/gpu_check.py --record            # also write benchmarks/results/gpu_check_<date>_<card>.md
    python benchmarks/gpu_check.py --device cpu --models resnet --epochs 1 --max-train 256   # smoke, no CUDA
    python benchmarks/gpu_check.py --profile full --dataset cifar10 --models resnet vit

For every model of :mod:`nlbook.zoo`:

1. **CUDA vs CPU forward.** The model is built on the CPU (seed 0; parameters initialised to zero, such as the
   ViT head, get small random values so that no branch is silent), put in ``eval()`` mode and run on a fixed
   batch of 8 images; a copy on CUDA runs the same batch (a) in float32 with TF32 switched off and (b) under
   the training loop's autocast (bfloat16 where the card supports it, else float16). The error is
   ``max |cuda - cpu| / max |cpu|`` over the logits. Tolerances: **1e-4** for float32 (only summation order
   differs: cuDNN/cuBLAS kernels vs CPU kernels) and **5e-2** for autocast (bfloat16 keeps 8 mantissa bits,
   ≈ 0.4 % per rounding, compounded over the network's depth).
2. **Training step with AMP.** :func:`nlbook.train.fit` with the model's own recipe (``nlbook.zoo.recipe``)
   on the chosen dataset for ``--epochs`` epochs (default 2; mixed precision is on by default on CUDA). It
   must end with a finite loss. Reported: images/s of the *last* epoch (the first includes cuDNN autotuning
   and kernel launches warming up), and the peak CUDA memory allocated during the run
   (``torch.cuda.max_memory_allocated``; weights, optimizer state, activations and the device-resident
   dataset).

The table is printed with the card's name, the date and the library versions; the exit status is 1 when a
model fails a tolerance or ends with a non-finite loss. Every flag (and, with ``--record``, the report's path)
is checked before the first model; a report already there for today and this card is replaced only with
``--force``. With ``--record`` the report is rewritten (atomically) after every model, marked incomplete until
the last one, so an interrupted check keeps the models it finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import nlbook  # noqa: E402
from nlbook import zoo  # noqa: E402
from nlbook.data import load_dataset  # noqa: E402
from nlbook.records import write_atomically  # noqa: E402
from nlbook.runtime import DATASETS, PROFILES, device_name, get_profile, pick_device, seed_everything  # noqa: E402
from nlbook.train import fit  # noqa: E402

FP32_TOL = 1e-4
AMP_TOL = 5e-2
RESULTS = ROOT / "benchmarks" / "results"


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |out - ref| / max |ref|`` in float64 on the CPU."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


@torch.no_grad()
def wake_zero_parameters(model: torch.nn.Module, std: float = 0.02, seed: int = 0) -> None:
    """Give every all-zero parameter small random values (in place).

    Zero-initialised heads and residual-branch gains make a fresh model's logits 0 (ViT) or skip whole
    branches, and a device comparison of zeros proves nothing.
    """
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if not p.any():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype ``nlbook.train.fit`` picks: bfloat16 where supported, else float16 (e.g. a T4)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def compare_forward(name: str, profile, data, device: torch.device) -> tuple[float, float, str]:
    """(float32 error, autocast error, autocast dtype) of CUDA against CPU logits for zoo model ``name``."""
    seed_everything(0)
    model = zoo.build_model(
        name, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size, profile=profile
    ).eval()
    wake_zero_parameters(model)
    x = data.normalize(data.test_images[:8])
    with torch.no_grad():
        ref = model(x)
        model = model.to(device)
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            fp32 = model(x.to(device))
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        with torch.autocast(device.type, dtype=amp_dtype(device)):
            amp = model(x.to(device))
    return relative_error(fp32, ref), relative_error(amp.float(), ref), str(amp.dtype).removeprefix("torch.")


def train_step(name: str, profile, data, device: torch.device, epochs: int, max_train: int | None) -> dict:
    """Train ``name`` briefly on CUDA with its recipe (AMP on); return loss, images/s and peak memory."""
    seed_everything(0)
    model = zoo.build_model(
        name, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size, profile=profile
    )
    config = zoo.recipe(name, profile, epochs=epochs, max_train=max_train)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if cuda else 0
    record = fit(model, data, config, device=device, name=name, progress=False)
    peak = torch.cuda.max_memory_allocated(device) - base if cuda else float("nan")  # measured on CUDA only
    last = record.history[-1]
    return {
        "params": record.params,
        "train_loss": last.train_loss,
        "test_acc": record.test_acc,  # the last epoch's, or the test split's once where there is a validation split
        "images_per_s": last.images_per_s,
        "peak_mib": peak / 2**20,
        "batch": config.batch_size,
        "wall_s": record.wall_time_s,
    }


def run(args: argparse.Namespace, keep: Callable[[str], None] | None = None) -> tuple[str, bool]:
    """Check every requested model; return the report and whether everything passed. ``keep(report)`` is
    called after every model with the report so far (the ``--record`` file is written as models finish)."""
    device = torch.device(args.device)
    card = device_name(device)
    profile = get_profile(args.profile, device)
    data = load_dataset(args.dataset)
    names = args.models or list(zoo.model_names())
    header = [
        f"# GPU check — {card}",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC} | nlbook {nlbook.__version__} | torch {torch.__version__} | "
        f"CUDA {torch.version.cuda} | device {card} | autocast {amp_dtype(device)} | "
        f"profile {profile.name} | dataset {data.name} | {args.epochs} epochs",
        "",
        f"Forward error = max|cuda - cpu| / max|cpu| on 8 test images, eval mode; tolerances float32 {FP32_TOL:g} "
        f"(TF32 off), autocast {AMP_TOL:g}. Images/s: last training epoch of nlbook.train.fit with AMP. "
        "Peak: torch.cuda.max_memory_allocated during the run.",
        "",
        "| model | params | fp32 error | amp error (dtype) | train loss | test acc | batch | images/s | peak MiB "
        "| wall s | ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    print("\n".join(header), flush=True)
    rows, all_ok = [], True
    for name in names:
        fp32_err, amp_err, amp_name = compare_forward(name, profile, data, device)
        t = train_step(name, profile, data, device, args.epochs, args.max_train)
        ok = fp32_err <= FP32_TOL and amp_err <= AMP_TOL and math.isfinite(t["train_loss"])
        all_ok &= ok
        row = (
            f"| {name} | {t['params']:,} | {fp32_err:.1e} | {amp_err:.1e} ({amp_name}) | {t['train_loss']:.3f} | "
            f"{100 * t['test_acc']:.1f}% | {t['batch']} | {t['images_per_s']:,.0f} | {t['peak_mib']:,.0f} | "
            f"{t['wall_s']:.1f} | {'yes' if ok else 'NO'} |"
        )
        rows.append(row)
        print(row, flush=True)
        if keep is not None and len(rows) < len(names):
            keep("\n".join(header + rows + ["", f"INCOMPLETE: {len(rows)} of {len(names)} models checked."]) + "\n")
    footer = ["", "All models passed." if all_ok else "SOME MODELS FAILED (see the ok column)."]
    print("\n".join(footer))
    return "\n".join(header + rows + footer) + "\n", all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help=f"zoo models (default: all of {', '.join(zoo.model_names())})")
    parser.add_argument("--profile", default="quick", help="run profile sizing the models (default quick)")
    parser.add_argument("--dataset", default="digits", help="digits (bundled, default), cifar10 or longrange")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=None, help="cap on training images")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/gpu_check_<date>_<card>.md")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only smoke-tests this script")
    parser.add_argument("--force", action="store_true", help="with --record: replace today's report for this card")
    args = parser.parse_args(argv)
    check_args(parser, args)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine — skipped, nothing was measured.")
        return 0
    path = None
    if args.record:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(torch.device(args.device))).strip("-").lower()
        path = RESULTS / f"gpu_check_{dt.date.today():%Y-%m-%d}_{slug}.md"
        if path.exists() and not args.force:
            parser.error(f"{path.relative_to(ROOT)} exists (today's report for this card); pass --force to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)

    def keep(report: str) -> None:
        write_atomically(path, lambda f: f.write(report), text=True)

    t0 = time.perf_counter()
    report, ok = run(args, keep if path is not None else None)
    print(f"gpu_check: {time.perf_counter() - t0:.0f} s")
    if path is not None:
        keep(report)
        print(f"written: {path.relative_to(ROOT)}")
    return 0 if ok else 1


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every flag under its own name (argparse's usage error, exit status 2), before the first model."""
    names = args.models or list(zoo.model_names())
    unknown = [n for n in names if n not in zoo.model_names()]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(zoo.model_names())}")
    repeated = sorted({n for n in names if names.count(n) > 1}, key=names.index)
    if repeated:
        parser.error(f"--models lists {', '.join(repeated)} more than once")
    if args.profile not in PROFILES:
        parser.error(f"--profile must be one of {', '.join(PROFILES)}, got {args.profile!r}")
    if args.dataset not in DATASETS:
        parser.error(f"--dataset must be one of {', '.join(DATASETS)}, got {args.dataset!r}")
    for flag, value in (("--epochs", args.epochs), ("--max-train", args.max_train)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    try:
        device = torch.device(args.device)
    except (RuntimeError, TypeError, ValueError):
        parser.error(f"--device must be cuda, cuda:N or cpu, got {args.device!r}")
    if device.type not in ("cuda", "cpu"):
        parser.error(f"--device must be cuda, cuda:N or cpu, got {args.device!r}")
    if args.record and device.type != "cuda":  # the results folder holds GPU measurements
        parser.error("--record is for CUDA runs (the results folder holds GPU measurements)")
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            pick_device(device)
        except RuntimeError as err:
            parser.error(f"--device: {err}")


if __name__ == "__main__":
    sys.exit(main())
