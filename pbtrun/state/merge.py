"""An edited spec brought into an existing sweep: which experiments are kept, which are new,
which are gone, and the refusal of a changed command (unless forced). ``up`` merges with
:func:`merge`; ``plan`` shows :func:`merged`'s result before anything is changed.

A kept experiment keeps its definition object (only its retry and timeout limits follow the
spec, and with ``--force`` its command): an unchanged one is then journaled as a transition,
not a full record. A new one holds the compiled definition as is.

Pure: records in, records out (``store.py`` saves them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from pbtrun.errors import SpecError
from pbtrun.printable import printable
from pbtrun.state.records import PENDING, RUNNING, Experiment, Sweep

if TYPE_CHECKING:  # only for annotations: readers of the state need not load the spec layer
    from pbtrun.spec.model import ExperimentSpec


class MergeReport(NamedTuple):
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def new_experiment(spec: ExperimentSpec) -> Experiment:
    """A pending experiment with the definition ``spec``, which it holds as is (its env shared
    with the group's other experiments: records are never changed in place)."""
    return Experiment(spec)


def merge(sweep: Sweep, compiled: Sequence[ExperimentSpec], force: bool = False) -> MergeReport:
    """Bring a sweep in line with a re-compiled spec, in place (see :func:`merged`).

    An experiment whose command or env changed is refused, unless ``force``, which re-queues
    it with the new definition (refused still while it runs).
    """
    old = sweep.experiments
    changed = [c for c in compiled if c.id in old and differs(old[c.id], c)]
    if changed and not force:
        raise SpecError(_changed_message(sweep, changed))
    busy = [old[c.id].name for c in changed if old[c.id].status == RUNNING]
    if busy:
        raise SpecError(f"cannot re-queue {', '.join(busy)}: still running. Stop the sweep first (Ctrl-C).")
    result = merged(old, compiled, force)
    sweep.replace_all(result.values())
    return MergeReport(
        tuple(e.name for e in result.values() if e.id not in old),
        tuple(old[c.id].name for c in changed),
        tuple(e.name for e in result.values() if e.removed),
    )


def merged(
    old: Mapping[str, Experiment], compiled: Sequence[ExperimentSpec], force: bool = False
) -> dict[str, Experiment]:
    """The experiments a merge leaves, in the sweep's order, made without changing ``old``
    (``plan`` shows them before anything is changed).

    Existing experiments keep their names, argv, history and place (the ``#`` that ``status``
    shows and ``logs`` takes), and adding a grid value never renames a run whose checkpoints
    already exist. New experiments are appended after them as pending, so existing pending ones
    launch first. Experiments gone from the spec are kept in their place and marked removed if
    they ran; if they never ran they are dropped, and only the rows after them move up.
    """
    specs = {c.id: c for c in compiled}
    result: dict[str, Experiment] = {}
    for exp in old.values():
        spec = specs.get(exp.id)
        if spec is not None:
            result[exp.id] = _keep(exp, spec, force)
        elif exp.attempts:
            result[exp.id] = exp._replace(removed=True)
    # Names and indexes by group of every experiment the state had, dropped ones too: a name
    # that was shown once never comes back meaning another experiment.
    taken = {e.name for e in old.values()}
    used: dict[str, set[int]] = {}  # each NN_ prefix names one experiment of a group
    for exp in old.values():
        used.setdefault(exp.spec.group, set()).add(exp.spec.index)
    for spec in compiled:
        if spec.id not in result:
            exp = _fresh(spec, taken, used.setdefault(spec.group, set()))
            taken.add(exp.name)
            used[spec.group].add(exp.spec.index)
            result[exp.id] = exp
    return result


def differs(exp: Experiment, spec: ExperimentSpec) -> bool:
    """Whether the spec now runs something else than ``exp``, compared under ``exp``'s own name
    (a merge may have numbered it past its group's last): what it runs, not what it's called."""
    argv, env = spec.renamed(exp.name)
    return tuple(exp.spec.argv) != tuple(argv) or dict(exp.spec.env) != dict(env)


def _keep(exp: Experiment, spec: ExperimentSpec, force: bool) -> Experiment:
    """``exp`` under the edited spec: its retry and timeout limits follow the spec; its command
    only with ``force`` (re-queued then), under the name it already has."""
    definition = exp.spec
    if (definition.max_retries, definition.timeout_min) != (spec.max_retries, spec.timeout_min):
        definition = definition._replace(max_retries=spec.max_retries, timeout_min=spec.timeout_min)
    exp = exp._replace(spec=definition, removed=False)  # the same definition kept: the journal notes only a change
    if not (force and differs(exp, spec)):
        return exp
    argv, env = spec.renamed(exp.name)
    requeued = exp._replace(spec=definition._replace(argv=argv, env=env, name_arg=spec.name_arg))
    return requeued if exp.status == PENDING else requeued.to(PENDING)


def _fresh(spec: ExperimentSpec, taken: set[str], used: set[int]) -> Experiment:
    """A new experiment, numbered past its group's highest index if its own is taken: a new
    grid value compiles to the index an existing experiment of the group was named with, and
    two names with one ``NN_`` prefix would make ``logs SWEEP NN_group`` ambiguous."""
    if spec.name not in taken and spec.index not in used:
        return new_experiment(spec)
    index = 1 + max(used, default=-1)
    while (name := f"{index:02d}{spec.name[len(f'{spec.index:02d}') :]}") in taken:
        index += 1
    argv, env = spec.renamed(name)
    return new_experiment(spec._replace(index=index, name=name, argv=argv, env=env))


CHANGES_SHOWN = 3  # changed experiments whose difference the refusal spells out


def _changed_message(sweep: Sweep, changed: Sequence[ExperimentSpec]) -> str:
    from pbtrun.spec.argdiff import describe, difference  # here: only a refusal needs it, not every `up`

    old = sweep.experiments
    names = ", ".join(old[c.id].name for c in changed[:5]) + (
        f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    )
    lines = [
        f"the spec changes the command or env of {len(changed)} experiment(s) that sweep "
        f"{sweep.name!r} already has: {names}. pbtrun refuses, because their results so far were "
        "produced by the old command and re-running them silently would mix the two. To run the "
        "new command, re-queue them with --force (their earlier attempts stay in the history), or "
        "give the changed experiments a new group name, or start a new sweep with a new name. "
        "What changes:"
    ]
    for spec in changed[:CHANGES_SHOWN]:
        exp = old[spec.id]
        argv, env = spec.renamed(exp.name)
        diff = difference(exp.spec.argv, argv, exp.spec.env, env)
        lines.append(f"    {exp.name}: {describe(diff)}")
    if len(changed) > CHANGES_SHOWN:
        lines.append(f"    ... and {len(changed) - CHANGES_SHOWN} more: `pbtrun plan` with this spec shows them all.")
    return "\n".join(map(printable, lines))  # a name or value with a line break stays on its line
