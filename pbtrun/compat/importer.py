"""``pbtrun import``: turn a Sample Factory / IsaacGymEnvs run module into an equivalent ``sweep.toml``.

A run module defines ``RUN_DESCRIPTION``, a ``RunDescription`` of experiment groups. pbtrun imports
the module (a ``.py`` path, or a dotted name importable here), reads the description by duck typing
and writes a spec from which pbtrun compiles the same experiments as the old launcher's
``generate_experiments(train_dir)``: same names, same argv (its command string split on spaces),
same env, same order.

Without the launcher installed: while the module is imported, ``sample_factory.launcher.
run_description`` and ``isaacgymenvs.pbt.launcher.run_description`` (and the helpers' modules in
:data:`pbtrun.compat.launcher.STAND_INS`) resolve to :mod:`pbtrun.compat.launcher` when (and only
when) the real module cannot be found. The stand-in is
a finder placed last on ``sys.meta_path``, removed afterwards together with the modules it made, so
an installed launcher always wins and nothing stays behind. Other imports of the module still need
their packages.

``Experiment.params`` is already the expanded list of parameter dicts, so the grid is recovered from
it: the finest split of the (consistently ordered) keys into consecutive groups whose value tuples
multiply out to exactly that list, in that order. One-key groups become ``key = [...]``, larger
ones tied keys ``"a,b" = [[...], ...]``; a list that is no such product becomes ``list = [...]``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import math
import os
import shlex
import sys
import tomllib
import traceback
import types
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from pbtrun.compat import launcher as launcher_compat
from pbtrun.errors import CWD_GONE, SpecError
from pbtrun.spec import nesting
from pbtrun.spec.expansion import expand
from pbtrun.spec.keys import name_problem
from pbtrun.spec.reading import parse

LAUNCHER_MODULES = tuple(launcher_compat.STAND_INS)

_INT64 = range(-(2**63), 2**63)
_WIDTH = 100  # longer arrays are written one item per line, longer inline tables as sub-tables


def to_toml(target: str, experiment_suffix: str | None = None) -> str:
    """The ``sweep.toml`` text equivalent to the run module ``target`` (a ``.py`` path or dotted name).

    ``experiment_suffix`` plays the old launcher's ``--experiment_suffix`` flag and overrides the
    description's own. Raises :class:`SpecError` when the module cannot be read or has no pbtrun
    equivalent.
    """
    label, description = _load(target)
    run = _read_run(description, label, experiment_suffix)
    document = _document(run, label)
    text = _header(label, run) + _dumps(document)
    if tomllib.loads(text) != document:
        raise SpecError(
            f"{label}: pbtrun import wrote a spec that does not read back as written; please report this bug."
        )
    try:  # a spec pbtrun would refuse is a bug in this module or a case it does not cover: say so here
        expand(parse(text, Path(f"{target} (imported)")))
    except SpecError as exc:
        raise SpecError(f"{label}: the imported spec is not valid for pbtrun: {exc}") from None
    return text


def load_run_description(target: str) -> Any:
    """Import the run module ``target`` (stand-ins for the launcher if needed); its ``RUN_DESCRIPTION``."""
    return _load(target)[1]


# --------------------------------------------------------------------------- importing the module


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Placed last on ``sys.meta_path``, so it is asked only for names no real finder found."""

    def __init__(self) -> None:
        self.names = {parts for name in LAUNCHER_MODULES for parts in _prefixes(name)}
        self.made: dict[str, types.ModuleType] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname not in LAUNCHER_MODULES)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        self.made[module.__name__] = module
        if module.__name__ in LAUNCHER_MODULES:
            module.__doc__ = f"pbtrun's stand-in for {module.__name__} (see pbtrun.compat.launcher)."
            for name in launcher_compat.STAND_INS[module.__name__]:
                setattr(module, name, getattr(launcher_compat, name))

    def forget(self) -> None:
        """Drop the modules this finder made, so later imports see the real packages (or nothing)."""
        for name, module in self.made.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
        self.made.clear()


def _prefixes(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[: k + 1]) for k in range(len(parts))]


