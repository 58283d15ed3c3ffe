"""Chapters 3–6 — the book's training questions on Fashion-MNIST, each arm trained until a doubled budget stops
helping, with several seeds, and recorded.

Each experiment trains every arm with ``--seeds`` seeds and writes one record (``nlbook-record/2``,
:mod:`nlbook.records`) to ``benchmarks/results/<dataset>_<profile>_<device>/<experiment>.json``::

    python benchmarks/converge.py ch3          # ch3_nonlocal:    ResNet vs Non-local ResNet
    python benchmarks/converge.py ch4          # ch4_vit:         ViT vs ResNet at four training-set sizes
    python benchmarks/converge.py ch5          # ch5_hybrid:      SE, CBAM, BoTNet, CoAtNet vs ResNet; open gates
    python benchmarks/converge.py ch6          # ch6_comparison:  the zoo models of chapters 1-5 head to head
    python benchmarks/converge.py all          # all four

    # two processes share the work (one thread each); a third call then writes the records from the cache:
    python benchmarks/converge.py all --arms resnet,nonlocal_resnet,se_resnet &
    python benchmarks/converge.py all --arms vit,coatnet,botnet &

    # a smoke run writes elsewhere and never touches benchmarks/results:
    python benchmarks/converge.py ch3 --seeds 2 --train-size 512 --base-epochs 0.2 --out /tmp/smoke

The real-scale record on a GPU is made by the same script in the same format::

    python benchmarks/converge.py ch6 --profile full --dataset cifar10 --device cuda

**Data and splits.** Fashion-MNIST (:func:`nlbook.data.load_dataset`): 5,000 validation images held out from the
60,000 training images (500 per class), the first ``--train-size`` (default 10,000, 1,000 per class) of the
remaining 55,000 for training, and all 10,000 test images. Every epoch is scored on the validation split; the
test split is scored once per run, after the last epoch, and is never used to choose anything.

**Models and recipes.** The zoo's models (:func:`nlbook.zoo.build_model`) at the quick profile's size — the very
networks the chapters build — for 1-channel 32×32 images, each with its family's recipe (:func:`nlbook.zoo.recipe`:
SGD + Nesterov for CNNs, AdamW + label smoothing for Transformers).

**Budget and convergence** (:mod:`nlbook.convergence`). An arm trains all its seeds at its family's base budget
(:data:`BASE_EPOCHS`: CNNs 10 epochs, Transformers 20 — they need longer schedules from scratch, as DeiT's 300
epochs against a ResNet's 90), then again from scratch at twice the epochs; it is converged when the doubling
raised the mean validation accuracy by less than 0.5 points, else the budget doubles again, up to 4×. The record
keeps every budget's runs; an arm still gaining at the cap is recorded as not converged (a lower bound).

**Training-set-size sweep (chapter 4).** ViT and ResNet at 1,000, 2,500, 5,000 and 10,000 training images. A
smaller set starts with proportionally more epochs (the optimisation steps of the 10,000-image run), at most
:data:`SWEEP_EPOCH_CAP` times its family's base budget.

**Nothing lost.** Every finished run is written at once, atomically, to the run cache (``--cache``, default
``runs/`` beside the records; committed), keyed by model, recipe, seed, data and thread count; a stopped job
loses at most the run in flight and the next call resumes. Every flag and path is checked before the first step.
A record that exists is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from nlbook.convergence import MAX_DOUBLINGS, RULE, train_until_converged  # noqa: E402
from nlbook.data import ImageDataset, load_dataset  # noqa: E402
from nlbook.hybrid import hybrid_resnet  # noqa: E402
from nlbook.records import (  # noqa: E402
    FORMAT_V2,
    RESULTS_DIR,
    provenance,
    validate_run_v2,
    write_atomically,
    write_record,
)
from nlbook.runtime import DATASETS, PROFILES, Profile, pick_device  # noqa: E402
from nlbook.stats import ALPHA  # noqa: E402
from nlbook.train import TrainConfig, count_parameters, fit  # noqa: E402
from nlbook.zoo import build_model, model_names, model_spec, recipe  # noqa: E402

THREADS = 1  # fixed: results depend on the thread count (float summation order), so it is part of the record
BASE_EPOCHS = {"cnn": 10, "transformer": 20}  # quick profile on Fashion-MNIST; the full profile doubles both
SWEEP_SIZES = (1_000, 2_500, 5_000, 10_000)
SWEEP_EPOCH_CAP = 4  # a sweep point starts at most at SWEEP_EPOCH_CAP times its family's base budget


@dataclass(frozen=True)
class Setup:
    """Everything a call plans and trains with: model sizes (``profile``), data, device, training-set size and
    seeds. Passed explicitly to every function below (no module state)."""

    profile: str = "quick"
    dataset: str = "fashion_mnist"
    device: str = "cpu"
    train_size: int = 10_000
    seeds: int = 3
    base_scale: float = 1.0  # multiplies BASE_EPOCHS (full profile: 2; smoke runs: less)

    @property
    def name(self) -> str:
        """The records' folder: ``<dataset>_<profile>_<device>``."""
        return f"{self.dataset}_{self.profile}_{torch.device(self.device).type}"

    @property
    def model_profile(self) -> Profile:
        return replace(PROFILES[self.profile], max_test=None, max_train=None)

    def base_epochs(self, family: str) -> int:
        return max(1, round(BASE_EPOCHS[family] * self.base_scale))


