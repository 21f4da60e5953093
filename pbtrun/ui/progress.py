"""Progress while ``up``/``resume`` run: a live view for terminals, plain lines otherwise, and the
summary both print at the end.

The scheduler calls the view from its loop, so every event only updates in-memory counters in
O(1) (:class:`Tracker`); nothing is rendered or read from disk there. The live view renders on
rich's refresh thread, at most ``refresh_per_second`` times a second however many events arrive,
and reads only the last few kilobytes of the running experiments' logs when it does.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, NamedTuple

from pbtrun.backends.logrecords import LOG_HEADER_PREFIXES
from pbtrun.printable import printable
from pbtrun.state.records import FAILED, INTERRUPTED, PENDING, RUNNING, SUCCEEDED, Attempt, Experiment, Settings, Sweep
from pbtrun.state.store import SweepPaths
from pbtrun.ui.words import (
    STYLES,
    SYMBOLS,
    active_counts,
    attempt_word,
    duration,
    last_attempt,
    lost_count,
    real_attempts,
    resume_hint,
    status_word,
)

RECENT_FAILURES = 3
SLOWEST = 3
TAIL_LINES = 5
FAILED_SHOWN = 10
TAIL_BYTES_PER_LINE = 2048
FLUSH_EVERY_S = 0.5
ETA_EVERY_S = 0.5
# The first experiments of a run all failing the same way, each soon after it started, is the
# sign of a command the app does not accept: said loudly, not left for the summary.
EARLY_ENDS = 3
EARLY_S = 60.0
_CONTROL = re.compile(  # sequences, then single controls: C0 (tab and newline are dealt with), DEL and C1
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` non-blank lines an experiment wrote to its log, reading only its end.

    A days-long run's log can be gigabytes; only its end matters here, so at most
    ``TAIL_BYTES_PER_LINE * count`` bytes are read. pbtrun's own header at the top of the log
    (its exit and pid records, ``# pbtrun:``, ``# cwd:``, ``# gpus:``, ``# argv:``) is left out: for a run that printed
    little, it would fill the tail and hide the one line that says what went wrong. A carriage
    return (a progress bar redrawing its line) ends a line too, and terminal escape codes are
    removed so a training script's colours cannot garble the view. Leading whitespace is kept.
    A missing or unreadable file has no lines.
    """
    limit = TAIL_BYTES_PER_LINE * max(count, 1)
    try:
        with open(path, "rb") as f:
            skip = _header_end(f)
            size = f.seek(0, os.SEEK_END)
            at = max(skip, size - limit)
            whole = at == skip  # the read begins at the start of a line
            if not whole:
                f.seek(at - 1)
                whole = f.read(1) in (b"\n", b"\r")
            f.seek(at)
            data = f.read(limit)
    except OSError:
        return []
    pieces = re.split(r"[\r\n]", data.decode(errors="replace"))
    if not whole:
        pieces = pieces[1:]  # the end of a longer line
    # Only the right side is stripped: the indentation of a traceback's lines is what makes it readable.
    cleaned = (_CONTROL.sub("", piece.replace("\t", " ")).rstrip() for piece in pieces)
    lines = [line for line in cleaned if line.strip()]
    return lines[-count:] if count else []


_HEADER_LINE_MAX = 1 << 20


def _header_end(f: IO[bytes]) -> int:
    """Where pbtrun's header ends in a log: after its first lines if they are the header's,
    each with its prefix in order, else 0. The program's own lines starting with ``#`` stay."""
    f.seek(0)
    end = 0
    for prefix in LOG_HEADER_PREFIXES:
        line = f.readline(_HEADER_LINE_MAX)
        if not (line.startswith(prefix) and line.endswith(b"\n")):
            return 0
        end += len(line)
    return end


def slots(settings: Settings) -> int:
    """How many experiments the sweep can run at once: ``max_parallel``, or fewer when pinned GPUs run out."""
    if settings.experiments_per_gpu > 0:
        return max(1, min(settings.max_parallel, len(settings.gpus) * settings.experiments_per_gpu))
    return max(1, settings.max_parallel)


