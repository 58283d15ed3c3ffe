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

Run a zoo model this way with the launcher of :mod:`nlbook.launch` (what the appendix does, and what a
multi-GPU machine runs)::

    torchrun --nproc_per_node=2 -m nlbook.launch --model vit --dataset digits --profile quick

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op single process. A rank
whose partners never come (``WORLD_SIZE=2`` set in one plain ``python`` process) fails within seconds
(``init_timeout_s``, ``$NLBOOK_DIST_INIT_TIMEOUT``) with an error saying which ranks are missing, instead of
waiting the collectives' five-minute timeout.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "cleanup",
    "current",
    "init_distributed",
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
        for name in (
            "rank",
            "world_size",
            "local_rank",
        ):  # (this layer-0 module checks without nlbook.checks)
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f"DistInfo: {name} must be an int, got {value!r} ({type(value).__name__})"
                )
        if self.backend not in (None, "nccl", "gloo"):
            raise ValueError(
                f"DistInfo: backend must be None, 'nccl' or 'gloo', got {self.backend!r}"
            )
        if not isinstance(self.device, torch.device):
            raise TypeError(
                f"DistInfo: device must be a torch.device, got {type(self.device).__name__}"
            )
        if (
            self.world_size < 1
            or not 0 <= self.rank < self.world_size
            or self.local_rank < 0
        ):
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
        raise ValueError(
            f"environment variable {name} must be an integer (set by torchrun), got {value!r}"
        ) from None


def _require_group(where: str, info: DistInfo) -> None:
    """A multi-process ``info`` needs the process group :func:`init_distributed` creates; say so instead of
    torch's "Default process group has not been initialized"."""
    if info.enabled and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{where}: info describes {info.world_size} processes but no process group is initialised; "
            "call nlbook.distributed.init_distributed() first (under torchrun), or pass DistInfo() for one process"
        )


INIT_TIMEOUT_S = 30.0  # how long a rank waits for the others to join (seconds)


def _seconds(name: str, value: object) -> float:
    """``value`` as a finite number of seconds > 0 (numpy scalars too), or a clear error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"init_distributed: {name} must be a number of seconds > 0, got {value!r} ({type(value).__name__})"
        )
    if not 0 < float(value) < math.inf:  # NaN fails too
        raise ValueError(
            f"init_distributed: {name} must be a number of seconds > 0, got {value!r}"
        )
    return float(value)


def _init_timeout(value: float | None) -> float:
    """``value``, else ``$NLBOOK_DIST_INIT_TIMEOUT``, else :data:`INIT_TIMEOUT_S`: a number of seconds > 0."""
    if value is not None:
        return _seconds("init_timeout_s", value)
    env = os.environ.get("NLBOOK_DIST_INIT_TIMEOUT", "").strip()
    if not env:
        return INIT_TIMEOUT_S
    try:
        seconds = float(env)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ValueError(
            f"init_distributed: environment variable NLBOOK_DIST_INIT_TIMEOUT must be a number of seconds > 0, "
            f"got {env!r}"
        )
    return seconds


def _rendezvous(
    rank: int, world: int, port: int, init_timeout_s: float, timeout_s: float
) -> dist.Store:
    """The store every rank meets at: ``torchrun``'s own (its agent started every rank), else a TCP store on
    ``MASTER_ADDR:MASTER_PORT`` that rank 0 hosts and waits ``init_timeout_s`` for the others to join.

    torch's default rendezvous waits the collectives' whole ``timeout`` (5 minutes) for a rank that will never
    come, then fails with a network error; here the wait is short and the error says who is missing and why.
    """
    addr = os.environ["MASTER_ADDR"]
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    try:
        store = dist.TCPStore(
            addr,
            port,
            world,
            is_master=rank == 0 and not agent,
            timeout=timedelta(seconds=init_timeout_s),
            wait_for_workers=True,
        )
    except RuntimeError as err:  # torch's DistStoreError / DistNetworkError
        who = (
            f"rank 0 waited {init_timeout_s:g} s for the other {world - 1} process(es) of WORLD_SIZE={world}"
            if rank == 0 and not agent
            else f"rank {rank} of WORLD_SIZE={world} could not reach rank 0 in {init_timeout_s:g} s"
        )
        raise RuntimeError(
            f"init_distributed: {who} at MASTER_ADDR:MASTER_PORT = {addr}:{port} ({err}). "
            "Start every rank together with torchrun (torchrun --nproc_per_node=N ...), or unset "
            "WORLD_SIZE for one process; a slow start needs a longer init_timeout_s "
            "($NLBOOK_DIST_INIT_TIMEOUT)."
        ) from None
    if agent:  # torchrun's agent prefixes each restart's keys, as torch's own env:// rendezvous does
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"/worker/attempt_{attempt}", store)
    store.set_timeout(timedelta(seconds=timeout_s))  # later waits are the collectives'
    return store


def init_distributed(
    backend: str | None = None,
    *,
    device: torch.device | str | None = None,
    timeout_s: float = 300.0,
    init_timeout_s: float | None = None,
) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment and return
    this rank's info.

    Args:
        backend: ``"nccl"`` (GPUs) or ``"gloo"`` (CPUs); default NCCL when the device
            is CUDA, else gloo.
        device: this process's device; default ``cuda:LOCAL_RANK`` when CUDA is
            available, else the CPU — one GPU per process, which is what DDP is
            fastest with.
        timeout_s: how long collectives wait for a missing rank before failing (instead
            of hanging).
        init_timeout_s: how long joining waits for the other processes (default
            ``$NLBOOK_DIST_INIT_TIMEOUT``, else 30 s); then a ``RuntimeError`` says
            which are missing.

    Without ``WORLD_SIZE`` (a plain ``python`` run) or with ``WORLD_SIZE=1`` no process
    group is created.
    """
    global _CURRENT
    timeout_s = _seconds("timeout_s", timeout_s)
    init_timeout_s = _init_timeout(init_timeout_s)
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    # torchrun's variables, checked before anything waits on them: a RANK outside the
    # world would otherwise
    # wait the whole timeout for ranks that never come, and fail with a network error.
    if world < 1:
        raise ValueError(
            f"init_distributed: environment variable WORLD_SIZE must be an int >= 1, "
            f"got {world}"
        )
    if not 0 <= rank < world:
        raise ValueError(
            f"init_distributed: environment variable RANK must be in [0, WORLD_SIZE) "
            f"= [0, {world}), got {rank}"
        )
    if not 0 <= local_rank < world:
        raise ValueError(
            f"init_distributed: environment variable LOCAL_RANK must be in [0, "
            f"WORLD_SIZE) = [0, {world}), "
            f"got {local_rank}"
        )
    if device is None:
        device = (
            torch.device("cuda", local_rank)
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if not torch.cuda.is_available() or device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"init_distributed: device {device} (LOCAL_RANK={local_rank}) "
                f"requested but this machine has "
                f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} "
                f"GPU(s); start at most that many "
                "processes per machine"
            )
        torch.cuda.set_device(
            device
        )  # NCCL and the caching allocator pick up "the" GPU from here
    if world == 1 and not dist.is_initialized():
        _CURRENT = DistInfo(device=device)
        return _CURRENT
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(
            f"init_distributed: backend must be 'nccl' or 'gloo', got {backend!r}"
        )
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(
            f"init_distributed: NCCL needs CUDA devices, got {device}; use "
            f"backend='gloo' on CPUs"
        )
    if not dist.is_initialized():
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise RuntimeError(
                f"init_distributed: WORLD_SIZE={world} but {missing} unset — launch "
                f"with torchrun"
            )
        port = _env_int("MASTER_PORT", 0)
        if not 1 <= port <= 65535:
            raise ValueError(
                f"init_distributed: environment variable MASTER_PORT must be in [1, "
                f"65535], got {port}"
            )
        # The other processes are waited for init_timeout_s, not timeout_s: a rank
        # started alone (WORLD_SIZE=2 without torchrun) fails in seconds, not minutes.
        store = _rendezvous(rank, world, port, init_timeout_s, timeout_s)
        dist.init_process_group(
            backend=backend,
            store=store,
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=timeout_s),
        )
    _CURRENT = DistInfo(
        dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(), device
    )
    return _CURRENT