@contextlib.contextmanager
def _importing(first: str | None = None) -> Iterator[None]:
    """Stand-ins and extra ``sys.path`` entries for one import, all undone afterwards.

    The current directory is on ``sys.path`` (last, so it shadows no installed package), as it
    was for the old launcher, run with ``python -m``: a run module may import its own package
    (``from runs.dmlab.baseline import BASE``) whether pbtrun was started as ``pbtrun`` or as
    ``python -m pbtrun``. What the module prints goes to stderr: stdout carries the spec.
    """
    saved_path = list(sys.path)
    if first is not None:
        sys.path.insert(0, first)
    with contextlib.suppress(OSError):  # a deleted current directory: nothing to find there
        if (cwd := os.getcwd()) not in sys.path:
            sys.path.append(cwd)
    finder = _StandInFinder()
    sys.meta_path.append(finder)
    importlib.invalidate_caches()  # the module may have been written a moment ago
    try:
        with _stdout_to_stderr():
            yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
        finder.forget()
        sys.path[:] = saved_path


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Everything written to stdout goes to stderr meanwhile: ``print`` and, through file
    descriptor 1, what C code and child processes write, so ``pbtrun import x.py > x.toml``
    gets the spec alone."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no stdout or stderr descriptor: print alone is redirected
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _load(target: str) -> tuple[str, Any]:
    """(how to name the module in messages, its ``RUN_DESCRIPTION``)."""
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise SpecError(
                f"{target}: no such file. Give the path of a run module (a .py file that defines "
                "RUN_DESCRIPTION), or its dotted module name (my_project.runs.ant_pbt)."
            )
        label = str(path)
        module = _exec_file(path, label)
    else:
        if not all(part.isidentifier() for part in target.split(".")):
            raise SpecError(
                f"{target!r} is neither the path of a .py file nor a dotted module name: give one of those, "
                "for example runs/ant_pbt.py or my_project.runs.ant_pbt."
            )
        label = f"module {target}"
        try:
            os.getcwd()
        except FileNotFoundError:
            raise SpecError(
                f"{target}: a dotted module name is looked up from the current directory, but {CWD_GONE}. "
                "cd to the directory it is found from and run the command again."
            ) from None
        with _importing():  # found from the current directory, as `python -m` would, shadowing no package
            module = _guarded(lambda: importlib.import_module(target), label, None, target)
    if not hasattr(module, "RUN_DESCRIPTION"):
        raise SpecError(
            f"{label} defines no RUN_DESCRIPTION. pbtrun import reads the RunDescription a run module "
            "assigns to RUN_DESCRIPTION (what the old launcher's --run option loaded); point it at such a module."
        )
    return label, module.RUN_DESCRIPTION


def _exec_file(path: Path, label: str) -> types.ModuleType:
    """Run a ``.py`` file as a module of its own, its directory first on ``sys.path`` as for a script."""
    name = f"_pbtrun_import_{uuid.uuid4().hex}"  # never clashes with (or replaces) a real module
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise SpecError(f"{label}: Python cannot load this file as a module; give a .py file.")
    module = importlib.util.module_from_spec(module_spec)
    loader = module_spec.loader
    sys.modules[name] = module  # some code (dataclasses, pickle) looks its module up while it runs
    try:
        with _importing(first=str(path.resolve().parent)):
            _guarded(lambda: loader.exec_module(module), label, str(path.resolve()), None)
    finally:
        sys.modules.pop(name, None)
    return module


def _guarded(run: Any, label: str, file: str | None, dotted: str | None) -> Any:
    """Run the import; turn whatever goes wrong into one message that says what to do."""
    try:
        return run()
    except SyntaxError as exc:
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else label
        raise SpecError(
            f"{where}: syntax error in the run module ({exc.msg}); fix it, then run pbtrun import again."
        ) from None
    except ModuleNotFoundError as exc:
        if dotted is not None and exc.name in _prefixes(dotted):
            raise SpecError(
                f"{label}: no module named {exc.name} can be imported here. Run pbtrun from the directory "
                "that holds it, add that directory to PYTHONPATH, or give the path of the .py file instead."
            ) from None
        raise SpecError(
            f"{label} imports {exc.name}, which is not installed here. pbtrun stands in only for "
            f"{', '.join(LAUNCHER_MODULES)}; install what the module needs, or remove that import from it."
        ) from None
    except ImportError as exc:
        hint = ""
        stand_in = getattr(getattr(sys.modules.get(exc.name or ""), "__spec__", None), "loader", None)
        if isinstance(stand_in, _StandInFinder):
            offered = launcher_compat.STAND_INS.get(exc.name or "")
            has = f"has {', '.join(offered)} only" if offered else "is an empty package"
            note = launcher_compat.LEFT_OUT.get(exc.name or "", "")
            hint = (
                f" pbtrun's stand-in for {exc.name} {has}{note}; install the launcher's package if the module needs it."
            )
        raise SpecError(f"{label}: importing it failed: {exc}.{hint}") from None
    except (Exception, SystemExit) as exc:
        line = _line_in(exc, file)
        raise SpecError(
            f"{label}{line}: the run module raised {type(exc).__name__}: {exc}. pbtrun import runs the module to "
            "read RUN_DESCRIPTION; fix the error (running it with python shows the traceback) and try again."
        ) from None


