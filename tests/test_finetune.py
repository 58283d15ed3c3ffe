"""Chapter 4, fine-tuning: torchvision's ViT-B/16 and ResNet-50 adapted to a new task through nlbook.finetune.

Nothing here downloads: the pretrained path is exercised with torchvision's download function replaced by one
that fails (as it does offline), and every model is built with ``weights=None``.
"""

from __future__ import annotations

import copy
import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision
import torchvision.models._api as tv_api
from timm.layers import resample_abs_pos_embed
from torchvision.models import ResNet50_Weights, ViT_B_16_Weights

from nlbook.data import load_dataset
from nlbook.finetune import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_LR_GRID,
    PretrainedClassifier,
    WeightsUnavailableError,
    adapt_torchvision_resnet,
    adapt_torchvision_vit,
    build_finetune_model,
    finetune_recipe,
    freeze_backbone,
    imagenet_normalized,
    pretrained_resnet50,
    pretrained_vit,
    trainable_parameter_names,
)
from nlbook.train import fit
from nlbook.vit_torchvision import from_torchvision, to_torchvision_state_dict

TINY_VIT = dict(image_size=32, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
TINY_RESNET = dict(layers=[1, 1, 1, 1])


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (torchvision zero-initialises the head and biases: a test must see them move)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


@pytest.fixture(scope="module")
def tv_vit_b_16() -> torch.nn.Module:
    """torchvision's ViT-B/16 exactly as the pretrained path builds it, with random weights."""
    torch.manual_seed(0)
    return _randomize(torchvision.models.vit_b_16(weights=None))


@pytest.fixture(scope="module")
def adapted_224(tv_vit_b_16) -> PretrainedClassifier:
    """The fine-tuning model built from it for a 10-class task at 224×224 (head random, to be seen)."""
    torch.manual_seed(0)
    return adapt_torchvision_vit(copy.deepcopy(tv_vit_b_16), num_classes=10, image_size=224, head_init="normal")


# ---------------------------------------------------------------------------------------------- conversion


@pytest.mark.slow
def test_every_torchvision_vit_b_16_key_maps_in_and_back_exactly(tv_vit_b_16):
    tv_state = tv_vit_b_16.state_dict()
    ours = from_torchvision(tv_vit_b_16)
    back = to_torchvision_state_dict(ours)
    assert set(back) == set(tv_state)
    for key, value in tv_state.items():
        assert torch.equal(back[key], value), key


@pytest.mark.slow
def test_adapted_vit_keeps_every_pretrained_tensor_and_replaces_only_the_head(tv_vit_b_16, adapted_224):
    model = adapted_224
    back = to_torchvision_state_dict(model.backbone)
    tv_state = tv_vit_b_16.state_dict()
    assert set(back) == set(tv_state)
    for key, value in tv_state.items():
        if key.startswith("heads."):
            continue
        assert torch.equal(back[key], value), key
    assert tuple(model.head.weight.shape) == (10, 768)
    assert model.head.weight.abs().max() <= 0.02 and torch.count_nonzero(model.head.bias) == 0
    zero_head = pretrained_vit(None, num_classes=3, image_size=32, tv_kwargs=TINY_VIT)
    assert torch.count_nonzero(zero_head.head.weight) == 0  # the default: the ViT paper's zero head


@pytest.mark.slow
def test_adapted_vit_equals_torchvision_at_224_including_the_resize_of_small_images(tv_vit_b_16, adapted_224):
    model = adapted_224.eval()
    reference = copy.deepcopy(tv_vit_b_16)
    reference.heads.head = torch.nn.Linear(768, 10)
    reference.heads.head.load_state_dict(model.head.state_dict())
    reference.eval()
    x224 = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    x32 = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = reference(x224)
        assert ref.abs().max() > 1e-3  # non-trivial logits
        torch.testing.assert_close(model(x224), ref, atol=1e-4, rtol=1e-4)
        # a CIFAR-sized batch is upsampled inside the model exactly as torchvision would need it done outside
        up = F.interpolate(x32, size=(224, 224), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x32), reference(up), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_vit_at_an_interpolated_resolution(tv_vit_b_16):
    """At 96×96 (6×6 patches instead of 14×14) the position embeddings are resampled.

    Ours resample bicubically with antialiasing, like timm's ``resample_abs_pos_embed``; torchvision's own
    ``interpolate_embeddings`` uses bicubic with ``align_corners=True`` and no antialiasing, a different
    (equally valid) resampling. So: our embeddings equal timm's, and with torchvision's resampled embeddings
    loaded, our model equals torchvision's at 96×96.
    """
    model = adapt_torchvision_vit(copy.deepcopy(tv_vit_b_16), num_classes=10, image_size=96).eval()
    assert tuple(model.backbone.pos_embed.shape) == (1, 1 + 36, 768)
    timm_pos = resample_abs_pos_embed(tv_vit_b_16.encoder.pos_embedding.detach(), [6, 6], [14, 14])
    torch.testing.assert_close(model.backbone.pos_embed.detach(), timm_pos, atol=1e-6, rtol=1e-6)
    # the class token's embedding is never resampled
    assert torch.equal(model.backbone.pos_embed[:, 0], tv_vit_b_16.encoder.pos_embedding[:, 0])

    tv_state = torchvision.models.vision_transformer.interpolate_embeddings(96, 16, tv_vit_b_16.state_dict())
    tv_96 = torchvision.models.vit_b_16(weights=None, image_size=96)
    tv_96.load_state_dict(tv_state)
    tv_96.eval()
    ours_96 = model  # the same model with torchvision's resampled embeddings and head
    with torch.no_grad():
        ours_96.backbone.pos_embed.copy_(tv_state["encoder.pos_embedding"])
    ours_96.backbone.head = torch.nn.Linear(768, 1000)
    ours_96.backbone.head.load_state_dict(tv_96.heads.head.state_dict())
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours_96(x), tv_96(x), atol=1e-4, rtol=1e-4)


