"""The records that open every attempt log, whatever backend ran the attempt: who runs it and
how it ended, in two fixed-width lines filled in place (no new file, no new disk space: they are
written even on a full disk), then a header for people. The reaper writes them; the scheduler,
``status``, ``logs`` and resume read them::

    # pbtrun exit: {"ended_at": 1796350085.8, "pid": 2825, "returncode": 0}
    # pbtrun pid: {"address": "pbtrun-2801-5f0c9a1e", "at": 1796350085.7, "pid": 2825, "reaper": 2801, "start": 3456789}
    # pbtrun: 00_w, attempt 1, started 2026-12-04 02:14:57 on gpu-host
    # cwd: /home/me/project
    # gpus: 0
    # argv: /home/me/venv/bin/python train.py --lr=0.001

The log is also the attempt's launch claim: created exclusively (``O_EXCL``) by whoever starts
the attempt, or by resume to abandon it (:func:`abandon`), so exactly one of them wins.
"""

from __future__ import annotations

import errno
import json
import os
import time
from typing import Any

# The records at the top of every log: a prefix, a payload padded with spaces, a newline.
EXIT_PREFIX = b"# pbtrun exit: "
EXIT_WIDTH = 120
PID_PREFIX = b"# pbtrun pid: "
PID_WIDTH = 160
PID_OFFSET = len(EXIT_PREFIX) + EXIT_WIDTH + 1
RECORDS_BYTES = PID_OFFSET + len(PID_PREFIX) + PID_WIDTH + 1
NONE_YET = b"-"
HEADER_TIME = "%Y-%m-%d %H:%M:%S"  # the start time in the header's first line
# Every log's first lines, in this order: the records, then the header local.py composes.
LOG_HEADER_PREFIXES = (EXIT_PREFIX, PID_PREFIX, b"# pbtrun: ", b"# cwd: ", b"# gpus: ", b"# argv: ")


def records(exit_payload: bytes = NONE_YET, pid_payload: bytes = NONE_YET) -> bytes:
    """The two fixed-width records that open every log."""
    return (
        EXIT_PREFIX
        + exit_payload.ljust(EXIT_WIDTH)[:EXIT_WIDTH]
        + b"\n"
        + PID_PREFIX
        + pid_payload.ljust(PID_WIDTH)[:PID_WIDTH]
        + b"\n"
    )


def read_records(log: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None] | None:
    """The exit and pid records of a log: each a dict, or None while not written (or torn, as
    seen by a reader racing the writer: the JSON is then incomplete). None if there is no log."""
    try:
        with open(log, "rb") as f:
            head = f.read(RECORDS_BYTES)
    except FileNotFoundError:
        return None
    except OSError:
        return (None, None)
    return _payload(head, 0, EXIT_PREFIX, EXIT_WIDTH), _payload(head, PID_OFFSET, PID_PREFIX, PID_WIDTH)


def is_log(log: str) -> bool:
    """Whether the file at ``log`` begins as every attempt log does (a reaper's claim, at least)."""
    try:
        with open(log, "rb") as f:
            return f.read(len(EXIT_PREFIX)) == EXIT_PREFIX
    except OSError:
        return False


def _payload(head: bytes, offset: int, prefix: bytes, width: int) -> dict[str, Any] | None:
    start = offset + len(prefix)
    if head[offset:start] != prefix or len(head) < start + width:
        return None
    try:
        value = json.loads(head[start : start + width])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def abandon(log: str) -> bool:
    """Claim an attempt for resume, as never started: create its log, with its exit record
    saying so, atomically and exclusively (``link(2)`` fails if the log exists). False if the
    reaper claimed it first."""
    record = json.dumps({"abandoned": True, "at": time.time()}).encode()
    note = b"# pbtrun: never started: the scheduler that launched it was gone, and resume abandoned it\n"
    tmp = f"{os.path.dirname(log)}/.{os.path.basename(log)}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, records(record) + note)
    finally:
        os.close(fd)
    try:
        os.link(tmp, log)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def write_exit(log: str, returncode: int, ended_at: float, pid: int | None) -> None:
    """Fill a log's exit record, as its reaper would have (for an orphan whose reaper died)."""
    fd = os.open(log, os.O_WRONLY | os.O_CLOEXEC)
    try:
        fill(fd, len(EXIT_PREFIX), EXIT_WIDTH, {"returncode": returncode, "ended_at": ended_at, "pid": pid})
    finally:
        os.close(fd)


def fill(fd: int, offset: int, width: int, value: dict[str, Any]) -> None:
    """Write a record's payload in place: bytes that exist already, so no disk space is needed."""
    data = json.dumps(value, sort_keys=True).encode()
    if len(data) > width:
        raise OSError(errno.EOVERFLOW, f"record too long: {data!r}")
    os.pwrite(fd, data.ljust(width), offset)
