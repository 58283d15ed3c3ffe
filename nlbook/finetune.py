"""Chapter 4 — fine-tuning a pretrained network: adapt an ImageNet ViT-B/16 (or ResNet-50) to a new task.

A ViT's strength is pretraining at scale (Dosovitskiy et al., 2021): the encoder learns general image features
on millions of images once, and a new task then only needs a new classification head and a short, gentle
training run. This module builds such a model *through nlbook*:

* :func:`pretrained_vit` — torchvision's ``vit_b_16`` with its ImageNet weights, fetched through torchvision's
  own weights API (:class:`torchvision.models.ViT_B_16_Weights`, checksum-verified), converted into our
  :class:`~nlbook.vit.VisionTransformer` (:func:`~nlbook.vit.from_torchvision`), its position embeddings
  resampled to the fine-tuning resolution (:func:`~nlbook.vit.interpolate_pos_embed`) and its 1000-class head
  replaced by a fresh one for ``num_classes``;
* :func:`pretrained_resnet50` — torchvision's ``resnet50`` with a new ``fc`` layer, the convolutional
  baseline of the comparison (Kornblith et al., 2019);
* :func:`freeze_backbone` — the *linear probe*: only the new head learns, the pretrained features stay as
  they are (BatchNorm statistics and dropout included); without it every weight is fine-tuned;
* :func:`finetune_recipe` — the optimiser and schedule of the ViT paper's fine-tuning, as a
  :class:`~nlbook.train.TrainConfig` for :func:`~nlbook.train.fit`;
* :func:`imagenet_normalized` — the input statistics the pretrained weights expect.

**Input pipeline.** CIFAR-10's images are 32×32; the pretrained networks saw 224×224. The images stay on the
device at their stored size (uint8, cropped and flipped there by :class:`~nlbook.data.DeviceLoader`), are
standardised with ImageNet's mean and std, and are upsampled to the model's input size *inside the model*
(:class:`InputResize`, the first layer of :class:`PretrainedClassifier`): a bilinear interpolation of the
batch on the GPU, a fraction of a per cent of the network's own FLOPs, with no 224×224 copy of the data set in
memory and no CPU work per image. Evaluation goes through the same layer, so the model accepts the data set
as it is.

**Resolution.** The recipe fine-tunes at 224×224, the resolution of the pretrained weights: the patch
embedding and the position embeddings then see what they were trained on, and the position embeddings are
used unchanged. A lower resolution (e.g. 96: 36 instead of 196 patches, about 6× fewer FLOPs) works through
the same code — the 14×14 grid of position embeddings is resampled bicubically to 6×6 — at some cost in
accuracy that the benchmark can measure (``--image-size``). The ViT paper fine-tunes at an even higher
resolution than it pretrained at (384).

Offline, ``weights=None`` builds the same models with random weights — at the real size, or at a tiny size
given by ``tv_kwargs`` (e.g. a 2-layer ViT on 32×32 images) — and runs exactly the same code path; a
missing download raises :class:`WeightsUnavailableError`, never a silent switch to random weights.
"""

from __future__ import annotations

import inspect
import socket
import urllib.error
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights, ViT_B_16_Weights
from torchvision.models.resnet import Bottleneck, ResNet

from nlbook.checks import (
    check_bool,
    check_choice,
    check_float,
    check_image_batch,
    check_int,
    check_module,
    check_str,
)
from nlbook.data import ImageDataset
from nlbook.train import TrainConfig
from nlbook.vit_torchvision import from_torchvision

__all__ = [
    "ARCHS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODES",
    "InputResize",
    "PretrainedClassifier",
    "WeightsUnavailableError",
    "adapt_torchvision_resnet",
    "adapt_torchvision_vit",
    "build_finetune_model",
    "finetune_recipe",
    "freeze_backbone",
    "imagenet_normalized",
    "pretrained_resnet50",
    "pretrained_vit",
    "trainable_parameter_names",
]

