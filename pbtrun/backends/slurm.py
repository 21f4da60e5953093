"""The Slurm backend: each attempt a Slurm job (an array task, most often), tracked and resumable.

Submission: the attempts of a round go out as one ``sbatch --array`` per group of attempts that
ask for the same resources (split at the cluster's ``MaxArraySize``). Before ``sbatch`` runs,
a manifest listing the attempts (argv, env, cwd, log: what :mod:`pbtrun.backends.slurmjob`
runs inside the job) is written durably beside the sweep; every job carries the sweep's key in
its name and the manifest in its ``--comment``. After ``sbatch``, the job ids are appended to
``slurm/submitted.jsonl`` (fsync'd) before anything else is submitted, and reported through
:meth:`SlurmBackend.news` for the state. A crash between ``sbatch`` and that line leaves a job
whose comment names a manifest that holds the attempt's reference: :meth:`SlurmBackend.settle`
finds it through ``squeue`` and adopts it, so nothing is submitted twice.

Monitoring: one ``squeue`` for the whole sweep per ``poll_s``, filtered by the sweep's job
name; the true exit status comes from the attempt's log (its exit record, written by the job on
the shared file system), Slurm's state fills in what the log cannot say (a job cancelled before
it started, a node that failed). A ``squeue`` that fails or hangs is retried with back-off and
never taken for "the job is gone".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pbtrun.backends import logrecords, slurmjob, slurmtext
from pbtrun.backends.base import Ended, LaunchRequest, News, Outcome
from pbtrun.backends.fromlog import outcome_of
from pbtrun.backends.queued import QueuedBackend, ended_by_log, record_submission
from pbtrun.errors import SUBMIT_REFUSED, BackendError, BackendFault
from pbtrun.state.files import write_atomic
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import Attempt, Experiment, Observed, Seen, Sweep

TAG = "slurm-tag:"  # an attempt's reference until sbatch has given it a job id
CALL_TIMEOUT_S = 60.0  # a Slurm client call that takes longer counts as failed (the controller is down)
MAX_BACKOFF_S = 300.0
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}  # fmt: skip
# End states that say more than an exit status: kept on the attempt, shown by status.
NOTABLE = {"TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY", "CANCELLED", "DEADLINE", "BOOT_FAIL"}
SETTLE_POLLS = 2  # polls a job may be over in Slurm before its log's exit record counts as missing
GPUS = "from Slurm (CUDA_VISIBLE_DEVICES as the job gets it)"  # the log header's GPUs line


class Handle:
    __slots__ = ("exp_id", "job_id", "log", "name", "node", "over", "reason", "state", "tag")

    def __init__(self, exp_id: str, name: str, log: str, tag: str, job_id: str | None = None) -> None:
        self.exp_id, self.name, self.log, self.tag = exp_id, name, log, tag
        self.job_id = job_id
        self.state = "PENDING"
        self.reason = ""
        self.node = ""
        self.over = 0  # polls since Slurm said it is over, without an exit record in its log


class SlurmBackend(QueuedBackend):
    name = "slurm"

    def __init__(self, paths: SweepPaths) -> None:
        self.paths = paths
        self.sweep_dir = str(paths.dir.resolve())
        self.dir = os.path.join(self.sweep_dir, "slurm")
        self.options: dict[str, Any] = {}
        self.key = ""
        self.handles: dict[str, Handle] = {}  # by exp id
        self.ended: list[Ended] = []
        self.news_: list[News] = []
        self.next_poll = 0.0
        self.failures = 0
        self.max_array: int | None = None

    # ---------------------------------------------------------------- set-up

    def expect(self, runnable: int, max_parallel: int, settings: Mapping[str, Any] | None = None) -> None:
        self.options = dict(settings or {})
        self.key = str(self.options.get("key") or _key(self.sweep_dir))
        os.makedirs(self.dir, exist_ok=True)

    def reserve(self) -> str | None:
        return TAG + uuid.uuid4().hex

    # ---------------------------------------------------------------- submitting

    def launch(self, requests: Iterable[LaunchRequest]) -> list[Handle]:
        requests = list(requests)
        handles = [
            Handle(r.experiment.id, r.experiment.name, os.path.join(self.sweep_dir, r.attempt.log), r.attempt.ref or "")
            for r in requests
        ]
        for h in handles:
            self.handles[h.exp_id] = h
        by_need: dict[tuple[int, str], list[int]] = {}
        for i, r in enumerate(requests):
            need = r.experiment.spec.gpus_per_experiment or int(self.options.get("gpus_per_experiment") or 0)
            by_need.setdefault((need, r.cwd), []).append(i)
        for (need, cwd), members in by_need.items():
            size = self._max_array() if self.options.get("array", True) else 1
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                self._submit([requests[i] for i in chunk], [handles[i] for i in chunk], need, cwd)
        return handles

    def _submit(self, requests: Sequence[LaunchRequest], handles: Sequence[Handle], gpus: int, cwd: str) -> None:
        manifest_id = uuid.uuid4().hex[:12]
        manifest = os.path.join(self.dir, f"{manifest_id}.json")
        tasks = [slurmjob.task_of(r, self.sweep_dir, GPUS) for r in requests]
        document = {"tags": [h.tag for h in handles], "tasks": tasks}
        write_atomic(Path(manifest), json.dumps(document).encode())  # durable: settle finds the tags in it
        script = os.path.join(self.dir, f"{manifest_id}.sh")
        write_atomic(Path(script), self._script(manifest, gpus).encode())
        argv = ["sbatch", "--parsable", f"--job-name=pbtrun-{self.key}", f"--comment=pbtrun:{self.key}:{manifest_id}"]
        argv += [f"--output={self.dir}/%A_%a.out", f"--chdir={cwd}"]
        if self.options.get("array", True):
            throttle = self.options.get("max_submitted")
            argv.append("--array=" + slurmtext.array_spec(range(len(tasks)), throttle))
        argv.append(script)
        try:
            done = self._call(argv)
            job = slurmtext.parse_sbatch(done)
        except BackendError as exc:
            fault = BackendFault(SUBMIT_REFUSED, f"sbatch refused the submission of {{name}}: {exc.message}")
            self.ended += [(h.exp_id, Outcome(None, time.time(), started=False, fault=fault)) for h in handles]
            for h in handles:
                self.handles.pop(h.exp_id, None)
            return
        array = self.options.get("array", True)
        for i, h in enumerate(handles):
            h.job_id = f"{job}_{i}" if array else job
            self.news_.append(News(h.exp_id, h.job_id, None))
        entry = {"manifest": manifest_id, "job": job, "array": bool(array), "tags": document["tags"]}
        record_submission(self.dir, entry)
        self.next_poll = min(self.next_poll or time.monotonic(), time.monotonic() + 1.0)

    def _script(self, manifest: str, gpus: int) -> str:
        o = self.options
        lines = ["#!/bin/bash"]
        for key, flag in (("partition", "--partition"), ("account", "--account"), ("qos", "--qos"),
                          ("constraint", "--constraint"), ("cpus_per_task", "--cpus-per-task")):  # fmt: skip
            if o.get(key) is not None:
                lines.append(f"#SBATCH {flag}={o[key]}")
        if o.get("time_min") is not None:
            lines.append(f"#SBATCH --time={max(1, int(-(-float(o['time_min']) // 1)))}")
        if o.get("mem_gb") is not None:
            lines.append(f"#SBATCH --mem={max(1, round(float(o['mem_gb']) * 1024))}M")
        if gpus:
            lines.append(f"#SBATCH --gres=gpu:{gpus}")
        lines += [f"#SBATCH {arg}" for arg in o.get("extra_args") or ()]
        lines += list(o.get("preamble") or ())
        lines.append(f"exec {sys.executable} -m pbtrun.backends.slurmjob {manifest}")
        return "\n".join(lines) + "\n"

    def _max_array(self) -> int:
        if self.max_array is None:
            try:
                self.max_array = slurmtext.parse_max_array_size(self._call(["scontrol", "show", "config"]))
            except BackendError:
                self.max_array = slurmtext.DEFAULT_MAX_ARRAY_SIZE
        return self.max_array

    # ---------------------------------------------------------------- watching

    def collect(self, signals: Collection[int] = ()) -> list[Ended]:
        ended, self.ended = self.ended, []
        if not self.handles or time.monotonic() < self.next_poll:
            return ended
        try:
            states = self._squeue()
        except BackendError:
            self.failures += 1  # the controller is slow or down: never a reason to call a job failed
            self.next_poll = time.monotonic() + min(MAX_BACKOFF_S, self._poll_s() * 2**self.failures)
            return ended
        self.failures = 0
        for h in list(self.handles.values()):
            outcome = self._look(h, states)
            if outcome is not None:
                del self.handles[h.exp_id]
                ended.append((h.exp_id, outcome))
        self.next_poll = time.monotonic() + self._poll_s()
        return ended

    def _look(self, h: Handle, states: Mapping[str, slurmtext.JobState]) -> Outcome | None:
        found = logrecords.read_records(h.log)
        state = states.get(h.job_id or "")
        if found is not None and found[0] is not None:
            return self._recorded_end(h, found, state)
        if h.job_id is None:
            return None  # its id was never recorded (a crash at submission): its log will say its end
        if state is not None and state.state in ACTIVE:
            if (state.state, state.nodes) != (h.state, h.node):
                self.news_.append(News(h.exp_id, h.job_id, state.nodes or None))
            h.state, h.reason, h.node, h.over = state.state, state.reason, state.nodes, 0
            return None
        h.over += 1  # over in Slurm (or gone from squeue): its exit record may still be on its way
        if h.over < SETTLE_POLLS:
            return None
        if found is None and logrecords.abandon(h.log):
            return Outcome(None, time.time(), started=False)  # it never started (cancelled while queued)
        return Outcome(None, time.time())  # it started, and nothing says how it ended (a node failed)

    def _recorded_end(self, h: Handle, found: tuple, state: slurmtext.JobState | None) -> Outcome | None:
        """The end the job wrote in its log, with Slurm's last word on it where it has one."""
        if found[0].get("abandoned"):
            return Outcome(None, time.time(), started=False)
        if state is not None and state.state in ACTIVE and h.over < SETTLE_POLLS:
            h.over += 1  # Slurm's last word (TIMEOUT, PREEMPTED...) comes once the job has left
            return None
        if found[1] and found[1].get("node") and not h.node:  # it ran and ended between two polls
            self.news_.append(News(h.exp_id, h.job_id, str(found[1]["node"])))
        outcome = outcome_of(found[0], found[1])
        said = state.state if state is not None and state.state in NOTABLE else None
        return outcome._replace(end_state=said) if outcome is not None and said else outcome

    def _squeue(self) -> dict[str, slurmtext.JobState]:
        text = self._call(["squeue", "-h", "-t", "all", f"--name=pbtrun-{self.key}", "-o", slurmtext.SQUEUE_FORMAT])
        states: dict[str, slurmtext.JobState] = {}
        for state in slurmtext.parse_squeue(text):
            if state.array_job_id and state.task_ids:
                for task in state.task_ids:
                    states[f"{state.array_job_id}_{task}"] = state
            else:
                states[state.job_id] = state
        return states

    def _poll_s(self) -> float:
        return float(self.options.get("poll_s") or 10.0)

    def _call(self, argv: list[str]) -> str:
        env = {**os.environ, **slurmtext.BITSTR_ENV}
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=CALL_TIMEOUT_S, env=env, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"{argv[0]}: {exc}") from None
        if done.returncode != 0:
            raise BackendError(f"{argv[0]} exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    # ---------------------------------------------------------------- stopping and settling

    def signal(self, handle: Handle, sig: int) -> bool:
        if handle.job_id is None:
            return False
        if sig == signal.SIGKILL or handle.state != "RUNNING":
            argv = ["scancel", handle.job_id]
        else:
            argv = ["scancel", "--batch", f"--signal={signal.Signals(sig).name.removeprefix('SIG')}", handle.job_id]
        with contextlib.suppress(BackendError):
            self._call(argv)
        return True

    def settle(self, experiment: Experiment, attempt: Attempt) -> Handle | Outcome:
        log = os.path.join(self.sweep_dir, attempt.log)
        if (ended := ended_by_log(log)) is not None:
            return ended
        ref = attempt.ref or ""
        job_id = self._job_of(ref) if ref.startswith(TAG) else ref
        if not job_id:
            if logrecords.abandon(log):  # never submitted: and now it never will run
                return Outcome(None, time.time(), started=False)
            # Its job started this instant, under an id nothing recorded: watched by its log alone.
            handle = Handle(experiment.id, experiment.name, log, ref)
            self.handles[experiment.id] = handle
            return handle
        handle = Handle(experiment.id, experiment.name, log, ref if ref.startswith(TAG) else "", job_id)
        self.handles[experiment.id] = handle
        if job_id != ref:
            self.news_.append(News(experiment.id, job_id, None))
        self.next_poll = 0.0
        return handle

    def _job_of(self, tag: str) -> str | None:
        """The job an attempt went out as, from submitted.jsonl, or (a crash right after sbatch)
        from Slurm, by the manifest its comment names."""
        path = os.path.join(self.dir, "submitted.jsonl")
        with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if tag in entry["tags"]:
                        i = entry["tags"].index(tag)
                        return f"{entry['job']}_{i}" if entry.get("array", True) else str(entry["job"])
        for name in sorted(os.listdir(self.dir)) if os.path.isdir(self.dir) else ():
            if not name.endswith(".json"):
                continue
            with contextlib.suppress(OSError, ValueError), open(os.path.join(self.dir, name), encoding="utf-8") as f:
                tags = json.load(f)["tags"]
            if tag in tags:
                return self._job_by_comment(name.removesuffix(".json"), tags.index(tag))
        return None

    def _job_by_comment(self, manifest_id: str, index: int) -> str | None:
        comment = f"pbtrun:{self.key}:{manifest_id}"
        text = self._call(["squeue", "-h", "-t", "all", f"--name=pbtrun-{self.key}", "-o", slurmtext.SQUEUE_FORMAT])
        for state in slurmtext.parse_squeue(text):
            if state.comment == comment:
                job = state.array_job_id or state.job_id
                return f"{job}_{index}" if state.array_job_id else job
        return None

    def where(self, handle: Handle) -> str | None:
        if handle.state == "RUNNING" and handle.node:
            return f"job {handle.job_id} on {handle.node}"
        return f"job {handle.job_id}, {handle.state.lower()} ({handle.reason})" if handle.job_id else None

    def close(self) -> None:
        return None


def observe_jobs(paths: SweepPaths, sweep: Sweep) -> dict[str, Observed]:
    """What the attempts a sweep records as running are, while no scheduler watches them: their
    logs' exit records, and for the others one ``squeue`` for the whole sweep, read-only. A
    ``squeue`` that fails leaves them unknown, saying why."""
    backend = SlurmBackend(paths)
    backend.key = str(sweep.backend_settings.get("key") or _key(backend.sweep_dir))
    states: dict[str, slurmtext.JobState] | None = None
    observed: dict[str, Observed] = {}
    for exp in sweep.running():
        last = exp.last
        if last is None:
            continue
        found = logrecords.read_records(os.path.join(backend.sweep_dir, last.log))
        if found is not None and found[0] is not None and not found[0].get("abandoned"):
            outcome = outcome_of(found[0], found[1])
            if outcome is not None:
                observed[exp.id] = Observed(Seen.ENDED, outcome.returncode, outcome.ended_at)
                continue
        if states is None:
            try:
                states = backend._squeue()
            except BackendError as exc:
                why = f"Slurm did not answer ({exc.message.splitlines()[0][:80]})"
                return {**observed, **{e.id: Observed(Seen.UNKNOWN, detail=why) for e in sweep.running()}}
        state = states.get(last.ref or "")
        if state is not None and state.state in ACTIVE:
            where = f" on {state.nodes}" if state.nodes else f" ({state.reason})"
            observed[exp.id] = Observed(Seen.RUNNING, detail=f"Slurm: {state.state}{where}")
        elif state is not None:
            observed[exp.id] = Observed(Seen.UNKNOWN, detail=f"Slurm: {state.state}, no exit status yet")
        else:
            observed[exp.id] = Observed(Seen.UNKNOWN, detail="not in squeue")
    return observed


def _key(sweep_dir: str) -> str:
    """The sweep's name among Slurm's jobs (``pbtrun-<key>``): stable for its directory."""
    return uuid.uuid5(uuid.NAMESPACE_URL, sweep_dir).hex[:12]
