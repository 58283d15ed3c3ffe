"""nlbook.zoo: every name builds and runs, sizes follow the profile, recipes follow the family, clear errors."""

from __future__ import annotations

import pytest
import torch

from nlbook import zoo
from nlbook.cnn import ResNet
from nlbook.coatnet import CoAtNet
from nlbook.hybrid import CBAM, BoTBlock, SqueezeExcitation
from nlbook.local_attention import LocalAttentionBlock, SwinTransformer
from nlbook.nonlocal_block import NonLocalBlock2d, NonLocalResNet
from nlbook.runtime import PROFILES
from nlbook.vit import VisionTransformer, vit_preset

EXPECTED = (
    "resnet",
    "nonlocal_resnet",
    "vit",
    "se_resnet",
    "cbam_resnet",
    "botnet",
    "coatnet",
    "swin",
    "sasa_resnet",
)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_names_baseline_first():
    assert zoo.model_names() == EXPECTED
    assert {zoo.model_spec(n).strategy for n in EXPECTED} == {"baseline", "insert", "replace", "hybrid"}


@pytest.mark.parametrize("name", EXPECTED)
def test_every_model_builds_and_trains_a_step(name):
    torch.manual_seed(0)
    model = zoo.build_model(name, num_classes=7, in_channels=3, image_size=32, profile="quick")
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


@pytest.mark.parametrize("name", EXPECTED)
def test_grayscale_input(name):
    model = zoo.build_model(name, num_classes=10, in_channels=1, image_size=32, profile="quick").eval()
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 10)


def test_models_come_from_their_chapters():
    build = lambda n: zoo.build_model(n, profile="quick")  # noqa: E731
    assert type(build("resnet")) is ResNet
    nl = build("nonlocal_resnet")
    assert isinstance(nl, NonLocalResNet) and len(nl.nonlocal_blocks()) == 2
    assert isinstance(build("vit"), VisionTransformer)
    assert isinstance(build("coatnet"), CoAtNet)
    assert isinstance(build("swin"), SwinTransformer)
    hybrids = (("se_resnet", SqueezeExcitation), ("cbam_resnet", CBAM), ("botnet", BoTBlock))
    for name, module in (*hybrids, ("sasa_resnet", LocalAttentionBlock)):
        model = build(name)
        assert isinstance(model, ResNet) and any(isinstance(m, module) for m in model.modules()), name
    assert not any(isinstance(m, NonLocalBlock2d) for m in build("resnet").modules())


def _last_residual_bn_scales(model: torch.nn.Module) -> set[float]:
    """The distinct initial scales of every residual branch's last BatchNorm (BasicBlock bn2, BoT expand BN)."""
    from nlbook.cnn import BasicBlock

    scales: set[float] = set()
    for m in model.modules():
        bn = m.bn2 if isinstance(m, BasicBlock) else m.expand[1] if isinstance(m, BoTBlock) else None
        if bn is not None:
            scales |= set(bn.weight.detach().unique().tolist())
    return scales


@pytest.mark.parametrize("name", [n for n in EXPECTED if n not in ("vit", "coatnet", "swin")])
def test_resnet_family_shares_the_baseline_initialisation(name):
    # "Same recipe" includes the initialisation: a hybrid whose residual branches start at zero while the
    # baseline's do not would be compared on its initialisation, not on its gate (it costs ~30 points on
    # the quick budget). Every ResNet of the zoo starts its residual branches the way the baseline does.
    baseline = _last_residual_bn_scales(zoo.build_model("resnet", profile="quick"))
    assert baseline == {1.0}
    assert _last_residual_bn_scales(zoo.build_model(name, profile="quick")) == baseline


def test_full_profile_is_the_real_model():
    full = PROFILES["full"]
    resnet = zoo.build_model("resnet", profile=full)
    assert resnet.widths == (64, 128, 256, 512) and resnet.depths == (2, 2, 2, 2)
    assert _params(resnet) == 11_173_962  # the CIFAR ResNet-18
    vit = zoo.build_model("vit", profile=full)
    assert _params(vit) == _params(vit_preset("vit_tiny_p4_32"))
    assert (vit.embed_dim, vit.depth, vit.num_heads, vit.patch_size) == (192, 6, 3, 4)


def test_local_attention_models_follow_the_profile():
    full, quick = PROFILES["full"], PROFILES["quick"]
    swin = zoo.build_model("swin", profile=full)
    assert swin.widths == (96, 192, 384) and swin.depths == (4, 4, 4)  # Swin-T's C = 96
    assert zoo.build_model("swin", profile=quick).widths == (32, 64, 128)
    sasa = zoo.build_model("sasa_resnet", profile=full)
    assert sasa.widths == (64, 128, 256, 512) and sasa.depths == (2, 2, 2, 2)
    assert (zoo.model_spec("swin").strategy, zoo.model_spec("sasa_resnet").strategy) == ("replace", "hybrid")


def test_quick_profile_is_small():
    quick, full = PROFILES["quick"], PROFILES["full"]
    for name in EXPECTED:
        small = _params(zoo.build_model(name, profile=quick))
        assert small < 1_000_000, name
    assert zoo.build_model("resnet", profile=quick).depths == (1, 1, 1, 1)
    assert zoo.build_model("vit", profile=quick).depth == quick.depth
    assert quick.width < full.width


def test_recipes_follow_the_family():
    quick = PROFILES["quick"]
    for name in ("resnet", "nonlocal_resnet", "se_resnet", "cbam_resnet", "botnet", "sasa_resnet"):
        cfg = zoo.recipe(name, quick)
        assert cfg.optimizer == "sgd" and cfg.label_smoothing == 0.0, name
    for name in ("vit", "coatnet", "swin"):
        cfg = zoo.recipe(name, quick)
        assert cfg.optimizer == "adamw" and cfg.label_smoothing > 0 and cfg.warmup_epochs > 0, name
    budgets = {(c.epochs, c.batch_size, c.max_train, c.augment) for c in (zoo.recipe(n, quick) for n in EXPECTED)}
    assert budgets == {(quick.epochs, quick.batch_size, quick.max_train, True)}  # the same budget for all
    assert zoo.recipe("vit", "quick", epochs=1, seed=3).epochs == 1


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        zoo.build_model("alexnet", profile="quick")
    message = str(info.value)
    assert "alexnet" in message and all(name in message for name in EXPECTED)
    with pytest.raises(ValueError, match="resnet"):
        zoo.recipe("alexnet")


@pytest.mark.parametrize(
    "kwargs, error", [({"num_classes": 0}, ValueError), ({"image_size": 32.0}, ValueError), ({"profile": 3}, TypeError)]
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        zoo.build_model("resnet", **({"profile": "quick"} | kwargs))


def test_unknown_profile_name():
    with pytest.raises(ValueError, match="profile"):
        zoo.build_model("resnet", profile="huge")
