"""What the backends of a queue (Slurm, a command template) share: their jobs are watched by
polling, not by file descriptors, their news (job ids, nodes) is handed to the scheduler, and
each submission is written down, durably, before the next one goes out."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from pbtrun.backends import logrecords
from pbtrun.backends.base import Ended, News, Outcome, StopStep
from pbtrun.backends.fromlog import outcome_of

SUBMITTED = "submitted.jsonl"  # one line per submission, in the backend's directory of the sweep


class QueuedBackend:
    """The polling half of a queue's backend: subclasses keep ``handles`` (by experiment id),
    ``ended`` (outcomes known before the next poll), ``news_`` and ``next_poll``."""

    signals: tuple[int, ...] = ()
    interrupt_detaches = True  # the jobs belong to the cluster, not to this terminal

    def __init__(self) -> None:
        self.handles: dict[str, Any] = {}
        self.ended: list[Ended] = []
        self.news_: list[News] = []
        self.next_poll = 0.0

    def fds(self) -> tuple[int, ...]:
        return ()

    def next_poll_at(self) -> float | None:
        if self.ended:
            return 0.0
        return self.next_poll if self.handles else None

    def news(self) -> list[News]:
        news, self.news_ = self.news_, []
        return news

    def finish_stop(self, handle: Any, steps: Sequence[StopStep]) -> None:
        return None  # a job leaves nothing of its own behind on this machine


def ended_by_log(log: str) -> Outcome | None:
    """How an attempt ended, where its log says so (the job's exit record, or resume's
    abandonment: it never started); None while it does not."""
    found = logrecords.read_records(log)
    if found is None or found[0] is None:
        return None
    if found[0].get("abandoned"):
        return Outcome(None, time.time(), started=False)
    return outcome_of(found[0], found[1]) or Outcome(None, time.time())


def record_submission(directory: str, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the submissions file and make it durable: after a crash, resume finds
    which job an attempt went out as there."""
    fd = os.open(os.path.join(directory, SUBMITTED), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
