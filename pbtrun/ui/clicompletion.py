"""Shell completion of the arguments that name sweeps, train dirs and experiments: click calls
these while a person presses Tab (docs/cli.md says how to enable it). They only read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from pbtrun.errors import PbtrunError
from pbtrun.state.paths import find_sweeps, is_sweep, resolve_sweep, subdirectories


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
    """Shell completion of an experiment of the sweep given before it: the names that begin with what is typed."""
    from pbtrun.state import store

    try:
        sweep = store.load(resolve_sweep(Path(os.path.expanduser(ctx.params["path"]))))
    except (PbtrunError, KeyError, TypeError):
        return []
    return [name for name in (e.name for e in sweep.experiments.values()) if name.startswith(incomplete)]
