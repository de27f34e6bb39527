"""Where things live: pure functions of the roots they are given (nothing here writes)."""

from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "PRUNEBENCH_STORE"
DATA_ENV = "PRUNEBENCH_DATA"
CACHE_ENV = "PRUNEBENCH_CACHE"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def cache_home() -> Path:
    """The user's cache folder for prunebench (XDG), overridable with $PRUNEBENCH_CACHE."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "prunebench"


def default_store() -> Path:
    return Path(os.environ[STORE_ENV]).expanduser() if os.environ.get(STORE_ENV) else cache_home() / "store"


def default_data_root() -> Path:
    return Path(os.environ[DATA_ENV]).expanduser() if os.environ.get(DATA_ENV) else cache_home() / "data"


def runs_dir(store: Path) -> Path:
    return store / "runs"


def run_dir(store: Path, run_id: str) -> Path:
    return runs_dir(store) / run_id


def is_run_id(text: object) -> bool:
    """Whether `text` has a run id's form (64 lowercase hex digits: a RunSpec's sha256), so that
    an id read from a file names a folder of the store and nothing outside it."""
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def computations_dir(store: Path) -> Path:
    """Where each computation records the run that trained it (`<id>/trained.json`) and holds
    the lock under which it trains."""
    return store / "computations"


def db_path(store: Path) -> Path:
    return store / "index.sqlite"


def tensor_cache(cache: Path, key: str) -> Path:
    """A decoded dataset split, stored as uint8 tensors."""
    return cache / "tensors" / f"{key}.pt"
