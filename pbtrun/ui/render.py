"""Turning state into what people and scripts read: tables, summaries, the ``--json`` shape.

The ``status --json`` shape is a public interface (documented in docs/status-json.md); add keys, never
rename or remove them.
"""

from __future__ import annotations

import json
import shlex
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pbtrun.printable import printable
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import (
    FAILED,
    INTERRUPTED,
    LOST,
    NOT_STARTED,
    PENDING,
    RUNNABLE,
    RUNNING,
    SEEN_ENDED,
    SEEN_LOST,
    SEEN_NOT_STARTED,
    SEEN_RUNNING,
    STATUSES,
    STOPPED,
    SUCCEEDED,
    TIMED_OUT,
    Attempt,
    Experiment,
    Observed,
    Settings,
    Sweep,
)

if TYPE_CHECKING:  # for annotations: status and logs need not load the spec layer
    from pbtrun.spec.model import ExperimentSpec


class Filters(NamedTuple):
    """Which experiments ``status`` shows (in its table and in ``--json``): the selected statuses
    (any of them), then a name match.

    ``pending`` also selects interrupted experiments: both are what a resume would run next, which
    is what someone asking "what is left?" wants to see. No status flag selects every status.
    """

    failed: bool = False
    running: bool = False
    pending: bool = False
    grep: str | None = None

    @property
    def statuses(self) -> frozenset[str]:
        chosen = {FAILED} if self.failed else set()
        chosen |= {RUNNING} if self.running else set()
        chosen |= RUNNABLE if self.pending else set()
        return frozenset(chosen or STATUSES)

    @property
    def active(self) -> bool:
        return self.failed or self.running or self.pending or bool(self.grep)

    def match(self, exp: Experiment) -> bool:
        if exp.status not in self.statuses:
            return False
        return not self.grep or self.grep.casefold() in exp.name.casefold()


def real_attempts(exp: Experiment) -> list[Attempt]:
    """Attempts that started a process (a launch abandoned after a crash is not an attempt)."""
    return [a for a in exp.attempts if a.outcome != NOT_STARTED]


def last_attempt(exp: Experiment) -> Attempt | None:
    attempts = real_attempts(exp)
    return attempts[-1] if attempts else None


def status_word(exp: Experiment) -> str:
    """``failed (3)``, ``failed (SIGKILL)``, ``lost``: the status with what explains it."""
    return _status_word(exp) + (" (removed)" if exp.removed else "")


def _status_word(exp: Experiment) -> str:
    last = last_attempt(exp)
    if exp.status == FAILED and last is not None and last.outcome == TIMED_OUT:
        return "failed (timed out)"
    if exp.status == FAILED and last is not None and last.returncode is not None:
        return f"failed ({returncode_word(last.returncode)})"
    if exp.status in (INTERRUPTED, FAILED) and last is not None and last.outcome == LOST:  # interrupted: format 1
        return "lost"
    return exp.status


def observed_word(seen: Observed) -> str:
    """What an experiment the state calls running really is, while no scheduler runs: the state
    says so only once a scheduler records it, hence "not yet recorded"."""
    if seen.state == SEEN_ENDED and seen.returncode is not None:
        return f"ended ({returncode_word(seen.returncode)}), not yet recorded"
    return {
        SEEN_RUNNING: "running (no scheduler)",
        SEEN_LOST: "lost, not yet recorded",
        SEEN_NOT_STARTED: "never started, not yet recorded",
    }.get(seen.state, "unknown (no scheduler)")


def observed_status(seen: Observed) -> str:
    """The status an observation amounts to (its symbol and colour in tables)."""
    if seen.state == SEEN_ENDED:
        return SUCCEEDED if seen.returncode == 0 else FAILED
    return {SEEN_LOST: FAILED, SEEN_NOT_STARTED: PENDING}.get(seen.state, RUNNING)


def observed_json(seen: Observed | None) -> dict[str, Any] | None:
    if seen is None:
        return None
    return {"state": seen.state, "returncode": seen.returncode, "ended_at": seen.ended_at}