def current() -> DistInfo:
    """The info of this process: what :func:`init_distributed` returned, else a single CPU/CUDA process."""
    if _CURRENT is not None and (not _CURRENT.enabled or dist.is_initialized()):
        return _CURRENT
    if dist.is_available() and dist.is_initialized():  # a group someone else created
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", 0)
        backend = dist.get_backend()
        device = (
            torch.device("cuda", local_rank)
            if backend == "nccl"
            else torch.device("cpu")
        )
        return DistInfo(rank, world, local_rank, backend, device)
    return DistInfo()


def cleanup() -> None:
    """Leave the process group (call at the end of a ``torchrun`` script)."""
    global _CURRENT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


def _info(where: str, info: object) -> DistInfo:
    """``info``, or this process's :func:`current` one for ``None``."""
    if info is None:
        return current()
    if not isinstance(info, DistInfo):
        raise TypeError(
            f"{where}: info must be a DistInfo or None (this process's), got {type(info).__name__}"
        )
    return info


def barrier(info: DistInfo | None = None) -> None:
    """Wait for every rank (no-op for one process)."""
    info = _info("barrier", info)
    if info.enabled:
        _require_group("barrier", info)
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, info: DistInfo | None = None) -> torch.Tensor:
    """The element-wise sum of ``values`` over all ranks (a new tensor; the input itself for one process).

    Reduce *sums* (loss × images, correct predictions, image counts) and divide afterwards: averaging
    per-rank means would be wrong whenever ranks hold different numbers of images (a last partial batch).
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"all_reduce_sum expects a tensor, got {type(values).__name__}")
    info = _info("all_reduce_sum", info)
    if not info.enabled:
        return values
    _require_group("all_reduce_sum", info)
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def print0(*args, info: DistInfo | None = None, **kwargs) -> None:
    """``print`` on rank 0 only, so N processes do not print every line N times."""
    if (info or current()).is_main:
        print(*args, **kwargs)


def wrap_model(
    model: nn.Module, info: DistInfo, *, sync_batchnorm: bool | None = None
) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` (returned unchanged for one
    process).

    DDP broadcasts rank 0's parameters and buffers at construction, so all ranks start
    identical, and
    all-reduces (averages) the gradients during ``backward``. ``sync_batchnorm``
    (default: on CUDA) converts
    BatchNorm layers to ``SyncBatchNorm`` so their batch statistics span the global
    batch; PyTorch's
    SyncBatchNorm runs on GPUs only, so on CPU each rank normalises with its own
    share's statistics.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"wrap_model expects an nn.Module as model, got {type(model).__name__}"
        )
    if not isinstance(info, DistInfo):
        raise TypeError(
            f"wrap_model: info must be a DistInfo, got {type(info).__name__}"
        )
    if not info.enabled:
        return model
    if sync_batchnorm is None:
        sync_batchnorm = info.device.type == "cuda"
    if sync_batchnorm:
        if info.device.type != "cuda":
            raise ValueError(
                "wrap_model: SyncBatchNorm needs CUDA devices (PyTorch has no CPU "
                "implementation)"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    _require_group("wrap_model", info)
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP and/or ``torch.compile`` wrapper."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner
