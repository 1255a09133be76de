"""One writer per output folder: an advisory ``flock`` on ``<folder>/.safelrm.lock``.

The kernel releases the lock when its holder exits, however it exits (``kill -9`` included), so a
lock left by a dead process is never in the way: the next writer takes it. The holder's pid is
written inside the file only for the message a refused writer gets.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from safelrm.errors import SafelrmError

LOCK_NAME = ".safelrm.lock"


class FolderLock:
    """``with FolderLock(folder):`` holds the folder for this process, or raises SafelrmError.

    Re-entrant within one process (a pipeline stage that writes into its own run folder)."""

    _held: dict[str, int] = {}

    def __init__(self, folder: str | Path, what: str = "output folder", name: str = "") -> None:
        """``name`` gives a part of the folder its own lock (a shard's file)."""
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / (f".safelrm-{name}.lock" if name else LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        if self.folder.exists() and not self.folder.is_dir():
            raise SafelrmError(f"{self.folder}: exists and is not a folder (--out names a folder)")
        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        if key in self._held:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SafelrmError(
                f"{self.folder}: {self.what} is in use by another safelrm process (pid {holder}); "
                "wait for it to finish or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        self._held[key] = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self._held.pop(str(self.path.resolve()), None)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self, tp: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
