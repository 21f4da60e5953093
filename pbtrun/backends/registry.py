"""Backends by name: the one place that knows which backends exist and how each is opened.

The scheduler asks for a backend by the name the spec gives (``backend = "local"``) and never
imports one itself. Each is imported only when it is opened, so that a sweep pays for its own
backend alone. (Not in ``base.py``: each backend imports that module, and this one imports them.)
"""

from __future__ import annotations

from collections.abc import Callable

from pbtrun.backends.base import Backend
from pbtrun.errors import SpecError
from pbtrun.state.paths import SweepPaths


def _local(paths: SweepPaths) -> Backend:
    from pbtrun.backends.local import LocalBackend

    return LocalBackend(paths)


def _slurm(paths: SweepPaths) -> Backend:
    from pbtrun.backends.slurm import SlurmBackend

    return SlurmBackend(paths)


def _template(paths: SweepPaths) -> Backend:
    from pbtrun.backends.template import TemplateBackend

    return TemplateBackend(paths)


OPENERS: dict[str, Callable[[SweepPaths], Backend]] = {"local": _local, "slurm": _slurm, "template": _template}


def open_backend(name: str, paths: SweepPaths) -> Backend:
    """The backend called ``name``, ready to run the sweep at ``paths``."""
    opener = OPENERS.get(name)
    if opener is None:
        raise SpecError(f"unknown backend {name!r}; valid backends are: {', '.join(sorted(OPENERS))}")
    return opener(paths)
