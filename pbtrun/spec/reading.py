"""Reading, validating and expanding ``sweep.toml``.

The spec layer is pure: it reads one file and returns values. It never touches the train dir,
the state file or processes, so a bad spec can never leave anything behind on disk.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import product
from pathlib import Path
from typing import Any, NamedTuple

from pbtrun.errors import SpecError
from pbtrun.limits import MAX_EXPERIMENTS, MAX_GPUS, MAX_PAUSE_S, MAX_TIMEOUT_MIN
from pbtrun.printable import clip, quantity
from pbtrun.spec import argstyle, nesting, placeholders
from pbtrun.spec.naming import MAX_NAME_BYTES, canonical_json, experiment_name, id_from_json, render_value, shorthands

# Upper bounds on numbers that become waits or lists. Beyond them a value is a typo, not a plan,
# and it would only fail later, far from the line that caused it (or never end: nan and inf).

TOP_KEYS = (
    "name",
    "train_dir",
    "command",
    "args",
    "param_prefix",
    "experiment_arg_name",
    "experiment_dir_arg_name",
    "customize_experiment_name",
    "experiment_suffix",
    "max_retries",
    "timeout_min",
    "randomize",
    "random_seed",
    "scheduler",
    "env",
    "experiments",
)
SCHEDULER_KEYS = ("num_gpus", "gpus", "max_parallel", "experiments_per_gpu", "pause_between", "max_failures")
EXPERIMENT_KEYS = (
    "name",
    "command",
    "grid",
    "list",
    "seeds",
    "seed_base",
    "repeat",
    "env",
    "max_retries",
    "timeout_min",
)
_TABLES = {"the top level": TOP_KEYS, "[scheduler]": SCHEDULER_KEYS, "[[experiments]]": EXPERIMENT_KEYS}

# A name becomes a directory under the train dir: one path component, nothing hidden. Always
# fullmatch: "$" would let a trailing newline through.
_NAME_RE = re.compile(r"\w[\w.+=,@-]*")
_NAME_RULE = (
    "letters, digits and . _ - + = , @ only, starting with a letter, digit or _ "
    "(no '/', no '..', no spaces, no line breaks)"
)
# A grid, not yet expanded: per key, its parameter names (several: tied) and their rows of values.
_Axes = list[tuple[tuple[str, ...], list[tuple]]]


class SchedulerSettings(NamedTuple):
    """What ``[scheduler]`` asks for; ``None`` means "not given" so CLI flags and defaults apply."""

    num_gpus: int | None = None
    gpus: tuple[int, ...] | None = None
    max_parallel: int | None = None
    experiments_per_gpu: int | None = None
    pause_between_s: float | None = None
    max_failures: int | None = None


class GroupSpec(NamedTuple):
    """One ``[[experiments]]`` table: a group of experiments sharing a name and a command."""

    name: str
    argv: tuple[str, ...]
    combinations: tuple[dict[str, Any], ...]
    env: dict[str, str]
    max_retries: int | None = None
    timeout_min: float | None = None


class Spec(NamedTuple):
    """A validated ``sweep.toml``."""

    path: Path
    name: str
    train_dir: str
    param_prefix: str
    experiment_arg_name: str
    experiment_dir_arg_name: str
    customize_experiment_name: bool
    experiment_suffix: str
    scheduler: SchedulerSettings
    env: dict[str, str]
    groups: tuple[GroupSpec, ...]
    max_retries: int = 0
    timeout_min: float | None = None
    randomize: bool = False
    random_seed: int = 0
    text: str = ""
    args: str = argstyle.ARGPARSE
    warnings: tuple[str, ...] = ()  # for plan and up to print; the spec layer never prints


class ExperimentSpec(NamedTuple):
    """One compiled experiment: everything needed to run it, nothing about how it went."""

    id: str
    group: str
    index: int
    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    params: dict[str, Any]
    name_arg: int | None  # position in argv of the experiment-name argument, if any
    layout: argstyle.Layout  # how its group writes argv and env: see renamed
    max_retries: int = 0
    timeout_min: float | None = None

    def renamed(self, name: str) -> tuple[tuple[str, ...], dict[str, str]]:
        """Its argv and env had it been named ``name``. The state's merge numbers a new experiment
        past its group's last when its name is taken, and compares an existing one under the name
        it already has: every argument made with the name follows it (the name argument, in Hydra
        style its directory, and each ``{experiment}`` placeholder)."""
        if name == self.name:
            return self.argv, self.env
        argv, _, env = self.layout.render(name, self.params)
        return argv, env


# --------------------------------------------------------------------------- errors with places


class _Source:
    """The spec's text, to point errors at the line where a key is written."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.lines = [line.rstrip("\r") for line in text.split("\n")]  # TOML's lines, not str.splitlines'
        self._places: dict[tuple, int] | None = None
        self.named_by_values = True  # customize_experiment_name: parameter values show in names

    def error(self, where: Sequence[str | int], problem: str) -> SpecError:
        line = self.find_line(where)
        place = f"{self.path}, line {line}" if line else str(self.path)
        message = f"{place}: {_describe(where)}: {problem}"
        if line:
            message += f"\n    {line} | {clip(self.lines[line - 1].strip())}"
        return SpecError(message)

    def find_line(self, where: Sequence[str | int]) -> int | None:
        """The line of a key path (``("experiments", 1, "list", 2, "lr")``): where that key is
        written, else where the nearest table, array element or key holding it is. Worked out
        only when an error needs it, from the text, which TOML has already accepted."""
        if self._places is None:
            self._places = key_lines(self.text)
        path = tuple(where)
        while path:
            if path in self._places:
                return self._places[path]
            path = path[:-1]
        return None


