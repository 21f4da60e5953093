"""The commands that look at sweeps without changing them: ``status`` (one sweep in detail, or
every sweep of a train dir), ``ls`` (the train dir's listing) and ``logs``.

They read the state without its lock (every write is atomic). rich and the renderers are
imported where a command draws, so ``status --json`` and ``ls`` never load them.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pbtrun.errors import PbtrunError
from pbtrun.state.paths import SweepPaths, find_sweeps, is_sweep, resolve_sweep
from pbtrun.ui import leftovers, targets
from pbtrun.ui.clicompletion import complete_experiments, complete_sweeps, complete_train_dirs
from pbtrun.ui.cliparts import command, echo_lines

if TYPE_CHECKING:
    from pbtrun.state.records import Sweep

STATUS_ROWS = 1000  # a person reads no more; rich lays out 100k rows far slower than anyone waits


@command("status")
@click.argument("path", required=False, type=click.Path(path_type=Path), shell_complete=complete_sweeps)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (documented in the README).")
@click.option("--failed", is_flag=True, help="Only failed experiments.")
@click.option("--running", is_flag=True, help="Only running experiments.")
@click.option("--pending", is_flag=True, help="Only experiments still to run (pending or interrupted).")
@click.option("--grep", metavar="TEXT", help="Only experiments whose name contains TEXT.")
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--all", "show_all", is_flag=True, help=f"Every row, not only the first {STATUS_ROWS}.")
def status(path: Path | None, as_json: bool, watch: bool, show_all: bool, **filters: Any) -> None:
    """Where every sweep under PATH (default ./train_dir) stands, or one sweep in detail."""
    if as_json and watch:
        raise click.UsageError(
            "--json and --watch do not go together: --watch redraws the table in a terminal; "
            "a script runs `pbtrun status SWEEP --json` each time it wants the state."
        )
    path = path or targets.DEFAULT_TRAIN_DIR
    targets.refuse_spec_file(path, "status")
    leftovers.refuse_lost_state(path.parent if path.name == "pbtrun.json" else path)
    if is_sweep(path) or path.name == "pbtrun.json":
        _sweep_status(resolve_sweep(path), as_json, watch, None if show_all else STATUS_ROWS, filters)
    elif path.is_dir():
        _refuse_filters(path, filters)
        _train_dir_status(path, as_json, watch)
    else:
        start = "Run `pbtrun up SPEC.toml` to start a sweep."
        raise PbtrunError(f"{path}: no such sweep or train dir. {start}{targets.did_you_mean(path)}")


@command("ls")
@click.argument(
    "train_dir",
    required=False,
    default="train_dir",
    type=click.Path(path_type=Path),
    shell_complete=complete_train_dirs,
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ls(train_dir: Path, as_json: bool) -> None:
    """List the sweeps under TRAIN_DIR (default ./train_dir), quickly, even by the hundred."""
    if not train_dir.is_dir():  # a typo must not list "no sweeps" and succeed
        what = "not a directory" if train_dir.exists() else "no such train dir"
        raise PbtrunError(f"{train_dir}: {what}. Give a train dir; `pbtrun up SPEC.toml` starts a sweep in one.")
    _train_dir_status(train_dir, as_json)


def _console() -> Any:
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=1000)  # a pipe keeps whole names


def _sweep_status(paths: SweepPaths, as_json: bool, watch: bool, limit: int | None, options: dict[str, Any]) -> None:
    from pbtrun.state import locks, store
    from pbtrun.ui.words import Filters

    filters = Filters(**options)
    if as_json:
        from pbtrun.ui.jsonlines import json_lines
        from pbtrun.ui.statusjson import sweep_json

        with store.gc_paused():  # the document and its encoding: as many containers again
            sweep, holder = store.load(paths), locks.holder_alive(paths)
            document = sweep_json(paths, sweep, holder, _observed(paths, sweep, holder), filters)
            echo_lines(json_lines(document, "experiments"))
        return
    from pbtrun.ui.tables import sweep_table

    loaded: dict[tuple | None, Sweep] = {}  # --watch reads the state again only when it changed

    def frame(limit: int | None) -> Any:
        version = store.version(paths)
        sweep = loaded.get(version) if version is not None else None
        if sweep is None:
            loaded.clear()
            sweep = loaded[version] = store.load(paths)
        holder = locks.holder_alive(paths)
        observed = _observed(paths, sweep, holder)
        return sweep_table(paths, sweep, time.time(), filters, holder=holder, limit=limit, observed=observed)

    console = _console()
    if watch:
        _watch(console, frame)
    else:
        console.print(frame(limit))


def _observed(paths: SweepPaths, sweep: Sweep, holder: dict[str, Any] | None) -> dict[str, Any]:
    """While no scheduler runs, the state's "running" is only what the last one recorded: look
    at those attempts' logs and processes (read-only) to show what they really are."""
    if holder is not None:
        return {}
    if sweep.backend == "slurm":  # the jobs are the cluster's: ask it, once, read-only
        from pbtrun.backends.slurm import observe_jobs

        return observe_jobs(paths, sweep)
    from pbtrun.backends.fromlog import observe
    from pbtrun.proc import hostname

    host = hostname()
    return {
        exp.id: observe(str(paths.dir / exp.last.log), same_host=exp.last.host in ("", host))
        for exp in sweep.running()
        if exp.last is not None
    }


