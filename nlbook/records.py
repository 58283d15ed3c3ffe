"""Chapters 3–7 — experiment records: one JSON format for every converged, multi-seed measurement the book shows.

A chapter never re-trains its headline experiment at build time: a script under ``benchmarks/`` trains every
arm to convergence with several seeds and writes a *record* (``benchmarks/results/<experiment>.json``, format
``nlbook-record/1``); the chapter loads it and renders it. A record is a JSON object::

    format, experiment, chapter, question      what is measured, for which chapter
    provenance    git commit (+ dirty flag), date, exact command, machine (CPU, threads, device, GPU), versions
    dataset       name and sizes of the data
    convergence   the criterion and the budget rule (:data:`CONVERGENCE`)
    wall_s        seconds the script ran
    arms[]        name, label, x (a swept value or null), model_spec, train_config (of the shown runs), params,
                  optional baseline, budget (base and final epochs, every budget tried) and
                  runs[]: seed, epochs_run, converged, final/best test accuracy, seconds, per-epoch history

This module is that contract in code:

* :func:`provenance` — what produced a record: git commit (and whether the tree had uncommitted changes), date,
  CPU model, thread count, device, library versions and the exact command;
* :func:`converged`, :func:`train_to_convergence`, :func:`converge_arm` and :func:`run_entry` — the one
  convergence criterion and budget rule of every record, and the one shape of an arm's runs;
* :func:`write_record` / :func:`load_record` — an atomic write (a crash never leaves half a file) and a load that
  fails loudly on a missing, truncated or foreign file instead of showing "no runs";
* :func:`summarize` / :func:`results_table` — per arm: mean, standard deviation, n, min and max over seeds;
* :func:`verdict` — the one rule that turns two sets of seeds into "better", "worse" or "within the spread";
* :func:`stale_arms` — the differences between the arms a record holds and the arms today's code would train.

It is a low layer: only the standard library and torch.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "FORMAT",
    "FORMAT_V2",
    "FinishedRuns",
    "RESULTS_DIR",
    "ArmSummary",
    "RecordError",
    "RecordNotFoundError",
    "Verdict",
    "arm_values",
    "CONVERGENCE",
    "budget_plan",
    "compare_arms",
    "converge_arm",
    "converged",
    "find_arm",
    "load_record",
    "provenance",
    "record_path",
    "record_paths",
    "results_table",
    "run_entry",
    "stale_arms",
    "summarize",
    "train_to_convergence",
    "validate_record",
    "validate_run_v2",
    "verdict",
    "write_atomically",
    "write_record",
]

FORMAT = "nlbook-record/1"
# Records with a validation split (Fashion-MNIST, CIFAR-10): per-epoch validation accuracy, the test split scored
# once per run, and the budget-doubling rule of nlbook.convergence with every budget's runs kept.
FORMAT_V2 = "nlbook-record/2"
ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"

# What each level of a record must hold (extra keys are allowed: a record may carry more than the contract).
_TOP_KEYS = (
    "format",
    "experiment",
    "chapter",
    "question",
    "provenance",
    "dataset",
    "convergence",
    "wall_s",
    "arms",
)
_PROVENANCE_KEYS = (
    "git_commit",
    "git_dirty",
    "date",
    "command",
    "machine",
    "python",
    "torch",
    "nlbook",
)
_MACHINE_KEYS = ("cpu", "threads", "device", "gpu")
_ARM_KEYS = ("name", "label", "x", "model_spec", "train_config", "params", "runs")
_RUN_KEYS = (
    "seed",
    "epochs_run",
    "converged",
    "final_test_acc",
    "best_test_acc",
    "train_seconds",
    "history",
)
_EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")


# The convergence criterion and budget rule every record states (its "convergence" entry).
MIN_DELTA = 0.005  # two of the digits test split's 359 images
PATIENCE_FRACTION = 0.25  # the "last quarter" of a run's epochs
MAX_DOUBLINGS = 2  # a budget grows to at most 2**2 = 4 times the arm's base epochs
CONVERGENCE = {
    "criterion": (
        "each run follows its recipe's warm-up + cosine schedule to the end; it is converged when the best test "
        "accuracy of its last quarter of epochs exceeds the best before it by less than min_delta"
    ),
    "budget_rule": (
        "every seed of an arm trains at the arm's base epochs; if any seed is not converged, all seeds are "
        "trained again from scratch with twice the epochs, up to max_doublings times; the runs shown are those "
        "of the last budget tried (arm.budget lists every budget and how many seeds converged at it)"
    ),
    "patience_fraction": PATIENCE_FRACTION,
    "min_delta": MIN_DELTA,
    "max_doublings": MAX_DOUBLINGS,
}


def _check_int(where: str, name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{where}: {name} must be an int >= {least}, got {value!r}")


def converged(
    test_accs: Sequence[float],
    min_delta: float = MIN_DELTA,
    fraction: float = PATIENCE_FRACTION,
) -> bool:
    """The criterion: the last ``fraction`` of epochs improved the best test accuracy by less than ``min_delta``.

    The "last quarter" of n epochs is ceil(fraction · n) of them (at least one; 10 epochs: the last 3). Accuracies
    are fractions in [0, 1]: a percentage would make ``min_delta`` a hundred times stricter, so it is refused.
    With fewer than two epochs there is no "before" to compare with: not converged.
    """
    accs = _seed_values(
        test_accs, "test_accs", "converged", minimum=0, what="per-epoch accuracies"
    )
    if any(not 0.0 <= a <= 1.0 for a in accs):
        raise ValueError(
            f"converged: test_accs must be accuracy fractions in [0, 1] (not percent), got {max(accs)!r}"
        )
    k = max(1, math.ceil(fraction * len(accs) - 1e-9))
    if len(accs) <= k:
        return False
    return max(accs[-k:]) - max(accs[:-k]) < min_delta


def train_to_convergence(
    train_seeds: Callable[[int], list[dict[str, Any]]],
    base_epochs: int,
    max_doublings: int = MAX_DOUBLINGS,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The budget rule: train every seed at ``base_epochs``; double the epochs while any seed is not converged.

    ``train_seeds(epochs)`` trains every seed from scratch with that many epochs and returns their runs (each
    with a boolean ``converged``). Returns the runs of the last budget tried and the arm's ``budget`` entry:
    ``{"base_epochs", "max_epochs", "epochs", "tried": [{"epochs", "converged", "seeds", "final_test_acc"}]}``.
    """
    _check_int("train_to_convergence", "base_epochs", base_epochs, 2)
    _check_int("train_to_convergence", "max_doublings", max_doublings, 0)
    tried = []
    epochs = base_epochs
    for step in range(max_doublings + 1):
        runs = train_seeds(epochs)
        if not runs or not all(
            isinstance(r, Mapping) and "converged" in r for r in runs
        ):
            raise ValueError(
                "train_to_convergence: train_seeds must return a non-empty list of runs with 'converged'"
            )
        n = sum(bool(r["converged"]) for r in runs)
        finals = [float(r["final_test_acc"]) for r in runs]
        tried.append(
            {
                "epochs": epochs,
                "converged": n,
                "seeds": len(runs),
                "final_test_acc": sum(finals) / len(finals),
            }
        )
        if n == len(runs) or step == max_doublings:
            break
        epochs *= 2
    budget = {
        "base_epochs": base_epochs,
        "max_epochs": base_epochs * 2**max_doublings,
        "epochs": epochs,
        "tried": tried,
    }
    return runs, budget


