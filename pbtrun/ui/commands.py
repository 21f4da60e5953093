"""What ``up`` does once its arguments are parsed, the run it shares with ``resume``, and how
every command ends: no click here. ``pbtrun up SPEC`` with ordinary flags is parsed by
:mod:`pbtrun.ui.quickargs` and comes straight here, without loading click (a large share of
start-up: see docs/performance.md); everything else, and anything unusual about ``up``, goes through
:mod:`pbtrun.ui.cli`, which calls the same functions. Every :class:`PbtrunError` becomes its
message and exit code in :func:`report`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbtrun import __version__
from pbtrun.errors import CWD_GONE, PbtrunError, SpecError, SweepBusy
from pbtrun.printable import printable_lines
from pbtrun.state.paths import SweepPaths, is_sweep
from pbtrun.ui import leftovers, targets

if TYPE_CHECKING:
    from pbtrun.spec.model import SchedulerSettings
    from pbtrun.spec.reading import Spec
    from pbtrun.state.records import Sweep


def cwd() -> str:
    """The directory pbtrun runs in: experiments run there, and the state records it."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise PbtrunError(
            f"{CWD_GONE}, and experiments run in the directory `pbtrun up` is run from. cd to a "
            'directory that exists (cd "$PWD" if it was made again) and run the command again.'
        ) from None


def cwd_exists() -> bool:
    try:
        os.getcwd()
    except OSError:
        return False
    return True


def report(exc: PbtrunError) -> int:
    """Say ``exc`` on stderr, as every command does; its exit code."""
    message = exc.message
    if CWD_GONE not in message and not cwd_exists():  # a relative path then names nothing
        message += f" Note: {CWD_GONE}, so relative paths cannot be found; cd to one that exists."
    say(f"pbtrun: error: {message}", sys.stderr)
    return exc.exit_code


def say(line: str, stream: Any) -> None:
    """One line (a message of several keeps its line breaks), flushed, with any control character
    of a name or value escaped; a closed terminal is not an error (the exit code still tells)."""
    with contextlib.suppress(OSError, ValueError):
        stream.write(printable_lines(line) + "\n")
        stream.flush()


def leave(code: int) -> None:
    """Leave without the interpreter's teardown (freeing every module, on every run, is work
    nobody waits for): by then every ``finally`` has run, and only the standard streams hold
    anything unwritten."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            code = code or 120
    os._exit(code)


def exit_code(exc: SystemExit) -> int:
    """The exit code ``sys.exit(...)`` asked for; a message given instead is printed."""
    if not isinstance(exc.code, int | None):
        print(exc.code, file=sys.stderr)
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def warn(spec: Spec) -> None:
    """The spec's warnings, on stderr (``plan``, ``up --dry-run``, ``up``): they change nothing
    that runs, nor the exit code."""
    for warning in spec.warnings:
        say(f"pbtrun: warning: {warning}", sys.stderr)


def scheduler_flags(options: dict[str, Any]) -> SchedulerSettings:
    """The flags given on the command line that override the spec's ``[scheduler]``."""
    from pbtrun.spec.model import SchedulerSettings

    return SchedulerSettings(
        num_gpus=options["num_gpus"],
        max_parallel=options["max_parallel"],
        experiments_per_gpu=options["experiments_per_gpu"],
        pause_between_s=options["pause_between"],
        max_failures=options["max_failures"],
    )


def train_dir_of(flag: str | None, spec: Spec) -> str:
    """``--train-dir`` wins over the spec's ``train_dir``; empty is refused, as in the spec."""
    if flag is None:
        return spec.train_dir
    if not flag:
        raise SpecError(
            "command line: --train-dir must not be empty: give a directory, or leave the flag out "
            f"to use the spec's train_dir ({spec.train_dir!r})."
        )
    return flag


def up(spec_file: Path, train_dir: str | None, force: bool, options: dict[str, Any]) -> None:
    """Compile ``spec_file`` into the sweep's state and run it (``pbtrun up`` without
    ``--dry-run``, which cli.py prints)."""
    from pbtrun.run.settings import resolve_spec
    from pbtrun.spec.expansion import expand
    from pbtrun.spec.reading import load
    from pbtrun.state import locks, store
    from pbtrun.state.merge import merge, new_experiment
    from pbtrun.state.records import Sweep

    here = cwd()  # first: in a deleted directory, a relative spec path names nothing either
    targets.refuse_run_module(spec_file, "up")
    spec = load(spec_file, options.get("backend"))
    warn(spec)
    settings = resolve_spec(spec, scheduler_flags(options))
    train_dir = train_dir_of(train_dir, spec)
    compiled = expand(spec, train_dir)
    paths = SweepPaths(Path(here) / train_dir / spec.name)
    try:
        paths.logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PbtrunError(f"{paths.dir}: cannot create the sweep directory: {exc.strerror}.") from None

    def compile_into_state() -> tuple[Sweep, tuple | None]:
        """Save the compiled sweep (under the state lock); return it and the saved file's
        signature, so the scheduler can start from it instead of reading back what it just
        wrote: parsing a large sweep's state is slow."""
        if is_sweep(paths.dir):
            sweep = store.load(paths)
            if sweep.backend != spec.backend:
                raise SpecError(
                    f"{spec.path}: backend = {spec.backend!r}, but the sweep at {paths.dir} runs on "
                    f"{sweep.backend!r}: a sweep stays on its backend. Give the spec another name to start "
                    "a new sweep there."
                )
            report = merge(sweep, compiled, force=force)
            sweep.settings = settings
            sweep.backend_settings = _backend_settings(spec)
            _say_merged(report)
        else:
            leftovers.refuse_lost_state(paths.dir)  # a deleted pbtrun.json: never start over its history
            sweep = Sweep(
                spec.name, here, train_dir, time.time(), settings, __version__,
                backend=spec.backend, backend_settings=_backend_settings(spec),
            )  # fmt: skip
            sweep.replace_all(new_experiment(c) for c in compiled)
        store.write_spec_copy(paths, spec.text)
        store.save(paths, sweep)
        return sweep, store.signature(paths)

    with contextlib.ExitStack() as lifetime:
        # The scheduler lock is tried, and the state compiled, inside one state lock: an `up`
        # that finds the sweep busy therefore finds it compiled too, and its holder recorded,
        # even when two `up` race on a fresh spec (issue 18, 5).
        with locks.state_lock(paths):
            try:
                lifetime.enter_context(locks.scheduler_lock(paths))
            except SweepBusy:
                saved = None
            else:
                saved = compile_into_state()
                compiled = []  # the sweep holds what it needs of them
        if saved is not None:
            run(paths, options, saved)  # exits with the scheduler's code
    # Not an error: what happened is said, beside the busy sweep's other messages on stderr;
    # the exit code still tells a script that another scheduler runs the sweep.
    say(_add_to_running(paths, compiled, force), sys.stderr)
    sys.exit(SweepBusy.exit_code)


