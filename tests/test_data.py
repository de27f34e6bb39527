import gzip
import struct

import pytest
import torch
from PIL import Image

from prunebench.data import TensorData, _augment, load_dataset, synthetic
from prunebench.errors import DatasetNotFound


def test_batched_pad_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = _augment(x, g, crop=True, pad=1)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 4, dx:dx + 4] for dy in range(3) for dx in range(3)]
        windows += [w.flip(2) for w in windows]
        assert any(torch.equal(out[i], w) for w in windows)


def test_augmentation_is_deterministic_under_a_seed_and_varies_otherwise():
    x = torch.randint(0, 255, (64, 1, 8, 8), dtype=torch.uint8)
    a = _augment(x, torch.Generator().manual_seed(3), crop=True, pad=2)
    b = _augment(x, torch.Generator().manual_seed(3), crop=True, pad=2)
    c = _augment(x, torch.Generator().manual_seed(4), crop=True, pad=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batches_cover_the_split_once_and_normalise():
    images = torch.full((10, 1, 2, 2), 255, dtype=torch.uint8)
    data = TensorData(images, torch.arange(10), (0.5,), (0.5,))
    seen = [y for _, y in data.batches(4, generator=torch.Generator().manual_seed(0))]
    assert sorted(torch.cat(seen).tolist()) == list(range(10))
    assert [len(y) for y in seen] == [4, 4, 2]
    x, _ = next(data.batches(4))
    assert torch.allclose(x, torch.ones_like(x))  # (1 - 0.5) / 0.5


def _idx(path, magic, dims, payload: bytes):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload)


def _fmnist_gz(folder, n_train=6, n_test=4):
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(folder / f"{prefix}-images-idx3-ubyte.gz", 2051, (n, 28, 28), bytes(range(n)) * 784)
        _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 2049, (n,), bytes(i % 10 for i in range(n)))


def test_fashion_mnist_from_gzipped_idx_files_is_decompressed_under_the_data_root(tmp_path):
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    _fmnist_gz(raw)
    train, test = load_dataset("fashion-mnist", tmp_path / "root", tmp_path / "cache")
    assert train.images.shape == (6, 1, 28, 28) and len(test) == 4
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert (raw / "train-images-idx3-ubyte").exists() and not (tmp_path / "cache").exists()
    assert train.source == f"{raw} (decompressed from {raw})"


@pytest.fixture
def debian_copy(tmp_path, monkeypatch):
    """A Debian-style copy of Fashion-MNIST (gzipped IDX files), and no data root in the environment."""
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    _fmnist_gz(debian, n_train=5, n_test=3)
    monkeypatch.setattr("prunebench.paths.DEBIAN_FASHION_MNIST", debian)
    monkeypatch.delenv("PRUNEBENCH_DATA", raising=False)
    monkeypatch.setenv("PRUNEBENCH_CACHE", str(tmp_path / "cache-home"))
    return debian