def budget_plan(base_epochs: int) -> dict[str, int]:
    """A planned arm's ``budget``: its base epochs and the rule's cap (what :func:`stale_arms` compares)."""
    _check_int("budget_plan", "base_epochs", base_epochs, 2)
    return {"base_epochs": base_epochs, "max_epochs": base_epochs * 2**MAX_DOUBLINGS}


def converge_arm(
    arm: Mapping[str, Any], train_seeds: Callable[[int], list[dict[str, Any]]]
) -> dict[str, Any]:
    """A planned arm (with ``budget_plan``) trained under the budget rule: the arm with the runs of its last
    budget, that budget's epochs in its ``train_config`` and the ``budget`` entry listing every try."""
    if not (
        isinstance(arm, Mapping)
        and isinstance(arm.get("budget"), Mapping)
        and isinstance(arm.get("train_config"), Mapping)
    ):
        raise TypeError(
            "converge_arm: arm must be a planned arm with 'train_config' and 'budget' "
            f"(budget_plan), got {arm!r:.80}"
        )
    runs, budget = train_to_convergence(
        train_seeds, arm["budget"]["base_epochs"], MAX_DOUBLINGS
    )
    config = {**arm["train_config"], "epochs": budget["epochs"]}
    return {**arm, "train_config": config, "budget": budget, "runs": runs}


