"""The commands that write or print a spec rather than run one: ``init`` (a commented starter),
``schema`` (the JSON Schema, for editors) and ``import`` (an old launcher's run module turned
into a spec). What they write never replaces a file unless ``--force`` says so."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from pbtrun.errors import PbtrunError
from pbtrun.ui.cliparts import OldSpelling, command


@command("init")
@click.argument("path", required=False, default="sweep.toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: Path, force: bool) -> None:
    """Write a commented starter spec to PATH (default ./sweep.toml)."""
    from importlib.resources import files

    _write_new(path, files("pbtrun.spec").joinpath("starter.toml").read_text(), force)
    click.echo(f"wrote {path}; edit it, then: pbtrun plan {path}  and  pbtrun up {path}")


@command("schema")
def schema() -> None:
    """Print the JSON Schema of sweep.toml (for editors: Even Better TOML / taplo)."""
    from importlib.resources import files

    click.echo(files("pbtrun.spec").joinpath("sweep.schema.json").read_text(), nl=False)


@command("import")
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
