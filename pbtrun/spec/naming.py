"""Experiment names, stable ids and safe file names.

Names follow the Sample Factory / IsaacGymEnvs launcher to the letter, so dashboards and
checkpoint directories keep their names after a user moves to pbtrun:
``NN_<group>[_<shorthand>_<value>...]``, where the shorthand of ``train.lr_decay`` is ``t.l.dec``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_TOKEN_SPLIT = re.compile(r"[._-]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,@-]")
_MAX_FILE_NAME = 120
# A name pbtrun makes a directory of, or passes for a program to make one of (the sweep, the group's
# <group>_<suffix>, each experiment): a file name may have 255 bytes, and 15 are left for what a
# program adds to it (a timestamp, an extension). Logs use safe_file_name, shorter still.
MAX_NAME_BYTES = 240


def render_value(value: Any) -> str:
    """Render a parameter value as the old launcher did: Python's ``str()`` (``True``, ``1e-05``)."""
    return str(value)


def shorthands(param_names: Iterable[str]) -> list[str]:
    """Shorthands for parameter names, lengthened while they collide with an earlier one.

    Each ``.``/``_``/``-``-separated token but the last gives its first letter; the last gives up
    to three letters, more while the result is already taken (the launcher stops lengthening
    when the token is exhausted and then accepts the collision; so do we).
    """
    taken: list[str] = []
    for name in param_names:
        tokens = _TOKEN_SPLIT.split(name)
        head = [t[:1] for t in tokens[:-1]]
        last = tokens[-1]
        length = min(3, len(last))
        short = ".".join([*head, last[:length]])
        while length <= len(last) and short in taken:
            length += 1
            short = ".".join([*head, last[:length]])
        taken.append(short)
    return taken


def experiment_name(
    group: str, index: int, params: Mapping[str, Any], customize: bool, shorts: list[str] | None = None
) -> str:
    """The launcher's experiment name: ``NN_group`` plus ``_short_value`` per parameter.

    ``shorts``: the parameters' shorthands, if the caller has them (they depend only on the
    parameter names, which a group's experiments share)."""
    tokens = [group]
    if customize:
        shorts = shorthands(params) if shorts is None else shorts
        tokens += [f"{s}_{render_value(v)}" for s, v in zip(shorts, params.values(), strict=True)]
    return f"{index:02d}_" + "_".join(tokens)


def canonical_json(value: Any) -> str:
    """``value`` as ids see it: JSON with sorted keys, anything else as its ``str()``."""
    return _ID_JSON.encode(value)


def id_from_json(group_json: str, params_json: str, occurrence: int) -> str:
    """An experiment's stable id, from the canonical JSON of its group and parameters: the same
    group and parameters give the same id, whatever their position, and ``occurrence`` tells
    apart experiments of one group with identical parameters (repeats), so re-compiling an edited
    spec recognises every experiment it already has. (A compile makes the group's JSON once, and
    the parameters' serves it also to count repeats.) The text hashed is exactly
    ``canonical_json([group, params, occurrence])``, as in the first release: ids never change."""
    return _sha256()(f"[{group_json}, {params_json}, {occurrence}]".encode()).hexdigest()[:16]


@functools.cache
def _sha256() -> Callable[[bytes], Any]:
    """SHA-256, loaded on first use (only compiling a spec makes ids): CPython's own built-in
    implementation where it has one, the one ``hashlib`` itself falls back to. ``hashlib``
    first loads OpenSSL, a visible share of ``pbtrun up``'s time before its first launch (see
    docs/performance.md), to hash inputs of a hundred bytes, which the built-in one does as fast
    (the digests are the same: tested)."""
    for module in ("_sha2", "_sha256"):  # Python 3.12+, 3.11
        with contextlib.suppress(ImportError):
            return importlib.import_module(module).sha256
    from hashlib import sha256

    return sha256


# json.dumps(..., sort_keys=True, default=str), made once: ids must never change, and a 100,000
# experiment sweep makes as many.
_ID_JSON = json.JSONEncoder(sort_keys=True, default=str)


def safe_file_name(name: str, exp_id: str) -> str:
    """A file-system-safe, collision-free name for an experiment's files.

    Names may hold ``/`` or spaces (values render with ``str()``), so anything unusual is
    replaced; when the name had to change, or is too long, the id keeps it unique.
    """
    safe = _UNSAFE.sub("_", name).lstrip(".") or "_"
    if safe == name and len(safe) <= _MAX_FILE_NAME:
        return safe
    return f"{safe[:_MAX_FILE_NAME]}-{exp_id[:8]}"
