"""The command-template backend: each attempt one job of a queue that pbtrun drives through the
commands of the spec's ``[template]`` table (NGC, Run:ai, kubectl, a cloud's CLI).

Submission: before ``submit`` runs, a manifest holding the attempt (what
:mod:`pbtrun.backends.slurmjob` runs inside the job, as a Slurm job does) is written durably
beside the sweep, and ``{command}`` is the command line that runs it. The job id is read from
submit's output through ``job_id_pattern``, appended to ``template/submitted.jsonl`` (fsync'd)
before the next submit, and reported through :meth:`TemplateBackend.news` for the state.

Ends: the job writes the experiment's true exit status into its log's first line on the file
system the nodes share; that record is the primary source, and with no ``status`` command the
only one. A ``status`` command, asked once per job per poll, only adds what the log cannot say:
a job its queue reports over (``succeeded_pattern``, ``failed_pattern``) whose log still has no
exit record after a grace has lost its outcome, or never started if it has no log (the log is
then claimed, so it never will). A status command that fails or hangs is retried with back-off
and never taken for an end.

A crash between submit and the record of its job id leaves an attempt known only by its tag, and
a queue cannot be asked for jobs by tag. Resume then claims the attempt's log as abandoned: the
job, when its queue starts it, finds the claim and runs nothing (or, had it started first, it is
followed by its log alone). That job is the one orphan such a crash can leave; pbtrun never
learned its id, so it cannot cancel it, but it runs no experiment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from pbtrun.backends import logrecords, slurmjob
from pbtrun.backends.base import Ended, LaunchRequest, News, Outcome
from pbtrun.backends.fromlog import outcome_of
from pbtrun.backends.queued import QueuedBackend, ended_by_log, record_submission
from pbtrun.errors import SUBMIT_REFUSED, BackendError, BackendFault
from pbtrun.printable import clip
from pbtrun.spec import placeholders
from pbtrun.state.files import write_atomic
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import Attempt, Experiment

TAG = "template-tag:"  # an attempt's reference until submit has given it a job id
CALL_TIMEOUT_S = 60.0  # a queue command that takes longer counts as failed
MAX_BACKOFF_S = 300.0
SETTLE_POLLS = 2  # polls a job may be over before its log's missing exit record counts as lost
GPUS = "from the queue (CUDA_VISIBLE_DEVICES as the job gets it)"  # the log header's GPUs line
FAILED, SUCCEEDED, RUNNING = "failed", "succeeded", "running"


class Handle:
    __slots__ = ("cancelled", "cwd", "exp_id", "gpus", "job_id", "killed", "log", "name", "node", "over", "tag")

    def __init__(
        self, exp_id: str, name: str, log: str, tag: str, cwd: str | None, gpus: str, job_id: str | None = None
    ) -> None:
        self.exp_id, self.name, self.log, self.tag, self.cwd, self.gpus = exp_id, name, log, tag, cwd, gpus
        self.job_id = job_id
        self.node = ""  # where it runs, once its log's pid record says
        self.over = 0  # polls since it was seen over (status, or a kill sent) without an exit record
        self.cancelled = False  # the cancel command ran for the stop's first signal
        self.killed = False  # ... and for its SIGKILL: the job is surely going


def parse_job_id(pattern: str, output: str) -> str:
    """The job id in ``output`` (what submit printed): the group named ``id``, else the only group."""
    match = re.search(pattern, output)
    job_id = ((match["id"] if "id" in match.re.groupindex else match[1]) or "").strip() if match else ""
    if not job_id:
        raise BackendError(f"no job id in what submit printed (job_id_pattern {pattern!r}): {clip(output.strip())!r}")
    return job_id


def verdict(options: Mapping[str, Any], output: str) -> str | None:
    """What a status command's output says of its job: FAILED, SUCCEEDED, RUNNING, or None (no
    pattern matched: the job is taken to be still queued or running)."""
    for said, key in ((FAILED, "failed_pattern"), (SUCCEEDED, "succeeded_pattern"), (RUNNING, "running_pattern")):
        if options.get(key) and re.search(options[key], output):
            return said
    return None


class TemplateBackend(QueuedBackend):
    name = "template"

    def __init__(self, paths: SweepPaths) -> None:
        self.sweep_dir = str(paths.dir.resolve())
        self.dir = os.path.join(self.sweep_dir, "template")
        self.options: dict[str, Any] = {}
        self.handles: dict[str, Handle] = {}  # by exp id
        self.ended: list[Ended] = []
        self.news_: list[News] = []
        self.next_poll = 0.0
        self.next_status = 0.0  # a status command that failed is not asked again before this
        self.failures = 0
        self.poll_s = 10.0

    def expect(self, runnable: int, max_parallel: int, settings: Mapping[str, Any] | None = None) -> None:
        self.options = dict(settings or {})
        self.poll_s = float(self.options.get("poll_s") or 10.0)
        os.makedirs(self.dir, exist_ok=True)

    def reserve(self) -> str | None:
        return TAG + uuid.uuid4().hex

    # ---------------------------------------------------------------- submitting

    def launch(self, requests: Iterable[LaunchRequest]) -> list[Handle]:
        handles = []
        for r in requests:  # one at a time: each job id is recorded before the next submit
            log = os.path.join(self.sweep_dir, r.attempt.log)
            h = Handle(r.experiment.id, r.experiment.name, log, r.attempt.ref or "", r.cwd, self._gpus(r.experiment))
            handles.append(h)
            self.handles[h.exp_id] = h
            self._submit(r, h)
        return handles

    def _submit(self, request: LaunchRequest, h: Handle) -> None:
        manifest_id = uuid.uuid4().hex[:12]
        manifest = os.path.join(self.dir, f"{manifest_id}.json")
        document = {"tags": [h.tag], "tasks": [slurmjob.task_of(request, self.sweep_dir, GPUS)]}
        try:
            write_atomic(Path(manifest), json.dumps(document).encode())  # before submit: the job reads it
            command = shlex.join([sys.executable, "-m", "pbtrun.backends.slurmjob", manifest, "0"])
            h.job_id = parse_job_id(self.options["job_id_pattern"], self._run("submit", h, command=command))
        except (OSError, BackendError) as exc:
            # The queue may hold the job all the same (an id it printed unreadably): claim its
            # log, so it runs nothing. Had the job already claimed it, follow it by its log.
            if _claim(h.log):
                why = exc.message if isinstance(exc, BackendError) else f"{manifest}: {exc.strerror or exc}"
                fault = BackendFault(SUBMIT_REFUSED, f"the submission of {{name}} failed: {why}")
                self.ended.append((h.exp_id, Outcome(None, time.time(), started=False, fault=fault)))
                del self.handles[h.exp_id]
            return
        self.news_.append(News(h.exp_id, h.job_id, None))
        # A full disk must not lose the job: the news above records its id in the state, and the
        # state's own write failing is the scheduler's to handle.
        with contextlib.suppress(OSError):
            record_submission(self.dir, {"manifest": manifest_id, "job": h.job_id, "tag": h.tag, "cwd": h.cwd})
        self.next_poll = min(self.next_poll or time.monotonic(), time.monotonic() + self.poll_s)

    # ---------------------------------------------------------------- watching

    def collect(self, signals: Collection[int] = ()) -> list[Ended]:
        ended, self.ended = self.ended, []
        now = time.monotonic()
        if not self.handles or now < self.next_poll:
            return ended
        ask = "status" in self.options and now >= self.next_status
        for h in list(self.handles.values()):
            try:
                outcome = self._look(h, ask)
            except BackendError:
                self.failures += 1  # the queue is slow or down: never a reason to call a job over
                self.next_status = time.monotonic() + min(MAX_BACKOFF_S, self.poll_s * 2**self.failures)
                ask = False
                continue
            if outcome is not None:
                del self.handles[h.exp_id]
                ended.append((h.exp_id, outcome))
        self.next_poll = time.monotonic() + self.poll_s
        return ended

    def _look(self, h: Handle, ask: bool) -> Outcome | None:
        found = logrecords.read_records(h.log)
        if found is not None and found[1] and found[1].get("node") and not h.node:
            h.node = str(found[1]["node"])
            self.news_.append(News(h.exp_id, h.job_id, h.node))
        if found is not None and found[0] is not None:
            if found[0].get("abandoned"):
                return Outcome(None, time.time(), started=False)
            return outcome_of(found[0], found[1]) or Outcome(None, time.time())
        if ask and h.job_id is not None:
            said = verdict(self.options, self._run("status", h))
            self.failures = 0
            h.over = h.over + 1 if said in (FAILED, SUCCEEDED) else 0
        elif "status" not in self.options and h.killed:
            h.over += 1  # killed, and no status command to say more: its exit record is all there is
        if h.over < SETTLE_POLLS:
            return None
        if found is None and _claim(h.log):
            return Outcome(None, time.time(), started=False)  # it never started, and now never will
        return Outcome(None, time.time())  # it started, and nothing says how it ended

    def _run(self, key: str, h: Handle, command: str = "") -> str:
        """Run the ``key`` command of [template] for ``h``'s job; its output (stdout, then stderr)."""
        values = {"name": h.name, "command": command, "gpus": h.gpus, "sweep_dir": self.sweep_dir}
        values["job_id"] = h.job_id or ""
        argv = [placeholders.fill(word, values) for word in self.options[key]]
        try:
            done = subprocess.run(
                argv, cwd=h.cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=CALL_TIMEOUT_S, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"{key} ({argv[0]}): {exc}") from None
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise BackendError(f"{key} ({argv[0]}) exited with {done.returncode}: {clip(output.strip())}")
        return output

    def _gpus(self, exp: Experiment) -> str:
        """``{gpus}``: its group's gpus_per_experiment, else [scheduler]'s, else 0."""
        return str(exp.spec.gpus_per_experiment or self.options.get("gpus_per_experiment") or 0)

    # ---------------------------------------------------------------- stopping and settling

    def signal(self, handle: Handle, sig: int) -> bool:
        """Cancel the job. One still queued (no log yet) is claimed first: it can then never run
        the experiment, whatever the queue does, and ends as never started. One whose runner is
        starting (a log without its pid record) is asked again shortly, unless this is the kill:
        its runner passes the queue's signals on only once the record is written."""
        h = handle
        found = logrecords.read_records(h.log)
        if found is None and _claim(h.log):
            self._cancel(h)
            self.handles.pop(h.exp_id, None)
            self.ended.append((h.exp_id, Outcome(None, time.time(), started=False)))
            return True
        if h.job_id is None:
            return True  # it started without its id recorded: nothing can cancel it (see the module doc)
        if sig == signal.SIGKILL:
            h.killed = h.killed or self._cancel(h)
        elif not (found and found[1]):
            return False
        elif not h.cancelled:
            h.cancelled = self._cancel(h)
        return True

    def _cancel(self, h: Handle) -> bool:
        """Run the cancel command for ``h``'s job; whether it ran and succeeded."""
        if "cancel" not in self.options or h.job_id is None:
            return False  # without a cancel command, a job that runs is left to end by itself
        try:
            self._run("cancel", h)
        except BackendError:
            return False
        self.next_poll = min(self.next_poll, time.monotonic() + self.poll_s)
        return True

    def settle(self, experiment: Experiment, attempt: Attempt) -> Handle | Outcome:
        log = os.path.join(self.sweep_dir, attempt.log)
        if (ended := ended_by_log(log)) is not None:
            return ended
        ref = attempt.ref or ""
        entry = self._entry(ref)
        job_id = entry.get("job") or (ref if ref and not ref.startswith(TAG) else None)
        if job_id is None and _claim(log):  # submitted or not, it can never run now
            return Outcome(None, time.time(), started=False)
        tag = ref if ref.startswith(TAG) else ""
        handle = Handle(experiment.id, experiment.name, log, tag, entry.get("cwd"), self._gpus(experiment), job_id)
        self.handles[experiment.id] = handle
        if job_id is not None and job_id != ref:
            self.news_.append(News(experiment.id, job_id, None))
        self.next_poll = 0.0
        return handle

    def _entry(self, ref: str) -> dict[str, Any]:
        """What submitted.jsonl says of the job an attempt went out as (by its tag or job id)."""
        if not ref:
            return {}
        path = os.path.join(self.dir, "submitted.jsonl")
        with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if ref in (entry.get("tag"), entry.get("job")):
                        return entry
        return {}

    def where(self, handle: Handle) -> str | None:
        if handle.job_id is None:
            return "a job whose id was never recorded" if os.path.exists(handle.log) else None
        return f"job {handle.job_id} on {handle.node}" if handle.node else f"job {handle.job_id}"

    def close(self) -> None:
        return None


def _claim(log: str) -> bool:
    """Claim an attempt's log as abandoned, so that its job runs nothing; False if the job
    claimed it first. A log that cannot be written at all counts as claimed: the job, writing
    to the same file system, cannot claim it either, and so runs nothing."""
    try:
        return logrecords.abandon(log)
    except OSError:
        return True
