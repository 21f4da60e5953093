"""What is wrong with a state file that cannot be read, in words: which field of which
experiment, and what it should be.

Reading a state is a hot loop (it must stay fast at 100,000 experiments), so the reader checks only what
it must and lets a wrong type fail inside Python ("intern() argument must be str, not int").
This module runs only after such a failure: it walks the same document slowly, field by field,
and names the first thing that differs from what pbtrun writes, in the format the document says
it has (an older format's fields are named as that format named them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterator, Mapping
from typing import Any, NamedTuple

from pbtrun.printable import clip, printable
from pbtrun.state.migrations import FORMAT
from pbtrun.state.records import OUTCOMES, STATUSES, STOP_REASONS

Check = tuple[Callable[[Any], bool], str]  # a test of a value, and what the value should be


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def _is_str(v: Any) -> bool:
    return type(v) is str


def _or_null(check: Check) -> Check:
    test, what = check
    return (lambda v: v is None or test(v)), f"{what}, or null"


def _one_of(words: tuple[str, ...]) -> Check:
    return (lambda v: v in words), "one of " + ", ".join(f'"{w}"' for w in words)


STRING: Check = (_is_str, "a string")
INTEGER: Check = (_is_int, "an integer")
NUMBER: Check = (_is_number, "a number")
BOOLEAN: Check = ((lambda v: type(v) is bool), "true or false")
TABLE: Check = ((lambda v: isinstance(v, dict)), "an object")
ARGV: Check = ((lambda v: isinstance(v, list) and bool(v) and all(map(_is_str, v))), "a non-empty list of strings")
ENV: Check = ((lambda v: isinstance(v, dict) and all(map(_is_str, v.values()))), "an object of strings")
GPUS: Check = ((lambda v: isinstance(v, list) and all(map(_is_int, v))), "a list of GPU numbers")
LIST: Check = ((lambda v: isinstance(v, list)), "a list")

# Field, whether it must be there, what it must be: as ``codec.py`` writes and reads them, in the
# current format (FORMAT_1 below says what format 1 had instead).
HEAD = (("sweep", True, TABLE), ("journal_seq", False, INTEGER), ("backend", True, STRING))
SETTINGS = (
    ("gpus", True, GPUS),
    ("max_parallel", True, ((lambda v: _is_int(v) and v >= 1), "an integer of at least 1")),
    ("experiments_per_gpu", True, INTEGER),
    ("pause_between_s", True, NUMBER),
    ("max_failures", False, _or_null(INTEGER)),
)
SWEEP = (
    ("name", True, STRING),
    ("cwd", True, STRING),
    ("train_dir", True, STRING),
    ("created_at", True, NUMBER),
    ("settings", True, TABLE),
)
EXPERIMENT = (
    ("id", True, STRING),
    ("group", True, STRING),
    ("index", True, INTEGER),
    ("name", True, STRING),
    ("argv", True, ARGV),
    ("env", True, ENV),
    ("params", True, TABLE),
    ("name_arg", False, _or_null(INTEGER)),
    ("status", True, _one_of(STATUSES)),
    ("removed", False, BOOLEAN),
    ("max_retries", False, INTEGER),
    ("timeout_min", False, _or_null(NUMBER)),
    ("attempts", True, LIST),
)
ATTEMPT = (
    ("number", True, INTEGER),
    ("started_at", True, NUMBER),
    ("log", True, STRING),
    ("gpus", False, _or_null(GPUS)),
    ("host", False, STRING),
    ("pid", False, _or_null(INTEGER)),
    ("ended_at", False, _or_null(NUMBER)),
    ("returncode", False, _or_null(INTEGER)),
    ("outcome", False, _or_null(_one_of(OUTCOMES))),
    ("ref", False, _or_null(STRING)),
    ("stop_at", False, _or_null(NUMBER)),
    ("stop_reason", False, _or_null(_one_of(STOP_REASONS))),
)


class Shape(NamedTuple):
    """The fields of the parts that differ between formats."""

    head: tuple[tuple[str, bool, Check], ...]
    attempt: tuple[tuple[str, bool, Check], ...]


# Format 1 had no "backend", and called an attempt's "ref" "reaper" (see migrations.py).
FORMAT_1 = Shape(
    tuple(f for f in HEAD if f[0] != "backend"),
    tuple(("reaper", *f[1:]) if f[0] == "ref" else f for f in ATTEMPT),
)
SHAPES = {1: FORMAT_1, FORMAT: Shape(HEAD, ATTEMPT)}


def document_problem(data: Any) -> str | None:
    """The first thing wrong in a whole state document (``pbtrun.json`` as JSON), or None."""
    stored_format = data.get("format") if isinstance(data, dict) else None
    shape = SHAPES.get(stored_format) if type(stored_format) is int else None
    if shape is None:
        return None  # not an object, or no format this pbtrun reads: codec.sweep_from says so well
    sweep = data.get("sweep")
    problem = _fields(data, shape.head, "the file")
    problem = problem or _fields(sweep, SWEEP, '"sweep"') or _fields(sweep["settings"], SETTINGS, '"sweep.settings"')
    if problem:
        return problem
    experiments = data.get("experiments")
    if not isinstance(experiments, list):
        return f'"experiments" must be a list of experiments, not {_kind(experiments)}'
    seen: dict[Any, int] = {}
    for position, raw in enumerate(experiments):
        if problem := experiment_problem(raw, position, shape):
            return problem
        if raw["id"] in seen:
            return f"{_which(raw, position)} has the id of experiment #{seen[raw['id']]}: each is listed once"
        seen[raw["id"]] = position
    return None


def experiment_problem(raw: Any, position: int | None, shape: Shape) -> str | None:
    """The first thing wrong in one experiment's record (the ``position``-th of the file, from 0)."""
    which = _which(raw, position)
    if not isinstance(raw, dict):
        return f"{which} must be an object, not {_kind(raw)}"
    if problem := _fields(raw, EXPERIMENT, which):
        return problem
    for number, attempt in enumerate(raw["attempts"], 1):
        if problem := attempt_problem(attempt, f"{which}, attempt #{number}", shape):
            return problem
    return None