Arch = Literal["vit_b_16", "resnet50"]
Mode = Literal["frozen", "full"]
HeadInit = Literal["zeros", "normal"]
ARCHS: tuple[str, ...] = ("vit_b_16", "resnet50")
MODES: tuple[str, ...] = ("frozen", "full")

# The statistics torchvision's ImageNet weights were trained with (``weights.transforms()`` uses them).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Seconds a connection attempt may wait before the download counts as failed: an unreachable server must give
# an error, not a notebook that hangs.
DOWNLOAD_TIMEOUT_S = 60.0


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are not in torch's cache and could not be downloaded."""


# ----------------------------------------------------------------------------------------------------------
# The model: an on-device resize in front of a pretrained network with a new head
# ----------------------------------------------------------------------------------------------------------


class InputResize(nn.Module):
    """Resize a (B, C, H, W) batch to ``size``×``size`` on its device (bilinear); identity at that size.

    Upsampling CIFAR's 32×32 to 224×224 costs about 0.3 MFLOPs per image — nothing next to the 35 GFLOPs of a
    ViT-B/16 forward pass — so doing it per batch on the GPU is cheaper than storing a 224×224 copy of the
    data set (7.5 GB for CIFAR-10's training images in uint8).
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = check_int("InputResize", "size", size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"InputResize expects a (B, C, H, W) batch, got {shape}")
        # bilinear resizing needs floats, and the network after it wants normalised images, not uint8
        check_image_batch(x, None, "InputResize")
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            # a channels-last batch would be resized across its colours: a wrong picture, no error
            raise ValueError(
                f"InputResize expects a (B, C, H, W) batch, got {tuple(x.shape)}, which looks channels-last "
                "(B, H, W, C); pass x.permute(0, 3, 1, 2)"
            )
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        # antialias only matters when shrinking; it keeps a downscale from aliasing like a strided pick would
        shrinking = min(x.shape[-2:]) > self.size
        return F.interpolate(
            x,
            size=(self.size, self.size),
            mode="bilinear",
            align_corners=False,
            antialias=shrinking,
        )

    def extra_repr(self) -> str:
        return f"size={self.size}"


class PretrainedClassifier(nn.Module):
    """``InputResize`` → pretrained ``backbone`` whose classification layer ``head_name`` is new.

    Args:
        backbone: the network (ours :class:`~nlbook.vit.VisionTransformer`, or a torchvision ResNet).
        head_name: attribute of ``backbone`` holding the new classification layer (``"head"``, ``"fc"``).
        input_size: side of the images the backbone sees (the batch is resized to it).
        head_init: ``"zeros"`` (the ViT paper's choice: every class starts at the same logit) or ``"normal"``
            (truncated normal, std 0.01).

    With :attr:`frozen` set (see :func:`freeze_backbone`) the backbone stays in evaluation mode even while the
    model trains: a linear probe must not update BatchNorm statistics or apply dropout to fixed features.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head_name: str,
        input_size: int,
        head_init: HeadInit = "zeros",
    ):
        super().__init__()
        check_module("PretrainedClassifier", "backbone", backbone)
        check_str("PretrainedClassifier", "head_name", head_name)
        if not isinstance(getattr(backbone, head_name, None), nn.Linear):
            raise ValueError(
                f"PretrainedClassifier: backbone.{head_name} must be an nn.Linear classification layer"
            )
        self.head_init = check_choice(
            "PretrainedClassifier", "head_init", head_init, ("zeros", "normal")
        )
        self.resize = InputResize(input_size)
        self.backbone = backbone
        self.head_name = head_name
        self.frozen = False
        self.reset_parameters()

    @property
    def head(self) -> nn.Linear:
        """The new classification layer (inside the backbone, where the pretrained one was)."""
        return getattr(self.backbone, self.head_name)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def input_size(self) -> int:
        return self.resize.size

    def reset_parameters(self) -> None:
        """Initialise the new head only — the pretrained backbone is what we came for."""
        if self.head_init == "zeros":
            nn.init.zeros_(self.head.weight)
        else:
            nn.init.trunc_normal_(self.head.weight, std=0.01, a=-0.02, b=0.02)
        nn.init.zeros_(self.head.bias)

    def train(self, mode: bool = True) -> PretrainedClassifier:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
            self.head.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for normalised images (B, 3, H, W) of any size."""
        return self.backbone(self.resize(x))


# ----------------------------------------------------------------------------------------------------------
# Weights through torchvision's API
# ----------------------------------------------------------------------------------------------------------


@contextmanager
def _connect_timeout(seconds: float) -> Iterator[None]:
    """torch.hub opens the download without a timeout; bound it through the socket default while we fetch."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _resolve_weights(where: str, weights: Any, enum: type) -> Any:
    """``None`` (random init), or a member of ``enum`` given by name (``"DEFAULT"``, ``"IMAGENET1K_V1"``…)."""
    if weights is None or isinstance(weights, enum):
        return weights
    names = ["DEFAULT", *enum.__members__]
    if not isinstance(weights, str) or weights not in names:
        raise ValueError(
            f"{where}: weights must be None, an {enum.__name__} or one of {names}, got {weights!r}"
        )
    return enum.DEFAULT if weights == "DEFAULT" else enum[weights]


