"""Benchmark pbtrun against the tools it replaces, on the workloads of issue 6.

    python benchmarks/run.py [--reps 5] [--quick] [--idle] [--scale] [--old-launcher PATH]
                             [--only W1,W2,...] [--runners pbtrun,xargs,...] [--out benchmarks/results.md]

Installs nothing. Runs pbtrun (``python -m pbtrun`` of this interpreter) and whichever peers are
installed: ``xargs -P 8`` always; GNU parallel, task-spooler and simple_gpu_scheduler when found;
the old Sample Factory / IsaacGymEnvs launcher only with ``--old-launcher``. Each workload runs
``--reps`` times, runners interleaved (rep 1: every runner, rep 2: every runner, ...), each run in
a fresh temporary directory that is removed afterwards. benchmarks/README.md says what each
number means and how it is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import math
import os
import platform
import resource
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SLOTS = 8
UNEVEN_LONG_N = 36
UNEVEN_TAIL_N = 48
NUM_GPUS = 4
PER_GPU = 2
STARTUP_SAMPLES = 10
STATUS_SAMPLES = 3
DRAIN_GRACE_S = 5.0
SETTLE_S = 1.0  # after a run is synced, before the next starts
STDERR = "runner.stderr"  # a runner's stderr, in its run dir
PR_SET_CHILD_SUBREAPER = 36
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

HERE = Path(__file__).resolve().parent
PBTRUN = [sys.executable, "-m", "pbtrun"]


# --------------------------------------------------------------------------- sizes and records


@dataclass(frozen=True)
class Sizes:
    """How big each workload is: the issue's sizes, or tiny ones for ``--quick``."""

    w1_jobs: int = 1_000
    w2_jobs: int = 200
    w2_sleep_s: float = 0.2
    w3_jobs: int = 8
    w3_sleep_s: float = 20.0
    w4_jobs: int = 400
    w4_sleep_s: float = 0.05
    idle_sleep_s: float = 85.0  # the idle window is 20 s .. 80 s: the job must outlive it
    idle_from_s: float = 20.0
    idle_to_s: float = 80.0
    scale_jobs: int = 100_000
    uneven_unit_s: float = 1.0  # the uneven shapes' durations are multiples of it
    timeout_s: float = 900.0  # per run; scale runs get scale_timeout_s

    @property
    def scale_timeout_s(self) -> float:
        return max(self.timeout_s, self.scale_jobs / 20)

    @property
    def w2_ideal_s(self) -> float:
        return math.ceil(self.w2_jobs / SLOTS) * self.w2_sleep_s


QUICK = Sizes(
    w1_jobs=20,
    w2_jobs=16,
    w3_sleep_s=1.0,
    w4_jobs=16,
    idle_sleep_s=4.0,
    idle_from_s=1.0,
    idle_to_s=3.0,
    scale_jobs=2_000,
    uneven_unit_s=0.1,
    timeout_s=120.0,
)


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    key: str
    label: str  # formatted with the Sizes' fields
    fmt: str  # how a value is shown, e.g. "{:.2f}"
    ratio: str | None = None  # pbtrun ÷ xargs per repetition, of the "wall" time or of the "value"


ROWS = [
    Row("W1", "W1: {w1_jobs:,} × `/bin/true`, jobs/s", "{:,.0f}", "wall"),
    Row("W2", "W2: {w2_jobs:,} × `sleep {w2_sleep_s:g}`, efficiency (ideal {w2_ideal_s:g} s ÷ wall)", "{:.3f}", "wall"),
    Row("W3cpu", "W3: {w3_jobs} × `sleep {w3_sleep_s:g}`, runner's own CPU ms (jobs excluded)", "{:,.0f}", "value"),
    Row("W3rss", "W3: {w3_jobs} × `sleep {w3_sleep_s:g}`, runner's peak RSS MB", "{:.1f}", "value"),
    Row("W3main", "W3: its main process alone, CPU ms (10 ms ticks)", "{:,.0f}"),
    Row("W4", "W4: {w4_jobs:,} GPU-pinned {w4_sleep_s:g} s jobs, wall ÷ xargs wall", "{:.2f}", "wall"),
    Row("W4place", "W4: placement invariants (≤ 2 per GPU, ≤ 8 in all, every job once)", "{}"),
    Row("idle", "idle: pbtrun's CPU ms, {idle_from_s:g} s to {idle_to_s:g} s into `sleep {idle_sleep_s:g}`", "{:.1f}"),
    Row("help", "start-up: `pbtrun --help`, ms (median of 10)", "{:.0f}"),
    Row("status", "start-up: `pbtrun status` (a small train dir), ms (median of 10)", "{:.0f}"),
    Row("U_long", "uneven: one 6 u job among {uneven_long_n} short ones (0.5 u, 1.5 u), makespan s", "{:.3f}", "value"),
    Row("U_tail", "uneven: a heavy tail ({uneven_tail_n} jobs, 0.2 u to 6 u, Pareto), makespan s", "{:.3f}", "value"),
    Row("U_last", "uneven: long jobs last (40 × 0.5 u, then 4 × 4 u), makespan s", "{:.3f}", "value"),
    Row("S_dry", "scale: `pbtrun up --dry-run` of {scale_jobs:,} experiments (the compile), s", "{:.2f}"),
    Row("S_plan", "scale: `pbtrun plan --json` of {scale_jobs:,} experiments, s", "{:.2f}"),
    Row("S_up", "scale: W1 at {scale_jobs:,} × `/bin/true`, jobs/s", "{:,.0f}", "wall"),
    Row("S_rss", "scale: pbtrun's peak RSS at {scale_jobs:,}, MB", "{:.0f}"),
    Row("S_status", "scale: `pbtrun status` (train dir summary) at {scale_jobs:,}, s", "{:.2f}"),
    Row("S_table", "scale: `pbtrun status SWEEP` (the table) at {scale_jobs:,}, s", "{:.2f}"),
    Row("S_json", "scale: `pbtrun status SWEEP --json` at {scale_jobs:,}, s", "{:.2f}"),
]
ROW = {row.key: row for row in ROWS}


