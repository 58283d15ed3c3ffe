"""Accuracy vs glyph distance for each fusion strategy on the long-range task (chapter 7's bigger run).

Trains every model of :func:`nlbook.longrange.strategy_models` on the same generated training set (all
distances mixed), for several seeds, and scores it on fixed test images at every distance. Writes a JSON
with the hardware, versions, budget, seeds, every run and the per-distance mean and spread, which the
chapter plots beside its own quick run::

    python benchmarks/longrange_sweep.py                       # CPU defaults, writes the file below
    python benchmarks/longrange_sweep.py --models vit cnn_rf7 --seeds 0 --epochs 2 --out /tmp/x.json

Default output: ``benchmarks/results/longrange_sweep_cpu.json`` (``..._<device>.json`` on other devices).
The file is rewritten after every run, so an interrupted sweep keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import nlbook
from nlbook.longrange import LongRangeTask, accuracy_by_distance, longrange_dataset, strategy_models, train_config
from nlbook.runtime import device_name, pick_device
from nlbook.train import fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--n-per-distance", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=list(strategy_models()))
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    out = Path(args.out or f"benchmarks/results/longrange_sweep_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    specs = strategy_models(args.image_size)
    unknown = [m for m in args.models if m not in specs]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {list(specs)}")
    task = LongRangeTask(image_size=args.image_size)
    distances = list(range(task.min_distance, task.max_distance + 1))
    result = {
        "task": {
            "image_size": task.image_size,
            "glyph_size": task.glyph_size,
            "num_glyphs": task.num_glyphs,
            "noise": task.noise,
            "train_distances": list(task.distance_range),
            "eval_distances": distances,
            "n_train": args.n_train,
            "n_test": args.n_test,
            "n_per_distance": args.n_per_distance,
        },
        "budget": {"epochs": args.epochs, "train_config": None},
        "seeds": args.seeds,
        "hardware": device_name(device),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "versions": {"nlbook": nlbook.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "runs": [],
        "summary": {},
    }
    t_all = time.perf_counter()
    print(
        f"{'model':<10} {'seed':>4} {'params':>8} {'RF':>4} {'test acc':>9} {'seconds':>8}  acc at d = min / mid / max"
    )
    for seed in args.seeds:
        data = longrange_dataset(args.n_train, args.n_test, image_size=args.image_size, seed=seed)
        for key in args.models:
            spec = specs[key]
            torch.manual_seed(seed)  # the initial weights
            model = spec.build()
            config = train_config(args.epochs, seed=seed)
            result["budget"]["train_config"] = {k: v for k, v in vars(config).items() if k != "seed"}
            rec = fit(model, data, config, device=device, name=key, progress=False)
            by_d = accuracy_by_distance(model, task, distances, data.mean, data.std, n=args.n_per_distance)
            rf = spec.receptive_field  # of the convolutional part; None for the ViT
            result["runs"].append(
                {
                    "model": key,
                    "label": spec.label,
                    "strategy": spec.strategy,
                    "seed": seed,
                    "params": rec.params,
                    "receptive_field": rf,
                    "test_acc_per_epoch": [e.test_acc for e in rec.history],
                    "train_loss_per_epoch": [e.train_loss for e in rec.history],
                    "wall_time_s": rec.wall_time_s,
                    "acc_by_distance": {str(d): a for d, a in by_d.items()},
                }
            )
            accs = list(by_d.values())
            print(
                f"{key:<10} {seed:>4} {rec.params:>8,} {rf or '-':>4} {rec.test_acc:>9.3f} {rec.wall_time_s:>8.1f}  "
                f"{accs[0]:.2f} / {accs[len(accs) // 2]:.2f} / {accs[-1]:.2f}",
                flush=True,
            )
            result["summary"] = _summary(result["runs"])
            result["total_wall_time_s"] = time.perf_counter() - t_all
            out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out} ({result['total_wall_time_s']:.0f} s in all)")


def _summary(runs: list[dict]) -> dict:
    """Per model: mean and standard deviation over seeds of the accuracy at each distance."""
    summary: dict[str, dict] = {}
    for key in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == key]
        per_d = {}
        for d in mine[0]["acc_by_distance"]:
            vals = [r["acc_by_distance"][d] for r in mine]
            per_d[d] = {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals), "n": len(vals)}
        summary[key] = {
            "label": mine[0]["label"],
            "receptive_field": mine[0]["receptive_field"],
            "params": mine[0]["params"],
            "acc_by_distance": per_d,
            "final_test_acc_mean": statistics.fmean(r["test_acc_per_epoch"][-1] for r in mine),
        }
    return summary


if __name__ == "__main__":
    main()
