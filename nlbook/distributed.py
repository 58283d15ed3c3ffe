"""Appendix A — the same training loop on several processes: ``torchrun`` + ``DistributedDataParallel``.

``torchrun --nproc_per_node=N`` starts N copies of a script and tells each, through environment variables,
who it is: ``RANK`` (0 … WORLD_SIZE-1 over all machines), ``LOCAL_RANK`` (which GPU of this machine),
``WORLD_SIZE``, and where rank 0 listens (``MASTER_ADDR``/``MASTER_PORT``). This module turns that into a
:class:`DistInfo` (:func:`init_distributed`), and gives :func:`nlbook.train.fit` what it needs to run
unchanged under ``torchrun``:

* the process group: NCCL between GPUs, gloo between CPU processes;
* each rank trains on its contiguous share of every *global* batch (:class:`nlbook.data.DeviceLoader`
  with ``rank``/``world_size``), and ``DistributedDataParallel`` averages the gradients, so N processes
  take the same optimisation steps as one process on the whole batch;
* metrics are sums all-reduced over ranks (:func:`all_reduce_sum`) before they are divided, so the printed
  loss and accuracy are those of the global batch / whole test set, identical on every rank;
* only rank 0 prints (:func:`print0`) and draws a progress bar.

Run a zoo model this way (what the appendix does, and what a multi-GPU machine runs)::

    torchrun --nproc_per_node=2 -m nlbook.distributed --model vit --dataset digits --profile quick

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op single process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "LocalRun",
    "all_reduce_sum",
    "barrier",
    "cleanup",
    "current",
    "init_distributed",
    "launch_local",
    "main",
    "print0",
    "unwrap",
    "wrap_model",
]

_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class DistInfo:
    """Who this process is in a (possibly one-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "nccl", "gloo", or None for a single process
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(
                f"DistInfo: need world_size >= 1, 0 <= rank < world_size and local_rank >= 0, got rank={self.rank}, "
                f"world_size={self.world_size}, local_rank={self.local_rank}"
            )

    @property
    def enabled(self) -> bool:
        """More than one process: gradients and metrics have to be reduced."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 — the one process that prints, saves and shows progress."""
        return self.rank == 0


_CURRENT: DistInfo | None = None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer (set by torchrun), got {value!r}") from None


def init_distributed(
    backend: str | None = None, *, device: torch.device | str | None = None, timeout_s: float = 300.0
) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment and return this rank's info.

    Args:
        backend: ``"nccl"`` (GPUs) or ``"gloo"`` (CPUs); default NCCL when the device is CUDA, else gloo.
        device: this process's device; default ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU —
            one GPU per process, which is what DDP is fastest with.
        timeout_s: how long collectives wait for a missing rank before failing (instead of hanging).

    Without ``WORLD_SIZE`` (a plain ``python`` run) or with ``WORLD_SIZE=1`` no process group is created.
    """
    global _CURRENT
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device is None:
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # NCCL and the caching allocator pick up "the" GPU from here
    if world == 1 and not dist.is_initialized():
        _CURRENT = DistInfo(device=device)
        return _CURRENT
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"init_distributed: backend must be 'nccl' or 'gloo', got {backend!r}")
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(f"init_distributed: NCCL needs CUDA devices, got {device}; use backend='gloo' on CPUs")
    if not dist.is_initialized():
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise RuntimeError(f"init_distributed: WORLD_SIZE={world} but {missing} unset — launch with torchrun")
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    _CURRENT = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(), device)
    return _CURRENT


def current() -> DistInfo:
    """The info of this process: what :func:`init_distributed` returned, else a single CPU/CUDA process."""
    if _CURRENT is not None and (not _CURRENT.enabled or dist.is_initialized()):
        return _CURRENT
    if dist.is_available() and dist.is_initialized():  # a group someone else created
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", 0)
        backend = dist.get_backend()
        device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
        return DistInfo(rank, world, local_rank, backend, device)
    return DistInfo()


def cleanup() -> None:
    """Leave the process group (call at the end of a ``torchrun`` script)."""
    global _CURRENT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


def barrier(info: DistInfo | None = None) -> None:
    """Wait for every rank (no-op for one process)."""
    info = info or current()
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, info: DistInfo | None = None) -> torch.Tensor:
    """The element-wise sum of ``values`` over all ranks (a new tensor; the input itself for one process).

    Reduce *sums* (loss × images, correct predictions, image counts) and divide afterwards: averaging
    per-rank means would be wrong whenever ranks hold different numbers of images (a last partial batch).
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"all_reduce_sum expects a tensor, got {type(values).__name__}")
    info = info or current()
    if not info.enabled:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def print0(*args, info: DistInfo | None = None, **kwargs) -> None:
    """``print`` on rank 0 only, so N processes do not print every line N times."""
    if (info or current()).is_main:
        print(*args, **kwargs)


