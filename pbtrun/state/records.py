"""The sweep's state as records: the sweep, its experiments and their attempts, the statuses
and their legal transitions, and how an attempt ended.

An experiment's definition (what it runs) is not declared here: the record holds the spec
layer's ``ExperimentSpec`` whole and adds its history, so the two never drift apart.

Pure data: no file I/O, no locks, no processes (``codec.py`` gives the records their JSON shape,
``store.py`` does the I/O, the backends run things).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # annotations only: the codec, which builds definitions, loads the model
    from pbtrun.spec.model import ExperimentSpec


class Status(StrEnum):
    """Where an experiment stands. The state's JSON holds the value (``"pending"``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


# The one definition of "runnable": what a scheduler launches (a failed experiment only when
# asked to retry it). See also Experiment.runnable, which leaves out removed experiments.
RUNNABLE = frozenset({Status.PENDING, Status.INTERRUPTED})


class AttemptOutcome(StrEnum):
    """How an attempt ended (``Attempt.outcome``; None while it runs)."""

    EXITED = "exited"  # the process ended by itself; returncode tells how (negative: a signal)
    TIMED_OUT = "timed_out"  # pbtrun stopped it because it ran longer than timeout_min; counts as failed
    STOPPED = "stopped"  # pbtrun stopped it (Ctrl-C, SIGTERM); it runs again on resume
    LOST = "lost"  # it was running but its fate is unknowable (the machine rebooted)
    NOT_STARTED = "not_started"  # recorded as launching, but its process never started (and never will)


class Seen(StrEnum):
    """What an attempt the state records as running really is, looked at from its log's records
    and the process table while no scheduler runs (``backends.local.observe``; ``status`` shows
    it). Not recorded: once a scheduler records it, it becomes an outcome."""

    RUNNING = "running"  # its process still runs (the same process: pid and start time)
    ENDED = "ended"  # its exit record is written: it ended, with that return code
    LOST = "lost"  # its process is gone and left no exit record
    NOT_STARTED = "not_started"  # it never started (no log, or resume's abandon record): outcome NOT_STARTED
    UNKNOWN = "unknown"  # its log holds no pid yet, or it ran on another host


# The members under the module-level names the code base imported before the enums existed,
# so that it need not change now; new code may use either.
PENDING = Status.PENDING
RUNNING = Status.RUNNING
SUCCEEDED = Status.SUCCEEDED
FAILED = Status.FAILED
INTERRUPTED = Status.INTERRUPTED
STATUSES = tuple(Status)
EXITED = AttemptOutcome.EXITED
TIMED_OUT = AttemptOutcome.TIMED_OUT
STOPPED = AttemptOutcome.STOPPED
LOST = AttemptOutcome.LOST
NOT_STARTED = AttemptOutcome.NOT_STARTED
OUTCOMES = tuple(AttemptOutcome)
SEEN_RUNNING = Seen.RUNNING
SEEN_ENDED = Seen.ENDED
SEEN_LOST = Seen.LOST
SEEN_NOT_STARTED = Seen.NOT_STARTED
SEEN_UNKNOWN = Seen.UNKNOWN

STOP_REASONS = ("stop", "timeout")  # why pbtrun signalled an attempt (Attempt.stop_reason)

_NEXT = {
    PENDING: {RUNNING},
    RUNNING: {SUCCEEDED, FAILED, INTERRUPTED, PENDING},
    SUCCEEDED: {PENDING},  # only when a changed command is re-queued with --force
    FAILED: {PENDING, RUNNING},
    INTERRUPTED: {RUNNING, PENDING},
}


class Attempt(NamedTuple):
    """One run of an experiment: where and when it ran and how it ended.

    Records are named tuples, immutable like frozen dataclasses, and several times cheaper to
    build, which shows when a 100,000-experiment state is read (a frozen dataclass sets each
    field through object.__setattr__). Change one with ``_replace``."""

    number: int
    started_at: float
    log: str  # relative to the sweep directory
    gpus: tuple[int, ...] | None = None
    host: str = ""
    pid: int | None = None
    ended_at: float | None = None
    returncode: int | None = None
    outcome: AttemptOutcome | None = None
    # The backend's reference to what runs it, recorded before launch (local: its reaper's
    # address; a batch system: a job id).
    ref: str | None = None
    # When pbtrun first signalled it to stop (time.time()) and why ("stop" or "timeout"), written
    # before the signal goes out: its end after that is pbtrun's doing, even if the scheduler
    # that sent the signal died before the end came.
    stop_at: float | None = None
    stop_reason: str | None = None
    # The UUIDs of ``gpus`` (same order) where the driver told them; None where it did not.
    gpu_uuids: tuple[str | None, ...] | None = None
    # A batch system's word on how the attempt ended, beyond its exit status ("TIMEOUT",
    # "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY", "CANCELLED"); None locally and for plain ends.
    end_state: str | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


