"""What the paths on a command line mean: the command to use when a Python run module is given
where a sweep spec goes.

Nothing here writes; it only stats and reads files, so a mistake costs a clear message and never
a traceback.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pbtrun.errors import SpecError


def refuse_run_module(spec_file: Path, command: str) -> None:
    """A Python file given to ``up`` or ``plan``: say the ``pbtrun import`` command that turns an
    old launcher's run module into a spec, and the command to run after it, on a line of their
    own to copy. Raised before the file is read as TOML, whose complaint about the first line
    of Python would help no one."""
    if spec_file.suffix != ".py" or not spec_file.is_file():
        return
    toml = spec_file.with_suffix(".toml")
    steps = f"pbtrun import {shlex.quote(str(spec_file))} -o {shlex.quote(str(toml))}"
    steps += f" && pbtrun {command} {shlex.quote(str(toml))}"
    overwrites = ""
    if toml.exists():  # never suggest --force: that file may be a spec written by hand
        overwrites = f" ({toml} exists already, and import will not write over it: give -o another name)"
    if _defines_run_description(spec_file):
        what = f"{spec_file} is a Python run module (it defines RUN_DESCRIPTION), not a sweep spec. Convert it"
    else:
        what = (
            f"{spec_file} is a Python file, not a sweep spec (TOML). A training script goes in a spec's "
            "`command` (`pbtrun init` writes a starter spec). An old launcher's run module (one that defines "
            "RUN_DESCRIPTION) is converted"
        )
    raise SpecError(f"{what}, then run, with{overwrites}:\n    {steps}")


def _defines_run_description(path: Path) -> bool:
    try:
        return b"RUN_DESCRIPTION" in path.read_bytes()
    except OSError:
        return False
