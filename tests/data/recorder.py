"""A test experiment: records start and end (name, pid, GPUs, time) to a shared JSONL file.

Usage: recorder.py [--sleep=S] [--exit=N] [--fail_first=N] [--signal=NAME] [--record=FILE] [--k=v ...]
(--fail_first=N: exit N on attempt 1 only, for retries.)
Each line is appended with O_APPEND in one write, so concurrent experiments never interleave.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def record(path: str, event: str, **extra: object) -> None:
    line = {
        "event": event,
        "name": os.environ.get("PBTRUN_EXPERIMENT"),
        "attempt": os.environ.get("PBTRUN_ATTEMPT"),
        "pid": os.getpid(),
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "t": time.time(),
        **extra,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def die_by(path: str, sig: int) -> None:
    """On SIGINT/SIGTERM: record the end, then die by that signal (the true return code is -sig)."""
    record(path, "end", returncode=-sig, stopped=True)
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


def main() -> int:
    opts = dict(arg[2:].split("=", 1) for arg in sys.argv[1:] if arg.startswith("--") and "=" in arg)
    path = opts.get("record", "record.jsonl")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, _f: die_by(path, s))
    record(path, "start", argv=sys.argv[1:])
    time.sleep(float(opts.get("sleep", "0")))
    # From here on a stop signal must not land between the end record and the exit: Python's
    # finalization restores SIG_DFL, so a SIGINT arriving after the record would kill the process
    # with a return code other than the one recorded. Block them; the exit below is immediate.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    if "signal" in opts:
        sig = getattr(signal, opts["signal"])
        record(path, "end", returncode=-sig)
        if sig in (signal.SIGINT, signal.SIGTERM):  # the others cannot be caught or have no handler
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    code = int(opts.get("exit", "0"))
    if os.environ.get("PBTRUN_ATTEMPT") == "1" and "fail_first" in opts:
        code = int(opts["fail_first"])
    record(path, "end", returncode=code)
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