EXPERIMENTS: dict[str, dict[str, Any]] = {
    "ch3": {
        "experiment": "ch3_nonlocal",
        "chapter": 3,
        "question": "Does inserting non-local blocks into a ResNet change its accuracy, once both are trained out?",
    },
    "ch4": {
        "experiment": "ch4_vit",
        "chapter": 4,
        "question": (
            "How do a Vision Transformer and a ResNet compare when both are trained out, and how does the gap "
            "change with the number of training images (the inductive-bias / data-efficiency argument)?"
        ),
    },
    "ch5": {
        "experiment": "ch5_hybrid",
        "chapter": 5,
        "question": (
            "Does each hybrid (SE, CBAM, BoTNet, CoAtNet) beat its ResNet baseline once trained out, and do SE/CBAM "
            "gates that start open (near 1) instead of half-closed train differently?"
        ),
    },
    "ch6": {
        "experiment": "ch6_comparison",
        "chapter": 6,
        "question": "Head to head: how does every zoo model rank once trained out, each with its family's recipe?",
    },
}

LABELS = {
    "resnet": "ResNet",
    "nonlocal_resnet": "Non-local ResNet",
    "vit": "ViT",
    "se_resnet": "SE-ResNet",
    "cbam_resnet": "CBAM-ResNet",
    "botnet": "BoTNet",
    "coatnet": "CoAtNet",
    "swin": "Swin",
    "sasa_resnet": "SASA-ResNet",
    "se_resnet_open": "SE-ResNet, gates start open",
    "cbam_resnet_open": "CBAM-ResNet, gates start open",
}


# ---------------------------------------------------------------------------------------------- planning


def _data_shape(setup: Setup) -> dict[str, int]:
    """Channels, image size and classes of the dataset (Fashion-MNIST: 1 × 32 × 32, 10 classes)."""
    if setup.dataset == "cifar10":
        return {"num_classes": 10, "in_channels": 3, "image_size": 32}
    return {"num_classes": 10, "in_channels": 1, "image_size": 32}


def _zoo_spec(name: str, setup: Setup) -> dict[str, Any]:
    p = setup.model_profile
    return {
        "builder": "zoo",
        "name": name,
        "profile": {"width": p.width, "embed_dim": p.embed_dim, "depth": p.depth},
        **_data_shape(setup),
    }


