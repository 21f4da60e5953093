"""Limits on what a spec or a flag may ask for, shared by the spec layer and the command line
(kept apart so that ``pbtrun --help`` need not load the spec layer to show them)."""

MAX_EXPERIMENTS = 1_000_000
MAX_TIMEOUT_MIN = 1_000_000  # about two years: longer than any training run
MAX_PAUSE_S = 86_400.0  # a day between two launches; the scheduler waits at most a day at a time anyway
MAX_GPUS = 1024  # more than any one machine has; every GPU id is kept in the state, so 1e7 costs gigabytes
MAX_GRACE_S = 86_400.0  # a day: scripts checkpoint on SIGINT in minutes; a stop that waits longer never ends
