"""The full-run record: every zoo model trained on the same data, budget and recipe, and measured.

On a GPU, the book's comparison at full size (CIFAR-10, the ``full`` profile)::

    python benchmarks/run_all.py                      # all models, seed 0, writes benchmarks/results/
    python benchmarks/run_all.py --seeds 3            # seeds 0, 1, 2 (mean ± std in the table)

Here on a CPU, the same code at a tiny budget (a few minutes on 2 cores), written outside the repository::

    python benchmarks/run_all.py --profile quick --dataset digits --seeds 1 --out /tmp/run_all_smoke

Each run writes a record in the book's one format (``nlbook-record/1``, :mod:`nlbook.records`: provenance,
dataset, one arm per model with its spec, recipe, measured cost and every seed's per-epoch history), plus the
summary table and the targets below, as ``zoo_benchmark__<dataset>_<profile>_<device>[_tag].json``, and a
``.csv`` of the summary table. Full-profile CIFAR-10 runs go to ``benchmarks/results/`` (commit them); any other
run goes to ``benchmarks/results/tmp/``, which git ignores, unless ``--out`` names a folder. An existing record is
never replaced: a name already taken gets a date-time suffix. Each run is trained for the profile's fixed budget
(the targets are about time, not convergence); ``converged`` says whether it met the records' criterion anyway.
Converged accuracies come from ``benchmarks/converge.py``.

Every flag and both output paths are checked before anything is loaded or trained. Each finished (model, seed)
run is written at once, atomically, to a folder of finished runs (``<record>.json.runs/`` beside the record; in
``benchmarks/results/tmp/`` for a record that goes to ``benchmarks/results/``): Ctrl-C or a crash loses at most
the run in flight, the script says where the finished ones are, and the same command run again reuses them. The
folder's runs are removed once the record holding them is written.

Targets (issue 7; on a Colab-class GPU, full profile, CIFAR-10): the CNN baseline reaches ≥ 93 % test
accuracy and the ViT ≥ 85 %, each within 10 minutes of training, and at least one hybrid reaches the
baseline. "Within 10 minutes" is time-to-accuracy, as DAWNBench measures it: the training time (evaluation
excluded) until the test accuracy first reaches the threshold, for every seed. The script records what it
measures and whether each target was met; it invents nothing.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import re
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import nlbook  # noqa: E402
from nlbook.bench import BenchResult  # noqa: E402
from nlbook.checks import check_path_writable  # noqa: E402
from nlbook.comparison import ModelRun, benchmark_model, format_table, summarize, time_to_accuracy  # noqa: E402
from nlbook.data import ImageDataset, load_dataset  # noqa: E402
from nlbook.records import CONVERGENCE, FORMAT, FinishedRuns, provenance, run_entry, write_atomically, write_record  # noqa: E402
from nlbook.runtime import DATASETS, PROFILES, device_name, get_profile, pick_device, resolve_dataset_name  # noqa: E402
from nlbook.zoo import model_names  # noqa: E402

EXPERIMENT = "zoo_benchmark"
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {
    # name: (model or strategy, accuracy threshold or None for "≥ baseline", training time limit in s)
    "cnn_baseline_93": ("resnet", 0.93, 600.0),
    "vit_85": ("vit", 0.85, 600.0),
    "hybrid_at_or_above_baseline": ("hybrid", None, None),
}
CSV_FIELDS = (
    "model",
    "strategy",
    "params",
    "flops_forward",
    "infer_images_per_s",
    "train_images_per_s",
    "infer_peak_bytes",
    "train_peak_bytes",
    "acc_mean",
    "acc_std",
    "acc_min",
    "acc_max",
    "n_seeds",
    "train_wall_s",
)


def whole_training_split(data: ImageDataset) -> ImageDataset:
    """``data`` with its validation split (Fashion-MNIST, CIFAR-10) folded back into the training images.

    This script trains a fixed budget and chooses nothing with what it measures, so it needs no validation
    split: every model trains on the whole training split and is scored on the test split after every epoch,
    the way DAWNBench measures time-to-accuracy (and what its record's per-epoch ``test_acc`` holds).
    """
    if not data.has_validation:
        return data
    return replace(
        data,
        train_images=torch.cat([data.train_images, data.val_images]),
        train_labels=torch.cat([data.train_labels, data.val_labels]),
        val_images=None,
        val_labels=None,
    )


def hardware_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "device": str(device),
        "name": device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": props.name,
            "gpu_memory_GiB": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "bf16": torch.cuda.is_bf16_supported(),
        }
    return info


def check_targets(
    rows: list[dict[str, Any]], runs: list[dict[str, Any]], profile: str, dataset: str
) -> dict[str, dict[str, Any]]:
    """Each target: what it asks, what was measured, and ``met`` (``None`` if not measurable in this run).

    An accuracy target "≥ X within T seconds" is met when *every* seed's time-to-accuracy
    (:func:`nlbook.comparison.time_to_accuracy`: training seconds until the test accuracy first reaches X) is at
    most T. The mean final accuracy and the mean training wall time are recorded beside it.
    """
    by_name = {r["model"]: r for r in rows}
    applies = profile == "full" and dataset == "cifar10"
    base = by_name.get("resnet", {}).get("acc_mean")
    out: dict[str, dict[str, Any]] = {}
    for target, (who, threshold, seconds) in TARGETS.items():
        entry: dict[str, Any] = {"applies_to_this_run": applies, "threshold": threshold, "time_limit_s": seconds}
        if who == "hybrid":
            hybrids = {r["model"]: r.get("acc_mean") for r in rows if r.get("strategy") == "hybrid"}
            entry |= {"baseline": base, "measured": hybrids}
            measured = [a for a in hybrids.values() if a is not None]
            entry["met"] = None if base is None or not measured else any(a >= base for a in measured)
        else:
            row = by_name.get(who, {})
            times = [time_to_accuracy(r["history"], threshold) for r in runs if r["name"] == who]
            entry |= {
                "model": who,
                "measured": row.get("acc_mean"),
                "train_wall_s": row.get("train_wall_s"),
                "time_to_accuracy_s": times,
            }
            entry["met"] = None if not times else all(t is not None and t <= seconds for t in times)
        out[target] = entry
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "device"


def output_stem(dataset: str, profile: str, device: torch.device, tag: str | None) -> str:
    """``zoo_benchmark__<dataset>_<profile>_<device>[_tag]``: what a run's files are called."""
    hw = "cpu" if device.type == "cpu" else _slug(device_name(device))
    return f"{EXPERIMENT}__{dataset}_{profile}_{hw}" + (f"_{_slug(tag)}" if tag else "")


def output_paths(out_dir: Path, dataset: str, profile: str, device: torch.device, tag: str | None) -> tuple[Path, Path]:
    """``zoo_benchmark__<dataset>_<profile>_<device>[_tag].json/.csv`` in ``out_dir``; a date-time suffix avoids
    overwriting an earlier run."""
    stem = output_stem(dataset, profile, device, tag)
    if (out_dir / f"{stem}.json").exists() or (out_dir / f"{stem}.csv").exists():
        stem += dt.datetime.now().strftime("_%Y%m%d%H%M%S")
    return out_dir / f"{stem}.json", out_dir / f"{stem}.csv"


def _arms(runs: list[ModelRun], profile: Any) -> list[dict[str, Any]]:
    """One ``nlbook-record/1`` arm per model: spec, recipe (without the seed), measured cost and its seeds' runs."""
    arms: dict[str, dict[str, Any]] = {}
    for run in runs:
        config = {k: v for k, v in run.config.items() if k != "seed"}
        arm = arms.setdefault(
            run.name,
            {
                "name": run.name,
                "label": run.name,
                "x": None,
                "strategy": run.strategy,
                "model_spec": {"builder": "nlbook.zoo.build_model", "name": run.name, "profile": asdict(profile)},
                "train_config": config,
                "params": run.cost.params if run.cost is not None else None,
                "cost": run.cost.to_dict() if run.cost is not None else None,
                "runs": [],
            },
        )
        arm["runs"].append(run_entry(run.seed, run.history, run.train_wall_s))
    return list(arms.values())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, every flag and output path checked under the flag's own name (argparse's usage error,
    exit status 2) before anything is loaded or trained. Resolves ``device``, ``profile`` and ``dataset`` (their
    defaults come from the environment) and sets ``out``, ``json_path``, ``csv_path`` and ``runs`` (the folder
    of finished runs)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profile", default=None, help="quick | full (default: $NLBOOK_PROFILE, else full on CUDA)")
    p.add_argument("--dataset", default=None, help="cifar10 | digits (default: $NLBOOK_DATASET, else cifar10)")
    p.add_argument("--models", default=",".join(model_names()), help="comma-separated zoo names (default: all)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds, 0..N-1 (default 1)")
    p.add_argument("--device", default=None, help="cuda | cpu | mps (default: automatic)")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    p.add_argument("--max-train", type=int, default=None, help="override the profile's cap on training images")
    p.add_argument("--max-test", type=int, default=None, help="override the profile's cap on test images")
    p.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
    p.add_argument("--channels-last", action="store_true", help="train in channels_last memory format")
    p.add_argument("--compile", action="store_true", help="train a torch.compile'd model")
    p.add_argument("--repeats", type=int, default=10, help="timed steps for images/s (median)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: see the module docstring)")
    p.add_argument("--tag", default=None, help="suffix of the output file names")
    args = p.parse_args(argv)
    if args.profile is not None and args.profile not in PROFILES:
        p.error(f"--profile must be one of {', '.join(PROFILES)}, got {args.profile!r}")
    if args.dataset is not None and args.dataset not in DATASETS:
        p.error(f"--dataset must be one of {', '.join(DATASETS)}, got {args.dataset!r}")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names:
        p.error("--models is empty")
    unknown = [n for n in names if n not in model_names()]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(model_names())}")
    repeated = sorted({n for n in names if names.count(n) > 1}, key=names.index)
    if repeated:  # one model twice would be trained twice and summarised as two rows of one name
        p.error(f"--models lists {', '.join(repeated)} more than once")
    args.models = names
    for flag, value, least in (
        ("--seeds", args.seeds, 1),
        ("--epochs", args.epochs, 1),
        ("--max-train", args.max_train, 1),
        ("--max-test", args.max_test, 1),
        ("--batch-size", args.batch_size, 1),
        ("--repeats", args.repeats, 1),
        ("--warmup", args.warmup, 0),
    ):
        if value is not None and value < least:
            p.error(f"{flag} must be >= {least}, got {value}")
    # the device, and the defaults $NLBOOK_DEVICE/_PROFILE/_DATASET stand for, before anything is loaded
    for flag, resolve in (
        ("--device", lambda: pick_device(args.device)),
        ("--profile", lambda: get_profile(args.profile, args.device).name),
        ("--dataset", lambda: resolve_dataset_name(args.dataset)),
    ):
        try:
            setattr(args, flag[2:], resolve())
        except (ValueError, RuntimeError) as err:
            p.error(f"{flag}: {err}")
    # Where everything goes, decided and checked before anything is loaded or trained.
    if args.out is None:
        full = args.profile == "full" and args.dataset == "cifar10"
        args.out = RESULTS if full else RESULTS / "tmp"
        args.out.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out must be a folder, but {args.out} is a file")
    if not args.out.exists():
        if not args.out.expanduser().parent.is_dir():
            p.error(f"--out must be a folder in an existing folder, but {args.out.parent} does not exist")
        args.out.mkdir()
    args.json_path, args.csv_path = output_paths(args.out, args.dataset, args.profile, args.device, args.tag)
    for path in (args.json_path, args.csv_path):
        try:
            check_path_writable("run_all.py", "--out", path)
        except (ValueError, PermissionError) as err:
            p.error(str(err).removeprefix("run_all.py: "))
    # The finished runs: never among the records; named without output_paths' date-time suffix, so that the
    # same command run again finds them.
    scratch = RESULTS / "tmp" if args.out.resolve() == RESULTS.resolve() else args.out
    args.runs = scratch / f"{output_stem(args.dataset, args.profile, args.device, args.tag)}.runs"
    if args.runs.exists() and not args.runs.is_dir():
        p.error(f"the folder of finished runs {args.runs} is a file; move it, or choose another --out")
    return args


