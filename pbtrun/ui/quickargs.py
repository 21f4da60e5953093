"""``pbtrun up SPEC`` with ordinary flags, parsed without click (issue 6: click's import is a
large share of start-up, and `up` is what a sweep waits for; see docs/performance.md).

This parser knows only the happy path: the spec, then options spelled as ``--name value`` or
``--name=value``, each with a valid value. Anything else (help, ``--dry-run``, an unknown or
misspelled option, a bad value, a second spec, ``--``, shell completion) returns None, and click
parses the command line as it always does, with its usage errors. Both parsers are built from
one table of options (:mod:`pbtrun.ui.runoptions`); tests/test_startup.py checks that every
command line either parses here exactly as click parses it, or is left to click.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pbtrun.ui.runoptions import FLAG, INTEGER, TEXT, UP, Option

_BY_SPELLING = {spelling: option for option in UP if option.fast_path for spelling in option.spellings}


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
    params = {option.name: option.default for option in UP}
    spec = None
    while args:
        token = args.pop(0)
        if not token.startswith("-"):
            if spec is not None:
                raise _ForClick
            spec = token
            continue
        spelling, equals, value = token.partition("=")
        option = _BY_SPELLING.get(spelling)
        if option is None or (option.kind == FLAG and equals):
            raise _ForClick
        if option.kind == FLAG:
            params[option.name] = True
            continue
        if not equals:
            # ``--train-dir --plain`` is most likely a value left out: what it means is click's to say
            if not args or (args[0].startswith("-") and option.kind == TEXT):
                raise _ForClick
            value = args.pop(0)
        params[option.name] = _value(option, value)
    if not spec:
        raise _ForClick
    params["spec_file"] = Path(spec)
    return params


def _value(option: Option, text: str) -> Any:
    """``text`` converted as click converts it; ValueError where click would refuse it."""
    if option.kind == TEXT:
        return text
    value = int(text) if option.kind == INTEGER else float(text)
    within = (option.low is None or option.low <= value) and (option.high is None or value <= option.high)
    if not within:  # also for nan, which no comparison holds for
        raise ValueError(text)
    return value
