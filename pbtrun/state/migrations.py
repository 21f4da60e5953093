"""The state's format history, and the steps that bring an older format's JSON to the current one.

Format history:
    1 (pbtrun 0.1.0): the first format.
    2: the sweep names the backend its experiments run on (``"backend"``; every sweep of format 1
       ran on ``"local"``), and an attempt's reference to what runs it is ``"ref"``, whatever the
       backend (format 1 called it ``"reaper"``: the local backend's reaper address).

A step works part by part, in place on the parsed JSON: the head (everything but the
experiments), one experiment, one attempt. No step ever sees a whole document, because none is
ever read whole: ``pbtrun.json`` is read row by row, and the journal holds experiments and
attempts alone. Format 3 will be one more :class:`Step` in :data:`STEPS`, and ``FORMAT = 3``.

A sweep read in an older format is written in the current one on its first write, and the
journal's lines are always in the format of the ``pbtrun.json`` they follow (``writer.py``
rewrites an older file before it appends a line).

No I/O: parsed JSON in, changed in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

FORMAT = 2  # the format this pbtrun writes

Part = dict[str, Any]


class Step(NamedTuple):
    """How one format's JSON becomes the next one's, part by part, in place."""

    head: Callable[[Part], None]
    experiment: Callable[[Part], None]  # its own fields: its attempts go through ``attempt``
    attempt: Callable[[Part], None]


def _unchanged(part: Part) -> None:
    """A part that a step leaves as it is."""


def _head_1_to_2(head: Part) -> None:
    head["backend"] = "local"  # the only backend format 1 knew


def _attempt_1_to_2(attempt: Part) -> None:
    if "reaper" in attempt:
        attempt["ref"] = attempt.pop("reaper")


STEPS: dict[int, Step] = {  # by the format each step starts from
    1: Step(head=_head_1_to_2, experiment=_unchanged, attempt=_attempt_1_to_2),
}


def _steps(stored_format: int) -> Iterator[Step]:
    return (STEPS[number] for number in range(stored_format, FORMAT))


def upgrade_head(head: Part, stored_format: int) -> None:
    """Bring the head of a state written in ``stored_format`` to the current format."""
    for step in _steps(stored_format):
        step.head(head)


def upgrade_experiment(experiment: Part, stored_format: int) -> None:
    """Bring one experiment, with its attempts, to the current format. Malformed parts raise
    what reading them would (TypeError, AttributeError...): readers report those."""
    for step in _steps(stored_format):
        step.experiment(experiment)
        for attempt in experiment["attempts"]:
            step.attempt(attempt)


def upgrade_attempt(attempt: Part, stored_format: int) -> None:
    """Bring one attempt (a journal change's) to the current format."""
    for step in _steps(stored_format):
        step.attempt(attempt)
