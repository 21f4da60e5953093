"""Writing a sweep's files so that a crash leaves the old content or the new, never a mix,
and what a failed write or a link in the sweep directory means, said for a person.

Guarantees (for :func:`write_atomic`): after a crash at any instant the file is either the old
or the new version, never a torn one, so readers need no lock; if the write fails, the old file
is intact and no temporary file is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pbtrun.errors import DiskFull, StateError

if TYPE_CHECKING:
    from pbtrun.state.paths import SweepPaths


def write_atomic(path: Path, data: bytes | Iterable[bytes], durable: bool = True) -> None:
    """Replace ``path`` with ``data`` (bytes, or chunks of them) so that a crash leaves the old
    or the new content, never a mix: a temporary file in the same directory (``os.replace`` is
    atomic only within one file system), ``fsync``, rename, ``fsync`` of the directory. Without
    ``durable``, no fsync: atomic for every process, but a power cut may keep the old content
    (for files that only inform, such as the spec copy and the scheduler's holder record).

    If anything fails the temporary file is removed, so a full disk leaves the old file intact.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            for chunk in [data] if isinstance(data, bytes) else data:
                write_all(fd, chunk)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write all of ``data`` at the descriptor's position, or at ``offset`` (``pwrite``): one
    ``write`` may write less than it was given."""
    view = memoryview(data)
    while view:
        done = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[done:]
        if offset is not None:
            offset += done


def fsync_dir(path: Path) -> None:
    """Make a rename or a new name in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def keep_backup(paths: SweepPaths) -> None:
    """Hard-link the current state as the backup: no copy, and atomic via a temporary name.
    Nothing to do if the backup already is the current state (a save failed after linking it:
    renaming one link onto another of the same file would do nothing and leave the temporary)."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(paths.state, paths.backup):
            return
    tmp = paths.backup.with_name(f".{paths.backup.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.link(paths.state, tmp)
    try:
        os.replace(tmp, paths.backup)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_own(path: Path) -> bytes:
    """The bytes of a file of pbtrun's own: a symbolic link in its place is refused (ELOOP)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def write_error(path: Path, exc: OSError) -> StateError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(
            f"{path}: the disk is full ({exc.strerror}). The previous state is intact and every end "
            "is kept (in the journal's reserve and in each log's exit record); free space, then resume "
            "the sweep."
        )
    if exc.errno == errno.ELOOP:
        return link_refused(path)
    return StateError(
        f"{path}: cannot write the state: {exc.strerror or exc}. The previous state is intact; "
        "free space or fix permissions, then resume the sweep."
    )


def link_refused(path: Path) -> StateError:
    return StateError(
        f"{path} is a symbolic link: pbtrun reads and writes only files of its own in a sweep "
        "directory and never follows a link there. Remove the link, then resume the sweep."
    )
