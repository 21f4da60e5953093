"""The sweep's state: records, statuses and their transitions, and the persisted JSON shape.

Pure data: no file I/O, no locks, no processes (``store.py`` does I/O, the backends run things).
The JSON written from these records is sorted and indented so a person can read and diff it.

Format history:
    1 (pbtrun 0.1): first format.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from pbtrun.errors import SpecError, StateError
from pbtrun.printable import printable

if TYPE_CHECKING:  # only for annotations: readers of the state need not load the spec layer
    from pbtrun.spec.model import ExperimentSpec

FORMAT = 1


class NewerState(StateError):
    """The state was written by a newer pbtrun, in a format this one does not know."""


PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"
STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED, INTERRUPTED)
RUNNABLE = (PENDING, INTERRUPTED)  # what a scheduler launches (failed ones only when asked to retry)

# How an attempt ended. ``None`` while it runs.
EXITED = "exited"  # the process ended by itself; returncode tells how (negative: a signal)
TIMED_OUT = "timed_out"  # pbtrun stopped it because it ran longer than timeout_min; counts as failed
STOPPED = "stopped"  # pbtrun stopped it (Ctrl-C, SIGTERM); it runs again on resume
LOST = "lost"  # it was running but its fate is unknowable (the machine rebooted)
NOT_STARTED = "not_started"  # recorded as launching, but the process was never started
OUTCOMES = (EXITED, TIMED_OUT, STOPPED, LOST, NOT_STARTED)
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
    outcome: str | None = None
    reaper: str | None = None  # the backend's handle on what runs it (local: the reaper's address)
    # When pbtrun first signalled it to stop (time.time()) and why ("stop" or "timeout"), written
    # before the signal goes out: its end after that is pbtrun's doing, even if the scheduler
    # that sent the signal died before the end came.
    stop_at: float | None = None
    stop_reason: str | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


class Experiment(NamedTuple):
    """One experiment of the sweep, with its definition and every attempt made at it."""

    id: str
    group: str
    index: int
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    params: Mapping[str, Any]
    name_arg: int | None = None
    status: str = PENDING
    attempts: tuple[Attempt, ...] = ()
    removed: bool = False  # no longer in the spec; kept for its history, never launched again
    max_retries: int = 0
    timeout_min: float | None = None

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def to(self, status: str, attempt: Attempt | None = None) -> Experiment:
        """A copy in ``status``; ``attempt`` replaces the last attempt or, if new, is appended."""
        if status not in _NEXT[self.status] and status != self.status:
            raise ValueError(f"illegal transition {self.status} -> {status} for {self.name}")
        attempts = self.attempts
        if attempt is not None:
            same = attempts and attempts[-1].number == attempt.number
            attempts = (*attempts[:-1], attempt) if same else (*attempts, attempt)
        return self._replace(status=status, attempts=attempts)


# What an attempt the state records as running really is, looked at from its log's records and
# the process table while no scheduler runs (``backends.local.observe``; shown by ``status``).
SEEN_RUNNING = "running"  # its process still runs (the same process: pid and start time)
SEEN_ENDED = "ended"  # its exit record is written: it ended, with that return code
SEEN_LOST = "lost"  # its process is gone and left no exit record
SEEN_NOT_STARTED = "not_started"  # it never started: no log, or resume's abandon record
SEEN_UNKNOWN = "unknown"  # its log holds no pid yet, or it ran on another host


class Observed(NamedTuple):
    """What an attempt is, seen from its log's records and the process table."""

    state: str
    returncode: int | None = None
    ended_at: float | None = None