def run_entry(
    seed: int, history: Sequence[Any], wall_seconds: float, **extra: Any
) -> dict[str, Any]:
    """One seed's run as a record holds it, from its per-epoch history (:class:`nlbook.train.EpochStats` or
    their dicts): epochs, convergence (:func:`converged`), final and best test accuracy, training seconds
    (evaluation excluded), wall seconds and the history itself; ``extra`` fields are added as given."""
    keys = (
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "seconds",
    )
    epochs = [
        {k: e[k] if isinstance(e, Mapping) else getattr(e, k) for k in keys}
        for e in history
    ]
    if not epochs:
        raise ValueError("run_entry: history must hold at least one epoch, got none")
    accs = [e["test_acc"] for e in epochs]
    return {
        "seed": seed,
        "epochs_run": len(epochs),
        "converged": converged(accs),
        "final_test_acc": accs[-1],
        "best_test_acc": max(accs),
        "train_seconds": sum(e["seconds"] for e in epochs),
        "wall_seconds": wall_seconds,
        **extra,
        "history": epochs,
    }


class RecordError(ValueError):
    """A record file or object that does not follow ``nlbook-record/1``; the message says where and what."""


class RecordNotFoundError(RecordError, FileNotFoundError):
    """No record file where one was expected; the message lists the records that do exist."""


