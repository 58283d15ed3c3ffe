"""Every chapter — datasets as device-resident uint8 tensors, and a loader that augments whole batches on the device.

Which dataset runs is always explicit — an argument, or ``$NLBOOK_DATASET`` — and printed by
:func:`nlbook.setup`:

* ``cifar10`` (default): CIFAR-10 through torchvision, downloaded (and MD5-checked by torchvision) into
  ``$NLBOOK_DATA`` (default ``~/.cache/nlbook``). If it is missing and cannot be downloaded you get an
  error that says what to do — never a silent switch to other data.
* ``fashion_mnist``: Fashion-MNIST (Xiao et al. 2017: 60,000 training and 10,000 test images of clothing,
  28×28 grey levels, ten classes), read by torchvision's own reader. It is looked for in ``$NLBOOK_DATA`` (or
  ``root``), then in Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), then
  downloaded; failing all three, an error says how to get it. Images are zero-padded to 32×32 (as LeNet padded
  MNIST), so every model of the book keeps the geometry it has on CIFAR-10 (4×4 patches, 4×4 windows).
  A fixed, class-stratified **validation split** of 5,000 training images (500 per class) is held out: the
  records choose budgets on it and score the test split once per run.
* ``digits``: scikit-learn's 1,797 handwritten digits (shipped inside the package, no network), brought to
  3×32×32 by bilinear upsampling. Used by CI and offline builds.
* ``longrange``: the generated long-range-dependency task of :mod:`nlbook.longrange` (default settings,
  :func:`longrange_dataset`).

Why device-resident: on a 2-vCPU Colab machine, per-image augmentation in DataLoader workers starves a
GPU. Keeping the whole uint8 dataset on the device (CIFAR-10 is 150 MB) and cropping/flipping a batch at a
time with tensor ops removes the data pipeline as a bottleneck.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from nlbook.checks import check_int, check_positive_int
from nlbook.longrange import CLASSES as LONGRANGE_CLASSES
from nlbook.longrange import TEST_SEED, LongRangeTask
from nlbook.runtime import DATASETS, pick_device, resolve_dataset_name

__all__ = [
    "DATASETS",
    "DeviceLoader",
    "ImageDataset",
    "DatasetUnavailableError",
    "data_root",
    "load_dataset",
    "longrange_dataset",
    "normalize",
    "random_crop_flip",
    "resolve_dataset_name",
    "stratified_split",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class DatasetUnavailableError(RuntimeError):
    """The requested dataset is not on disk and could not be downloaded."""


@dataclass(frozen=True)
class ImageDataset:
    """Train/test (and optional validation) splits held as tensors: images uint8 (N, C, H, W), labels int64 (N,).

    A dataset with a validation split (``val_images``; Fashion-MNIST, CIFAR-10) is scored on it after every
    epoch of :func:`nlbook.train.fit` — every choice (budget, epochs) reads it — and on the test split once,
    at the end. Without one (digits, the long-range task) every epoch is scored on the test split.
    """

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]  # per-channel, in [0, 1] units, from the training images
    std: tuple[float, ...]
    hflip: bool = True  # is a horizontal flip label-preserving? (not for digits: a flipped 2 is no 2)
    crop: bool = True  # is a padded random crop label-preserving? (not where a crop can cut off what decides it)
    val_images: torch.Tensor | None = (
        None  # held out from the training images (None: no validation split)
    )
    val_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.val_images is None) != (self.val_labels is None):
            raise ValueError(
                "ImageDataset: give val_images and val_labels together, or neither"
            )

    @property
    def has_validation(self) -> bool:
        return self.val_images is not None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]

    def to(self, device: torch.device | str) -> ImageDataset:
        return replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device),
            test_labels=self.test_labels.to(device),
            val_images=None if self.val_images is None else self.val_images.to(device),
            val_labels=None if self.val_labels is None else self.val_labels.to(device),
        )

    def subset(self, max_train: int | None, max_test: int | None) -> ImageDataset:
        """The first ``max_train`` / ``max_test`` examples (the splits are stored shuffled; ``None``: all).

        The validation split is kept whole: every subset is chosen on the same images. A negative count is an
        error, not Python's "all but the last n"."""
        for name, value in (("max_train", max_train), ("max_test", max_test)):
            if value is not None:
                check_int("ImageDataset.subset", name, value, low=0)
        return replace(
            self,
            train_images=self.train_images[:max_train],
            train_labels=self.train_labels[:max_train],
            test_images=self.test_images[:max_test],
            test_labels=self.test_labels[:max_test],
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images → float, standardised per channel (on the images' device)."""
        return normalize(images, self.mean, self.std)

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}, train={tuple(self.train_images.shape)}, "
            f"test={tuple(self.test_images.shape)},"
            + (
                f" val={tuple(self.val_images.shape)},"
                if self.val_images is not None
                else ""
            )
            + "\n"
            f"             classes={self.num_classes}, device={self.train_images.device})"
        )


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where downloads go: ``root``, else ``$NLBOOK_DATA``, else ``~/.cache/nlbook``."""
    if root is not None and (
        isinstance(root, bool) or not isinstance(root, str | os.PathLike)
    ):
        raise TypeError(
            f"data_root: root must be a folder (str or os.PathLike) or None, got {type(root).__name__}"
        )
    return Path(
        root or os.environ.get("NLBOOK_DATA") or Path.home() / ".cache" / "nlbook"
    ).expanduser()


def load_dataset(
    name: str | None = None,
    *,
    root: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load a dataset by name (see module docstring) onto ``device`` (default CPU)."""
    name = resolve_dataset_name(name)
    if name == "cifar10":
        ds = _load_cifar10(data_root(root), download)
    elif name == "fashion_mnist":
        ds = _load_fashion_mnist(data_root(root), download)
    elif name == "digits":
        ds = _load_digits()
    else:
        ds = longrange_dataset()
    return (
        ds.to(pick_device(device)) if device is not None else ds
    )  # a device that does not exist: clear error


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.double() / 255.0
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