class Settings(NamedTuple):
    """The scheduler settings a sweep runs with, resolved (no "not given" left)."""

    gpus: tuple[int, ...] = ()
    max_parallel: int = 4
    experiments_per_gpu: int = -1
    pause_between_s: float = 0.0
    max_failures: int | None = None  # stop launching after this many experiments failed in one run


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
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.train_dir = train_dir
        self.created_at = created_at
        self.settings = settings
        self.pbtrun_version = pbtrun_version
        self.journal_seq = journal_seq  # the last journal entry folded into pbtrun.json
        self.experiments: dict[str, Experiment] = {}
        self.dirty: dict[str, Experiment | None] = {}  # id -> before
        self._counts: dict[str, int] = dict.fromkeys(STATUSES, 0)

    def __repr__(self) -> str:
        return f"Sweep(name={self.name!r}, {len(self.experiments)} experiments, journal_seq={self.journal_seq})"

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def runnable(self) -> list[Experiment]:
        return [e for e in self.experiments.values() if e.status in RUNNABLE and not e.removed]

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
        self._counts = dict.fromkeys(STATUSES, 0)
        for exp in experiments:
            self.update(exp)


# --------------------------------------------------------------------------- merge


class MergeReport(NamedTuple):
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def new_experiment(spec: ExperimentSpec) -> Experiment:
    return Experiment(
        id=spec.id,
        group=spec.group,
        index=spec.index,
        name=spec.name,
        argv=spec.argv,
        env=spec.env,  # shared with the group's other experiments: records are never changed in place
        params=spec.params,
        name_arg=spec.name_arg,
        max_retries=spec.max_retries,
        timeout_min=spec.timeout_min,
    )


def _renamed(spec: ExperimentSpec, name: str) -> dict[str, Any]:
    """The argv and env ``spec`` gives an experiment named ``name``: the name argument, and with
    ``args = "hydra"`` or a ``{experiment}`` placeholder more of them, follow the name."""
    argv, env = spec.renamed(name)
    return {"argv": argv, "env": env}


def merge(sweep: Sweep, compiled: Sequence[ExperimentSpec], force: bool = False) -> MergeReport:
    """Bring a sweep in line with a re-compiled spec, in place (see :func:`merged`).

    An experiment whose command or env changed is refused, unless ``force``, which re-queues
    it with the new definition (refused still while it runs).
    """
    old = sweep.experiments
    changed = [c for c in compiled if c.id in old and differs(old[c.id], c)]
    if changed and not force:
        raise SpecError(_changed_message(sweep, changed))
    busy = [old[c.id].name for c in changed if old[c.id].status == RUNNING]
    if busy:
        raise SpecError(f"cannot re-queue {', '.join(busy)}: still running. Stop the sweep first (Ctrl-C).")
    result = merged(old, compiled, force)
    sweep.replace_all(result.values())
    return MergeReport(
        tuple(e.name for e in result.values() if e.id not in old),
        tuple(old[c.id].name for c in changed),
        tuple(e.name for e in result.values() if e.removed),
    )


def merged(
    old: Mapping[str, Experiment], compiled: Sequence[ExperimentSpec], force: bool = False
) -> dict[str, Experiment]:
    """The experiments a merge leaves, in the sweep's order, made without changing ``old``
    (``plan`` shows them before anything is changed).

    Existing experiments keep their names, argv, history and place (the ``#`` that ``status``
    shows and ``logs`` takes), and adding a grid value never renames a run whose checkpoints
    already exist. New experiments are appended after them as pending, so existing pending ones
    launch first. Experiments gone from the spec are kept in their place and marked removed if
    they ran; if they never ran they are dropped, and only the rows after them move up.
    """
    specs = {c.id: c for c in compiled}
    result: dict[str, Experiment] = {}
    for exp in old.values():
        spec = specs.get(exp.id)
        if spec is not None:
            result[exp.id] = _keep(exp, spec, force)
        elif exp.attempts:
            result[exp.id] = exp._replace(removed=True)
    # Names and indexes by group of every experiment the state had, dropped ones too: a name
    # that was shown once never comes back meaning another experiment.
    taken = {e.name for e in old.values()}
    used: dict[str, set[int]] = {}  # each NN_ prefix names one experiment of a group
    for exp in old.values():
        used.setdefault(exp.group, set()).add(exp.index)
    for spec in compiled:
        if spec.id not in result:
            exp = _fresh(spec, taken, used.setdefault(spec.group, set()))
            taken.add(exp.name)
            used[spec.group].add(exp.index)
            result[exp.id] = exp
    return result