# ---------------------------------------------------------------------------------------------- provenance


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux); ``platform`` elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def provenance(
    device: torch.device | str = "cpu", command: Sequence[str] | None = None
) -> dict[str, Any]:
    """What produces a record, captured now: git state, date, machine, versions and the exact command.

    ``command`` defaults to ``sys.argv`` as run (``python benchmarks/converge.py ch3 ...``). ``git_dirty`` is true
    when tracked files differ from the commit — the record then may not be reproducible from ``git_commit`` alone.
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"provenance: device must be a torch.device or a name like 'cuda', got {device!r}"
        ) from err
    # a command given as one string would be split into characters below; it must be argv, a list of words
    if command is not None and (
        isinstance(command, str) or not all(isinstance(w, str) for w in command)
    ):
        raise TypeError(
            f"provenance: command must be a list of strings (like sys.argv) or None, got {command!r}"
        )
    argv = list(sys.argv if command is None else command)
    if argv and argv[0].endswith(".py"):
        try:  # a path relative to the repository, so the command can be pasted from its root
            argv[0] = str(Path(argv[0]).resolve().relative_to(ROOT))
        except ValueError:
            pass
    status = _git("status", "--porcelain", "--untracked-files=no")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *argv]),
        "machine": {
            "cpu": _cpu_model(),
            "threads": torch.get_num_threads(),
            "device": device.type,
            "gpu": gpu,
        },
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "nlbook": _version("nlbook"),
    }


# ---------------------------------------------------------------------------------------------- validation


def _need(obj: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(obj, Mapping):
        raise RecordError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise RecordError(f"{where}: missing {', '.join(repr(k) for k in missing)}")


def _fraction(value: Any, where: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 <= value <= 1.0
    ):
        raise RecordError(
            f"{where}: expected an accuracy fraction in [0, 1], got {value!r}"
        )


def validate_record(record: Any, where: str = "record") -> dict[str, Any]:
    """Check that ``record`` follows ``nlbook-record/1``; return it, or raise :class:`RecordError` saying what is wrong.

    Checks structure and value ranges, not the number of seeds (a chapter's test asks for its own minimum).
    """
    _need(record, _TOP_KEYS, where)
    if record["format"] == FORMAT_V2:
        return _validate_v2(record, where)
    if record["format"] != FORMAT:
        raise RecordError(
            f"{where}: format is {record['format']!r}, expected {FORMAT!r}"
        )
    _need(record["provenance"], _PROVENANCE_KEYS, f"{where}.provenance")
    _need(record["provenance"]["machine"], _MACHINE_KEYS, f"{where}.provenance.machine")
    if not isinstance(record["arms"], list) or not record["arms"]:
        raise RecordError(f"{where}.arms: expected a non-empty list of arms")
    seen: set[tuple[str, Any]] = set()
    for i, arm in enumerate(record["arms"]):
        at = f"{where}.arms[{i}]"
        _need(arm, _ARM_KEYS, at)
        key = (arm["name"], arm["x"])
        if key in seen:
            raise RecordError(
                f"{at}: arm {arm['name']!r} with x={arm['x']!r} appears twice"
            )
        seen.add(key)
        if not isinstance(arm["runs"], list) or not arm["runs"]:
            raise RecordError(
                f"{at}.runs: expected a non-empty list of runs (one per seed)"
            )
        seeds = [
            run.get("seed") if isinstance(run, Mapping) else None for run in arm["runs"]
        ]
        if len(set(seeds)) != len(seeds):
            raise RecordError(f"{at}.runs: repeated seeds {seeds}")
        for j, run in enumerate(arm["runs"]):
            rat = f"{at}.runs[{j}]"
            _need(run, _RUN_KEYS, rat)
            _fraction(run["final_test_acc"], f"{rat}.final_test_acc")
            _fraction(run["best_test_acc"], f"{rat}.best_test_acc")
            epochs_run = run["epochs_run"]
            if (
                isinstance(epochs_run, bool)
                or not isinstance(epochs_run, int)
                or epochs_run < 1
            ):
                raise RecordError(
                    f"{rat}.epochs_run: expected an int >= 1, got {epochs_run!r}"
                )
            if (
                not isinstance(run["history"], list)
                or len(run["history"]) != run["epochs_run"]
            ):
                raise RecordError(
                    f"{rat}.history: expected one entry per epoch run ({run['epochs_run']})"
                )
            for k, epoch in enumerate(run["history"]):
                _need(epoch, _EPOCH_KEYS, f"{rat}.history[{k}]")
                _fraction(epoch["test_acc"], f"{rat}.history[{k}].test_acc")
                for key in ("train_loss", "test_loss", "seconds"):
                    # null: a loss that diverged (NaN is not JSON)
                    if epoch[key] is not None:
                        _finite(epoch[key], f"{rat}.history[{k}].{key}")
            accs = [e["test_acc"] for e in run["history"]]
            # a record that cannot be true: its summary fields must be what its history says
            for key, want in (
                ("final_test_acc", accs[-1]),
                ("best_test_acc", max(accs)),
            ):
                if run[key] != want:
                    raise RecordError(
                        f"{rat}.{key} is {run[key]!r} but the history says {want!r}"
                    )
    return record


_RUN_KEYS_V2 = (
    "seed",
    "epochs",
    "final_val_acc",
    "best_val_acc",
    "best_val_epoch",
    "test_acc",
    "test_loss",
    "train_seconds",
    "history",
)
_EPOCH_KEYS_V2 = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "seconds",
)


def _finite(value: Any, where: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
    ):
        raise RecordError(f"{where}: expected a finite number, got {value!r}")


def validate_run_v2(run: Any, where: str = "run") -> dict[str, Any]:
    """One seed's run of an ``nlbook-record/2`` record: fields present, accuracies fractions, losses finite
    numbers, and the summary fields equal to what the history says (a record that cannot be true is refused)."""
    _need(run, _RUN_KEYS_V2, where)
    history = run["history"]
    if not isinstance(history, list) or not history or len(history) != run["epochs"]:
        raise RecordError(
            f"{where}.history: expected one entry per epoch ({run['epochs']!r}), "
            f"got {len(history) if isinstance(history, list) else history!r}"
        )
    for k, epoch in enumerate(history):
        at = f"{where}.history[{k}]"
        _need(epoch, _EPOCH_KEYS_V2, at)
        if epoch["epoch"] != k + 1:
            raise RecordError(f"{at}.epoch: expected {k + 1}, got {epoch['epoch']!r}")
        for key in ("train_acc", "val_acc"):
            _fraction(epoch[key], f"{at}.{key}")
        for key in ("lr", "train_loss", "val_loss", "seconds"):
            _finite(epoch[key], f"{at}.{key}")
    vals = [e["val_acc"] for e in history]
    for key, want in (
        ("final_val_acc", vals[-1]),
        ("best_val_acc", max(vals)),
        ("best_val_epoch", 1 + vals.index(max(vals))),
    ):
        if run[key] != want:
            raise RecordError(
                f"{where}.{key} is {run[key]!r} but the history says {want!r}"
            )
    _fraction(run["test_acc"], f"{where}.test_acc")
    _finite(run["test_loss"], f"{where}.test_loss")
    return run


def _validate_v2(record: Mapping[str, Any], where: str) -> dict[str, Any]:
    _need(record["provenance"], _PROVENANCE_KEYS, f"{where}.provenance")
    _need(
        record["dataset"],
        ("name", "train_size", "val_size", "test_size"),
        f"{where}.dataset",
    )
    if not isinstance(record["arms"], list) or not record["arms"]:
        raise RecordError(f"{where}.arms: expected a non-empty list of arms")
    seen: set[tuple[str, Any]] = set()
    for i, arm in enumerate(record["arms"]):
        at = f"{where}.arms[{i}]"
        _need(arm, (*_ARM_KEYS, "budget"), at)
        key = (arm["name"], json.dumps(arm["x"]))
        if key in seen:
            raise RecordError(
                f"{at}: arm {arm['name']!r} with x={arm['x']!r} appears twice"
            )
        seen.add(key)
        _need(
            arm["budget"],
            ("base_epochs", "max_epochs", "epochs", "converged", "budgets"),
            f"{at}.budget",
        )
        if not isinstance(arm["runs"], list) or not arm["runs"]:
            raise RecordError(
                f"{at}.runs: expected a non-empty list of runs (one per seed)"
            )
        seeds = [
            run.get("seed") if isinstance(run, Mapping) else None for run in arm["runs"]
        ]
        if len(set(map(repr, seeds))) != len(seeds):
            raise RecordError(f"{at}.runs: repeated seeds {seeds}")
        for j, run in enumerate(arm["runs"]):
            validate_run_v2(run, f"{at}.runs[{j}]")
            if run["epochs"] != arm["budget"]["epochs"]:
                raise RecordError(
                    f"{at}.runs[{j}].epochs: {run['epochs']} but the arm shows the budget {arm['budget']['epochs']}"
                )
    return dict(record)


# ---------------------------------------------------------------------------------------------- files


def record_path(experiment: str, folder: str | os.PathLike | None = None) -> Path:
    """Where the record ``experiment`` lives: ``<folder>/<experiment>.json`` (default: ``benchmarks/results``)."""
    if (
        not isinstance(experiment, str)
        or not experiment
        or "/" in experiment
        or experiment.endswith(".json")
    ):
        raise ValueError(
            f"experiment must be a record name such as 'ch3_nonlocal', got {experiment!r}"
        )
    return Path(folder if folder is not None else RESULTS_DIR) / f"{experiment}.json"


def record_paths(
    experiment: str, folder: str | os.PathLike | None = None
) -> list[Path]:
    """Every record of ``experiment``, the ones to show first first.

    GPU / full-dataset records (``<experiment>__<dataset>_<device>.json``) come before the CPU record
    ``<experiment>.json``: a chapter shows the real-scale measurement when one exists.
    """
    base = record_path(experiment, folder)
    variants = sorted(base.parent.glob(f"{experiment}__*.json"))
    return variants + ([base] if base.exists() else [])


def _clean(value: Any) -> Any:
    """JSON-ready copy: tuples → lists, non-finite floats → None (strict JSON has no NaN), dtypes → str."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, torch.dtype):
        return str(value)
    return value


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[Any]], object], *, text: bool = False
) -> Path:
    """Write ``path`` through a temporary file in the same folder, then rename it into place.

    ``os.replace`` is atomic: a crash or a full disk mid-write leaves the previous file (or none), never a
    truncated one. ``write`` receives the open file (text mode if ``text``, else binary). The one way the
    package writes files (records here; the launcher's weights and training record).
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"write_atomically: the folder of path {str(target)!r} does not exist"
        )
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(fd, "w" if text else "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class FinishedRuns:
    """A script's finished runs, one JSON file each in ``folder``, written atomically as each run finishes, so a
    stopped script loses at most the run in flight and the same command resumes.

    A file holds the run (a JSON-ready dict) and its *identity* (whatever decides its result: model spec,
    recipe, seed, data, device, threads, torch); :meth:`get` returns a run only when today's identity is the
    same, and an unreadable file is reported and trained again.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        if isinstance(folder, bool) or not isinstance(folder, str | os.PathLike):
            raise TypeError(
                f"FinishedRuns: folder must be a path (str or os.PathLike), got {type(folder).__name__}"
            )
        self.folder = Path(folder)
        self.touched: set[Path] = set()
        self.reused = 0

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def get(self, name: str, identity: Mapping[str, Any]) -> dict[str, Any] | None:
        """The finished run ``name`` if its identity is ``identity``, else ``None``."""
        path = self.path(name)
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (
            OSError,
            ValueError,
        ) as err:  # unreadable: train again (the new run replaces it)
            print(f"  ignoring {path.name}: {err}", file=sys.stderr)
            return None
        if (
            not isinstance(saved, dict)
            or "run" not in saved
            or saved.get("identity") != _clean(identity)
        ):
            return None  # another recipe, model, device or thread count: not this run
        self.touched.add(path)
        self.reused += 1
        return saved["run"]

    def put(
        self, name: str, identity: Mapping[str, Any], run: Mapping[str, Any]
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(name)
        write_atomically(
            path,
            lambda f: json.dump(_clean({"identity": identity, "run": run}), f),
            text=True,
        )
        self.touched.add(path)

    def count(self) -> int:
        return len(list(self.folder.glob("*.json"))) if self.folder.is_dir() else 0

    def report(self) -> str:
        """Where the finished runs are, for a stopped script's last words."""
        if not self.count():
            return "no run had finished, so there is nothing to keep."
        return f"{self.count()} finished run(s) are kept in {self.folder}; the same command resumes from them."

    def discard(self) -> None:
        """Remove the runs this invocation used (its record now holds them), and the folder once it is empty."""
        for path in self.touched:
            path.unlink(missing_ok=True)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()


def write_record(record: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Validate ``record`` and write it to ``path`` atomically (:func:`write_atomically`).

    Readers see either the old file or the complete new one, never a half-written record.
    """
    data = validate_record(_clean(record))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def dump(f: IO[Any]) -> None:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")

    return write_atomically(path, dump, text=True)


def load_record(
    experiment: str | os.PathLike, folder: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Load and validate the record ``experiment`` (a name such as ``"ch3_nonlocal"``, or a path to a ``.json``).

    Raises :class:`RecordNotFoundError` (listing the records that exist) when the file is missing, and
    :class:`RecordError` when it is truncated, not JSON, or not ``nlbook-record/1`` — never an empty result.
    """
    as_path = isinstance(experiment, os.PathLike) or (
        isinstance(experiment, str) and experiment.endswith(".json")
    )
    path = Path(experiment) if as_path else record_path(experiment, folder)  # type: ignore[arg-type]
    if not path.is_file():
        existing = (
            sorted(p.stem for p in path.parent.glob("*.json"))
            if path.parent.is_dir()
            else []
        )
        raise RecordNotFoundError(
            f"no record at {path}; records in {path.parent}: {', '.join(existing) or 'none'}. "
            "Records are written by the benchmarks/ scripts (e.g. python benchmarks/converge.py all)."
        )
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}; {len(text)} characters) "
            "— truncated or corrupted; regenerate it with the command in its provenance"
        ) from err
    return validate_record(data, where=str(path))


