"""What the paths on a command line mean: the sweep a command works on (named, or the only one
under ./train_dir), a "did you mean" for a mistyped sweep path, and the command to use when a
spec or a Python run module is given where a sweep goes, or the other way round.

Nothing here writes; it only lists directories and stats files, so a typo costs a clear message
and never a traceback or a silent "no sweeps".
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pbtrun.errors import PbtrunError, SpecError, StateError
from pbtrun.state.paths import SweepPaths, find_sweeps, is_sweep, resolve_sweep, subdirectories
from pbtrun.ui import leftovers

DEFAULT_TRAIN_DIR = Path("train_dir")  # what `status`, `resume` and `logs` read when given no path
SUGGESTIONS = 3


def sweep_at(path: Path, command: str, given: bool = True) -> SweepPaths:
    """The sweep at ``path`` (see ``resolve_sweep``); a sweep that lost its pbtrun.json, at
    ``path`` or as the only one under a train dir, is reported with how to restore it; a path
    that is not there, with the sweeps closest to it. ``given``: typed, not the default."""
    refuse_missing(path, command, given)
    refuse_spec_file(path, command)
    target = path.parent if path.name == "pbtrun.json" else path
    leftovers.refuse_lost_state(target)
    if target.is_dir() and not is_sweep(target) and not find_sweeps(target):
        lost = leftovers.lost_sweeps(target)
        if len(lost) == 1:
            leftovers.refuse_lost_state(lost[0])
        if lost:
            names = ", ".join(shlex.quote(str(p)) for p in lost)
            raise PbtrunError(
                f"{path}: no sweep here, but {len(lost)} sweep directories under it lost their pbtrun.json "
                f"({names}); `pbtrun status DIR` on one says how to restore it."
            )
    return resolve_sweep(path)


def refuse_spec_file(path: Path, command: str) -> None:
    """A file given where a sweep directory goes: most likely the spec the sweep came from."""
    if path.name == "pbtrun.json" or not path.is_file():
        return
    if path.suffix != ".toml":
        raise PbtrunError(f"{path} is a file, not a sweep directory: give a sweep directory (train_dir/NAME).")
    from pbtrun.spec.reading import load

    try:
        spec = load(path)
        where = f", {shlex.quote(str(Path(spec.train_dir) / spec.name))} by the spec's train_dir"
    except PbtrunError:
        where = ""
    raise PbtrunError(
        f"{path} is a sweep spec, not a sweep directory: `pbtrun up {shlex.quote(str(path))}` runs the "
        f"sweep it describes, or continues it; `pbtrun {command}` takes the sweep's directory{where}."
    )


def logs_arguments(path: Path | None, experiment: str | None) -> tuple[Path, str | None]:
    """``pbtrun logs [PATH] [EXPERIMENT]``: the sweep and the experiment the arguments name.

    With one argument that names nothing on disk (no ``/``, no such file or directory) while
    ./train_dir holds sweeps, that argument is the experiment, in the only sweep there
    (``pbtrun logs 00_ant``): an experiment's name is never a path, and a mistyped sweep path
    still gets its "did you mean" because it has a ``/`` or the train dir holds no sweep.
    """
    if path is None:
        return DEFAULT_TRAIN_DIR, experiment
    bare = "/" not in str(path) and str(path) not in (".", "..") and not path.exists()
    if experiment is None and bare and find_sweeps(DEFAULT_TRAIN_DIR):
        return DEFAULT_TRAIN_DIR, str(path)
    return path, experiment


def refuse_missing(path: Path, command: str, given: bool = True) -> None:
    """Raise the error a sweep path that does not exist gets: the closest sweeps' paths, or, when
    no path was given, that ./train_dir is not here either."""
    if path.exists() or path.is_symlink():
        return
    if not given:
        raise StateError(
            f"no sweep given, and there is no {path}/ here to find one in: give the sweep's directory "
            f"(pbtrun {command} TRAIN_DIR/NAME), or run pbtrun where {path}/ is."
        )
    raise StateError(f"{path}: no such directory. Give a sweep directory (train_dir/NAME).{did_you_mean(path)}")


def did_you_mean(path: Path) -> str:
    """`` Did you mean 'train_dir/ant'?`` for the sweeps whose paths are closest to ``path``, or ''."""
    close = close_sweeps(path)
    if not close:
        return ""
    return " Did you mean " + " or ".join(shlex.quote(c) for c in close) + "?"


def close_sweeps(path: Path) -> list[str]:
    """Sweep paths, spelled as ``path`` is (relative or absolute), that differ from it by a typo:
    sweeps beside it (``train_dir/quickstrat``), in a directory next to its missing parent
    (``trian_dir/quickstart``), or under ./train_dir for a bare name (``quickstrat``)."""
    import difflib  # only once a path is already wrong

    parent = path.parent
    candidates: dict[str, str] = {}  # what is compared -> what is suggested
    if parent.is_dir():
        for sweep in find_sweeps(parent):
            candidates[sweep.name] = str(sweep)
        if parent == Path("."):
            for sweep in find_sweeps(DEFAULT_TRAIN_DIR):
                candidates.setdefault(sweep.name, str(sweep))
        typed = path.name
    elif parent.parent.is_dir() and parent != parent.parent:
        for directory in subdirectories(parent.parent):
            for sweep in find_sweeps(directory):
                candidates[f"{directory.name}/{sweep.name}"] = str(sweep)
        typed = f"{parent.name}/{path.name}"
    else:
        return []
    found = difflib.get_close_matches(typed, list(candidates), n=SUGGESTIONS, cutoff=0.6)
    return [candidates[key] for key in found]


def refuse_run_module(spec_file: Path, command: str) -> None:
    """A Python file given to ``up`` or ``plan``: say the ``pbtrun import`` command that turns an
    old launcher's run module into a spec, and the command to run after it, on a line of their
    own to copy. Raised before the file is read as TOML, whose complaint about the first line
    of Python would help no one."""
    if spec_file.suffix != ".py" or not spec_file.is_file():
        return
    if not _defines_run_description(spec_file):  # a training script: importing it would run it
        script, toml = shlex.quote(str(spec_file)), shlex.quote(str(spec_file.with_suffix(".toml")))
        raise SpecError(
            f"{spec_file} is a Python file, not a sweep spec (TOML): a training script is what a spec's "
            f"`command` runs. Write a starter spec, set its command to `python {script}`, then run it:\n"
            f"    pbtrun init {toml} && $EDITOR {toml} && pbtrun {command} {toml}\n"
            "(`pbtrun import` is for an old launcher's run module, one that defines RUN_DESCRIPTION; this "
            "file does not.)"
        )
    toml = spec_file.with_suffix(".toml")
    steps = f"pbtrun import {shlex.quote(str(spec_file))} -o {shlex.quote(str(toml))}"
    steps += f" && pbtrun {command} {shlex.quote(str(toml))}"
    overwrites = ""
    if toml.exists():  # never suggest --force: that file may be a spec written by hand
        overwrites = f" ({toml} exists already, and import will not write over it: give -o another name)"
    what = f"{spec_file} is a Python run module (it defines RUN_DESCRIPTION), not a sweep spec. Convert it"
    raise SpecError(f"{what}, then run, with{overwrites}:\n    {steps}")


def _defines_run_description(path: Path) -> bool:
    try:
        return b"RUN_DESCRIPTION" in path.read_bytes()
    except OSError:
        return False