def differs(exp: Experiment, spec: ExperimentSpec) -> bool:
    """Whether the spec now runs something else than ``exp``, compared under ``exp``'s own name
    (a merge may have numbered it past its group's last): what it runs, not what it's called."""
    argv, env = spec.renamed(exp.name)
    return tuple(exp.argv) != tuple(argv) or dict(exp.env) != dict(env)


def _keep(exp: Experiment, spec: ExperimentSpec, force: bool) -> Experiment:
    exp = exp._replace(removed=False, max_retries=spec.max_retries, timeout_min=spec.timeout_min)
    if not (force and differs(exp, spec)):
        return exp
    requeued = exp._replace(**_renamed(spec, exp.name), name_arg=spec.name_arg)
    return requeued if exp.status == PENDING else requeued.to(PENDING)


def _fresh(spec: ExperimentSpec, taken: set[str], used: set[int]) -> Experiment:
    """A new experiment, numbered past its group's highest index if its own is taken: a new
    grid value compiles to the index an existing experiment of the group was named with, and
    two names with one ``NN_`` prefix would make ``logs SWEEP NN_group`` ambiguous."""
    exp = new_experiment(spec)
    if exp.name not in taken and spec.index not in used:
        return exp
    index = 1 + max(used, default=-1)
    while (name := f"{index:02d}{spec.name[len(f'{spec.index:02d}') :]}") in taken:
        index += 1
    return exp._replace(index=index, name=name, **_renamed(spec, name))


CHANGES_SHOWN = 3  # changed experiments whose difference the refusal spells out


def _changed_message(sweep: Sweep, changed: Sequence[ExperimentSpec]) -> str:
    from pbtrun.spec.argdiff import describe, difference  # here: only a refusal needs it, not every `up`

    old = sweep.experiments
    names = ", ".join(old[c.id].name for c in changed[:5]) + (
        f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    )
    lines = [
        f"the spec changes the command or env of {len(changed)} experiment(s) that sweep "
        f"{sweep.name!r} already has: {names}. pbtrun refuses, because their results so far were "
        "produced by the old command and re-running them silently would mix the two. To run the "
        "new command, re-queue them with --force (their earlier attempts stay in the history), or "
        "give the changed experiments a new group name, or start a new sweep with a new name. "
        "What changes:"
    ]
    for spec in changed[:CHANGES_SHOWN]:
        exp = old[spec.id]
        argv, env = spec.renamed(exp.name)
        diff = difference(exp.argv, argv, exp.env, env)
        lines.append(f"    {exp.name}: {describe(diff)}")
    if len(changed) > CHANGES_SHOWN:
        lines.append(f"    ... and {len(changed) - CHANGES_SHOWN} more: `pbtrun plan` with this spec shows them all.")
    return "\n".join(map(printable, lines))  # a name or value with a line break stays on its line


# --------------------------------------------------------------------------- JSON


def to_json(sweep: Sweep) -> dict[str, Any]:
    """The persisted shape: versioned, plain JSON, no runtime handles."""
    return {**head_json(sweep), "experiments": [experiment_json(e) for e in sweep.experiments.values()]}


def head_json(sweep: Sweep) -> dict[str, Any]:
    """Everything but the experiments."""
    return {
        "format": FORMAT,
        "pbtrun_version": sweep.pbtrun_version,
        "journal_seq": sweep.journal_seq,
        "sweep": {
            "name": sweep.name,
            "cwd": sweep.cwd,
            "train_dir": sweep.train_dir,
            "created_at": sweep.created_at,
            "settings": {
                "gpus": list(sweep.settings.gpus),
                "max_parallel": sweep.settings.max_parallel,
                "experiments_per_gpu": sweep.settings.experiments_per_gpu,
                "pause_between_s": sweep.settings.pause_between_s,
                "max_failures": sweep.settings.max_failures,
            },
        },
    }


