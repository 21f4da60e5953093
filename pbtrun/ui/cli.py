"""The command line: parse arguments, wire the modules, render. No logic of its own.

Every :class:`PbtrunError` becomes its message and exit code in one place (``commands.report``).
``pbtrun up SPEC`` with ordinary flags does not come here: ``__main__`` hands it to
:mod:`pbtrun.ui.quickargs` and :mod:`pbtrun.ui.commands`, which this module calls for it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pbtrun import __version__
from pbtrun.errors import PbtrunError
from pbtrun.limits import MAX_GPUS, MAX_GRACE_S, MAX_PAUSE_S
from pbtrun.state import control, locks, store
from pbtrun.state.paths import SweepPaths, find_sweeps, is_sweep, resolve_sweep, subdirectories
from pbtrun.ui import commands, targets
from pbtrun.ui import leftovers as remnants
from pbtrun.ui.cliparts import Command, OldSpelling, examples, help_of

if TYPE_CHECKING:
    from pbtrun.state.records import Sweep

# The spec layer, the state records and the renderers are imported where a command needs them:
# `pbtrun --help`, `status` and `ls` then start without paying for them (issue 6 sets a start-up
# target; docs/performance.md has the figures).

STATUS_ROWS = 1000  # a person reads no more; rich lays out 100k rows far slower than anyone waits


class _Group(click.Group):
    command_class = Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PbtrunError as exc:
            ctx.exit(commands.report(exc))
        except KeyboardInterrupt:
            commands.say("pbtrun: interrupted", sys.stderr)
            ctx.exit(130)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=examples(
        "pbtrun init                         # write a starter sweep.toml",
        "pbtrun up sweep.toml                # run it; Ctrl-C, then `pbtrun resume`",
        "pbtrun status                       # where every sweep stands",
        "pbtrun COMMAND --help               # each command's options and examples",
    ),
)
@click.version_option(__version__, prog_name="pbtrun")
def cli() -> None:
    """Run experiment sweeps from one TOML file, on the GPUs of this machine, resumably."""


class Seconds(click.ParamType):
    """A number of seconds from 0 to ``max_s``. ``click.FloatRange(min=0)`` lets ``nan`` and
    ``inf`` through, which turn a timer into one that never fires or never ends."""

    name = "seconds"

    def __init__(self, max_s: float, what: str) -> None:
        self.max_s = max_s
        self.what = what  # the maximum in words

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        if not 0 <= seconds <= self.max_s:  # also false for nan
            self.fail(f"must be 0 to {self.max_s:g} seconds ({self.what}), not {value}.", param, ctx)
        return seconds


def placement_options(func: Callable) -> Callable:
    """Flags that override ``[scheduler]``; the old launcher's underscore spellings work too."""
    options = [
        click.option(
            "--num-gpus",
            "--num_gpus",
            "num_gpus",
            cls=OldSpelling,
            type=click.IntRange(min=0, max=MAX_GPUS),
            help="GPUs to use (ids 0..N-1).",
        ),
        click.option(
            "--max-parallel", "--max_parallel", "max_parallel", cls=OldSpelling, type=int, help="Experiments at once."
        ),
        click.option(
            "--experiments-per-gpu",
            "--experiments_per_gpu",
            "experiments_per_gpu",
            cls=OldSpelling,
            type=int,
            help="Experiments per GPU; -1 leaves CUDA_VISIBLE_DEVICES alone.",
        ),
        click.option(
            "--pause-between",
            "--pause_between",
            "pause_between",
            cls=OldSpelling,
            type=Seconds(MAX_PAUSE_S, "a day"),
            help="Seconds between two launches.",
        ),
        click.option(
            "--max-failures",
            "--max_failures",  # not an old launcher flag, but spelled as its siblings are
            "max_failures",
            cls=OldSpelling,
            type=click.IntRange(min=1),
            help="Stop launching after N experiments failed (the running ones finish).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def scheduler_options(func: Callable) -> Callable:
    """:func:`placement_options` and the flags of the commands that run a sweep."""
    options = [
        click.option(
            "--grace",
            type=Seconds(MAX_GRACE_S, "a day"),
            default=30.0,
            show_default=True,
            help="Seconds between SIGINT and SIGTERM when stopping.",
        ),
        click.option("--retry-failed", is_flag=True, help="Run failed experiments again (lost ones too)."),
        click.option(
            "--retry-lost", is_flag=True, help="Run again the lost ones: their outcome is unknowable (a reboot)."
        ),
        click.option("--plain", is_flag=True, help="Plain timestamped lines instead of the live view."),
    ]
    for option in reversed(options):
        func = option(func)
    return placement_options(func)


# --------------------------------------------------------------------------- up


@cli.command(**help_of("up"))
@click.argument("spec_file", type=click.Path(path_type=Path))  # a directory: spec.load says so, as errors are said
@scheduler_options
@click.option(
    "--train-dir", "--train_dir", "train_dir", cls=OldSpelling, help="Train dir (overrides the spec's train_dir)."
)
@click.option("--force", is_flag=True, help="Re-queue experiments whose command changed in the spec.")
@click.option("--dry-run", is_flag=True, help="Print every experiment's command, env and GPU; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the plan as JSON (as `plan --json`).")
def up(spec_file: Path, train_dir: str | None, force: bool, dry_run: bool, as_json: bool, **kw: Any) -> None:
    """Compile SPEC_FILE and run the sweep; continue it if it already exists."""
    if as_json and not dry_run:
        raise click.UsageError(
            "--json goes with --dry-run: `pbtrun up SPEC --dry-run --json` prints the plan as JSON. "
            "A running sweep's progress as JSON is `pbtrun status SWEEP --json`."
        )
    if not dry_run:  # what `pbtrun up SPEC` runs without click, too (pbtrun.ui.quickargs)
        commands.up(spec_file, train_dir, force, kw)
        return
    from pbtrun.run.settings import resolve
    from pbtrun.spec.expansion import expand
    from pbtrun.spec.reading import load

    commands.cwd()  # as `up` without --dry-run: in a deleted directory, a relative spec path names nothing
    targets.refuse_run_module(spec_file, "up")
    spec = load(spec_file)
    commands.warn(spec)
    settings = resolve(spec.scheduler, commands.flags(kw), spec_file)
    train_dir = commands.train_dir_of(train_dir, spec)
    _print_plan(spec.name, Path(train_dir) / spec.name, expand(spec, train_dir), settings, as_json)


def _print_plan(name: str, sweep_dir: Path, compiled: list, settings: Any, as_json: bool) -> None:
    """The plan shows the argv that would run: ``python`` is the interpreter pbtrun runs under.
    For a sweep that exists, what the spec changes in it, read from its state, which stays as it is."""
    from pbtrun.backends.local import resolve_argv
    from pbtrun.ui import render

    changes = None
    paths = SweepPaths(sweep_dir)
    if is_sweep(paths.dir):
        from pbtrun.ui import changes as diffing

        changes = diffing.compare(store.load(paths), compiled)
        compiled = changes.planned  # the names and order `up` would give them
    programs: dict[str, str] = {}  # by first word: a few commands, shared by thousands of experiments
    shown = []
    for exp in compiled:
        word = exp.argv[0]
        if (program := programs.get(word)) is None:
            program = programs[word] = resolve_argv([word])[0]
        shown.append(exp if program == word else exp._replace(argv=(program, *exp.argv[1:])))
    compiled = shown
    if as_json:
        document = render.plan_json(name, sweep_dir, compiled, settings)
        if changes is not None:
            document["changes"] = diffing.to_json(changes)
        _echo_lines(render.json_lines(document, "experiments"))
    else:
        lines = None if changes is None else diffing.text(changes, compiled)
        click.echo(render.plan(name, sweep_dir, compiled, settings, lines))


@cli.command(**help_of("plan"))
@click.argument("spec_file", type=click.Path(path_type=Path))  # a directory: spec.load says so, as pbtrun does
@placement_options
@click.option(
    "--train-dir", "--train_dir", "train_dir", cls=OldSpelling, help="Train dir (overrides the spec's train_dir)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan(spec_file: Path, train_dir: str | None, as_json: bool, **kw: Any) -> None:
    """Print the experiments SPEC_FILE would run (command, env, GPU slot); create and run nothing."""
    from pbtrun.run.settings import resolve
    from pbtrun.spec.expansion import expand
    from pbtrun.spec.reading import load

    targets.refuse_run_module(spec_file, "plan")
    spec = load(spec_file)
    commands.warn(spec)
    settings = resolve(spec.scheduler, commands.flags(kw), spec_file)
    train_dir = commands.train_dir_of(train_dir, spec)
    _print_plan(spec.name, Path(train_dir) / spec.name, expand(spec, train_dir), settings, as_json)


@cli.command(**help_of("init"))
@click.argument("path", required=False, default="sweep.toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: Path, force: bool) -> None:
    """Write a commented starter spec to PATH (default ./sweep.toml)."""
    from importlib.resources import files

    _write_new(path, files("pbtrun.spec").joinpath("starter.toml").read_text(), force)
    click.echo(f"wrote {path}; edit it, then: pbtrun plan {path}  and  pbtrun up {path}")


def _write_new(path: Path, text: str, force: bool) -> None:
    """Write the file ``init`` or ``import`` makes, never over an existing one unless ``force``.

    Opening with ``x`` checks and creates in one step; a path that cannot be written (no such
    directory, a name too long, no permission, a full disk) is a user error, never a traceback.
    """
    try:
        with open(path, "w" if force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise PbtrunError(f"{path} already exists; pbtrun leaves it alone. Give another path, or --force.") from None
    except OSError as exc:
        raise PbtrunError(_cannot_write(path, exc)) from None


def _cannot_write(path: Path, exc: OSError) -> str:
    parent = path.parent
    if isinstance(exc, FileNotFoundError) and not os.path.isdir(parent):  # isdir never raises
        return (
            f"{path}: cannot write it: the directory {parent} does not exist. "
            f"Create it first (mkdir -p {shlex.quote(str(parent))}), or give another path."
        )
    if isinstance(exc, NotADirectoryError):
        return f"{path}: cannot write it: {parent} is not a directory. Give another path."
    return f"{path}: cannot write it: {exc.strerror or exc}. Give a path you can write to."


@cli.command(**help_of("schema"))
def schema() -> None:
    """Print the JSON Schema of sweep.toml (for editors: Even Better TOML / taplo)."""
    from importlib.resources import files

    click.echo(files("pbtrun.spec").joinpath("sweep.schema.json").read_text(), nl=False)


@cli.command("import", **help_of("import"))
@click.argument("target")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to stdout.")
@click.option(
    "--experiment-suffix",
    "--experiment_suffix",
    "experiment_suffix",
    cls=OldSpelling,
    help="As the old launcher's flag.",
)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def import_(target: str, output: Path | None, experiment_suffix: str | None, force: bool) -> None:
    """Turn a RunDescription module (dotted name or .py file) into an equivalent sweep.toml."""
    from pbtrun.compat.importer import to_toml

    text = to_toml(target, experiment_suffix)
    if output is None:
        click.echo(text, nl=False)
        return
    _write_new(output, text, force)
    click.echo(f"wrote {output}; check it with: pbtrun plan {output}", err=True)


# --------------------------------------------------------------------------- resume


@cli.command(**help_of("resume"))
@click.argument("path", required=False, type=click.Path(path_type=Path))
@scheduler_options
def resume(path: Path | None, **kw: Any) -> None:
    """Continue the sweep at PATH (a sweep dir, or a train dir holding one sweep; default: the only
    sweep under ./train_dir)."""
    paths = _resolve(path or targets.DEFAULT_TRAIN_DIR, "resume", given=path is not None)
    flags = commands.flags(kw)
    with locks.scheduler_lock(paths):
        if any(v is not None for v in flags._asdict().values()):
            from pbtrun.run.settings import resolve
            from pbtrun.spec.model import SchedulerSettings

            with store.transaction(paths) as sweep:
                stored = sweep.settings
                base = SchedulerSettings(
                    None,
                    stored.gpus,
                    stored.max_parallel,
                    stored.experiments_per_gpu,
                    stored.pause_between_s,
                    stored.max_failures,
                )
                sweep.settings = resolve(base, flags, paths.state)
        commands.run(paths, kw)


def _refuse_a_spec_file(path: Path, command: str) -> None:
    """A file given where a sweep directory goes: most likely the spec the sweep came from."""
    if path.name == "pbtrun.json" or not path.is_file():
        return
    if path.suffix != ".toml":
        raise PbtrunError(f"{path} is a file, not a sweep directory: give a sweep directory (train_dir/NAME).")
    from pbtrun.spec.reading import load

    try:
        spec = load(path)
        where = f", {shlex.quote(str(Path(spec.train_dir) / spec.name))} by the spec's train_dir"
    except PbtrunError:
        where = ""
    raise PbtrunError(
        f"{path} is a sweep spec, not a sweep directory: `pbtrun up {shlex.quote(str(path))}` runs the "
        f"sweep it describes, or continues it; `pbtrun {command}` takes the sweep's directory{where}."
    )


def _resolve(path: Path, command: str, given: bool = True) -> SweepPaths:
    """The sweep at ``path`` (see ``paths.resolve_sweep``); a sweep that lost its pbtrun.json, at
    ``path`` or as the only one under a train dir, is reported with how to restore it; a path
    that is not there, with the sweeps closest to it. ``given``: typed, not the default."""
    targets.refuse_missing(path, command, given)
    _refuse_a_spec_file(path, command)
    target = path.parent if path.name == "pbtrun.json" else path
    remnants.refuse_lost_state(target)
    if target.is_dir() and not is_sweep(target) and not find_sweeps(target):
        lost = remnants.lost_sweeps(target)
        if len(lost) == 1:
            remnants.refuse_lost_state(lost[0])
        if lost:
            names = ", ".join(shlex.quote(str(p)) for p in lost)
            raise PbtrunError(
                f"{path}: no sweep here, but {len(lost)} sweep directories under it lost their pbtrun.json "
                f"({names}); `pbtrun status DIR` on one says how to restore it."
            )
    return resolve_sweep(path)


# --------------------------------------------------------------------------- stop


@cli.command(**help_of("stop"))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--now", is_flag=True, help="Skip the grace period: kill the experiments at once.")
@click.option("--no-wait", is_flag=True, help="Ask the scheduler to stop and return at once.")
def stop(path: Path, now: bool, no_wait: bool) -> None:
    """Ask the scheduler running the sweep at PATH to stop gracefully, and wait for it."""
    paths = _resolve(path, "stop")
    if not control.notify(paths, "stop-now" if now else "stop"):
        click.echo(f"no scheduler is running {paths.dir}; nothing to stop")
        return
    holder = locks.read_holder(paths) or {}
    click.echo(f"asked the scheduler (pid {holder.get('pid', '?')}) to stop{' now' if now else ''}")
    if no_wait:
        return
    from pbtrun.ui import render

    locks.wait_for_scheduler(paths)
    counts = store.load(paths).counts()
    click.echo(f"stopped: {render.counts_line(counts)}; resume with: pbtrun resume {paths.dir}")


# --------------------------------------------------------------------------- status, ls, logs


def complete_sweeps(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a sweep: the directories that begin with what is typed (relative,
    absolute or ``~/``), and the sweeps directly inside them (``train_dir/NAME``). Where none
    matches, the shell's own directory completion."""
    return _complete_paths(incomplete, sweeps=True)


def complete_train_dirs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a train dir: directories that are not sweeps themselves."""
    return _complete_paths(incomplete, sweeps=False)


def _complete_paths(incomplete: str, sweeps: bool) -> list[Any]:
    """Candidates spelled as typed (``~`` stays ``~``): a sweep as ``DIR/NAME``, any other
    directory as ``DIR/`` followed by the sweeps in it, so that one Tab after ``td`` goes to
    ``td40/``. When all there is to offer is one directory and nothing in it, or nothing at all,
    the shell completes directories itself (click's ``dir`` item): it handles what this does not
    (``$VAR/``), and in bash leaves no space after a directory."""
    from click.shell_completion import CompletionItem

    head, _, tail = incomplete.rpartition("/")
    typed = f"{head}/" if head or incomplete.startswith("/") else ""
    base = Path(os.path.expanduser(typed or "."))
    found: list[str] = []
    for sub in subdirectories(base):
        if not sub.name.startswith(tail) or (sub.name.startswith(".") and not tail.startswith(".")):
            continue
        if is_sweep(sub):
            found += [typed + sub.name] if sweeps else []
        else:
            found.append(f"{typed}{sub.name}/")
            found += [f"{typed}{sub.name}/{p.name}" for p in find_sweeps(sub)] if sweeps else []
    found = sorted(set(found))
    if not found or (len(found) == 1 and found[0].endswith("/")):
        return [CompletionItem(incomplete, type="dir")]
    return [CompletionItem(value) for value in found]


def complete_experiments(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    try:
        sweep = store.load(resolve_sweep(Path(os.path.expanduser(ctx.params["path"]))))
    except (PbtrunError, KeyError, TypeError):
        return []
    return [name for name in (e.name for e in sweep.experiments.values()) if name.startswith(incomplete)]


@cli.command(**help_of("status"))
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
    path = path or Path("train_dir")
    _refuse_a_spec_file(path, "status")
    remnants.refuse_lost_state(path.parent if path.name == "pbtrun.json" else path)
    if is_sweep(path) or path.name == "pbtrun.json":
        _sweep_status(resolve_sweep(path), as_json, watch, None if show_all else STATUS_ROWS, filters)
    elif path.is_dir():
        _refuse_filters(path, filters)
        _train_dir_status(path, as_json, watch)
    else:
        start = "Run `pbtrun up SPEC.toml` to start a sweep."
        raise PbtrunError(f"{path}: no such sweep or train dir. {start}{targets.did_you_mean(path)}")


@cli.command(**help_of("ls"))
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
    from pbtrun.ui import render

    filters = render.Filters(**options)
    if as_json:
        with store.gc_paused():  # the document and its encoding: as many containers again
            sweep, holder = store.load(paths), locks.holder_alive(paths)
            document = render.sweep_json(paths, sweep, holder, _observed(paths, sweep, holder), filters)
            _echo_lines(render.json_lines(document, "experiments"))
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
    if as_json:  # an unreadable sweep is listed with its error, never silently left out
        docs = [
            {
                "name": d.name if s is None else s["name"],
                "dir": str(d.resolve()),
                "counts": None if s is None else s["counts"],
                "running": h is not None,
                "error": error or None,
            }
            for d, s, h, error in _sweep_rows(train_dir, full_errors=True)
        ]
        click.echo(json.dumps({"train_dir": str(train_dir.resolve()), "sweeps": docs}, indent=2))
    elif watch:
        _watch(_console(), lambda _rows: _train_dir_view(train_dir))
    else:
        _console().print(_train_dir_view(train_dir))


def _train_dir_view(train_dir: Path) -> Any:
    from rich.text import Text

    from pbtrun.ui.tables import sweeps_table

    rows = _sweep_rows(train_dir)
    if not rows:
        return Text(f"no sweeps under {train_dir}. Start one with: pbtrun up SPEC.toml")
    return sweeps_table(rows, symbols=sys.stdout.isatty())


def _sweep_rows(train_dir: Path, full_errors: bool = False) -> list[tuple]:
    """Per sweep under ``train_dir``: its dir, its summary (or None), its scheduler, an error.
    A sweep that lost its pbtrun.json is listed too, as an error. ``full_errors``: each error as
    `pbtrun status DIR` gives it, not shortened for a table cell."""
    rows: list[tuple] = []
    for sweep_dir in remnants.lost_sweeps(train_dir):
        paths = SweepPaths(sweep_dir)
        if full_errors:
            error = remnants.lost_state_message(sweep_dir, remnants.remnants(sweep_dir))
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


@cli.command(**help_of("logs"))
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

    from pbtrun.ui import logs as logs_mod

    given = path is not None
    path, experiment = targets.logs_arguments(path, experiment)
    _refuse_mixed_logs_options(experiment, follow, attempt, failed)
    paths = _resolve(path, "logs", given=given)
    sweep = store.load(paths)
    if failed:
        tails = list(logs_mod.failed_tails(paths, sweep, lines))
        if not tails:
            click.echo(f"no failed experiments in {paths.dir}", err=True)
        for header, tail in tails:
            click.echo(header)
            click.echo("".join(f"    {line}\n" for line in tail), nl=False)
        return
    if experiment is None:
        raise PbtrunError("name an experiment (a name, a unique prefix or an index), or give --failed.")
    exp = logs_mod.find(sweep, experiment)
    last = lines if ctx.get_parameter_source("lines") == ParameterSource.COMMANDLINE else None
    try:
        code = logs_mod.show(paths, sweep, exp, attempt, follow, last)
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


def _echo_lines(lines: Any) -> None:
    """Print a long document piece by piece (``render.json_lines``), never whole in memory."""
    out = sys.stdout
    for line in lines:
        out.write(line)
    out.flush()


def main() -> None:
    """Run the command, then leave without the interpreter's teardown (``commands.leave``)."""
    try:
        cli(prog_name="pbtrun")
        code = 0
    except KeyboardInterrupt:  # before a command runs (its own are handled in _Group.invoke)
        code = 130
    except SystemExit as exc:
        code = commands.exit_code(exc)
    commands.leave(code)
