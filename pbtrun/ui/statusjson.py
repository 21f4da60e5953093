"""The ``status --json`` documents: one sweep with its experiments and their attempts, or the
sweeps of a train dir.

A public interface, documented in docs/status-json.md: add keys, never rename or remove them.
The long list of experiments is made item by item as it is written (:mod:`pbtrun.ui.jsonlines`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pbtrun.state.records import Attempt, Experiment, Observed, Sweep
from pbtrun.state.store import SweepPaths
from pbtrun.ui.jsonlines import Rows
from pbtrun.ui.words import Filters, job_id, real_attempts


def sweep_json(
    paths: SweepPaths,
    sweep: Sweep,
    holder: dict[str, Any] | None,
    observed: Mapping[str, Observed] | None = None,
    filters: Filters | None = None,
) -> dict[str, Any]:
    """The ``status --json`` document for one sweep; ``observed`` (by experiment id) is what the
    experiments the state calls running really are, looked at while no scheduler runs.
    ``filters`` select the experiments listed, as in the table; the counts stay the whole sweep's."""
    base = paths.dir.resolve()
    observed = observed or {}
    chosen = sweep.experiments.values()
    if filters is not None and filters.active:
        chosen = [e for e in chosen if filters.match(e)]
    return {
        "sweep": {
            "name": sweep.name,
            "dir": str(base),
            "cwd": sweep.cwd,
            "running": holder is not None,
            "scheduler": None if holder is None else {"pid": holder.get("pid"), "host": holder.get("host")},
            # why queued experiments cannot start (GPU memory, busy GPUs); null when none wait for that
            "waiting": None if holder is None else holder.get("waiting"),
        },
        "counts": sweep.counts(),
        "experiments": Rows(
            list(chosen), lambda e: experiment_json(paths, e, base, observed.get(e.id), sweep.backend != "local")
        ),
    }


def experiment_json(
    paths: SweepPaths,
    exp: Experiment,
    base: Path | None = None,
    observed: Observed | None = None,
    jobs: bool = False,
) -> dict[str, Any]:
    """One experiment of ``status --json``; ``base`` is the sweep directory, resolved (once per
    sweep: resolving every log's path costs a system call per component). Log paths are joined
    as strings: a pathlib join costs more than the rest of the experiment's document."""
    base = paths.dir.resolve() if base is None else base
    prefix = f"{base}/"
    attempts = real_attempts(exp)
    last = attempts[-1] if attempts else None
    spec = exp.spec
    return {
        "name": spec.name,
        "id": spec.id,
        "group": spec.group,
        "status": exp.status,
        "outcome": None if last is None else last.outcome,
        "returncode": None if last is None else last.returncode,
        "gpus": None if last is None or last.gpus is None else list(last.gpus),
        "gpu_uuids": None if last is None or last.gpu_uuids is None else list(last.gpu_uuids),
        "job_id": None if last is None else job_id(last, jobs),
        "end_state": None if last is None else last.end_state,
        "node": None if last is None else last.host or None,
        "attempts": len(attempts),
        "argv": spec.argv,  # a tuple, written as a JSON array: no copy (nor of the dicts below)
        "env": spec.env if type(spec.env) is dict else dict(spec.env),
        "params": spec.params if type(spec.params) is dict else dict(spec.params),
        "log": None if last is None else prefix + last.log,
        "started_at": None if last is None else last.started_at,
        "ended_at": None if last is None else last.ended_at,
        "removed": exp.removed,
        "history": [attempt_json(a, prefix, jobs) for a in attempts],
        "observed": observed_json(observed),
    }


def attempt_json(attempt: Attempt, prefix: str, jobs: bool = False) -> dict[str, Any]:
    """One attempt that started a process, as ``history`` lists it: a lost one stays visible.
    ``prefix``: the sweep directory and a slash, before the attempt's relative log path."""
    return {
        "number": attempt.number,
        "outcome": attempt.outcome,
        "returncode": attempt.returncode,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
        "gpus": None if attempt.gpus is None else list(attempt.gpus),
        "gpu_uuids": None if attempt.gpu_uuids is None else list(attempt.gpu_uuids),
        "job_id": job_id(attempt, jobs),
        "end_state": attempt.end_state,
        "node": attempt.host or None,
        "log": prefix + attempt.log,
    }


def observed_json(seen: Observed | None) -> dict[str, Any] | None:
    if seen is None:
        return None
    return {"state": seen.state, "returncode": seen.returncode, "ended_at": seen.ended_at, "detail": seen.detail}


def train_dir_json(train_dir: Path, rows: Sequence[tuple[Path, Mapping[str, Any] | None, Any, str]]) -> dict[str, Any]:
    """``status TRAIN_DIR --json`` and ``ls --json``: each sweep's name, directory, counts and
    whether a scheduler runs it. ``rows``: per sweep, its directory, its summary (``{"name",
    "counts"}``, or None where unreadable), its scheduler's record (or None) and an error. An
    unreadable sweep is listed with its error, never silently left out."""
    sweeps = [
        {
            "name": sweep_dir.name if summary is None else summary["name"],
            "dir": str(sweep_dir.resolve()),
            "counts": None if summary is None else summary["counts"],
            "running": holder is not None,
            "error": error or None,
        }
        for sweep_dir, summary, holder, error in rows
    ]
    return {"train_dir": str(train_dir.resolve()), "sweeps": sweeps}
