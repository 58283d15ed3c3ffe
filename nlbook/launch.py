"""Appendix A — the launcher: train a zoo model on every process that ``torchrun`` started.

:mod:`nlbook.distributed` holds the primitives (process group, rank-aware printing, DDP wrapping) that
:func:`nlbook.train.fit` uses; this module is the command line on top of them, and :func:`launch_local`
starts it on this machine's CPUs the way the appendix does::

    torchrun --nproc_per_node=2 -m nlbook.launch --model vit --dataset digits --profile quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nlbook import zoo
from nlbook.checks import check_path_writable
from nlbook.data import load_dataset
from nlbook.distributed import barrier, cleanup, init_distributed, print0, unwrap
from nlbook.records import write_atomically
from nlbook.runtime import (
    DATASETS,
    PROFILES,
    get_profile,
    resolve_dataset_name,
    seed_everything,
)
from nlbook.train import fit

__all__ = ["LocalRun", "launch_local", "main"]


@dataclass
class LocalRun:
    """What :func:`launch_local` brought back from rank 0."""

    nproc: int
    threads_per_process: int
    wall_s: (
        float  # the whole launch: process start-up, data loading, training, evaluation
    )
    stdout: str
    record: dict  # nlbook.train.TrainRecord.to_dict()
    state_dict: dict[str, torch.Tensor]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local(
    nproc: int,
    args: list[str],
    *,
    threads_per_process: int | None = None,
    timeout_s: float = 600.0,
) -> LocalRun:
    """Run ``torchrun --nproc_per_node=nproc -m nlbook.launch *args`` on this machine's
    CPUs (gloo).

    The processes meet on 127.0.0.1 at a free port; ``threads_per_process`` (default:
    the CPU cores divided
    evenly) sets ``OMP_NUM_THREADS`` so N processes do not oversubscribe the cores.
    Rank 0's record and
    trained weights come back through a temporary folder. Raises ``RuntimeError`` with
    the processes' output
    if the launch fails.
    """
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"launch_local: nproc must be a positive int, got {nproc!r}")
    threads = threads_per_process or max(1, (os.cpu_count() or 1) // nproc)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=1",
            f"--nproc_per_node={nproc}",
        ]
        cmd += [
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            "-m",
            "nlbook.launch",
            *args,
        ]
        cmd += ["--save", str(out / "weights.pt"), "--json", str(out / "record.json")]
        env = os.environ | {
            "OMP_NUM_THREADS": str(threads),
            "CUDA_VISIBLE_DEVICES": "",
            "TQDM_DISABLE": "1",
        }
        env.pop("NLBOOK_DEVICE", None)
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout_s
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(
                f"torchrun exited with "
                f"{proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
            )
        record = json.loads((out / "record.json").read_text())
        state = torch.load(out / "weights.pt")
    return LocalRun(nproc, threads, wall, proc.stdout, record, state)


# --------------------------------------------------------------------------------------------------------------
# command line: torchrun --nproc_per_node=N -m nlbook.launch --model resnet ...


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m nlbook.launch",
        description="Train a zoo model with nlbook.train.fit on every process torchrun started (DDP).",
    )
    p.add_argument(
        "--model", default="resnet", help="zoo model name (nlbook.zoo.model_names())"
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="cifar10, digits or longrange (default $NLBOOK_DATASET)",
    )
    p.add_argument(
        "--profile",
        default=None,
        help="quick or full (default $NLBOOK_PROFILE / device)",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="the GLOBAL batch, split evenly over ranks",
    )
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--max-test", type=int, default=None)
    p.add_argument(
        "--no-augment",
        action="store_true",
        help="no random crops/flips (exact 1-vs-N comparisons)",
    )
    p.add_argument(
        "--no-sync-batchnorm",
        action="store_true",
        help="keep per-rank BatchNorm statistics on GPUs",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--save",
        default=None,
        help="rank 0 writes the trained state_dict here (torch.save)",
    )
    p.add_argument("--json", default=None, help="rank 0 writes the TrainRecord here")
    p.add_argument(
        "--init-timeout",
        type=float,
        default=None,
        help="seconds to wait for the other processes to join "
        "(default $NLBOOK_DIST_INIT_TIMEOUT, else 30)",
    )
    return p


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every flag, under its own name, before any process waits for another or trains (every rank parses the
    same command line, so every rank stops here alike)."""
    if args.model not in zoo.model_names():
        p.error(
            f"--model must be one of {', '.join(zoo.model_names())}, got {args.model!r}"
        )
    if args.dataset is not None and args.dataset not in DATASETS:
        p.error(f"--dataset must be one of {', '.join(DATASETS)}, got {args.dataset!r}")
    if args.profile is not None and args.profile not in PROFILES:
        p.error(f"--profile must be one of {', '.join(PROFILES)}, got {args.profile!r}")
    for flag, value, least in (
        ("--epochs", args.epochs, 1),
        ("--batch-size", args.batch_size, 1),
        ("--max-train", args.max_train, 1),
        ("--max-test", args.max_test, 1),
        ("--seed", args.seed, 0),
    ):
        if value is not None and value < least:
            p.error(f"{flag} must be >= {least}, got {value}")
    for flag, value in (("--lr", args.lr), ("--init-timeout", args.init_timeout)):
        if value is not None and not 0 < value < math.inf:  # NaN fails too
            p.error(f"{flag} must be a finite number > 0, got {value}")
    # the defaults the environment stands for, before any rank waits on another
    try:
        resolve_dataset_name(args.dataset)
    except ValueError as err:
        p.error(f"--dataset: {err}")
    env_profile = os.environ.get("NLBOOK_PROFILE")
    if args.profile is None and env_profile and env_profile not in PROFILES:
        p.error(
            f"--profile: NLBOOK_PROFILE={env_profile!r} is not one of {', '.join(PROFILES)}"
        )