def _build_with_weights(
    where: str, builder: Any, weights: Any, progress: bool
) -> nn.Module:
    """``builder(weights=weights)`` — torchvision downloads (or reads torch's cache) and checks the hash."""
    try:
        with _connect_timeout(DOWNLOAD_TIMEOUT_S):
            return builder(weights=weights, progress=progress)
    except (
        urllib.error.URLError,
        OSError,
        RuntimeError,
    ) as err:  # offline, timeout, truncated file, bad hash
        raise WeightsUnavailableError(
            f"{where}: the pretrained weights {weights} are not in torch's cache "
            f"({torch.hub.get_dir()}/checkpoints) and could not be downloaded from {weights.url} "
            f"({type(err).__name__}: {err}).\n"
            "Do one of:\n"
            "  * connect to the internet and run again (torchvision downloads and verifies them once), or\n"
            f"  * copy the file {weights.url.rsplit('/', 1)[-1]} into {torch.hub.get_dir()}/checkpoints "
            "(or point TORCH_HOME at a folder whose hub/checkpoints holds it), or\n"
            "  * run the same code offline without pretraining: pass weights=None (random initialisation)."
        ) from err


def _check_common(
    where: str,
    num_classes: Any,
    image_size: Any,
    tv_kwargs: Any,
    weights: Any,
    progress: Any,
    build: Any,
) -> None:
    check_int(where, "num_classes", num_classes)
    check_int(where, "image_size", image_size)
    check_bool(where, "progress", progress)
    if tv_kwargs is not None and not isinstance(tv_kwargs, Mapping):
        raise TypeError(
            f"{where}: tv_kwargs must be a dict of torchvision constructor arguments or None"
        )
    # torchvision's own error would name its class's __init__, not this argument
    known = set(inspect.signature(build).parameters) - {"self", "block"}
    unknown = sorted(set(tv_kwargs or {}) - known)
    if unknown:
        raise TypeError(
            f"{where}: tv_kwargs has unknown argument(s) {unknown}; {build.__name__} takes {sorted(known)}"
        )
    if tv_kwargs and weights is not None:
        raise ValueError(
            f"{where}: tv_kwargs changes the architecture, which the pretrained weights {weights} fix; "
            "use tv_kwargs only with weights=None"
        )


# torchvision's vit_b_16: the architecture of Dosovitskiy et al.'s ViT-B/16.
_VIT_B_16 = dict(
    image_size=224,
    patch_size=16,
    num_layers=12,
    num_heads=12,
    hidden_dim=768,
    mlp_dim=3072,
)