def attempt_problem(raw: Any, which: str, shape: Shape) -> str | None:
    if not isinstance(raw, dict):
        return f"{which} must be an object, not {_kind(raw)}"
    if problem := _fields(raw, shape.attempt, which):
        return problem
    if (raw.get("stop_at") is None) != (raw.get("stop_reason") is None):
        return f'{which}: "stop_at" and "stop_reason" go together: both null, or a time and a reason'
    return None


def journal_problem(line: bytes, ids: Container[str], stored_format: int) -> str:
    """What is wrong with one line of the journal, written in ``stored_format``; ``ids``: the
    experiments the state holds by then."""
    try:
        entry = json.loads(line)
    except RecursionError:
        return "the line nests more deeply than JSON can be read"
    except ValueError:  # UnicodeDecodeError too
        return "the line is not valid JSON"
    if not isinstance(entry, dict):
        return f"the line must be an object, not {_kind(entry)}"
    problems = _entry_problems(entry, ids, SHAPES[stored_format])
    found = next(filter(None, problems), None)  # lazily: each check trusts the ones before
    return found or "an entry is not what pbtrun writes"


def _entry_problems(entry: dict, ids: Container[str], shape: Shape) -> Iterator[str | None]:
    yield _fields(entry, (("seq", True, INTEGER), ("experiments", False, LIST), ("changes", False, LIST)), "the entry")
    for raw in entry.get("experiments", ()):
        yield experiment_problem(raw, None, shape)
    change = (("id", True, STRING), ("status", True, _one_of(STATUSES)), ("attempt", True, _or_null(TABLE)))
    for raw in entry.get("changes", ()):
        yield None if isinstance(raw, dict) else f"a change must be an object, not {_kind(raw)}"
        yield _fields(raw, change, "a change")
        attempt = raw["attempt"]
        yield None if attempt is None else attempt_problem(attempt, "the attempt of a change", shape)
        known = raw["id"] in ids
        yield None if known else f"a change names the experiment id {_kind(raw['id'])}, which is not in the state"


def _fields(raw: Mapping[str, Any], fields: tuple[tuple[str, bool, Check], ...], which: str) -> str | None:
    for name, required, (test, what) in fields:
        if name not in raw:
            if required:
                return f'{which} has no "{name}" field; it must be {what}'
            continue
        if not test(raw[name]):
            return f'{which}: "{name}" must be {what}, not {_kind(raw[name])}'
    return None


def _which(raw: Any, position: int | None) -> str:
    """``experiment #3 ("00_a_lr_0.1")``: its place in the file, and its name where it has one."""
    which = "an experiment" if position is None else f"experiment #{position}"
    name = raw.get("name") if isinstance(raw, dict) else None
    return f'{which} ("{clip(printable(name), 80)}")' if isinstance(name, str) else which


def _kind(value: Any) -> str:
    """What a JSON value is, with a short look at it: ``the integer 5``, ``the list [1, "a"]``."""
    if value is None or type(value) is bool:
        return json.dumps(value)
    kinds = {int: "the integer", float: "the number", str: "the string", list: "the list", dict: "the object"}
    try:
        look = json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):  # a number of thousands of digits, or nesting json cannot write
        look = "…"
    return f"{kinds.get(type(value), type(value).__name__)} {clip(printable(look), 60)}"