def _watch(console: Any, frame: Callable[[int], Any]) -> None:
    """Redraw ``frame`` in place once a second until Ctrl-C."""
    from rich.live import Live
    from rich.text import Text

    def safe_frame() -> Any:
        try:
            return frame(max(3, console.size.height - 4))
        except PbtrunError as exc:  # an exception here would kill rich's refresh thread
            return Text(f"pbtrun: {exc.message}")

    with (
        contextlib.suppress(KeyboardInterrupt),
        Live(console=console, get_renderable=safe_frame, refresh_per_second=1, screen=False),
    ):
        while True:
            time.sleep(3600)


def _refuse_filters(train_dir: Path, filters: dict[str, Any]) -> None:
    """The filters select experiments, which a train dir's listing does not show: say where they work."""
    given = [f"--{name}" for name in ("failed", "running", "pending") if filters[name]]
    given += [f"--grep {shlex.quote(filters['grep'])}"] if filters["grep"] is not None else []
    if given:
        flags = " ".join(given)
        names = [p.name for p in find_sweeps(train_dir)]
        here = f" (sweeps here: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})" if names else ""
        raise PbtrunError(
            f"{flags} applies to one sweep: pbtrun status {shlex.quote(str(train_dir / 'NAME'))} {flags}{here}."
        )


def _train_dir_status(train_dir: Path, as_json: bool, watch: bool = False) -> None:
    if as_json:
        from pbtrun.ui.statusjson import train_dir_json

        click.echo(json.dumps(train_dir_json(train_dir, _sweep_rows(train_dir, full_errors=True)), indent=2))
    elif watch:
        _watch(_console(), lambda _rows: _train_dir_view(train_dir))
    else:
        _console().print(_train_dir_view(train_dir))


def _train_dir_view(train_dir: Path) -> Any:
    from pbtrun.ui.tables import sweeps_table

    return sweeps_table(train_dir, _sweep_rows(train_dir), symbols=sys.stdout.isatty())


