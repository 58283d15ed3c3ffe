"""The cost table of every zoo model: parameters, FLOPs, inference and training images/s, peak memory.

No training: only :func:`nlbook.bench.measure` on random 32×32 batches, with ratios to the ResNet baseline
(value / baseline; above 1 is more parameters, FLOPs or memory — and faster, for the images/s columns)::

    python benchmarks/compare_models.py                       # profile from $NLBOOK_PROFILE (full on CUDA)
    python benchmarks/compare_models.py --profile full --batch-size 256
    python benchmarks/compare_models.py --profile quick --models resnet,vit --repeats 3

On CUDA the steps run under bfloat16 autocast (float16 where the GPU has no bf16), as training does;
``--fp32`` turns that off. Timings depend on the machine and its load: the table says what it ran on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nlbook.bench import BenchResult, measure  # noqa: E402
from nlbook.comparison import format_table, summarize  # noqa: E402
from nlbook.runtime import get_profile, pick_device  # noqa: E402
from nlbook.zoo import build_model, model_names, model_spec  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default=None, help="quick | full (default: $NLBOOK_PROFILE, else full on CUDA)")
    p.add_argument("--models", default=",".join(model_names()), help="comma-separated zoo names (default: all)")
    p.add_argument("--device", default=None, help="cuda | cpu | mps (default: automatic)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the profile's batch size")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=10, help="timed steps (median)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--no-train", action="store_true", help="inference only")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--fp32", action="store_true", help="no autocast on CUDA")
    args = p.parse_args(argv)
    args.models = [n.strip() for n in args.models.split(",") if n.strip()]
    try:
        for n in args.models:
            model_spec(n)
    except ValueError as err:
        p.error(f"--models: {err}")
    if not args.models:
        p.error("--models is empty")
    repeated = sorted({n for n in args.models if args.models.count(n) > 1}, key=args.models.index)
    if repeated:  # one model twice would be measured twice and shown as two rows of one name
        p.error(f"--models lists {', '.join(repeated)} more than once")
    for flag, value, least in (
        ("--batch-size", args.batch_size, 1),
        ("--image-size", args.image_size, 1),
        ("--num-classes", args.num_classes, 1),
        ("--repeats", args.repeats, 1),
        ("--warmup", args.warmup, 0),
    ):
        if value is not None and value < least:
            p.error(f"{flag} must be >= {least}, got {value}")
    # the device and the profile ($NLBOOK_DEVICE / $NLBOOK_PROFILE by default), before anything is built
    try:
        args.device = pick_device(args.device)
    except (ValueError, RuntimeError) as err:
        p.error(f"--device: {err}")
    try:
        args.profile = get_profile(args.profile, args.device).name
    except ValueError as err:
        p.error(f"--profile: {err}")
    return args


def main(argv: list[str] | None = None) -> list[BenchResult]:
    """Measure every requested model, print the table, return the results."""
    args = parse_args(argv)
    device = pick_device(args.device)
    profile = get_profile(args.profile, device)
    batch = args.batch_size or profile.batch_size
    amp = None
    if device.type == "cuda" and not args.fp32:
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    results = []
    try:
        for name in args.models:
            model = build_model(name, num_classes=args.num_classes, image_size=args.image_size, profile=profile)
            results.append(
                measure(
                    model,
                    (batch, 3, args.image_size, args.image_size),
                    device=device,
                    train=not args.no_train,
                    warmup=args.warmup,
                    repeats=args.repeats,
                    memory=not args.no_memory,
                    amp_dtype=amp,
                    name=name,
                )
            )
            print(f"  measured {name}", flush=True)
            del model
    except BaseException:  # Ctrl-C or a failure: the models measured so far are still shown
        if results:
            base = "resnet" if any(r.name == "resnet" for r in results) else None
            print(format_table(summarize(results), baseline=base, title="(stopped: the models measured so far)"))
        print(f"compare_models.py: stopped after {len(results)} of {len(args.models)} models", file=sys.stderr)
        raise
    first = results[0]
    precision = "fp32" if amp is None else str(amp).removeprefix("torch.") + " autocast"
    title = (
        f"profile {profile.name} | batch {batch}×3×{args.image_size}×{args.image_size} | {first.hardware} | "
        f"{precision} | torch {torch.__version__} | median of {args.repeats} steps after {args.warmup} warm-up"
    )
    baseline = "resnet" if "resnet" in args.models else None  # ratios only where the baseline was measured
    print(format_table(summarize(results), baseline=baseline, title=title))
    print(f"FLOPs: forward pass per image, 2 per multiply-add. Memory: {first.memory_method}.")
    return results


if __name__ == "__main__":
    main()