def _run_from_dict(d: dict[str, Any]) -> ModelRun:
    """A :class:`ModelRun` back from its ``to_dict()`` (a finished run read from disk)."""
    cost = d["cost"]
    if cost is not None:
        cost = BenchResult(**{**cost, "image_shape": tuple(cost["image_shape"])})
    return ModelRun(**{**d, "cost": cost})


def _reuse(finished: FinishedRuns, name: str, seed: int, identity: dict[str, Any]) -> ModelRun | None:
    """The finished run of ``name`` and ``seed`` with today's identity, or ``None`` (then it trains)."""
    saved = finished.get(f"{name}__seed{seed}", identity)
    if saved is None:
        return None
    try:
        return _run_from_dict(saved)
    except (ValueError, KeyError, TypeError) as err:  # unreadable: train again
        print(f"  ignoring the finished run of {name} seed {seed}: {err}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> Path:
    """Run the comparison, print its table, write the JSON and CSV; return the JSON's path."""
    args = parse_args(argv)
    device = args.device
    profile = get_profile(args.profile, device)
    json_path, csv_path = args.json_path, args.csv_path
    finished = FinishedRuns(args.runs)
    data = whole_training_split(load_dataset(args.dataset, device=device))
    overrides = {
        key: value
        for key, value in (
            ("epochs", args.epochs),
            ("max_train", args.max_train),
            ("max_test", args.max_test),
            ("batch_size", args.batch_size),
        )
        if value is not None
    }
    if args.channels_last:
        overrides["channels_last"] = True
    if args.compile:
        overrides["compile"] = True
    seeds = list(range(args.seeds))
    hardware = hardware_info(device)
    print(
        f"nlbook {nlbook.__version__} | torch {torch.__version__} | {hardware['name']} | profile {profile.name} | "
        f"dataset {data.name} | models {', '.join(args.models)} | seeds {seeds}",
        flush=True,
    )
    if finished.count():
        print(f"resuming: {finished.count()} finished run(s) in {finished.folder} (reused where unchanged)")

    start = time.perf_counter()
    runs = []
    try:
        for name in args.models:
            for seed in seeds:
                identity = {
                    "dataset": data.name,
                    "profile": asdict(profile),
                    "overrides": overrides,
                    "device": str(device),
                    "cost": seed == seeds[0],
                    "warmup": args.warmup,
                    "repeats": args.repeats,
                    "torch": torch.__version__,
                }
                run = _reuse(finished, name, seed, identity)
                reused = run is not None
                if run is None:
                    run = benchmark_model(
                        name,
                        data,
                        profile=profile,
                        device=device,
                        seed=seed,
                        cost=seed == seeds[0],  # cost does not depend on the seed
                        warmup=args.warmup,
                        repeats=args.repeats,
                        **overrides,
                    )
                    finished.put(f"{name}__seed{seed}", identity, run.to_dict())
                runs.append(run)
                print(
                    f"  {name:16s} seed {seed}: test acc {100 * run.test_acc:5.1f}% after {run.epochs} epochs "
                    f"({run.train_wall_s:.1f} s of training)" + ("  (reused)" * reused),
                    flush=True,
                )
    except BaseException:  # Ctrl-C or a crash: say where the finished runs are
        print(f"\nrun_all.py: stopped; {finished.report()}", file=sys.stderr, flush=True)
        raise
    total = time.perf_counter() - start
    rows = summarize(runs)
    first = runs[0]
    budget = {
        "epochs": first.epochs,
        "batch_size": first.config["batch_size"],
        "train_images": first.train_images,
        "test_images": first.test_images,
        "augmentation": "random crop (padding 4) + horizontal flip" if first.config["augment"] else "none",
        "overrides": overrides,
    }
    targets = check_targets(rows, [r.to_dict() for r in runs], profile.name, data.name)
    record = {
        "format": FORMAT,
        "experiment": EXPERIMENT,
        "chapter": 6,
        "question": (
            "What does every zoo model cost (parameters, FLOPs, images/s, memory) and reach in the profile's "
            "fixed budget, and are the time-to-accuracy targets met?"
        ),
        "provenance": provenance(device, ["benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])])
        | {"hardware": hardware},
        "dataset": {
            "name": data.name,
            "train_size": first.train_images,
            "test_size": first.test_images,
            "image_size": data.image_size,
            "channels": data.in_channels,
            "classes": data.num_classes,
        },
        "convergence": CONVERGENCE
        | {"budget_rule": f"none: every run trains the profile's fixed budget ({first.epochs} epochs)"},
        "profile": asdict(profile),
        "budget": budget,
        "wall_s": total,
        "arms": _arms(runs, profile),
        "summary": rows,
        "targets": targets,
    }

    if finished.reused:  # wall_s then covers only the runs trained by this invocation
        record["resumed_runs"] = finished.reused
    write_record(record, json_path)

    def write_csv(f: Any) -> None:
        writer = csv.DictWriter(
            f, fieldnames=("dataset", "profile", "epochs", "hardware", *CSV_FIELDS), lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            fixed = {
                "dataset": data.name,
                "profile": profile.name,
                "epochs": first.epochs,
                "hardware": hardware["name"],
            }
            writer.writerow(fixed | {k: row.get(k) for k in CSV_FIELDS})

    write_atomically(csv_path, write_csv, text=True)
    finished.discard()  # the record holds every run now

    title = (
        f"{data.name}, profile {profile.name}, {first.epochs} epochs on {first.train_images} images, "
        f"seeds {seeds} | {hardware['name']} | batch {first.config['batch_size']} | total {total:.0f} s"
    )
    print()
    print(format_table(rows, baseline="resnet" if "resnet" in args.models else None, title=title))
    print()
    for target, entry in targets.items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[entry["met"]]
        scope = "" if entry["applies_to_this_run"] else " (targets are for the full profile on CIFAR-10)"
        print(f"target {target}: {verdict}{scope}")
    print(f"wrote {json_path} and {csv_path.name}")
    return json_path


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: main said where the finished runs are; no traceback
        sys.exit(130)