def wrap_model(model: nn.Module, info: DistInfo, *, sync_batchnorm: bool | None = None) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` (returned unchanged for one process).

    DDP broadcasts rank 0's parameters and buffers at construction, so all ranks start identical, and
    all-reduces (averages) the gradients during ``backward``. ``sync_batchnorm`` (default: on CUDA) converts
    BatchNorm layers to ``SyncBatchNorm`` so their batch statistics span the global batch; PyTorch's
    SyncBatchNorm runs on GPUs only, so on CPU each rank normalises with its own share's statistics.
    """
    if not info.enabled:
        return model
    if sync_batchnorm is None:
        sync_batchnorm = info.device.type == "cuda"
    if sync_batchnorm:
        if info.device.type != "cuda":
            raise ValueError("wrap_model: SyncBatchNorm needs CUDA devices (PyTorch has no CPU implementation)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP and/or ``torch.compile`` wrapper."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


@dataclass
class LocalRun:
    """What :func:`launch_local` brought back from rank 0."""

    nproc: int
    threads_per_process: int
    wall_s: float  # the whole launch: process start-up, data loading, training, evaluation
    stdout: str
    record: dict  # nlbook.train.TrainRecord.to_dict()
    state_dict: dict[str, torch.Tensor]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local(
    nproc: int, args: list[str], *, threads_per_process: int | None = None, timeout_s: float = 600.0
) -> LocalRun:
    """Run ``torchrun --nproc_per_node=nproc -m nlbook.distributed *args`` on this machine's CPUs (gloo).

    The processes meet on 127.0.0.1 at a free port; ``threads_per_process`` (default: the CPU cores divided
    evenly) sets ``OMP_NUM_THREADS`` so N processes do not oversubscribe the cores. Rank 0's record and
    trained weights come back through a temporary folder. Raises ``RuntimeError`` with the processes' output
    if the launch fails.
    """
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"launch_local: nproc must be a positive int, got {nproc!r}")
    threads = threads_per_process or max(1, (os.cpu_count() or 1) // nproc)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}"]
        cmd += ["--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "nlbook.distributed", *args]
        cmd += ["--save", str(out / "weights.pt"), "--json", str(out / "record.json")]
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": "", "TQDM_DISABLE": "1"}
        env.pop("NLBOOK_DEVICE", None)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        record = json.loads((out / "record.json").read_text())
        state = torch.load(out / "weights.pt")
    return LocalRun(nproc, threads, wall, proc.stdout, record, state)


# --------------------------------------------------------------------------------------------------------------
# command line: torchrun --nproc_per_node=N -m nlbook.distributed --model resnet ...


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m nlbook.distributed",
        description="Train a zoo model with nlbook.train.fit on every process torchrun started (DDP).",
    )
    p.add_argument("--model", default="resnet", help="zoo model name (nlbook.zoo.model_names())")
    p.add_argument("--dataset", default=None, help="cifar10, digits or longrange (default $NLBOOK_DATASET)")
    p.add_argument("--profile", default=None, help="quick or full (default $NLBOOK_PROFILE / device)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="the GLOBAL batch, split evenly over ranks")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--max-test", type=int, default=None)
    p.add_argument("--no-augment", action="store_true", help="no random crops/flips (exact 1-vs-N comparisons)")
    p.add_argument("--no-sync-batchnorm", action="store_true", help="keep per-rank BatchNorm statistics on GPUs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="rank 0 writes the trained state_dict here (torch.save)")
    p.add_argument("--json", default=None, help="rank 0 writes the TrainRecord here")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``torchrun -m nlbook.distributed``; see ``--help``."""
    from nlbook import zoo
    from nlbook.data import load_dataset
    from nlbook.runtime import get_profile, seed_everything
    from nlbook.train import fit

    args = _parser().parse_args(argv)
    info = init_distributed()
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
        seed_everything(args.seed)  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
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
        record = fit(model, data, config, device=info.device, name=args.model, distributed=info, sync_batchnorm=sync_bn)
        print0(record.summary(), info=info)
        if info.is_main and args.save:
            torch.save({k: v.cpu() for k, v in unwrap(model).state_dict().items()}, args.save)
        if info.is_main and args.json:
            with open(args.json, "w") as f:
                json.dump(record.to_dict(), f, indent=1, default=str)
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    # `-m nlbook.distributed` runs this file as `__main__`, a second copy of the module; call the imported
    # one so that its DistInfo class and process-group state are the ones nlbook.train sees.
    from nlbook.distributed import main as _main

    sys.exit(_main())
