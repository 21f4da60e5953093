"""One error hierarchy, turned into a message and an exit code in one place (the CLI).

Every error carries a message written for the person at the terminal: what is wrong, where
(file, key, line) and what to do about it. Core modules raise these; they never print or exit.
"""

from __future__ import annotations

import errno
from typing import NamedTuple

# Said by every error that a deleted working directory explains, so the CLI does not add it again.
CWD_GONE = "the current directory no longer exists (it was deleted or moved after the shell entered it)"


class PbtrunError(Exception):
    """Base of every error pbtrun reports to a user."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SpecError(PbtrunError):
    """The sweep spec (TOML) or the command-line arguments are wrong."""


class StateError(PbtrunError):
    """The state file is missing, damaged, or from a newer pbtrun."""


class DiskFull(StateError):
    """The file system holding the sweep is full: nothing more is launched, nothing is lost."""

    exit_code = 4


class SweepBusy(PbtrunError):
    """Another scheduler already runs this sweep."""

    exit_code = 3


class BackendError(PbtrunError):
    """A backend could not do what it was asked (not an experiment failing: that is an outcome)."""

    exit_code = 1


# What a fault's kind advises, unless its errno says the disk is full (see BackendFault.error).
RUNNER_DIED = "runner_died"  # what runs the experiments died (local: a reaper, killed)
WRITE_FAILED = "write_failed"  # a file the backend must write could not be (a log, a launch request)
SUBMIT_REFUSED = "submit_refused"  # a cluster's queue refused a job (sbatch, a template's submit)
_ADVICE = {
    RUNNER_DIED: "check what killed it (the OOM killer, a kill command)",
    WRITE_FAILED: "free space or fix permissions",
    SUBMIT_REFUSED: "fix what the queue's answer says (often the spec's [slurm] or [template] table)",
}
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class BackendFault(NamedTuple):
    """Why a backend lost an attempt or could not run it: a fault of pbtrun's own machinery, not
    of the experiment (whose failure is an outcome). It rides on the attempt's outcome; the
    scheduler turns the first one into the error that stops launching. Typed, so that the advice
    never depends on the words of a message (or of a path inside one)."""

    kind: str  # RUNNER_DIED, WRITE_FAILED or SUBMIT_REFUSED
    text: str  # what went wrong; "{name}" stands for the experiment's name
    errno: int | None = None  # the system's reason, where one was given (ENOSPC: the disk is full)

    def error(self, name: str) -> PbtrunError:
        """The error that stops launching: a full disk says so (and exits as DiskFull does)."""
        what = self.text.replace("{name}", name)
        if self.errno in _DISK_FULL:
            return DiskFull(f"{what}. pbtrun stops launching; the disk is full: free space, then resume the sweep.")
        return BackendError(f"{what}. pbtrun stops launching; {_ADVICE[self.kind]}, then resume the sweep.")
