"""Writing a file so that readers see the old content or the new, never a part; a full disk
or a read-only store is a user error that leaves no partial file behind."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from prunebench.errors import UserError

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` through `path.<pid>.tmp` and a rename (the pid keeps two processes
    that write the same shared file, e.g. a dataset cache, from racing on one temporary file)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise disk_error(path, e) from None


def disk_error(path: Path, e: OSError) -> Exception:
    """A full disk or a read-only folder as a UserError naming the file; other errors unchanged."""
    if e.errno in FULL:
        return UserError(f"no space left to write {path} ({e.strerror}). Free space on that disk and run the "
                         "same command again: finished runs are kept, and a started one resumes from its last "
                         "checkpoint.")
    if e.errno in READ_ONLY:
        return UserError(f"cannot write {path} ({e.strerror}): the store is read-only here. Cached results and "
                         "`bench report` work on a read-only store; to train, use a writable --store.")
    return e


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