def test_pretrained_vit_without_weights_runs_the_same_path_at_a_tiny_size():
    torch.manual_seed(0)
    model = pretrained_vit(None, num_classes=7, image_size=48, tv_kwargs=TINY_VIT)
    assert isinstance(model, PretrainedClassifier)
    assert model.backbone.grid_size == (12, 12) and model.input_size == 48
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)


def test_adapted_resnet_equals_torchvision_with_the_same_new_fc():
    torch.manual_seed(0)
    tv = _randomize(torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1]))
    reference = _randomize(torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1]))
    reference.load_state_dict(tv.state_dict())
    model = adapt_torchvision_resnet(tv, num_classes=5, image_size=64, head_init="normal").eval()
    reference.fc = torch.nn.Linear(2048, 5)
    reference.fc.load_state_dict(model.head.state_dict())
    reference.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        up = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), reference(up), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- freezing


@pytest.mark.parametrize("arch", ["vit_b_16", "resnet50"])
def test_freezing_leaves_only_the_head_trainable(arch):
    tv_kwargs = TINY_VIT if arch == "vit_b_16" else TINY_RESNET
    full = build_finetune_model(arch, "full", num_classes=10, weights=None, image_size=32, tv_kwargs=tv_kwargs)
    frozen = build_finetune_model(arch, "frozen", num_classes=10, weights=None, image_size=32, tv_kwargs=tv_kwargs)
    head = "backbone.head" if arch == "vit_b_16" else "backbone.fc"
    assert trainable_parameter_names(frozen) == [f"{head}.weight", f"{head}.bias"]
    assert len(trainable_parameter_names(full)) == len(list(full.parameters())) > 2
    frozen.train()
    assert frozen.training and frozen.head.training
    assert not any(m.training for m in frozen.backbone.modules() if m is not frozen.head)


# ---------------------------------------------------------------------------------------------- recipe


def test_recipe_is_the_vit_papers_fine_tuning_scaled_to_our_batch():
    for arch in ("vit_b_16", "resnet50"):
        for mode in ("frozen", "full"):
            c = finetune_recipe(arch, mode, "cuda")
            assert (c.optimizer, c.momentum, c.weight_decay, c.schedule) == ("sgd", 0.9, 0.0, "cosine")
            assert c.grad_clip == 1.0 and c.label_smoothing == 0.0 and c.augment and c.amp is True
            # the learning rate at the paper's batch 512 is one of the paper's grid values
            assert any(abs(c.lr * 512 / c.batch_size - g) < 1e-12 for g in PAPER_LR_GRID)
            assert finetune_recipe(arch, mode, "cpu").amp is False
    assert finetune_recipe("resnet50", "full", "cuda").channels_last
    assert not finetune_recipe("vit_b_16", "full", "cuda").channels_last
    # the probe trains one layer on fixed features: a larger step than full fine-tuning
    probe, full = finetune_recipe("vit_b_16", "frozen"), finetune_recipe("vit_b_16", "full")
    assert probe.lr / probe.batch_size > full.lr / full.batch_size
    # overrides: a batch change rescales the learning rate; an explicit lr wins
    c = finetune_recipe("vit_b_16", "full", batch_size=128, epochs=1)
    assert c.batch_size == 128 and c.epochs == 1 and c.lr == pytest.approx(2 * full.lr)
    assert finetune_recipe("vit_b_16", "full", lr=0.5).lr == 0.5