def key_lines(text: str) -> dict[tuple, int]:
    """Every key path of a valid TOML text, with the line (1-based) it is written on.

    Table headers (``[a.b]``; ``[[a]]`` counts its entries: ``("experiments", 1)``), keys (a
    dotted one gives each of its prefixes) and array elements (``("list", 2)``: the line the third
    element starts on) all have places. Comments and strings are skipped, so a commented-out key
    or a ``key =`` inside a string is never taken for a key. Best effort: should the text surprise
    it, the places found so far are returned, and errors simply name fewer lines.
    """
    reader = _KeyLines(text)
    with contextlib.suppress(_Lost, IndexError, tomllib.TOMLDecodeError, RecursionError):
        reader.document()
    return reader.found


class _Lost(Exception):
    """The text is not what :class:`_KeyLines` expects: it stops there."""


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}\n#]|\Z")  # numbers, booleans, dates and times hold none of these


class _KeyLines:
    """A small reader of TOML's structure, not its values: headers, keys, arrays, inline tables
    and the extent of strings. Every loop consumes text or stops (``_Lost``, ``IndexError``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.line = 1
        self.found: dict[tuple, int] = {}
        self.arrays: dict[tuple, int] = {}  # arrays of tables: their entries so far

    def document(self) -> None:
        table: tuple = ()
        while True:
            self.skip(newlines=True)
            if self.at >= len(self.text):
                return
            if self.text[self.at] == "[":
                table = self.header()
            else:
                self.pair(table)
            self.skip(newlines=False)
            if self.at < len(self.text) and self.text[self.at] != "\n":
                raise _Lost

    def skip(self, newlines: bool) -> None:
        """Past spaces and comments, and newlines too if ``newlines``."""
        text = self.text
        while self.at < len(text):
            char = text[self.at]
            if char in " \t\r":
                self.at += 1
            elif char == "\n" and newlines:
                self.at += 1
                self.line += 1
            elif char == "#":
                end = text.find("\n", self.at)
                self.at = len(text) if end < 0 else end
            else:
                return

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.at):
            raise _Lost
        self.at += len(token)

    def header(self) -> tuple:
        """``[a.b]`` or ``[[a.b]]``: the path of the table it opens (an array's newest entry)."""
        line, double = self.line, self.text.startswith("[[", self.at)
        self.at += 2 if double else 1
        keys = self.key()
        self.expect("]]" if double else "]")
        if double:
            array = (*self.resolve(keys[:-1]), keys[-1])
            count = self.arrays.get(array, 0)
            self.arrays[array] = count + 1
            table = (*array, count)
        else:
            table = self.resolve(keys)
        for end in range(1, len(table) + 1):
            self.found.setdefault(table[:end], line)
        return table

    def resolve(self, keys: Sequence[str]) -> tuple:
        """A header's keys as a path: a key naming an array of tables means its newest entry."""
        path: tuple = ()
        for key in keys:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def pair(self, table: tuple) -> None:
        """``key = value`` in ``table``."""
        line, keys = self.line, self.key()
        for end in range(1, len(keys) + 1):
            self.found.setdefault((*table, *keys[:end]), line)
        self.expect("=")
        self.value((*table, *keys))

    def key(self) -> list[str]:
        """A dotted key's parts, quoted ones decoded; leaves the reader past the spaces after it."""
        keys = []
        while True:
            self.skip(newlines=False)
            start = self.at
            if self.text[start] in "\"'":
                self.string()
                keys.append(tomllib.loads(f"k = {self.text[start : self.at]}")["k"])
            else:
                bare = _BARE_KEY.match(self.text, start)
                if bare is None:
                    raise _Lost
                keys.append(bare.group())
                self.at = bare.end()
            self.skip(newlines=False)
            if not self.text.startswith(".", self.at):
                return keys
            self.at += 1

    def value(self, path: tuple) -> None:
        self.skip(newlines=False)
        char = self.text[self.at]
        if char in "\"'":
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            end = _SCALAR_END.search(self.text, self.at)
            if end is None or end.start() == self.at:
                raise _Lost
            self.at = end.start()

    def array(self, path: tuple) -> None:
        """``[a, b, ...]``: each element's place is the line it starts on."""
        self.at += 1
        index = 0
        while True:
            self.skip(newlines=True)
            if self.text[self.at] == "]":
                self.at += 1
                return
            self.found.setdefault((*path, index), self.line)
            self.value((*path, index))
            self.skip(newlines=True)
            if self.text[self.at] == ",":
                self.at += 1
                index += 1
            elif self.text[self.at] != "]":
                raise _Lost

    def inline_table(self, path: tuple) -> None:
        self.at += 1
        while True:
            self.skip(newlines=True)
            if self.text[self.at] == "}":
                self.at += 1
                return
            self.pair(path)
            self.skip(newlines=True)
            if self.text[self.at] == ",":
                self.at += 1
            elif self.text[self.at] != "}":
                raise _Lost

    def string(self) -> None:
        """Past a string of any of TOML's four kinds, counting the lines a multi-line one spans."""
        text, start = self.text, self.at
        quote = text[start]
        escapes = quote == '"'  # literal strings ('...') have no escapes
        if text.startswith(quote * 3, start):
            end = start + 3
            while not text.startswith(quote * 3, end):
                if end >= len(text):
                    raise _Lost
                end += 2 if escapes and text[end] == "\\" else 1
            end += 3
            for _ in range(2):  # up to two more quotes end the content: """a""""" holds a""
                if end < len(text) and text[end] == quote:
                    end += 1
        else:
            end = start + 1
            while text[end] != quote:
                if text[end] == "\n":
                    raise _Lost
                end += 2 if escapes and text[end] == "\\" else 1
            end += 1
        self.line += text.count("\n", start, end)
        self.at = end


def _describe(where: Sequence[str | int]) -> str:
    parts: list[str] = []
    for key in where:
        if isinstance(key, int):
            parts.append(f"[{key + 1}]")
        else:
            parts.append(("." if parts else "") + key)
    return "".join(parts) or "(top level)"


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _suggest(key: str, valid: Sequence[str]) -> str:
    """Did-you-mean from this table's keys, else from another table's (saying where it goes)."""
    import difflib  # here: only a mistake needs it

    hint = ""
    if close := difflib.get_close_matches(key, valid, n=1, cutoff=0.6):
        hint = f" Did you mean '{close[0]}'?"
    else:
        for table, keys in _TABLES.items():
            if keys is not valid and (close := difflib.get_close_matches(key, keys, n=1, cutoff=0.75)):
                hint = f" Did you mean '{close[0]}'? It belongs in {table}."
                break
    return f"unknown key.{hint} Valid keys here: {', '.join(valid)}."


def toml_literal(value: Any) -> str:
    """A value as it is written in TOML, for hints that users copy (``true``, ``"x"``, ``[1, 2]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + " }" if value else "{}"
    return str(value)


# --------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str]) -> Spec:
    """Read and validate a spec file; raise :class:`SpecError` with the file, key and line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file. Give the path of a sweep spec (sweep.toml).") from None
    except IsADirectoryError:
        raise SpecError(
            f"{path}: is a directory, not a spec file. Give the path of a sweep spec (sweep.toml)."
        ) from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror or exc}.") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except UnicodeDecodeError as exc:
        raise SpecError(_not_utf8(path, data, exc.start)) from None
    return parse(text, path)


