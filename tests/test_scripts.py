"""The scripts under ``benchmarks/`` and the launcher: nothing silent, nothing lost.

* **Checked before training.** Every bad flag, output path, repeated seed, arm or model is refused with a usage
  error that names the flag (argparse's exit status 2) — and before any work: the functions that would load,
  build, train or measure are replaced by one that fails the test, so a check that ran only after training
  cannot pass here.
* **Committed records are kept.** A run that is not the record itself writes elsewhere; replacing a record in
  ``benchmarks/results/`` takes ``--force``; the smoke commands the docstrings show write outside it.
* **Finished runs are kept.** Each finished run is on disk as it finishes; an interrupted script says where,
  and the same command run again reuses them (fake training functions: no real training here).
* **Distributed set-up fails fast** when the other processes never come.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
import torch

from nlbook import distributed as D
from nlbook import launch
from nlbook.comparison import ModelRun
from nlbook.records import RESULTS_DIR, load_record

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "benchmarks"


@cache
def script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"_nlbook_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the script started loading, building, training or measuring before refusing its input")


# What each script would call to start work: replaced by _no_work in the flag tests.
WORK = {
    "longrange_sweep": ("train_run", "longrange_dataset", "planned_arms"),
    "run_all": ("benchmark_model", "load_dataset"),
    "finetune": ("train_run", "load_dataset", "planned_arms", "_build"),
    "gpu_check": ("run", "compare_forward", "train_step"),
    "attention_scaling": ("measure_one",),
    "compare_models": ("build_model", "measure"),
    "nonlocal_memory": ("run",),
    "vit_throughput": ("build_models",),
    "longrange_generation": ("images_per_second",),
}


def _file() -> str:
    return str(Path(__file__))


# (script, argv, what the usage error must say)
BAD_FLAGS = [
    ("longrange_sweep", ["--max-epochs", "1"], r"--max-epochs must be >= 2, got 1"),
    ("longrange_sweep", ["--seeds", "0", "0"], r"--seeds lists 0 more than once"),
    ("longrange_sweep", ["--models", "cnn_rf7", "vit", "cnn_rf7"], r"--models lists cnn_rf7 more than once"),
    ("longrange_sweep", ["--models", "resnet"], r"--models: unknown resnet; choose from cnn_rf7"),
    ("longrange_sweep", ["--seeds", "-1"], r"--seeds must be >= 0, got -1"),
    ("longrange_sweep", ["--threads", "0"], r"--threads must be >= 1, got 0"),
    ("longrange_sweep", ["--out", str(ROOT)], r"--out must be a file path, but .* is a folder"),
    ("longrange_sweep", ["--out", "/nonexistent-nlbook/x.json"], r"--out must be a file path in an existing folder"),
    ("run_all", ["--warmup", "-1"], r"--warmup must be >= 0, got -1"),
    ("run_all", ["--repeats", "0"], r"--repeats must be >= 1, got 0"),
    ("run_all", ["--models", "resnet,vit,resnet"], r"--models lists resnet more than once"),
    ("run_all", ["--models", "resnet,alexnet"], r"--models: unknown alexnet"),
    ("run_all", ["--models", ","], r"--models is empty"),
    ("run_all", ["--seeds", "0"], r"--seeds must be >= 1, got 0"),
    ("run_all", ["--epochs", "0"], r"--epochs must be >= 1, got 0"),
    ("run_all", ["--max-train", "0"], r"--max-train must be >= 1, got 0"),
    ("run_all", ["--max-test", "-5"], r"--max-test must be >= 1, got -5"),
    ("run_all", ["--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    ("run_all", ["--profile", "huge"], r"--profile must be one of quick, full, got 'huge'"),
    ("run_all", ["--dataset", "mnist"], r"--dataset must be one of .*got 'mnist'"),
    ("run_all", ["--device", "tpu"], r"--device: .*'tpu'"),
    ("run_all", ["--device", "cpu", "--out", _file()], r"--out must be a folder, but .* is a file"),
    ("run_all", ["--device", "cpu", "--out", "/nonexistent-nlbook/a/b"], r"--out must be a folder in an existing"),
    ("finetune", ["--tiny", "--arms", "resnet50_full", "resnet50_full"], r"--arms lists resnet50_full more than once"),
    ("finetune", ["--tiny", "--seeds", "0"], r"--seeds must be >= 1, got 0"),
    ("finetune", ["--tiny", "--out", _file()], r"--out must be a folder, but .* is a file"),
    ("finetune", ["--tiny", "--out", "/nonexistent-nlbook/a/b"], r"--out must be a folder in an existing folder"),
    ("finetune", ["--tiny", "--arms", "vit_b_32_full"], r"argument --arms: invalid choice"),
    ("gpu_check", ["--models", "resnet", "resnet"], r"--models lists resnet more than once"),
    ("gpu_check", ["--models", "alexnet"], r"--models: unknown alexnet"),
    ("gpu_check", ["--epochs", "0"], r"--epochs must be >= 1, got 0"),
    ("gpu_check", ["--max-train", "0"], r"--max-train must be >= 1, got 0"),
    ("gpu_check", ["--profile", "huge"], r"--profile must be one of"),
    ("gpu_check", ["--dataset", "mnist"], r"--dataset must be one of"),
    ("gpu_check", ["--device", "cpu", "--record"], r"--record is for CUDA runs"),
    ("attention_scaling", ["--sizes", "8", "8"], r"--sizes lists 8 more than once"),
    ("attention_scaling", ["--sizes", "0"], r"--sizes must all be >= 1, got 0"),
    ("attention_scaling", ["--dim", "10", "--heads", "4"], r"--dim must be a multiple of --heads"),
    ("attention_scaling", ["--repeats", "0"], r"--repeats must be >= 1, got 0"),
    ("attention_scaling", ["--cap-mib", "nan"], r"--cap-mib must be a finite number > 0, got nan"),
    ("compare_models", ["--models", "vit,vit"], r"--models lists vit more than once"),
    ("compare_models", ["--warmup", "-1"], r"--warmup must be >= 0, got -1"),
    ("compare_models", ["--repeats", "0"], r"--repeats must be >= 1, got 0"),
    ("compare_models", ["--image-size", "0"], r"--image-size must be >= 1, got 0"),
    ("compare_models", ["--device", "tpu"], r"--device: .*'tpu'"),
    ("nonlocal_memory", ["--sizes", "14,x"], r"--sizes must be comma-separated integers"),
    ("nonlocal_memory", ["--sizes", "14,28,14"], r"--sizes lists 14 more than once"),
    ("nonlocal_memory", ["--max-gib", "0"], r"--max-gib must be a finite number > 0, got 0\.0"),
    ("nonlocal_memory", ["--batch", "0"], r"--batch must be >= 1, got 0"),
    ("vit_throughput", ["--image-size", "30"], r"--image-size must be a multiple of --patch-size"),
    ("vit_throughput", ["--dim", "10"], r"--dim must be a multiple of --heads"),
    ("vit_throughput", ["--rounds", "0"], r"--rounds must be >= 1, got 0"),
    ("vit_throughput", ["--warmup", "-1"], r"--warmup must be >= 0, got -1"),
    ("longrange_generation", ["--n", "0"], r"--n must be >= 1, got 0"),
    ("longrange_generation", ["--repeats", "0"], r"--repeats must be >= 1, got 0"),
]


@pytest.mark.parametrize(("name", "argv", "message"), BAD_FLAGS, ids=[f"{n}:{' '.join(a)}" for n, a, _ in BAD_FLAGS])
def test_bad_flags_are_refused_before_any_work(
    name: str, argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    module = script(name)
    for attr in WORK[name]:
        monkeypatch.setattr(module, attr, _no_work)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # a script must not change this process
    with pytest.raises(SystemExit) as stop:
        module.main(argv)
    assert stop.value.code == 2, f"not a usage error: exit status {stop.value.code}"
    err = capsys.readouterr().err
    assert re.search(message, err), f"expected {message!r} in:\n{err}"


LAUNCH_BAD_FLAGS = [
    (["--epochs", "0"], r"--epochs must be >= 1, got 0"),
    (["--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    (["--max-train", "0"], r"--max-train must be >= 1, got 0"),
    (["--seed", "-1"], r"--seed must be >= 0, got -1"),
    (["--lr", "nan"], r"--lr must be a finite number > 0, got nan"),
    (["--lr", "-0.1"], r"--lr must be a finite number > 0, got -0\.1"),
    (["--model", "alexnet"], r"--model must be one of resnet, .*got 'alexnet'"),
    (["--dataset", "mnist"], r"--dataset must be one of .*got 'mnist'"),
    (["--profile", "huge"], r"--profile must be one of .*got 'huge'"),
    (["--init-timeout", "0"], r"--init-timeout must be a finite number > 0, got 0\.0"),
]


@pytest.mark.parametrize(("argv", "message"), LAUNCH_BAD_FLAGS, ids=[" ".join(a) for a, _ in LAUNCH_BAD_FLAGS])
def test_launcher_refuses_bad_flags_before_joining(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for attr in ("init_distributed", "load_dataset", "fit"):
        monkeypatch.setattr(launch, attr, _no_work)
    with pytest.raises(SystemExit) as stop:
        launch.main(argv)
    assert stop.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize(
    ("variable", "message"),
    [("NLBOOK_DATASET", r"--dataset: unknown dataset 'nope'"), ("NLBOOK_PROFILE", r"--profile: .*'nope'")],
)
def test_defaults_from_the_environment_are_checked_up_front(
    variable: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A flag left out stands for an environment variable: a bad one is the flag's usage error, before any work."""
    monkeypatch.setenv(variable, "nope")
    for attr in ("init_distributed", "load_dataset", "fit"):
        monkeypatch.setattr(launch, attr, _no_work)
    run_all = script("run_all")
    for attr in WORK["run_all"]:
        monkeypatch.setattr(run_all, attr, _no_work)
    for main in (launch.main, lambda argv: run_all.main([*argv, "--device", "cpu"])):
        with pytest.raises(SystemExit) as stop:
            main([])
        assert stop.value.code == 2 and re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "symlink"])
