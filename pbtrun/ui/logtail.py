"""The end of an experiment's log, as the views show it: the live view's last line of each
running experiment, the summary's tail of each failed one, ``logs --failed``.

Only the end of a log is read, however large the log is, and what is shown is cleaned for a
terminal: pbtrun's own header left out, escape codes removed, a carriage return ending a line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO

from pbtrun.backends.logrecords import LOG_HEADER_PREFIXES

TAIL_BYTES_PER_LINE = 2048
_HEADER_LINE_MAX = 1 << 20  # a header line longer than this is no header of pbtrun's
_CONTROL = re.compile(  # sequences, then single controls: C0 (tab and newline are dealt with), DEL and C1
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` non-blank lines an experiment wrote to its log, reading only its end.

    A days-long run's log can be gigabytes; only its end matters here, so at most
    ``TAIL_BYTES_PER_LINE * count`` bytes are read. pbtrun's own header at the top of the log
    (its exit and pid records, ``# pbtrun:``, ``# cwd:``, ``# gpus:``, ``# argv:``) is left out: for a run that printed
    little, it would fill the tail and hide the one line that says what went wrong. A carriage
    return (a progress bar redrawing its line) ends a line too, and terminal escape codes are
    removed so a training script's colours cannot garble the view. Leading whitespace is kept.
    A missing or unreadable file has no lines.
    """
    limit = TAIL_BYTES_PER_LINE * max(count, 1)
    try:
        with open(path, "rb") as f:
            skip = _header_end(f)
            size = f.seek(0, os.SEEK_END)
            at = max(skip, size - limit)
            whole = at == skip  # the read begins at the start of a line
            if not whole:
                f.seek(at - 1)
                whole = f.read(1) in (b"\n", b"\r")
            f.seek(at)
            data = f.read(limit)
    except OSError:
        return []
    pieces = re.split(r"[\r\n]", data.decode(errors="replace"))
    if not whole:
        pieces = pieces[1:]  # the end of a longer line
    # Only the right side is stripped: the indentation of a traceback's lines is what makes it readable.
    cleaned = (_CONTROL.sub("", piece.replace("\t", " ")).rstrip() for piece in pieces)
    lines = [line for line in cleaned if line.strip()]
    return lines[-count:] if count else []


def _header_end(f: IO[bytes]) -> int:
    """Where pbtrun's header ends in a log: after its first lines if they are the header's,
    each with its prefix in order, else 0. The program's own lines starting with ``#`` stay."""
    f.seek(0)
    end = 0
    for prefix in LOG_HEADER_PREFIXES:
        line = f.readline(_HEADER_LINE_MAX)
        if not (line.startswith(prefix) and line.endswith(b"\n")):
            return 0
        end += len(line)
    return end
