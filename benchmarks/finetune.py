"""Chapter 4 — fine-tuning pretrained networks on CIFAR-10: ViT-B/16 vs ResNet-50, linear probe vs full.

The full experiment (a GPU with internet access, e.g. Colab)::

    python benchmarks/finetune.py                      # 4 arms x 3 seeds -> ch4_finetune__cifar10_cuda.json
    python benchmarks/finetune.py --arms vit_b_16_full --seeds 1   # one arm, one seed -> results/tmp/

Each arm starts from torchvision's ImageNet weights (ViT-B/16 ``IMAGENET1K_V1``, ResNet-50 ``IMAGENET1K_V2``,
downloaded and hash-checked by torchvision on first use), replaces the classifier by a zero-initialised
10-class head (:mod:`nlbook.finetune`), and trains with :func:`nlbook.finetune.finetune_recipe` — the ViT
paper's fine-tuning (SGD momentum 0.9, no weight decay, cosine, clip 1) at 224×224, CIFAR's 32×32 images
upsampled on the GPU inside the model — on all 50,000 training images, evaluated on all 10,000 test images
after every epoch. *Frozen* trains the head only (linear probe); *full* trains every weight.

``--tiny`` runs the same code offline on a CPU: random weights (``weights=None``), a 2-layer ViT and a
one-block-per-stage ResNet, one epoch on 256 digits images. It checks that the pipeline works and writes a
record labelled as a smoke run (experiment ``ch4_finetune_smoke``) to the system's temporary folder
(``<tmp>/nlbook_finetune_smoke/``) unless ``--out`` is given; its accuracies say nothing about fine-tuning::

    python benchmarks/finetune.py --tiny --arms resnet50_frozen     # seconds, offline, touches no record

Where the record goes. The full experiment (all four arms, three seeds) writes ``benchmarks/results/``; a record
already there is replaced only with ``--force``. Any other selection (fewer arms or seeds) writes
``benchmarks/results/tmp/``, which git ignores, unless ``--out`` names a folder. Every flag, the output folder
and every arm's model (its pretrained weights downloaded and checked) are checked before anything trains.

Nothing finished is lost. Each run is written as it finishes (atomically) to a folder of finished runs next to
the record (``<record>.json.runs/``; for a record in ``benchmarks/results/``, in ``benchmarks/results/tmp/``).
A run stopped by Ctrl-C or a crash says where that folder is, and the same command run again reuses every
finished run whose model, recipe, seed and device are unchanged. The runs are removed once the record holding
them is written.

``planned_arms(tiny)`` returns what would be trained, without training (for a staleness check of a record).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nlbook.data import ImageDataset, load_dataset  # noqa: E402
from nlbook.finetune import build_finetune_model, finetune_recipe, imagenet_normalized  # noqa: E402
from nlbook.records import FORMAT, RESULTS_DIR, FinishedRuns, provenance, results_table, write_record  # noqa: E402
from nlbook.train import TrainConfig, count_parameters, fit  # noqa: E402

EXPERIMENT = "ch4_finetune"
QUESTION = (
    "How accurate are ImageNet-pretrained ViT-B/16 and ResNet-50 on CIFAR-10 after a short fine-tuning, "
    "training only a new head (linear probe) or every weight?"
)
ARMS = ("vit_b_16_frozen", "vit_b_16_full", "resnet50_frozen", "resnet50_full")
LABELS = {
    "vit_b_16_frozen": "ViT-B/16, linear probe",
    "vit_b_16_full": "ViT-B/16, full fine-tuning",
    "resnet50_frozen": "ResNet-50, linear probe",
    "resnet50_full": "ResNet-50, full fine-tuning",
}
IMAGE_SIZE = 224
# converged: the last epoch improved the best test accuracy by less than this (a fixed, short budget: read a
# non-converged run as a lower bound)
MIN_DELTA = 0.002

# The offline smoke run: the same builders at a size a CPU trains in seconds.
TINY_TV_KWARGS = {
    "vit_b_16": {"image_size": 32, "patch_size": 4, "num_layers": 2, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64},
    "resnet50": {"layers": [1, 1, 1, 1]},
}
TINY_IMAGE_SIZE = 48  # not the tiny ViT's 32: the position embeddings are resampled, as at a real resolution change
TINY_BUDGET = {"epochs": 1, "batch_size": 32, "max_train": 256, "max_test": 128}
SEEDS = 3  # seeds per arm of the full experiment
SCRATCH = RESULTS_DIR / "tmp"  # git-ignored (.gitignore): selections, and the finished runs of a run under way
TINY_OUT = Path(tempfile.gettempdir()) / "nlbook_finetune_smoke"  # the smoke run's default folder


def whole_training_split(data: ImageDataset) -> ImageDataset:
    """``data`` with its validation split (Fashion-MNIST, CIFAR-10) folded back into the training images.

    The fine-tuning recipe is fixed (the ViT paper's) and nothing is chosen with what this script measures,
    so it needs no validation split: every arm trains on all 50,000 CIFAR-10 training images and is scored on
    the test split after every epoch (what its record's per-epoch ``test_acc`` holds).
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


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    d = asdict(config)
    d.pop("seed")
    return {k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in d.items()}


def planned_arms(tiny: bool = False, arms: tuple[str, ...] = ARMS) -> list[dict[str, Any]]:
    """The arms this script trains (without training): name, label, model_spec, train_config, params."""
    device = "cpu" if tiny else "cuda"
    planned = []
    for name in arms:
        arch, mode = name.rsplit("_", 1)
        spec = {
            "builder": "nlbook.finetune.build_finetune_model",
            "arch": arch,
            "mode": mode,
            "num_classes": 10,
            "weights": None if tiny else "DEFAULT",
            "image_size": TINY_IMAGE_SIZE if tiny else IMAGE_SIZE,
            "tv_kwargs": TINY_TV_KWARGS[arch] if tiny else None,
        }
        config = finetune_recipe(arch, mode, device, **(TINY_BUDGET if tiny else {}))
        with torch.device("meta"):  # count parameters without allocating or downloading anything
            params = count_parameters(_build({**spec, "weights": None}, progress=False))
        planned.append(
            {
                "name": name,
                "label": LABELS[name] + (" (smoke run: random weights, tiny model)" if tiny else ""),
                "x": None,
                "model_spec": spec,
                "train_config": _config_dict(config),
                "params": params,
            }
        )
    return planned


def _build(spec: dict[str, Any], progress: bool = True) -> torch.nn.Module:
    kwargs = {k: v for k, v in spec.items() if k not in ("builder", "arch", "mode")}
    return build_finetune_model(spec["arch"], spec["mode"], progress=progress, **kwargs)


def train_run(arm: dict[str, Any], seed: int, data, device: torch.device) -> dict[str, Any]:
    """One seed of one arm, as a record run."""
    torch.manual_seed(seed)  # the new head (zero-initialised by default) and the data order
    model = _build(arm["model_spec"])
    config = TrainConfig(**{**arm["train_config"], "seed": seed})
    rec = fit(model, data, config, device=device, name=arm["name"], progress=False)
    accs = [e.test_acc for e in rec.history]
    run = {
        "seed": seed,
        "epochs_run": len(rec.history),
        "converged": len(accs) > 1 and accs[-1] - max(accs[:-1]) < MIN_DELTA,
        "final_test_acc": accs[-1],
        "best_test_acc": max(accs),
        "train_seconds": sum(e.seconds for e in rec.history),
        "wall_seconds": rec.wall_time_s,
        "images_per_s": rec.images_per_s,
        "history": [
            {k: getattr(e, k) for k in ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")}
            for e in rec.history
        ],
    }
    print(
        f"  {arm['name']} seed {seed}: test accuracy {run['final_test_acc']:.4f} (best {run['best_test_acc']:.4f}) "
        f"in {rec.wall_time_s:.0f} s, {rec.images_per_s:,.0f} train images/s on {rec.hardware}",
        flush=True,
    )
    return run


def _is_committed(path: Path) -> bool:
    """A file directly in ``benchmarks/results/`` (not in its git-ignored ``tmp/``): a record the book shows."""
    return path.expanduser().resolve().parent == RESULTS_DIR.resolve()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, every flag and the output checked (argparse's usage error, exit status 2) before
    anything is loaded, downloaded or trained; sets ``args.seeds`` (a count), ``args.path`` (the record),
    ``args.runs`` (its finished runs), ``args.device``, ``args.dataset`` and ``args.experiment``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="offline smoke run on CPU: random weights, tiny models, digits")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="which arms to train")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds per arm (default {SEEDS}; 1 with --tiny)")
    p.add_argument("--out", type=Path, default=None, help="folder of the record (default: see the docstring)")
    p.add_argument("--force", action="store_true", help="replace a record in benchmarks/results/")
    args = p.parse_args(argv)
    repeated = sorted({a for a in args.arms if args.arms.count(a) > 1}, key=args.arms.index)
    if repeated:  # an arm twice would be trained twice and recorded as two arms of one name
        p.error(f"--arms lists {', '.join(repeated)} more than once")
    args.seeds = args.seeds if args.seeds is not None else (1 if args.tiny else SEEDS)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.tiny:
        args.device, args.dataset, args.experiment = torch.device("cpu"), "digits", f"{EXPERIMENT}_smoke"
        default = TINY_OUT
    else:
        if not torch.cuda.is_available():
            p.error("the full experiment needs a CUDA GPU (ViT-B/16 at 224x224); use --tiny for the offline check")
        args.device, args.dataset, args.experiment = torch.device("cuda"), "cifar10", EXPERIMENT
        the_record = set(args.arms) == set(ARMS) and args.seeds == SEEDS
        default = RESULTS_DIR if the_record else SCRATCH
    if args.out is None:
        args.out = default
        args.out.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out must be a folder, but {args.out} is a file")
    if not args.out.exists():
        if not args.out.expanduser().parent.is_dir():
            p.error(f"--out must be a folder in an existing folder, but {args.out.parent} does not exist")
        args.out.mkdir()
    if not os.access(args.out, os.W_OK | os.X_OK):
        p.error(f"--out: the folder {args.out} is not writable")
    suffix = "" if args.tiny else f"__cifar10_{args.device.type}"
    args.path = args.out / f"{args.experiment}{suffix}.json"
    if args.path.is_dir():
        p.error(f"the record's path {args.path} is a folder; move it, or choose another --out")
    if _is_committed(args.path) and args.path.exists() and not args.force:
        p.error(
            f"{args.path} is a record the book shows; this run ({len(args.arms)} arm(s) x {args.seeds} seed(s)) "
            "would replace it. Pass --force to replace it, or --out FOLDER to write elsewhere"
        )
    # the finished runs: next to the record, but never among the records the book shows
    args.runs = (SCRATCH if _is_committed(args.path) else args.out) / f"{args.path.name}.runs"
    if args.runs.exists() and not args.runs.is_dir():
        p.error(f"the folder of finished runs {args.runs} is a file; move it, or choose another --out")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    device, experiment = args.device, args.experiment
    arms = planned_arms(args.tiny, tuple(args.arms))
    # Every arm's model once before anything trains: a failed download (WeightsUnavailableError) or a bad
    # spec stops here, not after hours of the arms before it.
    for arch in dict.fromkeys(arm["model_spec"]["arch"] for arm in arms):
        _build(next(arm["model_spec"] for arm in arms if arm["model_spec"]["arch"] == arch))
    data = imagenet_normalized(whole_training_split(load_dataset(args.dataset)))
    question = "Smoke run of the fine-tuning pipeline (random weights, tiny models)." if args.tiny else QUESTION
    print(f"{experiment}: {question}", flush=True)
    finished = FinishedRuns(args.runs)
    if finished.count():
        print(f"resuming: {finished.count()} finished run(s) in {finished.folder} (reused where unchanged)")
    start = time.perf_counter()
    trained = []
    try:
        for arm in arms:
            runs = []
            for seed in range(args.seeds):
                identity = {
                    "model_spec": arm["model_spec"],
                    "train_config": arm["train_config"],
                    "seed": seed,
                    "device": device.type,
                    "torch": torch.__version__,
                }
                run = finished.get(f"{arm['name']}__seed{seed}", identity)
                if run is None:
                    run = train_run(arm, seed, data, device)
                    finished.put(f"{arm['name']}__seed{seed}", identity, run)
                else:
                    print(f"  {arm['name']} seed {seed}: reused ({run['final_test_acc']:.4f})", flush=True)
                runs.append(run)
            trained.append(arm | {"runs": runs})
    except BaseException:  # Ctrl-C or a crash: say where the finished runs are
        print(f"\nfinetune.py: stopped; {finished.report()}", file=sys.stderr, flush=True)
        raise
    record = {
        "format": FORMAT,
        "experiment": experiment,
        "chapter": 4,
        "question": question,
        "provenance": provenance(device, None if argv is None else ["benchmarks/finetune.py", *argv]),
        "dataset": {
            "name": data.name,
            "train_size": min(data.train_images.shape[0], trained[0]["train_config"]["max_train"] or 10**9),
            "test_size": min(data.test_images.shape[0], trained[0]["train_config"]["max_test"] or 10**9),
            "image_size": data.image_size,
            "channels": data.in_channels,
            "classes": data.num_classes,
        },
        "convergence": {
            "criterion": (
                "a fixed fine-tuning budget (the recipe's epochs, cosine to zero); converged when the last epoch "
                "improved the best test accuracy by less than min_delta"
            ),
            "max_epochs": max(arm["train_config"]["epochs"] for arm in arms),
            "min_delta": MIN_DELTA,
        },
        "smoke_run": args.tiny,
        "wall_s": time.perf_counter() - start,
        "arms": trained,
    }
    if finished.reused:  # wall_s then covers only the runs trained by this invocation
        record["resumed_runs"] = finished.reused
    path = write_record(record, args.path)
    finished.discard()
    print(results_table(record), flush=True)
    print(f"wrote {path} ({record['wall_s']:.0f} s)", flush=True)
    return path


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: main said where the finished runs are; no traceback
        sys.exit(130)
