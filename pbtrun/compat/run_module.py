"""Importing a run module of the old launcher, to read the ``RUN_DESCRIPTION`` it defines.

A run module is given as a ``.py`` path or a dotted name importable here. Without the launcher
installed: while the module is imported, ``sample_factory.launcher.run_description`` and
``isaacgymenvs.pbt.launcher.run_description`` (and the helpers' modules in
:data:`pbtrun.compat.launcher.STAND_INS`) resolve to :mod:`pbtrun.compat.launcher` when (and only
when) the real module cannot be found. The stand-in is a finder placed last on ``sys.meta_path``,
removed afterwards together with the modules it made, so an installed launcher always wins and
nothing stays behind. Other imports of the module still need their packages. Whatever goes wrong
while the module runs becomes one :class:`SpecError` that says what to do.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import traceback
import types
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pbtrun.compat import launcher as launcher_compat
from pbtrun.errors import CWD_GONE, SpecError

LAUNCHER_MODULES = tuple(launcher_compat.STAND_INS)


def load_run_module(target: str) -> tuple[str, Any]:
    """(how to name the module ``target`` in messages, its ``RUN_DESCRIPTION``)."""
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
    """``a``, ``a.b``, ``a.b.c`` for ``a.b.c``: the packages an import of it imports first."""
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


def _guarded(run: Callable[[], Any], label: str, file: str | None, dotted: str | None) -> Any:
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