def _add_to_running(paths: SweepPaths, compiled: list, force: bool) -> str:
    """Merge a re-compiled spec into a sweep another scheduler runs, wake that scheduler, and
    say what happened."""
    from pbtrun.state import control, locks, store
    from pbtrun.state.merge import merge

    holder = locks.busy_holder(paths)  # before it can go: a scheduler that ends removes its record
    scheduler = "its scheduler" + (f" (pid {holder.get('pid')} on {holder.get('host')})" if holder else "")
    with store.transaction(paths) as sweep:
        report = merge(sweep, compiled, force=force)
    name, where = paths.dir.name, shlex.quote(str(paths.dir))
    if not (report.added or report.changed):
        return f"nothing new to add to sweep {name}: {scheduler} already runs it. Watch it with: pbtrun status {where}"
    if report.added:
        what = f"added {len(report.added)} experiment(s) to sweep {name}"
        what += f" and re-queued {len(report.changed)} changed one(s)" if report.changed else ""
    else:
        what = f"re-queued {len(report.changed)} changed experiment(s) of sweep {name}"
    if control.notify(paths, "wake"):
        return f"{what}; {scheduler} runs them"
    # The scheduler ended between refusing this `up` and the merge: nothing will run them.
    return f"{what}, but {scheduler} has ended since. Run them with: pbtrun resume {where}"


def _say_merged(report: Any) -> None:
    """Said inside the state lock, before the merge is saved: a closed stdout must not stop it."""
    from pbtrun.ui.output import guarded

    out = guarded(sys.stdout)
    if report.added:
        say(f"added {len(report.added)} new experiment(s) to the existing sweep", out)
    if report.changed:
        say(f"re-queued {len(report.changed)} experiment(s) whose command changed (--force)", out)
    if report.removed:
        removed = len(report.removed)
        say(f"{removed} experiment(s) no longer in the spec are kept for their history, not run", out)


def run(paths: SweepPaths, options: dict[str, Any], saved: tuple[Sweep, tuple | None] | None = None) -> None:
    """Schedule the sweep at ``paths`` with a view of its progress until it ends; exit with
    the scheduler's code (``saved``: the state ``up`` just wrote, not read back)."""
    from pbtrun.run.scheduler import Scheduler
    from pbtrun.state import store
    from pbtrun.ui.views import make_view

    backend = saved[0].backend if saved else store.backend_of(paths)
    if options.get("detach") and backend == "local":
        raise PbtrunError(
            f"{paths.dir}: --detach leaves a cluster's jobs running without pbtrun watching them; this sweep's "
            "experiments are local processes, which need their scheduler. Run it without --detach (in tmux "
            "or with nohup to leave the terminal)."
        )
    view = make_view(paths, True if options["plain"] else None)
    scheduler = Scheduler(
        paths,
        view,
        grace_s=options["grace"],
        retry_failed=options["retry_failed"],
        retry_lost=options["retry_lost"],
        detach=options.get("detach", False),
        cancel_on_interrupt=options.get("cancel_on_interrupt", False),
        saved=saved,
        backend=backend,
    )
    try:
        scheduler.prepare()  # adopt and record first: the view starts from the true state
    except BaseException:
        scheduler.close()
        raise
    view.begin(scheduler.sweep)
    try:
        code = scheduler.run()
    finally:
        view.close()  # gives the terminal back even if the run fails
    view.finish(scheduler.sweep, code)
    sys.exit(code)


def run_up_quickly(options: dict[str, Any]) -> None:
    """``pbtrun up`` parsed by :mod:`pbtrun.ui.quickargs`: run it and leave, as cli.main would."""
    try:
        up(options["spec_file"], options["train_dir"], options["force"], options)
        code = 0
    except PbtrunError as exc:
        code = report(exc)
    except KeyboardInterrupt:
        say("pbtrun: interrupted", sys.stderr)
        code = 130
    except SystemExit as exc:
        code = exit_code(exc)
    except BrokenPipeError:  # as click's own main: the reader went away, quietly
        code = 1
    leave(code)


def _backend_settings(spec: Spec) -> dict[str, Any]:
    """What the backend is given: its table, and on a cluster the GPUs each job asks for."""
    if spec.backend == "local":
        return dict(spec.backend_settings)
    return {**spec.backend_settings, "gpus_per_experiment": spec.scheduler.gpus_per_experiment or 0}