# --------------------------------------------------------------------------- the tracker


class Running(NamedTuple):
    name: str
    gpus: tuple[int, ...] | None
    started_at: float
    log: Path


class Failure(NamedTuple):
    name: str
    word: str  # ``failed (3)``, ``timed out``, ``lost``
    log: Path
    retrying: bool


class Snapshot(NamedTuple):
    """What a view shows at one instant, copied out of the tracker so rendering needs no lock."""

    name: str
    counts: dict[str, int]
    total: int
    done: int
    running: list[Running]
    failures: list[Failure]
    eta_s: float | None


class Tracker:
    """Progress kept up to date by events, each in O(1): no pass over the sweep, which may hold
    100k experiments, except at ``begin`` and when the sweep grew (a spec merged while it runs).

    Events come from the scheduler's thread and snapshots are taken on rich's refresh thread,
    hence the lock; it is held only for a few dictionary operations.
    """

    def __init__(self, paths: SweepPaths) -> None:
        self.paths = paths
        self._lock = threading.Lock()
        self.name = ""
        self.slots = 1
        self._status: dict[str, str] = {}
        self._source: Sweep | None = None  # the sweep counted: a reload of the state is another one
        self._seen = 0
        self.counts: dict[str, int] = {}
        self.running: dict[str, Running] = {}
        self.failures: deque[Failure] = deque(maxlen=RECENT_FAILURES)
        self._took_s = [0.0, 0]  # sum and number of succeeded attempts' durations
        self._any_took_s = [0.0, 0]  # the same over every ended attempt, while none has succeeded
        self._early: list[Failure | None] = []  # how the first attempts to end in this run ended
        self._halts = False  # max_failures is set: no need to suggest it
        self._alarm: str | None = None

    def begin(self, sweep: Sweep) -> None:
        with self._lock:
            self.name = sweep.name
            self.slots = slots(sweep.settings)
            self._halts = sweep.settings.max_failures is not None
            self._recount(sweep)
            for exp in sweep.experiments.values():
                last = last_attempt(exp)
                if last is not None and last.duration_s is not None:
                    self._took(last.duration_s, exp.status == SUCCEEDED)
                if exp.status == RUNNING and exp.last is not None:  # adopted from an earlier scheduler
                    self.running[exp.id] = Running(
                        exp.name, exp.last.gpus, exp.last.started_at, self.paths.dir / exp.last.log
                    )

    def _recount(self, sweep: Sweep) -> None:
        self._status = {e.id: e.status for e in sweep.experiments.values() if not e.removed}
        self._source, self._seen = sweep, len(sweep.experiments)
        self.counts = dict.fromkeys((PENDING, RUNNING, SUCCEEDED, FAILED, INTERRUPTED), 0)
        for status in self._status.values():
            self.counts[status] += 1

    def _set(self, exp: Experiment, sweep: Sweep) -> None:
        # A merge by `pbtrun up` reaches the scheduler as a reloaded state, which may hold as many
        # experiments as before (one never run dropped, one added): counting on from the old
        # statuses would keep the dropped one forever ("3/4 done" for a sweep of 3).
        if sweep is not self._source or len(sweep.experiments) != self._seen:
            self._recount(sweep)
            return
        old = self._status.get(exp.id)
        if old is not None:
            self.counts[old] -= 1
        self._status[exp.id] = exp.status
        self.counts[exp.status] += 1

    def _took(self, seconds: float, succeeded: bool) -> None:
        pair = self._took_s if succeeded else self._any_took_s
        pair[0] += seconds
        pair[1] += 1

    def started(self, exp: Experiment, sweep: Sweep) -> None:
        last = exp.last
        if last is None:
            return
        with self._lock:
            self._set(exp, sweep)
            self.running[exp.id] = Running(exp.name, last.gpus, last.started_at, self.paths.dir / last.log)

    def ended(self, exp: Experiment, sweep: Sweep) -> Failure | None:
        """Record the end of ``exp``'s last attempt; the failure it was, if it was one."""
        last = exp.last
        with self._lock:
            self._set(exp, sweep)
            self.running.pop(exp.id, None)
            if last is None or last.duration_s is None:
                return None
            self._took(last.duration_s, exp.status == SUCCEEDED)
            failure = _failure(exp, last, self.paths)
            if failure is not None:
                self.failures.append(failure)
            self._watch_early(failure, last.duration_s)
            return failure

    def _watch_early(self, failure: Failure | None, duration_s: float) -> None:
        if len(self._early) >= EARLY_ENDS:
            return
        self._early.append(failure if duration_s <= EARLY_S else None)
        expected = min(EARLY_ENDS, sum(self.counts.values()))
        if expected < 2 or len(self._early) != expected:
            return
        words = {f.word if f is not None else None for f in self._early}
        if len(words) != 1 or None in words:
            return
        first = self._early[0]
        assert first is not None
        tail = tail_lines(first.log, 1)
        says = f"; {first.name}'s log ends with: {tail[0][:200]}" if tail else ""
        halt = "" if self._halts else " (max_failures = N in [scheduler] stops a sweep after N failures)"
        self._alarm = (
            f"the first {expected} experiments all {first.word} within {EARLY_S:g} s of their start{says}. "
            f"The command may be wrong for this app: look at `pbtrun logs {shlex.quote(str(self.paths.dir))} "
            f"--failed`{halt}."
        )

    def take_alarm(self) -> str | None:
        """A warning raised by the last :meth:`ended`, once."""
        alarm, self._alarm = self._alarm, None
        return alarm

    def mean_s(self) -> float | None:
        """Mean duration of finished experiments: the succeeded ones, or any while none has."""
        total, n = self._took_s if self._took_s[1] else self._any_took_s
        return total / n if n else None

    def typical_s(self, running: Sequence[Running], now: float) -> float | None:
        """How long an experiment is expected to take: the succeeded ones' mean duration.

        While none has succeeded, the mean of those that ended (failures), but never less than
        the longest a running one has lasted so far: a quick early crash says little about how
        long a run that works takes, and every running experiment already outlasts it.
        """
        mean = self.mean_s()
        if mean is None or self._took_s[1]:
            return mean
        return max([mean, *(now - r.started_at for r in running)])

    def snapshot(self, now: float) -> Snapshot:
        with self._lock:
            counts = dict(self.counts)
            running = sorted(self.running.values(), key=lambda r: r.started_at)
            failures = list(self.failures)
            typical = self.typical_s(running, now)
        total = sum(counts.values())
        done = counts[SUCCEEDED] + counts[FAILED]
        return Snapshot(
            self.name, counts, total, done, running, failures, _eta(typical, total - done, running, self.slots, now)
        )


