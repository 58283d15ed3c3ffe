"""nlbook.data: explicit dataset choice, clear errors, device-resident batches and augmentation."""

import pytest
import torch

import nlbook.data as data_module
from nlbook.data import (
    DATASETS,
    DatasetUnavailableError,
    DeviceLoader,
    load_dataset,
    random_crop_flip,
    resolve_dataset_name,
    stratified_split,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_is_offline_rgb_32(digits):
    assert digits.train_images.dtype == torch.uint8
    assert digits.train_images.shape[1:] == (3, 32, 32)
    assert len(digits.train_labels) + len(digits.test_labels) == 1797
    assert set(digits.train_labels.tolist()) == set(range(10))
    assert not digits.hflip  # a mirrored digit is not the same digit


def test_split_is_deterministic_and_disjoint(digits):
    again = load_dataset("digits")
    assert torch.equal(again.train_images, digits.train_images)
    flat_tr = {bytes(x.numpy()) for x in digits.train_images[:, 0]}
    overlap = sum(bytes(x.numpy()) in flat_tr for x in digits.test_images[:, 0])
    # a few digits are pixel-identical after 8x8 quantisation; the split itself is by index
    assert overlap < 0.05 * len(digits.test_images)


def test_unknown_dataset_name_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*expected one of"):
        resolve_dataset_name("mnist")
    monkeypatch.setenv("NLBOOK_DATASET", "imagenet")
    with pytest.raises(ValueError, match="NLBOOK_DATASET"):
        resolve_dataset_name()


def test_dataset_choice_comes_from_environment(monkeypatch):
    monkeypatch.setenv("NLBOOK_DATASET", "digits")
    assert resolve_dataset_name() == "digits"
    monkeypatch.delenv("NLBOOK_DATASET")
    assert resolve_dataset_name() == "cifar10"
    assert "cifar10" in DATASETS


def test_missing_cifar_without_download_says_what_to_do(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("cifar10", root=tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path) in msg and "NLBOOK_DATASET=digits" in msg and "cifar-10-python.tar.gz" in msg


def test_cifar_loading_code_reads_torchvision_format(tmp_path, monkeypatch):
    """Write a miniature CIFAR-10 in torchvision's on-disk format and load it through the real code path."""
    import hashlib
    import pickle

    import numpy as np
    import torchvision

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": list(range(4))}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["a"] * 10}, f)
    # torchvision checks each file's MD5 against its own list; point that list at our files
    ds_cls = torchvision.datasets.CIFAR10
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n, _ in ds_cls.train_list + ds_cls.test_list}
    patched_train = [[n, md5[n]] for n, _ in ds_cls.train_list]
    patched_test = [[n, md5[n]] for n, _ in ds_cls.test_list]
    meta = dict(ds_cls.meta, md5=hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest())
    old = ds_cls.train_list, ds_cls.test_list, ds_cls.meta
    try:
        ds_cls.train_list, ds_cls.test_list, ds_cls.meta = patched_train, patched_test, meta
        monkeypatch.setattr(data_module, "VAL_PER_CLASS", 1)  # the miniature has 5 images per class
        ds = load_dataset("cifar10", root=tmp_path, download=False)
    finally:
        ds_cls.train_list, ds_cls.test_list, ds_cls.meta = old
    assert ds.train_images.shape == (16, 3, 32, 32) and ds.test_images.shape == (4, 3, 32, 32)
    assert ds.val_labels.sort().values.tolist() == [0, 1, 2, 3]  # one validation image per class
    assert ds.classes[0] == "airplane" and ds.hflip


def test_loader_batches_are_normalised_and_cover_the_split(digits):
    loader = DeviceLoader.test(digits, 100)
    seen = torch.cat([y for _, y in loader])
    assert torch.equal(seen, digits.test_labels)
    x, _ = next(iter(DeviceLoader.train(digits, 256)))
    assert x.dtype == torch.float32 and x.shape == (256, 3, 32, 32)
    assert abs(x.mean().item()) < 0.3 and 0.7 < x.std().item() < 1.3


def test_loader_is_seeded(digits):
    a = [y for _, y in DeviceLoader.train(digits, 64, seed=3)]
    b = [y for _, y in DeviceLoader.train(digits, 64, seed=3)]
    c = [y for _, y in DeviceLoader.train(digits, 64, seed=4)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


@pytest.mark.parametrize("augment", [False, True])
def test_ranks_partition_each_global_batch(digits, augment):
    """Two ranks together see exactly the (augmented) images and labels of one process."""
    full = list(DeviceLoader.train(digits, 64, seed=1, augment=augment))
    r0 = list(DeviceLoader.train(digits, 64, seed=1, augment=augment, rank=0, world_size=2))
    r1 = list(DeviceLoader.train(digits, 64, seed=1, augment=augment, rank=1, world_size=2))
    assert len(full) == len(r0) == len(r1)
    for (fx, fy), (ax, ay), (bx, by) in zip(full, r0, r1):
        assert torch.equal(fy, torch.cat([ay, by]))
        assert torch.equal(fx, torch.cat([ax, bx]))


def test_crop_and_flip_move_pixels_not_values():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    out = random_crop_flip(x, padding=0, generator=g)
    for a, b in zip(x, out):
        assert torch.equal(a, b) or torch.equal(a.flip(-1), b)
    cropped = random_crop_flip(x, padding=2, generator=g, flip=False)
    assert cropped.shape == x.shape
    # every non-zero value of a crop comes from the original image (the rest is zero padding)
    for a, b in zip(x, cropped):
        assert set(b[b > 0].tolist()) <= set(a.flatten().tolist())


def test_loader_rejects_bad_arguments(digits):
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(digits.train_images.float(), digits.train_labels, 8, mean=digits.mean, std=digits.std)
    with pytest.raises(ValueError, match="multiple of world_size"):
        DeviceLoader.train(digits, 5, world_size=2)


def test_datasets_declare_which_augmentations_preserve_labels():
    from nlbook.data import longrange_dataset

    lr = longrange_dataset(n_train=64, n_test=16)
    assert not lr.crop and not lr.hflip
    loader = DeviceLoader.train(lr, 16, seed=0)  # augment=True by default, but nothing may move
    plain = DeviceLoader.train(lr, 16, seed=0, augment=False)
    for (x, _), (y, _) in zip(loader, plain):
        assert torch.equal(x, y)


# ----------------------------------------------------------------------------------------------- Fashion-MNIST

FASHION = data_module.FASHION_MNIST_SYSTEM_DIR
needs_fashion = pytest.mark.skipif(
    not FASHION.is_dir(), reason=f"Fashion-MNIST not installed ({FASHION}; apt-get install dataset-fashion-mnist)"
)


def test_stratified_split_holds_out_equal_classes_and_balances_every_prefix():
    labels = torch.arange(10).repeat_interleave(30)[torch.randperm(300, generator=torch.Generator().manual_seed(1))]
    val, train = stratified_split(labels, per_class=5)
    assert labels[val].bincount().tolist() == [5] * 10
    assert sorted(val.tolist() + train.tolist()) == list(range(300))  # disjoint and complete
    for n in (10, 50, 120):
        assert labels[train[:n]].bincount(minlength=10).tolist() == [n // 10] * 10
    again = stratified_split(labels, per_class=5)
    assert torch.equal(val, again[0]) and torch.equal(train, again[1])  # fixed
    with pytest.raises(ValueError, match="class 0 has 30 images, not more than per_class=30"):
        stratified_split(labels, per_class=30)


@needs_fashion
def test_fashion_mnist_from_the_debian_package(tmp_path):
    ds = load_dataset("fashion_mnist", root=tmp_path, download=False)
    assert ds.train_images.shape == (55_000, 1, 32, 32) and ds.val_images.shape == (5_000, 1, 32, 32)
    assert ds.test_images.shape == (10_000, 1, 32, 32) and ds.train_images.dtype == torch.uint8
    assert ds.val_labels.bincount().tolist() == [500] * 10
    assert ds.train_labels[:10_000].bincount().tolist() == [1_000] * 10
    # zero-padded from 28x28: a two-pixel frame of background
    for images in (ds.train_images, ds.test_images):
        assert images[..., :2, :].max() == 0 and images[..., -2:].max() == 0
    assert ds.classes[0] == "T-shirt/top" and ds.has_validation and ds.hflip and ds.crop
    # the validation images are training images held out, not test images
    assert not torch.equal(ds.val_images[:5], ds.test_images[:5])


@needs_fashion
def test_fashion_mnist_from_nlbook_data_first(tmp_path, monkeypatch):
    """Files in $NLBOOK_DATA win over the system folder, which is then not needed."""
    import shutil

    for f in FASHION.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.setattr(data_module, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("NLBOOK_DATA", str(tmp_path))
    ds = load_dataset("fashion_mnist", download=False)
    assert len(ds.test_labels) == 10_000 and (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion_mnist", root=tmp_path, download=False)
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path) in msg and "NLBOOK_DATASET=digits" in msg


def test_truncated_fashion_mnist_files_are_refused(tmp_path, monkeypatch):
    import gzip

    for name in data_module._FASHION_MNIST_BYTES:
        with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
            f.write(b"\0" * 100)
    monkeypatch.setattr(data_module, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetUnavailableError, match="do not have the original sizes"):
        load_dataset("fashion_mnist", root=tmp_path, download=False)