def _not_utf8(path: Path, data: bytes, at: int) -> str:
    """Where a spec stops being UTF-8: its line and column, and the line as far as it can be shown."""
    line = data.count(b"\n", 0, at) + 1
    start = data.rfind(b"\n", 0, at) + 1
    end = data.find(b"\n", at)
    shown = clip(data[start : None if end < 0 else end].decode("utf-8", "replace").strip())
    return (
        f"{path}, line {line}: not UTF-8 text (byte 0x{data[at]:02x} at column {at - start + 1}): "
        f"TOML files are UTF-8. Save the file as UTF-8, or write the character as an escape (\\u00e9).\n"
        f"    {line} | {shown}"
    )


def parse(text: str, path: Path) -> Spec:
    """Validate spec text; ``path`` is used only in messages and to remember where it came from."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(_not_toml(path, text, exc)) from None
    except RecursionError:  # tomllib recurses per level: hundreds of nested brackets end it
        raise SpecError(_too_deep(path, text)) from None
    src = _Source(path, text)
    if (where := nesting.too_deep(raw)) is not None:  # dotted keys nest without brackets
        raise src.error(where[:3], nesting.TOO_DEEP + ".")
    _check_keys(src, raw, (), TOP_KEYS)
    args = _args(src, raw)
    defaults = argstyle.DEFAULTS[args]
    arg_keys = {key: _string(src, raw, key, getattr(defaults, key)) for key in defaults._fields}
    name = _name(src, raw, ("name",), required=True)
    command = raw.get("command")
    top_argv = _command(src, ("command",), command) if command is not None else None
    suffix = _suffix(src, raw)
    src.named_by_values = _bool(src, raw, "customize_experiment_name", True)
    groups = _groups(src, raw, top_argv, suffix)
    randomize = _bool(src, raw, "randomize", False)
    random_seed = _int(src, raw, (), "random_seed")
    if random_seed is not None and "randomize" not in raw:  # as seed_base needs seeds; randomize = false keeps it
        raise src.error(("random_seed",), "only works with randomize: add randomize = true, or remove random_seed.")
    spec = Spec(
        path=path,
        name=name,
        train_dir=_string(src, raw, "train_dir", "train_dir", allow_empty=False),
        **arg_keys,
        customize_experiment_name=_bool(src, raw, "customize_experiment_name", True),
        experiment_suffix=suffix,
        scheduler=_scheduler(src, raw.get("scheduler", {})),
        env=_env(src, raw.get("env", {}), ("env",)),
        groups=groups,
        max_retries=_retries(src, raw, ()) or 0,
        timeout_min=_timeout_min(src, raw, ()),
        randomize=randomize,
        random_seed=random_seed or 0,
        text=text,
        args=args,
        warnings=_style_warnings(src, raw, arg_keys),
    )
    return spec


def _args(src: _Source, raw: Mapping) -> str:
    value = _string(src, raw, "args", argstyle.ARGPARSE)
    if value not in argstyle.STYLES:
        styles = " or ".join(f'"{style}"' for style in argstyle.STYLES)
        raise src.error(
            ("args",),
            f"{json.dumps(value)} is not an argument style: use {styles} (Hydra overrides: lr=0.1, "
            "hydra.run.dir=<a directory for each experiment>).",
        )
    return value


def _style_warnings(src: _Source, raw: Mapping, arg_keys: Mapping[str, str]) -> tuple[str, ...]:
    lines = {key: src.find_line((key,)) if key in raw else None for key in arg_keys}
    warning = argstyle.mixed_styles(src.path, arg_keys, lines)
    return (warning,) if warning else ()


def _placeholders(src: _Source, where: tuple, text: str) -> None:
    """A near miss of a placeholder (``{experimnt}``) is refused where it is written."""
    if problem := placeholders.problem(text):
        raise src.error(where, problem)


_TOML_PLACE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _not_toml(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """TOML's own complaint, placed and shown like every other spec error."""
    problem = str(exc)
    place = _TOML_PLACE.search(problem)
    if place is None:  # "(at end of document)" and the like: TOML says where
        return f"{path}: not valid TOML: {problem}. Fix the syntax there."
    line, column = int(place.group(1)), int(place.group(2))
    lines = text.split("\n")
    shown = clip(lines[line - 1].rstrip("\r").strip()) if line <= len(lines) else ""
    return (
        f"{path}, line {line}: not valid TOML: {problem[: place.start()]} (column {column}). "
        f"Fix the syntax at that line.\n    {line} | {shown}"
    )


