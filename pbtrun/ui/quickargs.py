"""``pbtrun up SPEC`` with ordinary flags, parsed without click (issue 6: click's import is a
large share of start-up, and `up` is what a sweep waits for; see docs/performance.md).

This parser knows only the happy path: the spec, then options spelled as ``--name value`` or
``--name=value``, each with a valid value. Anything else (help, ``--dry-run``, an unknown or
misspelled option, a bad value, a second spec, ``--``, shell completion) returns None, and click
parses the command line as it always does, with its usage errors. tests/test_startup.py checks
that every command line either parses here exactly as click parses it, or is left to click.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pbtrun.limits import MAX_GPUS, MAX_GRACE_S, MAX_PAUSE_S


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return convert


def _seconds(max_s: float) -> Callable[[str], float]:
    def convert(text: str) -> float:
        value = float(text)
        if not 0 <= value <= max_s:  # also false for nan
            raise ValueError(text)
        return value

    return convert


def _text(text: str) -> str:
    return text


# Each option of `pbtrun up` (cli.py): its spellings, its parameter and how its value converts
# (None: a flag). The two it leaves to click: --dry-run and --json (and -h/--help).
UP_OPTIONS: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    **dict.fromkeys(("--num-gpus", "--num_gpus"), ("num_gpus", _int_range(0, MAX_GPUS))),
    **dict.fromkeys(("--max-parallel", "--max_parallel"), ("max_parallel", int)),
    **dict.fromkeys(("--experiments-per-gpu", "--experiments_per_gpu"), ("experiments_per_gpu", int)),
    **dict.fromkeys(("--pause-between", "--pause_between"), ("pause_between", _seconds(MAX_PAUSE_S))),
    **dict.fromkeys(("--max-failures", "--max_failures"), ("max_failures", _int_range(1, 2**63))),
    "--grace": ("grace", _seconds(MAX_GRACE_S)),
    "--retry-failed": ("retry_failed", None),
    "--retry-lost": ("retry_lost", None),
    "--plain": ("plain", None),
    **dict.fromkeys(("--train-dir", "--train_dir"), ("train_dir", _text)),
    "--force": ("force", None),
}
UP_DEFAULTS: dict[str, Any] = {
    "num_gpus": None,
    "max_parallel": None,
    "experiments_per_gpu": None,
    "pause_between": None,
    "max_failures": None,
    "grace": 30.0,
    "retry_failed": False,
    "retry_lost": False,
    "plain": False,
    "train_dir": None,
    "force": False,
    "dry_run": False,
    "as_json": False,
}


class _ForClick(Exception):
    """The command line is not one this parser takes: click parses it."""


def parse_up(args: Sequence[str]) -> dict[str, Any] | None:
    """The parameters of ``pbtrun up`` given ``args`` (after ``up``), as click would pass them;
    None where click should parse them."""
    if "_PBTRUN_COMPLETE" in os.environ:  # click's shell completion asks, not a person
        return None
    try:
        return _parse(list(args))
    except (_ForClick, ValueError):
        return None


def _parse(args: list[str]) -> dict[str, Any]:
    params = dict(UP_DEFAULTS)
    spec = None
    while args:
        token = args.pop(0)
        if not token.startswith("-"):
            if spec is not None:
                raise _ForClick
            spec = token
            continue
        name, equals, value = token.partition("=")
        param, convert = UP_OPTIONS.get(name) or (None, None)
        if param is None or (convert is None and equals):
            raise _ForClick
        if convert is None:
            params[param] = True
            continue
        if not equals:
            if not args or (args[0].startswith("-") and convert is _text):
                raise _ForClick
            value = args.pop(0)
        params[param] = convert(value)
    if not spec:
        raise _ForClick
    params["spec_file"] = Path(spec)
    return params
