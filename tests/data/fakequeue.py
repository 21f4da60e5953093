#!/usr/bin/env python3
"""A tiny job queue for the template backend's tests: the tests' environment, not the thing under test.

    fakequeue.py submit -- CMD...   start CMD detached (its own session, output to a file);
                                    prints "Submitted job fq-<n>"
    fakequeue.py status ID          prints "ID PENDING", "ID RUNNING", "ID DONE" or "ID FAILED"
    fakequeue.py cancel ID          SIGTERM to the job's process group (a job still held never starts)

State lives in the directory $FAKEQUEUE_DIR: one directory per job (``fq-<n>/``) holding its
output, ``pid`` once it started and ``exit`` (its return code) once it ended. Every call is
appended to ``calls.log``, so tests can count submissions and cancels. While a file ``hold``
exists in $FAKEQUEUE_DIR, new jobs are held (queued, PENDING) until their own ``held`` file is
deleted; while a file ``down`` exists, ``status`` fails, as a queue whose controller is down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.02


def state() -> Path:
    return Path(os.environ["FAKEQUEUE_DIR"])


def log_call(*words: str) -> None:
    fd = os.open(state() / "calls.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (" ".join(words) + "\n").encode())
    finally:
        os.close(fd)


def submit(argv: list[str]) -> int:
    n = 1
    while True:  # the first free number, taken atomically (mkdir fails if it exists)
        job = state() / f"fq-{n}"
        try:
            job.mkdir()
            break
        except FileExistsError:
            n += 1
    if (state() / "hold").exists():
        (job / "held").touch()
    log_call("submit", job.name, *argv)
    with open(job / "output", "wb") as out:
        subprocess.Popen(
            [sys.executable, __file__, "_supervise", job.name, "--", *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    print(f"Submitted job {job.name}")
    return 0


def supervise(name: str, argv: list[str]) -> int:
    """Run the job (once no longer held) in a process group of its own, and record its end."""
    job = state() / name
    while (job / "held").exists() and not (job / "cancelled").exists():
        time.sleep(POLL_S)
    if (job / "cancelled").exists():
        write(job / "exit", "-15")
        return 0
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    write(job / "pid", str(child.pid))
    if (job / "cancelled").exists():  # cancelled while it was being started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
    returncode = child.wait()
    write(job / "exit", str(returncode))
    return 0


def write(path: Path, text: str) -> None:
    """Whole or not at all: status and cancel read these files while they are written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def status(name: str) -> int:
    if (state() / "down").exists():
        print("fakequeue: cannot reach the queue", file=sys.stderr)
        return 1
    job = state() / name
    if not job.is_dir():
        print(f"fakequeue: no job {name}", file=sys.stderr)
        return 1
    if (job / "exit").exists():
        said = "DONE" if (job / "exit").read_text() == "0" else "FAILED"
    else:
        said = "RUNNING" if (job / "pid").exists() else "PENDING"
    print(f"{name} {said}")
    return 0


def cancel(name: str) -> int:
    job = state() / name
    if not job.is_dir():
        print(f"fakequeue: no job {name}", file=sys.stderr)
        return 1
    (job / "cancelled").touch()
    if (job / "pid").exists():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int((job / "pid").read_text()), signal.SIGTERM)
    print(f"cancelled {name}")
    return 0


def main(args: list[str]) -> int:
    if args[:1] == ["submit"] and args[1:2] == ["--"] and len(args) > 2:
        return submit(args[2:])
    if args[:1] == ["_supervise"] and len(args) > 3:
        return supervise(args[1], args[3:])
    if args[:1] in (["status"], ["cancel"]) and len(args) == 2:
        log_call(*args)
        return status(args[1]) if args[0] == "status" else cancel(args[1])
    print("usage: fakequeue.py submit -- CMD... | status ID | cancel ID", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
