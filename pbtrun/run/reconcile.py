"""What a scheduler does first: settle what the previous one left.

Every attempt the state records as running is handed to the backend (:meth:`Backend.settle`):
it is adopted if it still runs, recorded if it ended while no scheduler watched it, or found
never to have started (and then made sure never to start). With ``--retry-failed`` (or
``--retry-lost``) the failed experiments (or those whose outcome is lost) are queued again.
"""

from __future__ import annotations

from pbtrun.backends.base import Backend, Handle, Outcome
from pbtrun.run.outcomes import after_end, outcome_lost, stopped_by_pbtrun
from pbtrun.state.records import FAILED, PENDING, Attempt, Sweep


class Settled:
    """What settling found: the attempts adopted (exp id, handle, GPUs), and the experiments
    whose end was recorded now."""

    def __init__(self) -> None:
        self.adopted: list[tuple[str, Handle, tuple[int, ...]]] = []
        self.recorded: list[str] = []


def settle(sweep: Sweep, backend: Backend, retry_failed: bool, retry_lost: bool, found: Settled) -> None:
    """Change ``sweep`` (inside the scheduler's transaction) as settling finds; note it in ``found``."""
    for exp in sweep.running():
        last: Attempt = exp.last  # type: ignore[assignment]
        outcome = backend.settle(exp, last)
        if not isinstance(outcome, Outcome):
            found.adopted.append((exp.id, outcome, last.gpus or ()))
            continue
        sweep.update(after_end(exp, outcome, stopped_by_pbtrun(last, outcome)))
        if outcome.started:
            found.recorded.append(exp.id)
    if retry_failed or retry_lost:
        for exp in list(sweep.experiments.values()):
            if exp.status == FAILED and not exp.removed and (retry_failed or outcome_lost(exp)):
                sweep.update(exp.to(PENDING))


def notes(sweep: Sweep, backend: Backend, found: Settled) -> list[str]:
    """What settling found, as the view tells it once it is up."""
    said = []
    for exp_id, handle, _ in found.adopted:
        where = backend.where(handle)
        said.append(f"adopted {sweep.experiments[exp_id].name} (still running{f', {where}' if where else ''})")
    for exp_id in found.recorded:
        exp = sweep.experiments[exp_id]
        code = exp.attempts[-1].returncode
        how = "its outcome is lost" if code is None else f"exit status {code}"
        said.append(f"recorded {exp.name}, which ended while no scheduler ran: {how}")
    return said
