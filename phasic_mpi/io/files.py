"""Files that are never clobbered: exclusive temporary files and the run lock.

Every file the package writes whole (run-file skeletons, study files,
checkpoints) is first written to a temporary file that this module creates
with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under an unpredictable name in the
target's own directory, then fsynced and renamed over the target. A planted
symlink or file at a temporary name is never followed, truncated or renamed
into place: creation fails (and is retried under another name) instead.

:class:`RunLock` is an exclusive ``flock`` on ``<path>.lock`` that a run holds
for its whole duration, so a second run on the same output path (and so the
same checkpoint) fails at once with a clear message instead of racing the
first. Nothing here uses MPI.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import socket
from typing import Any, BinaryIO

__all__ = ["RunLock", "RunLockError", "commit_temp", "discard_temp", "exclusive_temp",
           "locking_disabled", "replace_synced"]

_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def exclusive_temp(path: str | os.PathLike, attempts: int = 16) -> tuple[BinaryIO, str]:
    """Create a fresh temporary file next to ``path``; return ``(file, name)``.

    The name is ``<path>.tmp.<pid>.<16 random hex digits>``; the file is
    created exclusively (an existing file or symlink of that name is an error,
    never opened), so the caller owns what it writes.

    Parameters
    ----------
    path : str or path-like
        The file the temporary file will replace (:func:`commit_temp`).
    attempts : int
        Names to try before giving up (a collision needs a planted file with
        the random suffix, so more than one is already suspicious).

    Returns
    -------
    (file object, str)
        The open binary file (read/write, position 0) and its name.

    Raises
    ------
    OSError
        The directory is missing or not writable, or every name was taken.
    """
    path = os.fspath(path)
    for _ in range(attempts):
        tmp = f"{path}.tmp.{os.getpid()}.{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, _TEMP_FLAGS, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create a temporary file for {path!r}: "
                                     f"{exc.strerror}", tmp) from None
        return os.fdopen(fd, "r+b"), tmp
    raise FileExistsError(errno.EEXIST, f"cannot create a temporary file for {path!r}: "
                                        f"{attempts} random names were all taken", path)


def commit_temp(fh: BinaryIO, tmp: str, path: str | os.PathLike) -> None:
    """Flush, fsync and close ``fh``, then rename ``tmp`` over ``path`` atomically.

    ``os.replace`` replaces a symlink at ``path`` itself, never its target.
    The directory is fsynced afterwards (best effort: some file systems refuse).
    """
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
    replace_synced(tmp, path)


def replace_synced(tmp: str, path: str | os.PathLike) -> None:
    """``os.replace(tmp, path)``, then fsync the directory (best effort) so that
    the new name survives a crash; ``tmp``'s bytes must already be synced."""
    path = os.fspath(path)
    os.replace(tmp, path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def discard_temp(fh: BinaryIO | None, tmp: str) -> None:
    """Close ``fh`` and remove ``tmp`` if it is still there (after a failure)."""
    if fh is not None and not fh.closed:
        try:
            fh.close()
        except OSError:  # e.g. a full disk on the final flush: the file goes anyway
            pass
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def locking_disabled(environ: Any = None) -> bool:
    """True where the user turned HDF5's file locking off (``HDF5_USE_FILE_LOCKING=FALSE``).

    That setting says that locks do not work on this file system; the run
    lock then stands aside too (documented in ``docs/output.md``).
    """
    env = os.environ if environ is None else environ
    return env.get("HDF5_USE_FILE_LOCKING", "").strip().upper() == "FALSE"


class RunLockError(RuntimeError):
    """Another process holds the output's lock, or the lock cannot be taken."""


class RunLock:
    """Exclusive lock on an output path for the duration of a run.

    ``flock`` on ``<path>.lock`` (opened with ``O_NOFOLLOW``: a symlink there is
    refused). The lock dies with its process, so a run killed by ``kill -9``
    leaves at most an unlocked file that the next run takes over. The file is
    removed on release; after locking, the inode is compared with the one at
    the name so that a lock on a file just removed by its previous holder is
    never mistaken for the lock.

    Parameters
    ----------
    path : str or path-like
        The output file (the lock is ``<path>.lock``).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.lock_path = self.path + ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunLockError` at once (never waits)."""
        if self._fd is not None:
            raise RunLockError(f"{self.lock_path}: already held by this object")
        for _ in range(100):  # each retry means a holder released the lock meanwhile
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise RunLockError(
                        f"{self.path}: another run is writing this output (lock "
                        f"{self.lock_path} is held{self._holder()}); wait for it to finish "
                        "or choose another output path") from None
                raise RunLockError(
                    f"{self.path}: cannot lock {self.lock_path} ({exc.strerror}); on a file "
                    "system without locks set HDF5_USE_FILE_LOCKING=FALSE and make sure "
                    "only one run writes this path") from None
            if self._same_file(fd):
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
                self._fd = fd
                return
            os.close(fd)
        raise RunLockError(f"{self.lock_path}: the lock file keeps being replaced")

    def _open(self) -> int:
        try:
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                           0o666)
        except OSError as exc:
            why = ("it is a symlink" if exc.errno == errno.ELOOP else exc.strerror)
            raise RunLockError(f"{self.path}: cannot open the lock file {self.lock_path} "
                               f"({why})") from None

    def _same_file(self, fd: int) -> bool:
        try:
            named = os.stat(self.lock_path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def _holder(self) -> str:
        try:
            with open(self.lock_path, encoding="utf-8", errors="replace") as fh:
                text = fh.read(200).strip()
        except OSError:
            return ""
        return f" by {text}" if text else ""

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._same_file(fd):
                os.unlink(self.lock_path)
        finally:
            os.close(fd)  # closing releases the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