def _same_file(a: str, b: str) -> bool:
    """Whether two output paths name one file (``x`` and ``./x``, a symbolic link, a hard link)."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.resolve() == pb.resolve():
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # one of them does not exist yet: different files
        return False


def _write_record(path: str, record: dict) -> None:
    write_atomically(
        path, lambda f: json.dump(record, f, indent=1, default=str), text=True
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``torchrun -m nlbook.launch``; see ``--help``.

    Every flag is checked, under its own name, before any process waits for another (usage errors exit with
    argparse's status 2). Rank 0 writes ``--save`` and ``--json``: both paths are checked before anything
    trains (an existing folder, not a folder themselves, not one file for both), each file is written
    atomically, and a run that stops early (Ctrl-C, an error) still writes the finished epochs to ``--json``
    (with an ``"interrupted"`` field saying why) and says where they are.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    if (
        args.save is not None
        and args.json is not None
        and _same_file(args.save, args.json)
    ):
        raise ValueError(
            f"nlbook.launch: --save and --json name the same file ({args.save!r}): the record would "
            "overwrite the weights; give each its own path"
        )
    if (
        os.environ.get("RANK", "0").strip() == "0"
    ):  # the writer; torchrun stops the other ranks if it fails here
        for flag, path in (("--save", args.save), ("--json", args.json)):
            if path is not None:
                check_path_writable("nlbook.launch", flag, path)
    info = init_distributed(init_timeout_s=args.init_timeout)
    try:
        profile = get_profile(args.profile, info.device)
        overrides = {"seed": args.seed}
        for key in ("epochs", "batch_size", "lr", "max_train", "max_test"):
            if getattr(args, key) is not None:
                overrides[key] = getattr(args, key)
        if args.no_augment:
            overrides["augment"] = False
        config = zoo.recipe(args.model, profile, **overrides)
        # local rank 0 of each machine loads (for CIFAR-10: downloads) first, the other ranks then read the
        # finished files; every rank passes exactly one barrier
        if info.local_rank != 0:
            barrier(info)
        data = load_dataset(args.dataset)
        if info.local_rank == 0:
            barrier(info)
        seed_everything(
            args.seed
        )  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
        model = zoo.build_model(
            args.model,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            image_size=data.image_size,
            profile=profile,
        )
        print0(
            f"{args.model} on {data.name}: {info.world_size} process(es), backend {info.backend or 'none'}, "
            f"device {info.device.type}, global batch {config.batch_size}",
            info=info,
        )
        sync_bn = False if args.no_sync_batchnorm else None
        try:
            record = fit(
                model,
                data,
                config,
                device=info.device,
                name=args.model,
                distributed=info,
                sync_batchnorm=sync_bn,
            )
        except (
            BaseException
        ) as err:  # nothing lost: the epochs that finished still reach --json
            partial = getattr(err, "record", None)
            if info.is_main and partial is not None:
                done = len(partial.history)
                if args.json:
                    _write_record(
                        args.json,
                        partial.to_dict()
                        | {"interrupted": f"{type(err).__name__}: {err}"},
                    )
                    kept = f"they are in --json {args.json}"
                else:
                    kept = "nothing was kept (pass --json PATH to keep them)"
                print(
                    f"nlbook.launch: stopped after {done} finished epoch(s); {kept}",
                    file=sys.stderr,
                    flush=True,
                )
            raise
        print0(record.summary(), info=info)
        if info.is_main and args.save:
            state = {k: v.cpu() for k, v in unwrap(model).state_dict().items()}
            write_atomically(args.save, lambda f: torch.save(state, f))
        if info.is_main and args.json:
            _write_record(args.json, record.to_dict())
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    # `-m nlbook.launch` runs this file as `__main__`; the process-group state lives in nlbook.distributed,
    # imported once like everywhere else, so nlbook.train sees the same DistInfo.
    sys.exit(main())