def _eta(typical_s: float | None, left: int, running: Sequence[Running], slots: int, now: float) -> float | None:
    """Seconds until the sweep is done, or None where no honest figure exists.

    The work left (waiting experiments take ``typical_s`` each, running ones what it leaves
    them) spread over the slots, but never less than what is plainly still to come: the
    longest remainder of a running experiment, and, while some wait, the time until a slot
    frees plus one whole experiment. Where only experiments that outlast the estimate are
    left, when they end is anyone's guess: no ETA rather than ``ETA 0.0s``.
    """
    if typical_s is None or left <= 0:
        return None
    waiting = max(0, left - len(running))
    remaining = [max(0.0, typical_s - (now - r.started_at)) for r in running]
    floor = max(remaining, default=0.0)
    if waiting:
        slot_free_in = min(remaining) if len(running) >= slots else 0.0
        floor = max(floor, slot_free_in + typical_s)
    eta = max((waiting * typical_s + sum(remaining)) / slots, floor)
    return eta if eta > 0 else None


def _failure(exp: Experiment, last: Attempt, paths: SweepPaths) -> Failure | None:
    word = attempt_word(last)
    if word in ("succeeded", "stopped", "not started", "running"):
        return None
    return Failure(exp.name, word, paths.dir / last.log, retrying=exp.status == PENDING)


