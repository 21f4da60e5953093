"""What an edited spec changes in a sweep that exists: ``plan`` and ``up --dry-run`` show it.

Computed with :func:`pbtrun.state.records.merged`, the function ``up`` merges with, on the state as
read, which is left untouched: the names and order shown are the ones ``up`` would give.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from pbtrun.spec.argdiff import Difference, describe, difference
from pbtrun.state.merge import differs, merged
from pbtrun.state.records import RUNNING, STATUSES, Sweep
from pbtrun.ui.plans import command_lines

if TYPE_CHECKING:
    from pbtrun.spec.model import ExperimentSpec


class Changed(NamedTuple):
    name: str
    status: str
    diff: Difference


class Removed(NamedTuple):
    name: str
    status: str
    kept: bool  # it ran: kept (marked removed) for its history; else dropped from the state


class Changes(NamedTuple):
    """The spec against the sweep's state, each list in the sweep's order."""

    unchanged: list[tuple[str, str]]  # (name, status)
    new: list[str]
    changed: list[Changed]
    removed: list[Removed]
    planned: list[ExperimentSpec]  # the spec's experiments as the sweep would hold them, in its order


def compare(sweep: Sweep, compiled: Sequence[ExperimentSpec]) -> Changes:
    """Classify every experiment of the state and the spec; ``sweep`` is not changed."""
    old = sweep.experiments
    specs = {c.id: c for c in compiled}
    result = merged(old, compiled, force=True)  # force: a changed experiment shows its new argv
    unchanged, new, changed, planned = [], [], [], []
    for exp in result.values():
        spec = specs.get(exp.id)
        if spec is None:
            continue
        kept = exp.spec  # as the merge leaves it: numbered, named and written as it will run
        planned.append(spec._replace(index=kept.index, name=kept.name, argv=kept.argv, env=kept.env))
        before = old.get(exp.id)
        if before is None:
            new.append(exp.name)
        elif differs(before, spec):
            changed.append(
                Changed(exp.name, before.status, difference(before.spec.argv, kept.argv, before.spec.env, kept.env))
            )
        else:
            unchanged.append((exp.name, before.status))
    # Already marked removed by an earlier merge: nothing this spec changes.
    removed = [Removed(e.name, e.status, e.id in result) for e in old.values() if e.id not in specs and not e.removed]
    return Changes(unchanged, new, changed, removed, planned)


def text(changes: Changes, shown: Sequence[ExperimentSpec]) -> list[str]:
    """The lines ``plan`` prints for a sweep that exists, in place of the full listing: a
    summary, then what changes. ``shown``: the planned experiments as ``plan`` shows their
    commands (the interpreter ``python`` runs with), for the new ones' full commands."""
    counts = Counter(status for _, status in changes.unchanged)
    by_status = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    lines = [
        f"against the sweep's state: {len(changes.unchanged)} unchanged"
        + (f" ({by_status})" if by_status else "")
        + f", {len(changes.new)} new, {len(changes.changed)} changed, {len(changes.removed)} removed"
    ]
    if not (changes.new or changes.changed or changes.removed):
        lines.append("the spec changes nothing: `up` runs what the state has left to run.")
    if changes.new:
        lines.append(f"{len(changes.new)} new, appended after the existing experiments (launched after those pending):")
        new = set(changes.new)
        lines += [f"  {line}" for exp in shown if exp.name in new for line in command_lines(exp)]
    if changes.changed:
        lines.append(
            f"{len(changes.changed)} changed: `up` refuses them; `up --force` re-queues them with the new "
            "command (earlier attempts stay in the history):"
        )
        for c in changes.changed:
            note = ", still running: stop the sweep before --force" if c.status == RUNNING else ""
            lines.append(f"  {c.name} ({c.status}{note}): {describe(c.diff)}")
    if changes.removed:
        lines.append(f"{len(changes.removed)} removed from the spec:")
        for r in changes.removed:
            fate = "kept for its history, never run again" if r.kept else "dropped (it never ran)"
            lines.append(f"  {r.name} ({r.status}): {fate}")
    return lines


def to_json(changes: Changes) -> dict[str, Any]:
    """``plan --json``'s ``changes`` (documented in docs/status-json.md): add keys, never rename them."""
    return {
        "unchanged": [name for name, _ in changes.unchanged],
        "new": list(changes.new),
        "changed": [
            {
                "name": c.name,
                "status": c.status,
                "argv_removed": list(c.diff.argv_removed),
                "argv_added": list(c.diff.argv_added),
                "env_changed": {k: {"old": old, "new": new} for k, (old, new) in c.diff.env_changed.items()},
            }
            for c in changes.changed
        ],
        "removed": [{"name": r.name, "status": r.status, "kept": r.kept} for r in changes.removed],
    }
