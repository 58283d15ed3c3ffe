"""Does the SASA-ResNet train at the speed of its FLOPs? Training images/s of the zoo's models on the CPU (ch. 5).

The SASA-ResNet (:func:`nlbook.local_attention.sasa_resnet`: the ResNet whose last two stages use 3×3
neighbourhood self-attention) has fewer FLOPs than the ResNet it is built from, yet its first implementation
trained five to eight times slower on the CPU. This script measures, for the quick-profile zoo models
(``nlbook.zoo.build_model(name, in_channels=C, image_size=32, profile="quick")``, 10 classes) — by default
``resnet`` and ``sasa_resnet``, with ``swin``, ``botnet`` and ``vit`` for context:

* **train images/s** — :func:`nlbook.bench.measure`: ``--warmup`` untimed steps, then the median of
  ``--repeats`` timed training steps (forward, cross-entropy, backward, SGD step) on one batch of
  ``--batch`` random images; also inference images/s (``eval()``, ``torch.inference_mode``). The models are
  measured in turn for ``--rounds`` rounds, rotating which goes first, and each keeps its best round: on a
  shared machine other processes only ever slow a round down.
* **× resnet** — the median over the rounds of a model's training images/s over the ResNet's *in the same
  round*: a ratio of two best rounds taken minutes apart on a shared machine would measure the changing load
  as much as the models. ``--check`` tests the SASA-ResNet's.
* **MFLOP/img** — :func:`nlbook.bench.count_flops`, forward pass, per image (2 per multiply–add of matrix
  products, convolutions and attention). The SASA layers are counted on a twin with ``impl="explicit"``: the
  default path does the same k²·d multiply–adds per pixel as element-wise products, which the counter does
  not see; the explicit path does them as (batched) matrix products, which it does.
* **GFLOP/s** — training FLOPs (forward and backward, :func:`~nlbook.bench.count_flops` with
  ``backward=True``) × training images/s: how fast a model turns its FLOPs into training.

``--threads`` sets :func:`torch.set_num_threads` (default 1: the target is per core, and one thread is what
the book's CPU records train with). ``--in-channels`` lists the input channel counts to measure (1: the
records' Fashion-MNIST padded to 32×32; 3: CIFAR-like). ``--check`` exits with status 1 if the SASA-ResNet
trains at less than ``--target`` (0.5) × the ResNet's images/s for any channel count. ``--record`` also writes
everything printed to ``benchmarks/results/sasa_speed_cpu.txt`` (or the path given); replacing a file in
``benchmarks/results/`` takes ``--force``.

Usage::

    python benchmarks/sasa_speed.py                     # 1 thread, 1 and 3 input channels, all five models
    python benchmarks/sasa_speed.py --models resnet,sasa_resnet --in-channels 1 --check
    python benchmarks/sasa_speed.py --record --force    # remakes benchmarks/results/sasa_speed_cpu.txt
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from nlbook.bench import BenchResult, count_flops, measure  # noqa: E402
from nlbook.local_attention import LocalSelfAttention2d  # noqa: E402
from nlbook.records import provenance  # noqa: E402
from nlbook.zoo import build_model, model_spec  # noqa: E402

DEFAULT_RECORD = ROOT / "benchmarks" / "results" / "sasa_speed_cpu.txt"


def counted_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(forward, training) FLOPs per image, the SASA layers counted on their ``impl="explicit"`` twin."""
    twin = copy.deepcopy(model)
    for layer in twin.modules():
        if isinstance(layer, LocalSelfAttention2d):
            layer.impl = "explicit"
    forward = count_flops(twin, x) / x.shape[0]
    train = count_flops(twin, x, backward=True) / x.shape[0]
    return forward, train


