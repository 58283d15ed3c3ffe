"""nlbook.train and nlbook.runtime: the loop learns, is reproducible, and states what it ran on."""

import pytest
import torch
from torch import nn

from nlbook.cnn import ResNet
from nlbook.data import load_dataset
from nlbook.runtime import PROFILES, get_profile, pick_device
from nlbook.train import TrainConfig, count_parameters, evaluate, fit


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny_resnet():
    return ResNet(widths=(8, 16), depths=(1, 1))


def test_quick_run_learns_well_above_chance(digits):
    torch.manual_seed(0)
    cfg = TrainConfig.from_profile(PROFILES["quick"], "cnn")
    model = ResNet(widths=(16, 32, 64), depths=(1, 1, 1))
    rec = fit(model, digits, cfg, device="cpu", progress=False)
    assert len(rec.history) == cfg.epochs
    assert rec.history[-1].train_loss < rec.history[0].train_loss
    assert rec.test_acc > 0.5  # chance is 0.1
    assert rec.params == count_parameters(ResNet(widths=(16, 32, 64), depths=(1, 1, 1)))
    assert rec.dataset == "digits" and "CPU" in rec.hardware and rec.wall_time_s > 0
    assert "digits" in rec.summary() and "%" in rec.summary()


def test_seeded_runs_are_identical_on_cpu(digits):
    small = digits.subset(256, 64)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05)
    recs = []
    for _ in range(2):
        torch.manual_seed(0)
        recs.append(fit(tiny_resnet(), small, cfg, device="cpu", progress=False))
    assert recs[0].history[0].train_loss == recs[1].history[0].train_loss
    assert recs[0].history[0].test_acc == recs[1].history[0].test_acc


def test_transformer_recipe_and_schedule_warm_up_then_decay(digits):
    cfg = TrainConfig.from_profile(PROFILES["quick"], "transformer", epochs=2, max_train=256)
    assert cfg.optimizer == "adamw" and cfg.label_smoothing == 0.1 and cfg.grad_clip == 1.0
    rec = fit(nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)), digits, cfg, device="cpu", progress=False)
    assert rec.history[-1].lr < cfg.lr * 0.05  # cosine decayed to ~0 by the end


def test_evaluate_scores_a_constant_classifier_at_its_class_frequency(digits):
    const = nn.Sequential(nn.Flatten(), nn.Linear(3072, 10))
    nn.init.zeros_(const[1].weight)
    with torch.no_grad():
        const[1].bias.copy_(torch.arange(10.0) == 3)
    loss, acc = evaluate(const, digits)
    assert acc == pytest.approx((digits.test_labels == 3).float().mean().item())


def test_bf16_autocast_on_cpu_runs(digits):
    cfg = TrainConfig(epochs=1, batch_size=32, max_train=128, max_test=64, amp=True, amp_dtype=torch.bfloat16)
    rec = fit(tiny_resnet(), digits, cfg, device="cpu", progress=False)
    assert torch.isfinite(torch.tensor(rec.history[0].train_loss))


def test_batch_larger_than_dataset_is_a_clear_error(digits):
    with pytest.raises(ValueError, match="larger than the 16 training images"):
        fit(tiny_resnet(), digits, TrainConfig(batch_size=64, max_train=16), device="cpu", progress=False)


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(epochs=0), "epochs"),
        (dict(optimizer="adam"), "optimizer"),
        (dict(schedule="step"), "schedule"),
        (dict(lr=0.0), "lr must be a finite real number > 0"),
    ],
)
def test_bad_config_is_a_clear_error(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


def test_profiles(monkeypatch):
    monkeypatch.delenv("NLBOOK_PROFILE", raising=False)
    assert get_profile(device=torch.device("cpu")).name == "quick"
    assert get_profile(device=torch.device("cuda")).name == "full"
    monkeypatch.setenv("NLBOOK_PROFILE", "full")
    assert get_profile(device=torch.device("cpu")).name == "full"
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        get_profile("fast")


def test_device_choice(monkeypatch):
    monkeypatch.delenv("NLBOOK_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device().type == expected
    assert pick_device("cpu").type == "cpu"


def test_no_weight_decay_on_norms_biases_tokens_and_position_tables():
    from nlbook.coatnet import coatnet
    from nlbook.train import make_optimizer

    model = coatnet(num_classes=10, in_channels=3, image_size=32, width=8, depths=(1, 1, 1, 1))
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1))
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    for name, p in model.named_parameters():
        exempt = p.ndim <= 1 or name.endswith("table")
        assert (id(p) in no_decay) == exempt, name
    assert any(name.endswith("table") for name, _ in model.named_parameters())
