"""The run queue: the experiments waiting to be launched, in the order they will be.

Spec order first; an experiment that runs again (a failure within ``max_retries``, an attempt
that never started) goes to the back.
The queue is derived from the state and rebuilt only when the state was reloaded (another
writer, such as ``pbtrun up`` adding experiments, changed it): between reloads each question
costs O(1), whatever the size of the sweep.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from pbtrun.state.records import RUNNABLE
from pbtrun.state.writer import StateWriter


class RunQueue:
    """Runnable experiment ids, in launch order, kept in step with ``writer``'s state."""

    def __init__(self, writer: StateWriter) -> None:
        self.writer = writer
        self.ids: deque[str] = deque()
        self.generation = -1  # the writer's generation the queue was built from

    def rebuild(self) -> None:
        """From the state (O(sweep): only after a reload)."""
        self.ids = deque(e.id for e in self.writer.sweep.runnable())
        self.generation = self.writer.generation

    def launchable(self) -> bool:
        """Whether anything waits to run; drops the entries at the front that no longer can."""
        if self.generation != self.writer.generation:
            self.rebuild()
        experiments = self.writer.sweep.experiments
        while self.ids:
            exp = experiments.get(self.ids[0])
            if exp is not None and exp.status in RUNNABLE and not exp.removed:
                return True
            self.ids.popleft()
        return False

    def pop(self) -> str:
        """The next to launch (call :meth:`launchable` first)."""
        return self.ids.popleft()

    def put_back(self, exp_ids: Iterable[str]) -> None:
        """Experiments taken but not launched after all, at the front again, in their order."""
        self.ids.extendleft(reversed(list(exp_ids)))

    def requeue(self, exp_id: str) -> None:
        """An experiment whose attempt ended and that runs again: at the back."""
        self.ids.append(exp_id)