def _line_in(exc: BaseException, file: str | None) -> str:
    """', line N' of the deepest frame of the run module itself, if the error passed through it."""
    frames = traceback.extract_tb(exc.__traceback__)
    lines = [f.lineno for f in frames if file is not None and f.filename == file]
    return f", line {lines[-1]}" if lines else ""


# --------------------------------------------------------------------------- reading the description


@dataclass
class _Group:
    name: str
    command: str | list[str]
    env: dict[str, str]
    params: list[dict[str, Any]]


@dataclass
class _Run:
    name: str
    experiment_arg_name: str
    experiment_dir_arg_name: str
    customize_experiment_name: bool
    param_prefix: str
    experiment_suffix: str
    groups: list[_Group]


def _read_run(description: Any, label: str, suffix: str | None) -> _Run:
    where = f"{label}: RUN_DESCRIPTION"
    if not hasattr(description, "run_name") or not hasattr(description, "experiments"):
        raise SpecError(
            f"{where} is {_a(description)}, not a RunDescription (it needs run_name and "
            "experiments); assign RunDescription(run_name, experiments=[...]) to it."
        )
    name = _string(description.run_name, f"{where}.run_name")
    _check_name(name, f"{where}: the run name", label)
    if suffix is None:
        suffix = getattr(description, "experiment_suffix", "") or ""
    suffix = _string(suffix, "the experiment suffix")
    if suffix and (problem := name_problem(suffix)):
        raise SpecError(
            f"{label}: the experiment suffix {suffix!r} cannot end a directory name (each group's is "
            f"<group>_<suffix>), so {problem} Choose another suffix."
        )
    groups = [_read_group(exp, k, where) for k, exp in enumerate(description.experiments)]
    if not groups:
        raise SpecError(f"{where}.experiments is empty: the run has no experiments to import.")
    seen: dict[str, int] = {}
    for k, group in enumerate(groups):
        _check_name(group.name, f"{where}.experiments[{k}]: the experiment name", label)
        if group.name in seen:
            raise SpecError(
                f"{where}: experiments [{seen[group.name]}] and [{k}] are both named {group.name!r}, so "
                "the old launcher gave them one directory; pbtrun needs a name per group. Rename one."
            )
        seen[group.name] = k
    return _Run(
        name=name,
        experiment_arg_name=_attr_string(description, "experiment_arg_name", "--experiment", where),
        experiment_dir_arg_name=_attr_string(description, "experiment_dir_arg_name", "--train_dir", where),
        customize_experiment_name=bool(getattr(description, "customize_experiment_name", True)),
        param_prefix=_attr_string(description, "param_prefix", "--", where),
        experiment_suffix=suffix,
        groups=groups,
    )


def _read_group(experiment: Any, k: int, where: str) -> _Group:
    here = f"{where}.experiments[{k}]"
    for attr in ("base_name", "cmd"):
        if not hasattr(experiment, attr):
            raise SpecError(f"{here} has no {attr}: it should be an Experiment(name, cmd, params).")
    cmd = _string(experiment.cmd, f"{here}.cmd")
    words = cmd.split(" ")  # how the old launcher split it; keep those words exactly
    try:
        quoted_alike = shlex.split(cmd) == words
    except ValueError:
        quoted_alike = False
    env_vars = getattr(experiment, "env_vars", None) or {}
    if not isinstance(env_vars, Mapping):
        raise SpecError(f"{here}.env_vars must be a dict of NAME: value, not {type(env_vars).__name__}.")
    params = list(getattr(experiment, "params", None) or [])
    for combination in params:
        if not isinstance(combination, Mapping):
            raise SpecError(f"{here}.params holds {_a(combination)}; it must be parameter dicts.")
        for key, value in combination.items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key or any(c.isspace() for c in key):
                raise SpecError(
                    f"{here} has a parameter named {key!r}; pbtrun passes each parameter as one "
                    "argument, so a name must be a non-empty string without spaces, '=' or a NUL character. Rename it."
                )
            if nesting.too_deep(value) is not None:  # before anything recurses into it
                raise SpecError(f"{here}.params: the value of {key!r} is {nesting.TOO_DEEP} in the run module.")
            if _holds_nul(toml_value(value)):
                raise SpecError(f"{here}.params: the value of {key!r}, {value!r}, {_NUL}")
    env = {str(key): f"{value}" for key, value in env_vars.items()}
    for key, value in env.items():
        if "\0" in key + value:
            raise SpecError(f"{here}.env_vars: {key!r}: {value!r} {_NUL}")
    return _Group(
        name=_string(experiment.base_name, f"{here}.base_name"),
        command=cmd if quoted_alike else words,
        env=env,
        params=[dict(c) for c in params],
    )


