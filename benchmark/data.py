"""Datasets, found by name in `DATASETS`.

Small datasets (CIFAR, Fashion-MNIST, the synthetic test set) live on the training device as one
uint8 tensor; augmentation (pad-crop, flip) and normalisation run batched there, which is
several times faster than a per-image PIL `DataLoader`. ImageNet-style folders stream through a
`DataLoader` with workers. Nothing is downloaded unless asked; a missing dataset is an error
that says where the harness looked and how to get it. The synthetic dataset is for tests and is
only ever used by name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from prunebench import paths
from prunebench._atomic import write_atomic
from prunebench._registry import Registry
from prunebench.errors import DatasetNotFound

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorData:
    """One split held as a uint8 (N, C, H, W) tensor plus int64 labels, on one device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("TensorData wants uint8 images (N, C, H, W) and N labels")
        self.images, self.labels = images, labels.long()
        self.source = ""  # where the split was read from (recorded with every run)
        self.channels_last = True  # batches in the models' memory format (see Harness.set_device)
        c = images.shape[1]
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1) * 255
        self._std = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1) * 255

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> TensorData:
        out = TensorData.__new__(TensorData)
        out.images, out.labels = self.images.to(device), self.labels.to(device)
        out._mean, out._std = self._mean.to(device), self._std.to(device)
        out.channels_last, out.source = self.channels_last, self.source
        return out

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.images.cpu().numpy().tobytes())
        h.update(self.labels.cpu().numpy().tobytes())
        return h.hexdigest()

    def batches(self, batch_size: int, *, generator: torch.Generator | None = None,
                augment: str = "none", pad: int = 0, samples: int | None = None) -> Iterator[Batch]:
        """Normalised float batches; shuffled and augmented when a generator is given. `samples`
        draws that many per epoch from consecutive reshuffled passes (default: one pass)."""
        n, device = len(self), self.images.device
        total = samples or n
        if generator is None:
            order = torch.arange(total) % n
        else:
            order = torch.cat([torch.randperm(n, generator=generator) for _ in range(-(-total // n))])[:total]
        for start in range(0, total, batch_size):
            idx = order[start:start + batch_size].to(device)
            x = self.images[idx]
            if generator is not None and augment != "none":
                x = _augment(x, generator, crop=augment == "crop+flip", pad=pad)
            x = (x.float() - self._mean) / self._std
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            yield x.contiguous(memory_format=fmt), self.labels[idx]


def _augment(x: torch.Tensor, generator: torch.Generator, *, crop: bool, pad: int) -> torch.Tensor:
    """Batched random pad-crop (zero padding) and horizontal flip of uint8 images."""
    b, c, h, w = x.shape
    if crop and pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class LoaderData:
    """An ImageFolder split streamed by a `DataLoader` (ImageNet-sized data)."""

    def __init__(self, folder: Path, train: bool, classes: list[str], workers: int = 4) -> None:
        t = torchvision.transforms
        norm = t.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        self.train_transform = t.Compose([t.RandomResizedCrop(224), t.RandomHorizontalFlip(), t.ToTensor(), norm])
        self.eval_transform = t.Compose([t.Resize(256), t.CenterCrop(224), t.ToTensor(), norm])
        self.dataset = _SharedClassFolder(folder, classes)
        self.workers = workers
        self.source = str(folder)

    def __len__(self) -> int:
        return len(self.dataset)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for path, label in self.dataset.samples:
            h.update(f"{Path(path).name}:{label}\n".encode())
        return h.hexdigest()

    def batches(self, batch_size: int, *, generator: torch.Generator | None = None,
                augment: str = "none", pad: int = 0, samples: int | None = None) -> Iterator[Batch]:
        train = generator is not None and augment != "none"
        sampler = None
        if samples is not None:
            sampler = torch.utils.data.RandomSampler(self.dataset, num_samples=samples, generator=generator)
        self.dataset.transform = self.train_transform if train else self.eval_transform
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, shuffle=generator is not None and sampler is None,
            sampler=sampler, generator=generator if sampler is None else None, num_workers=self.workers, pin_memory=torch.cuda.is_available(),
        )
        yield from loader


Split = TensorData | LoaderData


@dataclass(frozen=True)
class Dataset:
    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train_size: int
    description: str
    how_to_get: str
    # (data root, cache root, whether the user named the root) -> (train split, test split), each
    # with its `source` set; raises DatasetNotFound. System copies (Debian's) are looked at only
    # when the user named no root.
    load: Callable[[Path, Path, bool], tuple[Split, Split]]


DATASETS: Registry[Dataset] = Registry("dataset")


def load_dataset(name: str, data_root: Path | None = None, cache: Path | None = None) -> tuple[Split, Split]:
    """The train and test splits of dataset `name` from `data_root` (else $PRUNEBENCH_DATA, else
    the user cache). A root the user names must exist and hold the dataset: nothing else is
    looked at then."""
    dataset = DATASETS.get(name)
    root, given = check_data_root(data_root, dataset)
    return dataset.load(root, Path(cache or paths.cache_home()), given)


def check_data_root(data_root: Path | None, dataset: Dataset | None = None) -> tuple[Path, bool]:
    """The data root in use and whether the user named it (`--data-root`, else $PRUNEBENCH_DATA);
    a named root must be an existing folder."""
    given = data_root is not None or bool(os.environ.get(paths.DATA_ENV))
    root = Path(data_root).expanduser() if data_root is not None else paths.default_data_root()
    if given and not root.is_dir():
        named = "--data-root" if data_root is not None else f"${paths.DATA_ENV}"
        what = "is not a folder" if root.exists() else "does not exist"
        holds = f"{dataset.name!r}" if dataset else "your datasets"
        raise DatasetNotFound(f"the data root {root} ({named}) {what}. Name the folder that holds {holds}, or "
                              f"name none to use the default.{' ' + dataset.how_to_get if dataset else ''}")
    return root, given


def _missing(name: str, looked: list[Path]) -> DatasetNotFound:
    where = ", ".join(str(p) for p in looked)
    return DatasetNotFound(
        f"dataset {name!r} not found. Looked in: {where}. {DATASETS.get(name).how_to_get} Point the harness at your copy "
        f"with --data-root DIR or ${paths.DATA_ENV}."
    )


def _sourced(splits: tuple[Split, Split], source: str) -> tuple[Split, Split]:
    for split in splits:
        split.source = source
    return splits


# --- CIFAR -----------------------------------------------------------------------------------

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def folder_classes(base: Path, splits: tuple[str, str]) -> list[str]:
    """The class list of an ImageFolder dataset: the training split's class folders, which the
    other split must have too (each split numbering its own folders would shift the labels)."""
    found = {split: sorted(d.name for d in (base / split).iterdir() if d.is_dir()) for split in splits}
    train, other = found[splits[0]], found[splits[1]]
    if not train:
        raise DatasetNotFound(f"{base / splits[0]} has no class folders: an ImageFolder split holds one folder "
                              "of images per class.")
    if train != other:
        missing, extra = sorted(set(train) - set(other)), sorted(set(other) - set(train))
        raise DatasetNotFound(f"the class folders of {base / splits[1]} differ from those of {base / splits[0]}"
                              + (f"; missing: {', '.join(missing[:5])}" if missing else "")
                              + (f"; extra: {', '.join(extra[:5])}" if extra else "")
                              + ". Both splits need the same classes.")
    return train


class _SharedClassFolder(torchvision.datasets.ImageFolder):
    """An ImageFolder split numbered by a class list shared with the other split."""

    def __init__(self, root: Path, classes: list[str]) -> None:
        self._shared = classes
        try:
            super().__init__(str(root))
        except FileNotFoundError as e:  # a class folder with no images
            raise DatasetNotFound(f"{root}: {e}. Every class folder needs images.") from None

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self._shared, {c: i for i, c in enumerate(self._shared)}


def _image_folder_tensors(folder: Path, cache: Path, classes: list[str],
                          shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an ImageFolder split of small images once into uint8 tensors (cached); a file
    that is not an image of `shape` is an error naming it."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    key = hashlib.sha256(
        "\n".join([*classes, *(f"{p.relative_to(folder)}:{p.stat().st_size}" for p in files)]).encode()
    ).hexdigest()[:20]
    cached = paths.tensor_cache(cache, key)
    if cached.exists():
        try:
            images, labels = torch.load(cached, weights_only=True)
            return images, labels
        except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError):  # damaged: decode again
            cached.unlink(missing_ok=True)
    dataset = _SharedClassFolder(folder, classes)
    decoded = []
    for path, _ in dataset.samples:
        try:
            image = np.array(dataset.loader(path), dtype=np.uint8)
        except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
            raise DatasetNotFound(f"cannot read the image {path}: {e}. Remove or replace the file.") from None
        tensor = torch.from_numpy(image).permute(2, 0, 1)
        if tuple(tensor.shape) != shape:
            raise DatasetNotFound(f"the image {path} is {tensor.shape[2]}x{tensor.shape[1]} with {tensor.shape[0]} "
                                  f"channels; this dataset's images are {shape[2]}x{shape[1]} with {shape[0]}. "
                                  "Resize it or remove it.")
        decoded.append(tensor)
    images = torch.stack(decoded)
    labels = torch.tensor(dataset.targets)
    cached.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save((images, labels), buffer)
    write_atomic(cached, buffer.getvalue())
    return images, labels


def _cifar_loader(name: str, klass: type, folder_name: str):
    mean, std = CIFAR_STATS[name]

    def load(root: Path, cache: Path, given: bool) -> tuple[Split, Split]:
        if (root / folder_name).is_dir():  # torchvision's own format
            splits = [klass(str(root), train=t, download=False) for t in (True, False)]
            return _sourced(tuple(  # type: ignore[arg-type]
                TensorData(torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(),
                           torch.tensor(s.targets), mean, std)
                for s in splits
            ), str(root / folder_name))
        for base in (root / name, root):  # ImageFolder layout: train/<class>/..., test/<class>/...
            if (base / "train").is_dir() and (base / "test").is_dir():
                classes = folder_classes(base, ("train", "test"))
                shape = DATASETS.get(name).input_shape
                return _sourced(tuple(  # type: ignore[arg-type]
                    TensorData(*_image_folder_tensors(base / split, cache, classes, shape), mean, std)
                    for split in ("train", "test")
                ), str(base))
        raise _missing(name, [root / folder_name, root / name / "train", root / "train"])

    return load


DATASETS.register("cifar10", Dataset(
    "cifar10", 10, (3, 32, 32), 50_000, "CIFAR-10, torchvision format or ImageFolder (train/, test/)",
    "Download the python batches from the CIFAR site into DIR (giving DIR/cifar-10-batches-py), "
    "or unpack an ImageFolder copy into DIR/cifar10/{train,test}/<class>/.",
    _cifar_loader("cifar10", torchvision.datasets.CIFAR10, "cifar-10-batches-py"),
))
DATASETS.register("cifar100", Dataset(
    "cifar100", 100, (3, 32, 32), 50_000, "CIFAR-100, torchvision format or ImageFolder (train/, test/)",
    "Download the python version into DIR (giving DIR/cifar-100-python), or unpack an "
    "ImageFolder copy into DIR/cifar100/{train,test}/<class>/.",
    _cifar_loader("cifar100", torchvision.datasets.CIFAR100, "cifar-100-python"),
))

# --- Fashion-MNIST ---------------------------------------------------------------------------

FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FMNIST_HOW = ("On Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (files in "
              f"{paths.DEBIAN_FASHION_MNIST}, used when no data root is named); or put the four IDX "
              "files (gzipped or not) into DIR/FashionMNIST/raw/.")


def _load_fmnist(root: Path, cache: Path, given: bool) -> tuple[Split, Split]:
    """From `root` (decompressed or gzipped IDX files in root/FashionMNIST/raw, or gzipped in
    root), else, when the user named no root, from Debian's package. Gzipped files are
    decompressed once into root/FashionMNIST/raw, where torchvision reads them."""
    raw = root / "FashionMNIST" / "raw"
    sources = [raw, root] + ([] if given else [paths.DEBIAN_FASHION_MNIST])
    if all((raw / f).is_file() for f in FMNIST_FILES):
        origin = raw / "SOURCE"  # written when the harness decompressed them
        source = f"{raw} (decompressed from {origin.read_text().strip()})" if origin.is_file() else str(raw)
    else:
        source = next((s for s in sources if all((s / f"{f}.gz").is_file() for f in FMNIST_FILES)), None)
        if source is None:
            raise _missing("fashion-mnist", sources)
        try:
            raw.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatasetNotFound(f"cannot decompress Fashion-MNIST from {source} into {raw}: {e.strerror}. "
                                  f"Make {root} writable, or pass --data-root DIR of a writable folder.") from None
        for f in FMNIST_FILES:
            tmp = raw / f"{f}.{os.getpid()}.tmp"
            try:
                with gzip.open(source / f"{f}.gz", "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                tmp.replace(raw / f)
            except (OSError, EOFError, zlib.error) as e:
                tmp.unlink(missing_ok=True)
                why = getattr(e, "strerror", None) or str(e) or type(e).__name__
                raise DatasetNotFound(f"cannot decompress {source / (f + '.gz')} into {raw}: {why}. Replace the "
                                      "file with a complete copy (or make the folder writable).") from None
        (raw / "SOURCE").write_text(f"{source}\n")
        source = f"{raw} (decompressed from {source})"
    splits = [torchvision.datasets.FashionMNIST(str(root), train=t, download=False) for t in (True, False)]
    return _sourced(tuple(  # type: ignore[arg-type]
        TensorData(s.data.unsqueeze(1).contiguous(), s.targets, (0.2860,), (0.3530,)) for s in splits
    ), str(source))


DATASETS.register("fashion-mnist", Dataset(
    "fashion-mnist", 10, (1, 28, 28), 60_000, "Fashion-MNIST (local root or Debian's dataset-fashion-mnist)",
    FMNIST_HOW, _load_fmnist,
))

# --- ImageNet --------------------------------------------------------------------------------


def _load_imagenet(root: Path, cache: Path, given: bool) -> tuple[Split, Split]:
    for base in (root / "imagenet", root):
        if (base / "train").is_dir() and (base / "val").is_dir():
            classes = folder_classes(base, ("train", "val"))
            return (LoaderData(base / "train", train=True, classes=classes),
                    LoaderData(base / "val", train=False, classes=classes))
    raise _missing("imagenet", [root / "imagenet", root])


DATASETS.register("imagenet", Dataset(
    "imagenet", 1000, (3, 224, 224), 1_281_167, "ImageNet (ILSVRC-2012) as ImageFolder train/ and val/",
    "Prepare ILSVRC-2012 as ImageFolder folders DIR/imagenet/train/<wnid>/ and DIR/imagenet/val/<wnid>/.",
    _load_imagenet,
))

# --- synthetic (tests only, by name) ---------------------------------------------------------


def synthetic(n_train: int = 640, n_test: int = 200, shape: tuple[int, int, int] = (1, 16, 16),
              classes: int = 10, seed: int = 1234) -> tuple[TensorData, TensorData]:
    """A learnable toy set: one random template per class plus noise. For tests only."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(classes, *shape, generator=g) * 160 + 40

    def split(n: int) -> TensorData:
        labels = torch.arange(n) % classes
        noise = torch.randn(n, *shape, generator=g) * 40
        images = (templates[labels] + noise).clamp(0, 255).to(torch.uint8)
        return TensorData(images, labels, (0.5,) * shape[0], (0.25,) * shape[0])

    return split(n_train), split(n_test)


DATASETS.register("synthetic", Dataset(
    "synthetic", 10, (1, 16, 16), 640, "toy data for tests: class templates plus noise (never a fallback)",
    "It is generated; nothing to get.", lambda root, cache, given: _sourced(synthetic(), "synthetic (generated)"),
))
