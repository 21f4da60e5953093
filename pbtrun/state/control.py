"""The control channel of a running scheduler: a FIFO in the sweep directory, ``.control``,
on which other pbtrun commands send it one-line messages (``pbtrun up`` adding experiments
to a running sweep wakes it; ``pbtrun stop`` asks it to stop). The scheduler reads it in its
event loop like any other descriptor, so a message costs it no polling.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pbtrun.state.paths import SweepPaths


def open_control(paths: SweepPaths) -> int:
    """The scheduler's end of its control FIFO (read-write so it never sees end-of-file)."""
    try:
        os.mkfifo(paths.control, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(os.stat(paths.control).st_mode):
            os.unlink(paths.control)
            os.mkfifo(paths.control, 0o600)
    return os.open(paths.control, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def notify(paths: SweepPaths, message: str) -> bool:
    """Send one line to the running scheduler; False if no scheduler is listening."""
    try:
        fd = os.open(paths.control, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    try:
        os.write(fd, (message + "\n").encode())
    finally:
        os.close(fd)
    return True
