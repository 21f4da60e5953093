"""A forked copy of this process that makes some bytes while this one does other work.

``status --json`` at 100,000 experiments is CPU work (building and encoding each item) and
pbtrun's machines have more than one core: a helper made by ``fork`` already holds everything
loaded and encodes half of the items. Its bytes come back through a pipe only once they are
complete, so a helper that fails or is killed leaves nothing half-written: ``result`` is then
None and the caller does that part itself. Ctrl-C or a kill ends the helper at once, as it
ends its parent, and it never returns into the parent's code or flushes the parent's buffers.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

_STOPS = {signal.SIGINT, signal.SIGTERM}


class ForkedWork:
    """A helper at work: its pid, and the pipe its bytes come back through."""

    __slots__ = ("fd", "pid")

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.fd = pid, fd

    @classmethod
    def start(cls, produce: Callable[[], bytes]) -> ForkedWork | None:
        """A helper computing ``produce()``, or None where there is no second core or no fork."""
        cpus = getattr(os, "sched_getaffinity", None)
        if not hasattr(os, "fork") or cpus is None or len(cpus(0)) < 2:
            return None
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)  # none may reach the child's Python
        try:
            try:
                read_fd, write_fd = os.pipe()
            except OSError:
                return None
            try:
                pid = os.fork()
            except OSError:  # out of memory or processes: the caller does all the work
                os.close(read_fd)
                os.close(write_fd)
                return None
            if pid == 0:
                _helper(produce, read_fd, write_fd, old_mask)
            os.close(write_fd)
            return cls(pid, read_fd)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def result(self) -> bytes | None:
        """The helper's bytes, or None if it did not finish them."""
        pieces = []
        try:
            while piece := os.read(self.fd, 1 << 20):
                pieces.append(piece)
        finally:
            os.close(self.fd)
            _, status = os.waitpid(self.pid, 0)
        return b"".join(pieces) if os.waitstatus_to_exitcode(status) == 0 else None

    def cancel(self) -> None:
        """The caller no longer wants the bytes (its output was closed, or Ctrl-C): end the
        helper now rather than let it finish work nobody reads, and reap it."""
        os.close(self.fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def _helper(produce: Callable[[], bytes], read_fd: int, write_fd: int, old_mask: set[int]) -> None:
    code = 1
    try:
        for signum in _STOPS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(read_fd)
        data = memoryview(produce())
        while data:
            data = data[os.write(write_fd, data) :]
        code = 0
    finally:
        os._exit(code)  # never back into the parent's code, whatever happened
