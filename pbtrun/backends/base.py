"""The seam between the scheduler and what runs experiments: the few things every backend does.

The scheduler decides *what* runs and *when*; a backend decides *how* a process comes to exist
somewhere and how its end is learned (local processes today; Slurm and a command template
next). The scheduler knows backends only through :class:`Backend` and the value types here, and
opens one by name (:func:`pbtrun.backends.registry.open_backend`); whatever only one backend
needs (for the local one: its reapers, lingering process groups, becoming a child subreaper,
reaping orphans) stays inside that backend. ``tests/test_backend_contract.py`` states, on real
processes, what every backend must do: it is the interface's real definition.

An attempt's life, as a backend sees it:

1. :meth:`Backend.reserve` gives the reference the next launch will go by. The scheduler records
   it in the attempt, durably, before it launches anything, so that whoever resumes after a
   crash at any instant can find the attempt again.
2. :meth:`Backend.launch` starts attempts. Their starts are not announced (the local reaper
   would wake the scheduler once more per experiment): :meth:`Backend.signal` answers False for
   one that has not started yet, and :meth:`Backend.where` names the process once it has.
3. Ends come from :meth:`Backend.collect` as :data:`Ended` pairs, whose :class:`Outcome` holds the
   true return code, or says the attempt never started, or carries a typed fault
   (:class:`pbtrun.errors.BackendFault`) when the backend itself failed.
4. After a crash, :meth:`Backend.settle` tells what became of an attempt the state says is
   running: a handle to watch it on (adopted), its outcome (it ended meanwhile), or "never
   started" (and then it made sure it never will).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from pbtrun.errors import BackendFault
from pbtrun.state.records import Attempt, Experiment


class LaunchRequest(NamedTuple):
    """One attempt to start."""

    experiment: Experiment
    attempt: Attempt  # as recorded, with the reference :meth:`Backend.reserve` gave
    argv: Sequence[str]  # what to run: the experiment's argv with its placeholders filled
    env: Mapping[str, str]  # what the attempt's environment adds to pbtrun's own, which it inherits
    cwd: str  # where it runs


class Outcome(NamedTuple):
    """How an attempt ended; ``returncode`` None means unknowable (the attempt was lost)."""

    returncode: int | None
    ended_at: float
    pid: int | None = None
    fault: BackendFault | None = None  # the backend could not do its job (disk full, a killed reaper)
    started: bool = True  # False: the experiment never started, so it may simply run again
    started_at: float | None = None  # when it started, if it is known better than the attempt knows it
    # What the batch system says of the end beyond the exit status ("TIMEOUT", "NODE_FAIL"), if anything.
    end_state: str | None = None


class News(NamedTuple):
    """What the state should learn of a running attempt (a batch system's backend reports it;
    the local one has none): the reference it now goes by (Slurm: the job id ``sbatch`` gave),
    and where it runs (a node), None while it waits."""

    exp_id: str
    ref: str | None
    node: str | None


Ended = tuple[str, Outcome]  # an experiment's id, and how its running attempt ended
StopStep = tuple[float, int]  # when (time.monotonic()) a stop sends which signal


class Handle(Protocol):
    """A launched or adopted attempt, as its backend tracks it: the scheduler only hands it back
    to the backend. Never persisted."""


class Backend(Protocol):
    """What the scheduler asks of a backend. Every method is called from the scheduler's thread."""

    name: str  # as the spec names it: "local"
    signals: tuple[int, ...]  # process signals it must hear of: the scheduler relays them to collect
    # Its experiments belong to a cluster, not to the terminal: Ctrl-C leaves them running (unless
    # the user asks to cancel them), and --detach may leave once all is submitted.
    interrupt_detaches: bool

    def expect(self, runnable: int, max_parallel: int, settings: Mapping[str, Any] | None = None) -> None:
        """How much work is coming, said once before the scheduler starts any thread: a backend
        may get ready for it now (the local one starts a second reaper, side by side).
        ``settings``: the backend's own table of the spec, as the sweep recorded it ([slurm])."""

    def reserve(self) -> str | None:
        """The reference the next launch goes by, to be recorded in its attempt before it is
        launched (local: the address of the reaper that will start it). None if there is none
        to give: that launch then ends at once with a fault."""

    def launch(self, requests: Iterable[LaunchRequest]) -> list[Handle]:
        """Start these attempts (a backend may start each as it comes, or gather them); one
        handle per request, in order. A launch that cannot start still gets its handle: its end
        comes from :meth:`collect`, with a fault or the return code of a command that cannot run."""

    def signal(self, handle: Handle, sig: int) -> bool:
        """Send ``sig`` to the attempt (local: its process group); False if it has not started
        yet (try again shortly)."""

    def finish_stop(self, handle: Handle, steps: Sequence[StopStep]) -> None:
        """The attempt ended while pbtrun was stopping it, with these steps of the stop still to
        come: take them on whatever it left running, if anything (local: the rest of its process
        group), until nothing is left. Most backends have nothing left and do nothing."""

    def settle(self, experiment: Experiment, attempt: Attempt) -> Handle | Outcome:
        """What became of an attempt the state records as running when no scheduler watched it:
        a handle on it, adopted, if it still runs (its end comes from :meth:`collect`); its
        outcome if it ended; an outcome with ``started`` False if it never started, in which
        case this call has made sure it never will."""

    def where(self, handle: Handle) -> str | None:
        """How a person finds the running attempt ("pid 1234"); None while it is not known to
        have started."""

    def fds(self) -> tuple[int, ...]:
        """File descriptors that become readable when there is news for :meth:`collect`; the
        same for the backend's whole life."""

    def next_poll_at(self) -> float | None:
        """When (``time.monotonic()``; 0: at once) :meth:`collect` must be called even if none
        of its fds is readable, or None. While it returns a time the backend has work of its own
        under way (local: the rest of a stop), and the scheduler does not exit."""

    def news(self) -> list[News]:
        """What changed for running attempts since the last call (a job id given, a node
        found); the scheduler records it. Called after :meth:`collect`."""

    def collect(self, signals: Collection[int] = ()) -> list[Ended]:
        """The attempts that ended since the last call. Called after every wait of the
        scheduler, with those of :attr:`signals` that came meanwhile."""

    def close(self) -> None:
        """Let go. Running experiments keep running, and their ends are still recorded where
        :meth:`settle` finds them."""
