"""Chapter 7 — accuracy against glyph distance for every contestant on the long-range task, converged, 3 seeds.

Trains every model of :func:`nlbook.longrange_sweep.strategy_models` on the same generated 16×16 training set
(all distances mixed) with the chapter's one recipe (:func:`nlbook.longrange_sweep.train_config`), for each
seed, scores it on the fixed test split after every epoch and, at the end, on fixed test images at every single
distance, and writes the record ``benchmarks/results/ch7_longrange.json`` (``nlbook-record/1``, see
:mod:`nlbook.records`) that chapter 7 renders::

    python benchmarks/longrange_sweep.py                 # the record (its wall time is in the record, wall_s)
    python benchmarks/longrange_sweep.py --models vit cnn_rf7 --seeds 0 1 --max-epochs 2 --out /tmp/x.json

Convergence criterion and budget (:data:`nlbook.records.CONVERGENCE`, the rule of every record). Every run
follows its schedule (warm-up, then cosine decay to zero) — the decaying learning rate is the stopping rule; a
run counts as *converged* when the best test accuracy of its last quarter of epochs exceeds the best before it
by less than 0.005 (five of the 1,000 test images). Every contestant starts at ``MAX_EPOCHS`` epochs; while any
seed is not converged, all its seeds train again from scratch with twice the epochs, up to four times
(:func:`nlbook.records.train_to_convergence`). A run still improving at the cap is recorded with
``converged: false``.

Each run also records what rule the model learned: its accuracy on its own training images (evaluation mode),
the share of test images it calls "same", and how far its answer is fixed by *which* two glyphs are drawn
(:func:`nlbook.longrange_sweep.glyph_pair_rule`) — the measurement that explains a CNN below chance.

``planned_arms()`` returns the arms this script would train today, without training: the staleness test in
``tests/test_longrange.py`` compares it with the committed record. The record is rewritten after every contestant, so
an interrupted sweep keeps what it finished.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nlbook.data import longrange_dataset  # noqa: E402
from nlbook.longrange import TEST_SEED, LongRangeTask  # noqa: E402
from nlbook.longrange_sweep import (  # noqa: E402
    accuracy_by_distance,
    glyph_pair_rule,
    strategy_models,
    train_config,
)
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
from nlbook.train import count_parameters, fit  # noqa: E402

EXPERIMENT = "ch7_longrange"
COMMAND = "python benchmarks/longrange_sweep.py"
IMAGE_SIZE = 16
N_TRAIN, N_TEST = 3000, 1000
N_PER_DISTANCE = 400  # fixed test images at each single distance
N_RULE = 4000  # fresh test images for the learned-rule diagnostics
MAX_EPOCHS = 12  # every contestant's base budget; doubled while a seed has not converged
SEEDS = (0, 1, 2)
THREADS = 1


def _config_dict(epochs: int = MAX_EPOCHS) -> dict[str, Any]:
    """The recipe as recorded: ``asdict(TrainConfig)`` minus the seed, plus the generated data's sizes."""
    config = {k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in asdict(train_config(epochs)).items()}
    config.pop("seed")
    config["data"] = {"image_size": IMAGE_SIZE, "n_train": N_TRAIN, "n_test": N_TEST, "n_per_distance": N_PER_DISTANCE}
    return config


def planned_arms(max_epochs: int = MAX_EPOCHS) -> list[dict[str, Any]]:
    """The arms this script trains today (model spec with its parameter count, recipe), without training."""
    arms = []
    for key, spec in strategy_models(IMAGE_SIZE).items():
        params = count_parameters(spec.build())
        arms.append(
            {
                "name": key,
                "label": spec.label,
                "x": None,
                "strategy": spec.strategy,
                "receptive_field": spec.receptive_field,
                "model_spec": {**spec.model_spec, "params": params},
                "train_config": _config_dict(max_epochs),
                "params": params,
                "budget": budget_plan(max_epochs),
            }
        )
    return arms