def _open_gate_spec(kind: str, setup: Setup) -> dict[str, Any]:
    """The zoo's SE/CBAM ResNet (same widths and depths) with gates that start open."""
    p = setup.model_profile
    w, blocks = p.width, max(1, p.depth // 3)  # the zoo's CNN shape rule (nlbook.zoo)
    return {
        "builder": "hybrid_resnet",
        "kind": kind,
        "widths": [w, 2 * w, 4 * w, 8 * w],
        "depths": [blocks] * 4,
        "gate_init": "open",
        **_data_shape(setup),
    }


def build(spec: dict[str, Any], setup: Setup) -> nn.Module:
    """The model a ``model_spec`` describes."""
    shape = {k: spec[k] for k in ("num_classes", "in_channels", "image_size")}
    if spec["builder"] == "zoo":
        return build_model(spec["name"], profile=replace(setup.model_profile, **spec["profile"]), **shape)
    if spec["builder"] == "hybrid_resnet":
        kw = {k: v for k, v in spec.items() if k not in ("builder", "kind")}
        return hybrid_resnet(spec["kind"], **kw)
    raise ValueError(f"unknown builder {spec['builder']!r} in model_spec")


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    d = asdict(config)
    d.pop("seed")
    return {k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in d.items()}


def _arm(name: str, zoo_name: str, spec: dict[str, Any], setup: Setup, size: int, epochs: int, **extra: Any) -> dict:
    config = recipe(zoo_name, setup.model_profile, epochs=epochs, max_train=size, max_test=None)
    return {
        "name": name,
        "label": LABELS[name],
        "x": None,
        "model_spec": spec,
        "train_config": _config_dict(config),
        "params": count_parameters(build(spec, setup)),
        "budget": {"base_epochs": epochs, "max_epochs": epochs * 2**MAX_DOUBLINGS},
        **extra,
    }


def sweep_epochs(size: int, setup: Setup, family: str) -> int:
    """Base epochs at ``size`` images: the optimisation steps of the family's base budget at ``train_size``
    images, at most :data:`SWEEP_EPOCH_CAP` times that budget."""
    base = setup.base_epochs(family)
    return min(-(-base * setup.train_size // size), SWEEP_EPOCH_CAP * base)


def planned_arms(experiment: str, setup: Setup) -> list[dict[str, Any]]:
    """The arms ``experiment`` ("ch3" ... "ch6", or the record name) trains, without training."""
    key = next((k for k, e in EXPERIMENTS.items() if experiment in (k, e["experiment"])), None)
    if key is None:
        names = ", ".join(f"{k} ({e['experiment']})" for k, e in EXPERIMENTS.items())
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {names}")
    n = setup.train_size

    def zoo(name: str, **extra: Any) -> dict[str, Any]:
        family = model_spec(name).recipe
        return _arm(name, name, _zoo_spec(name, setup), setup, n, setup.base_epochs(family), **extra)

    if key == "ch3":
        return [zoo("resnet"), zoo("nonlocal_resnet", baseline="resnet")]
    if key == "ch4":
        arms = []
        for name in ("vit", "resnet"):
            family = model_spec(name).recipe
            for size in (s for s in SWEEP_SIZES if s <= n):
                extra = {"baseline": "resnet"} if name == "vit" else {}
                arm = _arm(name, name, _zoo_spec(name, setup), setup, size, sweep_epochs(size, setup, family), **extra)
                arms.append(arm | {"x": size})
        return arms
    if key == "ch5":
        arms = [zoo("resnet")] + [zoo(m, baseline="resnet") for m in ("se_resnet", "cbam_resnet", "botnet", "coatnet")]
        for kind, closed in (("se", "se_resnet"), ("cbam", "cbam_resnet")):
            spec = _open_gate_spec(kind, setup)
            arms.append(_arm(f"{closed}_open", closed, spec, setup, n, setup.base_epochs("cnn"), baseline=closed))
        return arms
    return [zoo(m, **({"baseline": "resnet"} if m != "resnet" else {})) for m in model_names()]


# ---------------------------------------------------------------------------------------------- training


def cache_key(arm: dict[str, Any], epochs: int, seed: int, data: ImageDataset, setup: Setup) -> str:
    """The identity of one run: model, recipe at ``epochs``, seed, data splits, threads, torch and device."""
    key = {
        "model_spec": arm["model_spec"],
        "train_config": arm["train_config"] | {"epochs": epochs},
        "seed": seed,
        "data": [data.name, len(data.train_labels), len(data.val_labels), len(data.test_labels)],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__.split("+")[0],
        "device": torch.device(setup.device).type,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def run_entry(seed: int, rec: Any) -> dict[str, Any]:
    """One seed's run as a record holds it, from :func:`nlbook.train.fit`'s record."""
    history = [
        {k: getattr(e, k) for k in ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")}
        for e in rec.history
    ]
    vals = [e["val_acc"] for e in history]
    return {
        "seed": seed,
        "epochs": len(history),
        "final_val_acc": vals[-1],
        "best_val_acc": max(vals),
        "best_val_epoch": 1 + vals.index(max(vals)),
        "test_acc": rec.final_test_acc,
        "test_loss": rec.final_test_loss,
        "train_seconds": sum(e["seconds"] for e in history),
        "wall_seconds": rec.wall_time_s,
        "trained": {k: provenance()[k] for k in ("git_commit", "git_dirty", "date", "command")},
        "history": history,
    }


def train_run(arm: dict, epochs: int, seed: int, data: ImageDataset, setup: Setup, cache: Path) -> dict[str, Any]:
    """One seed of one arm at ``epochs``: reused from the cache when the identical run finished before, else
    trained and written to the cache at once (atomically)."""
    path = cache / f"{cache_key(arm, epochs, seed, data, setup)}.json"
    where = f"{arm['name']} x={arm['x']} seed {seed} {epochs} epochs"
    if path.is_file():
        run = validate_run_v2(json.loads(path.read_text()), str(path))
        print(f"  {where}: reused (val {run['final_val_acc']:.4f})", flush=True)
        return run
    torch.manual_seed(seed)  # the model's initial weights
    model = build(arm["model_spec"], setup)
    config = TrainConfig(**{**arm["train_config"], "epochs": epochs, "seed": seed})
    rec = fit(model, data, config, device=setup.device, name=arm["name"], progress=False)
    run = run_entry(seed, rec)
    write_atomically(path, lambda f: f.write(json.dumps(run)), text=True)
    print(
        f"  {where}: val {run['final_val_acc']:.4f} (best {run['best_val_acc']:.4f} at epoch "
        f"{run['best_val_epoch']}) in {rec.wall_time_s:.0f} s -> {path.name}",
        flush=True,
    )
    return run


def train_arm(arm: dict[str, Any], data: ImageDataset, setup: Setup, cache: Path) -> dict[str, Any]:
    """Every seed of ``arm`` under the rule of :mod:`nlbook.convergence`: the arm with the runs of its last
    budget, that budget's ``train_config`` and the ``budget`` entry with every budget's runs."""

    def train_seeds(epochs: int) -> list[dict[str, Any]]:
        return [train_run(arm, epochs, seed, data, setup, cache) for seed in range(setup.seeds)]

    budget = train_until_converged(train_seeds, arm["budget"]["base_epochs"])
    return arm | {
        "train_config": arm["train_config"] | {"epochs": budget["epochs"]},
        "budget": budget,
        "runs": budget["budgets"][-1]["runs"],
    }


def dataset_entry(data: ImageDataset, setup: Setup) -> dict[str, Any]:
    return {
        "name": data.name,
        "train_size": setup.train_size,
        "train_pool": len(data.train_labels),
        "val_size": len(data.val_labels),
        "test_size": len(data.test_labels),
        "image_size": data.image_size,
        "channels": data.in_channels,
        "classes": data.num_classes,
    }


def run_experiment(
    key: str, data: ImageDataset, setup: Setup, out: Path, cache: Path, only: set[str] | None
) -> Path | None:
    """Train every planned arm of ``key`` (only the arms named in ``only``, into the cache, when given) and
    write its record (not with ``only``)."""
    meta = EXPERIMENTS[key]
    print(f"{meta['experiment']}: {meta['question']}", flush=True)
    start = time.perf_counter()
    arms = [
        train_arm(arm, data, setup, cache) for arm in planned_arms(key, setup) if only is None or arm["name"] in only
    ]
    if only is not None:
        return None
    record = {
        "format": FORMAT_V2,
        "experiment": meta["experiment"],
        "chapter": meta["chapter"],
        "question": meta["question"],
        "provenance": provenance(setup.device),
        "dataset": dataset_entry(data, setup),
        "convergence": RULE | {"base_epochs": {f: setup.base_epochs(f) for f in BASE_EPOCHS}},
        "statistics": {"test": "Welch's two-sided t-test over seeds (nlbook.stats.compare)", "alpha": ALPHA},
        "wall_s": time.perf_counter() - start,
        "arms": arms,
    }
    path = write_record(record, out / f"{meta['experiment']}.json")
    print(f"wrote {path}", flush=True)
    return path


# ---------------------------------------------------------------------------------------------- command line


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Setup, list[str], set[str] | None]:
    """Parse and check every flag and path before anything trains; errors name the flag."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiments", nargs="+", choices=[*EXPERIMENTS, "all"], help="which records to (re)make")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm, 0..N-1 (at least 3 for the book)")
    p.add_argument("--train-size", type=int, default=10_000, help="training images (the first N of the split)")
    p.add_argument("--base-epochs", type=float, default=1.0, help="scale of the base budgets (smoke runs: < 1)")
    p.add_argument("--out", type=Path, default=None, help="folder of the records (default benchmarks/results/<setup>)")
    p.add_argument("--cache", type=Path, default=None, help="folder of finished runs (default <out>/runs)")
    p.add_argument("--arms", default=None, help="comma-separated arm names: train only these into the cache")
    p.add_argument("--force", action="store_true", help="replace records that exist")
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES), help="model sizes")
    p.add_argument(
        "--dataset", default="fashion_mnist", choices=[d for d in DATASETS if d in ("fashion_mnist", "cifar10")]
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error(f"--seeds must be >= 2 (a spread needs two seeds; the book shows >= 3), got {args.seeds}")
    if args.train_size < 1:
        p.error(f"--train-size must be a positive number of images, got {args.train_size}")
    if not 0 < args.base_epochs <= 8:
        p.error(f"--base-epochs must be a scale in (0, 8], got {args.base_epochs}")
    try:
        device = str(pick_device(args.device))
    except (RuntimeError, ValueError) as err:
        p.error(f"--device {args.device!r}: {err}")
    scale = args.base_epochs * (2 if args.profile == "full" else 1)
    setup = Setup(args.profile, args.dataset, device, args.train_size, args.seeds, scale)
    keys = list(EXPERIMENTS) if "all" in args.experiments else list(dict.fromkeys(args.experiments))
    only = None
    if args.arms is not None:
        names = [a.strip() for a in args.arms.split(",") if a.strip()]
        if len(set(names)) != len(names):
            p.error(f"--arms names an arm twice: {names}")
        known = {arm["name"] for key in keys for arm in planned_arms(key, setup)}
        if not names or set(names) - known:
            p.error(f"--arms {sorted(set(names) - known) or names} are not arms of {keys}; they have {sorted(known)}")
        only = set(names)
    args.out = args.out or RESULTS_DIR / setup.name
    args.cache = args.cache or args.out / "runs"
    for flag, folder in (("--out", args.out), ("--cache", args.cache)):
        if folder.exists() and not folder.is_dir():
            p.error(f"{flag} {folder} is a file; it must be a folder")
    if only is None and not args.force:
        existing = [args.out / f"{EXPERIMENTS[k]['experiment']}.json" for k in keys]
        existing = [str(path) for path in existing if path.exists()]
        if existing:
            p.error(f"records exist: {', '.join(existing)}; pass --force to replace them (or another --out)")
    return args, setup, keys, only


def main(argv: list[str] | None = None) -> list[Path]:
    """Parse the command line, train, write the records; return their paths."""
    args, setup, keys, only = parse(argv)
    torch.set_num_threads(THREADS)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    data = load_dataset(setup.dataset, device=setup.device)
    if not data.has_validation:
        raise SystemExit(f"--dataset {setup.dataset} has no validation split")
    if setup.train_size > len(data.train_labels):
        raise SystemExit(f"--train-size {setup.train_size} exceeds the {len(data.train_labels)} training images")
    try:
        paths = [run_experiment(key, data, setup, args.out, args.cache, only) for key in keys]
    except KeyboardInterrupt:
        print(f"\ninterrupted: every finished run is in {args.cache}; run the same command to resume", flush=True)
        raise SystemExit(130) from None
    return [path for path in paths if path is not None]


if __name__ == "__main__":
    main()
