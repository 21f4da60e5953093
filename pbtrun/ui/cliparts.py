"""The click pieces the commands of :mod:`pbtrun.ui.cli` are made of, beyond click's own: an option
with a hidden old spelling, the command class that leaves those spellings out of completion, and
the examples at the end of each command's help."""

from __future__ import annotations

import copy
from typing import Any

import click


class OldSpelling(click.Option):
    """An option that also takes the old launcher's underscore spelling (``--num_gpus``), for
    the scripts of its users, without showing it: help and shell completion offer one spelling
    of each option."""

    @property
    def hidden_opts(self) -> list[str]:
        return [o for o in self.opts if "_" in o and o.replace("_", "-") in self.opts]

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = copy.copy(self)
        shown.opts = [o for o in self.opts if o not in self.hidden_opts]
        return click.Option.get_help_record(shown, ctx)


class Command(click.Command):
    """A command whose shell completion leaves out the hidden spellings of its options."""

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        hidden = {o for p in self.get_params(ctx) if isinstance(p, OldSpelling) for o in p.hidden_opts}
        return [item for item in super().shell_complete(ctx, incomplete) if item.value not in hidden]


def examples(*lines: str) -> str:
    """A help epilog of example command lines, kept as written (click's ``\\b`` stops rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


# Each command's one-line summary in `pbtrun --help` (click would cut its docstring's first
# sentence at the width) and the examples that end its own --help.
HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    "up": (
        "Run a sweep from its spec, or continue it.",
        (
            "pbtrun up sweep.toml",
            "pbtrun up sweep.toml --num-gpus 4 --max-parallel 8",
            "pbtrun up sweep.toml --dry-run    # every command, env and GPU; runs nothing",
        ),
    ),
    "plan": (
        "Print what a spec would run; run nothing.",
        (
            "pbtrun plan sweep.toml",
            "pbtrun plan sweep.toml --num-gpus 2 --json",
        ),
    ),
    "init": (
        "Write a commented starter sweep.toml.",
        (
            "pbtrun init",
            "pbtrun init ant.toml && pbtrun plan ant.toml",
        ),
    ),
    "schema": (
        "Print the JSON Schema of sweep.toml, for editors.",
        (
            "pbtrun schema > sweep.schema.json",
            "# then make a spec's first line:  #:schema ./sweep.schema.json",
        ),
    ),
    "import": (
        "Turn an old launcher's run module into a spec.",
        (
            "pbtrun import runs/ant_pbt.py -o ant_pbt.toml && pbtrun up ant_pbt.toml",
            "pbtrun import my_project.runs.ant_pbt --experiment-suffix v2",
        ),
    ),
    "resume": (
        "Continue a sweep where it stopped.",
        (
            "pbtrun resume",
            "pbtrun resume train_dir/ant --retry-failed --max-parallel 2",
        ),
    ),
    "stop": (
        "Stop the scheduler running a sweep, gracefully.",
        (
            "pbtrun stop train_dir/ant",
            "pbtrun stop train_dir/ant --now --no-wait",
        ),
    ),
    "status": (
        "Where the sweeps stand, or one sweep in detail.",
        (
            "pbtrun status",
            "pbtrun status train_dir/ant --failed",
            "pbtrun status train_dir/ant --json",
        ),
    ),
    "ls": (
        "List the sweeps under a train dir, quickly.",
        (
            "pbtrun ls",
            "pbtrun ls /data/runs --json",
        ),
    ),
    "logs": (
        "Print or follow an experiment's log.",
        (
            "pbtrun logs train_dir/ant 00_ant -f    # follow it (waits for it to start)",
            "pbtrun logs 3 -n 20        # #3 of the only sweep in ./train_dir: 20 lines",
            "pbtrun logs train_dir/ant --failed",
        ),
    ),
}


def help_of(command: str) -> dict[str, str]:
    """The ``short_help`` and ``epilog`` of ``command`` (see :data:`HELP`), for ``cli.command(...)``."""
    short, lines = HELP[command]
    return {"short_help": short, "epilog": examples(*lines)}