_NUL = (
    "holds a NUL character ('\\x00'), which no program argument, environment variable or file name can "
    "carry (C strings end at it), so pbtrun cannot pass it. Remove it from the run module."
)


def _holds_nul(value: Any) -> bool:
    """A NUL in a value as the spec will hold it (other values are passed as their rendering)."""
    if isinstance(value, str):
        return "\0" in value
    return isinstance(value, list) and any(_holds_nul(item) for item in value)


def _a(value: Any) -> str:
    """'an int', 'a dict': the type of ``value`` with its article."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{what} must be a string, not {_a(value)} ({value!r}).")
    if "\0" in value:
        raise SpecError(f"{what}, {value!r}, {_NUL}")
    return value


def _attr_string(obj: Any, attr: str, default: str, where: str) -> str:
    """An optional string attribute, with the launcher's default where an older version lacks it."""
    return _string(getattr(obj, attr, default), f"{where}.{attr}")


def _check_name(name: str, what: str, label: str) -> None:
    if problem := name_problem(name):
        raise SpecError(
            f"{what} {name!r} cannot be a pbtrun name: pbtrun names become directories under the train dir, "
            f"so {problem} Rename it in {label} and import again (experiment names and directories follow "
            "from it, so this changes them)."
        )


# --------------------------------------------------------------------------- writing the spec


def _header(label: str, run: _Run) -> str:
    lines = [
        f"# Imported by `pbtrun import` from {label}.",
        "# pbtrun compiles from it the experiments the old launcher's generate_experiments() gave:",
        "# same names, argv, env and order. The old launcher's --train_dir is `train_dir` here",
        '# (default "train_dir") or `pbtrun up --train-dir`. Check: pbtrun plan <this file>',
    ]
    for attr in ("experiment_arg_name", "experiment_dir_arg_name"):
        if not getattr(run, attr):
            lines.append(f'# Note: {attr} is "": the old launcher still passed "=<value>"; pbtrun passes nothing.')
    return "\n".join(lines) + "\n\n"


def _document(run: _Run, label: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": run.name}
    commands = [g.command for g in run.groups]
    shared = all(c == commands[0] for c in commands)
    if shared:
        doc["command"] = commands[0]
    doc |= {
        "param_prefix": run.param_prefix,
        "experiment_arg_name": run.experiment_arg_name,
        "experiment_dir_arg_name": run.experiment_dir_arg_name,
        "customize_experiment_name": run.customize_experiment_name,
        "experiment_suffix": run.experiment_suffix,
    }
    tables = []
    for group in run.groups:
        table: dict[str, Any] = {"name": group.name}
        if not shared:
            table["command"] = group.command
        table |= _combinations(group, label)
        if group.env:
            table["env"] = group.env
        tables.append(table)
    doc["experiments"] = tables
    return doc


def _dumps(document: dict[str, Any]) -> str:
    """The document as TOML: every key and scalar rendered by tomli_w, arrays kept on one line
    where they fit (tomli_w puts each item on its own line, which buries a grid's shape)."""
    top = {key: value for key, value in document.items() if key != "experiments"}
    lines = _body(top, "")
    for table in document["experiments"]:
        lines += ["", "[[experiments]]", *_body(table, "experiments")]
    return "\n".join(lines) + "\n"


def _body(table: Mapping[str, Any], name: str) -> list[str]:
    lines: list[str] = []
    sub_tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) and len(f"{_key(key)} = {_literal(value)}") > _WIDTH:
            sub_tables.append((key, value))
        else:
            lines.append(_assignment(key, value))
    for key, value in sub_tables:
        lines += ["", f"[{name}.{_key(key)}]", *(_assignment(k, v) for k, v in value.items())]
    return lines