def change_json(before: Experiment | None, exp: Experiment) -> dict[str, Any] | None:
    """A transition as the journal records it, if it is one: the status, and the last attempt
    if it is new or changed; None if anything else changed (the full record is written then).
    Most of a record (argv, env, params) never changes; leaving it out makes journal lines
    several times smaller."""
    if before is None or not _same_definition(before, exp):
        return None
    old, new = before.attempts, exp.attempts
    if new == old:
        attempt = None
    elif len(new) - len(old) in (0, 1) and new[:-1] == old[: len(new) - 1]:  # the last replaced, or one added
        attempt = _attempt_json(new[-1])
    else:
        return None
    return {"id": exp.id, "status": exp.status, "attempt": attempt}


def _same_definition(a: Experiment, b: Experiment) -> bool:
    return (
        a.argv is b.argv
        and a.env is b.env
        and a.params is b.params
        and (a.name, a.index, a.group, a.name_arg, a.removed, a.max_retries, a.timeout_min)
        == (b.name, b.index, b.group, b.name_arg, b.removed, b.max_retries, b.timeout_min)
    )


def apply_change(sweep: Sweep, change: Mapping[str, Any]) -> None:
    """Replay one journal change (see :func:`change_json`)."""
    exp = sweep.experiments[change["id"]]
    status = change["status"]
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r} for {exp.name}")
    attempts = exp.attempts
    if change["attempt"] is not None:
        attempt = _attempt_from(change["attempt"])
        same = attempts and attempts[-1].number == attempt.number
        attempts = (*attempts[:-1], attempt) if same else (*attempts, attempt)
    sweep.update(exp._replace(status=status, attempts=attempts))


def experiment_json(exp: Experiment) -> dict[str, Any]:
    return {
        "id": exp.id,
        "group": exp.group,
        "index": exp.index,
        "name": exp.name,
        "argv": list(exp.argv),
        "env": dict(exp.env),
        "params": dict(exp.params),
        "name_arg": exp.name_arg,
        "status": exp.status,
        "removed": exp.removed,
        "max_retries": exp.max_retries,
        "timeout_min": exp.timeout_min,
        "attempts": [_attempt_json(a) for a in exp.attempts],
    }


def _attempt_json(a: Attempt) -> dict[str, Any]:
    raw = {
        "number": a.number,
        "started_at": a.started_at,
        "ended_at": a.ended_at,
        "log": a.log,
        "gpus": None if a.gpus is None else list(a.gpus),
        "host": a.host,
        "pid": a.pid,
        "returncode": a.returncode,
        "outcome": a.outcome,
        "reaper": a.reaper,
    }
    if a.stop_at is not None:
        raw["stop_at"] = a.stop_at
        raw["stop_reason"] = a.stop_reason
    return raw


def from_json(data: Any) -> Sweep:
    """Build records from the persisted shape; refuse a newer format, explain a broken one."""
    sweep = sweep_from(data)
    try:
        shared: dict = {}
        for raw in data["experiments"]:
            exp = experiment_from(raw, shared)
            if exp.id in sweep.experiments:
                raise ValueError(f"experiment {exp.id} ({exp.name}) is listed twice")
            sweep.update(exp)
        sweep.dirty.clear()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"its content is malformed ({type(exc).__name__}: {exc})") from None
    return sweep


