"""Training and inference images/s and peak memory: our ViT vs timm's, at the identical configuration (chapter 4).

Both models are built with the same shape (default: 32×32 images, patch 4, width 192, depth 6, 3 heads,
MLP ratio 4, q/k/v biases, class-token pooling, LayerNorm eps 1e-6, exact GELU, no dropout). timm's
parameter names coincide with ours, so the script first copies timm's weights into our model and checks
that both compute the same logits — the comparison is between two implementations of *one* function.

How the numbers are obtained: :func:`nlbook.bench.measure` (the book's one measuring function; its module
docstring has the details) — median of ``--repeats`` timed steps after a warm-up; inference in ``eval()``
under ``torch.inference_mode``; a training step is forward, cross-entropy, backward and an SGD step; peak
memory is resident tensors plus the allocator's peak during one step (on CPU from ``torch.profiler`` with
``profile_memory=True``). The two models are measured alternately for ``--rounds`` rounds, swapping which goes
first, and each keeps its best round: on a shared machine other processes only ever slow a round down.

Attention kernels: ours calls :func:`torch.nn.functional.scaled_dot_product_attention` (``impl="fused"``);
timm does too when its ``fused_attn`` switch is on (the default; printed). So a ratio near 1.0 is the honest
expectation — the script reports whatever it measures.

Usage::

    python benchmarks/vit_throughput.py                       # CPU, batch 64
    python benchmarks/vit_throughput.py --device cuda --batch 256 --amp bfloat16
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nlbook.bench import BenchResult, measure  # noqa: E402
from nlbook.runtime import pick_device  # noqa: E402
from nlbook.vit import VisionTransformer  # noqa: E402

MIB = 2**20
AMP = {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_models(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, timm) with the same configuration and the same weights."""
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    torch.manual_seed(0)
    theirs = TimmViT(
        img_size=args.image_size,
        patch_size=args.patch_size,
        num_classes=args.num_classes,
        embed_dim=args.dim,
        depth=args.depth,
        num_heads=args.heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        class_token=True,
        global_pool="token",
    )
    ours = VisionTransformer(
        image_size=args.image_size,
        patch_size=args.patch_size,
        num_classes=args.num_classes,
        embed_dim=args.dim,
        depth=args.depth,
        num_heads=args.heads,
        mlp_ratio=4.0,
        pool="cls",
        impl="fused",
    )
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same names, same shapes: same function
    return ours, theirs


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every flag under its own name (argparse's usage error, exit status 2), before any model is built."""
    for flag, value, least in (
        ("--batch", args.batch, 1),
        ("--image-size", args.image_size, 1),
        ("--patch-size", args.patch_size, 1),
        ("--dim", args.dim, 1),
        ("--depth", args.depth, 1),
        ("--heads", args.heads, 1),
        ("--num-classes", args.num_classes, 1),
        ("--repeats", args.repeats, 1),
        ("--warmup", args.warmup, 0),
        ("--rounds", args.rounds, 1),
        ("--threads", args.threads, 1),
    ):
        if value is not None and value < least:
            parser.error(f"{flag} must be >= {least}, got {value}")
    if args.image_size % args.patch_size:
        parser.error(f"--image-size must be a multiple of --patch-size, got {args.image_size} and {args.patch_size}")
    if args.dim % args.heads:
        parser.error(f"--dim must be a multiple of --heads, got {args.dim} and {args.heads}")
    try:
        args.device = str(pick_device(args.device))
    except (ValueError, RuntimeError) as err:
        parser.error(f"--device: {err}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="alternating measurement rounds (best kept)")
    parser.add_argument("--amp", choices=sorted(AMP), default="none", help="autocast dtype (none: float32)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    device = torch.device(args.device)
    amp_dtype = AMP[args.amp]

    import timm
    from timm.layers import use_fused_attn

    ours, theirs = build_models(args)
    x = torch.randn(4, 3, args.image_size, args.image_size)
    with torch.no_grad():
        max_diff = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    tokens = (args.image_size // args.patch_size) ** 2 + 1
    print(
        f"vit_throughput: torch {torch.__version__}, timm {timm.__version__}; "
        f"img {args.image_size}, patch {args.patch_size} ({tokens} tokens), dim {args.dim}, depth {args.depth}, "
        f"heads {args.heads}; batch {args.batch}; {args.amp if amp_dtype else 'float32'}"
    )
    print(
        f"same weights, same function: max |logit(ours) - logit(timm)| = {max_diff:.1e}; "
        f"attention: ours impl='fused' (F.scaled_dot_product_attention), timm fused_attn={use_fused_attn()}"
    )

    best: dict[str, BenchResult] = {}
    pair = [("nlbook", ours), ("timm", theirs)]
    for i in range(args.rounds):
        # Alternate which model goes first: the first of a pair was measurably disadvantaged on a busy machine.
        for name, model in pair if i % 2 == 0 else pair[::-1]:
            r = measure(
                model,
                (args.batch, 3, args.image_size, args.image_size),
                device=device,
                warmup=args.warmup,
                repeats=args.repeats,
                amp_dtype=amp_dtype,
                name=name,
            )
            prev = best.get(name)
            if prev is None:
                best[name] = r
            else:  # keep the fastest round of each mode, and the memory of the first (it does not vary)
                best[name] = replace(
                    prev,
                    infer_images_per_s=max(prev.infer_images_per_s, r.infer_images_per_s),
                    train_images_per_s=max(prev.train_images_per_s or 0.0, r.train_images_per_s or 0.0),
                )
    ours_r, timm_r = best["nlbook"], best["timm"]
    print(f"hardware: {ours_r.hardware}; params: nlbook {ours_r.params:,}, timm {timm_r.params:,}")
    if hasattr(os, "getloadavg"):  # context for the reader: on a shared machine other processes distort timings
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        print(f"system load average (1, 5, 15 min) at the end: {load} on {os.cpu_count()} logical CPUs")
    print(f"peak memory: {ours_r.memory_method}")
    header = f"{'metric':<22} {'nlbook':>12} {'timm':>12} {'nlbook/timm':>12}"
    print(header)
    print("-" * len(header))

    def row(label: str, a: float | None, b: float | None, fmt: str, higher_is_better: bool) -> None:
        if a is None or b is None:
            print(f"{label:<22} {'-':>12} {'-':>12} {'-':>12}")
            return
        ratio = a / b
        note = "" if higher_is_better else "  (lower is better)"
        print(f"{label:<22} {a:>12{fmt}} {b:>12{fmt}} {ratio:>11.2f}×{note}")

    row("train images/s", ours_r.train_images_per_s, timm_r.train_images_per_s, ",.0f", True)
    row("inference images/s", ours_r.infer_images_per_s, timm_r.infer_images_per_s, ",.0f", True)
    mib = lambda b: None if b is None else b / MIB  # noqa: E731
    row("train peak MiB", mib(ours_r.train_peak_bytes), mib(timm_r.train_peak_bytes), ",.1f", False)
    row("inference peak MiB", mib(ours_r.infer_peak_bytes), mib(timm_r.infer_peak_bytes), ",.1f", False)
    train_ratio = (ours_r.train_images_per_s or 0.0) / (timm_r.train_images_per_s or 1e-9)
    infer_ratio = ours_r.infer_images_per_s / timm_r.infer_images_per_s
    verdict = "met" if min(train_ratio, infer_ratio) >= 1.0 else "NOT met"
    print(
        f"target ≥ 1.0× timm in images/s: {verdict} (train {train_ratio:.2f}×, inference {infer_ratio:.2f}×; "
        f"best of {args.rounds} alternating rounds, median of {args.repeats} steps each)"
    )


if __name__ == "__main__":
    main()