def measure_rounds(
    models: dict[str, torch.nn.Module], args: argparse.Namespace, channels: int
) -> tuple[dict[str, BenchResult], dict[str, list[float]]]:
    """``args.rounds`` rotating rounds: each model's fastest round (training and inference separately), and its
    training images/s in every round."""
    best: dict[str, BenchResult] = {}
    per_round: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for i in range(args.rounds):
        shift = i % len(names)  # rotate who goes first: the first of a round was disadvantaged on a busy machine
        for name in names[shift:] + names[:shift]:
            r = measure(
                models[name],
                (args.batch, channels, args.image_size, args.image_size),
                device="cpu",
                warmup=args.warmup,
                repeats=args.repeats,
                memory=False,
                name=name,
            )
            per_round[name].append(r.train_images_per_s or 0.0)
            prev = best.get(name)
            best[name] = (
                r
                if prev is None
                else replace(
                    prev,
                    infer_images_per_s=max(prev.infer_images_per_s, r.infer_images_per_s),
                    train_images_per_s=max(prev.train_images_per_s or 0.0, r.train_images_per_s or 0.0),
                )
            )
    return best, per_round


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet,sasa_resnet,swin,botnet,vit", help="comma-separated zoo names")
    parser.add_argument("--in-channels", default="1,3", help="comma-separated input channel counts")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per measurement (median)")
    parser.add_argument("--rounds", type=int, default=5, help="rotating measurement rounds (best kept)")
    parser.add_argument("--target", type=float, default=0.5, help="SASA / ResNet training images/s to reach")
    parser.add_argument("--check", action="store_true", help="exit 1 if the SASA-ResNet misses --target")
    parser.add_argument(
        "--record",
        nargs="?",
        const=str(DEFAULT_RECORD),
        default=None,
        metavar="PATH",
        help=f"also write the output to PATH (default {DEFAULT_RECORD.relative_to(ROOT)})",
    )
    parser.add_argument("--force", action="store_true", help="with --record: replace a record in benchmarks/results/")
    args = parser.parse_args(argv)
    # Every flag is checked here, before anything is built or measured.
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        try:
            model_spec(name)
        except ValueError as err:
            parser.error(f"--models: {err}")
        if names.count(name) > 1:
            parser.error(f"--models lists {name} more than once")
    for needed in ("resnet", "sasa_resnet"):
        if needed not in names:
            parser.error(f"--models must include {needed} (the ratio is SASA-ResNet / ResNet)")
    try:
        channel_counts = [int(c) for c in args.in_channels.split(",")]
    except ValueError:
        parser.error(f"--in-channels must be comma-separated ints, got {args.in_channels!r}")
    if len(set(channel_counts)) < len(channel_counts):
        parser.error(f"--in-channels lists a channel count more than once: {args.in_channels}")
    positive = {
        "--threads": args.threads,
        "--batch": args.batch,
        "--image-size": args.image_size,
        "--repeats": args.repeats,
        "--rounds": args.rounds,
    }
    for flag, value in [*positive.items(), *(("--in-channels", c) for c in channel_counts)]:
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if not 0 < args.target < float("inf"):
        parser.error(f"--target must be a finite number > 0, got {args.target}")
    if args.record:
        path = Path(args.record).resolve()
        if path.is_relative_to(DEFAULT_RECORD.parent) and path.exists() and not args.force:
            parser.error(f"--record would replace {path.relative_to(ROOT)}; pass --force to replace it")
        if not path.parent.is_dir():
            parser.error(f"--record: the folder {path.parent} does not exist")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")

    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    prov = provenance("cpu")
    machine = prov["machine"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    say(
        f"SASA-ResNet vs ResNet, training images/s on the CPU: quick-profile zoo models, {args.image_size}x"
        f"{args.image_size} images, batch {args.batch}, 10 classes, float32, {args.threads} thread(s)"
    )
    say(
        f"machine: {machine['cpu']}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, "
        f"torch {prov['torch']}, commit {(prov['git_commit'] or '?')[:8]}{' (dirty tree)' if prov['git_dirty'] else ''}"
        + (f", load average {load:.1f} at start" if load is not None else "")
    )
    say(
        f"images/s: nlbook.bench.measure, median of {args.repeats} steps after {args.warmup} warm-up, best of "
        f"{args.rounds} rotating rounds; x resnet: median over the rounds of the ratio within a round"
    )
    say("MFLOP/img: nlbook.bench.count_flops, forward, per image (SASA layers counted on impl='explicit')")
    start = time.perf_counter()
    ratios: dict[int, float] = {}
    for channels in channel_counts:
        models = {}
        for name in names:
            torch.manual_seed(0)
            models[name] = build_model(name, in_channels=channels, image_size=args.image_size, profile="quick")
        x = torch.randn(2, channels, args.image_size, args.image_size)
        flops = {name: counted_flops(model, x) for name, model in models.items()}
        best, per_round = measure_rounds(models, args, channels)
        ratio = {name: statistics.median(a / b for a, b in zip(per_round[name], per_round["resnet"])) for name in names}
        say()
        say(f"in_channels={channels}")
        header = (
            f"{'model':<12} {'params':>9} {'MFLOP/img':>10} {'train img/s':>12} {'x resnet':>9} "
            f"{'infer img/s':>12} {'train GFLOP/s':>14}"
        )
        say(header)
        say("-" * len(header))
        for name in names:
            r = best[name]
            train = r.train_images_per_s or 0.0
            forward, train_flops = flops[name]
            say(
                f"{name:<12} {r.params:>9,} {forward / 1e6:>10.1f} {train:>12.0f} {ratio[name]:>8.2f}x "
                f"{r.infer_images_per_s:>12.0f} {train_flops * train / 1e9:>14.2f}"
            )
        ratios[channels] = ratio["sasa_resnet"]
    met = all(ratio >= args.target for ratio in ratios.values())
    say()
    summary = ", ".join(f"{ratio:.2f}x at in_channels={c}" for c, ratio in ratios.items())
    verdict = "met" if met else "NOT met"
    say(f"target: SASA-ResNet >= {args.target}x the ResNet's training images/s: {verdict} ({summary})")
    end_load = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    say(f"total wall time {time.perf_counter() - start:.0f} s{end_load}")
    if args.record:
        path.write_text("\n".join([*lines, "", f"# Command: {prov['command']}", f"# Date: {prov['date']}"]) + "\n")
        print(f"written to {path}")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