def test_debians_copy_is_read_only_when_no_data_root_is_named(debian_copy, tmp_path):
    train, test = load_dataset("fashion-mnist")
    raw = tmp_path / "cache-home" / "data" / "FashionMNIST" / "raw"
    assert len(train) == 5 and len(test) == 3 and train.source == f"{raw} (decompressed from {debian_copy})"
    # decompressed under the documented default data root, not beside it
    assert (tmp_path / "cache-home" / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert {p.name for p in (tmp_path / "cache-home").iterdir()} == {"data"}
    again, _ = load_dataset("fashion-mnist")  # the decompressed copy: the same source, named the same way
    assert again.source == train.source and torch.equal(again.images, train.images)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_named_data_root_must_exist(debian_copy, tmp_path, monkeypatch, how):
    missing = tmp_path / "does" / "not" / "exist"
    if how == "environment":
        monkeypatch.setenv("PRUNEBENCH_DATA", str(missing))
    named = "--data-root" if how == "argument" else ".PRUNEBENCH_DATA"
    with pytest.raises(DatasetNotFound, match=f"data root {missing} .{named}. does not exist"):
        load_dataset("fashion-mnist", missing if how == "argument" else None)
    assert not missing.exists()


def test_a_named_data_root_without_the_dataset_is_an_error_not_debians_copy(debian_copy, tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(DatasetNotFound, match="not found. Looked in: .*mine/FashionMNIST/raw") as e:
        load_dataset("fashion-mnist", tmp_path / "mine")
    assert str(debian_copy) not in str(e.value)  # not looked at: the user named a root


def test_cifar_image_folder_layout(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("airplane", "automobile"):
            folder = tmp_path / "root" / "cifar10" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (i * 40, 100, 200)).save(folder / f"{i}.png")
    train, test = load_dataset("cifar10", tmp_path / "root", tmp_path / "cache")
    assert train.images.shape == (6, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert int(train.images[1, 0, 0, 0]) == 40 and len(test) == 4
    again, _ = load_dataset("cifar10", tmp_path / "root", tmp_path / "cache")  # from the tensor cache
    assert torch.equal(again.images, train.images)


def test_missing_dataset_is_an_error_never_a_synthetic_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr("prunebench.paths.DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    import prunebench.data as data

    monkeypatch.setattr(data.paths, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFound, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path / "empty", tmp_path / "cache")


def test_synthetic_is_learnable_and_fixed():
    a, _ = synthetic()
    b, _ = synthetic()
    assert torch.equal(a.images, b.images)
    assert len(a) == 640 and a.images.shape[1:] == (1, 16, 16)


def test_imagenet_folders_stream_through_a_dataloader(tmp_path):
    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            folder = tmp_path / "imagenet" / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (64, 48), (i * 60, 10, 10)).save(folder / f"{i}.jpg")
    train, val = load_dataset("imagenet", tmp_path, tmp_path / "cache")
    train.workers = val.workers = 0
    g = torch.Generator().manual_seed(0)
    batches = list(train.batches(4, generator=g, augment="crop+flip"))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 224, 224), (2, 3, 224, 224)]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == [0, 0, 0, 1, 1, 1]
    (x, y), = list(val.batches(6))
    assert x.shape == (6, 3, 224, 224) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(list(train.batches(4, generator=g, augment="flip", samples=10))[-1][1]) == 2


def test_a_truncated_gzip_names_the_file_and_leaves_no_partial_copy(tmp_path):
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    _fmnist_gz(raw)
    damaged = raw / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(DatasetNotFound, match=f"cannot decompress {damaged}"):
        load_dataset("fashion-mnist", tmp_path / "root")
    assert not list(raw.glob("*tmp")) and not (raw / "train-images-idx3-ubyte").exists()


def _cifar_folder(root, classes=("airplane", "automobile"), test_classes=None, n=2, size=(32, 32)):
    for split, names in (("train", classes), ("test", test_classes or classes)):
        for cls in names:
            folder = root / "cifar10" / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", size, (i * 40, 100, 200)).save(folder / f"{i}.png")
    return root / "cifar10"


def test_image_folder_splits_share_the_training_class_list(tmp_path):
    base = _cifar_folder(tmp_path / "root", classes=("a", "b", "c"), test_classes=("a", "c"))
    with pytest.raises(DatasetNotFound, match=f"class folders of {base / 'test'} differ .* missing: b"):
        load_dataset("cifar10", tmp_path / "root", tmp_path / "cache")
    # the same classes in both splits: one numbering (c is 2 in both, whatever else a split holds)
    (base / "test" / "b").mkdir()
    Image.new("RGB", (32, 32)).save(base / "test" / "b" / "0.png")
    train, test = load_dataset("cifar10", tmp_path / "root", tmp_path / "cache")
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2] and test.labels.tolist() == [0, 0, 1, 2, 2]


@pytest.mark.parametrize("damage, needle", [
    ("corrupt", "cannot read the image .*1.png"),
    ("size", "the image .*1.png is 28x30 with 3 channels; this dataset's images are 32x32 with 3"),
    ("empty", "Every class folder needs images"),
])
def test_a_bad_image_folder_names_the_file(tmp_path, damage, needle):
    base = _cifar_folder(tmp_path / "root")
    bad = base / "train" / "automobile" / "1.png"
    if damage == "corrupt":
        bad.write_bytes(b"\x89PNG not really")
    elif damage == "size":
        Image.new("RGB", (28, 30)).save(bad)
    else:
        for f in (base / "train" / "automobile").iterdir():
            f.unlink()
    with pytest.raises(DatasetNotFound, match=needle):
        load_dataset("cifar10", tmp_path / "root", tmp_path / "cache")
