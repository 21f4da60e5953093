"""The command line: the ``pbtrun`` group of commands, and the one place where an error becomes
its message and exit code. No logic of its own.

The commands live in modules by topic, made of the pieces in :mod:`pbtrun.ui.cliparts`:
:mod:`pbtrun.ui.clirun` (``up``, ``plan``, ``resume``, ``stop``), :mod:`pbtrun.ui.clistatus`
(``status``, ``ls``, ``logs``), :mod:`pbtrun.ui.cligpus` (``gpus``) and :mod:`pbtrun.ui.clifiles`
(``init``, ``schema``, ``import``).
Every :class:`PbtrunError` becomes its message and exit code in ``commands.report``.
``pbtrun up SPEC`` with ordinary flags does not come here: ``__main__`` hands it to
:mod:`pbtrun.ui.quickargs` and :mod:`pbtrun.ui.commands`, which ``up`` calls for it too.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pbtrun import __version__
from pbtrun.errors import PbtrunError
from pbtrun.ui import clifiles, cligpus, clirun, clistatus, commands
from pbtrun.ui.cliparts import examples


class _ErrorsAsMessages(click.Group):
    """A group that turns what a command raises into what a person reads: a :class:`PbtrunError`
    into its message and exit code, Ctrl-C into exit code 130; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PbtrunError as exc:
            ctx.exit(commands.report(exc))
        except KeyboardInterrupt:
            commands.say("pbtrun: interrupted", sys.stderr)
            ctx.exit(130)


@click.group(
    cls=_ErrorsAsMessages,
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


for _command in (
    clirun.up,
    clirun.plan,
    clirun.resume,
    clirun.stop,
    clistatus.status,
    clistatus.ls,
    clistatus.logs,
    cligpus.gpus,
    clifiles.init,
    clifiles.schema,
    clifiles.import_,
):
    cli.add_command(_command)


def main() -> None:
    """Run the command, then leave without the interpreter's teardown (``commands.leave``)."""
    try:
        cli(prog_name="pbtrun")
        code = 0
    except KeyboardInterrupt:  # before a command runs (its own are handled in _ErrorsAsMessages.invoke)
        code = 130
    except SystemExit as exc:
        code = commands.exit_code(exc)
    commands.leave(code)