# ---------------------------------------------------------------------------------------------- arms and seeds


def _check_loaded(record: Any, where: str) -> None:
    """A record's readers index ``record["arms"]``: a name or a path instead would fail as an opaque KeyError."""
    if not isinstance(record, Mapping) or not isinstance(record.get("arms"), list):
        got = (
            repr(record)
            if isinstance(record, str | os.PathLike)
            else type(record).__name__
        )
        raise TypeError(
            f"{where}: record must be a loaded record (a dict with 'arms', from load_record), got {got}"
        )


def find_arm(record: Mapping[str, Any], name: str, x: Any = None) -> dict[str, Any]:
    """The arm ``name`` (at swept value ``x``) of ``record``; a ``KeyError`` listing the arms otherwise."""
    _check_loaded(record, "find_arm")
    for arm in record["arms"]:
        if arm["name"] == name and arm["x"] == x:
            return arm
    have = ", ".join(
        f"{a['name']}" + (f"@{a['x']}" if a["x"] is not None else "")
        for a in record["arms"]
    )
    raise KeyError(
        f"record {record.get('experiment')!r} has no arm {name!r} with x={x!r}; arms: {have}"
    )


def arm_values(
    record: Mapping[str, Any], name: str, x: Any = None, metric: str = "final_test_acc"
) -> list[float]:
    """One value per seed of arm ``name`` (at ``x``): a run field such as ``final_test_acc`` or ``best_test_acc``."""
    arm = find_arm(record, name, x)
    if metric not in arm["runs"][0]:
        raise KeyError(
            f"runs have no field {metric!r}; fields: {', '.join(arm['runs'][0])}"
        )
    return [float(run[metric]) for run in arm["runs"]]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the deviation of one value is 0."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation, count, minimum and maximum of one quantity over seeds."""

    mean: float
    std: float
    n: int
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        values = [float(v) for v in values]
        if not values:
            raise ValueError("Stat.of: need at least one value")
        mean, std = _mean_std(values)
        return cls(mean, std, len(values), min(values), max(values))