@torch.no_grad()
def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy in evaluation mode (BatchNorm's running statistics), the way the test split is scored."""
    model.eval()
    said = torch.cat([model(images[i : i + 1000]).argmax(1) for i in range(0, len(images), 1000)])
    return (said == labels).float().mean().item()


def train_run(key: str, seed: int, data, task: LongRangeTask, max_epochs: int) -> dict[str, Any]:
    """One seed of one contestant: train, then score per distance and describe the learned rule."""
    spec = strategy_models(IMAGE_SIZE)[key]
    torch.manual_seed(seed)  # the initial weights
    model = spec.build()
    rec = fit(model, data, train_config(max_epochs, seed=seed), device="cpu", name=key, progress=False)
    distances = list(range(task.min_distance, task.max_distance + 1))
    by_d = accuracy_by_distance(model, task, distances, data.mean, data.std, n=N_PER_DISTANCE)
    train_acc_eval = _accuracy(model, data.normalize(data.train_images), data.train_labels)
    rule = glyph_pair_rule(model, task.sample(N_RULE, TEST_SEED + 7919), data.mean, data.std)
    return run_entry(
        seed,
        rec.history,
        rec.wall_time_s,
        acc_by_distance={str(d): a for d, a in by_d.items()},
        rule={
            "train_acc_eval": train_acc_eval,
            "fresh_acc": rule.accuracy,
            "said_same": rule.said_same,
            "pair_determined": rule.determined,
            "said_same_by_pair": {f"{a}{b}": v for (a, b), v in rule.said_same_by_pair.items()},
        },
    )


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(strategy_models(IMAGE_SIZE)))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    ap.add_argument("--threads", type=int, default=THREADS, help="torch.set_num_threads")
    ap.add_argument("--out", default=None, help=f"default: benchmarks/results/{EXPERIMENT}.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    arms = {a["name"]: a for a in planned_arms(args.max_epochs)}
    unknown = [m for m in args.models if m not in arms]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {list(arms)}")
    out = Path(args.out) if args.out else RESULTS_DIR / f"{EXPERIMENT}.json"
    task = LongRangeTask(image_size=IMAGE_SIZE)
    record: dict[str, Any] = {
        "format": FORMAT,
        "experiment": EXPERIMENT,
        "chapter": 7,
        "question": (
            "How does test accuracy depend on the distance between the two glyphs for CNNs of growing receptive "
            "field, a CNN with an MLP after global pooling, and models with attention (Non-local, ViT, BoTNet)?"
        ),
        "provenance": provenance("cpu", None if argv is None else ["benchmarks/longrange_sweep.py", *argv]),
        "dataset": {
            "name": "longrange",
            "train_size": N_TRAIN,
            "test_size": N_TEST,
            "image_size": IMAGE_SIZE,
            "channels": 3,
            "classes": 2,
            "glyph_size": task.glyph_size,
            "num_glyphs": task.num_glyphs,
            "noise": task.noise,
            "train_distances": list(task.distance_range),
            "eval_distances": list(range(task.min_distance, task.max_distance + 1)),
            "n_per_distance": N_PER_DISTANCE,
            "n_rule": N_RULE,
            "test_seed": TEST_SEED,
            "chance": 0.5,
        },
        "convergence": CONVERGENCE | {"base_epochs": args.max_epochs},
        "wall_s": 0.0,
        "arms": [],
    }
    t0 = time.perf_counter()
    datasets: dict[int, Any] = {}

    def data_for(seed: int):
        if seed not in datasets:  # each seed draws its own training set
            datasets[seed] = longrange_dataset(N_TRAIN, N_TEST, image_size=IMAGE_SIZE, seed=seed)
        return datasets[seed]

    print(
        f"{'model':<10} {'seed':>4} {'epochs':>6} {'params':>8} {'final':>6} {'best':>6} {'conv':>5} {'s':>6}  "
        "rule: train/fresh/same"
    )
    for key in args.models:

        def train_seeds(epochs: int, key: str = key) -> list[dict[str, Any]]:
            runs = []
            for seed in args.seeds:
                run = train_run(key, seed, data_for(seed), task, epochs)
                r = run["rule"]
                print(
                    f"{key:<10} {seed:>4} {epochs:>6} {arms[key]['params']:>8,} "
                    f"{run['final_test_acc']:>6.3f} {run['best_test_acc']:>6.3f} "
                    f"{str(run['converged']):>5} {run['wall_seconds']:>6.1f}  "
                    f"{r['train_acc_eval']:.3f}/{r['fresh_acc']:.3f}/{r['said_same']:.2f}",
                    flush=True,
                )
                runs.append(run)
            return runs

        record["arms"].append(converge_arm(arms[key], train_seeds))
        record["wall_s"] = time.perf_counter() - t0
        write_record(record, out)
    print(results_table(record))
    print(f"wrote {out} ({record['wall_s'] / 60:.1f} min)")
    return out


if __name__ == "__main__":
    main()
