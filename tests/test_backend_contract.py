"""What every backend must do, said through the interface of ``pbtrun/backends/base.py`` only.

This suite is the interface's real definition: each test runs once per backend (the
``backends`` fixture; ``local`` today, Slurm when it comes), on real processes, and asks nothing
of a backend that the scheduler could not ask. A backend passes when the scheduler can rely on
it: references before launches, true return codes, signals that arrive, attempts settled after
the scheduler vanished, and faults it can act on without reading their words.
"""

from __future__ import annotations

import errno
import json
import selectors
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import stop_being_a_subreaper

from pbtrun.backends.base import Backend, Ended, Handle, LaunchRequest, Outcome
from pbtrun.backends.registry import open_backend
from pbtrun.errors import WRITE_FAILED, BackendError, BackendFault
from pbtrun.proc import hostname
from pbtrun.spec.expansion import expand
from pbtrun.spec.reading import parse
from pbtrun.state import store
from pbtrun.state.merge import new_experiment
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import Attempt, Experiment, Settings, Sweep

BACKENDS = ["local"]
WAIT_S = 10.0  # the longest any backend may take to report what a test waits for


class Backends:
    """Backends of one kind on one sweep directory. A second one opened stands for the
    scheduler that resumes after the first vanished."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.paths = SweepPaths(root / "train_dir" / "contract")
        store.create(self.paths, Sweep("contract", str(root), "train_dir", time.time(), Settings()), "")
        self.opened: list[Backend] = []

    def open(self) -> Backend:
        backend = open_backend(self.name, self.paths)
        self.opened.append(backend)
        return backend

    def experiment(self, name: str, *command: str) -> Experiment:
        spec = parse(
            f'name = "contract"\ncommand = {json.dumps(list(command))}\nexperiment_arg_name = ""\n'
            f'experiment_dir_arg_name = ""\n[[experiments]]\nname = "{name}"\n',
            self.root / "sweep.toml",
        )
        return new_experiment(expand(spec)[0])

    def attempt(self, exp: Experiment, ref: str | None) -> Attempt:
        """Attempt 1 of ``exp``, as the scheduler records it before the launch."""
        return Attempt(1, time.time(), self.paths.log_name(exp, 1), None, hostname(), ref=ref)

    def request(self, exp: Experiment, attempt: Attempt) -> LaunchRequest:
        env = {
            "PBTRUN_EXPERIMENT": exp.name,
            "PBTRUN_SWEEP_DIR": str(self.paths.dir.resolve()),
            "PBTRUN_ATTEMPT": str(attempt.number),
        }
        return LaunchRequest(exp, attempt, exp.spec.argv, env, str(self.root))

    def launch(self, backend: Backend, *experiments: Experiment) -> list[tuple[Handle, Attempt]]:
        """Reserve, record (here: keep) and launch, in the scheduler's order."""
        attempts = [self.attempt(exp, backend.reserve()) for exp in experiments]
        handles = backend.launch(self.request(exp, a) for exp, a in zip(experiments, attempts, strict=True))
        return list(zip(handles, attempts, strict=True))

    def close_all(self) -> None:
        for backend in self.opened:
            backend.close()


@pytest.fixture(params=BACKENDS)
def backends(request, tmp_path) -> Iterator[Backends]:
    opened = Backends(request.param, tmp_path)
    try:
        yield opened
    finally:
        opened.close_all()
        stop_being_a_subreaper()  # the local backend made this process one


def ends(backend: Backend, count: int = 1, until: Callable[[], bool] | None = None) -> list[Ended]:
    """Wait, as the scheduler does (on the backend's fds and poll times), for ``count`` ends,
    or until ``until()`` holds."""
    ended: list[Ended] = []
    deadline = time.monotonic() + WAIT_S
    with selectors.DefaultSelector() as selector:
        for fd in backend.fds():
            selector.register(fd, selectors.EVENT_READ)
        while not (until() if until else len(ended) >= count):
            assert time.monotonic() < deadline, f"nothing more within {WAIT_S} s: {ended}"
            poll_at = backend.next_poll_at()
            selector.select(0.05 if poll_at is None else max(0.0, min(0.05, poll_at - time.monotonic())))
            ended += backend.collect()
    return ended


def started(backend: Backend, handle: Handle) -> bool:
    return backend.where(handle) is not None


def wait_until_started(backend: Backend, handle: Handle) -> None:
    deadline = time.monotonic() + WAIT_S
    while not started(backend, handle):
        assert time.monotonic() < deadline, "its start was never reported"
        time.sleep(0.01)


