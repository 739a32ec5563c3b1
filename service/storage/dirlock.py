"""The data directory's lock: one ``pageholder serve`` per data directory.

An exclusive ``flock`` on ``pageholder.lock`` in the data directory, held for as long as
the store is open (the kernel drops it when the process dies, however it dies). The
file holds the owner's pid, so that a second server refuses in one line that names it.
A read-only data directory needs no lock: nobody can write to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from pageholder.service.storage.errors import StoreError

LOCK_FILE = "pageholder.lock"


class DataDirLock:
    """An exclusive lock on one data directory; ``release()`` (or exit) drops it."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Lock ``data_dir`` (created if missing) or raise ``StoreError`` naming the pid of
        the process that holds it."""
        path = data_dir / LOCK_FILE
        if not os.access(data_dir, os.W_OK):
            return cls(None)  # read-only: no writer can share it
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"data dir {data_dir} is in use by another pageholder serve (pid {owner})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None