def _assignment(key: str, value: Any) -> str:
    line = f"{_key(key)} = {_literal(value)}"
    if len(line) <= _WIDTH or not isinstance(value, list) or not value:
        return line
    return f"{_key(key)} = [\n" + "".join(f"    {_literal(item)},\n" for item in value) + "]"


def _key(key: str) -> str:
    return tomli_w.dumps({key: 0})[: -len(" = 0\n")]


def _literal(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_literal(v)}" for k, v in value.items()) + " }" if value else "{}"
    return tomli_w.dumps({"v": value})[len("v = ") : -1]


def _combinations(group: _Group, label: str) -> dict[str, Any]:
    """``grid``, ``list``, ``repeat`` or nothing: whatever gives exactly the group's parameter dicts."""
    rows = [{key: toml_value(value) for key, value in params.items()} for params in group.params]
    if not rows:
        return {}
    if not any(rows):  # Experiment(name, cmd, [{}, {}]): the same command N times
        return {"repeat": len(rows)} if len(rows) > 1 else {}
    if not all(rows):
        raise SpecError(
            f"{label}: experiment group {group.name!r} mixes combinations with parameters and empty ones; "
            "pbtrun cannot express an empty combination in a list. Split the group in two."
        )
    keys = list(rows[0])
    if all(list(row) == keys for row in rows) and not any("," in key for key in keys):
        table = [tuple(row.values()) for row in rows]
        groups = _finest_partition(table)
        if groups is not None and (len(groups) > 1 or len(keys) == 1):
            return {"grid": _grid(keys, table, groups)}
    return {"list": rows}


def _canonical(value: Any) -> str:
    """A comparison key that tells ``True``, ``1``, ``1.0`` and ``"1"`` apart (they render differently)."""
    return repr(value)


def _axes(table: list[tuple], groups: list[tuple[int, int]]) -> list[list[tuple]]:
    """Per group of consecutive columns, its distinct value tuples in order of first appearance."""
    axes = []
    for start, end in groups:
        seen: dict[tuple, tuple] = {}
        for row in table:
            values = row[start:end]
            seen.setdefault(tuple(_canonical(v) for v in values), values)
        axes.append(list(seen.values()))
    return axes


def _is_product(table: list[tuple], groups: list[tuple[int, int]]) -> bool:
    """Whether the rows are exactly the product of the groups' axes, first group slowest."""
    axes = _axes(table, groups)
    if math.prod(len(axis) for axis in axes) != len(table):
        return False
    for row, combination in zip(table, itertools.product(*axes), strict=True):
        flat = [v for values in combination for v in values]
        if [_canonical(v) for v in row] != [_canonical(v) for v in flat]:
            return False
    return True


def _finest_partition(table: list[tuple]) -> list[tuple[int, int]] | None:
    """The finest split of the columns into consecutive groups whose product gives the rows, if any.

    Greedy from the left: the shortest next group that leaves a product works, because product
    splits of one list refine each other (A x BC = AB x C implies A x B x C).
    """
    width = len(table[0])
    groups: list[tuple[int, int]] = []
    start = 0
    while start < width:
        end = next((e for e in range(start + 1, width) if _is_product(table, [*groups, (start, e), (e, width)])), width)
        groups.append((start, end))
        start = end
    return groups if _is_product(table, groups) else None


def _grid(keys: list[str], table: list[tuple], groups: list[tuple[int, int]]) -> dict[str, Any]:
    grid: dict[str, Any] = {}
    for (start, end), axis in zip(groups, _axes(table, groups), strict=True):
        if end - start == 1:
            grid[keys[start]] = [values[0] for values in axis]
        else:
            grid[",".join(keys[start:end])] = [list(values) for values in axis]
    return grid


def toml_value(value: Any) -> Any:
    """``value`` as TOML should hold it so that pbtrun renders it as the old launcher did (``f"{value}"``).

    bool, int, float, str and lists of them stay as they are; numpy scalars become the Python number
    they render as; anything else (``None``, tuples, dicts, inf, ...) becomes its rendering, a string.
    """
    if _plain(value):
        return value
    rendered = f"{value}"
    if type(value).__module__ == "numpy" and callable(getattr(value, "item", None)):
        with contextlib.suppress(Exception):
            number = value.item()
            if _plain(number) and not isinstance(number, list) and f"{number}" == rendered:
                return number
    return rendered


def _plain(value: Any) -> bool:
    """A value TOML holds and pbtrun renders exactly as Python formats it."""
    kind = type(value)
    if kind is bool or kind is str:
        return True
    if kind is int:
        return value in _INT64
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_plain(v) for v in value)
    return False