def test_a_reference_is_there_before_the_launch(backends):
    backend = backends.open()
    ref = backend.reserve()
    assert isinstance(ref, str) and ref  # recorded in the attempt before anything starts


def test_a_launch_reports_its_start_and_its_end_with_the_true_return_code(backends):
    backend = backends.open()
    slow = backends.experiment("slow", "sh", "-c", "sleep 0.3; exit 3")
    quick = backends.experiment("quick", "true")
    (handle, _), _ = backends.launch(backend, slow, quick)
    wait_until_started(backend, handle)
    outcomes = dict(ends(backend, count=2))
    assert set(outcomes) == {slow.id, quick.id}
    assert (outcomes[slow.id].returncode, outcomes[quick.id].returncode) == (3, 0)
    assert all(o.started and o.fault is None and o.ended_at <= time.time() for o in outcomes.values())


def test_a_signal_ends_the_attempt_with_that_signal(backends):
    backend = backends.open()
    exp = backends.experiment("long", "sleep", "30")
    ((handle, _),) = backends.launch(backend, exp)
    deadline = time.monotonic() + WAIT_S
    while not backend.signal(handle, signal.SIGTERM):  # False until it has started
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ((exp_id, outcome),) = ends(backend)
    assert (exp_id, outcome.returncode, outcome.started) == (exp.id, -signal.SIGTERM, True)


def test_settling_adopts_an_attempt_that_still_runs_and_reports_its_end(backends):
    first = backends.open()
    exp = backends.experiment("adopted", "sh", "-c", "sleep 0.5; exit 4")
    ((handle, attempt),) = backends.launch(first, exp)
    wait_until_started(first, handle)
    second = backends.open()  # the scheduler that resumes; the first is no longer asked anything
    adopted = second.settle(exp, attempt)
    assert not isinstance(adopted, Outcome) and started(second, adopted)
    ((exp_id, outcome),) = ends(second)
    assert (exp_id, outcome.returncode, outcome.started) == (exp.id, 4, True)


def test_settling_reports_the_outcome_of_an_attempt_that_ended_meanwhile(backends):
    first = backends.open()
    exp = backends.experiment("ended", "sh", "-c", "exit 5")
    ((_, attempt),) = backends.launch(first, exp)
    ends(first)
    outcome = backends.open().settle(exp, attempt)
    assert isinstance(outcome, Outcome)
    assert (outcome.returncode, outcome.started, outcome.fault) == (5, True, None)


def test_settling_an_attempt_reserved_but_never_launched_makes_sure_it_never_starts(backends):
    first = backends.open()
    marker = backends.root / "ran"
    exp = backends.experiment("late", "touch", str(marker))
    attempt = backends.attempt(exp, first.reserve())  # recorded; the scheduler died before launching
    outcome = backends.open().settle(exp, attempt)
    assert isinstance(outcome, Outcome) and not outcome.started
    # A launch of it that was on its way all the same (sent just before the crash) must not run.
    first.launch([backends.request(exp, attempt)])
    ((exp_id, late),) = ends(first)
    assert exp_id == exp.id and not late.started
    assert not marker.exists()


def test_closing_leaves_running_experiments_running_and_their_ends_recorded(backends):
    backend = backends.open()
    done = backends.root / "done"
    exp = backends.experiment("survivor", "sh", "-c", f"sleep 0.5; touch {done}")
    ((handle, attempt),) = backends.launch(backend, exp)
    wait_until_started(backend, handle)
    backend.close()
    deadline = time.monotonic() + WAIT_S
    while not done.exists():
        assert time.monotonic() < deadline, "closing the backend ended the experiment"
        time.sleep(0.02)
    later = backends.open()
    outcome = later.settle(exp, attempt)
    if not isinstance(outcome, Outcome):  # it was still on its way out
        ((_, outcome),) = ends(later)
    assert (outcome.returncode, outcome.started) == (0, True)


def test_a_launch_that_cannot_start_reports_a_typed_fault(backends):
    backend = backends.open()
    shutil.rmtree(backends.paths.logs)
    backends.paths.logs.write_text("")  # no log can be written: the launch cannot even be claimed
    exp = backends.experiment("unlogged", "true")
    backends.launch(backend, exp)
    ((exp_id, outcome),) = ends(backend)
    assert exp_id == exp.id and not outcome.started
    assert isinstance(outcome.fault, BackendFault)
    assert (outcome.fault.kind, outcome.fault.errno) == (WRITE_FAILED, errno.ENOTDIR)
    error = outcome.fault.error(exp.name)  # what the scheduler stops launching with
    assert isinstance(error, BackendError) and exp.name in error.message and "free space or fix" in error.message
