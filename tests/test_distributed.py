"""nlbook.distributed and the DDP path of nlbook.train.fit, on CPU with gloo.

The central check launches ``torchrun --nproc_per_node=2 -m nlbook.launch`` on 127.0.0.1 and compares
its trained weights with a one-process ``fit`` on the same global batches. The model is the zoo's ViT
(LayerNorm, no BatchNorm): BatchNorm normalises each rank's *share* with that share's statistics, so a
2-process BatchNorm network genuinely computes something else than one process on the whole batch, and
PyTorch's ``SyncBatchNorm`` — the fix on GPUs, which ``fit`` applies there by default — has no CPU
implementation (it raises for CPU tensors). Augmentation stays on: the loader augments each global batch with
the same random numbers on every rank before slicing out a rank's share, so the crops match one process too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nlbook import distributed as D
from nlbook import launch, zoo
from nlbook.data import load_dataset
from nlbook.runtime import seed_everything
from nlbook.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--model", "vit", "--dataset", "digits", "--profile", "quick", "--epochs", "2", "--batch-size", "32"]
RUN += ["--max-train", "128", "--max-test", "100", "--seed", "0"]


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_same_global_batches() -> None:
    run = launch.launch_local(2, RUN, threads_per_process=1)
    two, rec2 = run.state_dict, run.record

    # the same run in this process: same seed, same initial weights, whole global batch on one rank
    data = load_dataset("digits")
    config = zoo.recipe("vit", "quick", epochs=2, batch_size=32, max_train=128, max_test=100, seed=0)
    seed_everything(0)
    model = zoo.build_model("vit", profile="quick")
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    rec1 = fit(model, data, config, device="cpu", progress=False, distributed=False)
    one = model.state_dict()

    assert rec2["world_size"] == 2 and rec1.world_size == 1
    assert set(one) == set(two)
    moved = max((one[k] - initial[k]).abs().max().item() for k in one)
    assert moved > 1e-3, "the runs must actually train for the comparison to mean anything"
    for k in one:  # float32 all-reduce sums in another order: equal to rounding, not bit for bit
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    # metrics are reduced over ranks: the 2-process record reports the global numbers
    for e1, e2 in zip(rec1.history, rec2["history"], strict=True):
        assert e2["train_loss"] == pytest.approx(e1.train_loss, rel=1e-4)
        assert e2["train_acc"] == pytest.approx(e1.train_acc, abs=1e-9)
        assert e2["test_loss"] == pytest.approx(e1.test_loss, rel=1e-4)
        assert e2["test_acc"] == pytest.approx(e1.test_acc, abs=1e-9)
    # rank 0 alone prints: the header and the summary appear once, not once per process
    assert run.stdout.count("2 process(es), backend gloo") == 1
    assert run.stdout.count("test accuracy") == 1 and "2 processes ×" in run.stdout


# --------------------------------------------------------------------------------------------------------------
# single-process behaviour and argument checks (no process group needed)


def test_without_torchrun_everything_is_one_process(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    info = D.init_distributed(device="cpu")
    try:
        assert (info.rank, info.world_size, info.backend, info.enabled, info.is_main) == (0, 1, None, False, True)
        assert not torch.distributed.is_initialized()
        t = torch.tensor([1.0, 2.0])
        assert D.all_reduce_sum(t) is t
        model = nn.Linear(2, 2)
        assert D.wrap_model(model, info) is model
        D.print0("hello from rank 0")
        assert capsys.readouterr().out == "hello from rank 0\n"
    finally:
        D.cleanup()


def test_print0_is_silent_on_other_ranks(capsys) -> None:
    D.print0("not me", info=D.DistInfo(rank=1, world_size=2))
    assert capsys.readouterr().out == ""


def test_unwrap_finds_the_module_inside_wrappers() -> None:
    inner = nn.Linear(2, 2)

    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    assert D.unwrap(Wrapper(Wrapper(inner))) is inner and D.unwrap(inner) is inner


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 2, "world_size": 2}, "0 <= rank < world_size"),
        ({"rank": 0, "world_size": 0}, "world_size >= 1"),
    ],
)
def test_bad_dist_info_is_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        D.DistInfo(**kwargs)


def test_bad_environment_and_backend_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        D.init_distributed(device="cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="NCCL needs CUDA"):
        D.init_distributed("nccl", device="cpu")
    with pytest.raises(RuntimeError, match="launch with torchrun"):
        D.init_distributed(device="cpu")
    with pytest.raises(ValueError, match="SyncBatchNorm needs CUDA"):
        D.wrap_model(nn.BatchNorm2d(3), D.DistInfo(0, 2), sync_batchnorm=True)


def test_launch_local_reports_a_failed_launch() -> None:
    with pytest.raises(RuntimeError, match="no-such-model"):
        launch.launch_local(1, ["--model", "no-such-model", "--dataset", "digits"], threads_per_process=1)
    with pytest.raises(ValueError, match="nproc"):
        launch.launch_local(0, [])


def test_fit_rejects_a_global_batch_that_does_not_split_evenly() -> None:
    data = load_dataset("digits").subset(64, 16)
    with pytest.raises(ValueError, match="divisible by the 2 processes"):
        fit(nn.Linear(1, 1), data, TrainConfig(batch_size=33), device="cpu", distributed=D.DistInfo(0, 2))
    with pytest.raises(TypeError, match="distributed must be"):
        fit(nn.Linear(1, 1), data, TrainConfig(batch_size=32), device="cpu", distributed="yes")