def _load_cifar10(root: Path, download: bool) -> ImageDataset:
    import torchvision

    try:
        # torchvision verifies the archive's MD5 (c58f30108f718f92721af3b95e74349a) before extracting.
        train = torchvision.datasets.CIFAR10(str(root), train=True, download=download)
        test = torchvision.datasets.CIFAR10(str(root), train=False, download=download)
    except (RuntimeError, OSError) as err:  # not found / no network / checksum mismatch
        raise DatasetUnavailableError(
            f"CIFAR-10 is not in {root} and could not be downloaded ({type(err).__name__}: {err}).\n"
            "Do one of:\n"
            "  * connect to the internet and run again (it downloads 163 MB once), or\n"
            f"  * put cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html in {root} "
            "(or point NLBOOK_DATA at its folder), or\n"
            "  * run offline on the bundled data: set NLBOOK_DATASET=digits (or pass dataset='digits')."
        ) from err

    def to_tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
        images = (
            torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous()
        )  # (N, 32, 32, 3) -> NCHW
        return images, torch.tensor(split.targets, dtype=torch.int64)

    tr_x, tr_y = to_tensors(train)
    te_x, te_y = to_tensors(test)
    return _with_validation("cifar10", CIFAR10_CLASSES, tr_x, tr_y, te_x, te_y)


VAL_PER_CLASS = (
    500  # Fashion-MNIST and CIFAR-10: 5,000 validation images, 500 of each class
)
SPLIT_SEED = 0  # the one fixed draw of the validation split and of the stored order


