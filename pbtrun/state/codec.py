"""The persisted shape of the state: records to plain JSON and back, in the current format
(see ``migrations.py`` for the format's history): an older format is migrated as it is read, a
newer one refused.

An experiment's row is flat: its definition's fields (an ``ExperimentSpec``, less the layout,
which the state does not record) beside its history's (status, removed, attempts), in the
order format 2 has always had.

Pure: dicts in, records out and back (``layout.py`` lays them out as bytes, ``store.py`` does
the file I/O).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from pbtrun.errors import StateError
from pbtrun.spec.model import ExperimentSpec
from pbtrun.state.migrations import FORMAT, upgrade_attempt, upgrade_experiment, upgrade_head
from pbtrun.state.records import STOP_REASONS, Attempt, AttemptOutcome, Experiment, Settings, Status, Sweep


class NewerState(StateError):
    """The state was written by a newer pbtrun, in a format this one does not know."""


# The enum members by the words the JSON holds: a dict lookup, cheaper than calling the enum
# once per experiment of a large state.
_STATUS_OF = {status.value: status for status in Status}
_OUTCOME_OF = {outcome.value: outcome for outcome in AttemptOutcome}


def to_json(sweep: Sweep) -> dict[str, Any]:
    """The persisted shape: versioned, plain JSON, no runtime handles."""
    return {**head_json(sweep), "experiments": [experiment_json(e) for e in sweep.experiments.values()]}


def head_json(sweep: Sweep) -> dict[str, Any]:
    """Everything but the experiments."""
    return {
        "format": FORMAT,
        "backend": sweep.backend,
        **({"backend_settings": sweep.backend_settings} if sweep.backend_settings else {}),
        "pbtrun_version": sweep.pbtrun_version,
        "journal_seq": sweep.journal_seq,
        "sweep": {
            "name": sweep.name,
            "cwd": sweep.cwd,
            "train_dir": sweep.train_dir,
            "created_at": sweep.created_at,
            "settings": {
                "gpus": list(sweep.settings.gpus),
                "max_parallel": sweep.settings.max_parallel,
                "experiments_per_gpu": sweep.settings.experiments_per_gpu,
                "pause_between_s": sweep.settings.pause_between_s,
                "max_failures": sweep.settings.max_failures,
                "gpus_per_experiment": sweep.settings.gpus_per_experiment,
                "placement": sweep.settings.placement,
                "min_free_memory_gb": sweep.settings.min_free_memory_gb,
                "memory_settle_s": sweep.settings.memory_settle_s,
                "exclude_busy_gpus": sweep.settings.exclude_busy_gpus,
                **({"gpu_names": list(sweep.settings.gpu_names)} if sweep.settings.gpu_names else {}),
            },
        },
    }


def change_json(before: Experiment | None, exp: Experiment) -> dict[str, Any] | None:
    """A transition as the journal records it, if it is one: the status, and the last attempt
    if it is new or changed; None if anything else changed (the full record is written then).
    Most of a record (argv, env, params) never changes; leaving it out makes journal lines
    several times smaller."""
    if before is None or not _same_definition(before, exp):
        return None
    old, new = before.attempts, exp.attempts
    if new == old:
        attempt = None
    elif len(new) - len(old) in (0, 1) and new[:-1] == old[: len(new) - 1]:  # the last replaced, or one added
        attempt = _attempt_json(new[-1])
    else:
        return None
    return {"id": exp.id, "status": exp.status, "attempt": attempt}


def _same_definition(a: Experiment, b: Experiment) -> bool:
    """Whether the record differs in nothing but its status and attempts. A transition keeps the
    definition object itself; one rebuilt with the same values (its large fields the same
    objects) counts as the same too."""
    if a.removed != b.removed:
        return False
    x, y = a.spec, b.spec
    return x is y or (
        x.argv is y.argv
        and x.env is y.env
        and x.params is y.params
        and (x.id, x.name, x.index, x.group, x.name_arg, x.max_retries, x.timeout_min, x.gpus_per_experiment)
        == (y.id, y.name, y.index, y.group, y.name_arg, y.max_retries, y.timeout_min, y.gpus_per_experiment)
    )


def apply_change(sweep: Sweep, change: Mapping[str, Any], stored_format: int = FORMAT) -> None:
    """Replay one journal change (see :func:`change_json`), written in ``stored_format``."""
    exp = sweep.experiments[change["id"]]
    status = _STATUS_OF.get(change["status"])
    if status is None:
        raise ValueError(f"unknown status {change['status']!r} for {exp.name}")
    attempts = exp.attempts
    if change["attempt"] is not None:
        if stored_format != FORMAT:
            upgrade_attempt(change["attempt"], stored_format)
        attempt = _attempt_from(change["attempt"])
        same = attempts and attempts[-1].number == attempt.number
        attempts = (*attempts[:-1], attempt) if same else (*attempts, attempt)
    sweep.update(exp._replace(status=status, attempts=attempts))


def experiment_json(exp: Experiment) -> dict[str, Any]:
    spec = exp.spec  # the definition's layout is not recorded: it is the spec's to compile
    raw = {
        "id": spec.id,
        "group": spec.group,
        "index": spec.index,
        "name": spec.name,
        "argv": list(spec.argv),
        "env": dict(spec.env),
        "params": dict(spec.params),
        "name_arg": spec.name_arg,
        "status": exp.status,
        "removed": exp.removed,
        "max_retries": spec.max_retries,
        "timeout_min": spec.timeout_min,
        "attempts": [_attempt_json(a) for a in exp.attempts],
    }
    if spec.gpus_per_experiment is not None:  # only where its group set its own
        raw["gpus_per_experiment"] = spec.gpus_per_experiment
    return raw


def _attempt_json(a: Attempt) -> dict[str, Any]:
    raw = {
        "number": a.number,
        "started_at": a.started_at,
        "ended_at": a.ended_at,
        "log": a.log,
        "gpus": None if a.gpus is None else list(a.gpus),
        "host": a.host,
        "pid": a.pid,
        "returncode": a.returncode,
        "outcome": a.outcome,
        "ref": a.ref,
    }
    if a.stop_at is not None:
        raw["stop_at"] = a.stop_at
        raw["stop_reason"] = a.stop_reason
    if a.gpu_uuids is not None:
        raw["gpu_uuids"] = list(a.gpu_uuids)
    if a.end_state is not None:
        raw["end_state"] = a.end_state
    return raw


def from_json(data: Any) -> Sweep:
    """Build records from the persisted shape; refuse a newer format, explain a broken one."""
    sweep = sweep_from(data)
    try:
        shared: dict = {}
        for raw in data["experiments"]:
            exp = experiment_from(raw, shared, sweep.disk_format)
            if exp.id in sweep.experiments:
                raise ValueError(f"experiment {exp.id} ({exp.name}) is listed twice")
            sweep.update(exp)
        sweep.dirty.clear()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"its content is malformed ({type(exc).__name__}: {exc})") from None
    return sweep


def sweep_from(data: Any) -> Sweep:
    """The sweep without its experiments, from the persisted shape's head (brought to the
    current format in place if it is older)."""
    if not isinstance(data, dict) or not isinstance(data.get("format"), int):
        raise StateError('it is not a pbtrun state file (no "format" number)')
    if data["format"] < 1:
        raise StateError(f'its "format" is {data["format"]}; pbtrun state formats start at 1')
    if data["format"] > FORMAT:
        version = data.get("pbtrun_version")
        writer = f"pbtrun {version}" if version else "a newer pbtrun"
        raise NewerState(
            f"it was written by {writer} (state format {data['format']}), newer than this "
            f"pbtrun understands (format {FORMAT}). Upgrade pbtrun (pip install -U pbtrun) to read it"
        )
    stored_format = data["format"]
    try:
        if stored_format != FORMAT:
            upgrade_head(data, stored_format)
        backend = data["backend"]
        if type(backend) is not str:
            raise TypeError(f"backend must be a string, not {type(backend).__name__}")
        head = data["sweep"]
        settings = head["settings"]
        if int(settings["max_parallel"]) < 1:
            raise ValueError(f"max_parallel is {settings['max_parallel']}, it must be at least 1")
        sweep = Sweep(
            name=head["name"],
            cwd=head["cwd"],
            train_dir=head["train_dir"],
            created_at=float(head["created_at"]),
            settings=Settings(
                gpus=tuple(int(g) for g in settings["gpus"]),
                max_parallel=int(settings["max_parallel"]),
                experiments_per_gpu=int(settings["experiments_per_gpu"]),
                pause_between_s=float(settings["pause_between_s"]),
                max_failures=_optional_int(settings.get("max_failures")),
                # Absent from states written before GPU placement had settings: the defaults.
                gpus_per_experiment=int(settings.get("gpus_per_experiment", 1)),
                placement=_placement(settings.get("placement", "count")),
                min_free_memory_gb=_optional_float(settings.get("min_free_memory_gb")),
                memory_settle_s=float(settings.get("memory_settle_s", 30.0)),
                exclude_busy_gpus=bool(settings.get("exclude_busy_gpus", False)),
                gpu_names=tuple(str(n) for n in settings.get("gpu_names", ())),
            ),
            pbtrun_version=str(data.get("pbtrun_version", "")),
            journal_seq=int(data.get("journal_seq", 0)),
            backend=backend,
            backend_settings=_settings_table(data.get("backend_settings", {})),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"its content is malformed ({type(exc).__name__}: {exc})") from None
    sweep.disk_format = stored_format
    return sweep


def _settings_table(value: Any) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"backend_settings must be a table, not {type(value).__name__}")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _placement(value: Any) -> str:
    if value not in ("count", "memory"):
        raise ValueError(f'placement is {value!r}, not "count" or "memory"')
    return value


def experiment_from(raw: dict[str, Any], shared: dict | None = None, stored_format: int = FORMAT) -> Experiment:
    """An experiment from its persisted shape. ``shared`` (a dict kept across calls) lets
    experiments share equal env mappings, and command words are interned: 100,000 experiments
    parsed from JSON would otherwise each hold their own copy of the same strings. A value of
    the wrong type raises (TypeError, ValueError), which readers report as a malformed file.
    ``stored_format``: the format it was written in (it is brought to the current one in place)."""
    if stored_format != FORMAT:
        upgrade_experiment(raw, stored_format)
    status = _STATUS_OF.get(raw["status"])
    if status is None:
        raise ValueError(f"unknown status {raw['status']!r} for {raw.get('name')}")
    intern = sys.intern
    env = {intern(k): intern(v) for k, v in raw["env"].items()}
    if shared is not None:
        env = shared.setdefault(tuple(env.items()), env)
    params = raw["params"]
    if not isinstance(params, dict):
        raise TypeError(f"params of {raw.get('name')} is not a table")
    timeout = raw.get("timeout_min")
    argv = raw["argv"]
    if not argv:
        raise ValueError(f"the argv of {raw.get('name')} is empty")
    attempts = raw["attempts"]
    definition = ExperimentSpec(  # positional: a 100,000-experiment state is read in a loop of these
        str(raw["id"]),
        intern(raw["group"]),
        int(raw["index"]),
        str(raw["name"]),
        tuple(map(intern, argv)),
        env,
        params,
        raw.get("name_arg"),
        int(raw.get("max_retries", 0)),
        None if timeout is None else float(timeout),
        _optional_int(raw.get("gpus_per_experiment")),
    )
    return Experiment(
        definition,
        status,
        tuple(map(_attempt_from, attempts)) if attempts else (),
        bool(raw.get("removed", False)),
    )


def _attempt_from(raw: Mapping[str, Any]) -> Attempt:
    gpus = raw.get("gpus")
    get = raw.get
    number, pid, returncode, outcome, ended_at = (
        raw["number"],
        get("pid"),
        get("returncode"),
        get("outcome"),
        get("ended_at"),
    )
    if (
        type(number) is not int
        or not (pid is None or type(pid) is int)
        or not (returncode is None or type(returncode) is int)
    ):
        raise TypeError(
            f"attempt {number!r}: number, pid and returncode must be integers (pid and returncode may be null)"
        )
    if outcome is not None:
        known = _OUTCOME_OF.get(outcome)
        if known is None:
            raise ValueError(f"attempt {number}: unknown outcome {outcome!r}")
        outcome = known
    stop_at, stop_reason = get("stop_at"), get("stop_reason")
    if (stop_at is None) != (stop_reason is None) or (stop_reason is not None and stop_reason not in STOP_REASONS):
        raise ValueError(f"attempt {number}: stop_at {stop_at!r} with stop_reason {stop_reason!r}")
    return Attempt(
        number,
        float(raw["started_at"]),
        str(raw["log"]),
        None if gpus is None else tuple(map(int, gpus)),
        sys.intern(str(get("host", ""))),
        pid,
        None if ended_at is None else float(ended_at),
        returncode,
        outcome,
        get("ref"),
        None if stop_at is None else float(stop_at),
        stop_reason,
        _gpu_uuids(get("gpu_uuids"), number),
        _end_state(get("end_state"), number),
    )


def _end_state(raw: Any, number: Any) -> str | None:
    if raw is not None and type(raw) is not str:
        raise TypeError(f"attempt {number}: end_state must be a string")
    return raw


def _gpu_uuids(raw: Any, number: Any) -> tuple[str | None, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(u is None or type(u) is str for u in raw):
        raise TypeError(f"attempt {number}: gpu_uuids must be a list of strings (or nulls)")
    return tuple(raw)