def adapt_torchvision_vit(
    tv_model: nn.Module,
    num_classes: int,
    image_size: int,
    head_init: HeadInit = "zeros",
    **vit_kwargs: Any,
) -> PretrainedClassifier:
    """Convert a torchvision ``VisionTransformer`` into ours, set its resolution, give it a new head.

    Every tensor of ``tv_model`` except its head is copied (:func:`~nlbook.vit.from_torchvision` checks each
    name and shape); the position embeddings are resampled from the pretraining grid to
    ``image_size / patch_size`` (unchanged when that is the same grid). ``vit_kwargs`` go to our constructor
    (e.g. ``impl="explicit"``, ``drop_path=0.1``).
    """
    where = "adapt_torchvision_vit"
    check_int(where, "num_classes", num_classes)
    check_int(where, "image_size", image_size)
    vit = from_torchvision(tv_model, **vit_kwargs)
    if image_size % vit.patch_size:
        raise ValueError(
            f"{where}: image_size {image_size} is not a multiple of the patch size {vit.patch_size}; "
            f"choose e.g. {vit.patch_size * max(1, round(image_size / vit.patch_size))}"
        )
    # resamples the position embeddings (identity at the pretraining size)
    vit.set_image_size(image_size)
    # A new task has new classes: the pretrained 1000-way head is dropped, a fresh one replaces it.
    vit.head = nn.Linear(vit.embed_dim, num_classes)
    vit.num_classes = num_classes
    return PretrainedClassifier(vit, "head", image_size, head_init)


def pretrained_vit(
    weights: ViT_B_16_Weights | str | None = "DEFAULT",
    *,
    num_classes: int,
    image_size: int = 224,
    head_init: HeadInit = "zeros",
    tv_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
    **vit_kwargs: Any,
) -> PretrainedClassifier:
    """ViT-B/16 pretrained on ImageNet as our :class:`~nlbook.vit.VisionTransformer`, ready for a new task.

    Args:
        weights: ``"DEFAULT"`` (torchvision's ``IMAGENET1K_V1``), another ``ViT_B_16_Weights`` name or
            member, or ``None`` for random initialisation (offline; same code path).
        num_classes: classes of the new task (the head is new and initialised by ``head_init``).
        image_size: side of the images the encoder sees (inputs of any size are resized to it); a multiple of
            the patch size. Other than the pretraining size, the position embeddings are resampled.
        tv_kwargs: with ``weights=None`` only — arguments of ``torchvision.models.VisionTransformer`` that
            override ViT-B/16's shape (e.g. a tiny ``dict(image_size=32, patch_size=4, num_layers=2,
            num_heads=2, hidden_dim=32, mlp_dim=64)`` for a CPU run).
        progress: show torchvision's download progress bar.
        vit_kwargs: passed to our :class:`~nlbook.vit.VisionTransformer` (e.g. ``impl``, ``drop_path``).

    Raises:
        WeightsUnavailableError: the weights are neither cached nor downloadable (the message says what to do).
    """
    where = "pretrained_vit"
    weights = _resolve_weights(where, weights, ViT_B_16_Weights)
    _check_common(
        where,
        num_classes,
        image_size,
        tv_kwargs,
        weights,
        progress,
        torchvision.models.VisionTransformer,
    )
    if weights is not None:
        tv_model = _build_with_weights(
            where, torchvision.models.vit_b_16, weights, progress
        )
    else:
        tv_model = torchvision.models.VisionTransformer(
            **{**_VIT_B_16, "num_classes": 1000, **(tv_kwargs or {})}
        )
    return adapt_torchvision_vit(
        tv_model, num_classes, image_size, head_init, **vit_kwargs
    )


