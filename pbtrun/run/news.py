"""What a batch system's backend reports of running attempts (:class:`pbtrun.backends.base.News`),
applied to the state: the job id ``sbatch`` gave, the node a job runs on. A job that was queued
until now starts running: its attempt's start moves to now, from which its ``timeout_min``
counts (a job queued for hours must not time out)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from pbtrun.backends.base import News
from pbtrun.state.records import RUNNING, Experiment, Sweep


def apply_news(sweep: Sweep, news: Iterable[News], host: str) -> list[Experiment]:
    """Record ``news`` in ``sweep`` (the scheduler's transaction); the experiments that started
    running. ``host``: the scheduler's own, which an attempt carries until a node is known."""
    started = []
    for item in news:
        exp = sweep.experiments.get(item.exp_id)
        if exp is None or exp.status != RUNNING or exp.last is None:
            continue
        last = exp.last
        new = last._replace(ref=item.ref or last.ref, host=item.node or last.host)
        if item.node and last.host == host:  # queued until now
            new = new._replace(started_at=time.time())
        if new != last:
            exp = exp.to(RUNNING, new)
            sweep.update(exp)
            if new.started_at != last.started_at:
                started.append(exp)
    return started