def _too_deep(path: Path, text: str) -> str:
    line = nesting.deep_line(text)
    if line is None:
        return f"{path}: {nesting.TOO_DEEP}."
    return f"{path}, line {line}: {nesting.TOO_DEEP}.\n    {line} | {clip(text.split(chr(10))[line - 1].strip())}"


def _check_keys(src: _Source, table: Mapping[str, Any], where: tuple, valid: Sequence[str]) -> None:
    for key in table:
        if key not in valid:
            raise src.error((*where, key), _suggest(key, valid))


def _string(src: _Source, raw: Mapping, key: str, default: str, allow_empty: bool = True) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise src.error((key,), f"must be a string, not {_type_name(value)}.")
    if not allow_empty and not value:
        raise src.error((key,), "must not be empty.")
    if "\0" in value:
        raise src.error((key,), _NUL)
    return value


_NUL = (
    "holds a NUL character (\\u0000), which no program argument, environment variable or file name "
    "can carry (C strings end at it): remove it."
)


def _bool(src: _Source, raw: Mapping, key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise src.error((key,), f"must be true or false, not {_type_name(value)}.")
    return value


def _name(src: _Source, table: Mapping, where: tuple, required: bool) -> str:
    if "name" not in table:
        raise src.error(where, 'is required: give a name, for example name = "my_sweep".')
    value = table["name"]
    if not isinstance(value, str):
        raise src.error(where, f"must be a string, not {_type_name(value)}.")
    if problem := name_problem(value):
        raise src.error(where, f"{value!r} is not a valid name: it names a directory under the train dir, so {problem}")
    return value


def name_problem(name: str) -> str | None:
    """What keeps ``name`` from being a pbtrun name (one directory name), or None."""
    if not _NAME_RE.fullmatch(name):
        return f"use {_NAME_RULE}."
    if (size := len(name.encode())) > MAX_NAME_BYTES:
        return f"it may have at most {MAX_NAME_BYTES} bytes, not {size:,} (a file name may have 255): shorten it."
    return None


def _suffix(src: _Source, raw: Mapping) -> str:
    value = _string(src, raw, "experiment_suffix", "")
    if value and (problem := name_problem(value)):
        raise src.error(
            ("experiment_suffix",),
            f"{value!r} cannot end a directory name (each group's is <group>_<suffix>): {problem}",
        )
    return value


def _command(src: _Source, where: tuple, value: Any) -> tuple[str, ...]:
    """A command is a string split once with shlex, or a list of arguments taken as is."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        for k, word in enumerate(value):
            if "\0" in word:
                raise src.error((*where, k), _NUL)
            _placeholders(src, (*where, k), word)
        return tuple(value)
    if not isinstance(value, str):
        raise src.error(where, f"must be a string (or a list of strings), not {_type_name(value)}.")
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise src.error(where, f"cannot be split into arguments ({exc}): check the quotes.") from None
    if not argv:
        raise src.error(where, "is empty: give the command to run.")
    if "\0" in value:
        raise src.error(where, _NUL)
    _placeholders(src, where, value)
    return tuple(argv)


def _env(src: _Source, value: Any, where: tuple) -> dict[str, str]:
    if not isinstance(value, dict):
        raise src.error(where, f'must be a table of NAME = "value", not {_type_name(value)}.')
    env: dict[str, str] = {}
    for key, item in value.items():
        if not key or "=" in key or "\0" in key:
            raise src.error((*where, key), "is not a valid environment variable name.")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise src.error((*where, key), f"must be a string, not {_type_name(item)}.")
        if isinstance(item, str) and "\0" in item:
            raise src.error((*where, key), _NUL)
        env[key] = str(item)
        _placeholders(src, (*where, key), env[key])
    return env


def _int(src: _Source, table: Mapping, where: tuple, key: str) -> int | None:
    value = table.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise src.error((*where, key), f"must be an integer, not {_type_name(value)}.")
    return value


def _scheduler(src: _Source, table: Any) -> SchedulerSettings:
    where = ("scheduler",)
    if not isinstance(table, dict):
        raise src.error(where, f"must be a table ([scheduler]), not {_type_name(table)}.")
    _check_keys(src, table, where, SCHEDULER_KEYS)
    pause = table.get("pause_between")
    if pause is not None and (isinstance(pause, bool) or not isinstance(pause, int | float)):
        raise src.error((*where, "pause_between"), f"must be a number of seconds, not {_type_name(pause)}.")
    gpus = table.get("gpus")
    if gpus is not None and "num_gpus" in table:
        raise src.error(
            (*where, "gpus"),
            "give num_gpus or gpus, not both: num_gpus = N uses GPUs 0..N-1, gpus = [0, 2, 3] exactly those.",
        )
    if gpus is not None:
        ok = isinstance(gpus, list) and all(isinstance(g, int) and not isinstance(g, bool) for g in gpus)
        if not ok or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
            raise src.error((*where, "gpus"), "must be a list of distinct GPU ids, like [0, 2, 3].")
        gpus = tuple(gpus)
    settings = SchedulerSettings(
        num_gpus=_int(src, table, where, "num_gpus"),
        gpus=gpus,
        max_parallel=_int(src, table, where, "max_parallel"),
        experiments_per_gpu=_int(src, table, where, "experiments_per_gpu"),
        pause_between_s=None if pause is None else float(pause),
        max_failures=_int(src, table, where, "max_failures"),
    )
    for key, problem in settings_problems(settings):
        raise src.error((*where, key), problem)
    return settings


def settings_problems(s: SchedulerSettings) -> list[tuple[str, str]]:
    """Value problems shared by ``[scheduler]`` and the command-line flags that override it,
    as (key, what is wrong) so each caller can say where the value came from."""
    problems = []
    if s.num_gpus is not None and not 0 <= s.num_gpus <= MAX_GPUS:
        problem = f"must be 0 to {MAX_GPUS} (more than any machine has), not {quantity(s.num_gpus)}."
        problems.append(("num_gpus", problem))
    if s.max_parallel is not None and s.max_parallel < 1:
        problems.append(("max_parallel", f"must be at least 1, not {quantity(s.max_parallel)}."))
    epg = s.experiments_per_gpu
    if epg is not None and (epg == 0 or epg < -1):
        problems.append(("experiments_per_gpu", f"must be -1 (do not pin GPUs) or at least 1, not {quantity(epg)}."))
    pause = s.pause_between_s
    if pause is not None and not 0 <= pause <= MAX_PAUSE_S:  # also false for nan
        problems.append(("pause_between", f"must be 0 to {MAX_PAUSE_S:g} seconds (a day), not {pause:g}."))
    if s.max_failures is not None and s.max_failures < 1:
        problem = f"must be at least 1 (leave it out for no limit), not {quantity(s.max_failures)}."
        problems.append(("max_failures", problem))
    return problems


# --------------------------------------------------------------------------- experiment groups


def _groups(src: _Source, raw: Mapping, top_argv: tuple[str, ...] | None, suffix: str) -> tuple[GroupSpec, ...]:
    tables = raw.get("experiments")
    if tables is None:
        raise src.error(
            ("experiments",),
            "is missing: add at least one [[experiments]] table with a name "
            '(and a grid, a list, or neither), for example:\n    [[experiments]]\n    name = "baseline"',
        )
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise src.error(("experiments",), "must be an array of tables: write each one as [[experiments]].")
    if not tables:
        raise src.error(("experiments",), "is empty: add at least one [[experiments]] table.")
    builds: list[Callable[[], GroupSpec]] = []
    seen: dict[str, int] = {}
    total = 0
    for i, table in enumerate(tables):  # every group is checked and counted before any is expanded
        name, count, build = _group(src, table, i, top_argv)
        if (size := len(f"{name}_{suffix}".encode())) > MAX_NAME_BYTES:
            raise src.error(
                ("experiments", i, "name"),
                f"the group's directory, {name}_{suffix} (<group>_<experiment_suffix>), would have {size:,} bytes; "
                f"a name may have at most {MAX_NAME_BYTES} (a file name may have 255): shorten the group name "
                "or experiment_suffix.",
            )
        if name in seen:
            raise src.error(
                ("experiments", i, "name"),
                f"{name!r} is used by experiment group #{seen[name] + 1} too; each [[experiments]] needs its own name.",
            )
        seen[name] = i
        _check_count(src, ("experiments", i), count, total)
        total += count
        builds.append(build)
    return tuple(build() for build in builds)


def _group(
    src: _Source, table: Mapping, i: int, top_argv: tuple[str, ...] | None
) -> tuple[str, int, Callable[[], GroupSpec]]:
    """One group, checked: its name, how many experiments it gives, and how to expand them.

    The count comes from the grid's axes, the list's length, ``seeds`` and ``repeat``, so that a
    spec over the limit (three groups of a million) is refused at once, before anything is
    expanded, not after the time and memory that expanding it would take.
    """
    where = ("experiments", i)
    _check_keys(src, table, where, EXPERIMENT_KEYS)
    name = _name(src, table, (*where, "name"), required=True)
    if "command" in table:
        argv = _command(src, (*where, "command"), table["command"])
    elif top_argv is not None:
        argv = top_argv
    else:
        raise src.error(
            (*where, "name"),
            f"experiment group {name!r} has no command: set `command` in it or at the top level.",
        )
    axes, combos, size = _parameters(src, table, where)
    seeds, repeat = _seeds_and_repeat(src, table, where)
    env = _env(src, table.get("env", {}), (*where, "env"))
    retries, timeout_min = _retries(src, table, where), _timeout_min(src, table, where)
    seed_base = _int(src, table, where, "seed_base") or 0

    def build() -> GroupSpec:
        if axes is not None:
            params = tuple(_combine(axes, choice) for choice in product(*(rows for _, rows in axes)))
        else:
            params = combos
        return GroupSpec(
            name=name,
            argv=argv,
            combinations=_seeded_and_repeated(params, seeds, seed_base, repeat),
            env=env,
            max_retries=retries,
            timeout_min=timeout_min,
        )

    return name, size * (seeds or 1) * repeat, build


def _parameters(src: _Source, table: Mapping, where: tuple) -> tuple[_Axes | None, tuple[dict[str, Any], ...], int]:
    """A group's grid axes (expanded later) or its list of combinations, and how many they give."""
    if "grid" in table and "list" in table:
        raise src.error((*where, "list"), "a group takes a grid or a list, not both: split it into two groups.")
    if "grid" in table:
        axes = _grid_axes(src, table["grid"], (*where, "grid"))
        names: set[str] = {n for axis, _ in axes for n in axis}
        size = _grid_size(src, axes, (*where, "grid"))
        combos: tuple[dict[str, Any], ...] = ()
    else:
        axes = None
        combos = _list_combinations(src, table["list"], (*where, "list")) if "list" in table else ({},)
        names = {n for c in combos for n in c}
        size = len(combos)
    if "seed" in names and table.get("seeds") is not None:
        raise src.error((*where, "seeds"), "the group already has a 'seed' parameter; use one or the other.")
    return axes, combos, size


def _seeds_and_repeat(src: _Source, table: Mapping, where: tuple) -> tuple[int | None, int]:
    seeds = _positive(src, table, where, "seeds")
    repeat = _positive(src, table, where, "repeat") or 1
    if _int(src, table, where, "seed_base") is not None and seeds is None:
        raise src.error((*where, "seed_base"), "only works with seeds = N: add it, or remove seed_base.")
    return seeds, repeat


def _check_count(src: _Source, where: tuple, count: int, before: int) -> None:
    """The group's ``count`` experiments, and the sweep's so far with them, within the limit."""
    limit = f"more than the {MAX_EXPERIMENTS:,} pbtrun accepts"
    if count > MAX_EXPERIMENTS:
        raise src.error(where, f"this group gives {quantity(count)} experiments, {limit}.")
    if before + count > MAX_EXPERIMENTS:
        raise src.error(
            where,
            f"this group gives {quantity(count)} experiments and the groups before it {quantity(before)}: "
            f"{quantity(before + count)} in all, {limit}. Split the sweep into several specs.",
        )


def _seeded_and_repeated(
    combos: tuple[dict[str, Any], ...], seeds: int | None, seed_base: int, repeat: int
) -> tuple[dict[str, Any], ...]:
    """``seeds = N`` adds a ``seed`` parameter (``seed_base`` .. ``seed_base + N - 1``, slowest
    varying, as seeds are written first in launcher grids); ``repeat = N`` runs the whole group N
    times over (each run an experiment of its own, with its own name and id)."""
    if seeds is not None:
        combos = tuple({"seed": seed_base + k, **c} for k in range(seeds) for c in combos)
    return combos * repeat


def _positive(src: _Source, table: Mapping, where: tuple, key: str) -> int | None:
    value = _int(src, table, where, key)
    if value is not None and value < 1:
        raise src.error((*where, key), f"must be at least 1, not {quantity(value)}.")
    return value


def _retries(src: _Source, table: Mapping, where: tuple) -> int | None:
    value = _int(src, table, where, "max_retries")
    if value is not None and value < 0:
        raise src.error((*where, "max_retries"), f"must be 0 or more, not {quantity(value)}.")
    return value


def _timeout_min(src: _Source, table: Mapping, where: tuple) -> float | None:
    value = table.get("timeout_min")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise src.error((*where, "timeout_min"), f"must be a number of minutes, not {_type_name(value)}.")
    if not 0 < value <= MAX_TIMEOUT_MIN:  # also false for nan
        raise src.error(
            (*where, "timeout_min"),
            f"must be more than 0 and at most {MAX_TIMEOUT_MIN:,} minutes (about two years), not {value:g}; "
            "for no timeout, leave timeout_min out.",
        )
    return float(value)


def _dotted_hint(key: str, table: dict, what: str) -> str:
    """For ``a.b = ...`` written inside ``{ }``, which TOML reads as a table ``a`` holding ``b``:
    the quoted key that was meant, with the value found at the end of the path."""
    path, leaf = [key], table
    while isinstance(leaf, dict) and leaf:
        sub = next(iter(leaf))
        path.append(sub)
        leaf = leaf[sub]
    return (
        f"is a table, not {what}: a dotted key inside {{ }} makes nested tables in TOML. "
        f"Quote the parameter name: {json.dumps('.'.join(path))} = {toml_literal(leaf)}."
    )


def _check_value(src: _Source, where: tuple, value: Any, dotted: bool = False) -> None:
    """Parameter values must survive JSON (the state file) and render with ``str()``. ``dotted``:
    ``value`` is what a key of a ``list`` combination holds, so a table there is a dotted key."""
    if isinstance(value, dict):
        if dotted and value:
            raise src.error(where, _dotted_hint(str(where[-1]), value, "a value"))
        raise src.error(
            where,
            f"holds a table ({toml_literal(value)}), which is not a parameter value: values are strings, "
            "numbers, booleans, or lists of them. Quote it as a string if your program parses it, "
            "or give each of its keys as a parameter of its own.",
        )
    if isinstance(value, dt.date | dt.time | dt.datetime):
        raise src.error(where, "dates and times are not supported as parameter values; quote them as a string.")
    if isinstance(value, float) and not math.isfinite(value):
        raise src.error(where, f"{value} is not supported as a parameter value; quote it as a string.")
    if isinstance(value, str):
        if "\0" in value:
            raise src.error(where, _NUL)
        _placeholders(src, where, value)
        if src.named_by_values and placeholders.has_any(value, attempt=True):
            raise src.error(
                where,
                f"{value!r} holds a placeholder, but parameter values are part of the experiment's name "
                "(customize_experiment_name = true), and a name must not change with what fills it in. "
                'Put the placeholder in command (command = "python train.py --out={experiment_dir}/ckpt") '
                "or in env, or set customize_experiment_name = false (names are then NN_<group>).",
            )
    if isinstance(value, list):
        for item in value:
            _check_value(src, where, item)


def _param_name(src: _Source, where: tuple, name: str) -> str:
    if not name or any(c.isspace() for c in name) or "=" in name or "\0" in name:
        raise src.error(where, f"{name!r} is not a valid parameter name (no spaces, no '=', no NUL).")
    return name


def _grid_axes(src: _Source, grid: Any, where: tuple) -> _Axes:
    """Each grid key becomes an axis: a tuple of names and a list of value tuples (tied keys)."""
    if not isinstance(grid, dict):
        raise src.error(where, f"must be a table of parameter = [values], not {_type_name(grid)}.")
    axes = []
    seen: set[str] = set()
    for key, values in grid.items():
        here = (*where, key)
        names = tuple(_param_name(src, here, n.strip()) for n in key.split(","))
        for n in names:
            if n in seen:
                raise src.error(here, f"parameter {n!r} appears twice in this grid.")
            seen.add(n)
        if isinstance(values, dict) and values:
            raise src.error(here, _dotted_hint(key, values, "a list of values"))
        if not isinstance(values, list):
            example = "1, 2" if isinstance(values, dict) else toml_literal(values)
            raise src.error(here, f"must be a list of values, like {key} = [{example}], not {_type_name(values)}.")
        if not values:
            raise src.error(here, "is an empty list, which gives no experiments: give at least one value.")
        rows = [_tied_row(src, (*here, k), names, v) for k, v in enumerate(values)]
        for k, v in enumerate(values):
            _check_value(src, (*here, k), v)
        _check_distinct(src, here, rows)
        axes.append((names, rows))
    return axes


def _check_distinct(src: _Source, where: tuple, rows: list[tuple]) -> None:
    """A value written twice in one grid list would run the same experiment twice, under two
    names: a slip, since ``repeat`` and ``seeds`` are how a spec asks for that. Values are told
    apart by type and value, as TOML has them and as they render (1, 1.0 and true differ)."""
    seen: dict[str, int] = {}
    for k, row in enumerate(rows):
        first = seen.setdefault(repr(row), k)  # repr: 1, 1.0, True and "1" all differ, as in argv
        if first != k:
            value = toml_literal(list(row) if len(row) > 1 else row[0])
            raise src.error(
                (*where, k),
                f"{value} is already element {first + 1} of this list: the same experiment would run twice, "
                "under two names. Remove one (1, 1.0 and true are different values). To run each experiment "
                "several times, use repeat = N, or seeds = N for a seed parameter.",
            )


def _tied_row(src: _Source, where: tuple, names: tuple[str, ...], value: Any) -> tuple:
    if len(names) == 1:
        return (value,)
    if not isinstance(value, list) or len(value) != len(names):
        raise src.error(
            where,
            f"tied parameters {', '.join(names)} need lists of {len(names)} values each, like "
            f"[{', '.join('v' + str(k + 1) for k in range(len(names)))}]; got {render_value(value)}.",
        )
    return tuple(value)


def _grid_size(src: _Source, axes: _Axes, where: tuple) -> int:
    """How many experiments the grid gives: the product of its axes, computed, not expanded."""
    total = math.prod(len(rows) for _, rows in axes)
    if total > MAX_EXPERIMENTS:
        raise src.error(
            where, f"this grid gives {quantity(total)} experiments, more than the {MAX_EXPERIMENTS:,} pbtrun accepts."
        )
    return total


def _combine(axes: Sequence[tuple[tuple[str, ...], list[tuple]]], choice: Sequence[tuple]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for (names, _), values in zip(axes, choice, strict=True):
        params.update(zip(names, values, strict=True))
    return params


def _list_combinations(src: _Source, value: Any, where: tuple) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise src.error(where, "must be a list of tables, like [{ lr = 1e-3, batch = 64 }, { lr = 3e-4 }].")
    if not value:
        raise src.error(where, "is empty, which gives no experiments: give at least one combination.")
    if len(value) > MAX_EXPERIMENTS:
        raise src.error(where, f"has more than {MAX_EXPERIMENTS:,} combinations.")
    for k, combo in enumerate(value):
        for name, item in combo.items():
            _param_name(src, (*where, k, name), name)
            _check_value(src, (*where, k, name), item, dotted=True)
        if not combo:
            raise src.error((*where, k), "is an empty combination; remove it or give its parameters.")
    return tuple(dict(c) for c in value)


# --------------------------------------------------------------------------- expansion


def expand(spec: Spec, train_dir: str | None = None) -> list[ExperimentSpec]:
    """Compile a spec into experiments, in the order they are written.

    ``train_dir`` overrides the spec's (``--train-dir``); it is passed to the experiments as
    written, relative paths staying relative to the directory the sweep runs in.
    """
    train_dir = spec.train_dir if train_dir is None else train_dir
    experiments = [e for i, g in enumerate(spec.groups) for e in _expand_group(spec, g, i, train_dir)]
    _check_unique_names(spec, experiments)
    if spec.randomize:  # launch order only: names and ids stay those of the written order
        import random  # here: only randomized specs need it

        random.Random(spec.random_seed).shuffle(experiments)
    return experiments


def _expand_group(spec: Spec, group: GroupSpec, i: int, train_dir: str) -> Iterator[ExperimentSpec]:
    sweep_dir = os.path.join(train_dir, spec.name)
    group_dir = os.path.join(sweep_dir, f"{group.name}_{spec.experiment_suffix}")
    layout = argstyle.Layout(
        group.argv,
        {**spec.env, **group.env},
        (spec.args, spec.param_prefix, spec.experiment_arg_name, spec.experiment_dir_arg_name),
        sweep_dir,
        group_dir,
    )
    occurrences: dict[str, int] = {}
    shorts: dict[tuple[str, ...], list[str]] = {}  # shorthands by parameter names
    group_json = canonical_json(group.name)
    for index, params in enumerate(group.combinations):
        names = tuple(params)
        if names not in shorts:
            shorts[names] = shorthands(names)
        name = experiment_name(group.name, index, params, spec.customize_experiment_name, shorts[names])
        if len(name) > MAX_NAME_BYTES // 4 and len(name.encode()) > MAX_NAME_BYTES:
            raise _too_long(spec, i, name)
        argv, name_arg, env = layout.render(name, params)
        params_json = canonical_json(params)  # counts repeats, and makes the id
        occurrence = occurrences.get(params_json, 0)
        occurrences[params_json] = occurrence + 1
        yield ExperimentSpec(
            id=id_from_json(group_json, params_json, occurrence),
            group=group.name,
            index=index,
            name=name,
            argv=argv,
            env=env,
            params=params,
            name_arg=name_arg,
            layout=layout,
            max_retries=group.max_retries if group.max_retries is not None else spec.max_retries,
            timeout_min=group.timeout_min if group.timeout_min is not None else spec.timeout_min,
        )


def _too_long(spec: Spec, i: int, name: str) -> SpecError:
    """An experiment name programs could not make a directory of (``--experiment`` names one)."""
    return _Source(spec.path, spec.text).error(
        ("experiments", i, "name"),
        f"the experiment name {name[:60]}... has {len(name.encode()):,} bytes; a name may have at most "
        f"{MAX_NAME_BYTES} (a file name may have 255, and programs make directories of it). Shorten the "
        "group or parameter names or values, or set customize_experiment_name = false (names are then "
        "NN_<group>).",
    )


def _check_unique_names(spec: Spec, experiments: Sequence[ExperimentSpec]) -> None:
    seen: dict[str, ExperimentSpec] = {}
    for exp in experiments:
        other = seen.setdefault(exp.name, exp)
        if other is not exp:
            raise SpecError(
                f"{spec.path}: experiments of groups {other.group!r} and {exp.group!r} would both be "
                f"named {exp.name!r}; rename one of the groups."
            )
