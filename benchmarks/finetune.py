"""Chapter 4 — fine-tuning pretrained networks on CIFAR-10: ViT-B/16 vs ResNet-50, linear probe vs full.

The full experiment (a GPU with internet access, e.g. Colab)::

    python benchmarks/finetune.py                      # 4 arms x 3 seeds -> ch4_finetune__cifar10_cuda.json
    python benchmarks/finetune.py --arms vit_b_16_full --seeds 1   # one arm, one seed

Each arm starts from torchvision's ImageNet weights (ViT-B/16 ``IMAGENET1K_V1``, ResNet-50 ``IMAGENET1K_V2``,
downloaded and hash-checked by torchvision on first use), replaces the classifier by a zero-initialised
10-class head (:mod:`nlbook.finetune`), and trains with :func:`nlbook.finetune.finetune_recipe` — the ViT
paper's fine-tuning (SGD momentum 0.9, no weight decay, cosine, clip 1) at 224×224, CIFAR's 32×32 images
upsampled on the GPU inside the model — on all 50,000 training images, evaluated on all 10,000 test images
after every epoch. *Frozen* trains the head only (linear probe); *full* trains every weight.

``--tiny`` runs the same code offline on a CPU: random weights (``weights=None``), a 2-layer ViT and a
one-block-per-stage ResNet, one epoch on 256 digits images. It checks that the pipeline works and writes a
record labelled as a smoke run (experiment ``ch4_finetune_smoke``) to a temporary folder unless ``--out`` is
given; its accuracies say nothing about fine-tuning.

``planned_arms(tiny)`` returns what would be trained, without training (for a staleness check of a record).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nlbook.data import load_dataset  # noqa: E402
from nlbook.finetune import build_finetune_model, finetune_recipe, imagenet_normalized  # noqa: E402
from nlbook.records import FORMAT, RESULTS_DIR, provenance, results_table, write_record  # noqa: E402
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


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="offline smoke run on CPU: random weights, tiny models, digits")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="which arms to train")
    p.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 3; 1 with --tiny)")
    p.add_argument("--out", type=Path, default=None, help="folder of the record (default benchmarks/results)")
    args = p.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (1 if args.tiny else 3)
    if seeds < 1:
        p.error("--seeds must be >= 1")
    if args.tiny:
        device, dataset, experiment = torch.device("cpu"), "digits", f"{EXPERIMENT}_smoke"
        out = args.out or Path(tempfile.mkdtemp(prefix="nlbook_finetune_smoke_"))
    else:
        if not torch.cuda.is_available():
            p.error("the full experiment needs a CUDA GPU (ViT-B/16 at 224x224); use --tiny for the offline check")
        device, dataset, experiment = torch.device("cuda"), "cifar10", EXPERIMENT
        out = args.out or RESULTS_DIR
    data = imagenet_normalized(load_dataset(dataset))
    arms = planned_arms(args.tiny, tuple(args.arms))
    question = "Smoke run of the fine-tuning pipeline (random weights, tiny models)." if args.tiny else QUESTION
    print(f"{experiment}: {question}", flush=True)
    start = time.perf_counter()
    trained = [arm | {"runs": [train_run(arm, seed, data, device) for seed in range(seeds)]} for arm in arms]
    record = {
        "format": FORMAT,
        "experiment": experiment,
        "chapter": 4,
        "question": question,
        "provenance": provenance(device),
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
    suffix = "" if args.tiny else f"__{data.name}_{device.type}"
    path = write_record(record, out / f"{experiment}{suffix}.json")
    print(results_table(record), flush=True)
    print(f"wrote {path} ({record['wall_s']:.0f} s)", flush=True)
    return path


if __name__ == "__main__":
    main()