def sweep_from(data: Any) -> Sweep:
    """The sweep without its experiments, from the persisted shape's head."""
    if not isinstance(data, dict) or not isinstance(data.get("format"), int):
        raise StateError('it is not a pbtrun state file (no "format" number)')
    if data["format"] < 1:
        raise StateError(f'its "format" is {data["format"]}; pbtrun state formats start at 1')
    if data["format"] > FORMAT:
        version = data.get("pbtrun_version")
        writer = f"pbtrun {version}" if version else "a newer pbtrun"
        raise NewerState(
            f"it was written by {writer} (state format {data['format']}), newer than this "
            f"pbtrun understands (format {FORMAT}). Upgrade pbtrun (pip install -U pbtrun) to read it"
        )
    try:
        head = data["sweep"]
        settings = head["settings"]
        if int(settings["max_parallel"]) < 1:
            raise ValueError(f"max_parallel is {settings['max_parallel']}, it must be at least 1")
        return Sweep(
            name=head["name"],
            cwd=head["cwd"],
            train_dir=head["train_dir"],
            created_at=float(head["created_at"]),
            settings=Settings(
                gpus=tuple(int(g) for g in settings["gpus"]),
                max_parallel=int(settings["max_parallel"]),
                experiments_per_gpu=int(settings["experiments_per_gpu"]),
                pause_between_s=float(settings["pause_between_s"]),
                max_failures=_optional_int(settings.get("max_failures")),
            ),
            pbtrun_version=str(data.get("pbtrun_version", "")),
            journal_seq=int(data.get("journal_seq", 0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"its content is malformed ({type(exc).__name__}: {exc})") from None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def experiment_from(raw: Mapping[str, Any], shared: dict | None = None) -> Experiment:
    """An experiment from its persisted shape. ``shared`` (a dict kept across calls) lets
    experiments share equal env mappings, and command words are interned: 100,000 experiments
    parsed from JSON would otherwise each hold their own copy of the same strings. A value of
    the wrong type raises (TypeError, ValueError), which readers report as a malformed file."""
    status = raw["status"]
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r} for {raw.get('name')}")
    intern = sys.intern
    env = {intern(k): intern(v) for k, v in raw["env"].items()}
    if shared is not None:
        env = shared.setdefault(tuple(env.items()), env)
    params = raw["params"]
    if not isinstance(params, dict):
        raise TypeError(f"params of {raw.get('name')} is not a table")
    timeout = raw.get("timeout_min")
    argv = raw["argv"]
    if not argv:
        raise ValueError(f"the argv of {raw.get('name')} is empty")
    attempts = raw["attempts"]
    return Experiment(  # positional: a 100,000-experiment state is read in a loop of these
        str(raw["id"]),
        intern(raw["group"]),
        int(raw["index"]),
        str(raw["name"]),
        tuple(map(intern, argv)),
        env,
        params,
        raw.get("name_arg"),
        status,
        tuple(map(_attempt_from, attempts)) if attempts else (),
        bool(raw.get("removed", False)),
        int(raw.get("max_retries", 0)),
        None if timeout is None else float(timeout),
    )


def _attempt_from(raw: Mapping[str, Any]) -> Attempt:
    gpus = raw.get("gpus")
    get = raw.get
    number, pid, returncode, outcome, ended_at = (
        raw["number"],
        get("pid"),
        get("returncode"),
        get("outcome"),
        get("ended_at"),
    )
    if (
        type(number) is not int
        or not (pid is None or type(pid) is int)
        or not (returncode is None or type(returncode) is int)
    ):
        raise TypeError(
            f"attempt {number!r}: number, pid and returncode must be integers (pid and returncode may be null)"
        )
    if outcome is not None and outcome not in OUTCOMES:
        raise ValueError(f"attempt {number}: unknown outcome {outcome!r}")
    stop_at, stop_reason = get("stop_at"), get("stop_reason")
    if (stop_at is None) != (stop_reason is None) or (stop_reason is not None and stop_reason not in STOP_REASONS):
        raise ValueError(f"attempt {number}: stop_at {stop_at!r} with stop_reason {stop_reason!r}")
    return Attempt(
        number,
        float(raw["started_at"]),
        str(raw["log"]),
        None if gpus is None else tuple(map(int, gpus)),
        sys.intern(str(get("host", ""))),
        pid,
        None if ended_at is None else float(ended_at),
        returncode,
        outcome,
        get("reaper"),
        None if stop_at is None else float(stop_at),
        stop_reason,
    )
