"""How one experiment's command and env differ between its state and an edited spec.

Pure and free of other pbtrun modules, so that both the state layer (the refusal that asks for
``--force``) and ``plan`` (its ``changes``) say a change in the same words.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import NamedTuple


class Difference(NamedTuple):
    """What changes: argv words removed and added, in argv order, and env keys by their values
    (old, new); ``None`` stands for a key that is not set on that side."""

    argv_removed: tuple[str, ...]
    argv_added: tuple[str, ...]
    env_changed: dict[str, tuple[str | None, str | None]]


def difference(
    old_argv: Sequence[str], new_argv: Sequence[str], old_env: Mapping[str, str], new_env: Mapping[str, str]
) -> Difference:
    """The words of ``old_argv`` that ``new_argv`` drops and the ones it brings, found by
    matching the two in order: a value changed in place reads as one word out, one word in,
    and a word that moved is reported too (argv order can matter to a program)."""
    from difflib import SequenceMatcher  # here: an import that `pbtrun up` without a change never needs

    removed: list[str] = []
    added: list[str] = []
    matcher = SequenceMatcher(None, list(old_argv), list(new_argv), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            removed += old_argv[i1:i2]
            added += new_argv[j1:j2]
    env = {
        key: (old_env.get(key), new_env.get(key))
        for key in sorted({*old_env, *new_env})
        if old_env.get(key) != new_env.get(key)
    }
    return Difference(tuple(removed), tuple(added), env)


def describe(diff: Difference) -> str:
    """One line: ``removed --layers=2; added --layers=3; env OMP_NUM_THREADS: 1 -> 2``."""
    parts = []
    if diff.argv_removed:
        parts.append("removed " + shlex.join(diff.argv_removed))
    if diff.argv_added:
        parts.append("added " + shlex.join(diff.argv_added))
    for key, (old, new) in diff.env_changed.items():
        parts.append(f"env {key}: {_env_value(old)} -> {_env_value(new)}")
    return "; ".join(parts) or "no difference"


def _env_value(value: str | None) -> str:
    return "(unset)" if value is None else shlex.quote(value)