@dataclass(frozen=True)
class ArmSummary:
    """One arm of a record summarised over its seeds."""

    name: str
    label: str
    x: Any
    seeds: tuple[int, ...]
    final_test_acc: Stat
    best_test_acc: Stat
    epochs: Stat
    train_seconds: Stat
    converged: int  # how many of the seeds met the record's convergence criterion
    params: int


def summarize(record: Mapping[str, Any]) -> list[ArmSummary]:
    """Per arm, in record order: mean, std, n, min and max over seeds of final/best test accuracy, epochs, seconds."""
    _check_loaded(record, "summarize")
    out = []
    for arm in record["arms"]:
        runs = arm["runs"]
        out.append(
            ArmSummary(
                name=arm["name"],
                label=arm["label"],
                x=arm["x"],
                seeds=tuple(run["seed"] for run in runs),
                final_test_acc=Stat.of([run["final_test_acc"] for run in runs]),
                best_test_acc=Stat.of([run["best_test_acc"] for run in runs]),
                epochs=Stat.of([run["epochs_run"] for run in runs]),
                train_seconds=Stat.of([run["train_seconds"] for run in runs]),
                converged=sum(bool(run["converged"]) for run in runs),
                params=arm["params"],
            )
        )
    return out


def _mean_pm(stat: Stat) -> str:
    """ "mean ± standard deviation %"; one seed has no spread, so none is shown."""
    if stat.n < 2:
        return f"{100 * stat.mean:.1f} % (1 seed)"
    return f"{100 * stat.mean:.1f} ± {100 * stat.std:.1f} %"


