"""Chapters 3–6 — the book's training questions, trained to convergence with several seeds and recorded.

Each experiment trains every arm with ``--seeds`` seeds on the offline digits data and writes one record
(``nlbook-record/1``, :mod:`nlbook.records`) to ``benchmarks/results/<experiment>.json``::

    python benchmarks/converge.py ch3          # ch3_nonlocal:    ResNet vs Non-local ResNet
    python benchmarks/converge.py ch4          # ch4_vit:         ViT vs ResNet at four training-set sizes
    python benchmarks/converge.py ch5          # ch5_hybrid:      SE, CBAM, BoTNet, CoAtNet vs ResNet; open gates
    python benchmarks/converge.py ch6          # ch6_comparison:  the zoo models of chapters 1-5 head to head
    python benchmarks/converge.py all          # all four (each record states its wall time, wall_s)

The same script makes the real-scale record on a GPU, in the same format, next to the CPU one::

    python benchmarks/converge.py ch6 --profile full --dataset cifar10 --device cuda
    # -> benchmarks/results/ch6_comparison__cifar10_full_cuda.json, which chapter 6 shows first

What is trained. The models are the zoo's (:func:`nlbook.zoo.build_model`) at the quick profile's size — the
very networks the chapters build in their live cells — and each gets its family's recipe
(:func:`nlbook.zoo.recipe`: SGD + Nesterov for CNNs, AdamW + label smoothing for ViT and CoAtNet), trained with
:func:`nlbook.train.fit` over the whole digits training split (1,438 images) and evaluated on the whole test
split (359 images) after every epoch. Only the budget differs from the quick profile: ``MAX_EPOCHS`` epochs
with the recipe's warm-up and cosine decay, instead of four.

Convergence criterion and budget (:data:`nlbook.records.CONVERGENCE`, the same for every record). Every run
follows its schedule to the end (the learning rate decays to zero, so the schedule itself is the stopping rule);
a run counts as *converged* when the best test accuracy of its last quarter of epochs exceeds the best before it
by less than 0.005 (about two test images). An arm starts at its family's budget (:data:`FAMILY_EPOCHS`); while
any of its seeds is not converged, all seeds are trained again from scratch with twice the epochs, up to four
times the base (:func:`nlbook.records.train_to_convergence`). The record keeps the runs of the last budget and
lists every budget tried; a run still improving at the cap is recorded with ``converged: false`` — read its
number as a lower bound.

Training-set-size sweep (chapter 4). ``x`` is the number of training images (10 %, 25 %, 50 %, 100 % of the
split; the first ``x`` of the stored, shuffled order). A smaller set starts with proportionally more epochs, so
that every size sees the same number of optimisation steps as the full-data run of its family, up to
``SWEEP_EPOCH_CAP`` times the family budget; the full-data arms are chapter 6's ViT and ResNet runs.

Chapter 5's gate-initialisation test adds SE and CBAM ResNets whose gates start open
(``hybrid_resnet(..., gate_init="open")``: the gate's last bias starts so that σ ≈ 0.95 instead of ≈ 0.5).

Identical runs are trained once: a run's result is cached (``--cache``, by model spec, training configuration,
seed, data and thread count) and reused by every experiment that contains it; the record says so per run.
``planned_arms(experiment)`` returns what would be trained, without training: the staleness test in
``tests/test_records.py`` compares it with every committed record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from nlbook.data import ImageDataset, load_dataset  # noqa: E402
from nlbook.hybrid import hybrid_resnet  # noqa: E402
from nlbook.records import (  # noqa: E402
    CONVERGENCE,
    FORMAT,
    RESULTS_DIR,
    budget_plan,
    converge_arm,
    provenance,
    results_table,
    run_entry,
    write_record,
)
from nlbook.runtime import PROFILES, Profile, pick_device  # noqa: E402
from nlbook.train import TrainConfig, count_parameters, fit  # noqa: E402
from nlbook.zoo import build_model, model_names, model_spec, recipe  # noqa: E402

THREADS = 1  # fixed: results depend on the thread count (float summation order), so it is part of the record
# A CNN's base budget per profile: 15 epochs of the offline digits at the quick profile's sizes (what the
# chapters' live cells build), the full profile's own 30 on CIFAR-10.
CNN_EPOCHS = {"quick": 15, "full": PROFILES["full"].epochs}
SWEEP_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
SWEEP_EPOCH_CAP = 4  # a sweep point starts at most at SWEEP_EPOCH_CAP times its family's budget
DEFAULT_SETUP = ("quick", "digits", "cpu")  # the committed CPU records: <experiment>.json


def configure(profile: str = "quick", dataset: str = "digits", device: str = "cpu") -> None:
    """Choose the model sizes, data and device every later call plans and trains with (``main`` calls it).

    Sets ``PROFILE`` (the profile's sizes, ``MAX_EPOCHS`` epochs, the whole test split), ``MAX_EPOCHS``,
    ``FAMILY_EPOCHS``, ``DATASET``, ``DEVICE`` and ``SETUP``.
    """
    global PROFILE, MAX_EPOCHS, FAMILY_EPOCHS, DATASET, DEVICE, SETUP
    if profile not in CNN_EPOCHS:
        raise ValueError(f"configure: profile must be one of {sorted(CNN_EPOCHS)}, got {profile!r}")
    MAX_EPOCHS = CNN_EPOCHS[profile]
    # Transformers trained from scratch need longer schedules than CNNs (DeiT: 300 epochs where a ResNet takes
    # 90): the "transformer" family starts at twice the CNN budget. Either doubles further until it converges.
    FAMILY_EPOCHS = {"cnn": MAX_EPOCHS, "transformer": 2 * MAX_EPOCHS}
    PROFILE = replace(PROFILES[profile], name=f"converge-{profile}", epochs=MAX_EPOCHS, max_test=None)
    if profile == "quick":
        PROFILE = replace(PROFILE, name="converge")  # the name the committed CPU records carry
    DATASET, DEVICE = dataset, torch.device(device)
    SETUP = (profile, dataset, DEVICE.type)


PROFILE: Profile
MAX_EPOCHS: int
FAMILY_EPOCHS: dict[str, int]
DATASET: str
DEVICE: torch.device
SETUP: tuple[str, str, str]
configure(*DEFAULT_SETUP)


def record_name(experiment: str) -> str:
    """``<experiment>`` for the default setup, ``<experiment>__<dataset>_<profile>_<device>`` otherwise
    (:func:`nlbook.records.record_paths` puts such a record first)."""
    profile, dataset, device = SETUP
    return experiment if SETUP == DEFAULT_SETUP else f"{experiment}__{dataset}_{profile}_{device}"


EXPERIMENTS: dict[str, dict[str, Any]] = {
    "ch3": {
        "experiment": "ch3_nonlocal",
        "chapter": 3,
        "question": "Does inserting non-local blocks into a ResNet change its converged accuracy?",
    },
    "ch4": {
        "experiment": "ch4_vit",
        "chapter": 4,
        "question": (
            "How do a Vision Transformer and a ResNet compare when trained to convergence, and how does the gap "
            "change with the number of training images (the inductive-bias / data-efficiency argument)?"
        ),
    },
    "ch5": {
        "experiment": "ch5_hybrid",
        "chapter": 5,
        "question": (
            "Does each hybrid (SE, CBAM, BoTNet, CoAtNet) beat its ResNet baseline at convergence, and do SE/CBAM "
            "gates that start open (near 1) instead of half-closed train differently?"
        ),
    },
    "ch6": {
        "experiment": "ch6_comparison",
        "chapter": 6,
        "question": "Head to head: how does every zoo model rank at convergence, each with its family's recipe?",
    },
}

# Chapter 6's contestants: every model of the zoo, in its order (a new zoo entry joins when the record is remade).
CH6_MODELS = tuple(model_names())

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


def _dataset_sizes() -> tuple[int, int]:
    """(train, test) sizes of the dataset's split (digits: 1,438 and 359, fixed by nlbook.data)."""
    ds = load_dataset(DATASET)
    return ds.train_images.shape[0], ds.test_images.shape[0]


def _zoo_spec(name: str) -> dict[str, Any]:
    p = PROFILE
    return {
        "builder": "nlbook.zoo.build_model",
        "name": name,
        "profile": {"width": p.width, "embed_dim": p.embed_dim, "depth": p.depth},
        "num_classes": 10,
        "in_channels": 3,
        "image_size": 32,
    }


def _open_gate_spec(kind: str) -> dict[str, Any]:
    """The zoo's SE/CBAM ResNet (same widths and depths) with gates that start open."""
    w, blocks = PROFILE.width, max(1, PROFILE.depth // 3)  # the zoo's CNN shape rule (nlbook.zoo)
    return {
        "builder": "nlbook.hybrid.hybrid_resnet",
        "kind": kind,
        "num_classes": 10,
        "in_channels": 3,
        "widths": [w, 2 * w, 4 * w, 8 * w],
        "depths": [blocks] * 4,
        "image_size": 32,
        "gate_init": "open",
    }


def build(spec: dict[str, Any]) -> nn.Module:
    """The model a ``model_spec`` describes."""
    if spec["builder"] == "nlbook.zoo.build_model":
        profile = replace(PROFILE, **spec["profile"])
        kw = {k: spec[k] for k in ("num_classes", "in_channels", "image_size")}
        return build_model(spec["name"], profile=profile, **kw)
    if spec["builder"] == "nlbook.hybrid.hybrid_resnet":
        kw = {k: v for k, v in spec.items() if k not in ("builder", "kind")}
        return hybrid_resnet(spec["kind"], **kw)
    raise ValueError(f"unknown builder {spec['builder']!r} in model_spec")


def _config(zoo_name: str, epochs: int | None = None, max_train: int | None = None) -> TrainConfig:
    """The zoo recipe of ``zoo_name`` for ``epochs`` (default: its family's budget, :data:`FAMILY_EPOCHS`)."""
    if epochs is None:
        epochs = FAMILY_EPOCHS[model_spec(zoo_name).recipe]
    return recipe(zoo_name, PROFILE, epochs=epochs, max_train=max_train)


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    d = asdict(config)
    d.pop("seed")
    return {k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in d.items()}


def _arm(name: str, spec: dict[str, Any], config: TrainConfig, x: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": LABELS[name],
        "x": x,
        "model_spec": spec,
        "train_config": _config_dict(config),
        "params": count_parameters(build(spec)),
        "budget": budget_plan(config.epochs),
        **extra,
    }


def sweep_sizes(train_size: int) -> list[int]:
    """The chapter-4 training-set sizes: SWEEP_FRACTIONS of the training split."""
    return [round(f * train_size) for f in SWEEP_FRACTIONS]


def sweep_epochs(size: int, train_size: int, batch_size: int, family_epochs: int = MAX_EPOCHS) -> int:
    """Base epochs at ``size`` images: the optimisation steps of ``family_epochs`` at the full split (capped)."""
    full_steps = family_epochs * (train_size // batch_size)
    return min(-(-full_steps // max(size // batch_size, 1)), SWEEP_EPOCH_CAP * family_epochs)


def planned_arms(experiment: str) -> list[dict[str, Any]]:
    """The arms ``experiment`` ("ch3" ... "ch6", or the record name) trains today, without training.

    Each arm: ``name``, ``label``, ``x``, ``model_spec``, ``train_config`` (without the seed), ``params`` and,
    for comparisons with a reference, ``baseline`` (the name of the arm it is compared with).
    """
    key = next((k for k, e in EXPERIMENTS.items() if experiment in (k, e["experiment"])), None)
    if key is None:
        names = ", ".join(f"{k} ({e['experiment']})" for k, e in EXPERIMENTS.items())
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {names}")
    if key == "ch3":
        return [
            _arm("resnet", _zoo_spec("resnet"), _config("resnet")),
            _arm("nonlocal_resnet", _zoo_spec("nonlocal_resnet"), _config("nonlocal_resnet"), baseline="resnet"),
        ]
    if key == "ch4":
        train_size, _ = _dataset_sizes()
        arms = []
        for name in ("vit", "resnet"):
            for size in sweep_sizes(train_size):
                family = FAMILY_EPOCHS[model_spec(name).recipe]
                epochs = sweep_epochs(size, train_size, PROFILE.batch_size, family)
                max_train = None if size == train_size else size
                extra = {"baseline": "resnet"} if name == "vit" else {}
                arms.append(_arm(name, _zoo_spec(name), _config(name, epochs, max_train), x=size, **extra))
        return arms
    if key == "ch5":
        arms = [_arm("resnet", _zoo_spec("resnet"), _config("resnet"))]
        for name in ("se_resnet", "cbam_resnet", "botnet", "coatnet"):
            arms.append(_arm(name, _zoo_spec(name), _config(name), baseline="resnet"))
        for kind, closed in (("se", "se_resnet"), ("cbam", "cbam_resnet")):
            arms.append(_arm(f"{closed}_open", _open_gate_spec(kind), _config(closed), baseline=closed))
        return arms
    return [_arm(n, _zoo_spec(n), _config(n), **({"baseline": "resnet"} if n != "resnet" else {})) for n in CH6_MODELS]


# ---------------------------------------------------------------------------------------------- training


def _cache_key(arm: dict[str, Any], seed: int, data: ImageDataset) -> str:
    key = {
        "model_spec": arm["model_spec"],
        "train_config": arm["train_config"],
        "seed": seed,
        "data": [data.name, data.train_images.shape[0], data.test_images.shape[0]],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if DEVICE.type != "cpu":  # (CPU runs keep the key they always had)
        key["device"] = DEVICE.type
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def train_run(arm: dict[str, Any], seed: int, data: ImageDataset, cache: Path | None) -> dict[str, Any]:
    """One seed of one arm with its ``train_config``: a record run (reused from the cache when the identical run
    was trained before)."""
    path = cache / f"{_cache_key(arm, seed, data)}.json" if cache else None
    if path is not None and path.is_file():
        run = json.loads(path.read_text())
        print(
            f"  {arm['name']} x={arm['x']} seed {seed} {run['epochs_run']} epochs: reused "
            f"({run['final_test_acc']:.3f}, converged {run['converged']})",
            flush=True,
        )
        return run
    torch.manual_seed(seed)  # the model's initial weights
    model = build(arm["model_spec"])
    config = TrainConfig(**{**arm["train_config"], "seed": seed})
    rec = fit(model, data, config, device=DEVICE, name=arm["name"], progress=False)
    # who trained it (a run reused from the cache keeps its own)
    trained = {k: provenance()[k] for k in ("git_commit", "git_dirty", "date", "command")}
    run = run_entry(seed, rec.history, rec.wall_time_s, trained=trained)
    print(
        f"  {arm['name']} x={arm['x']} seed {seed} {run['epochs_run']} epochs: {run['final_test_acc']:.3f} "
        f"(best {run['best_test_acc']:.3f}, "
        f"converged {run['converged']}) in {rec.wall_time_s:.0f} s",
        flush=True,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(run))
        tmp.replace(path)
    return run


def train_arm(arm: dict[str, Any], seeds: int, data: ImageDataset, cache: Path | None) -> dict[str, Any]:
    """Every seed of ``arm`` under the budget rule (:func:`nlbook.records.train_to_convergence`): the arm with
    the runs of its last budget, that budget's ``train_config`` and the ``budget`` entry listing every try."""

    def train_seeds(epochs: int) -> list[dict[str, Any]]:
        at = arm | {"train_config": arm["train_config"] | {"epochs": epochs}}
        return [train_run(at, seed, data, cache) for seed in range(seeds)]

    return converge_arm(arm, train_seeds)


def run_experiment(key: str, seeds: int, out: Path, cache: Path | None, only: list[str] | None = None) -> Path | None:
    """Train every planned arm of experiment ``key`` with ``seeds`` seeds; write and return its record.

    With ``only`` (arm names), train just those arms into the cache and write no record: a second process can
    take part of an experiment while another trains the rest.
    """
    meta = EXPERIMENTS[key]
    data = load_dataset(DATASET, device=DEVICE)
    start = time.perf_counter()
    print(f"{meta['experiment']}: {meta['question']}", flush=True)
    planned = planned_arms(key)
    if only is not None:
        unknown = sorted(set(only) - {arm["name"] for arm in planned})
        if unknown:
            raise ValueError(f"--arms {unknown} are not arms of {key}; it has {[a['name'] for a in planned]}")
        if cache is None:
            raise ValueError("--arms trains into the cache: give --cache")
        for arm in planned:
            if arm["name"] in only:
                train_arm(arm, seeds, data, cache)
        return None
    arms = [train_arm(arm, seeds, data, cache) for arm in planned]
    record = {
        "format": FORMAT,
        "experiment": meta["experiment"],
        "chapter": meta["chapter"],
        "question": meta["question"],
        "provenance": provenance(DEVICE),
        "dataset": {
            "name": data.name,
            "train_size": data.train_images.shape[0],
            "test_size": data.test_images.shape[0],
            "image_size": data.image_size,
            "channels": data.in_channels,
            "classes": data.num_classes,
        },
        "convergence": CONVERGENCE | {"family_epochs": FAMILY_EPOCHS},
        "wall_s": time.perf_counter() - start,
        "arms": arms,
    }
    path = write_record(record, out / f"{record_name(meta['experiment'])}.json")
    print(results_table(record), flush=True)
    print(f"wrote {path} ({record['wall_s']:.0f} s)", flush=True)
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    """Parse the command line, train, write the records; return their paths."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiments", nargs="+", choices=[*EXPERIMENTS, "all"], help="which records to (re)make")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (at least 3 for a record the book shows)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder of the records")
    p.add_argument(
        "--cache",
        default="/tmp/nlbook-converge-cache",
        help="folder of finished runs, reused by identical runs; '' for none (use after changing model code)",
    )
    p.add_argument("--arms", default=None, help="comma-separated arm names: train only these into the cache")
    p.add_argument("--profile", default="quick", choices=sorted(CNN_EPOCHS), help="model sizes and base budget")
    p.add_argument("--dataset", default="digits", help="digits (offline) or cifar10 (needs the download)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    configure(args.profile, args.dataset, str(pick_device(args.device)))
    torch.set_num_threads(THREADS)
    keys = list(EXPERIMENTS) if "all" in args.experiments else list(dict.fromkeys(args.experiments))
    cache = Path(args.cache) if args.cache else None
    for name in CH6_MODELS:
        model_spec(name)  # fail now, not after an hour, if the zoo lost a model
    only = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    paths = [run_experiment(key, args.seeds, args.out, cache, only) for key in keys]
    return [path for path in paths if path is not None]


if __name__ == "__main__":
    main()