class Experiment(NamedTuple):
    """One experiment of the sweep: its definition and its history.

    The definition is the spec layer's :class:`~pbtrun.spec.model.ExperimentSpec`, held whole
    (``exp.spec.argv``): its fields are declared once, there, and a merge replaces the definition
    rather than copying it field by field. One read back from the state has no ``layout`` (the
    state does not record it; see ``ExperimentSpec.renamed``). The history is the status, the
    attempts and whether the spec still lists it. ``id`` and ``name``, read everywhere, are
    properties reading the definition."""

    spec: ExperimentSpec
    status: Status = PENDING
    attempts: tuple[Attempt, ...] = ()
    removed: bool = False  # no longer in the spec; kept for its history, never launched again

    @property
    def id(self) -> str:
        """Its definition's id: stable across edits of the spec, the key of ``Sweep.experiments``."""
        return self.spec.id

    @property
    def name(self) -> str:
        """Its definition's name, as ``status`` shows it and ``logs`` takes it."""
        return self.spec.name

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def runnable(self) -> bool:
        """Whether a scheduler may launch it: its status is runnable and it is still in the spec."""
        return self.status in RUNNABLE and not self.removed

    def to(self, status: Status, attempt: Attempt | None = None) -> Experiment:
        """A copy in ``status``; ``attempt`` replaces the last attempt or, if new, is appended."""
        if status not in _NEXT[self.status] and status != self.status:
            raise ValueError(f"illegal transition {self.status} -> {status} for {self.name}")
        attempts = self.attempts
        if attempt is not None:
            same = attempts and attempts[-1].number == attempt.number
            attempts = (*attempts[:-1], attempt) if same else (*attempts, attempt)
        return self._replace(status=status, attempts=attempts)


class Observed(NamedTuple):
    """What an attempt is, seen from its log's records and the process table."""

    state: Seen
    returncode: int | None = None
    ended_at: float | None = None
    detail: str | None = None  # what a batch system says of it ("Slurm: PENDING (Priority)")


class Settings(NamedTuple):
    """The scheduler settings a sweep runs with, resolved (no "not given" left)."""

    gpus: tuple[int, ...] = ()
    max_parallel: int = 4
    experiments_per_gpu: int = -1
    pause_between_s: float = 0.0
    max_failures: int | None = None  # stop launching after this many experiments failed in one run
    gpus_per_experiment: int = 1  # an experiment's GPUs, unless its group says otherwise
    placement: str = "count"  # "count": by experiments per GPU; "memory": also by free memory (NVML)
    min_free_memory_gb: float | None = None  # placement = "memory": a GPU needs this much free
    memory_settle_s: float = 30.0  # how long a launch's memory counts as promised before it shows
    exclude_busy_gpus: bool = False  # skip GPUs with compute processes pbtrun did not start
    # How CUDA_VISIBLE_DEVICES named each of ``gpus`` where the sweep was compiled (an index or a
    # UUID, as the user was given them); () where each is its index. Used where the GPUs cannot
    # be read again (no driver), so a resumed experiment lands on the same GPU.
    gpu_names: tuple[str, ...] = ()


class Sweep:
    """The whole state. A mutable container of frozen records, changed only inside a transaction.

    Counts by status are kept up to date on every change, and the ids changed since the last
    commit are remembered (``dirty``), so a commit costs O(changes), not O(sweep). (A plain
    class: defining a dataclass costs start-up time, at every start.)
    """

    def __init__(
        self,
        name: str,
        cwd: str,
        train_dir: str,
        created_at: float,
        settings: Settings,
        pbtrun_version: str = "",
        journal_seq: int = 0,
        backend: str = "local",
        backend_settings: dict | None = None,
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.train_dir = train_dir
        self.created_at = created_at
        self.settings = settings
        self.pbtrun_version = pbtrun_version
        self.journal_seq = journal_seq  # the last journal entry folded into pbtrun.json
        self.backend = backend  # the name of the backend its experiments run on
        self.backend_settings = backend_settings or {}  # the backend's own table ([slurm]), as compiled
        # The state format of its file on disk, which the journal's lines are in too (None: not
        # read from a file yet). A writer that finds an older one rewrites the file first.
        self.disk_format: int | None = None
        self.experiments: dict[str, Experiment] = {}
        self.dirty: dict[str, Experiment | None] = {}  # id -> before
        self._counts: dict[Status, int] = dict.fromkeys(Status, 0)

    def __repr__(self) -> str:
        return f"Sweep(name={self.name!r}, {len(self.experiments)} experiments, journal_seq={self.journal_seq})"

    def counts(self) -> dict[Status, int]:
        return dict(self._counts)

    def runnable(self) -> list[Experiment]:
        return [e for e in self.experiments.values() if e.runnable]

    def running(self) -> list[Experiment]:
        return [e for e in self.experiments.values() if e.status == RUNNING]

    def update(self, exp: Experiment) -> None:
        old = self.experiments.get(exp.id)
        if old is not None:
            self._counts[old.status] -= 1
        self._counts[exp.status] += 1
        self.experiments[exp.id] = exp
        self.dirty.setdefault(exp.id, old)

    def replace_all(self, experiments: Iterable[Experiment]) -> None:
        """Swap in a whole new set of experiments (a merge); everything counts as changed."""
        self.experiments = {}
        self._counts = dict.fromkeys(Status, 0)
        for exp in experiments:
            self.update(exp)