def results_table(record: Mapping[str, Any]) -> str:
    """A plain-text table of a record: per arm, accuracy mean ± std over seeds, seeds, epochs, convergence, time."""
    _check_loaded(record, "results_table")
    rows = [
        (
            "arm",
            "x",
            "params",
            "final test acc",
            "best test acc",
            "seeds",
            "epochs",
            "converged",
            "s/run",
        )
    ]
    for s in summarize(record):
        rows.append(
            (
                s.label,
                ""
                if s.x is None
                else f"{s.x:g}"
                if isinstance(s.x, (int, float))
                else str(s.x),
                f"{s.params:,}",
                _mean_pm(s.final_test_acc),
                _mean_pm(s.best_test_acc),
                str(len(s.seeds)),
                f"{s.epochs.mean:.0f}"
                if s.epochs.min == s.epochs.max
                else f"{s.epochs.min:.0f}–{s.epochs.max:.0f}",
                f"{s.converged}/{len(s.seeds)}",
                f"{s.train_seconds.mean:.0f}",
            )
        )
    if all(r[1] == "" for r in rows[1:]):  # no swept variable: drop the empty column
        rows = [r[:1] + r[2:] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """How ``a`` compares with ``b`` over seeds: ``word`` is "better", "worse" or "within the spread".

    ``difference`` is mean(a) − mean(b); ``spread`` is twice its standard error, 2·sqrt(sa²/na + sb²/nb) with
    sample standard deviations. The difference counts only when it is larger than the spread.
    """

    word: str
    difference: float
    spread: float
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int

    def __str__(self) -> str:
        return self.word


def _seed_values(
    values: Any,
    name: str,
    where: str = "verdict",
    minimum: int = 2,
    what: str = "per-seed values",
) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(
            f"{where}: {name} must be a list of {what}, got {type(values).__name__}"
        )
    out = []
    for v in values:
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not math.isfinite(v)
        ):
            raise ValueError(f"{where}: {name} must hold finite numbers, got {v!r}")
        out.append(float(v))
    if len(out) < minimum:
        raise ValueError(
            f"{where}: {name} needs at least {minimum} seeds to have a spread, got {len(out)}"
        )
    return out


def verdict(a: Sequence[float], b: Sequence[float]) -> Verdict:
    """Is ``a`` better than, worse than, or within the seed spread of ``b`` (higher is better)?

    The rule of the digits-era records: the difference of the means against twice its standard error,
    ``2 * sqrt(sa**2 / na + sb**2 / nb)`` — "better"/"worse" only when the difference is larger. When both arms
    have zero spread (every seed identical) the spread is 0, so any difference at all is "better"/"worse" and
    only equal means are "within the spread". (Records with a validation split use Welch's t-test instead:
    :func:`nlbook.stats.compare`.)
    """
    a, b = _seed_values(a, "a"), _seed_values(b, "b")
    (ma, sa), (mb, sb) = _mean_std(a), _mean_std(b)
    difference = ma - mb
    spread = 2.0 * math.sqrt(sa**2 / len(a) + sb**2 / len(b))
    word = (
        "within the spread"
        if abs(difference) <= spread
        else "better"
        if difference > 0
        else "worse"
    )
    return Verdict(word, difference, spread, ma, mb, len(a), len(b))


