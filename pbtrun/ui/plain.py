"""The plain view of a run (:class:`PlainView`), for logs, pipes, ``nohup`` and ``--plain``. It
never loads rich: a run whose output is not a terminal starts without it."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from pbtrun.printable import printable
from pbtrun.state.records import Experiment, Sweep
from pbtrun.state.store import SweepPaths
from pbtrun.ui.output import guarded
from pbtrun.ui.summary import settings_line, summary_lines
from pbtrun.ui.tracker import Tracker, progress_words
from pbtrun.ui.words import attempt_word, duration, job_id

FLUSH_EVERY_S = 0.5
ETA_EVERY_S = 0.5


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
        return f"[{progress_words(self.tracker.counts, self._eta_s)}]"

    def begin(self, sweep: Sweep) -> None:
        self.began_at = self.clock()
        self.tracker.begin(sweep)
        self._line(settings_line(self.paths, sweep))

    def started(self, exp: Experiment, sweep: Sweep) -> None:
        self.tracker.started(exp, sweep)
        gpus = exp.last.gpus if exp.last else None
        where = f" on GPU {','.join(map(str, gpus))}" if gpus else ""
        if sweep.backend != "local":  # a job, queued until the cluster starts it
            job = job_id(exp.last, True) if exp.last else None
            self._line(f"submitted {exp.name}{f' as job {job}' if job else ''} {self._progress()}")
            return
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

    def waiting(self, reason: str | None) -> None:
        if reason is not None:  # its end shows as the next start
            self._line(f"waiting: {reason} {self._progress()}")

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