def progress_words(snap: Snapshot) -> str:
    """``12/40 done, 3 running, 1 failed, ETA 4m10s``: the progress line both views show."""
    return _words(snap.counts, snap.eta_s)


def _words(counts: dict[str, int], eta_s: float | None) -> str:
    done = counts[SUCCEEDED] + counts[FAILED]
    words = [f"{done}/{sum(counts.values())} done", f"{counts[RUNNING]} running"]
    if counts[FAILED]:
        words.append(f"{counts[FAILED]} failed")
    if eta_s is not None:
        words.append(f"ETA {duration(eta_s)}")
    return ", ".join(words)


# --------------------------------------------------------------------------- the summary


class Line(NamedTuple):
    """One line of the summary: plain text, with a style for terminals.

    ``truncate`` lines (log output) end in an ellipsis where they are too long; the others
    (paths, commands) wrap, so they can still be copied whole.
    """

    text: str
    style: str = ""
    truncate: bool = False


def summary_lines(paths: SweepPaths, sweep: Sweep, code: int, wall_s: float | None = None) -> list[Line]:
    """The end-of-run summary: counts, experiment time in all and per GPU, the slowest
    experiments, every failed one with the end of its log, and the command that continues."""
    counts = active_counts(sweep)
    lines = [_verdict(sweep, counts, code, wall_s)]
    lines += _time_lines(sweep)
    lines += _failed_lines(paths, sweep)
    lost = lost_count(sweep)
    if lost:
        lines.append(
            Line(
                f"{lost} lost: pbtrun cannot know how they ended (the machine or their processes went "
                "without an exit record); they may have succeeded, so they run again only with --retry-lost",
                "yellow",
            )
        )
    command = resume_hint(paths, counts, lost)
    if command is not None:
        lines.append(Line(f"resume with: {command}", "bold"))
    return lines


def _verdict(sweep: Sweep, counts: dict[str, int], code: int, wall_s: float | None) -> Line:
    how = {0: "finished", 1: "finished with failures", 130: "stopped"}.get(code, f"ended (exit code {code})")
    after = f" after {duration(wall_s)}" if wall_s is not None else ""
    parts = [f"{counts[s]} {s}" for s in (SUCCEEDED, FAILED, INTERRUPTED)]
    parts += [f"{counts[s]} {s}" for s in (RUNNING, PENDING) if counts[s]]
    style = "green" if code == 0 else "red" if code == 1 else "yellow"
    return Line(f"sweep {sweep.name} {how}{after}: {', '.join(parts)}", f"bold {style}")


def _time_lines(sweep: Sweep) -> list[Line]:
    total_s = 0.0
    per_gpu: dict[int, float] = {}
    slowest: list[tuple[float, str]] = []
    for exp in sweep.experiments.values():
        for attempt in real_attempts(exp):
            took = attempt.duration_s or 0.0
            total_s += took
            for gpu in attempt.gpus or ():
                per_gpu[gpu] = per_gpu.get(gpu, 0.0) + took
        last = last_attempt(exp)
        if exp.status == SUCCEEDED and last is not None and last.duration_s is not None:
            slowest.append((last.duration_s, exp.name))
    if not total_s:
        return []
    lines = [Line(f"experiment time: {duration(total_s)} in all attempts")]
    if per_gpu:
        gpus = ", ".join(f"GPU {g} {duration(s)}" for g, s in sorted(per_gpu.items()))
        lines.append(Line(f"per GPU: {gpus}"))
    top = sorted(slowest, reverse=True)[:SLOWEST]
    if top:
        lines.append(Line("slowest: " + ", ".join(f"{name} ({duration(s)})" for s, name in top)))
    return lines


