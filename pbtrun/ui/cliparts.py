"""The click pieces the commands of :mod:`pbtrun.ui.cli` are made of, beyond click's own: an option
with a hidden old spelling, the command class that leaves those spellings out of completion, a
number of seconds, the options of :mod:`pbtrun.ui.runoptions` as click options, the examples at
the end of each command's help, and long output written piece by piece."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from pbtrun.ui.runoptions import FLAG, INTEGER, SECONDS, Option

F = TypeVar("F", bound=Callable[..., Any])


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


class Seconds(click.ParamType):
    """A number of seconds from ``min_s`` to ``max_s``. ``click.FloatRange`` lets ``nan`` and
    ``inf`` through, which turn a timer into one that never fires or never ends."""

    name = "seconds"

    def __init__(self, min_s: float, max_s: float, what: str) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.what = what  # the maximum in words

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        if not self.min_s <= seconds <= self.max_s:  # also false for nan
            self.fail(f"must be {self.min_s:g} to {self.max_s:g} seconds ({self.what}), not {value}.", param, ctx)
        return seconds


def with_options(*table: Option) -> Callable[[F], F]:
    """A decorator that gives a command these options, listed in this order in its help."""

    def decorate(command: F) -> F:
        for option in reversed(table):  # click lists the option applied last first
            command = _click_option(option)(command)
        return command

    return decorate


def _click_option(option: Option) -> Callable[[F], F]:
    """``option`` as click declares it: a kind of value becomes click's type, with the same
    limits and so the same messages for a value out of them."""
    settings: dict[str, Any] = {"help": option.help}
    if option.kind == FLAG:
        settings["is_flag"] = True
    elif option.kind == SECONDS:
        settings["type"] = Seconds(option.low, option.high, option.high_in_words)
    elif option.kind == INTEGER:
        limited = option.low is not None or option.high is not None
        settings["type"] = click.IntRange(min=option.low, max=option.high) if limited else int
    if option.default is not None and option.kind != FLAG:
        settings["default"] = option.default
    if option.show_default:
        settings["show_default"] = True
    option_class = OldSpelling if len(option.spellings) > 1 else click.Option
    return click.option(*option.spellings, option.name, cls=option_class, **settings)


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
    "gpus": (
        "The GPUs pbtrun may use, and what runs on them.",
        (
            "pbtrun gpus",
            "pbtrun gpus train_dir/ant          # and where its next experiment would go",
            "pbtrun gpus --json > snap.json     # replay it: PBTRUN_GPU_SOURCE=snap.json pbtrun ...",
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


def command(name: str) -> Callable[[Callable[..., Any]], click.Command]:
    """A decorator that makes a function the command ``name``, with its summary and examples
    (see :data:`HELP`); :mod:`pbtrun.ui.cli` adds it to ``pbtrun``."""
    short, lines = HELP[name]
    return click.command(name, cls=Command, short_help=short, epilog=examples(*lines))


def echo_lines(lines: Iterable[str]) -> None:
    """Print a long document piece by piece (a JSON document's ``json_lines``), never whole in memory."""
    out = sys.stdout
    for line in lines:
        out.write(line)
    out.flush()