def _sweep_rows(train_dir: Path, full_errors: bool = False) -> list[tuple]:
    """Per sweep under ``train_dir``: its dir, its summary (or None), its scheduler, an error.
    A sweep that lost its pbtrun.json is listed too, as an error. ``full_errors``: each error as
    `pbtrun status DIR` gives it, not shortened for a table cell."""
    from pbtrun.state import locks, store

    rows: list[tuple] = []
    for sweep_dir in leftovers.lost_sweeps(train_dir):
        paths = SweepPaths(sweep_dir)
        if full_errors:
            error = leftovers.lost_state_message(sweep_dir, leftovers.what_is_left(sweep_dir))
        else:
            error = f"{paths.state.name} missing: pbtrun status {shlex.quote(str(sweep_dir))} says how to restore it"
        rows.append((sweep_dir, None, locks.holder_alive(paths), error))
    for sweep_dir in find_sweeps(train_dir):
        paths = SweepPaths(sweep_dir)
        holder = locks.holder_alive(paths)
        summary = store.read_summary(paths)
        if summary is None:
            try:
                sweep = store.load(paths)
            except PbtrunError as exc:
                rows.append((sweep_dir, None, holder, exc.message if full_errors else f"unreadable: {exc.message}"))
                continue
            summary = {"name": sweep.name, "counts": sweep.counts()}
        rows.append((sweep_dir, summary, holder, ""))
    return sorted(rows, key=lambda row: row[0])


@command("logs")
@click.argument("path", required=False, type=click.Path(path_type=Path), shell_complete=complete_sweeps)
@click.argument("experiment", required=False, shell_complete=complete_experiments)
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing what it writes until it ends (waits for it to start)."
)
@click.option("--attempt", type=click.IntRange(min=1), help="Which attempt (default: the last).")
@click.option("--failed", is_flag=True, help="The tail of every failed experiment's last log.")
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=1),
    default=20,
    help="With --failed: lines per log (default 20). With EXPERIMENT: only its last N lines.",
)
@click.pass_context
def logs(
    ctx: click.Context,
    path: Path | None,
    experiment: str | None,
    follow: bool,
    attempt: int | None,
    failed: bool,
    lines: int,
) -> None:
    """Print an experiment's log (EXPERIMENT: a name, a unique prefix of one, or its index: the # of status).

    PATH defaults to the only sweep under ./train_dir; `pbtrun logs EXPERIMENT` reads that sweep too.
    """
    from click.core import ParameterSource

    from pbtrun.state import store
    from pbtrun.ui import logs as experiment_logs

    given = path is not None
    path, experiment = targets.logs_arguments(path, experiment)
    _refuse_mixed_logs_options(experiment, follow, attempt, failed)
    paths = targets.sweep_at(path, "logs", given=given)
    sweep = store.load(paths)
    if failed:
        tails = list(experiment_logs.failed_tails(paths, sweep, lines))
        if not tails:
            click.echo(f"no failed experiments in {paths.dir}", err=True)
        for header, tail in tails:
            click.echo(header)
            click.echo("".join(f"    {line}\n" for line in tail), nl=False)
        return
    if experiment is None:
        raise PbtrunError("name an experiment (a name, a unique prefix or an index), or give --failed.")
    exp = experiment_logs.find(sweep, experiment)
    last = lines if ctx.get_parameter_source("lines") == ParameterSource.COMMANDLINE else None
    try:
        code = experiment_logs.show(paths, sweep, exp, attempt, follow, last)
    except KeyboardInterrupt:  # Ctrl-C is how a person stops `logs -f`: quietly, as an interruption
        code = 130
    ctx.exit(code)


def _refuse_mixed_logs_options(experiment: str | None, follow: bool, attempt: int | None, failed: bool) -> None:
    """``--failed`` prints the tails of every failed experiment; the one-log options would be ignored."""
    if failed and experiment is not None:
        raise click.UsageError(
            f"--failed goes without EXPERIMENT: `pbtrun logs SWEEP --failed` prints every failed one's tail, "
            f"`pbtrun logs SWEEP {experiment}` that one's log."
        )
    one_log = [flag for flag, given in (("-f", follow), (f"--attempt {attempt}", attempt is not None)) if given]
    if failed and one_log:
        verb = "go" if len(one_log) > 1 else "goes"
        raise click.UsageError(
            f"{' and '.join(one_log)} {verb} with an EXPERIMENT, not with --failed: "
            f"pbtrun logs SWEEP EXPERIMENT {' '.join(one_log)}."
        )
