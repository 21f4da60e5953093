"""Reading and validating ``sweep.toml``: a file's bytes to a :class:`~pbtrun.spec.model.Spec`.

:func:`load` reads the file, :func:`parse` checks its text: TOML syntax, then every key, each
refused with the file, the key and its line (:mod:`pbtrun.spec.positions`) and what is valid.
The tables have their own modules (:mod:`~pbtrun.spec.scheduler_table`,
:mod:`~pbtrun.spec.groups`); compiling the spec into experiments is :mod:`pbtrun.spec.expansion`'s.

The spec layer is pure: it reads one file and returns values. It never touches the train dir,
the state file or processes, so a bad spec can never leave anything behind on disk.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pbtrun.errors import SpecError
from pbtrun.printable import clip
from pbtrun.spec import argstyle, keys, nesting
from pbtrun.spec.groups import read_groups
from pbtrun.spec.model import BACKENDS, LOCAL, Spec
from pbtrun.spec.positions import SpecSource
from pbtrun.spec.scheduler_table import read_scheduler
from pbtrun.spec.slurm_table import read_slurm
from pbtrun.spec.template_table import read_template


def load(path: str | os.PathLike[str], backend: str | None = None) -> Spec:
    """Read and validate a spec file; raise :class:`SpecError` with the file, key and line.
    ``backend``: the command line's ``--backend``, which wins over the spec's."""
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
    return parse(text, path, backend)


def parse(text: str, path: Path, backend_flag: str | None = None) -> Spec:
    """Validate spec text; ``path`` is used only in messages and to remember where it came from."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(_not_toml(path, text, exc)) from None
    except RecursionError:  # tomllib recurses per level: hundreds of nested brackets end it
        raise SpecError(_too_deep(path, text)) from None
    src = SpecSource(path, text)
    if (where := nesting.too_deep(raw)) is not None:  # dotted keys nest without brackets
        raise src.error(where[:3], nesting.TOO_DEEP + ".")
    keys.check_keys(src, raw, (), keys.TOP_KEYS)
    args = _args(src, raw)
    defaults = argstyle.DEFAULTS[args]
    arg_keys = {key: keys.string(src, raw, key, getattr(defaults, key)) for key in defaults._fields}
    name = keys.required_name(src, raw, ("name",))
    backend = _backend(src, raw) if backend_flag is None else _backend_flag(backend_flag)
    command = raw.get("command")
    top_argv = keys.command(src, ("command",), command) if command is not None else None
    suffix = _suffix(src, raw)
    named_by_values = keys.boolean(src, raw, "customize_experiment_name", True)
    groups = read_groups(src, raw, top_argv, suffix, named_by_values)
    randomize = keys.boolean(src, raw, "randomize", False)
    random_seed = keys.integer(src, raw, (), "random_seed")
    if random_seed is not None and "randomize" not in raw:  # as seed_base needs seeds; randomize = false keeps it
        raise src.error(("random_seed",), "only works with randomize: add randomize = true, or remove random_seed.")
    return Spec(
        path=path,
        name=name,
        train_dir=keys.string(src, raw, "train_dir", "train_dir", allow_empty=False),
        **arg_keys,
        customize_experiment_name=named_by_values,
        experiment_suffix=suffix,
        scheduler=read_scheduler(src, raw.get("scheduler", {})),
        env=keys.env(src, raw.get("env", {}), ("env",)),
        groups=groups,
        max_retries=keys.max_retries(src, raw, ()) or 0,
        timeout_min=keys.timeout_min(src, raw, ()),
        randomize=randomize,
        random_seed=random_seed or 0,
        text=text,
        args=args,
        warnings=_style_warnings(src, raw, arg_keys),
        backend=backend,
        # Each reader refuses its table on another backend: at most one of them has settings.
        backend_settings={**read_slurm(src, raw, backend), **read_template(src, raw, backend)},
    )


def _args(src: SpecSource, raw: Mapping) -> str:
    value = keys.string(src, raw, "args", argstyle.ARGPARSE)
    if value not in argstyle.STYLES:
        styles = " or ".join(f'"{style}"' for style in argstyle.STYLES)
        raise src.error(
            ("args",),
            f"{json.dumps(value)} is not an argument style: use {styles} (Hydra overrides: lr=0.1, "
            "hydra.run.dir=<a directory for each experiment>).",
        )
    return value


def _backend(src: SpecSource, raw: Mapping) -> str:
    """Where the experiments run. Only the name is checked here: the spec layer sits below the
    backends that implement it."""
    value = keys.string(src, raw, "backend", LOCAL)
    if value not in BACKENDS:
        known = ", ".join(f"{json.dumps(name)} ({does})" for name, does in BACKENDS.items())
        raise src.error(
            ("backend",),
            f"{json.dumps(value)} is not a backend pbtrun knows. Known backends: {known}. "
            f'Leave backend out for "{LOCAL}", the default.',
        )
    return value


def _backend_flag(value: str) -> str:
    if value not in BACKENDS:
        known = ", ".join(f"{name} ({does})" for name, does in BACKENDS.items())
        raise SpecError(f"command line: --backend {value!r} is not a backend pbtrun knows. Known backends: {known}.")
    return value


def _suffix(src: SpecSource, raw: Mapping) -> str:
    value = keys.string(src, raw, "experiment_suffix", "")
    if value and (problem := keys.name_problem(value)):
        raise src.error(
            ("experiment_suffix",),
            f"{value!r} cannot end a directory name (each group's is <group>_<suffix>): {problem}",
        )
    return value


def _style_warnings(src: SpecSource, raw: Mapping, arg_keys: Mapping[str, str]) -> tuple[str, ...]:
    lines = {key: src.find_line((key,)) if key in raw else None for key in arg_keys}
    warning = argstyle.mixed_styles(src.path, arg_keys, lines)
    return (warning,) if warning else ()


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