def _failed_lines(paths: SweepPaths, sweep: Sweep) -> list[Line]:
    failed = [e for e in sweep.experiments.values() if e.status == FAILED and not e.removed]
    lines: list[Line] = []
    for exp in failed[:FAILED_SHOWN]:
        last = last_attempt(exp)
        log = paths.dir / last.log if last is not None else None
        took = f" after {duration(last.duration_s)}" if last is not None and last.duration_s else ""
        lines.append(Line(f"{SYMBOLS[FAILED]} {exp.name} {status_word(exp)}{took}", STYLES[FAILED]))
        if log is not None:
            lines.append(Line(f"  log: {log}"))
            lines += [Line(f"  | {text}", "dim", truncate=True) for text in tail_lines(log, TAIL_LINES)]
    if len(failed) > FAILED_SHOWN:
        where = shlex.quote(str(paths.dir))
        lines.append(Line(f"... and {len(failed) - FAILED_SHOWN} more failed: pbtrun status {where} --failed"))
    return lines


# --------------------------------------------------------------------------- the output stream


class Output:
    """The terminal or pipe a view writes to, which may go away while the sweep runs: the reader
    of a pipe quit (``pbtrun up | head -1``), the terminal was closed. The first write or flush
    that fails (EPIPE, EIO, any ``OSError``) ends the output for good, silently: nobody is left
    to read it, and the sweep must not die of it (its experiments would go unlaunched). The
    scheduler goes on to the end and the exit code keeps its meaning.

    The stream's descriptor is pointed at ``/dev/null`` then, so that what is still buffered in
    it is dropped there rather than failing again when the interpreter flushes it at exit (which
    would print a traceback and turn the exit code into 120). Everything else (``isatty``,
    ``fileno``, ``encoding``) is the stream's own.
    """

    def __init__(self, stream: IO[str], on_break: Callable[[], None] | None = None) -> None:
        self.stream = stream
        self.broken = False
        self.on_break = on_break

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self.stream.write(text)
            except OSError:
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except OSError:
                self._break()

    def _break(self) -> None:
        self.broken = True
        try:
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no descriptor (a StringIO), or closed
            pass
        if self.on_break is not None:
            self.on_break()

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


def guarded(stream: IO[str], on_break: Callable[[], None] | None = None) -> Output:
    """``stream`` as an :class:`Output` (itself if it is one already)."""
    if isinstance(stream, Output):
        if on_break is not None:
            previous = stream.on_break
            stream.on_break = on_break if previous is None else lambda: (previous(), on_break())
        return stream
    return Output(stream, on_break)


# --------------------------------------------------------------------------- plain lines


