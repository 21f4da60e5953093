"""One error hierarchy, turned into a message and an exit code in one place (the CLI).

Every error carries a message written for the person at the terminal: what is wrong, where
(file, key, line) and what to do about it. Core modules raise these; they never print or exit.
"""

from __future__ import annotations

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