def adapt_torchvision_resnet(
    tv_model: nn.Module,
    num_classes: int,
    image_size: int,
    head_init: HeadInit = "zeros",
) -> PretrainedClassifier:
    """A torchvision ResNet with a new ``fc`` for ``num_classes``, behind a resize to ``image_size``."""
    where = "adapt_torchvision_resnet"
    if not isinstance(tv_model, ResNet):
        raise TypeError(
            f"{where} expects a torchvision.models.ResNet, got {type(tv_model).__name__}"
        )
    check_int(where, "num_classes", num_classes)
    check_int(where, "image_size", image_size)
    # Global average pooling makes a ResNet accept any input size: no embedding to resample, only the fc.
    tv_model.fc = nn.Linear(tv_model.fc.in_features, num_classes)
    return PretrainedClassifier(tv_model, "fc", image_size, head_init)


def pretrained_resnet50(
    weights: ResNet50_Weights | str | None = "DEFAULT",
    *,
    num_classes: int,
    image_size: int = 224,
    head_init: HeadInit = "zeros",
    tv_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> PretrainedClassifier:
    """ResNet-50 pretrained on ImageNet (torchvision's ``IMAGENET1K_V2`` by default) with a new ``fc``.

    The convolutional counterpart of :func:`pretrained_vit`, same arguments. With ``weights=None``,
    ``tv_kwargs`` may override ``layers`` (blocks per stage, default ``[3, 4, 6, 3]``) for a tiny run; the
    block stays the bottleneck of ResNet-50.
    """
    where = "pretrained_resnet50"
    weights = _resolve_weights(where, weights, ResNet50_Weights)
    _check_common(where, num_classes, image_size, tv_kwargs, weights, progress, ResNet)
    if weights is not None:
        tv_model = _build_with_weights(
            where, torchvision.models.resnet50, weights, progress
        )
    else:
        kwargs = {"layers": [3, 4, 6, 3], **(tv_kwargs or {})}
        tv_model = ResNet(Bottleneck, kwargs.pop("layers"), **kwargs)
    return adapt_torchvision_resnet(tv_model, num_classes, image_size, head_init)


# ----------------------------------------------------------------------------------------------------------
# Linear probe vs full fine-tuning
# ----------------------------------------------------------------------------------------------------------


def freeze_backbone(model: PretrainedClassifier) -> PretrainedClassifier:
    """Linear probe: only the head trains; the backbone's weights get no gradient and it stays in ``eval()``.

    In place; returns ``model``. Without it (the default) every weight is fine-tuned.
    """
    if not isinstance(model, PretrainedClassifier):
        raise TypeError(
            f"freeze_backbone expects an nlbook.finetune.PretrainedClassifier, got {type(model).__name__}"
        )
    head = {id(p) for p in model.head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    model.frozen = True
    return model.train(model.training)


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters an optimiser will update (``requires_grad``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"trainable_parameter_names expects an nn.Module, got {type(model).__name__}"
        )
    return [name for name, p in model.named_parameters() if p.requires_grad]


def build_finetune_model(
    arch: Arch,
    mode: Mode,
    *,
    num_classes: int,
    weights: str | None = "DEFAULT",
    image_size: int = 224,
    tv_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> PretrainedClassifier:
    """:func:`pretrained_vit` or :func:`pretrained_resnet50`, frozen for ``mode="frozen"``."""
    where = "build_finetune_model"
    check_choice(where, "arch", arch, ARCHS)
    check_choice(where, "mode", mode, MODES)
    builder = pretrained_vit if arch == "vit_b_16" else pretrained_resnet50
    model = builder(
        weights,
        num_classes=num_classes,
        image_size=image_size,
        tv_kwargs=tv_kwargs,
        progress=progress,
    )
    return freeze_backbone(model) if mode == "frozen" else model


# ----------------------------------------------------------------------------------------------------------
# Recipe and input statistics
# ----------------------------------------------------------------------------------------------------------

# The ViT paper's fine-tuning (Dosovitskiy et al., 2021, appendix B.1.1): SGD with momentum 0.9, no weight
# decay, cosine decay, gradient clipping at global norm 1, batch 512, learning rate picked from
# {0.001, 0.003, 0.01, 0.03}. We keep all of it except the batch, which a 16 GB T4 cannot hold for full
# fine-tuning of ViT-B/16 at 224×224; the learning rate is scaled linearly with the batch (Goyal et al., 2017).
PAPER_BATCH = 512
PAPER_LR_GRID = (0.001, 0.003, 0.01, 0.03)
# (arch, mode) -> (batch, learning rate at batch 512, epochs). Full fine-tuning: the middle of the paper's
# grid. The linear probe trains one layer on fixed features, which tolerates the top of the grid. Batches:
# what fits a 16 GB T4 with mixed precision (full fine-tuning stores activations for the backward pass; the
# probe does not). Epochs: a Colab-sized budget, far below the paper's 10,000 steps (≈100 CIFAR-10 epochs).
_RECIPES: dict[tuple[str, str], tuple[int, float, int]] = {
    ("vit_b_16", "full"): (64, 0.01, 3),
    ("vit_b_16", "frozen"): (256, 0.03, 3),
    ("resnet50", "full"): (64, 0.01, 3),
    ("resnet50", "frozen"): (256, 0.03, 3),
}


def finetune_recipe(
    arch: Arch, mode: Mode, device: torch.device | str = "cpu", **overrides: Any
) -> TrainConfig:
    """The fine-tuning :class:`~nlbook.train.TrainConfig` for ``arch`` in ``mode`` on ``device``.

    SGD (momentum 0.9; :func:`~nlbook.train.fit` uses the Nesterov form), no weight decay, a short linear
    warm-up (a tenth of an epoch) then cosine decay, gradient clipping at 1, no label smoothing, CIFAR's crop
    and flip — the ViT paper's fine-tuning, with the learning rate scaled from the paper's batch 512 to ours.
    ResNet-50 gets the same recipe, so that the two arms differ in the network only. On CUDA, mixed precision
    (fp16 on a T4, bf16 where supported) and, for the ResNet, channels-last memory layout. ``overrides`` replace
    any field (e.g. ``epochs``, ``batch_size``, ``lr``, ``max_train``).
    """
    where = "finetune_recipe"
    check_choice(where, "arch", arch, ARCHS)
    check_choice(where, "mode", mode, MODES)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"{where}: device must be a torch.device or a name like 'cuda', got {device!r}"
        ) from err
    batch, lr_at_512, epochs = _RECIPES[(arch, mode)]
    batch = check_int(where, "batch_size", overrides.pop("batch_size", batch))
    if "lr" in overrides:
        lr = check_float(where, "lr", overrides.pop("lr"), low=0.0, low_open=True)
    else:
        lr = lr_at_512 * batch / PAPER_BATCH
    cuda = device.type == "cuda"
    base: dict[str, Any] = dict(
        epochs=epochs,
        batch_size=batch,
        optimizer="sgd",
        lr=lr,
        momentum=0.9,
        weight_decay=0.0,
        schedule="cosine",
        warmup_epochs=0.1,
        label_smoothing=0.0,
        grad_clip=1.0,
        augment=True,
        amp=cuda,
        channels_last=cuda and arch == "resnet50",
    )
    unknown = sorted(set(overrides) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"{where}: unknown TrainConfig fields {unknown}")
    return TrainConfig(**(base | overrides))


def imagenet_normalized(data: ImageDataset) -> ImageDataset:
    """``data`` standardised with ImageNet's mean and std — the inputs the pretrained weights were trained on.

    Only the two statistics change; the images stay where and as they are (uint8, any device).
    """
    if not isinstance(data, ImageDataset):
        raise TypeError(
            f"imagenet_normalized expects an nlbook.data.ImageDataset, got {type(data).__name__}"
        )
    if data.in_channels != 3:
        raise ValueError(
            f"imagenet_normalized: the pretrained networks take RGB images, but {data.name!r} has "
            f"{data.in_channels} channel(s)"
        )
    return replace(data, mean=IMAGENET_MEAN, std=IMAGENET_STD)
