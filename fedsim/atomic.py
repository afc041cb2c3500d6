"""All-or-nothing file writes: a crash mid-write leaves the previous file intact, and a full
disk is one :class:`DiskFull` line naming the path."""

from __future__ import annotations

import errno
import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


# Below this much free space, a failed write is taken to be the full disk (torch.save reports
# it as a RuntimeError "file write failed", without the errno).
FULL_BYTES = 16 * 2 ** 20


class DiskFull(OSError):
    """A write failed for want of space; the message is one line naming the path."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(errno.ENOSPC, f"no space left on device at {os.fsdecode(path)}")

    def __str__(self) -> str:
        return str(self.strerror)


def as_disk_full(error: BaseException, path: str | os.PathLike[str]) -> DiskFull | None:
    """:class:`DiskFull` for ``path`` if ``error`` came from a full disk (or quota), else None."""
    if isinstance(error, DiskFull):
        return error
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(path)
    if isinstance(error, RuntimeError) and "write" in str(error).lower():
        try:
            if shutil.disk_usage(Path(path).parent).free < FULL_BYTES:
                return DiskFull(path)
        except OSError:
            pass
    return None


@functools.cache
def new_file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file: 0o666 less the process umask.

    Read once (``os.umask`` can only be read by setting it, which is not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def plain_write_mode(path: str | os.PathLike[str]) -> int:
    """The permissions a plain write to ``path`` leaves it with: those of the file it replaces,
    or :func:`new_file_mode` for a new one. Give them to a temp file that will replace
    ``path`` (``mkstemp`` creates it 0o600, which would leave a run's summary, checkpoints or
    exported encoder unreadable to the rest of a shared group)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return new_file_mode()


def atomic_write_bytes(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Write via a temp file in the same folder, fsync, then ``os.replace``; the previous file
    stays as it was when anything fails (:class:`DiskFull` when the disk is full).

    The file gets the permissions a plain write would give it (:func:`plain_write_mode`)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise (as_disk_full(err, path) or err) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), plain_write_mode(path))
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        full = as_disk_full(err, path)
        if full is not None:
            raise full from err
        raise