def test_imagenet_normalization_replaces_only_the_statistics():
    data = load_dataset("digits")
    normed = imagenet_normalized(data)
    assert normed.mean == IMAGENET_MEAN and normed.std == IMAGENET_STD
    assert normed.train_images is data.train_images and normed.test_labels is data.test_labels


# ---------------------------------------------------------------------------------------------- offline training


@pytest.mark.parametrize(("arch", "mode"), [("vit_b_16", "full"), ("vit_b_16", "frozen"), ("resnet50", "frozen")])
def test_tiny_offline_run_trains_one_epoch_on_digits(arch, mode):
    torch.manual_seed(0)
    tv_kwargs = TINY_VIT if arch == "vit_b_16" else TINY_RESNET
    size = 48 if arch == "vit_b_16" else 32  # the ViT at 48: resampled position embeddings on the way
    model = build_finetune_model(arch, mode, num_classes=10, weights=None, image_size=size, tv_kwargs=tv_kwargs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = imagenet_normalized(load_dataset("digits"))
    config = finetune_recipe(arch, mode, "cpu", epochs=1, batch_size=32, max_train=128, max_test=64)
    record = fit(model, data, config, device="cpu", progress=False)
    assert len(record.history) == 1 and record.history[0].train_loss == record.history[0].train_loss  # not NaN
    assert record.params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    after = model.state_dict()
    head = [k for k in after if k.startswith(("backbone.head.", "backbone.fc."))]
    assert any(not torch.equal(before[k], after[k]) for k in head), "the head did not learn"
    changed_backbone = [k for k in after if k not in head and not torch.equal(before[k], after[k])]
    if mode == "frozen":
        assert changed_backbone == []  # weights and BatchNorm statistics untouched
    else:
        assert changed_backbone


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("builder", "enum"), [(pretrained_vit, ViT_B_16_Weights), (pretrained_resnet50, ResNet50_Weights)]
)
def test_missing_download_raises_a_clear_error_not_random_weights(monkeypatch, builder, enum):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    # torchvision's weights API reads torch's cache or downloads through this function: make it fail as offline
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError, match="weights=None") as err:
        builder("DEFAULT", num_classes=10)
    message = str(err.value)
    assert enum.DEFAULT.url in message and "checkpoints" in message and builder.__name__ in message


def test_bad_input_errors_name_the_parameter():
    with pytest.raises(ValueError, match="weights must be None"):
        pretrained_vit("IMAGENET", num_classes=10)
    with pytest.raises(ValueError, match="tv_kwargs"):
        pretrained_vit("DEFAULT", num_classes=10, tv_kwargs=TINY_VIT)
    with pytest.raises(ValueError, match="num_classes"):
        pretrained_vit(None, num_classes=0, tv_kwargs=TINY_VIT)
    with pytest.raises(ValueError, match="image_size 50 is not a multiple of the patch size 4"):
        pretrained_vit(None, num_classes=10, image_size=50, tv_kwargs=TINY_VIT)
    with pytest.raises(TypeError, match="image_size"):
        pretrained_resnet50(None, num_classes=10, image_size=32.0, tv_kwargs=TINY_RESNET)
    with pytest.raises(ValueError, match="head_init"):
        pretrained_vit(None, num_classes=10, tv_kwargs=TINY_VIT, head_init="xavier")
    with pytest.raises(TypeError, match="PretrainedClassifier"):
        freeze_backbone(torch.nn.Linear(3, 3))
    with pytest.raises(TypeError, match="torchvision.models.ResNet"):
        adapt_torchvision_resnet(torch.nn.Linear(3, 3), num_classes=10, image_size=32)
    with pytest.raises(ValueError, match="arch"):
        finetune_recipe("vit", "full")
    with pytest.raises(ValueError, match="mode"):
        build_finetune_model("resnet50", "linear", num_classes=10, weights=None)
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        finetune_recipe("vit_b_16", "full", learning_rate=0.1)
    with pytest.raises(ValueError, match="lr"):
        finetune_recipe("vit_b_16", "full", lr=-1.0)
    gray = load_dataset("digits")
    gray = type(gray)(**{**gray.__dict__, "train_images": gray.train_images[:, :1], "mean": (0.5,), "std": (0.2,)})
    with pytest.raises(ValueError, match="RGB"):
        imagenet_normalized(gray)
    model = pretrained_vit(None, num_classes=10, image_size=32, tv_kwargs=TINY_VIT)
    with pytest.raises(ValueError, match=r"InputResize expects a \(B, C, H, W\) batch"):
        model(torch.randn(3, 32, 32))