@dataclass(frozen=True)
class Result:
    """One runner's number on one row in one repetition; ``value`` None means the run failed."""

    row: str
    runner: str
    rep: int
    value: float | None
    wall_s: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Job:
    """What every runner runs ``count`` times: exactly this argv, nothing appended."""

    argv: tuple[str, ...]
    count: int
    comm: str  # the process name of a running job, to tell jobs from runner processes
    pinned: bool = False  # one fake GPU each, PER_GPU per GPU


@dataclass(frozen=True)
class Invocation:
    """How a runner is started for one run."""

    argv: list[str]
    cwd: Path
    stdin: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ended:
    """How a started runner ended (its main process and every descendant reaped)."""

    wall_s: float  # from just before the start to the main process's exit
    returncode: int | None  # None: killed at the time limit
    main_cpu_ms: float | None  # the main process alone (/proc stat, whole clock ticks)
    tree_cpu_ms: float  # the main process and every descendant, jobs included (wait4 rusage, µs)
    stragglers: int  # descendants still alive DRAIN_GRACE_S after the main process exited
    stderr_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def note(self) -> str:
        """What went wrong, or ""."""
        problems = [] if self.ok else ["timed out" if self.returncode is None else f"exit {self.returncode}"]
        if not self.ok and self.stderr_tail.strip():
            problems.append(self.stderr_tail.strip().splitlines()[-1])
        if self.stragglers:
            problems.append(f"{self.stragglers} process(es) outlived it by {DRAIN_GRACE_S:g} s and were killed")
        return "; ".join(problems)


@dataclass(frozen=True)
class Measurement:
    """A run, with what the sampler saw while it ran."""

    ended: Ended
    job_cpu_ms: float  # the jobs' share of tree_cpu_ms, from /proc (0 when not sampled)
    peak_rss_mb: float | None  # the largest VmHWM among runner processes (None when not sampled)

    @property
    def runner_cpu_ms(self) -> float:
        return self.ended.tree_cpu_ms - self.job_cpu_ms


# --------------------------------------------------------------------------- processes


