"""``pbtrun import``: turn a Sample Factory / IsaacGymEnvs run module into an equivalent ``sweep.toml``.

A run module defines ``RUN_DESCRIPTION``, a ``RunDescription`` of experiment groups. pbtrun imports
the module (:mod:`pbtrun.compat.run_module`), reads the description
(:mod:`pbtrun.compat.description`), recovers each group's grid (:mod:`pbtrun.compat.grids`) and
writes a spec (:mod:`pbtrun.compat.writing`) from which pbtrun compiles the same experiments as
the old launcher's ``generate_experiments(train_dir)``: same names, same argv (its command string
split on spaces), same env, same order. The text is checked twice before it is handed out: it
reads back as the document written, and pbtrun accepts it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pbtrun.compat import writing
from pbtrun.compat.description import read_run
from pbtrun.compat.run_module import load_run_module
from pbtrun.errors import SpecError
from pbtrun.spec.expansion import expand
from pbtrun.spec.reading import parse


def to_toml(target: str, experiment_suffix: str | None = None) -> str:
    """The ``sweep.toml`` text equivalent to the run module ``target`` (a ``.py`` path or dotted name).

    ``experiment_suffix`` plays the old launcher's ``--experiment_suffix`` flag and overrides the
    description's own. Raises :class:`SpecError` when the module cannot be read or has no pbtrun
    equivalent.
    """
    label, description = load_run_module(target)
    run = read_run(description, label, experiment_suffix)
    document = writing.document(run, label)
    text = writing.header(label, run) + writing.dumps(document)
    if tomllib.loads(text) != document:
        raise SpecError(
            f"{label}: pbtrun import wrote a spec that does not read back as written; please report this bug."
        )
    try:  # a spec pbtrun would refuse is a bug in this package or a case it does not cover: say so here
        expand(parse(text, Path(f"{target} (imported)")))
    except SpecError as exc:
        raise SpecError(f"{label}: the imported spec is not valid for pbtrun: {exc}") from None
    return text
