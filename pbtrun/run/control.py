"""How a person reaches a running scheduler: stop signals, and the control FIFO.

Ctrl-C and SIGTERM stop the sweep; ``pbtrun stop`` writes ``stop`` or ``stop-now`` into the
sweep's control FIFO, and ``pbtrun up`` writes ``wake`` after adding experiments. Both arrive as
readable file descriptors on the scheduler's selector, so the loop waits for them as for any
other event, and no work is done in a signal handler.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
from collections.abc import Collection, Iterator

from pbtrun.state.control import open_control
from pbtrun.state.paths import SweepPaths

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signal_pipe(selector: selectors.BaseSelector, signals: Collection[int], data: object) -> Iterator[None]:
    """While open, each of ``signals`` arriving writes its number on a pipe, registered on
    ``selector`` with ``data``; the previous handlers come back on exit."""
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous = {s: signal.signal(s, lambda *_: None) for s in signals}
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    selector.register(read_fd, selectors.EVENT_READ, data)
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(read_fd)
        os.close(write_fd)


def read_signals(fd: int) -> bytes:
    """The numbers of the signals that came, in order (those waiting on the pipe)."""
    with contextlib.suppress(BlockingIOError):
        return os.read(fd, 64)
    return b""


@contextlib.contextmanager
def control_fifo(selector: selectors.BaseSelector, paths: SweepPaths, data: object) -> Iterator[None]:
    """While open, the sweep's control FIFO is registered on ``selector`` with ``data``."""
    fd = open_control(paths)
    selector.register(fd, selectors.EVENT_READ, data)
    try:
        yield
    finally:
        os.close(fd)


def read_commands(fd: int) -> list[str]:
    """The commands waiting in the control FIFO: "stop", "stop-now", "wake"."""
    with contextlib.suppress(BlockingIOError):
        return os.read(fd, 4096).decode(errors="replace").split()
    return []