def become_subreaper() -> None:
    """Orphans of a run (the task-spooler server, helpers that outlive their parent) are
    re-parented to this process, so they are reaped here and their CPU time is counted."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    start: int  # clock ticks since boot: pid + start name one process


def read_proc(pid: int) -> ProcInfo | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    close = data.rfind(b")")
    fields = data[close + 2 :].split()
    comm = data[data.find(b"(") + 1 : close].decode(errors="replace")
    return ProcInfo(pid, int(fields[1]), comm, int(fields[19]))


def descendants(root: int) -> list[ProcInfo]:
    """Every process under ``root``, zombies included, from one walk of /proc."""
    children: dict[int, list[ProcInfo]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (info := read_proc(int(name))) is not None:
            children.setdefault(info.ppid, []).append(info)
    found: list[ProcInfo] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def runtime_ns(pid: int) -> int:
    """CPU time of a live process, all threads, in ns (/proc/PID/task/*/schedstat); 0 if gone."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total


def hwm_kb(pid: int) -> int:
    """Peak resident set size of a live process (VmHWM) in kB; 0 if gone or a zombie."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Sampler:
    """Samples the processes under this one every ``interval_s`` (in a thread), or never (None).

    A job (a process named ``job_comm``) keeps the largest CPU time seen: a job spends its CPU
    starting up, so the last sample, taken while it sleeps, holds nearly all of it. Every other
    process is the runner's, and contributes its peak RSS.
    """

    def __init__(self, job_comm: str, interval_s: float | None) -> None:
        self.job_comm = job_comm
        self.interval_s = interval_s
        self.job_ns: dict[tuple[int, int], int] = {}
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        if self.interval_s:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.interval_s:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        for info in descendants(os.getpid()):
            if info.comm == self.job_comm:
                key = (info.pid, info.start)
                self.job_ns[key] = max(self.job_ns.get(key, 0), runtime_ns(info.pid))
            else:
                self.peak_kb = max(self.peak_kb, hwm_kb(info.pid))


def runner_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    # Some sandboxes set it, users normally don't: without it Python caches bytecode for pbtrun
    # as it would for them, instead of compiling pbtrun from source at every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def start(inv: Invocation) -> tuple[subprocess.Popen, float]:
    """Start a runner, its stdout discarded, its stderr in the run dir: (process, start time)."""
    with open(inv.stdin or os.devnull, "rb") as stdin, open(inv.cwd / STDERR, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            inv.argv, cwd=inv.cwd, env=runner_env(inv.env), stdin=stdin, stdout=subprocess.DEVNULL, stderr=err
        )
    return proc, started


def finish(proc: subprocess.Popen, started: float, timeout_s: float, where: Path) -> Ended:
    """Wait for the runner's exit (a pidfd: no polling), then reap it and everything it left."""
    exited = wait_exit(proc.pid, timeout_s)
    wall_s = time.perf_counter() - started
    main_cpu_ms = zombie_cpu_ms(proc.pid) if exited else None
    if not exited:
        kill_descendants()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    orphans_ms, stragglers = drain()
    return Ended(
        wall_s=wall_s,
        returncode=proc.returncode if exited else None,
        main_cpu_ms=main_cpu_ms,
        tree_cpu_ms=usage_ms(usage) + orphans_ms,
        stragglers=stragglers,
        stderr_tail=(where / STDERR).read_text(errors="replace")[-600:],
    )


def wait_exit(pid: int, timeout_s: float) -> bool:
    """Block until ``pid`` exits (left as a zombie, not reaped) or the time runs out."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return bool(ready)
    finally:
        os.close(fd)


def zombie_cpu_ms(pid: int) -> float | None:
    """A zombie's own CPU time (utime + stime, whole clock ticks), read before it is reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * 1000 / CLOCK_TICKS


def usage_ms(usage: resource.struct_rusage) -> float:
    return (usage.ru_utime + usage.ru_stime) * 1000


def kill_descendants() -> None:
    """SIGKILL every process left under this one, by pid (each was started by a run)."""
    for info in descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(info.pid, signal.SIGKILL)


def drain() -> tuple[float, int]:
    """Reap every descendant left (orphans re-parented here): (their CPU ms, how many lingered).

    Whatever still runs DRAIN_GRACE_S after the run's main process exited is killed and counted.
    """
    cpu_ms, deadline, lingered = 0.0, time.monotonic() + DRAIN_GRACE_S, 0
    while True:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return cpu_ms, lingered
        if pid:
            cpu_ms += usage_ms(usage)
        elif time.monotonic() > deadline:
            lingered = max(lingered, len(descendants(os.getpid())))
            kill_descendants()
            time.sleep(0.05)
        else:
            time.sleep(0.01)


def measure(inv: Invocation, timeout_s: float, job_comm: str = "", sample_s: float | None = None) -> Measurement:
    """Run ``inv`` to its end, sampling its processes every ``sample_s`` if given."""
    with Sampler(job_comm, sample_s) as sampler:
        proc, started = start(inv)
        ended = finish(proc, started, timeout_s, inv.cwd)
    peak = sampler.peak_kb / 1024 if sample_s else None
    return Measurement(ended, sum(sampler.job_ns.values()) / 1e6, peak)


_RUNS_BASE: list[Path] = []  # the one directory all runs of this benchmark are made in


@contextlib.contextmanager
def run_dir() -> Iterator[Path]:
    """A fresh directory for one run, under the system temp dir (so train dirs share /tmp's
    filesystem), kept until the whole benchmark ends (``remove_runs``).

    Not removed after the run: ext4 does not hand out an inode freed in the last half minute or
    so (``recently_deleted`` in ``find_inode_bit``), and skipping past thousands of them costs
    each later file creation in that block group about half a millisecond of CPU here (perf:
    a third of the CPU of a pbtrun W1 run, 0.6 ms per log file against 0.08 ms once 35 s have
    passed). Deleting each run's thousand files made every following run that creates files pay
    for its predecessors, which no user's sweep does. After each run the file system is synced
    and left alone for a second, so one run's writeback does not land in the next."""
    if not _RUNS_BASE:
        _RUNS_BASE.append(Path(tempfile.mkdtemp(prefix="pbtrun-bench-")))
    path = Path(tempfile.mkdtemp(prefix="run-", dir=_RUNS_BASE[0]))
    try:
        yield path
    finally:
        os.sync()
        time.sleep(SETTLE_S)


def remove_runs() -> None:
    """Remove every run's directory, once the measurements are over."""
    for base in _RUNS_BASE:
        shutil.rmtree(base, ignore_errors=True)
    _RUNS_BASE.clear()


def lines_file(path: Path, lines: Iterable[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def quiet(argv: Sequence[str], timeout_s: float = 10) -> subprocess.CompletedProcess | None:
    """Run a short command for its output; None if it cannot run."""
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


# --------------------------------------------------------------------------- runners


class Runner:
    """A tool that runs N jobs on SLOTS slots. Subclasses say how it is started for a job."""

    name = ""
    column = ""

    def problem(self) -> str | None:
        """Why it cannot run here, or None."""
        return None

    def version(self) -> str:
        return self.name

    def supports(self, job: Job) -> bool:
        return True

    def invocation(self, job: Job, where: Path) -> Invocation:
        raise NotImplementedError


def sweep_toml(argv: Sequence[str], group: str, pinned: bool, top: str = "") -> str:
    """A pbtrun spec whose experiments run exactly ``argv`` (no name or directory arguments),
    and ``top``, more top-level keys."""
    gpus = f"num_gpus = {NUM_GPUS}\nexperiments_per_gpu = {PER_GPU}" if pinned else "num_gpus = 0"
    return (
        f'name = "bench"\ncommand = {json.dumps(list(argv))}\n'
        f'experiment_arg_name = ""\nexperiment_dir_arg_name = ""\n{top}\n'
        f"[scheduler]\nmax_parallel = {SLOTS}\n{gpus}\n\n[[experiments]]\n{group}\n"
    )


class Pbtrun(Runner):
    name = column = "pbtrun"

    def version(self) -> str:
        done = quiet([*PBTRUN, "--version"])
        text = done.stdout.strip() if done and done.returncode == 0 else "pbtrun"
        return f"{text} ({pbtrun_source()})"

    def invocation(self, job: Job, where: Path) -> Invocation:
        (where / "sweep.toml").write_text(sweep_toml(job.argv, f'name = "w"\nrepeat = {job.count}', job.pinned))
        return Invocation([*PBTRUN, "up", "sweep.toml", "--plain"], where)


def numbered(where: Path, count: int) -> Path:
    return lines_file(where / "jobs.txt", map(str, range(count)))


class Xargs(Runner):
    name, column = "xargs", "`xargs -P 8`"

    def problem(self) -> str | None:
        return None if shutil.which("xargs") else "xargs not found"

    def version(self) -> str:
        done = quiet(["xargs", "--version"])
        return done.stdout.splitlines()[0] if done and done.stdout else "xargs"

    def invocation(self, job: Job, where: Path) -> Invocation:
        # -I{} with no {} in the command: one job per input line, nothing appended to its argv.
        slot = ["--process-slot-var=BENCH_SLOT"] if job.pinned else []
        return Invocation(["xargs", "-P", str(SLOTS), "-I{}", *slot, *job.argv], where, numbered(where, job.count))


class GnuParallel(Runner):
    name, column = "parallel", "GNU parallel"

    def problem(self) -> str | None:
        done = quiet(["parallel", "--version"])
        return None if done and done.stdout.startswith("GNU parallel") else "GNU parallel not installed"

    def version(self) -> str:
        done = quiet(["parallel", "--version"])
        return done.stdout.splitlines()[0] if done and done.stdout else "GNU parallel"

    def invocation(self, job: Job, where: Path) -> Invocation:
        # -N0: one job per input line, no argument inserted; {%} is the job's slot (1..8).
        slot = ["env", "BENCH_SLOT={%}"] if job.pinned else []
        argv = ["parallel", "--will-cite", "-j", str(SLOTS), "-N0", *slot, *job.argv]
        return Invocation(argv, where, numbered(where, job.count))


class TaskSpooler(Runner):
    """task-spooler with a private server (TS_SOCKET in the run dir), started and killed per run.

    Each queued job is a client process that waits on the server, so submitting counts too."""

    name, column = "tsp", "task-spooler"

    def __init__(self) -> None:
        self.exe, self.banner = None, ""
        for exe in ("tsp", "ts"):  # moreutils has a `ts` too: check that it is task-spooler
            path = shutil.which(exe)
            done = quiet([path, "-V"], timeout_s=5) if path else None
            text = f"{done.stdout}{done.stderr}" if done else ""
            if "task spooler" in text.lower():
                self.exe, self.banner = path, text.splitlines()[0].split(" - ")[0]
                break

    def problem(self) -> str | None:
        return None if self.exe else "task-spooler (tsp) not installed"

    def version(self) -> str:
        return self.banner

    def supports(self, job: Job) -> bool:
        return not job.pinned  # it has no GPU pinning of its own (this version)

    def invocation(self, job: Job, where: Path) -> Invocation:
        tsp, cmd = shlex.quote(self.exe or "tsp"), shlex.join(job.argv)
        script = f"""\
{tsp} -S {SLOTS} >/dev/null
i=0
while [ "$i" -lt {job.count} ]; do {tsp} -n {cmd} >/dev/null; i=$((i + 1)); done
# The last job has ended, so every job has started (FIFO): then wait for those still running.
{tsp} -w >/dev/null
for id in $({tsp} -l | awk '$2 == "running" || $2 == "queued" {{ print $1 }}'); do {tsp} -w "$id" >/dev/null; done
{tsp} -K
"""
        (where / "tsp.sh").write_text(script)
        env = {"TS_SOCKET": str(where / "ts.socket"), "TMPDIR": str(where), "TS_SLOTS": str(SLOTS)}
        return Invocation(["sh", str(where / "tsp.sh")], where, env=env)


class SimpleGpuScheduler(Runner):
    """The PyPI package's CLI: one job per listed GPU id at a time, commands read from stdin."""

    name, column = "sgs", "simple_gpu_scheduler"

    def __init__(self) -> None:
        sibling = Path(sys.executable).parent / "simple_gpu_scheduler"  # not a version manager's shim
        self.exe = str(sibling) if sibling.exists() else shutil.which("simple_gpu_scheduler")

    def problem(self) -> str | None:
        return None if self.exe else "simple_gpu_scheduler not installed"

    def version(self) -> str:
        try:
            from importlib.metadata import version

            return f"simple_gpu_scheduler {version('simple_gpu_scheduler')}"
        except ImportError:
            return "simple_gpu_scheduler"

    def invocation(self, job: Job, where: Path) -> Invocation:
        # Each GPU id listed twice gives it two slots; unpinned, eight ids are simply eight slots.
        ids = [str(g) for g in range(NUM_GPUS) for _ in range(PER_GPU)] if job.pinned else list(map(str, range(SLOTS)))
        commands = lines_file(where / "commands.txt", [shlex.join(job.argv)] * job.count)
        return Invocation([self.exe or "simple_gpu_scheduler", "--gpus", *ids], where, stdin=commands)


class OldLauncher(Runner):
    """Sample Factory's or IsaacGymEnvs' ``launcher.run --backend=processes --pause_between=0``.

    PATH goes on PYTHONPATH and must hold ``sample_factory/launcher/`` or
    ``isaacgymenvs/pbt/launcher/``. The launcher appends ``--i=N --experiment=... --train_dir=...``
    to each command, so the job runs through a one-line script that ``exec``s it unchanged.
    """

    name, column = "old", "old launcher (pause 0)"
    PACKAGES = ("sample_factory.launcher", "isaacgymenvs.pbt.launcher")

    def __init__(self, path: Path | None) -> None:
        self.path = path.resolve() if path else None
        found = [p for p in self.PACKAGES if self.path and (self.path / p.replace(".", "/") / "run.py").exists()]
        self.package = found[0] if found else None

    def problem(self) -> str | None:
        if self.path is None:
            return "old launcher: give --old-launcher PATH to include it"
        if self.package is None:
            return f"old launcher: no sample_factory/launcher/ or isaacgymenvs/pbt/launcher/ under {self.path}"
        return None

    def version(self) -> str:
        return f"old launcher {self.package} from {self.path}"

    def invocation(self, job: Job, where: Path) -> Invocation:
        wrapper = where / "old_launcher_job.sh"  # W4 has a job.sh of its own
        wrapper.write_text(f"exec {shlex.join(job.argv)}\n")
        (where / "bench_run.py").write_text(
            f"from {self.package}.run_description import Experiment, ParamGrid, RunDescription\n\n"
            f"_params = ParamGrid([('i', list(range({job.count})))]).generate_params(randomize=False)\n"
            f"RUN_DESCRIPTION = RunDescription('bench', experiments=[Experiment('w', 'sh {wrapper}', _params)])\n"
        )
        gpus = [f"--num_gpus={NUM_GPUS}", f"--experiments_per_gpu={PER_GPU}"] if job.pinned else ["--num_gpus=0"]
        argv = [sys.executable, "-m", f"{self.package}.run", "--run=bench_run", "--backend=processes"]
        argv += ["--pause_between=0", f"--max_parallel={SLOTS}", *gpus, "--train_dir=train_dir"]
        pythonpath = os.pathsep.join(filter(None, [str(self.path), str(where), os.environ.get("PYTHONPATH")]))
        return Invocation(argv, where, env={"PYTHONPATH": pythonpath})


# --------------------------------------------------------------------------- the workloads


@dataclass
class Context:
    """What every workload needs: the sizes, the runners, and the results so far."""

    sizes: Sizes
    runners: list[Runner]
    reps: int
    scale_reps: int
    results: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        self.results.append(result)
        value = "failed" if result.value is None else ROW[result.row].fmt.format(result.value)
        wall = f"  wall {result.wall_s:8.3f} s" if result.wall_s is not None else ""
        note = f"  ({result.note})" if result.note else ""
        print(f"  [{result.row} rep {result.rep}] {result.runner:<8} {value:>10}{wall}{note}", flush=True)

    def find(self, row: str, runner: str, rep: int) -> Result | None:
        return next((r for r in self.results if (r.row, r.runner, r.rep) == (row, runner, rep)), None)

    def print_ratio(self, row: str, rep: int) -> None:
        ratio = rep_ratio(self, row, rep)
        if ratio is not None:
            print(f"  [{row} rep {rep}] pbtrun ÷ xargs ({ROW[row].ratio}) = {ratio:.2f}", flush=True)


def run_fresh(
    runner: Runner,
    job_for: Callable[[Path], Job],
    timeout_s: float,
    sample_s: float | None = None,
    inspect: Callable[[Path, Job], str] | None = None,
) -> tuple[Measurement, str]:
    """One run in a fresh directory: its measurement, and what ``inspect`` (called before the
    directory is removed) found wrong, "" if nothing."""
    with run_dir() as where:
        job = job_for(where)
        m = measure(runner.invocation(job, where), timeout_s, job.comm, sample_s)
        problem = inspect(where, job) if inspect and m.ended.ok else ""
    return m, problem


def wall_workload(ctx: Context, row: str, job: Job, value: Callable[[float], float]) -> None:
    """W1 and W2: the value is a function of the wall time."""
    for rep in range(1, ctx.reps + 1):
        for runner in ctx.runners:
            m, _ = run_fresh(runner, lambda _: job, ctx.sizes.timeout_s)
            result = value(m.ended.wall_s) if m.ended.ok else None
            ctx.add(Result(row, runner.name, rep, result, m.ended.wall_s, m.ended.note()))
        ctx.print_ratio(row, rep)


def w1(ctx: Context) -> None:
    n = ctx.sizes.w1_jobs
    wall_workload(ctx, "W1", Job(("/bin/true",), n, "true"), lambda wall_s: n / wall_s)


def w2(ctx: Context) -> None:
    s = ctx.sizes
    job = Job(("sleep", f"{s.w2_sleep_s:g}"), s.w2_jobs, "sleep")
    wall_workload(ctx, "W2", job, lambda wall_s: s.w2_ideal_s / wall_s)


def w3(ctx: Context) -> None:
    """The runner's CPU and peak RSS while the jobs sleep (README.md: how it is measured)."""
    s = ctx.sizes
    job = Job(("sleep", f"{s.w3_sleep_s:g}"), s.w3_jobs, "sleep")
    for rep in range(1, ctx.reps + 1):
        for runner in ctx.runners:
            m, _ = run_fresh(runner, lambda _: job, s.timeout_s, sample_s=0.1)
            ok, wall_s = m.ended.ok, m.ended.wall_s
            split = f"tree {m.ended.tree_cpu_ms:.1f} ms - jobs {m.job_cpu_ms:.1f} ms"
            ctx.add(Result("W3cpu", runner.name, rep, m.runner_cpu_ms if ok else None, wall_s, m.ended.note() or split))
            ctx.add(Result("W3rss", runner.name, rep, m.peak_rss_mb if ok else None, wall_s))
            ctx.add(Result("W3main", runner.name, rep, m.ended.main_cpu_ms if ok else None, wall_s))
        ctx.print_ratio("W3cpu", rep)


def w4_script(sleep_s: float) -> str:
    """The W4 job; $1 is the record file. Runners that do not pin give a job slot instead (xargs,
    GNU parallel), from which the job takes its GPU: slot mod 4, so two slots per GPU."""
    return (
        'if [ -n "${BENCH_SLOT:-}" ]; then\n'
        f"  CUDA_VISIBLE_DEVICES=$((BENCH_SLOT % {NUM_GPUS})); export CUDA_VISIBLE_DEVICES\n"
        "fi\n"
        'echo "start $$ ${CUDA_VISIBLE_DEVICES:-none}" >> "$1"\n'
        f"sleep {sleep_s:g}\n"
        'echo "end $$ ${CUDA_VISIBLE_DEVICES:-none}" >> "$1"\n'
    )


def w4_job(where: Path, sleep_s: float, count: int) -> Job:
    script = where / "job.sh"
    script.write_text(w4_script(sleep_s))
    return Job(("sh", str(script), str(where / "record.txt")), count, "sh", pinned=True)


def check_placement(where: Path, job: Job) -> str:
    """What the record shows wrong, or "". Its append order linearizes the jobs' lifetimes: a job
    writes "start" after its runner started it and "end" before it exits, so a runner breaking a
    limit may go unseen, but is never wrongly blamed."""
    record = where / "record.txt"
    per_gpu: Counter[str] = Counter()
    running = starts = ends = 0
    for line in record.read_text().splitlines() if record.exists() else []:
        event, _, gpu = line.split()
        if gpu not in {str(g) for g in range(NUM_GPUS)}:
            return f"a job saw CUDA_VISIBLE_DEVICES={gpu!r}"
        step = 1 if event == "start" else -1
        per_gpu[gpu] += step
        running += step
        starts, ends = starts + (step > 0), ends + (step < 0)
        if per_gpu[gpu] > PER_GPU:
            return f"{per_gpu[gpu]} jobs at once on GPU {gpu}"
        if running > SLOTS:
            return f"{running} jobs at once"
    if starts != job.count or ends != job.count:
        return f"{starts} starts and {ends} ends recorded for {job.count} jobs"
    return ""


def w4(ctx: Context) -> None:
    s = ctx.sizes
    runners = [r for r in ctx.runners if r.supports(Job((), 0, "", pinned=True))]
    for rep in range(1, ctx.reps + 1):
        for runner in runners:
            job_for = lambda where: w4_job(where, s.w4_sleep_s, s.w4_jobs)  # noqa: E731
            m, problem = run_fresh(runner, job_for, s.timeout_s, inspect=check_placement)
            base = ctx.find("W4", "xargs", rep)
            base_wall_s = m.ended.wall_s if runner.name == "xargs" else (base.wall_s if base else None)
            value = m.ended.wall_s / base_wall_s if m.ended.ok and base_wall_s else None
            ctx.add(Result("W4", runner.name, rep, value, m.ended.wall_s, m.ended.note()))
            verdict = f"violated: {problem}" if problem else ("ok" if m.ended.ok else "not checked: the run failed")
            ctx.add(Result("W4place", runner.name, rep, None if problem or not m.ended.ok else 1.0, note=verdict))
        ctx.print_ratio("W4", rep)


UNEVEN_SCRIPT = """d=${1#d=}
echo "start $(date +%s.%N)" >> record.txt
sleep "$d"
echo "end $(date +%s.%N)" >> record.txt
"""


def uneven_shapes(unit_s: float) -> dict[str, list[float]]:
    """Durations in launch order, as real sweeps have them: every runner takes them in this
    order into whichever slot is free (xargs -P: a greedy list schedule)."""
    import random

    draw = random.Random(7)
    tail = [min(6.0, 0.2 * (1 - draw.random()) ** (-1 / 1.2)) for _ in range(UNEVEN_TAIL_N)]
    shapes = {
        "U_long": [0.5] * 7 + [6.0] + [1.5] * (UNEVEN_LONG_N - 7),
        "U_tail": tail,
        "U_last": [0.5] * 40 + [4.0] * 4,
    }
    return {row: [round(d * unit_s, 3) for d in durations] for row, durations in shapes.items()}


def uneven_invocation(runner: str, durations: Sequence[float], where: Path) -> Invocation:
    """The same script for both runners, one ``d=SECONDS`` argument each (pbtrun: a ``list``
    with ``param_prefix = ""``; xargs: one input line per job)."""
    (where / "u.sh").write_text(UNEVEN_SCRIPT)
    if runner == "xargs":
        lines = lines_file(where / "jobs.txt", (f"d={d:g}" for d in durations))
        return Invocation(["xargs", "-P", str(SLOTS), "-I{}", "sh", "u.sh", "{}"], where, lines)
    rows = ", ".join(f"{{ d = {d:g} }}" for d in durations)
    spec = sweep_toml(["sh", "u.sh"], f'name = "u"\nlist = [{rows}]', pinned=False, top='param_prefix = ""\n')
    (where / "sweep.toml").write_text(spec)
    return Invocation([*PBTRUN, "up", "sweep.toml", "--plain"], where)


def makespan_s(where: Path, count: int) -> float | None:
    """First start to last end, from the jobs' own records (the runners' start-up excluded)."""
    record = where / "record.txt"
    events = [line.split() for line in record.read_text().splitlines()] if record.exists() else []
    starts = [float(t) for e, t in events if e == "start"]
    ends = [float(t) for e, t in events if e == "end"]
    if len(starts) != count or len(ends) != count:
        return None
    return max(ends) - min(starts)


def uneven(ctx: Context) -> None:
    """Makespan of jobs whose durations differ, against ``xargs -P`` in the same repetition."""
    runners = [r for r in ctx.runners if r.name in ("xargs", "pbtrun")]
    for row, durations in uneven_shapes(ctx.sizes.uneven_unit_s).items():
        for rep in range(1, ctx.reps + 1):
            for runner in runners:
                with run_dir() as where:
                    m = measure(uneven_invocation(runner.name, durations, where), ctx.sizes.timeout_s)
                    value = makespan_s(where, len(durations)) if m.ended.ok else None
                note = m.ended.note() or ("" if value is not None else "a start or end was not recorded")
                ctx.add(Result(row, runner.name, rep, value, m.ended.wall_s, note))
            ctx.print_ratio(row, rep)


def idle(ctx: Context) -> None:
    """pbtrun's CPU while its one experiment sleeps: every pbtrun process (the scheduler and its
    helpers; the job excluded), from schedstat (ns) at two moments."""
    s = ctx.sizes
    job = Job(("sleep", f"{s.idle_sleep_s:g}"), 1, "sleep")
    for rep in range(1, ctx.reps + 1):
        with run_dir() as where:
            proc, started = start(Pbtrun().invocation(job, where))
            before = runner_ns_at(started + s.idle_from_s, job.comm)
            after = runner_ns_at(started + s.idle_to_s, job.comm)
            ended = finish(proc, started, s.timeout_s, where)
        value = (after - before) / 1e6 if ended.ok else None
        ctx.add(Result("idle", "pbtrun", rep, value, note=ended.note()))


def runner_ns_at(at: float, job_comm: str) -> int:
    time.sleep(max(0.0, at - time.perf_counter()))
    return sum(runtime_ns(p.pid) for p in descendants(os.getpid()) if p.comm != job_comm)


def timed(argv: Sequence[str], cwd: Path, samples: int) -> tuple[float | None, str]:
    """(median wall time in s of ``samples`` runs of a short command, "") or (None, its error)."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=runner_env({}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            return None, f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
    return statistics.median(times), ""


def startup(ctx: Context) -> None:
    """``pbtrun --help``, and ``pbtrun status`` in a directory whose train dir has one small sweep."""
    for rep in range(1, ctx.reps + 1):
        with run_dir() as where:
            made = measure(Pbtrun().invocation(Job(("/bin/true",), 4, "true"), where), ctx.sizes.timeout_s)
            for row, args in (("help", ["--help"]), ("status", ["status"])):
                median_s, error = timed([*PBTRUN, *args], where, STARTUP_SAMPLES) if made.ended.ok else (None, "")
                note = error or ("" if made.ended.ok else f"making the sweep: {made.ended.note()}")
                ctx.add(Result(row, "pbtrun", rep, None if median_s is None else median_s * 1000, note=note))


def scale_toml(n: int) -> str:
    """A spec of ``n`` experiments as users write them: a grid of two parameters."""
    if n % 1000:
        raise ValueError("scale sizes are multiples of 1,000")
    grid = f"grid = {{ a = {json.dumps(list(range(n // 1000)))}, b = {json.dumps(list(range(1000)))} }}"
    return sweep_toml(["/bin/true"], f'name = "w"\n{grid}', pinned=False)


def scale(ctx: Context) -> None:
    """The 100k workloads, pbtrun and xargs only: the other peers would take many minutes, and
    task-spooler keeps one waiting client process per queued job."""
    s = ctx.sizes
    xargs = next((r for r in ctx.runners if r.name == "xargs"), None)
    true_job = Job(("/bin/true",), s.scale_jobs, "true")
    for rep in range(1, ctx.scale_reps + 1):
        with run_dir() as where:
            (where / "sweep.toml").write_text(scale_toml(s.scale_jobs))
            for row, args in (
                ("S_dry", ["up", "sweep.toml", "--dry-run"]),
                ("S_plan", ["plan", "sweep.toml", "--json"]),
            ):
                compile_s, error = timed([*PBTRUN, *args], where, 1)
                ctx.add(Result(row, "pbtrun", rep, compile_s, note=error))
            inv = Invocation([*PBTRUN, "up", "sweep.toml", "--plain"], where)
            m = measure(inv, s.scale_timeout_s, true_job.comm, sample_s=0.5)
            ok = m.ended.ok
            ctx.add(Result("S_up", "pbtrun", rep, s.scale_jobs / m.ended.wall_s if ok else None, m.ended.wall_s))
            ctx.add(Result("S_rss", "pbtrun", rep, m.peak_rss_mb if ok else None, note=m.ended.note()))
            for row, args in (
                ("S_status", []),
                ("S_table", ["train_dir/bench"]),
                ("S_json", ["train_dir/bench", "--json"]),
            ):
                median_s, error = timed([*PBTRUN, "status", *args], where, STATUS_SAMPLES) if ok else (None, "")
                ctx.add(Result(row, "pbtrun", rep, median_s, note=error))
        if xargs is not None:
            m, _ = run_fresh(xargs, lambda _: true_job, s.scale_timeout_s)
            ok = m.ended.ok
            ctx.add(Result("S_up", "xargs", rep, s.scale_jobs / m.ended.wall_s if ok else None, m.ended.wall_s))
        ctx.print_ratio("S_up", rep)


WORKLOADS: dict[str, Callable[[Context], None]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "uneven": uneven,
    "startup": startup,
    "idle": idle,
    "scale": scale,
}


# --------------------------------------------------------------------------- reporting


def rep_ratio(ctx: Context, row: str, rep: int) -> float | None:
    basis = ROW[row].ratio
    ours, theirs = ctx.find(row, "pbtrun", rep), ctx.find(row, "xargs", rep)
    if not basis or not ours or not theirs or ours.value is None or theirs.value is None:
        return None
    if basis == "wall":
        return ours.wall_s / theirs.wall_s if ours.wall_s and theirs.wall_s else None
    return ours.value / theirs.value if theirs.value else None


def cell(ctx: Context, row: str, runner: str) -> str:
    """Median (min-max) of one runner's values on one row."""
    results = [r for r in ctx.results if (r.row, r.runner) == (row, runner)]
    if not results:
        return "—"
    if row == "W4place":
        bad = [r.note for r in results if r.value is None]
        return f"ok in {len(results)} of {len(results)}" if not bad else f"**{bad[0]}** ({len(bad)} of {len(results)})"
    values = [r.value for r in results if r.value is not None]
    failed = len(results) - len(values)
    if not values:
        return f"failed: {results[0].note}" if results[0].note else "failed"
    fmt = ROW[row].fmt.format
    text = fmt(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt(min(values))}–{fmt(max(values))})"
    return text + (f", {failed} of {len(results)} failed" if failed else "")


def shown_runners(ctx: Context) -> list[Runner]:
    """The runners that have results, pbtrun first (xargs runs first: W4 is a ratio to it)."""
    ran = [r for r in ctx.runners if any(x.runner == r.name for x in ctx.results)]
    return sorted(ran, key=lambda r: r.name != "pbtrun")


def results_table(ctx: Context) -> list[str]:
    runners = shown_runners(ctx)
    lines = [
        "| workload (8 slots; GPU ones: 4 fake GPUs × 2) | " + " | ".join(r.column for r in runners) + " |",
        "|---" * (len(runners) + 1) + "|",
    ]
    for row in ROWS:
        if any(r.row == row.key for r in ctx.results):
            label = row.label.format(
                **vars(ctx.sizes),
                w2_ideal_s=ctx.sizes.w2_ideal_s,
                uneven_long_n=UNEVEN_LONG_N - 1,
                uneven_tail_n=UNEVEN_TAIL_N,
            )
            lines.append(f"| {label} | " + " | ".join(cell(ctx, row.key, r.name) for r in runners) + " |")
    return lines


def ratio_table(ctx: Context) -> list[str]:
    """pbtrun ÷ xargs per repetition, for the rows both ran."""
    rows = [row for row in ROWS if row.ratio and ctx.find(row.key, "xargs", 1) and ctx.find(row.key, "pbtrun", 1)]
    if not rows:
        return []
    reps = max(r.rep for r in ctx.results)
    lines = [
        "| pbtrun ÷ xargs | " + " | ".join(f"rep {i}" for i in range(1, reps + 1)) + " | median |",
        "|---" * (reps + 2) + "|",
    ]
    for row in rows:
        ratios = [rep_ratio(ctx, row.key, i) for i in range(1, reps + 1)]
        known = [x for x in ratios if x is not None]
        shown = " | ".join("—" if x is None else f"{x:.2f}" for x in ratios)
        lines.append(f"| {row.key} ({row.ratio}) | {shown} | {f'{statistics.median(known):.2f}' if known else '—'} |")
    return lines


def text_summary(ctx: Context) -> list[str]:
    """Per row and runner: median, min, max (plain text, for the terminal)."""
    lines = [f"{'row':<9} {'runner':<8} {'median':>10} {'min':>10} {'max':>10}  runs"]
    for row in ROWS:
        for runner in shown_runners(ctx):
            values = [r.value for r in ctx.results if (r.row, r.runner) == (row.key, runner.name)]
            if not values or row.key == "W4place":
                continue
            ok = [v for v in values if v is not None]
            fmt = row.fmt.format
            low, mid, high = (fmt(f(ok)) if ok else "failed" for f in (min, statistics.median, max))
            lines.append(f"{row.key:<9} {runner.name:<8} {mid:>10} {low:>10} {high:>10}  {len(ok)}/{len(values)} ok")
    return lines


def pbtrun_source() -> str:
    """Where the pbtrun that runs comes from: its git commit, and whether pbtrun/ has changes."""
    spec = importlib.util.find_spec("pbtrun")
    repo = Path(spec.origin).parent.parent if spec and spec.origin else HERE.parent
    head = quiet(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    if not head or head.returncode != 0:
        return f"from {repo}, not a git checkout"
    dirty = quiet(["git", "-C", str(repo), "status", "--porcelain", "--", "pbtrun"])
    return f"commit {head.stdout.strip()}" + (" + uncommitted changes in pbtrun/" if dirty and dirty.stdout else "")


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown CPU")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{len(os.sched_getaffinity(0))} cores (nproc), {model}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average at the start {load}"
    )


def markdown(ctx: Context, command: str, versions: list[str], skipped: list[str], started: str) -> str:
    lines = [
        "# pbtrun benchmark results",
        "",
        f"- Machine: {machine()}",
        f"- Run: {started}: `{command}`",
        f"- Runners: {'; '.join(versions)}",
        *(f"- Skipped: {why}" for why in skipped),
        "",
        "Each cell: median (min–max) over the repetitions. What each number measures: benchmarks/README.md.",
        "",
        *results_table(ctx),
    ]
    ratios = ratio_table(ctx)
    if ratios:
        lines += ["", "pbtrun ÷ xargs in each repetition (of the wall time, or of the value for W3):", "", *ratios]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark pbtrun against its peers (issue 6).")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each workload (default 5)")
    parser.add_argument("--quick", action="store_true", help="tiny workloads: a smoke test, not a benchmark")
    parser.add_argument("--idle", action="store_true", help="also pbtrun's CPU over an idle minute (85 s a rep)")
    parser.add_argument("--scale", action="store_true", help="also the 100,000-experiment workloads (minutes a rep)")
    parser.add_argument("--scale-reps", type=int, help="repetitions of the scale workloads (default: --reps)")
    parser.add_argument(
        "--old-launcher", type=Path, metavar="PATH", help="a directory holding sample_factory/ or isaacgymenvs/"
    )
    parser.add_argument("--only", help=f"comma-separated workloads among {','.join(WORKLOADS)}")
    parser.add_argument("--runners", help="comma-separated runners among pbtrun,xargs,parallel,tsp,sgs,old")
    parser.add_argument(
        "--out", type=Path, default=HERE / "results.md", help="the Markdown table (default benchmarks/results.md)"
    )
    args = parser.parse_args(argv)
    if args.reps < 1 or (args.scale_reps is not None and args.scale_reps < 1):
        parser.error("--reps and --scale-reps must be at least 1")
    if args.only:
        chosen = args.only.split(",")
    else:
        chosen = ["W1", "W2", "W3", "W4", "uneven", "startup"] + ["idle"] * args.idle + ["scale"] * args.scale
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}; choose among {', '.join(WORKLOADS)}")
    args.workloads = [w for w in WORKLOADS if w in chosen]
    return args


def pick_runners(args: argparse.Namespace) -> tuple[list[Runner], list[str], list[str]]:
    """(the runners, their versions, why the others are skipped). xargs runs first in each
    repetition: W4's value is a ratio to its wall time."""
    wanted = set(args.runners.split(",")) if args.runners else None
    candidates = [Xargs(), Pbtrun(), GnuParallel(), TaskSpooler(), SimpleGpuScheduler(), OldLauncher(args.old_launcher)]
    runners, versions, skipped = [], [], []
    for runner in candidates:
        if wanted is not None and runner.name not in wanted:
            continue
        problem = runner.problem()
        if problem:
            skipped.append(problem)
        else:
            runners.append(runner)
            versions.append(runner.version())
    return runners, versions, skipped


def run_all(ctx: Context, workloads: Sequence[str]) -> None:
    try:
        for name in workloads:
            print(f"{name}:", flush=True)
            WORKLOADS[name](ctx)
    finally:  # after Ctrl-C or a crash: nothing of a run is left behind
        kill_descendants()
        with contextlib.suppress(ChildProcessError):
            while os.wait4(-1, os.WNOHANG)[0]:
                pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    become_subreaper()
    runners, versions, skipped = pick_runners(args)
    if not any(r.name == "pbtrun" for r in runners):
        print("run.py: pbtrun is not among the runners: nothing to compare", file=sys.stderr)
        return 2
    print("runners: " + "; ".join(versions), *(f"skipped: {why}" for why in skipped), sep="\n", flush=True)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    quiet([*PBTRUN, "--help"])  # warm-up: the bytecode and page caches any second start has
    ctx = Context(QUICK if args.quick else Sizes(), runners, args.reps, args.scale_reps or args.reps)
    try:
        run_all(ctx, args.workloads)
    finally:
        remove_runs()
    print("", *text_summary(ctx), "", *ratio_table(ctx), sep="\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", os.path.relpath(__file__), *argv])
    args.out.write_text(markdown(ctx, command, versions, skipped, started))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
