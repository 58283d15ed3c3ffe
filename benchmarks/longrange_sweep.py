"""Chapter 7 — accuracy against glyph distance for every contestant on the long-range task, converged, 3 seeds.

Trains every model of :func:`nlbook.longrange_sweep.strategy_models` on the same generated 16×16 training set
(all distances mixed) with the chapter's one recipe (:func:`nlbook.longrange_sweep.train_config`), for each
seed, scores it on the fixed test split after every epoch and, at the end, on fixed test images at every single
distance, and writes the record ``benchmarks/results/ch7_longrange.json`` (``nlbook-record/1``, see
:mod:`nlbook.records`) that chapter 7 renders::

    python benchmarks/longrange_sweep.py --force         # remake the record (its wall time is in it, wall_s)
    python benchmarks/longrange_sweep.py --models cnn_rf7 --seeds 0 --max-epochs 2 --out /tmp/ch7_smoke.json

Where the record goes. The record in ``benchmarks/results/`` is replaced only with ``--force``; any other run
(fewer models or seeds, another base budget) writes ``benchmarks/results/tmp/ch7_longrange.json``, which git
ignores, unless ``--out`` names a file. Every flag and the output path are checked before anything trains.

Nothing finished is lost. Each run is written as it finishes (atomically) to a folder of finished runs next to
the output (``<out>.runs/``; for the record in ``benchmarks/results/``, ``benchmarks/results/tmp/``). A sweep
stopped by Ctrl-C or a crash says where that folder is, and the same command run again reuses every finished
run whose model, recipe, seed, epochs and thread count are unchanged. The folder's runs are removed once the
record holding them is written.

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
``tests/test_longrange.py`` compares it with the committed record.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nlbook.checks import check_path_writable  # noqa: E402
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
    FinishedRuns,
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
COMMITTED = RESULTS_DIR / f"{EXPERIMENT}.json"  # the record chapter 7 renders
SCRATCH = RESULTS_DIR / "tmp"  # git-ignored (.gitignore): trial runs, and the finished runs of a sweep under way


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


def _describe(path: Path) -> str:
    """``"9 arms x 3 seeds"`` of an existing record file (what replacing it would lose)."""
    try:
        arms = json.loads(path.read_text())["arms"]
        return f"{len(arms)} arms x {max(len(a['runs']) for a in arms)} seeds"
    except (OSError, ValueError, KeyError, TypeError):
        return "not a readable record"


def _is_committed(path: Path) -> bool:
    """A file directly in ``benchmarks/results/`` (not in its git-ignored ``tmp/``): a record the book shows."""
    return path.expanduser().resolve().parent == RESULTS_DIR.resolve()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, every flag and output path checked (argparse's usage error, exit status 2) before
    anything is built or trained; sets ``args.out`` (the record's path) and ``args.runs`` (its finished runs)."""
    known = list(strategy_models(IMAGE_SIZE))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=known, metavar="MODEL", help=f"of {', '.join(known)}")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="one run per seed (default 0 1 2)")
    ap.add_argument(
        "--max-epochs",
        type=int,
        default=MAX_EPOCHS,
        help="every model's base budget in epochs (doubled, up to 4x, while a seed has not converged)",
    )
    ap.add_argument("--threads", type=int, default=THREADS, help="torch.set_num_threads")
    ap.add_argument("--out", type=Path, default=None, help="the record's path (default: see the docstring)")
    ap.add_argument("--force", action="store_true", help="replace a record in benchmarks/results/")
    args = ap.parse_args(argv)
    unknown = [m for m in args.models if m not in known]
    if unknown:
        ap.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    for flag, values in (("--models", args.models), ("--seeds", args.seeds)):
        repeated = sorted({v for v in values if values.count(v) > 1}, key=values.index)
        if repeated:  # a repeated seed would count one run twice in the mean and spread
            ap.error(f"{flag} lists {', '.join(map(str, repeated))} more than once")
    if min(args.seeds) < 0:
        ap.error(f"--seeds must be >= 0, got {min(args.seeds)}")
    if args.max_epochs < 2:  # the convergence check compares the last quarter of the epochs with those before
        ap.error(f"--max-epochs must be >= 2, got {args.max_epochs}")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    the_record = set(args.models) == set(known) and sorted(args.seeds) == list(SEEDS) and args.max_epochs == MAX_EPOCHS
    if args.out is None:
        args.out = COMMITTED if the_record else SCRATCH / f"{EXPERIMENT}.json"
        args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        args.out = check_path_writable("longrange_sweep.py", "--out", args.out)
    except (TypeError, ValueError, PermissionError) as err:
        ap.error(str(err).removeprefix("longrange_sweep.py: "))
    if _is_committed(args.out) and args.out.exists() and not args.force:
        this = f"{len(args.models)} arm(s) x {len(args.seeds)} seed(s), base budget {args.max_epochs} epochs"
        ap.error(
            f"{args.out} is a record the book shows ({_describe(args.out)}); this run ({this}) would replace it. "
            "Pass --force to replace it, or --out PATH to write elsewhere"
        )
    # the finished runs: next to the output, but never among the records the book shows
    args.runs = (SCRATCH if _is_committed(args.out) else args.out.parent) / f"{args.out.name}.runs"
    if args.runs.exists() and not args.runs.is_dir():
        ap.error(f"the folder of finished runs {args.runs} is a file; move it, or choose another --out")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    out = args.out
    torch.set_num_threads(args.threads)
    arms = {a["name"]: a for a in planned_arms(args.max_epochs)}
    finished = FinishedRuns(args.runs)
    if finished.count():
        print(f"resuming: {finished.count()} finished run(s) in {finished.folder} (reused where unchanged)")
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
                identity = {
                    "experiment": EXPERIMENT,
                    "model_spec": arms[key]["model_spec"],
                    "train_config": _config_dict(epochs),
                    "seed": seed,
                    "threads": args.threads,
                    "torch": torch.__version__,
                }
                run = finished.get(f"{key}__seed{seed}__{epochs}epochs", identity)
                reused = run is not None
                if run is None:
                    run = train_run(key, seed, data_for(seed), task, epochs)
                    finished.put(f"{key}__seed{seed}__{epochs}epochs", identity, run)
                r = run["rule"]
                print(
                    f"{key:<10} {seed:>4} {epochs:>6} {arms[key]['params']:>8,} "
                    f"{run['final_test_acc']:>6.3f} {run['best_test_acc']:>6.3f} "
                    f"{str(run['converged']):>5} {run['wall_seconds']:>6.1f}  "
                    f"{r['train_acc_eval']:.3f}/{r['fresh_acc']:.3f}/{r['said_same']:.2f}" + ("  (reused)" * reused),
                    flush=True,
                )
                runs.append(run)
            return runs

        try:
            record["arms"].append(converge_arm(arms[key], train_seeds))
        except BaseException:  # Ctrl-C or a crash: say where the finished runs are
            print(f"\nlongrange_sweep.py: stopped; {finished.report()}", file=sys.stderr, flush=True)
            raise
    record["wall_s"] = time.perf_counter() - t0
    if finished.reused:  # wall_s then covers only the runs trained by this invocation
        record["resumed_runs"] = finished.reused
    write_record(record, out)
    finished.discard()
    print(results_table(record))
    print(f"wrote {out} ({record['wall_s'] / 60:.1f} min)")
    return out


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: main said where the finished runs are; no traceback
        sys.exit(130)