def test_launcher_refuses_one_file_for_weights_and_record(
    spelling: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for attr in ("init_distributed", "load_dataset", "fit"):
        monkeypatch.setattr(launch, attr, _no_work)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_text("previous weights")
    other = {"same": "x", "dot-slash": "./x", "symlink": "link"}[spelling]
    if spelling == "symlink":
        (tmp_path / "link").symlink_to(tmp_path / "x")
    with pytest.raises(ValueError, match=r"--save and --json name the same file"):
        launch.main(["--save", "x", "--json", other])
    assert (tmp_path / "x").read_text() == "previous weights"


# ---------------------------------------------------------------------------------------------------------------
# Committed records are replaced only when asked; smoke runs write elsewhere
# ---------------------------------------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sweep_never_replaces_the_chapter_record_unasked() -> None:
    sweep = script("longrange_sweep")
    record = sweep.COMMITTED
    assert record.exists() and record.parent == RESULTS_DIR
    before = _digest(record)
    for argv in ([], ["--out", str(record), "--models", "cnn_rf7"], ["--threads", "2"]):
        with pytest.raises(SystemExit) as stop:
            sweep.parse_args(argv)
        assert stop.value.code == 2
    # a smaller sweep is not the record: it goes to the git-ignored scratch folder
    args = sweep.parse_args(["--models", "cnn_rf7", "--seeds", "0", "--max-epochs", "2"])
    assert args.out.parent == sweep.SCRATCH and RESULTS_DIR / "tmp" == sweep.SCRATCH
    assert args.runs.parent == sweep.SCRATCH
    # the record itself, asked for: allowed, and its finished runs never sit among the records
    forced = sweep.parse_args(["--force"])
    assert forced.out.resolve() == record.resolve() and forced.runs.parent == sweep.SCRATCH
    assert _digest(record) == before


def test_scratch_folder_is_ignored_by_git() -> None:
    proc = subprocess.run(
        ["git", "check-ignore", "-q", "benchmarks/results/tmp/ch7_longrange.json"], cwd=ROOT, check=False
    )
    if proc.returncode == 128:
        pytest.skip("not a git checkout")
    assert proc.returncode == 0, "benchmarks/results/tmp/ must be git-ignored: trial runs write there"


# The smoke commands the scripts' docstrings show: each must write outside benchmarks/results/.
SMOKE = {
    "longrange_sweep": "--models cnn_rf7 --seeds 0 --max-epochs 2 --out /tmp/ch7_smoke.json",
    "run_all": "--profile quick --dataset digits --seeds 1 --out /tmp/run_all_smoke",
    "finetune": "--tiny --arms resnet50_frozen",
}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_docstring_smoke_commands_write_outside_the_results(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = script(name)
    command = f"python benchmarks/{name}.py {SMOKE[name]}"
    assert command in module.__doc__, f"the docstring of benchmarks/{name}.py no longer shows {command!r}"
    if name == "run_all":
        monkeypatch.setattr(module, "pick_device", lambda device=None: torch.device("cpu"))
    args = module.parse_args(SMOKE[name].split())
    written = [getattr(args, attr) for attr in ("out", "path", "json_path", "csv_path", "runs") if hasattr(args, attr)]
    assert written
    for path in written:
        assert not Path(path).resolve().is_relative_to(RESULTS_DIR.resolve()), f"{command} writes {path}"


# ---------------------------------------------------------------------------------------------------------------
# Finished runs are kept, and reused
# ---------------------------------------------------------------------------------------------------------------


def _history(epochs: int, acc: float = 0.6) -> list[dict[str, float]]:
    """A flat history (the same accuracy every epoch): converged by the records' criterion, no doubling."""
    return [
        {"epoch": e + 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": acc,
         "seconds": 0.01, "images_per_s": 100.0}
        for e in range(epochs)
    ]  # fmt: skip


class Trainer:
    """A fake training function: records its calls, and raises ``KeyboardInterrupt`` on call ``stop_at``."""

    def __init__(self, make: object, stop_at: int | None = None) -> None:
        self.make, self.stop_at, self.calls = make, stop_at, []

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls.append(args)
        if len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        return self.make(*args, **kwargs)


def test_sweep_keeps_finished_runs_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sweep = script("longrange_sweep")
    monkeypatch.setattr(sweep, "longrange_dataset", lambda *a, **k: None)
    monkeypatch.setattr(sweep.torch, "set_num_threads", lambda n: None)
    rule = {"train_acc_eval": 0.5, "fresh_acc": 0.5, "said_same": 0.5, "pair_determined": 1.0, "said_same_by_pair": {}}

    def run(key: str, seed: int, data: object, task: object, epochs: int) -> dict:
        return sweep.run_entry(seed, _history(epochs), 0.1, acc_by_distance={"1": 0.5}, rule=rule)

    out = tmp_path / "ch7.json"
    argv = ["--models", "cnn_rf7", "--seeds", "0", "1", "--max-epochs", "2", "--out", str(out)]
    monkeypatch.setattr(sweep, "train_run", Trainer(run, stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        sweep.main(argv)
    runs = tmp_path / "ch7.json.runs"
    assert sorted(p.name for p in runs.iterdir()) == ["cnn_rf7__seed0__2epochs.json"] and not out.exists()
    assert f"1 finished run(s) are kept in {runs}" in capsys.readouterr().err

    trainer = Trainer(run)
    monkeypatch.setattr(sweep, "train_run", trainer)
    assert sweep.main(argv) == out
    assert [(a[0], a[1], a[4]) for a in trainer.calls] == [("cnn_rf7", 1, 2)]  # seed 0 was reused
    record = load_record(out)
    assert [r["seed"] for r in record["arms"][0]["runs"]] == [0, 1] and record["resumed_runs"] == 1
    assert not runs.exists()  # the record holds them now


def test_sweep_reuses_a_run_only_when_nothing_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = script("longrange_sweep")
    monkeypatch.setattr(sweep, "longrange_dataset", lambda *a, **k: None)
    monkeypatch.setattr(sweep.torch, "set_num_threads", lambda n: None)
    rule = {"train_acc_eval": 0.5, "fresh_acc": 0.5, "said_same": 0.5, "pair_determined": 1.0, "said_same_by_pair": {}}

    def run(key: str, seed: int, data: object, task: object, epochs: int) -> dict:
        return sweep.run_entry(seed, _history(epochs), 0.1, acc_by_distance={"1": 0.5}, rule=rule)

    argv = ["--models", "cnn_rf7", "--seeds", "0", "1", "--max-epochs", "2", "--out", str(tmp_path / "r.json")]
    monkeypatch.setattr(sweep, "train_run", Trainer(run, stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        sweep.main(argv)
    trainer = Trainer(run)
    monkeypatch.setattr(sweep, "train_run", trainer)
    sweep.main([*argv, "--threads", "2"])  # another thread count: another run, trained again
    assert [a[1] for a in trainer.calls] == [0, 1]


def _model_run(name: str, data: object, *, profile: object, seed: int, **kwargs: object) -> ModelRun:
    config = {"batch_size": 32, "augment": False, "seed": seed}
    return ModelRun(name, "cnn", seed, data.name, profile.name, 0.6, 0.01, 1, 64, 32, config, _history(1), None)


def test_run_all_keeps_finished_runs_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_all = script("run_all")
    argv = ["--profile", "quick", "--dataset", "digits", "--seeds", "2", "--models", "resnet", "--device", "cpu"]
    argv += ["--out", str(tmp_path)]
    monkeypatch.setattr(run_all, "benchmark_model", Trainer(_model_run, stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        run_all.main(argv)
    runs = tmp_path / "zoo_benchmark__digits_quick_cpu.runs"
    assert sorted(p.name for p in runs.iterdir()) == ["resnet__seed0.json"]
    assert not list(tmp_path.glob("*.json")) and f"kept in {runs}" in capsys.readouterr().err

    trainer = Trainer(_model_run)
    monkeypatch.setattr(run_all, "benchmark_model", trainer)
    path = run_all.main(argv)
    assert [a[0] for a in trainer.calls] == ["resnet"] and len(trainer.calls) == 1  # seed 0 was reused
    record = load_record(path)
    assert [r["seed"] for r in record["arms"][0]["runs"]] == [0, 1] and record["resumed_runs"] == 1
    assert path.with_suffix(".csv").read_text().count("\n") == 2  # header and one model
    assert not runs.exists()


def test_run_all_never_overwrites_an_earlier_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_all = script("run_all")
    argv = [
        "--profile",
        "quick",
        "--dataset",
        "digits",
        "--models",
        "resnet",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    (tmp_path / "zoo_benchmark__digits_quick_cpu.json").write_text("an earlier record")
    args = run_all.parse_args(argv)
    assert args.json_path.name.startswith("zoo_benchmark__digits_quick_cpu_") and args.json_path.suffix == ".json"
    assert args.csv_path.stem == args.json_path.stem


def test_finetune_keeps_finished_runs_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    finetune = script("finetune")

    def run(arm: dict, seed: int, data: object, device: object) -> dict:
        history = [{k: v for k, v in e.items() if k != "images_per_s"} for e in _history(1)]
        return {"seed": seed, "epochs_run": 1, "converged": False, "final_test_acc": 0.6, "best_test_acc": 0.6,
                "train_seconds": 0.01, "wall_seconds": 0.01, "images_per_s": 100.0, "history": history}  # fmt: skip

    argv = ["--tiny", "--arms", "resnet50_frozen", "--seeds", "2", "--out", str(tmp_path)]
    monkeypatch.setattr(finetune, "train_run", Trainer(run, stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        finetune.main(argv)
    runs = tmp_path / "ch4_finetune_smoke.json.runs"
    assert sorted(p.name for p in runs.iterdir()) == ["resnet50_frozen__seed0.json"]
    assert f"kept in {runs}" in capsys.readouterr().err

    trainer = Trainer(run)
    monkeypatch.setattr(finetune, "train_run", trainer)
    path = finetune.main(argv)
    assert [a[1] for a in trainer.calls] == [1]
    assert [r["seed"] for r in load_record(path)["arms"][0]["runs"]] == [0, 1] and not runs.exists()


def test_gpu_check_report_is_kept_model_by_model(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_check = script("gpu_check")
    monkeypatch.setattr(gpu_check, "load_dataset", lambda name: type("D", (), {"name": name})())
    monkeypatch.setattr(gpu_check, "compare_forward", lambda *a: (0.0, 0.01, "bfloat16"))
    step = {"params": 1, "train_loss": 1.0, "test_acc": 0.5, "images_per_s": 1.0, "peak_mib": 1.0, "batch": 2,
            "wall_s": 1.0}  # fmt: skip
    calls = []

    def train_step(name: str, *args: object) -> dict:
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return step

    monkeypatch.setattr(gpu_check, "train_step", train_step)
    kept: list[str] = []
    args = gpu_check.argparse.Namespace(
        device="cpu", profile="quick", dataset="digits", models=["resnet", "vit", "swin"], epochs=1, max_train=None
    )
    with pytest.raises(KeyboardInterrupt):
        gpu_check.run(args, kept.append)
    assert len(kept) == 2 and "INCOMPLETE: 2 of 3 models checked" in kept[-1] and "| vit |" in kept[-1]


def test_launcher_says_where_the_finished_epochs_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from nlbook import train

    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NLBOOK_DEVICE"):
        monkeypatch.delenv(key, raising=False)
    partial = train.TrainRecord("resnet", 10, "cpu", "cpu", "digits", {}, history=[], wall_time_s=1.0)

    def interrupted(*args: object, **kwargs: object) -> object:
        raise train.TrainingInterrupted(partial)

    monkeypatch.setattr(launch, "fit", interrupted)
    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        launch.main(["--dataset", "digits", "--profile", "quick", "--json", str(out)])
    assert f"they are in --json {out}" in capsys.readouterr().err and out.exists()
    with pytest.raises(KeyboardInterrupt):
        launch.main(["--dataset", "digits", "--profile", "quick"])
    assert "nothing was kept (pass --json PATH" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Distributed set-up fails fast
# ---------------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alone(monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    """The environment of one rank of two, started without torchrun (so the other never comes)."""
    env = {"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in env.items() | {("MASTER_PORT", str(_free_port()))}:
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    monkeypatch.delenv("NLBOOK_DIST_INIT_TIMEOUT", raising=False)


@pytest.mark.parametrize(
    ("rank", "message"),
    [(0, r"rank 0 waited 1 s for the other 1 process\(es\) of WORLD_SIZE=2"), (1, r"rank 1 .* could not reach rank 0")],
)
def test_a_rank_started_alone_fails_in_seconds(rank: int, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _alone(monkeypatch, rank)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=message) as err:
        D.init_distributed(device="cpu", init_timeout_s=1)
    assert time.perf_counter() - start < 30  # torch's own rendezvous waits 300 s here
    assert "torchrun" in str(err.value) and not torch.distributed.is_initialized()


def test_the_launcher_fails_fast_too(monkeypatch: pytest.MonkeyPatch) -> None:
    _alone(monkeypatch, 0)
    monkeypatch.setattr(launch, "load_dataset", _no_work)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"waited 1 s .*torchrun"):
        launch.main(["--dataset", "digits", "--init-timeout", "1"])
    monkeypatch.setenv("NLBOOK_DIST_INIT_TIMEOUT", "1")
    with pytest.raises(RuntimeError, match=r"waited 1 s .*torchrun"):
        launch.main(["--dataset", "digits"])
    assert time.perf_counter() - start < 60


def test_init_timeouts_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for bad, exc in (
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        ("5", TypeError),
        (True, TypeError),
    ):
        with pytest.raises(exc, match="init_timeout_s must be a number of seconds > 0"):
            D.init_distributed(device="cpu", init_timeout_s=bad)
    with pytest.raises(ValueError, match="timeout_s must be a number of seconds > 0"):
        D.init_distributed(device="cpu", timeout_s=float("inf"))
    monkeypatch.setenv("NLBOOK_DIST_INIT_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="NLBOOK_DIST_INIT_TIMEOUT must be a number of seconds > 0, got 'soon'"):
        D.init_distributed(device="cpu")
    monkeypatch.delenv("NLBOOK_DIST_INIT_TIMEOUT")
    assert D.init_distributed(device="cpu", init_timeout_s=np.float64(2.5)).world_size == 1  # numpy scalars pass
    D.cleanup()


def test_two_ranks_started_by_hand_still_meet(tmp_path: Path) -> None:
    """The short rendezvous is only a shorter wait: two ranks started without torchrun join and all-reduce."""
    code = textwrap.dedent(
        """
        import torch
        from nlbook import distributed as D
        info = D.init_distributed(device="cpu", init_timeout_s=60)
        print(int(D.all_reduce_sum(torch.tensor([info.rank + 1.0]), info).item()))
        D.cleanup()
        """
    )
    port = str(_free_port())
    env = os.environ | {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert [o[0].split() for o in outs] == [["3"], ["3"]]


def test_finished_run_files_are_plain_json(tmp_path: Path) -> None:
    """What a finished-run file holds: the run and the identity it is reused under (readable without nlbook)."""
    folder = script("longrange_sweep").FinishedRuns(tmp_path / "runs")  # nlbook.records.FinishedRuns
    identity = {"seed": 0, "threads": 1}
    folder.put("cnn_rf7__seed0__2epochs", identity, {"seed": 0})
    saved = json.loads((tmp_path / "runs" / "cnn_rf7__seed0__2epochs.json").read_text())
    assert saved == {"identity": identity, "run": {"seed": 0}}
    name = "cnn_rf7__seed0__2epochs"
    assert folder.get(name, identity) == {"seed": 0} and folder.get(name, {"seed": 1}) is None
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["cnn_rf7__seed0__2epochs.json"]  # no temporary left
