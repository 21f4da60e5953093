"""A view's output, guarded (:class:`Output`): a terminal closed or a pipe's reader gone while the
sweep runs silences the view, and never stops the sweep."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO


class Output:
    """The terminal or pipe a view writes to, which may go away while the sweep runs: the reader
    of a pipe quit (``pbtrun up | head -1``), the terminal was closed. The first write or flush
    that fails (EPIPE, EIO, any ``OSError``) ends the output for good, silently: nobody is left
    to read it, and the sweep must not die of it (its experiments would go unlaunched). The
    scheduler goes on to the end and the exit code keeps its meaning.

    The stream's descriptor is pointed at ``/dev/null`` then, so that what is still buffered in
    it is dropped there rather than failing again when the interpreter flushes it at exit (which
    would print a traceback and turn the exit code into 120). Everything else (``isatty``,
    ``fileno``, ``encoding``) is the stream's own.
    """

    def __init__(self, stream: IO[str], on_break: Callable[[], None] | None = None) -> None:
        self.stream = stream
        self.broken = False
        self.on_break = on_break

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self.stream.write(text)
            except OSError:
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except OSError:
                self._break()

    def _break(self) -> None:
        self.broken = True
        try:
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no descriptor (a StringIO), or closed
            pass
        if self.on_break is not None:
            self.on_break()

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


def guarded(stream: IO[str], on_break: Callable[[], None] | None = None) -> Output:
    """``stream`` as an :class:`Output` (itself if it is one already)."""
    if isinstance(stream, Output):
        if on_break is not None:
            previous = stream.on_break
            stream.on_break = on_break if previous is None else lambda: (previous(), on_break())
        return stream
    return Output(stream, on_break)