def attempt_word(attempt: Attempt) -> str:
    """How one attempt ended, in a word: ``succeeded``, ``failed (3)``, ``timed out``, ``lost``..."""
    if attempt.outcome == TIMED_OUT:
        return "timed out"
    if attempt.outcome in (LOST, STOPPED):
        return attempt.outcome
    if attempt.outcome == NOT_STARTED:
        return "not started"
    if attempt.returncode == 0:
        return "succeeded"
    return f"failed ({returncode_word(attempt.returncode)})" if attempt.returncode is not None else "running"


def returncode_word(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no experiments"


# --------------------------------------------------------------------------- plans


def first_slots(experiments: Sequence[ExperimentSpec], settings: Settings) -> list[tuple[int, ...] | None]:
    """Where each experiment would start if the sweep began now with every slot free:
    a tuple of GPUs (empty: not pinned), or None for those that wait for a slot."""
    from pbtrun.run.gpus import Placement

    placement = Placement(settings)
    load: dict[int, int] = {}
    slots = []
    for n, _ in enumerate(experiments):
        gpus = placement.choose(load, n)
        for g in gpus or ():
            load[g] = load.get(g, 0) + 1
        slots.append(gpus)
    return slots


def _slot_word(gpus: tuple[int, ...] | None) -> str:
    if gpus is None:
        return "queued (starts when a slot frees)"
    return f"GPU {','.join(map(str, gpus))}" if gpus else "starts at once (GPUs not pinned)"


def plan(
    name: str,
    sweep_dir: Path,
    experiments: Sequence[ExperimentSpec],
    settings: Settings,
    changes: Sequence[str] | None = None,
) -> str:
    """What ``plan`` and ``up --dry-run`` print: each experiment's full command, env and first
    slot; for a sweep that exists, ``changes`` (what the spec changes in it) instead."""
    lines = []
    if changes is None:
        for exp, gpus in zip(experiments, first_slots(experiments, settings), strict=True):
            lines += command_lines(exp, f"  [{_slot_word(gpus)}]")
    else:
        lines += changes
    pinned = (
        f"{len(settings.gpus)} GPU(s) x {settings.experiments_per_gpu}"
        if settings.experiments_per_gpu > 0
        else "GPUs not pinned"
    )
    state = "would be" if changes is None else "is left as it is:"
    lines.append(
        f"plan: sweep {name}, {len(experiments)} experiment(s), max_parallel {settings.max_parallel}, {pinned}; "
        f"state {state} {sweep_dir}/pbtrun.json. Nothing was created or run."
    )
    return "\n".join(map(printable, lines))  # a name or value with a line break stays on its line


def command_lines(exp: ExperimentSpec, note: str = "") -> list[str]:
    """An experiment as ``plan`` lists it: its name (and ``note``), its command, its env."""
    lines = [f"{exp.name}{note}", f"    {shlex.join(exp.argv)}"]
    if exp.env:
        lines.append("    env: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exp.env.items()))
    return lines


def plan_json(name: str, sweep_dir: Path, experiments: Sequence[ExperimentSpec], settings: Settings) -> dict[str, Any]:
    """``plan --json``: the compiled experiments, for scripts."""
    return {
        "sweep": {"name": name, "dir": str(sweep_dir)},
        "settings": {
            "gpus": list(settings.gpus),
            "max_parallel": settings.max_parallel,
            "experiments_per_gpu": settings.experiments_per_gpu,
            "pause_between_s": settings.pause_between_s,
            "max_failures": settings.max_failures,
        },
        "experiments": Rows(list(zip(experiments, first_slots(experiments, settings), strict=True)), _plan_item),
    }


def _plan_item(item: tuple[ExperimentSpec, tuple[int, ...] | None]) -> dict[str, Any]:
    exp, gpus = item
    return {
        "name": exp.name,
        "id": exp.id,
        "group": exp.group,
        "argv": list(exp.argv),
        "env": dict(exp.env),
        "params": dict(exp.params),
        "first_slot": None if gpus is None else {"gpus": list(gpus) if gpus else None},
    }


# --------------------------------------------------------------------------- JSON


def sweep_json(
    paths: SweepPaths,
    sweep: Sweep,
    holder: dict[str, Any] | None,
    observed: Mapping[str, Observed] | None = None,
    filters: Filters | None = None,
) -> dict[str, Any]:
    """The ``status --json`` document for one sweep; ``observed`` (by experiment id) is what the
    experiments the state calls running really are, looked at while no scheduler runs.
    ``filters`` select the experiments listed, as in the table; the counts stay the whole sweep's."""
    base = paths.dir.resolve()
    observed = observed or {}
    chosen = sweep.experiments.values()
    if filters is not None and filters.active:
        chosen = [e for e in chosen if filters.match(e)]
    return {
        "sweep": {
            "name": sweep.name,
            "dir": str(base),
            "cwd": sweep.cwd,
            "running": holder is not None,
            "scheduler": None if holder is None else {"pid": holder.get("pid"), "host": holder.get("host")},
        },
        "counts": sweep.counts(),
        "experiments": Rows(list(chosen), lambda e: experiment_json(paths, e, base, observed.get(e.id))),
    }


def experiment_json(
    paths: SweepPaths, exp: Experiment, base: Path | None = None, observed: Observed | None = None
) -> dict[str, Any]:
    """One experiment of ``status --json``; ``base`` is the sweep directory, resolved (once per
    sweep: resolving every log's path costs a system call per component). Log paths are joined
    as strings: a pathlib join costs more than the rest of the experiment's document."""
    base = paths.dir.resolve() if base is None else base
    prefix = f"{base}/"
    attempts = real_attempts(exp)
    last = attempts[-1] if attempts else None
    return {
        "name": exp.name,
        "id": exp.id,
        "group": exp.group,
        "status": exp.status,
        "outcome": None if last is None else last.outcome,
        "returncode": None if last is None else last.returncode,
        "gpus": None if last is None or last.gpus is None else list(last.gpus),
        "attempts": len(attempts),
        "argv": exp.argv,  # a tuple, written as a JSON array: no copy (nor of the dicts below)
        "env": exp.env if type(exp.env) is dict else dict(exp.env),
        "params": exp.params if type(exp.params) is dict else dict(exp.params),
        "log": None if last is None else prefix + last.log,
        "started_at": None if last is None else last.started_at,
        "ended_at": None if last is None else last.ended_at,
        "removed": exp.removed,
        "history": [attempt_json(a, prefix) for a in attempts],
        "observed": observed_json(observed),
    }


def attempt_json(attempt: Attempt, prefix: str) -> dict[str, Any]:
    """One attempt that started a process, as ``history`` lists it: a lost one stays visible.
    ``prefix``: the sweep directory and a slash, before the attempt's relative log path."""
    return {
        "number": attempt.number,
        "outcome": attempt.outcome,
        "returncode": attempt.returncode,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
        "gpus": None if attempt.gpus is None else list(attempt.gpus),
        "log": prefix + attempt.log,
    }


def lost_attempts(exp: Experiment) -> int:
    """How many of its attempts were lost (their fate unknowable: the machine rebooted)."""
    return sum(1 for a in exp.attempts if a.outcome == LOST)


# --------------------------------------------------------------------------- shared by the views and tables

SYMBOLS = {SUCCEEDED: "✔", FAILED: "✘", RUNNING: "●", PENDING: "○", INTERRUPTED: "⏸"}
STYLES = {SUCCEEDED: "green", FAILED: "red", RUNNING: "cyan", PENDING: "dim", INTERRUPTED: "yellow"}


def active_counts(sweep: Sweep) -> dict[str, int]:
    """Counts by status of the experiments still in the spec (removed ones are history only)."""
    counts = dict.fromkeys(STATUSES, 0)
    for exp in sweep.experiments.values():
        if not exp.removed:
            counts[exp.status] += 1
    return counts


def resume_hint(paths: SweepPaths, counts: Mapping[str, int], lost: int = 0) -> str | None:
    """The exact command that continues the sweep, or None when nothing is left to do.

    Failed experiments alone stay failed on a plain resume, so for them the command names
    ``--retry-failed`` (``--retry-lost`` where every failure is a ``lost`` one); the directory
    is shell-quoted so the line can be pasted as it is.
    """
    where = shlex.quote(str(paths.dir))
    if counts.get(PENDING, 0) + counts.get(INTERRUPTED, 0) + counts.get(RUNNING, 0):
        return f"pbtrun resume {where}"
    if counts.get(FAILED, 0):
        return f"pbtrun resume {where} --retry-{'lost' if lost == counts[FAILED] else 'failed'}"
    return None


def lost_count(sweep: Sweep) -> int:
    """Experiments in the spec whose last attempt was lost (failed: their outcome is unknowable)."""
    return sum(1 for e in sweep.experiments.values() if not e.removed and e.status == FAILED and _last_lost(e))


def _last_lost(exp: Experiment) -> bool:
    last = last_attempt(exp)
    return last is not None and last.outcome == LOST


def _item_encoder() -> Callable[[Any], str]:
    """``json.dumps`` of one item, made once: ``JSONEncoder.encode`` builds the C encoder anew
    for every call, which adds up over 100,000 experiments."""
    from json.encoder import c_make_encoder, encode_basestring_ascii

    if c_make_encoder is None:  # an interpreter without the json accelerator
        return json.JSONEncoder().encode

    def refuse(value: Any) -> Any:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    encode = c_make_encoder(None, refuse, encode_basestring_ascii, None, ": ", ", ", False, False, True)
    return lambda item: "".join(encode(item, 0))


class Rows:
    """A long list in a JSON document whose items are made as they are written (``json_lines``):
    ``make(x)`` for each ``x`` of ``source``. Making them is much of the work of
    ``status --json`` at 100,000 experiments, and a second process can then share it. (A plain
    class, like the other records on ``pbtrun up``'s path: defining a dataclass costs start-up
    time at import.)"""

    __slots__ = ("make", "source")

    def __init__(self, source: Sequence[Any], make: Callable[[Any], Any]) -> None:
        self.source = source
        self.make = make


SPLIT_ROWS = 20_000  # from this many items on, a second process encodes half of them
CHUNK = 1000


def json_lines(document: dict[str, Any], key: str) -> Iterator[str]:
    """``document`` as JSON text, in pieces: indented, except that ``document[key]``, a long
    list (of experiments; a list or ``Rows``), comes last with one item per line. The json
    module indents only in pure Python, many times slower than its compact encoder, which
    shows at 100,000 experiments; and this layout is as easy to read and to grep. The text is
    ASCII (non-ASCII characters are escaped), as ``json.dumps`` writes it by default."""
    rest = {k: v for k, v in document.items() if k != key}
    head = json.dumps(rest, indent=2)[:-2] + ",\n" if rest else "{\n"
    rows = document[key]
    source, make = (rows.source, rows.make) if isinstance(rows, Rows) else (rows, None)
    if not source:
        yield head + f'  "{key}": []\n}}\n'
        return
    yield head + f'  "{key}": [\n'
    encode = _item_encoder()
    cut, aside = 0, None
    if len(source) >= SPLIT_ROWS:
        from pbtrun.ui.forkedwork import ForkedWork  # only for long lists: most callers never need it

        cut = len(source) // 2 // CHUNK * CHUNK
        if cut:  # (under two chunks there is no second half to give away)
            aside = ForkedWork.start(lambda: "".join(_item_lines(source[cut:], make, encode)).encode("ascii"))
    try:
        yield from _item_lines(source[: cut if aside else None], make, encode)
    except BaseException:  # the reader stopped (a closed pipe, Ctrl-C): so does the helper
        if aside is not None:
            aside.cancel()
        raise
    if aside is not None:  # a helper process encoded the second half meanwhile (two cores)
        text = aside.result()
        yield ",\n"
        yield from _item_lines(source[cut:], make, encode) if text is None else (text.decode("ascii"),)
    yield "\n  ]\n}\n"


def _item_lines(items: Sequence[Any], make: Callable[[Any], Any] | None, encode: Callable[[Any], str]) -> Iterator[str]:
    """The items, encoded, one per line, joined by commas (no separator before the first)."""
    for start in range(0, len(items), CHUNK):
        part = items[start : start + CHUNK]
        made = part if make is None else map(make, part)
        yield ("," + "\n" if start else "") + ",\n".join("    " + encode(item) for item in made)
