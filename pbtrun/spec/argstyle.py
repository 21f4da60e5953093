"""How an experiment's command line is written: the spec's ``args`` style and what follows from it.

``args = "argparse"`` (the default) is the old launcher's: ``--lr=0.1``, ``--experiment=<name>``
and ``--train_dir=<train_dir>/<sweep>/<group>_<suffix>``, one directory for a whole group.
``args = "hydra"`` writes Hydra overrides: ``lr=0.1``, ``hydra.job.name=<name>`` and
``hydra.run.dir=<train_dir>/<sweep>/<name>``, a directory for each experiment, so that no two
runs share a ``.hydra/`` or an output file. A key the spec sets itself (``param_prefix``,
``experiment_arg_name``, ``experiment_dir_arg_name``) wins over its style's default.

:class:`Layout` renders one group's experiments. It also renders an experiment under another
name, which the state's merge asks for when it numbers a new experiment past its group's last:
the name appears in the name argument, in Hydra style in the directory too, and wherever a
``{experiment}`` placeholder was written, and every one of them must follow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pbtrun.spec.naming import render_value
from pbtrun.spec.placeholders import fill, has_any

ARGPARSE = "argparse"
HYDRA = "hydra"
STYLES = (ARGPARSE, HYDRA)
_ARG_KEYS = ("param_prefix", "experiment_arg_name", "experiment_dir_arg_name")


class StyleDefaults(NamedTuple):
    param_prefix: str
    experiment_arg_name: str
    experiment_dir_arg_name: str


DEFAULTS = {
    ARGPARSE: StyleDefaults("--", "--experiment", "--train_dir"),
    HYDRA: StyleDefaults("", "hydra.job.name", "hydra.run.dir"),
}

# What Hydra's override grammar takes unquoted as a plain string; anything else (brackets, commas,
# '=', spaces, quotes: a name made from a list value, a train dir with a space) is quoted.
_HYDRA_PLAIN = re.compile(r"[A-Za-z0-9_./+@%:-]+")
_BACKSLASHES_BEFORE_QUOTE = re.compile(r"(\\*)('|$)")


def hydra_quote(value: str) -> str:
    """``value`` as a Hydra override value that Hydra reads back as exactly that string.

    In a quoted value, backslashes are literal except a run of them before a quote (or the
    closing quote), which is halved; so such a run is doubled and a quote escaped.
    """
    if _HYDRA_PLAIN.fullmatch(value):
        return value
    escaped = _BACKSLASHES_BEFORE_QUOTE.sub(lambda m: m[1] * 2 + ("\\'" if m[2] else ""), value)
    return f"'{escaped}'"


class Layout:
    """What the experiments of one group share in how their argv and env are written."""

    __slots__ = (
        "_command_marked",
        "_env_marked",
        "command",
        "dir_arg",
        "env",
        "group_dir",
        "name_arg",
        "prefix",
        "quote",
        "sweep_dir",
    )

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        style: tuple[str, str, str, str],
        sweep_dir: str,
        group_dir: str,
    ) -> None:
        """``style``: the spec's ``args``, ``param_prefix``, ``experiment_arg_name`` and
        ``experiment_dir_arg_name``. ``group_dir`` is the argparse style's directory of the group;
        the Hydra style gives each experiment its own."""
        args, self.prefix, self.name_arg, self.dir_arg = style
        hydra = args == HYDRA
        self.command = tuple(command)
        self.env = dict(env)  # one mapping, shared by the group's experiments unless placeholders differ
        self.sweep_dir = sweep_dir
        self.group_dir = None if hydra else group_dir
        self.quote = hydra
        self._command_marked = any(has_any(word) for word in self.command)
        self._env_marked = any(has_any(value) for value in self.env.values())

    def own_dir(self, name: str) -> str:
        """``{experiment_dir}``: what the directory argument passes, given or not."""
        return self.group_dir if self.group_dir is not None else os.path.join(self.sweep_dir, name)

    def render(self, name: str, params: Mapping[str, Any]) -> tuple[tuple[str, ...], int | None, dict[str, str]]:
        """An experiment's argv, the position in it of its name argument (None if none), and its env."""
        prefix = self.prefix
        words = [f"{prefix}{key}={render_value(value)}" for key, value in params.items()]
        argv = [*self.command, *words]
        env = self.env
        if self._command_marked or self._env_marked or "{" in "".join(words):  # one C scan, not a loop
            values = {"experiment": name, "experiment_dir": self.own_dir(name), "sweep_dir": self.sweep_dir}
            argv = [fill(word, values) for word in argv]
            if self._env_marked:
                env = {key: fill(value, values) for key, value in env.items()}
        name_at = None
        if self.name_arg:
            name_at = len(argv)
            argv.append(f"{self.name_arg}={self._value(self.name_arg, name)}")
        if self.dir_arg:
            argv.append(f"{self.dir_arg}={self._value(self.dir_arg, self.own_dir(name))}")
        return tuple(argv), name_at, env

    def _value(self, arg: str, value: str) -> str:
        """A Hydra override's value is quoted where Hydra's grammar needs it; an option's never."""
        return hydra_quote(value) if self.quote and not arg.startswith("-") else value


# --------------------------------------------------------------------------- mixed styles


def mixed_styles(path: object, settings: Mapping[str, str], lines: Mapping[str, int | None]) -> str | None:
    """A warning when the three argument keys speak different styles, else None.

    ``param_prefix = ""`` (Hydra's ``lr=0.1``) beside ``--experiment`` makes every run of a Hydra
    app fail with "unrecognized arguments"; ``--`` beside ``hydra.run.dir`` fails an argparse app
    the same way. ``lines``: where each key is written, None for a default.
    """
    kinds = {key: _kind(key, settings[key]) for key in _ARG_KEYS}
    if len({kind for kind in kinds.values() if kind}) < 2:
        return None

    def said(key: str) -> str:
        where = f"line {lines[key]}" if lines.get(key) else "the default"
        return f"{key} = {_toml_string(settings[key])} ({where})"

    options = [said(k) for k, kind in kinds.items() if kind == "--option"]
    overrides = [said(k) for k, kind in kinds.items() if kind == "key=value"]
    return (
        f"{path}: the argument styles mix: {' and '.join(overrides)} "
        f"{'passes' if len(overrides) == 1 else 'pass'} Hydra-style key=value arguments, but "
        f"{' and '.join(options)} {'passes' if len(options) == 1 else 'pass'} argparse-style --options; "
        'a program that takes one style rejects the other ("unrecognized arguments"), so every '
        'experiment would fail. For a Hydra app, set args = "hydra" and leave these keys out (lr=0.1, '
        "hydra.job.name=<name>, hydra.run.dir=<a directory for each experiment>); for an argparse "
        "app, leave them out; otherwise make them agree."
    )


def _kind(key: str, value: str) -> str | None:
    if key != "param_prefix" and not value:
        return None  # no such argument is passed
    return "--option" if value.startswith("-") else "key=value"


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