def stratified_split(
    labels: torch.Tensor, per_class: int, seed: int = SPLIT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(validation, train)``: ``per_class`` images of every class for validation, the rest for training.

    The training indices are *interleaved by class* (one image of each class, then the next of each, ...) so
    every prefix — the first ``max_train`` images a smaller run uses — holds the classes in equal shares.
    """
    if (
        not isinstance(labels, torch.Tensor)
        or labels.dim() != 1
        or labels.is_floating_point()
    ):
        raise ValueError(
            f"stratified_split: labels must be a 1-D integer tensor, got {labels!r:.60}"
        )
    check_int("stratified_split", "per_class", per_class, low=1)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    shuffled = labels[order]
    # rank of each image within its class, in the shuffled order
    rank = torch.empty_like(order)
    for c in shuffled.unique():
        where = (shuffled == c).nonzero().squeeze(1)
        if len(where) <= per_class:
            raise ValueError(
                f"stratified_split: class {int(c)} has {len(where)} images, not more than per_class={per_class}"
            )
        rank[where] = torch.arange(len(where))
    val = order[rank < per_class]
    rest = rank >= per_class
    # sort the rest by (rank within class, class): every prefix is class-balanced
    key = rank[rest] * (int(labels.max()) + 1) + shuffled[rest]
    train = order[rest][key.argsort(stable=True)]
    return val, train


def _with_validation(
    name: str,
    classes: tuple[str, ...],
    tr_x: torch.Tensor,
    tr_y: torch.Tensor,
    te_x: torch.Tensor,
    te_y: torch.Tensor,
    **kw,
) -> ImageDataset:
    """The splits of a dataset with a held-out validation split (:func:`stratified_split`); normalisation
    statistics come from the training images only."""
    val, train = stratified_split(tr_y, VAL_PER_CLASS)
    g = torch.Generator().manual_seed(SPLIT_SEED)
    p_te = torch.randperm(
        len(te_y), generator=g
    )  # shuffled once, so a test subset is balanced too
    mean, std = _channel_stats(tr_x[train])
    return ImageDataset(
        name,
        classes,
        tr_x[train],
        tr_y[train],
        te_x[p_te],
        te_y[p_te],
        mean,
        std,
        val_images=tr_x[val],
        val_labels=tr_y[val],
        **kw,
    )


FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
# Debian's package `dataset-fashion-mnist` installs the four original IDX files (gzip) here.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


# Bytes of the four uncompressed IDX files (16- or 8-byte header + one byte per pixel or label). Debian
# recompresses the original .gz files, so their MD5 sums differ from torchvision's; the extracted sizes are
# checked here, and torchvision's reader checks each file's IDX header when it loads it.
_FASHION_MNIST_BYTES = {
    "train-images-idx3-ubyte": 16 + 60_000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60_000,
    "t10k-images-idx3-ubyte": 16 + 10_000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10_000,
}


def _stage_fashion_mnist(root: Path) -> None:
    """Put Fashion-MNIST where torchvision's reader looks (``<root>/FashionMNIST/raw/``, uncompressed),
    from the first folder holding the four original ``*-ubyte.gz`` files: ``root`` itself, then Debian's
    package folder. Nothing happens when the files are already there or found nowhere (torchvision then
    downloads them)."""
    import gzip

    raw = root / "FashionMNIST" / "raw"

    def staged() -> bool:
        return all(
            (raw / f).is_file() and (raw / f).stat().st_size == n
            for f, n in _FASHION_MNIST_BYTES.items()
        )

    if staged():
        return
    for folder in (root, FASHION_MNIST_SYSTEM_DIR):
        if all((folder / f"{f}.gz").is_file() for f in _FASHION_MNIST_BYTES):
            raw.mkdir(parents=True, exist_ok=True)
            for f in _FASHION_MNIST_BYTES:
                tmp = (
                    raw / f"{f}.part"
                )  # never leave half a file where the reader looks
                with gzip.open(folder / f"{f}.gz", "rb") as src, open(tmp, "wb") as dst:
                    dst.write(src.read())
                tmp.replace(raw / f)
            if not staged():
                raise OSError(
                    f"the Fashion-MNIST files in {folder} do not have the original sizes"
                )
            return


def _load_fashion_mnist(root: Path, download: bool) -> ImageDataset:
    import torchvision

    try:
        _stage_fashion_mnist(root)
        train = torchvision.datasets.FashionMNIST(
            str(root), train=True, download=download
        )
        test = torchvision.datasets.FashionMNIST(
            str(root), train=False, download=download
        )
    except (
        RuntimeError,
        OSError,
    ) as err:  # not found / no network / checksum mismatch / read-only root
        raise DatasetUnavailableError(
            f"Fashion-MNIST is neither in {root} nor in {FASHION_MNIST_SYSTEM_DIR}, and could not be "
            f"downloaded ({type(err).__name__}: {err}).\n"
            "Do one of:\n"
            "  * on Debian/Ubuntu: apt-get install dataset-fashion-mnist (puts the files in "
            f"{FASHION_MNIST_SYSTEM_DIR}), or\n"
            "  * connect to the internet and run again (it downloads 30 MB once), or\n"
            "  * put the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist in "
            f"{root} (or point NLBOOK_DATA at their folder), or\n"
            "  * run on the bundled data: set NLBOOK_DATASET=digits (or pass dataset='digits')."
        ) from err

    def to_tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
        # (N, 28, 28) uint8 -> (N, 1, 32, 32): two pixels of background (0) on every side
        images = F.pad(split.data.unsqueeze(1), (2, 2, 2, 2))
        return images.contiguous(), split.targets.long()

    tr_x, tr_y = to_tensors(train)
    te_x, te_y = to_tensors(test)
    # a mirrored garment is the same garment: flips and padded crops both preserve the label
    return _with_validation(
        "fashion_mnist", FASHION_MNIST_CLASSES, tr_x, tr_y, te_x, te_y
    )


def _load_digits(test_fraction: float = 0.2) -> ImageDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise DatasetUnavailableError(
            "the 'digits' dataset needs scikit-learn: pip install scikit-learn"
        ) from err
    bunch = load_digits()
    x = (
        torch.from_numpy(bunch.images).float().unsqueeze(1) / 16.0
    )  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    images = (
        (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    )
    labels = torch.from_numpy(bunch.target).long()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(labels), generator=g)
    n_test = int(round(len(labels) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    mean, std = _channel_stats(images[tr])
    classes = tuple(str(i) for i in range(10))
    return ImageDataset(
        "digits",
        classes,
        images[tr],
        labels[tr],
        images[te],
        labels[te],
        mean,
        std,
        hflip=False,
    )


def normalize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """uint8 images (B, C, H, W) → float, standardised per channel with ``mean`` and ``std`` (one value each)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = (
            tuple(images.shape)
            if isinstance(images, torch.Tensor)
            else type(images).__name__
        )
        raise ValueError(f"normalize expects a batch of images (B, C, H, W), got {got}")
    if images.dtype != torch.uint8:
        # float images may already be in [0, 1]: dividing them by 255 again would silently shrink them
        raise TypeError(
            f"normalize expects uint8 images (0-255, as the datasets store them), got {images.dtype}; "
            "for float images in [0, 1] subtract the mean and divide by the std directly"
        )
    channels = images.shape[1]
    # a wrong count would broadcast (one value for all channels) or fail inside torch; neither says why
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"normalize: mean and std need one value per channel ({channels}), got {len(mean)} and {len(std)}"
        )
    if any(not s > 0 for s in std):
        raise ValueError(
            f"normalize: std must be positive per channel, got {tuple(std)}"
        )
    m = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() / 255.0 - m) / s


