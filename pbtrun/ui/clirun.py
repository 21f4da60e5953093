"""The commands that run a sweep, or show what running it would do: ``up``, ``plan``, ``resume``
and ``stop``. Their options come from one table (:mod:`pbtrun.ui.runoptions`), which
``pbtrun up SPEC``'s fast path parses too; what ``up`` and ``resume`` then run is in
:mod:`pbtrun.ui.commands`, without click.

The spec layer, the scheduler and the renderers are imported where a command needs them:
``pbtrun --help`` and ``status`` start without paying for them (docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pbtrun.state.paths import SweepPaths, is_sweep
from pbtrun.ui import commands, runoptions, targets
from pbtrun.ui.cliparts import command, echo_lines, with_options


@command("up")
@click.argument("spec_file", type=click.Path(path_type=Path))  # a directory: spec.load says so, as errors are said
@with_options(*runoptions.UP)
def up(spec_file: Path, train_dir: str | None, force: bool, dry_run: bool, as_json: bool, **options: Any) -> None:
    """Compile SPEC_FILE and run the sweep; continue it if it already exists."""
    if as_json and not dry_run:
        raise click.UsageError(
            "--json goes with --dry-run: `pbtrun up SPEC --dry-run --json` prints the plan as JSON. "
            "A running sweep's progress as JSON is `pbtrun status SWEEP --json`."
        )
    if not dry_run:  # what `pbtrun up SPEC` runs without click, too (pbtrun.ui.quickargs)
        commands.up(spec_file, train_dir, force, options)
        return
    commands.cwd()  # as `up` without --dry-run: in a deleted directory, a relative spec path names nothing
    _print_plan(spec_file, train_dir, options, as_json, "up")


@command("plan")
@click.argument("spec_file", type=click.Path(path_type=Path))  # a directory: spec.load says so, as pbtrun does
@with_options(*runoptions.PLACEMENT, runoptions.TRAIN_DIR)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan(spec_file: Path, train_dir: str | None, as_json: bool, **options: Any) -> None:
    """Print the experiments SPEC_FILE would run (command, env, GPU slot); create and run nothing."""
    _print_plan(spec_file, train_dir, options, as_json, "plan")


def _print_plan(
    spec_file: Path, train_dir: str | None, options: dict[str, Any], as_json: bool, command_name: str
) -> None:
    """What ``plan`` and ``up --dry-run`` (``command_name``) print: every experiment the spec compiles
    to; for a sweep that exists, what the spec changes in it, read from its state, which stays
    as it is."""
    from pbtrun.run.settings import resolve_spec
    from pbtrun.spec.expansion import expand
    from pbtrun.spec.reading import load
    from pbtrun.state import store
    from pbtrun.ui import changes, plans
    from pbtrun.ui.jsonlines import json_lines

    targets.refuse_run_module(spec_file, command_name)
    spec = load(spec_file)
    commands.warn(spec)
    settings = resolve_spec(spec, commands.scheduler_flags(options))
    train_dir = commands.train_dir_of(train_dir, spec)
    sweep_dir = Path(train_dir) / spec.name
    compiled = expand(spec, train_dir)
    edit = None  # what the spec changes in the sweep, if it exists
    paths = SweepPaths(sweep_dir)
    if is_sweep(paths.dir):
        edit = changes.compare(store.load(paths), compiled)
        compiled = edit.planned  # the names and order `up` would give them
    shown = _as_they_would_run(compiled)
    if as_json:
        document = plans.plan_json(spec.name, sweep_dir, shown, settings)
        if edit is not None:
            document["changes"] = changes.to_json(edit)
        echo_lines(json_lines(document, "experiments"))
    else:
        lines = None if edit is None else changes.text(edit, shown)
        click.echo(plans.plan_text(spec.name, sweep_dir, shown, settings, lines))


def _as_they_would_run(compiled: list[Any]) -> list[Any]:
    """The experiments with the argv that would run: ``python`` is the interpreter pbtrun runs under."""
    from pbtrun.backends.local import resolve_argv

    programs: dict[str, str] = {}  # by first word: a few commands, shared by thousands of experiments
    shown = []
    for exp in compiled:
        word = exp.argv[0]
        if (program := programs.get(word)) is None:
            program = programs[word] = resolve_argv([word])[0]
        shown.append(exp if program == word else exp._replace(argv=(program, *exp.argv[1:])))
    return shown


@command("resume")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@with_options(*runoptions.PLACEMENT, *runoptions.RUNNING)
def resume(path: Path | None, **options: Any) -> None:
    """Continue the sweep at PATH (a sweep dir, or a train dir holding one sweep; default: the only
    sweep under ./train_dir)."""
    from pbtrun.state import locks, store

    paths = targets.sweep_at(path or targets.DEFAULT_TRAIN_DIR, "resume", given=path is not None)
    flags = commands.scheduler_flags(options)
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
                    # as given: a sweep that does not pin stays so (these imply pinning)
                    stored.gpus_per_experiment if stored.experiments_per_gpu > 0 else None,
                    stored.placement if stored.placement != "count" else None,
                    stored.min_free_memory_gb,
                    stored.memory_settle_s,
                    stored.exclude_busy_gpus,
                )
                sweep.settings = resolve(base, flags, paths.state)
        commands.run(paths, options)


@command("stop")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--now", is_flag=True, help="Skip the grace period: kill the experiments at once.")
@click.option("--no-wait", is_flag=True, help="Ask the scheduler to stop and return at once.")
def stop(path: Path, now: bool, no_wait: bool) -> None:
    """Ask the scheduler running the sweep at PATH to stop gracefully, and wait for it."""
    from pbtrun.state import control, locks, store

    paths = targets.sweep_at(path, "stop")
    if not control.notify(paths, "stop-now" if now else "stop"):
        from pbtrun.ui.unwatched import cancel_unwatched

        cancelled = cancel_unwatched(paths)  # a cluster's jobs that no scheduler watches
        if cancelled:
            click.echo(
                f"cancelled the sweep's jobs: {cancelled} recorded interrupted; resume with: pbtrun resume {paths.dir}"
            )
        else:
            click.echo(f"no scheduler is running {paths.dir}; nothing to stop")
        return
    holder = locks.read_holder(paths) or {}
    click.echo(f"asked the scheduler (pid {holder.get('pid', '?')}) to stop{' now' if now else ''}")
    if no_wait:
        return
    from pbtrun.ui.words import counts_line

    locks.wait_for_scheduler(paths)
    counts = store.load(paths).counts()
    click.echo(f"stopped: {counts_line(counts)}; resume with: pbtrun resume {paths.dir}")
