"""``pbtrun stop`` on a sweep whose jobs run in a cluster with no scheduler watching them (after
``up --detach``, or a Ctrl-C that detached): cancel them and record them interrupted, so that
``resume`` runs them again. A local sweep has nothing of the kind: its experiments are stopped
through the scheduler that runs them."""

from __future__ import annotations

import signal
import time

from pbtrun.state.paths import SweepPaths

CANCEL_WAIT_S = 60.0  # how long to wait for the cluster to report the cancelled jobs gone
POLL_S = 1.0  # how often to ask it meanwhile (one call for the whole sweep)


def cancel_unwatched(paths: SweepPaths) -> int | None:
    """Cancel what runs of the sweep at ``paths`` and record it; how many were recorded, or None
    for a sweep whose experiments are not a cluster's jobs."""
    from pbtrun.backends.base import Outcome
    from pbtrun.backends.registry import open_backend
    from pbtrun.run.outcomes import after_end
    from pbtrun.state import locks, store

    name = store.backend_of(paths)
    if name == "local":
        return None
    with locks.scheduler_lock(paths):  # no scheduler starts meanwhile (one that runs holds it: exit 3)
        sweep = store.load(paths)
        running = sweep.running()
        if not running:
            return 0
        backend = open_backend(name, paths)
        if not backend.interrupt_detaches:
            return None
        backend.expect(0, 1, {**sweep.backend_settings, "poll_s": POLL_S})
        ended: dict[str, Outcome] = {}
        watched = set()
        for exp in running:
            found = backend.settle(exp, exp.last)  # type: ignore[arg-type]
            if isinstance(found, Outcome):
                ended[exp.id] = found
            else:
                watched.add(exp.id)
                backend.signal(found, signal.SIGKILL)  # on Slurm: scancel
        deadline = time.monotonic() + CANCEL_WAIT_S
        while watched and time.monotonic() < deadline:
            time.sleep(POLL_S)
            for exp_id, outcome in backend.collect():
                ended[exp_id] = outcome
                watched.discard(exp_id)
        backend.close()
        with store.transaction(paths) as current:
            for exp_id, outcome in ended.items():
                exp = current.experiments.get(exp_id)
                if exp is not None and exp.last is not None:
                    current.update(after_end(exp, outcome, "stop"))
        return len(ended)