def random_crop_flip(
    images: torch.Tensor, padding: int, generator: torch.Generator, flip: bool = True
) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, for a whole (B, C, H, W) batch at once.

    The random numbers come from ``generator`` (a CPU generator, so a seed gives the same crops on every
    device); the pixels never leave their device.
    """
    if images.dim() != 4:
        raise ValueError(
            f"random_crop_flip expects a batch (N, C, H, W), got shape {tuple(images.shape)}"
        )
    if padding < 0:
        raise ValueError(f"random_crop_flip: padding must be >= 0, got {padding}")
    b, c, h, w = images.shape
    dev = images.device
    flips = (
        torch.rand(b, generator=generator) < 0.5
    )  # drawn even when unused: same crops either way
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(dev)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev)).view(b, 1, h, 1)
        cols = (ox[:, None] + torch.arange(w, device=dev)).view(b, 1, 1, w)
        bidx = torch.arange(b, device=dev).view(b, 1, 1, 1)
        cidx = torch.arange(c, device=dev).view(1, c, 1, 1)
        images = padded[bidx, cidx, rows, cols]
    if not flip:
        return images
    return torch.where(flips.to(dev).view(b, 1, 1, 1), images.flip(-1), images)


class DeviceLoader:
    """Iterate (normalised float images, labels) batches from device-resident uint8 tensors.

    ``batch_size`` is the *global* batch. With ``world_size > 1`` (see the scale-out appendix) every rank
    draws the same permutation and takes its contiguous share of each global batch, so N processes see
    exactly the images one process would.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        shuffle: bool = False,
        augment: bool = False,
        padding: int = 4,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        hflip: bool = True,
    ):
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(
                f"DeviceLoader expects uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"DeviceLoader: labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(
                f"DeviceLoader: batch_size must be a positive multiple of world_size={world_size}"
            )
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(
                f"DeviceLoader: need one mean and one std per channel ({images.shape[1]}), "
                f"got {len(mean)} mean(s) and {len(std)} std(s)"
            )
        if any(
            isinstance(s, bool)
            or not isinstance(s, int | float)
            or not 0 < s < float("inf")
            for s in std
        ):
            raise ValueError(
                f"DeviceLoader: every std must be a finite number > 0 (it divides the pixels), got {std}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(
                f"DeviceLoader: rank must be in [0, {world_size}), got {rank}"
            )
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment, self.padding = (
            batch_size,
            shuffle,
            augment,
            padding,
        )
        self.mean, self.std = mean, std
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.channels_last, self.hflip = channels_last, hflip
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def train(cls, ds: ImageDataset, batch_size: int, **kw) -> DeviceLoader:
        """Shuffled batches from the training split, augmented as far as the dataset allows (``crop``, ``hflip``)."""
        kw = {
            "shuffle": True,
            "augment": True,
            "drop_last": True,
            "hflip": ds.hflip,
            "padding": 4 * ds.crop,
            **kw,
        }
        return cls(
            ds.train_images, ds.train_labels, batch_size, mean=ds.mean, std=ds.std, **kw
        )

    @classmethod
    def test(cls, ds: ImageDataset, batch_size: int, **kw) -> DeviceLoader:
        """Ordered, un-augmented batches from the test split."""
        return cls(
            ds.test_images, ds.test_labels, batch_size, mean=ds.mean, std=ds.std, **kw
        )

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.images.shape[0]
        order = (
            torch.randperm(n, generator=self.generator)
            if self.shuffle
            else torch.arange(n)
        )
        order = order.to(self.images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x, y = self.images[idx], self.labels[idx]
            if self.augment:
                # augment the whole global batch, then slice: every rank draws the same
                # random numbers,
                # so N processes see exactly the crops one process would
                x = random_crop_flip(x, self.padding, self.generator, flip=self.hflip)
            if self.world_size > 1:
                share = -(-idx.numel() // self.world_size)
                x, y = (
                    x[self.rank * share : (self.rank + 1) * share],
                    y[self.rank * share : (self.rank + 1) * share],
                )
            x = normalize(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


def longrange_dataset(
    n_train: int = 8000,
    n_test: int = 2000,
    *,
    image_size: int = 32,
    distance: int | tuple[int, int] | None = None,
    glyph_size: int = 3,
    num_glyphs: int = 4,
    noise: float = 0.0,
    colored: bool = True,
    seed: int = 0,
    test_seed: int = TEST_SEED,
    device: torch.device | str | None = None,
) -> ImageDataset:
    """The task as an :class:`nlbook.data.ImageDataset` named ``"longrange"`` (classes ``different``, ``same``).

    The training split is drawn with ``seed``, the test split with ``test_seed`` (fixed by default, so runs
    with different training seeds are scored on the same images). Task knobs: see :class:`LongRangeTask`.
    Note: train on it with ``augment=False`` — random crops can push a glyph out of the image.
    """
    task = LongRangeTask(image_size, distance, glyph_size, num_glyphs, noise, colored)
    check_positive_int("longrange_dataset", n_train=n_train, n_test=n_test)
    if seed == test_seed:
        raise ValueError(
            f"longrange_dataset: seed and test_seed must differ (both {seed}): the splits would be equal"
        )
    train = task.sample(n_train, seed, device=device)
    test = task.sample(n_test, test_seed, device=device)
    # Per-channel statistics from (at most) the first 4096 training images: plenty for normalisation.
    mean, std = _channel_stats(train.images[:4096].cpu())
    # neither a crop (it can cut a glyph off) nor a flip (it moves glyphs) is label-preserving here
    return ImageDataset(
        "longrange",
        LONGRANGE_CLASSES,
        train.images,
        train.labels,
        test.images,
        test.labels,
        mean,
        std,
        hflip=False,
        crop=False,
    )