class PlainView:
    """Progress as plain timestamped lines, one per start, end and message: for logs, pipes,
    ``nohup`` and ``--plain``. No escape code is ever written.

    Lines are flushed at most every ``FLUSH_EVERY_S`` (a thread flushes the last ones), so a
    burst of thousands of events costs no write per event and no line waits longer than that.
    The thread is started once and sleeps until lines are pending (nothing wakes it while
    nothing happens): a timer per burst would start a thread in the middle of every burst,
    which holds up the refills of the slots that end next.
    """

    def __init__(
        self, paths: SweepPaths, stream: IO[str] | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.paths = paths
        self.out = guarded(stream if stream is not None else sys.stdout)  # a closed pipe stops only the output
        self.clock = clock
        self.tracker = Tracker(paths)
        self.began_at: float | None = None
        self._lock = threading.Condition()  # the flushing thread writes from its own thread
        self._flushed_at = 0.0
        self._due: float | None = None  # when the lines written since the last flush are flushed
        self._flusher: threading.Thread | None = None
        self._closed = False
        self._eta_at, self._eta_s = -ETA_EVERY_S, None
        self._stamp_second, self._stamp = -1, ""

    def _line(self, text: str, continued: bool = False) -> None:
        second = int(self.clock())
        if second != self._stamp_second:
            self._stamp_second, self._stamp = second, time.strftime("%H:%M:%S", time.localtime(second))
        stamp = self._stamp
        with self._lock:
            # One event, one line: names and values from a spec or state cannot break it or reach
            # the terminal as escape sequences.
            self.out.write(f"{' ' * len(stamp) if continued else stamp}  {printable(text)}\n")
            if self._closed or time.monotonic() - self._flushed_at >= FLUSH_EVERY_S:
                self._flush_locked()
            elif self._due is None:
                self._due = self._flushed_at + FLUSH_EVERY_S
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_when_due, name="pbtrun-flush", daemon=True)
                    self._flusher.start()
                else:
                    self._lock.notify()

    def _flush_when_due(self) -> None:
        with self._lock:
            while not self._closed:
                if self._due is None:
                    self._lock.wait()
                elif (left := self._due - time.monotonic()) > 0:
                    self._lock.wait(left)
                else:
                    self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._due = None
        self._flushed_at = time.monotonic()
        self.out.flush()

    def _progress(self) -> str:
        """The progress words for a line. The counts are exact; the ETA, which needs a look at
        every running experiment, is worked out again at most every ``ETA_EVERY_S``: a line per
        event must cost next to nothing when a thousand experiments end in a second."""
        now = self.clock()
        if now - self._eta_at >= ETA_EVERY_S:
            self._eta_at, self._eta_s = now, self.tracker.snapshot(now).eta_s
        return f"[{_words(self.tracker.counts, self._eta_s)}]"

    def begin(self, sweep: Sweep) -> None:
        self.began_at = self.clock()
        self.tracker.begin(sweep)
        self._line(settings_line(self.paths, sweep))

    def started(self, exp: Experiment, sweep: Sweep) -> None:
        self.tracker.started(exp, sweep)
        gpus = exp.last.gpus if exp.last else None
        where = f" on GPU {','.join(map(str, gpus))}" if gpus else ""
        self._line(f"started   {exp.name}{where} {self._progress()}")

    def ended(self, exp: Experiment, sweep: Sweep) -> None:
        failure = self.tracker.ended(exp, sweep)
        last = exp.last
        took = duration(last.duration_s if last else None)
        if failure is None:
            word = attempt_word(last) if last else "ended"
            self._line(f"{word:<9} {exp.name} after {took} {self._progress()}")
            return
        retry = f", retrying (attempt {last.number + 1})" if failure.retrying and last else ""
        self._line(f"{failure.word.upper():<9} {exp.name} after {took}{retry}, log: {failure.log} {self._progress()}")
        if (alarm := self.tracker.take_alarm()) is not None:
            self._line(f"WARNING   {alarm}")

    def message(self, text: str) -> None:
        self._line(text)

    def close(self) -> None:
        """Flush what is pending and let the flushing thread end; the same call as
        :meth:`LiveView.close`, for the error path."""
        with self._lock:
            self._flush_locked()
            self._closed = True
            self._lock.notify()

    def finish(self, sweep: Sweep, code: int) -> None:
        wall_s = None if self.began_at is None else self.clock() - self.began_at
        for n, line in enumerate(summary_lines(self.paths, sweep, code, wall_s)):
            self._line(line.text, continued=n > 0)
        self.close()


def settings_line(paths: SweepPaths, sweep: Sweep) -> str:
    s = sweep.settings
    pinned = s.experiments_per_gpu > 0
    gpus = f"GPUs {','.join(map(str, s.gpus))} x {s.experiments_per_gpu}" if pinned else "GPUs not pinned"
    return (
        f"sweep {sweep.name}: {_count(len(sweep.experiments), 'experiment')}, {len(sweep.runnable())} to run; "
        f"max_parallel {s.max_parallel}, {gpus}; dir {paths.dir}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