def compare_arms(
    record: Mapping[str, Any],
    a: str,
    b: str,
    x: Any = None,
    metric: str = "final_test_acc",
    x_b: Any = ...,
) -> Verdict:
    """:func:`verdict` of arm ``a`` against arm ``b`` of ``record`` over their seeds (both at ``x`` unless ``x_b``)."""
    return verdict(
        arm_values(record, a, x, metric),
        arm_values(record, b, x if x_b is ... else x_b, metric),
    )


# ---------------------------------------------------------------------------------------------- staleness


def _diff(recorded: Any, planned: Any, path: str) -> list[str]:
    if isinstance(recorded, Mapping) and isinstance(planned, Mapping):
        out = []
        for key in sorted(set(recorded) | set(planned)):
            if key not in planned:
                out.append(
                    f"{path}.{key}: recorded {recorded[key]!r}, no longer planned"
                )
            elif key not in recorded:
                out.append(f"{path}.{key}: planned {planned[key]!r}, not in the record")
            else:
                out.extend(_diff(recorded[key], planned[key], f"{path}.{key}"))
        return out
    if recorded != planned:
        return [f"{path}: recorded {recorded!r}, planned {planned!r}"]
    return []


def stale_arms(
    record: Mapping[str, Any], planned_arms: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The differences between a record's arms and the arms today's code plans, as sentences (empty: up to date).

    ``planned_arms`` are dicts with ``name``, ``x``, ``model_spec`` and ``train_config`` (what the experiment
    script would train now), and optionally ``params`` and ``budget`` (``base_epochs``, ``max_epochs``). An arm
    missing on either side, any differing field of its model spec, training configuration or budget rule, or a
    different parameter count (the model's code changed under the same spec) is reported. A recorded arm whose
    budget was doubled (:func:`train_to_convergence`) is compared at its base epochs.
    """
    _check_loaded(record, "stale_arms")
    is_list = isinstance(planned_arms, Sequence) and not isinstance(planned_arms, str)
    if not is_list or not all(isinstance(a, Mapping) for a in planned_arms):
        raise TypeError(
            "stale_arms: planned_arms must be a list of dicts (name, x, model_spec, train_config), "
            f"got {type(planned_arms).__name__}"
        )
    planned = _clean(
        [dict(arm) for arm in planned_arms]
    )  # the same JSON types as a loaded record
    recorded = {(a["name"], a["x"]): a for a in record["arms"]}
    wanted = {(a["name"], a["x"]): a for a in planned}
    problems = []
    for key in recorded.keys() - wanted.keys():
        problems.append(
            f"arm {key[0]!r} (x={key[1]!r}) is in the record but no longer planned"
        )
    for key in wanted.keys() - recorded.keys():
        problems.append(
            f"arm {key[0]!r} (x={key[1]!r}) is planned but not in the record"
        )
    for key in wanted.keys() & recorded.keys():
        arm = dict(recorded[key])
        budget = arm.get("budget")
        if isinstance(budget, Mapping):
            # the shown runs may have a doubled budget: the plan names the base, the rule's cap, not the outcome
            if isinstance(arm.get("train_config"), Mapping):
                arm["train_config"] = {
                    **arm["train_config"],
                    "epochs": budget.get("base_epochs"),
                }
            arm["budget"] = {k: budget.get(k) for k in ("base_epochs", "max_epochs")}
        for field in ("model_spec", "train_config", "budget"):
            if (
                field == "budget"
                and "budget" not in wanted[key]
                and "budget" not in arm
            ):
                continue
            where = (
                f"arm {key[0]!r}"
                + (f" (x={key[1]!r})" if key[1] is not None else "")
                + f" {field}"
            )
            problems.extend(_diff(arm.get(field), wanted[key].get(field), where))
        if "params" in wanted[key] and wanted[key]["params"] != recorded[key]["params"]:
            where = f"arm {key[0]!r}" + (
                f" (x={key[1]!r})" if key[1] is not None else ""
            )
            problems.append(
                f"{where} params: recorded {recorded[key]['params']}, planned {wanted[key]['params']}"
            )
    return sorted(problems)
